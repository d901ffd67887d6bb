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

-- Search: each message's tsvector in message_search, with a GIN index.
-- The 'simple' configuration folds case and neither stems nor drops stop
-- words: it fits any language.
--
-- Not computed in the writer's insert (a GIN insert costs several times
-- the message's own): statement-level triggers queue the ids of inserted
-- and updated (edited, deleted) messages in message_search_pending, one
-- INSERT per statement, and the store indexes the queue in batches, in
-- the background and before every search (SqlStore::index_pending). A
-- deleted row leaves message_search at once.
CREATE TABLE message_search (
    msg_id TEXT PRIMARY KEY,
    search tsvector NOT NULL
);
CREATE INDEX message_search_gin ON message_search USING GIN (search);
CREATE TABLE message_search_pending (
    id     BIGSERIAL PRIMARY KEY,
    msg_id TEXT NOT NULL
);
INSERT INTO message_search_pending (msg_id) SELECT msg_id FROM messages ORDER BY sent_at;

CREATE FUNCTION message_search_queue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_search_pending (msg_id) SELECT msg_id FROM changed_rows;
    RETURN NULL;
END
$$;
CREATE FUNCTION message_search_forget() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM message_search WHERE msg_id IN (SELECT msg_id FROM gone_rows);
    RETURN NULL;
END
$$;
CREATE TRIGGER message_search_insert AFTER INSERT ON messages
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION message_search_queue();
CREATE TRIGGER message_search_update AFTER UPDATE ON messages
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION message_search_queue();
CREATE TRIGGER message_search_delete AFTER DELETE ON messages
    REFERENCING OLD TABLE AS gone_rows FOR EACH STATEMENT EXECUTE FUNCTION message_search_forget();
