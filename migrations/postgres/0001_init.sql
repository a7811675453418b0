-- Tandem schema, PostgreSQL flavour. Timestamps are milliseconds since the Unix epoch.
CREATE TABLE sessions (
    id                TEXT PRIMARY KEY,
    title             TEXT NOT NULL DEFAULT '',
    language          TEXT NOT NULL DEFAULT 'plaintext',
    owner_id          TEXT NOT NULL,
    public            BOOLEAN NOT NULL DEFAULT FALSE,
    public_role       TEXT NOT NULL DEFAULT 'viewer',
    yjs_state         BYTEA,
    last_snapshot     TEXT,
    state_through_seq BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

-- role NULL = the user visited (public session) without an explicit grant.
CREATE TABLE participants (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL,
    user_name  TEXT NOT NULL DEFAULT '',
    role       TEXT,
    joined_at  BIGINT,
    left_at    BIGINT,
    PRIMARY KEY (session_id, user_id)
);
CREATE INDEX participants_by_user ON participants(user_id);

CREATE TABLE chat_messages (
    id         BIGSERIAL PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL,
    user_name  TEXT NOT NULL,
    content    TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX chat_by_session ON chat_messages(session_id, id);

-- The durable update log; rows up to sessions.state_through_seq are folded
-- into sessions.yjs_state by compaction and deleted.
CREATE TABLE document_updates (
    seq        BIGSERIAL PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    payload    BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX updates_by_session ON document_updates(session_id, seq);
