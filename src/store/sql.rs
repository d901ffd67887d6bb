//! The SQL backends: SQLite (the embedded default), PostgreSQL and
//! MySQL/MariaDB, through sqlx. Every query is written once per dialect in
//! [`Dialect`], side by side, with bind parameters only; the code around
//! them is written once and expanded for each pool type by `on_pool!`.
//!
//! `seq` is assigned here, by the one writer task: the next number of each
//! conversation is cached after being read once from the database, so it
//! continues across restarts. A failed write forgets the cache, so that a
//! write whose outcome is unknown cannot make the next one collide.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row};
use ulid::Ulid;

use super::{HistoryQuery, NewMessage, Page, RoomRecord, StoreError};
use crate::config::DatabaseConfig;
use crate::protocol::server::{Conv, StoredMessage};

/// One dialect's SQL.
struct Dialect {
    /// `INSERT … INTO messages (…)`; `VALUES` rows follow.
    insert_messages: &'static str,
    last_seq: &'static str,
    /// Newest first: conv, below (exclusive), upto (inclusive), limit.
    page_down: &'static str,
    /// Oldest first: conv, above (exclusive), upto (inclusive), limit.
    page_up: &'static str,
    /// Oldest first: conv, from (inclusive ms), to (exclusive ms), limit.
    transcript: &'static str,
    message: &'static str,
    edit: &'static str,
    delete: &'static str,
    room: &'static str,
    /// name_key, name, topic, created_at: insert, or set the topic.
    upsert_topic: &'static str,
    /// nick_key, nick, at (created_at and last_seen).
    upsert_user: &'static str,
    last_seen: &'static str,
}

const SQLITE: Dialect = Dialect {
    insert_messages: "INSERT INTO messages (msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at) ",
    last_seq: "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conv = ?",
    page_down: "SELECT msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, edited_at, deleted \
                FROM messages WHERE conv = ? AND seq < ? AND seq <= ? ORDER BY seq DESC LIMIT ?",
    page_up: "SELECT msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, edited_at, deleted \
              FROM messages WHERE conv = ? AND seq > ? AND seq <= ? ORDER BY seq ASC LIMIT ?",
    transcript: "SELECT msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, edited_at, deleted \
                 FROM messages WHERE conv = ? AND sent_at >= ? AND sent_at < ? ORDER BY seq ASC LIMIT ?",
    message: "SELECT msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, edited_at, deleted \
              FROM messages WHERE msg_id = ?",
    edit: "UPDATE messages SET text = ?, edited_at = ? WHERE msg_id = ? AND deleted = FALSE",
    delete: "UPDATE messages SET text = '', deleted = TRUE WHERE msg_id = ?",
    room: "SELECT r.name, r.topic, (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conv = ?) \
           FROM rooms r WHERE r.name_key = ?",
    upsert_topic: "INSERT INTO rooms (name_key, name, topic, created_at) VALUES (?, ?, ?, ?) \
                   ON CONFLICT (name_key) DO UPDATE SET topic = excluded.topic",
    upsert_user: "INSERT INTO users (nick_key, nick, created_at, last_seen) VALUES (?, ?, ?, ?) \
                  ON CONFLICT (nick_key) DO UPDATE SET last_seen = excluded.last_seen",
    last_seen: "SELECT last_seen FROM users WHERE nick_key = ?",
};

const POSTGRES: Dialect = Dialect {
    insert_messages: "INSERT INTO messages (msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at) ",
    last_seq: "SELECT COALESCE(MAX(seq), 0)::BIGINT FROM messages WHERE conv = $1",
    page_down: "SELECT msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, edited_at, deleted \
                FROM messages WHERE conv = $1 AND seq < $2 AND seq <= $3 ORDER BY seq DESC LIMIT $4",
    page_up: "SELECT msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, edited_at, deleted \
              FROM messages WHERE conv = $1 AND seq > $2 AND seq <= $3 ORDER BY seq ASC LIMIT $4",
    transcript: "SELECT msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, edited_at, deleted \
                 FROM messages WHERE conv = $1 AND sent_at >= $2 AND sent_at < $3 ORDER BY seq ASC LIMIT $4",
    message: "SELECT msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, edited_at, deleted \
              FROM messages WHERE msg_id = $1",
    edit: "UPDATE messages SET text = $1, edited_at = $2 WHERE msg_id = $3 AND deleted = FALSE",
    delete: "UPDATE messages SET text = '', deleted = TRUE WHERE msg_id = $1",
    room: "SELECT r.name, r.topic, (SELECT COALESCE(MAX(seq), 0)::BIGINT FROM messages WHERE conv = $1) \
           FROM rooms r WHERE r.name_key = $2",
    upsert_topic: "INSERT INTO rooms (name_key, name, topic, created_at) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (name_key) DO UPDATE SET topic = excluded.topic",
    upsert_user: "INSERT INTO users (nick_key, nick, created_at, last_seen) VALUES ($1, $2, $3, $4) \
                  ON CONFLICT (nick_key) DO UPDATE SET last_seen = excluded.last_seen",
    last_seen: "SELECT last_seen FROM users WHERE nick_key = $1",
};

