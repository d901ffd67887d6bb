-- Mentions and notifications: see migrations/sqlite/0006_notify.sql.
ALTER TABLE messages ADD COLUMN mentions TEXT;

CREATE TABLE notify_outbox (
    n          BIGSERIAL PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    channel    TEXT NOT NULL,
    target     TEXT NOT NULL DEFAULT '',
    body       TEXT NOT NULL,
    attempts   BIGINT NOT NULL DEFAULT 0,
    due_at     BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    last_error TEXT
);
CREATE INDEX notify_outbox_due ON notify_outbox (channel, due_at);

CREATE TABLE notify_state (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    until BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE push_subscriptions (
    id         CHAR(32) PRIMARY KEY,
    user_id    TEXT NOT NULL,
    endpoint   TEXT NOT NULL,
    p256dh     TEXT NOT NULL,
    auth       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id);
