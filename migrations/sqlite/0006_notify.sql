-- Mentions and notifications (issue 15).

-- The nicks a message mentions (`@nick`, users that existed when it was
-- sent), as a JSON list; NULL when it mentions nobody.
ALTER TABLE messages ADD COLUMN mentions TEXT;

-- The durable outbox: each notification (and, with notify.webhook_messages,
-- each stored message) is written here once, then delivered by a worker with
-- retries. `id` is the event's stable id (receivers dedupe on it; a second
-- insert of the same id is ignored); `n` orders delivery.
CREATE TABLE notify_outbox (
    n          INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    channel    TEXT NOT NULL,            -- 'webhook' or 'push'
    target     TEXT NOT NULL DEFAULT '', -- push: the subscription's id
    body       TEXT NOT NULL,            -- the event (webhook) or the push payload, JSON
    attempts   BIGINT NOT NULL DEFAULT 0,
    due_at     BIGINT NOT NULL,          -- ms since the epoch
    created_at BIGINT NOT NULL,
    last_error TEXT
);
CREATE INDEX notify_outbox_due ON notify_outbox (channel, due_at);

-- Small named values of the notifier: the decision cursor, the VAPID key,
-- the workers' leases (value = holder, until = expiry in ms).
CREATE TABLE notify_state (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    until BIGINT NOT NULL DEFAULT 0
);

-- Web Push subscriptions (POST /api/me/push).
CREATE TABLE push_subscriptions (
    id         CHAR(32) PRIMARY KEY,
    user_id    TEXT NOT NULL,
    endpoint   TEXT NOT NULL,
    p256dh     TEXT NOT NULL,
    auth       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id);