const MYSQL: Dialect = Dialect {
    insert_messages: "INSERT INTO messages (msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at) ",
    last_seq: "SELECT CAST(COALESCE(MAX(seq), 0) AS SIGNED) FROM messages WHERE conv = ?",
    page_down: "SELECT msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, edited_at, deleted \
                FROM messages WHERE conv = ? AND seq < ? AND seq <= ? ORDER BY seq DESC LIMIT ?",
    page_up: "SELECT msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, edited_at, deleted \
              FROM messages WHERE conv = ? AND seq > ? AND seq <= ? ORDER BY seq ASC LIMIT ?",
    transcript: "SELECT msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, edited_at, deleted \
                 FROM messages WHERE conv = ? AND sent_at >= ? AND sent_at < ? ORDER BY seq ASC LIMIT ?",
    message: "SELECT msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, edited_at, deleted \
              FROM messages WHERE msg_id = ?",
    edit: "UPDATE messages SET text = ?, edited_at = ? WHERE msg_id = ? AND deleted = FALSE",
    delete: "UPDATE messages SET text = '', deleted = TRUE WHERE msg_id = ?",
    room: "SELECT r.name, r.topic, (SELECT CAST(COALESCE(MAX(seq), 0) AS SIGNED) FROM messages WHERE conv = ?) \
           FROM rooms r WHERE r.name_key = ?",
    upsert_topic: "INSERT INTO rooms (name_key, name, topic, created_at) VALUES (?, ?, ?, ?) \
                   ON DUPLICATE KEY UPDATE topic = VALUES(topic)",
    upsert_user: "INSERT INTO users (nick_key, nick, created_at, last_seen) VALUES (?, ?, ?, ?) \
                  ON DUPLICATE KEY UPDATE last_seen = VALUES(last_seen)",
    last_seen: "SELECT last_seen FROM users WHERE nick_key = ?",
};

enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
    Mysql(MySqlPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool and `$sql` to its
/// dialect: the code is written once, type-checked for each backend.
macro_rules! on_pool {
    ($self:expr, |$pool:ident, $sql:ident| $body:expr) => {
        match &$self.pool {
            Pool::Sqlite($pool) => {
                let $sql = &SQLITE;
                $body
            }
            Pool::Postgres($pool) => {
                let $sql = &POSTGRES;
                $body
            }
            Pool::Mysql($pool) => {
                let $sql = &MYSQL;
                $body
            }
        }
    };
}

pub struct SqlStore {
    pool: Pool,
    /// Each conversation's latest `seq`, once read. Only the writer task
    /// appends, so the cache cannot race with another writer in this process.
    seqs: Mutex<HashMap<Conv, u64>>,
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl SqlStore {
    /// Connects (creating a SQLite file and its folder if needed) and
    /// applies the migrations.
    pub async fn open(config: &DatabaseConfig) -> Result<SqlStore, StoreError> {
        // memory:// is SQLite in memory, shared by the pool's connections
        // and kept while the pool keeps one open.
        let memory = config.url.starts_with("memory:");
        let memory_url = format!("sqlite:file:chat-{}?mode=memory&cache=shared", Ulid::generate());
        let url = if memory { memory_url.as_str() } else { config.url.as_str() };
        let timeout = Duration::from_secs(5);
        let max = config.max_connections;
        let pool = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(unavailable)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // WAL + NORMAL: a commit is in the WAL file when it returns,
                // so it survives the process being killed; an OS crash may
                // lose the newest commits (set FULL for that).
                .synchronous(if config.sqlite_full_sync { SqliteSynchronous::Full } else { SqliteSynchronous::Normal })
                .busy_timeout(config.busy_timeout);
            if let Some(dir) = options.get_filename().parent().filter(|d| !memory && !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(max)
                .min_connections(if memory { 1 } else { 0 })
                .idle_timeout(if memory { None } else { Some(Duration::from_secs(600)) })
                .max_lifetime(if memory { None } else { Some(Duration::from_secs(1800)) })
                .acquire_timeout(timeout)
                .connect_with(options)
                .await;
            Pool::Sqlite(pool.map_err(unavailable)?)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = PgPoolOptions::new().max_connections(max).acquire_timeout(timeout).connect(url).await;
            Pool::Postgres(pool.map_err(unavailable)?)
        } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
            let url = url.replacen("mariadb:", "mysql:", 1);
            let pool = MySqlPoolOptions::new().max_connections(max).acquire_timeout(timeout).connect(&url).await;
            Pool::Mysql(pool.map_err(unavailable)?)
        } else {
            return Err(StoreError::Unavailable(format!("unsupported database url `{url}`")));
        };
        let store = SqlStore { pool, seqs: Mutex::default() };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the migrations of `migrations/<backend>/` that are not applied yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let result = match &self.pool {
            Pool::Sqlite(p) => sqlx::migrate!("migrations/sqlite").run(p).await,
            Pool::Postgres(p) => sqlx::migrate!("migrations/postgres").run(p).await,
            Pool::Mysql(p) => sqlx::migrate!("migrations/mysql").run(p).await,
        };
        result.map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))
    }

    fn seqs(&self) -> std::sync::MutexGuard<'_, HashMap<Conv, u64>> {
        self.seqs.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn last_seq(&self, conv: &Conv) -> Result<u64, StoreError> {
        if let Some(seq) = self.seqs().get(conv) {
            return Ok(*seq);
        }
        let key = conv.storage_key();
        let seq: i64 = on_pool!(self, |pool, sql| {
            sqlx::query_scalar(sql.last_seq).bind(&key).fetch_one(pool).await.map_err(unavailable)?
        });
        Ok(seq as u64)
    }

    pub async fn append(&self, batch: Vec<NewMessage>) -> Result<Vec<StoredMessage>, StoreError> {
        // Read the latest seq of conversations not cached yet (no lock held
        // across the reads), then number the batch.
        let mut next: HashMap<Conv, u64> = HashMap::new();
        for m in &batch {
            if !next.contains_key(&m.conv) {
                next.insert(m.conv.clone(), self.last_seq(&m.conv).await?);
            }
        }
        let stored: Vec<StoredMessage> = batch
            .into_iter()
            .map(|m| {
                let seq = next.get_mut(&m.conv).map(|s| {
                    *s += 1;
                    *s
                });
                m.stored(seq.unwrap_or(1))
            })
            .collect();
        let result = on_pool!(self, |pool, sql| {
            let mut q = QueryBuilder::new(sql.insert_messages);
            q.push_values(&stored, |mut row, m| {
                row.push_bind(m.msg_id.to_string())
                    .push_bind(m.conv.storage_key())
                    .push_bind(m.seq as i64)
                    .push_bind(m.room.as_deref().map(str::to_owned))
                    .push_bind(m.from.to_string())
                    .push_bind(m.to.as_deref().map(str::to_owned))
                    .push_bind(m.text.clone())
                    .push_bind(serde_json::to_string(&m.attachments).unwrap_or_else(|_| "[]".into()))
                    .push_bind(m.sent_at);
            });
            q.build().execute(pool).await.map(|_| ())
        });
        match result {
            Ok(()) => {
                self.seqs().extend(next);
                Ok(stored)
            }
            Err(e) => {
                // The write may or may not have happened: read the seqs anew.
                self.seqs().clear();
                Err(unavailable(e))
            }
        }
    }

    pub async fn history(&self, conv: &Conv, q: HistoryQuery) -> Result<Page, StoreError> {
        let key = conv.storage_key();
        let upto = q.upto.map_or(i64::MAX, |u| u.min(i64::MAX as u64) as i64);
        let fetch = q.limit as i64 + 1;
        let (up, bound) = match q.after {
            Some(after) => (true, after.min(i64::MAX as u64) as i64),
            None => (false, q.before.map_or(i64::MAX, |b| b.min(i64::MAX as u64) as i64)),
        };
        let mut messages: Vec<StoredMessage> = on_pool!(self, |pool, sql| {
            let rows = sqlx::query(if up { sql.page_up } else { sql.page_down })
                .bind(&key)
                .bind(bound)
                .bind(upto)
                .bind(fetch)
                .fetch_all(pool)
                .await
                .map_err(unavailable)?;
            rows.iter().map(|r| decode(r)).collect::<Result<_, _>>()?
        });
        let more = messages.len() > q.limit;
        messages.truncate(q.limit);
        if !up {
            messages.reverse();
        }
        Ok(Page { messages, more })
    }

    pub async fn transcript(&self, conv: &Conv, from: i64, to: i64, limit: usize) -> Result<Page, StoreError> {
        let key = conv.storage_key();
        let mut messages: Vec<StoredMessage> = on_pool!(self, |pool, sql| {
            let rows = sqlx::query(sql.transcript)
                .bind(&key)
                .bind(from)
                .bind(to)
                .bind(limit as i64 + 1)
                .fetch_all(pool)
                .await
                .map_err(unavailable)?;
            rows.iter().map(|r| decode(r)).collect::<Result<_, _>>()?
        });
        let more = messages.len() > limit;
        messages.truncate(limit);
        Ok(Page { messages, more })
    }

    pub async fn message(&self, msg_id: Ulid) -> Result<Option<StoredMessage>, StoreError> {
        let id = msg_id.to_string();
        on_pool!(self, |pool, sql| {
            let row = sqlx::query(sql.message).bind(&id).fetch_optional(pool).await.map_err(unavailable)?;
            row.as_ref().map(|r| decode(r)).transpose()
        })
    }

    pub async fn edit(&self, msg_id: Ulid, text: &str, at: i64) -> Result<Option<StoredMessage>, StoreError> {
        let id = msg_id.to_string();
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.edit).bind(text).bind(at).bind(&id).execute(pool).await.map_err(unavailable)?;
        });
        self.message(msg_id).await
    }

    pub async fn delete(&self, msg_id: Ulid) -> Result<Option<StoredMessage>, StoreError> {
        let id = msg_id.to_string();
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.delete).bind(&id).execute(pool).await.map_err(unavailable)?;
        });
        self.message(msg_id).await
    }

    pub async fn room(&self, key: &str) -> Result<Option<RoomRecord>, StoreError> {
        let conv = Conv::Room(key.into());
        let record = on_pool!(self, |pool, sql| {
            let row = sqlx::query(sql.room)
                .bind(conv.storage_key())
                .bind(key)
                .fetch_optional(pool)
                .await
                .map_err(unavailable)?;
            match row {
                Some(r) => Some(RoomRecord {
                    name: r.try_get::<String, _>(0).map_err(unavailable)?.into(),
                    topic: r.try_get::<String, _>(1).map_err(unavailable)?.into(),
                    last_seq: r.try_get::<i64, _>(2).map_err(unavailable)? as u64,
                }),
                None => None,
            }
        });
        if record.is_some() {
            return Ok(record);
        }
        // Rooms used before this table knew them: messages alone.
        let last_seq = self.last_seq(&conv).await?;
        Ok((last_seq > 0).then(|| RoomRecord { name: key.into(), topic: "".into(), last_seq }))
    }

    pub async fn set_topic(&self, key: &str, name: &str, topic: &str) -> Result<(), StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.upsert_topic)
                .bind(key)
                .bind(name)
                .bind(topic)
                .bind(crate::protocol::now_ms())
                .execute(pool)
                .await
                .map_err(unavailable)?;
        });
        Ok(())
    }

    pub async fn user_seen(&self, nick: &str, at: i64) -> Result<(), StoreError> {
        let key = nick.to_ascii_lowercase();
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.upsert_user)
                .bind(&key)
                .bind(nick)
                .bind(at)
                .bind(at)
                .execute(pool)
                .await
                .map_err(unavailable)?;
        });
        Ok(())
    }

    pub async fn last_seen(&self, nick_key: &str) -> Result<Option<i64>, StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query_scalar(sql.last_seen).bind(nick_key).fetch_optional(pool).await.map_err(unavailable)
        })
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, |pool, _sql| sqlx::query("SELECT 1").execute(pool).await.map(|_| ()).map_err(unavailable))
    }

    /// Which backend this is, for logs.
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
            Pool::Mysql(_) => "mysql",
        }
    }
}

