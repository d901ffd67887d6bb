-- Rooms that were named by someone (created, given a topic).
CREATE TABLE rooms (
    name_key   VARCHAR(64) PRIMARY KEY,   -- case-folded name
    name       VARCHAR(64) NOT NULL,      -- as first spelled
    topic      TEXT NOT NULL,
    private    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL            -- ms since the epoch
) DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Every message. `conv` is the conversation: 'r:<room>', 'd:<nick>:<nick>'
-- (the two case-folded nicks in order), or 'e' (everyone).
CREATE TABLE messages (
    msg_id      CHAR(26) PRIMARY KEY,     -- ULID
    conv        VARCHAR(80) NOT NULL,
    seq         BIGINT NOT NULL,
    room        VARCHAR(64),              -- room name as shown (room messages)
    sender      VARCHAR(32) NOT NULL,
    recipient   VARCHAR(32),              -- nick as shown (direct messages)
    text        TEXT NOT NULL,
    attachments TEXT NOT NULL,
    sent_at     BIGINT NOT NULL,
    edited_at   BIGINT,
    deleted     BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE KEY messages_conv_seq (conv, seq),
    KEY messages_sent_at (conv, sent_at)
) DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE users (
    nick_key     VARCHAR(32) PRIMARY KEY,
    nick         VARCHAR(32) NOT NULL,
    display_name VARCHAR(200) NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    last_seen    BIGINT NOT NULL
) DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
