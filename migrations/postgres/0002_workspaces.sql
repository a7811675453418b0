-- Workspaces (PROTOCOL.md, "Workspaces: files in a session"): a session is a
-- set of files, each its own Yjs document. PostgreSQL flavour.
--
-- The main file (id 'main', document id = the session id) has a row here for
-- its metadata (path, language, size, times, updated_by), but its content
-- stays where it always was: sessions.yjs_state, sessions.last_snapshot and
-- sessions.state_through_seq. Its yjs_state/last_snapshot columns here stay
-- NULL. So databases, clients and tools that read the session row keep
-- working, and the main file's language is the session's language (the store
-- keeps the two columns equal).
--
-- Any other file keeps its compacted state (yjs_state), its text
-- (last_snapshot) and its compaction mark (state_through_seq) in its own row.
-- size is the UTF-8 byte length of the text as of the latest snapshot.
CREATE TABLE files (
    session_id        TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    id                TEXT NOT NULL,
    path              TEXT NOT NULL,
    language          TEXT NOT NULL DEFAULT 'plaintext',
    size              BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    updated_by        TEXT NOT NULL DEFAULT '',
    yjs_state         BYTEA,
    last_snapshot     TEXT,
    state_through_seq BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, id),
    UNIQUE (session_id, path)
);

-- Every existing session gets its main file: main.<ext> by language (the
-- table of model::extension_for_language), owned by the session's owner.
INSERT INTO files (session_id, id, path, language, size, created_at, updated_at, updated_by)
SELECT id, 'main',
       'main.' || CASE language
           WHEN 'rust' THEN 'rs' WHEN 'typescript' THEN 'ts' WHEN 'javascript' THEN 'js'
           WHEN 'python' THEN 'py' WHEN 'go' THEN 'go' WHEN 'java' THEN 'java'
           WHEN 'c' THEN 'c' WHEN 'cpp' THEN 'cpp' WHEN 'csharp' THEN 'cs'
           WHEN 'ruby' THEN 'rb' WHEN 'markdown' THEN 'md' WHEN 'json' THEN 'json'
           WHEN 'html' THEN 'html' WHEN 'css' THEN 'css' WHEN 'shell' THEN 'sh'
           WHEN 'sql' THEN 'sql' WHEN 'yaml' THEN 'yaml' ELSE 'txt' END,
       language,
       COALESCE(octet_length(last_snapshot), 0),
       created_at, updated_at, owner_id
FROM sessions;

-- The update log, per document: doc_id is the document id (the session id
-- for the main file, <session-id>~<file-id> otherwise). session_id stays, so
-- deleting a session still cascades to every file's log rows. Existing rows
-- all belong to main documents.
ALTER TABLE document_updates ADD COLUMN doc_id TEXT;
UPDATE document_updates SET doc_id = session_id;
ALTER TABLE document_updates ALTER COLUMN doc_id SET NOT NULL;
CREATE INDEX updates_by_doc ON document_updates(doc_id, seq);