/// A `messages` row (columns in the order the queries select them) as a [`StoredMessage`].
fn decode<R: Row>(r: &R) -> Result<StoredMessage, StoreError>
where
    usize: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    bool: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let bad = |what: &str| StoreError::Unavailable(format!("bad {what} in the messages table"));
    let get_s = |i: usize| r.try_get::<String, _>(i).map_err(unavailable);
    let msg_id = Ulid::from_string(get_s(0)?.trim()).map_err(|_| bad("msg_id"))?;
    let conv = Conv::from_storage_key(&get_s(1)?).ok_or_else(|| bad("conv"))?;
    let attachments = serde_json::from_str(&get_s(7)?).map_err(|_| bad("attachments"))?;
    Ok(StoredMessage {
        msg_id,
        conv,
        seq: r.try_get::<i64, _>(2).map_err(unavailable)? as u64,
        room: r.try_get::<Option<String>, _>(3).map_err(unavailable)?.map(Into::into),
        from: get_s(4)?.into(),
        to: r.try_get::<Option<String>, _>(5).map_err(unavailable)?.map(Into::into),
        text: get_s(6)?,
        attachments,
        sent_at: r.try_get::<i64, _>(8).map_err(unavailable)?,
        edited_at: r.try_get::<Option<i64>, _>(9).map_err(unavailable)?,
        deleted: r.try_get::<bool, _>(10).map_err(unavailable)?,
    })
}
