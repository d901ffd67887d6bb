-- Rooms that were named by someone (created, given a topic).
CREATE TABLE rooms (
    name_key   TEXT PRIMARY KEY,          -- case-folded name
    name       TEXT NOT NULL,             -- as first spelled
    topic      TEXT NOT NULL DEFAULT '',
    private    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL            -- ms since the epoch
);

-- Every message. `conv` is the conversation: 'r:<room>', 'd:<nick>:<nick>'
-- (the two case-folded nicks in order), or 'e' (everyone).
CREATE TABLE messages (
    msg_id      CHAR(26) PRIMARY KEY,     -- ULID
    conv        TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    room        TEXT,                     -- room name as shown (room messages)
    sender      TEXT NOT NULL,
    recipient   TEXT,                     -- nick as shown (direct messages)
    text        TEXT NOT NULL,
    attachments TEXT NOT NULL DEFAULT '[]',
    sent_at     BIGINT NOT NULL,
    edited_at   BIGINT,
    deleted     BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE (conv, seq)
);
CREATE INDEX messages_sent_at ON messages (conv, sent_at);

CREATE TABLE users (
    nick_key     TEXT PRIMARY KEY,
    nick         TEXT NOT NULL,
    display_name TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    last_seen    BIGINT NOT NULL
);
