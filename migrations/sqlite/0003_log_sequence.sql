-- Per-document log sequence (cluster mode, src/cluster): every log row of a
-- document carries doc_seq = 1, 2, 3, … in commit order, taken from the
-- document's files row (log_head) inside the appending transaction. SQLite
-- is single-node, but keeps the same columns so one store serves both.
ALTER TABLE files ADD COLUMN log_head BIGINT NOT NULL DEFAULT 0;
ALTER TABLE document_updates ADD COLUMN doc_seq BIGINT NOT NULL DEFAULT 0;
UPDATE document_updates SET doc_seq = seq;
UPDATE files SET log_head = COALESCE((
    SELECT max(u.doc_seq) FROM document_updates u
    WHERE u.doc_id = CASE WHEN files.id = 'main' THEN files.session_id ELSE files.session_id || '~' || files.id END
), 0);
CREATE INDEX updates_by_doc_seq ON document_updates(doc_id, doc_seq);
