-- Uploaded files: see migrations/sqlite/0005_uploads.sql.
CREATE TABLE uploads (
    id           CHAR(32) PRIMARY KEY,
    owner        VARCHAR(200) NOT NULL,
    name         VARCHAR(255) NOT NULL,
    content_type VARCHAR(255) NOT NULL,
    size         BIGINT NOT NULL,
    width        BIGINT,
    height       BIGINT,
    thumb        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   BIGINT NOT NULL,
    msg_id       CHAR(26),
    attached_at  BIGINT,
    KEY uploads_msg (msg_id),
    KEY uploads_created (created_at)
) DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
