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
-- Triggers keep it in step with every insert, edit and deletion (a deleted
-- message's text is '', so it leaves the index). unicode61 folds case and
-- diacritics ("cafe" finds "Café").
CREATE VIRTUAL TABLE messages_fts USING fts5(
    text, content = 'messages', content_rowid = 'rowid',
    tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, text) VALUES (new.rowid, new.text);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
    INSERT INTO messages_fts (rowid, text) VALUES (new.rowid, new.text);
END;
