-- Per-document log sequence (cluster mode, src/cluster): every log row of a
-- document carries doc_seq = 1, 2, 3, … in commit order, taken from the
-- document's files row (log_head) inside the appending transaction. The row
-- lock on files serialises appends to one document across nodes, so a node
-- that has applied every row through N and then hears of N + 2 knows it
-- missed N + 1 and reads it back (`doc_seq > N`). seq stays the global key
-- compaction uses.
ALTER TABLE files ADD COLUMN log_head BIGINT NOT NULL DEFAULT 0;
ALTER TABLE document_updates ADD COLUMN doc_seq BIGINT;
-- Existing rows keep their order: the global seq is increasing per document.
UPDATE document_updates SET doc_seq = seq;
ALTER TABLE document_updates ALTER COLUMN doc_seq SET NOT NULL;
UPDATE files SET log_head = COALESCE((
    SELECT max(u.doc_seq) FROM document_updates u
    WHERE u.doc_id = CASE WHEN files.id = 'main' THEN files.session_id ELSE files.session_id || '~' || files.id END
), 0);
CREATE INDEX updates_by_doc_seq ON document_updates(doc_id, doc_seq);
