-- Room settings: see migrations/sqlite/0008_room_modes.sql.
ALTER TABLE rooms ADD COLUMN moderated BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE rooms ADD COLUMN topic_lock BOOLEAN;
ALTER TABLE rooms ADD COLUMN secret BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE rooms ADD COLUMN join_key TEXT NOT NULL DEFAULT '';
ALTER TABLE rooms ADD COLUMN member_limit BIGINT NOT NULL DEFAULT 0;
UPDATE rooms SET secret = private;

CREATE TABLE room_bans (
    room_key TEXT NOT NULL,
    mask     TEXT NOT NULL,
    set_by   TEXT NOT NULL,
    set_at   BIGINT NOT NULL,
    PRIMARY KEY (room_key, mask)
);
