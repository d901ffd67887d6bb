-- Accounts and profiles: a user with a password_hash is registered.
ALTER TABLE users
    ADD COLUMN password_hash VARCHAR(255),
    ADD COLUMN status VARCHAR(560) NOT NULL DEFAULT '',
    ADD COLUMN avatar VARCHAR(512) NOT NULL DEFAULT '',
    ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';

-- Rooms created through the API are managed: only moderators set the topic.
ALTER TABLE rooms ADD COLUMN managed BOOLEAN NOT NULL DEFAULT FALSE;

-- Login sessions: the SHA-256 of the token, never the token itself.
CREATE TABLE auth_sessions (
    token_hash CHAR(64) PRIMARY KEY,
    nick_key   VARCHAR(32) NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
) DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Who belongs to a private room, and who moderates any room.
CREATE TABLE room_members (
    room_key VARCHAR(64) NOT NULL,
    nick_key VARCHAR(32) NOT NULL,
    role     VARCHAR(16) NOT NULL DEFAULT 'member',   -- 'member' or 'moderator'
    PRIMARY KEY (room_key, nick_key)
) DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
