-- Replies, reactions and search: see migrations/sqlite/0007_reactions_replies_search.sql.
-- The text takes a case- and accent-insensitive collation (utf8mb4_unicode_ci)
-- for the FULLTEXT index, which InnoDB keeps in step with every insert and
-- update; nothing compares message texts otherwise.
ALTER TABLE messages
    ADD COLUMN reply_to CHAR(26) NULL,
    MODIFY text TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL;
CREATE FULLTEXT INDEX messages_text ON messages (text);

CREATE TABLE reactions (
    msg_id     CHAR(26) NOT NULL,
    user_id    VARCHAR(200) NOT NULL,
    emoji      VARCHAR(32) NOT NULL,
    nick       VARCHAR(32) NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (msg_id, user_id, emoji)
) DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
