-- Replies, reactions and search: see migrations/sqlite/0007_reactions_replies_search.sql.
ALTER TABLE messages ADD COLUMN reply_to TEXT;

CREATE TABLE reactions (
    msg_id     TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    emoji      TEXT NOT NULL,
    nick       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (msg_id, user_id, emoji)
);

-- Search: a generated tsvector (kept in step by PostgreSQL itself on every
-- insert and update) with a GIN index. The 'simple' configuration folds
-- case and neither stems nor drops stop words: it fits any language.
ALTER TABLE messages ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, text)) STORED;
CREATE INDEX messages_search ON messages USING GIN (search);
