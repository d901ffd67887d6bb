//! The notifier's tables (migration 0006): the durable outbox, small named
//! values (the decision cursor, the VAPID key, the workers' leases), Web
//! Push subscriptions, and the reads the decision needs (messages after a
//! cursor, the members of a room who want every message).

use sqlx::{QueryBuilder, Row};
use ulid::Ulid;

use super::{Pool, SqlStore};
use crate::protocol::server::StoredMessage;
use crate::store::StoreError;
use crate::store::error::{Context, Corrupt};

/// One notification (or streamed message) waiting in the outbox.
#[derive(Clone, Debug)]
pub(crate) struct OutboxRow {
    /// Delivery order.
    pub(crate) n: i64,
    /// The event's stable id.
    pub(crate) id: String,
    /// Push: the subscription's id.
    pub(crate) target: String,
    pub(crate) body: String,
    pub(crate) attempts: i64,
}

/// A row to write into the outbox.
pub(crate) struct NewOutbox {
    pub(crate) id: String,
    pub(crate) channel: &'static str,
    pub(crate) target: String,
    pub(crate) body: String,
}

/// A Web Push subscription.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PushSubscription {
    pub(crate) id: String,
    pub(crate) user_id: String,
    pub(crate) endpoint: String,
    pub(crate) p256dh: String,
    pub(crate) auth: String,
}

/// A user row the decision reads: its nick, owner id and settings.
pub(crate) struct Wanting {
    pub(crate) nick: String,
    pub(crate) owner: String,
    pub(crate) settings: String,
}

struct Sql {
    insert_prefix: &'static str,
    insert_suffix: &'static str,
    due: &'static str,
    retry: &'static str,
    state: &'static str,
    state_put: &'static str,
    state_insert: &'static str,
    lease: &'static str,
    after: &'static str,
    all_in_room: &'static str,
    all_users: &'static str,
    insert_sub: &'static str,
    subs_of: &'static str,
    sub: &'static str,
    delete_sub: &'static str,
    delete_sub_rows: &'static str,
}

/// Outbox rows in one `INSERT`: 6 bound values each, well under SQLite's
/// 32,766 and PostgreSQL's and MySQL's 65,535 bound values per statement
/// (a cluster batch of 1,000 messages may decide tens of thousands of rows).
const OUTBOX_ROWS_PER_STATEMENT: usize = 1_000;

const SQLITE: Sql = Sql {
    insert_prefix: "INSERT OR IGNORE INTO notify_outbox (id, channel, target, body, due_at, created_at) ",
    insert_suffix: "",
    due: "SELECT n, id, target, body, attempts FROM notify_outbox WHERE channel = ? AND due_at <= ? ORDER BY n LIMIT ?",
    retry: "UPDATE notify_outbox SET attempts = attempts + 1, due_at = ?, last_error = ? WHERE n = ?",
    state: "SELECT value, until FROM notify_state WHERE name = ?",
    state_put: "INSERT INTO notify_state (name, value, until) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value, until = excluded.until",
    state_insert: "INSERT OR IGNORE INTO notify_state (name, value, until) VALUES (?, ?, ?)",
    lease: "UPDATE notify_state SET value = ?, until = ? WHERE name = ? AND (value = ? OR until < ?)",
    after: concat!("SELECT ", message_columns!(), "WHERE m.msg_id > ? ORDER BY m.msg_id LIMIT ?"),
    all_in_room: "SELECT u.nick, u.owner, u.settings FROM room_members m JOIN users u ON u.owner = m.member WHERE m.room_key = ? AND u.settings LIKE '%\"all\"%'",
    all_users: "SELECT nick, owner, settings FROM users WHERE owner IS NOT NULL AND settings LIKE '%\"all\"%' LIMIT ?",
    insert_sub: "INSERT INTO push_subscriptions (id, user_id, endpoint, p256dh, auth, created_at) VALUES (?, ?, ?, ?, ?, ?)",
    subs_of: "SELECT id, user_id, endpoint, p256dh, auth FROM push_subscriptions WHERE user_id = ? ORDER BY created_at, id",
    sub: "SELECT id, user_id, endpoint, p256dh, auth FROM push_subscriptions WHERE id = ?",
    delete_sub: "DELETE FROM push_subscriptions WHERE id = ?",
    delete_sub_rows: "DELETE FROM notify_outbox WHERE channel = 'push' AND target = ?",
};

