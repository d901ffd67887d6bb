-- Accounts and profiles: a user with a password_hash is registered.
ALTER TABLE users ADD COLUMN password_hash TEXT;
ALTER TABLE users ADD COLUMN status TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN avatar TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';

-- Rooms created through the API are managed: only moderators set the topic.
ALTER TABLE rooms ADD COLUMN managed BOOLEAN NOT NULL DEFAULT FALSE;

-- Login sessions: the SHA-256 of the token, never the token itself.
CREATE TABLE auth_sessions (
    token_hash TEXT PRIMARY KEY,
    nick_key   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Who belongs to a private room, and who moderates any room.
CREATE TABLE room_members (
    room_key TEXT NOT NULL,
    nick_key TEXT NOT NULL,
    role     TEXT NOT NULL DEFAULT 'member',   -- 'member' or 'moderator'
    PRIMARY KEY (room_key, nick_key)
);
