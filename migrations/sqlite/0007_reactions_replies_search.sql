-- Replies: the message this one answers (in the same conversation).
ALTER TABLE messages ADD COLUMN reply_to TEXT;

-- Reactions: one row per message, user and emoji. Rights and uniqueness
-- follow the user id (see 0004); `nick` is the name shown.
CREATE TABLE reactions (
    msg_id     TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    emoji      TEXT NOT NULL,
    nick       TEXT NOT NULL,
    created_at BIGINT NOT NULL,           -- ms since the epoch
    PRIMARY KEY (msg_id, user_id, emoji)
);

-- Search: an FTS5 index of the messages' text (an external-content table:
-- the text is kept once, in `messages`; the index follows its rowid).
-- unicode61 folds case and diacritics ("cafe" finds "Café").
--
-- A new message is not indexed by the writer (that would cost each stored
-- message several times its insert): a trigger only queues its rowid in
-- messages_fts_pending, and the store indexes the queue in batches, in the
-- background and before every search (SqlStore::index_pending). An edit or
-- a deletion of an indexed message updates the index at once; of a queued
-- one, nothing is needed (the queue reads the text when it indexes it). A
-- deleted message's text is '', so it leaves the index.
CREATE VIRTUAL TABLE messages_fts USING fts5(
    text, content = 'messages', content_rowid = 'rowid',
    tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
CREATE TABLE messages_fts_pending (id INTEGER PRIMARY KEY);
CREATE TRIGGER messages_fts_queue AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts_pending (id) VALUES (new.rowid);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text)
        SELECT 'delete', old.rowid, old.text
        WHERE NOT EXISTS (SELECT 1 FROM messages_fts_pending WHERE id = old.rowid);
    DELETE FROM messages_fts_pending WHERE id = old.rowid;
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages
WHEN NOT EXISTS (SELECT 1 FROM messages_fts_pending WHERE id = old.rowid) BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
    INSERT INTO messages_fts (rowid, text) VALUES (new.rowid, new.text);
END;
