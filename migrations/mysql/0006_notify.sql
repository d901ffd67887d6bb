-- Mentions and notifications: see migrations/sqlite/0006_notify.sql.
ALTER TABLE messages ADD COLUMN mentions TEXT;

CREATE TABLE notify_outbox (
    n          BIGINT AUTO_INCREMENT PRIMARY KEY,
    id         VARCHAR(255) NOT NULL,
    channel    VARCHAR(16) NOT NULL,
    target     VARCHAR(64) NOT NULL DEFAULT '',
    body       MEDIUMTEXT NOT NULL,
    attempts   BIGINT NOT NULL DEFAULT 0,
    due_at     BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    last_error TEXT,
    UNIQUE KEY notify_outbox_id (id),
    KEY notify_outbox_due (channel, due_at)
) DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE notify_state (
    name  VARCHAR(64) PRIMARY KEY,
    value TEXT NOT NULL,
    until BIGINT NOT NULL DEFAULT 0
) DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE push_subscriptions (
    id         CHAR(32) PRIMARY KEY,
    user_id    VARCHAR(200) NOT NULL,
    endpoint   TEXT NOT NULL,
    p256dh     VARCHAR(200) NOT NULL,
    auth       VARCHAR(200) NOT NULL,
    created_at BIGINT NOT NULL,
    KEY push_subscriptions_user (user_id)
) DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