const POSTGRES: Sql = Sql {
    insert_prefix: "INSERT INTO notify_outbox (id, channel, target, body, due_at, created_at) ",
    insert_suffix: " ON CONFLICT (id) DO NOTHING",
    due: "SELECT n, id, target, body, attempts FROM notify_outbox WHERE channel = $1 AND due_at <= $2 ORDER BY n LIMIT $3",
    retry: "UPDATE notify_outbox SET attempts = attempts + 1, due_at = $1, last_error = $2 WHERE n = $3",
    state: "SELECT value, until FROM notify_state WHERE name = $1",
    state_put: "INSERT INTO notify_state (name, value, until) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET value = excluded.value, until = excluded.until",
    state_insert: "INSERT INTO notify_state (name, value, until) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
    lease: "UPDATE notify_state SET value = $1, until = $2 WHERE name = $3 AND (value = $4 OR until < $5)",
    after: concat!("SELECT ", message_columns!(), "WHERE m.msg_id > $1 ORDER BY m.msg_id LIMIT $2"),
    all_in_room: "SELECT u.nick, u.owner, u.settings FROM room_members m JOIN users u ON u.owner = m.member WHERE m.room_key = $1 AND u.settings LIKE '%\"all\"%'",
    all_users: "SELECT nick, owner, settings FROM users WHERE owner IS NOT NULL AND settings LIKE '%\"all\"%' LIMIT $1",
    insert_sub: "INSERT INTO push_subscriptions (id, user_id, endpoint, p256dh, auth, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    subs_of: "SELECT id, user_id, endpoint, p256dh, auth FROM push_subscriptions WHERE user_id = $1 ORDER BY created_at, id",
    sub: "SELECT id, user_id, endpoint, p256dh, auth FROM push_subscriptions WHERE id = $1",
    delete_sub: "DELETE FROM push_subscriptions WHERE id = $1",
    delete_sub_rows: "DELETE FROM notify_outbox WHERE channel = 'push' AND target = $1",
};

const MYSQL: Sql = Sql {
    insert_prefix: "INSERT IGNORE INTO notify_outbox (id, channel, target, body, due_at, created_at) ",
    insert_suffix: "",
    due: SQLITE.due,
    retry: SQLITE.retry,
    state: SQLITE.state,
    state_put: "INSERT INTO notify_state (name, value, until) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE value = VALUES(value), until = VALUES(until)",
    state_insert: "INSERT IGNORE INTO notify_state (name, value, until) VALUES (?, ?, ?)",
    lease: SQLITE.lease,
    after: SQLITE.after,
    all_in_room: SQLITE.all_in_room,
    all_users: SQLITE.all_users,
    insert_sub: SQLITE.insert_sub,
    subs_of: SQLITE.subs_of,
    sub: SQLITE.sub,
    delete_sub: SQLITE.delete_sub,
    delete_sub_rows: SQLITE.delete_sub_rows,
};

