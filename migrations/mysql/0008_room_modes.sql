-- Room settings: see migrations/sqlite/0008_room_modes.sql.
ALTER TABLE rooms
    ADD COLUMN moderated BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN topic_lock BOOLEAN NULL,
    ADD COLUMN secret BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN join_key VARCHAR(64) NOT NULL DEFAULT '',
    ADD COLUMN member_limit BIGINT NOT NULL DEFAULT 0;
UPDATE rooms SET secret = private;

CREATE TABLE room_bans (
    room_key VARCHAR(64) NOT NULL,
    mask     VARCHAR(200) NOT NULL,
    set_by   VARCHAR(32) NOT NULL,
    set_at   BIGINT NOT NULL,
    PRIMARY KEY (room_key, mask)
) DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
