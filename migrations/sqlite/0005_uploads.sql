-- Uploaded files (POST /api/uploads). The bytes live in the file storage
-- (uploads.dir or an S3 bucket) under the id; this row says what they are,
-- whose they are, and which message carries them (NULL until `say`). The
-- sweep removes rows (and files) never attached within uploads.unattached_ttl,
-- and those whose message was deleted or is gone.
CREATE TABLE uploads (
    id           CHAR(32) PRIMARY KEY,    -- 128 random bits, hex
    owner        TEXT NOT NULL,           -- user id of the uploader (see 0004)
    name         TEXT NOT NULL,           -- file name as sent, cleaned
    content_type TEXT NOT NULL,           -- sniffed from the bytes
    size         BIGINT NOT NULL,
    width        BIGINT,                  -- images only
    height       BIGINT,
    thumb        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   BIGINT NOT NULL,         -- ms since the epoch
    msg_id       CHAR(26),                -- the message carrying it
    attached_at  BIGINT
);
CREATE INDEX uploads_msg ON uploads (msg_id);
CREATE INDEX uploads_created ON uploads (created_at);