impl SqlStore {
    fn nsql(&self) -> &'static Sql {
        match self.pool {
            Pool::Sqlite(_) => &SQLITE,
            Pool::Postgres(_) => &POSTGRES,
            Pool::Mysql(_) => &MYSQL,
        }
    }

    /// Writes outbox rows, [`OUTBOX_ROWS_PER_STATEMENT`] per statement; a
    /// row whose id is there already is skipped (a decision made twice
    /// writes each event once, so a batch cut short by an error can be
    /// written again whole).
    pub(crate) async fn outbox_put(&self, rows: &[NewOutbox], now: i64) -> Result<(), StoreError> {
        let n = self.nsql();
        for rows in rows.chunks(OUTBOX_ROWS_PER_STATEMENT) {
            on_pool!(self, |pool, _sql| {
                let mut q = QueryBuilder::new(n.insert_prefix);
                q.push_values(rows, |mut b, r| {
                    b.push_bind(r.id.clone())
                        .push_bind(r.channel)
                        .push_bind(r.target.clone())
                        .push_bind(r.body.clone())
                        .push_bind(now)
                        .push_bind(now);
                });
                q.push(n.insert_suffix);
                q.build().execute(pool).await.context("writing notifications")?;
            });
        }
        Ok(())
    }

    /// The oldest rows of `channel` due at `now`, in delivery order.
    pub(crate) async fn outbox_due(&self, channel: &str, now: i64, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        let n = self.nsql();
        on_pool!(self, |pool, _sql| {
            let rows = sqlx::query(n.due)
                .bind(channel)
                .bind(now)
                .bind(limit as i64)
                .fetch_all(pool)
                .await
                .context("reading the outbox")?;
            rows.iter()
                .map(|r| {
                    Ok(OutboxRow {
                        n: r.try_get(0).corrupt("notify_outbox", "n")?,
                        id: r.try_get(1).corrupt("notify_outbox", "id")?,
                        target: r.try_get(2).corrupt("notify_outbox", "target")?,
                        body: r.try_get(3).corrupt("notify_outbox", "body")?,
                        attempts: r.try_get(4).corrupt("notify_outbox", "attempts")?,
                    })
                })
                .collect()
        })
    }

    /// Removes delivered (or dropped) rows.
    pub(crate) async fn outbox_done(&self, ns: &[i64]) -> Result<(), StoreError> {
        if ns.is_empty() {
            return Ok(());
        }
        on_pool!(self, |pool, _sql| {
            let mut q = QueryBuilder::new("DELETE FROM notify_outbox WHERE n IN (");
            let mut list = q.separated(", ");
            for n in ns {
                list.push_bind(*n);
            }
            q.push(")");
            q.build().execute(pool).await.context("removing delivered notifications")?;
        });
        Ok(())
    }

    /// Counts a failed attempt of row `n`; it is due again at `due_at`.
    pub(crate) async fn outbox_retry(&self, row: i64, due_at: i64, error: &str) -> Result<(), StoreError> {
        let n = self.nsql();
        on_pool!(self, |pool, _sql| {
            sqlx::query(n.retry)
                .bind(due_at)
                .bind(error)
                .bind(row)
                .execute(pool)
                .await
                .context("recording a failed notification")?;
        });
        Ok(())
    }

    /// A named value and its `until`.
    pub(crate) async fn notify_state(&self, name: &str) -> Result<Option<(String, i64)>, StoreError> {
        let n = self.nsql();
        on_pool!(self, |pool, _sql| {
            let row = sqlx::query(n.state).bind(name).fetch_optional(pool).await.context("reading notify state")?;
            row.map(|r| {
                Ok((r.try_get(0).corrupt("notify_state", "value")?, r.try_get(1).corrupt("notify_state", "until")?))
            })
            .transpose()
        })
    }

    /// Sets a named value.
    pub(crate) async fn set_notify_state(&self, name: &str, value: &str) -> Result<(), StoreError> {
        let n = self.nsql();
        on_pool!(self, |pool, _sql| {
            sqlx::query(n.state_put)
                .bind(name)
                .bind(value)
                .bind(0i64)
                .execute(pool)
                .await
                .context("writing notify state")?;
        });
        Ok(())
    }

    /// Keeps `value` under `name` unless a value is there already; returns
    /// the value that is there now (the first writer's, in a cluster).
    pub(crate) async fn notify_state_once(&self, name: &str, value: &str) -> Result<String, StoreError> {
        let n = self.nsql();
        on_pool!(self, |pool, _sql| {
            sqlx::query(n.state_insert)
                .bind(name)
                .bind(value)
                .bind(0i64)
                .execute(pool)
                .await
                .context("writing notify state")?;
        });
        Ok(self.notify_state(name).await?.map(|(v, _)| v).unwrap_or_default())
    }

    /// Takes or renews the lease `name` for `holder` until `until`: true if
    /// `holder` has it now (it had it, or the last holder's ran out).
    pub(crate) async fn lease(&self, name: &str, holder: &str, now: i64, until: i64) -> Result<bool, StoreError> {
        let n = self.nsql();
        on_pool!(self, |pool, _sql| {
            sqlx::query(n.state_insert).bind(name).bind("").bind(0i64).execute(pool).await.context("taking a lease")?;
            let r = sqlx::query(n.lease)
                .bind(holder)
                .bind(until)
                .bind(name)
                .bind(holder)
                .bind(now)
                .execute(pool)
                .await
                .context("taking a lease")?;
            Ok(r.rows_affected() > 0)
        })
    }

    /// Stored messages whose id sorts after `after`, in id order (a ULID
    /// begins with its time: the replay of the decision after a crash).
    pub(crate) async fn messages_after(&self, after: Ulid, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        let n = self.nsql();
        let after = after.to_string();
        on_pool!(self, |pool, _sql| {
            let rows = sqlx::query(n.after)
                .bind(&after)
                .bind(limit as i64)
                .fetch_all(pool)
                .await
                .context("reading messages to decide")?;
            rows.iter().map(super::messages::decode).collect()
        })
    }

    /// The users who want every message (`settings.notify = "all"`,
    /// roughly: the caller reads the settings): the members of a room, or
    /// everyone (at most `limit`).
    pub(crate) async fn wanting_all(&self, room_key: Option<&str>, limit: usize) -> Result<Vec<Wanting>, StoreError> {
        let n = self.nsql();
        on_pool!(self, |pool, _sql| {
            let rows = match room_key {
                Some(room) => sqlx::query(n.all_in_room).bind(room).fetch_all(pool).await,
                None => sqlx::query(n.all_users).bind(limit as i64).fetch_all(pool).await,
            }
            .context("reading who wants every message")?;
            rows.iter()
                .map(|r| {
                    Ok(Wanting {
                        nick: r.try_get(0).corrupt("users", "nick")?,
                        owner: r.try_get(1).corrupt("users", "owner")?,
                        settings: r.try_get(2).corrupt("users", "settings")?,
                    })
                })
                .collect()
        })
    }

    pub(crate) async fn add_subscription(&self, s: &PushSubscription, now: i64) -> Result<(), StoreError> {
        let n = self.nsql();
        on_pool!(self, |pool, _sql| {
            sqlx::query(n.insert_sub)
                .bind(&s.id)
                .bind(&s.user_id)
                .bind(&s.endpoint)
                .bind(&s.p256dh)
                .bind(&s.auth)
                .bind(now)
                .execute(pool)
                .await
                .context("adding a push subscription")?;
        });
        Ok(())
    }

    /// A user's subscriptions, oldest first.
    pub(crate) async fn subscriptions(&self, user_id: &str) -> Result<Vec<PushSubscription>, StoreError> {
        let n = self.nsql();
        on_pool!(self, |pool, _sql| {
            let rows =
                sqlx::query(n.subs_of).bind(user_id).fetch_all(pool).await.context("reading push subscriptions")?;
            rows.iter().map(sub_row).collect()
        })
    }

    pub(crate) async fn subscription(&self, id: &str) -> Result<Option<PushSubscription>, StoreError> {
        let n = self.nsql();
        on_pool!(self, |pool, _sql| {
            let row = sqlx::query(n.sub).bind(id).fetch_optional(pool).await.context("reading a push subscription")?;
            row.as_ref().map(sub_row).transpose()
        })
    }

    /// Removes a subscription and the pushes still waiting for it.
    pub(crate) async fn remove_subscription(&self, id: &str) -> Result<(), StoreError> {
        let n = self.nsql();
        on_pool!(self, |pool, _sql| {
            sqlx::query(n.delete_sub).bind(id).execute(pool).await.context("removing a push subscription")?;
            sqlx::query(n.delete_sub_rows).bind(id).execute(pool).await.context("removing a push subscription")?;
        });
        Ok(())
    }
}

fn sub_row<R: Row>(r: &R) -> Result<PushSubscription, StoreError>
where
    usize: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let get = |i: usize, what| r.try_get::<String, _>(i).corrupt("push_subscriptions", what);
    Ok(PushSubscription {
        id: get(0, "id")?.trim().to_owned(),
        user_id: get(1, "user_id")?,
        endpoint: get(2, "endpoint")?,
        p256dh: get(3, "p256dh")?,
        auth: get(4, "auth")?,
    })
}
