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

use super::{Account, HistoryQuery, NewMessage, Page, ProfileUpdate, Role, RoomRecord, StoreError};
use crate::config::DatabaseConfig;
use crate::protocol::server::{Conv, StoredMessage};

/// One dialect's SQL.
struct Dialect {
    /// `INSERT … INTO messages (…)`; `VALUES` rows follow.
    insert_messages: &'static str,
    /// The same, skipping rows whose `msg_id` (or conv and seq) is stored
    /// already: `archive_prefix`, the rows, then `archive_suffix`.
    archive_prefix: &'static str,
    archive_suffix: &'static str,
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
    /// nick_key → the users row.
    account: &'static str,
    /// Registers a nick that was only seen as a guest: hash, nick, nick_key.
    claim_account: &'static str,
    /// nick_key, nick, password_hash, created_at, last_seen.
    insert_account: &'static str,
    /// display_name, status, avatar, settings (each NULL = unchanged), nick_key.
    update_profile: &'static str,
    /// token_hash, nick_key, created_at, expires_at.
    insert_session: &'static str,
    /// owner, nick_key: claims a nick nobody owns yet.
    claim_owner: &'static str,
    /// token_hash, now → nick_key.
    session_user: &'static str,
    /// name_key, name, topic, private, managed, created_at.
    insert_room: &'static str,
    /// name_key.
    delete_room: &'static str,
    /// conv: a destroyed room's messages.
    delete_messages: &'static str,
    /// room_key.
    delete_members: &'static str,
    /// room_key, nick_key, role.
    upsert_member: &'static str,
    /// room_key, nick_key.
    remove_member: &'static str,
    /// room_key, nick_key → role.
    member_role: &'static str,
    /// room_key → (nick_key, role) rows.
    room_members: &'static str,
    /// every named room.
    list_rooms: &'static str,
    /// id, pending member: hands a pending grant to the id (a room where
    /// the id is a member already keeps the id's own row).
    claim_grants: &'static str,
    /// member: any row (a pending grant reserves its nick).
    has_member_rows: &'static str,
    /// member: every row of it.
    delete_member_rows: &'static str,
    /// owner id → its account row (the same columns as `account`).
    account_by_id: &'static str,
    /// expires_at, user_id.
    expire_sessions: &'static str,
    /// nick key, now → a live guest session holding the nick.
    guest_holder: &'static str,
    /// now: forget expired sessions.
    delete_expired_sessions: &'static str,
    /// owner id → the nick it used last.
    nick_of_owner: &'static str,
    /// until, now: every live guest token ends at `until` at the latest.
    end_guest_sessions: &'static str,
}

const SQLITE: Dialect = Dialect {
    insert_messages: "INSERT INTO messages (msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, sender_id) ",
    archive_prefix: "INSERT OR IGNORE INTO messages (msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, sender_id) ",
    archive_suffix: "",
    last_seq: "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conv = ?",
    page_down: "SELECT msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, edited_at, deleted, sender_id \
                FROM messages WHERE conv = ? AND seq < ? AND seq <= ? ORDER BY seq DESC LIMIT ?",
    page_up: "SELECT msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, edited_at, deleted, sender_id \
              FROM messages WHERE conv = ? AND seq > ? AND seq <= ? ORDER BY seq ASC LIMIT ?",
    transcript: "SELECT msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, edited_at, deleted, sender_id \
                 FROM messages WHERE conv = ? AND sent_at >= ? AND sent_at < ? ORDER BY seq ASC LIMIT ?",
    message: "SELECT msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, edited_at, deleted, sender_id \
              FROM messages WHERE msg_id = ?",
    edit: "UPDATE messages SET text = ?, edited_at = ? WHERE msg_id = ? AND deleted = FALSE",
    delete: "UPDATE messages SET text = '', deleted = TRUE WHERE msg_id = ?",
    room: "SELECT r.name, r.topic, (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conv = ?), r.private, r.managed \
           FROM rooms r WHERE r.name_key = ?",
    upsert_topic: "INSERT INTO rooms (name_key, name, topic, created_at) VALUES (?, ?, ?, ?) \
                   ON CONFLICT (name_key) DO UPDATE SET topic = excluded.topic",
    upsert_user: "INSERT INTO users (nick_key, nick, created_at, last_seen) VALUES (?, ?, ?, ?) \
                  ON CONFLICT (nick_key) DO UPDATE SET last_seen = excluded.last_seen",
    last_seen: "SELECT last_seen FROM users WHERE nick_key = ?",
    account: "SELECT nick, display_name, status, avatar, settings, password_hash, created_at, last_seen, owner FROM users WHERE nick_key = ?",
    claim_account: "UPDATE users SET password_hash = ?, nick = ?, owner = ? WHERE nick_key = ? AND password_hash IS NULL AND owner IS NULL",
    insert_account: "INSERT INTO users (nick_key, nick, password_hash, created_at, last_seen, owner) VALUES (?, ?, ?, ?, ?, ?)",
    update_profile: "UPDATE users SET display_name = COALESCE(?, display_name), status = COALESCE(?, status), avatar = COALESCE(?, avatar), settings = COALESCE(?, settings) WHERE nick_key = ?",
    insert_session: "INSERT INTO auth_sessions (token_hash, user_id, nick, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
    claim_owner: "UPDATE users SET owner = ? WHERE nick_key = ? AND owner IS NULL",
    session_user: "SELECT user_id, nick FROM auth_sessions WHERE token_hash = ? AND expires_at > ?",
    insert_room: "INSERT INTO rooms (name_key, name, topic, private, managed, created_at) VALUES (?, ?, ?, ?, ?, ?)",
    delete_room: "DELETE FROM rooms WHERE name_key = ?",
    delete_messages: "DELETE FROM messages WHERE conv = ?",
    delete_members: "DELETE FROM room_members WHERE room_key = ?",
    upsert_member: "INSERT INTO room_members (room_key, member, role) VALUES (?, ?, ?) ON CONFLICT (room_key, member) DO UPDATE SET role = excluded.role",
    remove_member: "DELETE FROM room_members WHERE room_key = ? AND member = ?",
    member_role: "SELECT role FROM room_members WHERE room_key = ? AND member = ?",
    room_members: "SELECT member, role FROM room_members WHERE room_key = ? ORDER BY member",
    list_rooms: "SELECT name, topic, private, managed FROM rooms ORDER BY name_key",
    claim_grants: "UPDATE OR IGNORE room_members SET member = ? WHERE member = ?",
    has_member_rows: "SELECT COUNT(*) FROM room_members WHERE member = ?",
    delete_member_rows: "DELETE FROM room_members WHERE member = ?",
    account_by_id: "SELECT nick, display_name, status, avatar, settings, password_hash, created_at, last_seen, owner FROM users WHERE owner = ? AND password_hash IS NOT NULL",
    expire_sessions: "UPDATE auth_sessions SET expires_at = ? WHERE user_id = ?",
    guest_holder: "SELECT user_id FROM auth_sessions WHERE LOWER(nick) = ? AND expires_at > ? AND user_id LIKE 'g-%' ORDER BY expires_at DESC LIMIT 1",
    delete_expired_sessions: "DELETE FROM auth_sessions WHERE expires_at <= ?",
    nick_of_owner: "SELECT nick FROM users WHERE owner = ? ORDER BY last_seen DESC LIMIT 1",
    end_guest_sessions: "UPDATE auth_sessions SET expires_at = ? WHERE user_id LIKE 'g-%' AND expires_at > ?",
};

const POSTGRES: Dialect = Dialect {
    insert_messages: "INSERT INTO messages (msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, sender_id) ",
    archive_prefix: "INSERT INTO messages (msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, sender_id) ",
    archive_suffix: " ON CONFLICT DO NOTHING",
    last_seq: "SELECT COALESCE(MAX(seq), 0)::BIGINT FROM messages WHERE conv = $1",
    page_down: "SELECT msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, edited_at, deleted, sender_id \
                FROM messages WHERE conv = $1 AND seq < $2 AND seq <= $3 ORDER BY seq DESC LIMIT $4",
    page_up: "SELECT msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, edited_at, deleted, sender_id \
              FROM messages WHERE conv = $1 AND seq > $2 AND seq <= $3 ORDER BY seq ASC LIMIT $4",
    transcript: "SELECT msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, edited_at, deleted, sender_id \
                 FROM messages WHERE conv = $1 AND sent_at >= $2 AND sent_at < $3 ORDER BY seq ASC LIMIT $4",
    message: "SELECT msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, edited_at, deleted, sender_id \
              FROM messages WHERE msg_id = $1",
    edit: "UPDATE messages SET text = $1, edited_at = $2 WHERE msg_id = $3 AND deleted = FALSE",
    delete: "UPDATE messages SET text = '', deleted = TRUE WHERE msg_id = $1",
    room: "SELECT r.name, r.topic, (SELECT COALESCE(MAX(seq), 0)::BIGINT FROM messages WHERE conv = $1), r.private, r.managed \
           FROM rooms r WHERE r.name_key = $2",
    upsert_topic: "INSERT INTO rooms (name_key, name, topic, created_at) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (name_key) DO UPDATE SET topic = excluded.topic",
    upsert_user: "INSERT INTO users (nick_key, nick, created_at, last_seen) VALUES ($1, $2, $3, $4) \
                  ON CONFLICT (nick_key) DO UPDATE SET last_seen = excluded.last_seen",
    last_seen: "SELECT last_seen FROM users WHERE nick_key = $1",
    account: "SELECT nick, display_name, status, avatar, settings, password_hash, created_at, last_seen, owner FROM users WHERE nick_key = $1",
    claim_account: "UPDATE users SET password_hash = $1, nick = $2, owner = $3 WHERE nick_key = $4 AND password_hash IS NULL AND owner IS NULL",
    insert_account: "INSERT INTO users (nick_key, nick, password_hash, created_at, last_seen, owner) VALUES ($1, $2, $3, $4, $5, $6)",
    update_profile: "UPDATE users SET display_name = COALESCE($1, display_name), status = COALESCE($2, status), avatar = COALESCE($3, avatar), settings = COALESCE($4, settings) WHERE nick_key = $5",
    insert_session: "INSERT INTO auth_sessions (token_hash, user_id, nick, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    claim_owner: "UPDATE users SET owner = $1 WHERE nick_key = $2 AND owner IS NULL",
    session_user: "SELECT user_id, nick FROM auth_sessions WHERE token_hash = $1 AND expires_at > $2",
    insert_room: "INSERT INTO rooms (name_key, name, topic, private, managed, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    delete_room: "DELETE FROM rooms WHERE name_key = $1",
    delete_messages: "DELETE FROM messages WHERE conv = $1",
    delete_members: "DELETE FROM room_members WHERE room_key = $1",
    upsert_member: "INSERT INTO room_members (room_key, member, role) VALUES ($1, $2, $3) ON CONFLICT (room_key, member) DO UPDATE SET role = excluded.role",
    remove_member: "DELETE FROM room_members WHERE room_key = $1 AND member = $2",
    member_role: "SELECT role FROM room_members WHERE room_key = $1 AND member = $2",
    room_members: "SELECT member, role FROM room_members WHERE room_key = $1 ORDER BY member",
    list_rooms: "SELECT name, topic, private, managed FROM rooms ORDER BY name_key",
    claim_grants: "UPDATE room_members SET member = $1 WHERE member = $2 AND NOT EXISTS (SELECT 1 FROM room_members r2 WHERE r2.room_key = room_members.room_key AND r2.member = $1)",
    has_member_rows: "SELECT COUNT(*) FROM room_members WHERE member = $1",
    delete_member_rows: "DELETE FROM room_members WHERE member = $1",
    account_by_id: "SELECT nick, display_name, status, avatar, settings, password_hash, created_at, last_seen, owner FROM users WHERE owner = $1 AND password_hash IS NOT NULL",
    expire_sessions: "UPDATE auth_sessions SET expires_at = $1 WHERE user_id = $2",
    guest_holder: "SELECT user_id FROM auth_sessions WHERE LOWER(nick) = $1 AND expires_at > $2 AND user_id LIKE 'g-%' ORDER BY expires_at DESC LIMIT 1",
    delete_expired_sessions: "DELETE FROM auth_sessions WHERE expires_at <= $1",
    nick_of_owner: "SELECT nick FROM users WHERE owner = $1 ORDER BY last_seen DESC LIMIT 1",
    end_guest_sessions: "UPDATE auth_sessions SET expires_at = $1 WHERE user_id LIKE 'g-%' AND expires_at > $2",
};

const MYSQL: Dialect = Dialect {
    insert_messages: "INSERT INTO messages (msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, sender_id) ",
    archive_prefix: "INSERT IGNORE INTO messages (msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, sender_id) ",
    archive_suffix: "",
    last_seq: "SELECT CAST(COALESCE(MAX(seq), 0) AS SIGNED) FROM messages WHERE conv = ?",
    page_down: "SELECT msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, edited_at, deleted, sender_id \
                FROM messages WHERE conv = ? AND seq < ? AND seq <= ? ORDER BY seq DESC LIMIT ?",
    page_up: "SELECT msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, edited_at, deleted, sender_id \
              FROM messages WHERE conv = ? AND seq > ? AND seq <= ? ORDER BY seq ASC LIMIT ?",
    transcript: "SELECT msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, edited_at, deleted, sender_id \
                 FROM messages WHERE conv = ? AND sent_at >= ? AND sent_at < ? ORDER BY seq ASC LIMIT ?",
    message: "SELECT msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at, edited_at, deleted, sender_id \
              FROM messages WHERE msg_id = ?",
    edit: "UPDATE messages SET text = ?, edited_at = ? WHERE msg_id = ? AND deleted = FALSE",
    delete: "UPDATE messages SET text = '', deleted = TRUE WHERE msg_id = ?",
    room: "SELECT r.name, r.topic, (SELECT CAST(COALESCE(MAX(seq), 0) AS SIGNED) FROM messages WHERE conv = ?), r.private, r.managed \
           FROM rooms r WHERE r.name_key = ?",
    upsert_topic: "INSERT INTO rooms (name_key, name, topic, created_at) VALUES (?, ?, ?, ?) \
                   ON DUPLICATE KEY UPDATE topic = VALUES(topic)",
    upsert_user: "INSERT INTO users (nick_key, nick, created_at, last_seen) VALUES (?, ?, ?, ?) \
                  ON DUPLICATE KEY UPDATE last_seen = VALUES(last_seen)",
    last_seen: "SELECT last_seen FROM users WHERE nick_key = ?",
    account: "SELECT nick, display_name, status, avatar, settings, password_hash, created_at, last_seen, owner FROM users WHERE nick_key = ?",
    claim_account: "UPDATE users SET password_hash = ?, nick = ?, owner = ? WHERE nick_key = ? AND password_hash IS NULL AND owner IS NULL",
    insert_account: "INSERT INTO users (nick_key, nick, password_hash, created_at, last_seen, owner) VALUES (?, ?, ?, ?, ?, ?)",
    update_profile: "UPDATE users SET display_name = COALESCE(?, display_name), status = COALESCE(?, status), avatar = COALESCE(?, avatar), settings = COALESCE(?, settings) WHERE nick_key = ?",
    insert_session: "INSERT INTO auth_sessions (token_hash, user_id, nick, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
    claim_owner: "UPDATE users SET owner = ? WHERE nick_key = ? AND owner IS NULL",
    session_user: "SELECT user_id, nick FROM auth_sessions WHERE token_hash = ? AND expires_at > ?",
    insert_room: "INSERT INTO rooms (name_key, name, topic, private, managed, created_at) VALUES (?, ?, ?, ?, ?, ?)",
    delete_room: "DELETE FROM rooms WHERE name_key = ?",
    delete_messages: "DELETE FROM messages WHERE conv = ?",
    delete_members: "DELETE FROM room_members WHERE room_key = ?",
    upsert_member: "INSERT INTO room_members (room_key, member, role) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE role = VALUES(role)",
    remove_member: "DELETE FROM room_members WHERE room_key = ? AND member = ?",
    member_role: "SELECT role FROM room_members WHERE room_key = ? AND member = ?",
    room_members: "SELECT member, role FROM room_members WHERE room_key = ? ORDER BY member",
    list_rooms: "SELECT name, topic, private, managed FROM rooms ORDER BY name_key",
    claim_grants: "UPDATE IGNORE room_members SET member = ? WHERE member = ?",
    has_member_rows: "SELECT COUNT(*) FROM room_members WHERE member = ?",
    delete_member_rows: "DELETE FROM room_members WHERE member = ?",
    account_by_id: "SELECT nick, display_name, status, avatar, settings, password_hash, created_at, last_seen, owner FROM users WHERE owner = ? AND password_hash IS NOT NULL",
    expire_sessions: "UPDATE auth_sessions SET expires_at = ? WHERE user_id = ?",
    guest_holder: "SELECT user_id FROM auth_sessions WHERE LOWER(nick) = ? AND expires_at > ? AND user_id LIKE 'g-%' ORDER BY expires_at DESC LIMIT 1",
    delete_expired_sessions: "DELETE FROM auth_sessions WHERE expires_at <= ?",
    nick_of_owner: "SELECT nick FROM users WHERE owner = ? ORDER BY last_seen DESC LIMIT 1",
    end_guest_sessions: "UPDATE auth_sessions SET expires_at = ? WHERE user_id LIKE 'g-%' AND expires_at > ?",
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
    /// SQLite's background checkpoint task.
    checkpointer: Option<tokio::task::JoinHandle<()>>,
    /// When writing last failed: older connections are reopened.
    health: std::sync::Arc<super::health::Health>,
}

impl Drop for SqlStore {
    fn drop(&mut self) {
        if let Some(task) = &self.checkpointer {
            task.abort();
        }
    }
}

/// How often the SQLite WAL is checkpointed.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Moves the SQLite WAL into the database file once a second, on a pool
/// connection of its own. PASSIVE never waits for or blocks the writer, so
/// the fsync it does is never in a message's path; the writer's commits
/// only append to the WAL.
async fn checkpoints(pool: SqlitePool) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            tracing::debug!(error = %e, "WAL checkpoint failed; retrying later");
        }
    }
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
        let health = std::sync::Arc::new(super::health::Health::default());
        // A connection opened before the last failed write is closed, not
        // reused: a fresh one takes its place (see `health`).
        macro_rules! renewing {
            ($options:expr) => {{
                let health = health.clone();
                $options.before_acquire(move |_, meta| {
                    let fresh = !health.stale(meta.age);
                    Box::pin(async move { Ok(fresh) })
                })
            }};
        }
        let pool = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(unavailable)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // WAL + NORMAL: a commit is in the WAL file when it returns,
                // so it survives the process being killed; an OS crash may
                // lose the newest commits (set FULL for that).
                .synchronous(if config.sqlite_full_sync { SqliteSynchronous::Full } else { SqliteSynchronous::Normal })
                .busy_timeout(config.busy_timeout)
                // Checkpoints (copying the WAL into the database, with an
                // fsync) run in a background task, not inside whichever
                // commit happens to cross the threshold: see `checkpoints`.
                .pragma("wal_autocheckpoint", "0");
            if let Some(dir) = options.get_filename().parent().filter(|d| !memory && !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
            }
            let pool = renewing!(SqlitePoolOptions::new())
                .max_connections(max)
                .min_connections(if memory { 1 } else { 0 })
                .idle_timeout(if memory { None } else { Some(Duration::from_secs(600)) })
                .max_lifetime(if memory { None } else { Some(Duration::from_secs(1800)) })
                .acquire_timeout(timeout)
                .connect_with(options)
                .await;
            Pool::Sqlite(pool.map_err(unavailable)?)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            // One connection first: a pool that cannot connect says only
            // "pool timed out"; this says why (refused, unknown host, auth).
            let first = tokio::time::timeout(timeout, <sqlx::PgConnection as sqlx::Connection>::connect(url)).await;
            match first {
                Ok(Ok(c)) => drop(sqlx::Connection::close(c).await),
                Ok(Err(e)) => return Err(unavailable(e)),
                Err(_) => return Err(StoreError::Unavailable(format!("no answer within {timeout:?}"))),
            }
            let pool = renewing!(PgPoolOptions::new()).max_connections(max).acquire_timeout(timeout).connect(url).await;
            Pool::Postgres(pool.map_err(unavailable)?)
        } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
            let url = url.replacen("mariadb:", "mysql:", 1);
            let first = tokio::time::timeout(timeout, <sqlx::MySqlConnection as sqlx::Connection>::connect(&url)).await;
            match first {
                Ok(Ok(c)) => drop(sqlx::Connection::close(c).await),
                Ok(Err(e)) => return Err(unavailable(e)),
                Err(_) => return Err(StoreError::Unavailable(format!("no answer within {timeout:?}"))),
            }
            let pool =
                renewing!(MySqlPoolOptions::new()).max_connections(max).acquire_timeout(timeout).connect(&url).await;
            Pool::Mysql(pool.map_err(unavailable)?)
        } else {
            return Err(StoreError::Unavailable(format!("unsupported database url `{url}`")));
        };
        let checkpointer = match &pool {
            Pool::Sqlite(p) if !memory => Some(tokio::spawn(checkpoints(p.clone()))),
            _ => None,
        };
        let store = SqlStore { pool, seqs: Mutex::default(), checkpointer, health };
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
        self.newest_seq(conv).await
    }

    /// Stores a batch in one step, assigning each conversation's next `seq`
    /// in batch order. All or nothing.
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
        match self.insert(&stored, false).await {
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

    /// Inserts numbered messages in one statement; `ignore_stored` skips
    /// those stored already instead of failing.
    async fn insert(&self, messages: &[StoredMessage], ignore_stored: bool) -> Result<(), sqlx::Error> {
        on_pool!(self, |pool, sql| {
            let (prefix, suffix) =
                if ignore_stored { (sql.archive_prefix, sql.archive_suffix) } else { (sql.insert_messages, "") };
            let mut q = QueryBuilder::new(prefix);
            q.push_values(messages, |mut row, m| {
                row.push_bind(m.msg_id.to_string())
                    .push_bind(m.conv.storage_key())
                    .push_bind(m.seq as i64)
                    .push_bind(m.room.as_deref().map(str::to_owned))
                    .push_bind(m.from.to_string())
                    .push_bind(m.to.as_deref().map(str::to_owned))
                    .push_bind(m.text.clone())
                    .push_bind(serde_json::to_string(&m.attachments).unwrap_or_else(|_| "[]".into()))
                    .push_bind(m.sent_at)
                    .push_bind(m.sender_id.to_string());
            });
            q.push(suffix);
            q.build().execute(pool).await.map(|_| ())
        })
    }

    /// Stores messages numbered elsewhere (a cluster's archiver), in one
    /// statement; a message already stored is skipped, so a batch may be
    /// archived twice without harm.
    pub async fn archive(&self, messages: &[StoredMessage]) -> Result<(), StoreError> {
        if messages.is_empty() {
            return Ok(());
        }
        self.insert(messages, true).await.map_err(unavailable)
    }

    /// The conversation's newest stored `seq`, read from the database.
    pub async fn newest_seq(&self, conv: &Conv) -> Result<u64, StoreError> {
        let key = conv.storage_key();
        let seq: i64 = on_pool!(self, |pool, sql| {
            sqlx::query_scalar(sql.last_seq).bind(&key).fetch_one(pool).await.map_err(unavailable)?
        });
        Ok(seq as u64)
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
            rows.iter().map(decode).collect::<Result<_, _>>()?
        });
        let more = messages.len() > q.limit;
        messages.truncate(q.limit);
        if !up {
            messages.reverse();
        }
        Ok(Page { messages, more })
    }

    /// Messages sent in `[from, to)` (ms), oldest first, at most `limit`.
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
            rows.iter().map(decode).collect::<Result<_, _>>()?
        });
        let more = messages.len() > limit;
        messages.truncate(limit);
        Ok(Page { messages, more })
    }

    pub async fn message(&self, msg_id: Ulid) -> Result<Option<StoredMessage>, StoreError> {
        let id = msg_id.to_string();
        on_pool!(self, |pool, sql| {
            let row = sqlx::query(sql.message).bind(&id).fetch_optional(pool).await.map_err(unavailable)?;
            row.as_ref().map(decode).transpose()
        })
    }

    /// Replaces a message's text; returns the updated message.
    pub async fn edit(&self, msg_id: Ulid, text: &str, at: i64) -> Result<Option<StoredMessage>, StoreError> {
        let id = msg_id.to_string();
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.edit).bind(text).bind(at).bind(&id).execute(pool).await.map_err(unavailable)?;
        });
        self.message(msg_id).await
    }

    /// Marks a message deleted (its text is dropped); returns it.
    pub async fn delete(&self, msg_id: Ulid) -> Result<Option<StoredMessage>, StoreError> {
        let id = msg_id.to_string();
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.delete).bind(&id).execute(pool).await.map_err(unavailable)?;
        });
        self.message(msg_id).await
    }

    /// The room's stored name, topic and latest `seq`, if it was ever used.
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
                    private: r.try_get::<bool, _>(3).map_err(unavailable)?,
                    managed: r.try_get::<bool, _>(4).map_err(unavailable)?,
                }),
                None => None,
            }
        });
        if record.is_some() {
            return Ok(record);
        }
        // Rooms used before this table knew them: messages alone.
        let last_seq = self.last_seq(&conv).await?;
        Ok((last_seq > 0).then(|| RoomRecord { name: key.into(), topic: "".into(), last_seq, ..Default::default() }))
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

    /// Records that a user was seen (connected or disconnected) at `at`.
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

    /// When the user was last seen; `None` for a nick never seen.
    pub async fn last_seen(&self, nick_key: &str) -> Result<Option<i64>, StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query_scalar(sql.last_seen).bind(nick_key).fetch_optional(pool).await.map_err(unavailable)
        })
    }

    // ---- accounts and profiles -------------------------------------------------

    pub async fn account(&self, nick_key: &str) -> Result<Option<Account>, StoreError> {
        self.account_where(nick_key, false).await
    }

    /// The registered account whose id is `id`.
    pub async fn account_by_id(&self, id: &str) -> Result<Option<Account>, StoreError> {
        self.account_where(id, true).await
    }

    async fn account_where(&self, key: &str, by_id: bool) -> Result<Option<Account>, StoreError> {
        on_pool!(self, |pool, sql| {
            let query = if by_id { sql.account_by_id } else { sql.account };
            let row = sqlx::query(query).bind(key).fetch_optional(pool).await.map_err(unavailable)?;
            match row {
                None => Ok(None),
                Some(r) => Ok(Some(Account {
                    nick: r.try_get(0).map_err(unavailable)?,
                    display_name: r.try_get(1).map_err(unavailable)?,
                    status: r.try_get(2).map_err(unavailable)?,
                    avatar: r.try_get(3).map_err(unavailable)?,
                    settings: serde_json::from_str(&r.try_get::<String, _>(4).map_err(unavailable)?)
                        .unwrap_or(serde_json::Value::Object(Default::default())),
                    password_hash: r.try_get(5).map_err(unavailable)?,
                    created_at: r.try_get(6).map_err(unavailable)?,
                    last_seen: r.try_get(7).map_err(unavailable)?,
                    owner: r.try_get(8).map_err(unavailable)?,
                })),
            }
        })
    }

    /// Registers `nick` with a password hash for the account `id`. False
    /// if the nick is owned already. A nick only ever seen as a guest can be
    /// registered.
    pub async fn create_account(&self, nick: &str, hash: &str, id: &str, at: i64) -> Result<bool, StoreError> {
        let key = nick.to_ascii_lowercase();
        on_pool!(self, |pool, sql| {
            let claimed = sqlx::query(sql.claim_account).bind(hash).bind(nick).bind(id).bind(&key).execute(pool).await;
            if claimed.map_err(unavailable)?.rows_affected() == 1 {
                return Ok(true);
            }
            let inserted = sqlx::query(sql.insert_account)
                .bind(&key)
                .bind(nick)
                .bind(hash)
                .bind(at)
                .bind(at)
                .bind(id)
                .execute(pool)
                .await;
            match inserted {
                Ok(_) => Ok(true),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
                Err(e) => Err(unavailable(e)),
            }
        })
    }

    pub async fn update_profile(&self, nick_key: &str, p: &ProfileUpdate) -> Result<(), StoreError> {
        let settings = p.settings.as_ref().map(|s| s.to_string());
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.update_profile)
                .bind(p.display_name.as_deref())
                .bind(p.status.as_deref())
                .bind(p.avatar.as_deref())
                .bind(settings.as_deref())
                .bind(nick_key)
                .execute(pool)
                .await
                .map_err(unavailable)?;
        });
        Ok(())
    }

    /// Makes `owner` the owner of a nick nobody owns yet (the row must
    /// exist: see `user_seen`). Returns the nick's owner afterwards.
    pub async fn claim_owner(&self, nick_key: &str, owner: &str) -> Result<Option<String>, StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.claim_owner).bind(owner).bind(nick_key).execute(pool).await.map_err(unavailable)?;
        });
        Ok(self.account(nick_key).await?.and_then(|a| a.owner))
    }

    /// Stores a session token's hash for the user `user_id`, who holds `nick`.
    pub async fn create_session(
        &self,
        token_hash: &str,
        user_id: &str,
        nick: &str,
        at: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.insert_session)
                .bind(token_hash)
                .bind(user_id)
                .bind(nick)
                .bind(at)
                .bind(expires_at)
                .execute(pool)
                .await
                .map_err(unavailable)?;
        });
        Ok(())
    }

    /// The user id a live session token belongs to, and the nick it holds.
    pub async fn session_user(&self, token_hash: &str, now: i64) -> Result<Option<(String, String)>, StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query_as(sql.session_user).bind(token_hash).bind(now).fetch_optional(pool).await.map_err(unavailable)
        })
    }

    /// Every session token of `user_id` stops working at `at` (a guest's
    /// when its last session ends, after the reconnect grace period).
    pub async fn expire_sessions(&self, user_id: &str, at: i64) -> Result<(), StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.expire_sessions).bind(at).bind(user_id).execute(pool).await.map_err(unavailable)?;
        });
        Ok(())
    }

    /// The guest identity that holds `nick_key` (connected, or within its
    /// reconnect grace period), if any.
    pub async fn guest_holder(&self, nick_key: &str, now: i64) -> Result<Option<String>, StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query_scalar(sql.guest_holder)
                .bind(nick_key)
                .bind(now)
                .fetch_optional(pool)
                .await
                .map_err(unavailable)
        })
    }

    /// Ends every guest's token at `until` at the latest: at the start of a
    /// single server no guest is connected, so each is in its grace period.
    pub async fn end_guest_sessions(&self, until: i64) -> Result<(), StoreError> {
        let now = crate::protocol::now_ms();
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.end_guest_sessions).bind(until).bind(now).execute(pool).await.map_err(unavailable)?;
        });
        Ok(())
    }

    /// Forgets session tokens that have expired.
    pub async fn delete_expired_sessions(&self, now: i64) -> Result<(), StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.delete_expired_sessions).bind(now).execute(pool).await.map_err(unavailable)?;
        });
        Ok(())
    }

    // ---- rooms and members ---------------------------------------------------------

    /// Hands the memberships granted to a nick nobody owned (`pending`, see
    /// [`crate::model::ids::pending_grant`]) to the id that now owns it.
    pub async fn claim_grants(&self, pending: &str, id: &str) -> Result<(), StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.claim_grants).bind(id).bind(pending).execute(pool).await.map_err(unavailable)?;
            sqlx::query(sql.delete_member_rows).bind(pending).execute(pool).await.map_err(unavailable)?;
        });
        Ok(())
    }

    /// The nick the user `id` (an account, a site user) used last.
    pub async fn account_nick_of(&self, id: &str) -> Result<Option<String>, StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query_scalar(sql.nick_of_owner).bind(id).fetch_optional(pool).await.map_err(unavailable)
        })
    }

    /// Whether `member` (an id, or a pending grant) belongs to any room.
    pub async fn has_memberships(&self, member: &str) -> Result<bool, StoreError> {
        let n: i64 = on_pool!(self, |pool, sql| {
            sqlx::query_scalar(sql.has_member_rows).bind(member).fetch_one(pool).await.map_err(unavailable)?
        });
        Ok(n > 0)
    }

    /// Creates a named room. False if a room of that name is stored already.
    pub async fn create_room(
        &self,
        key: &str,
        name: &str,
        topic: &str,
        private: bool,
        managed: bool,
    ) -> Result<bool, StoreError> {
        let at = crate::protocol::now_ms();
        on_pool!(self, |pool, sql| {
            let r = sqlx::query(sql.insert_room)
                .bind(key)
                .bind(name)
                .bind(topic)
                .bind(private)
                .bind(managed)
                .bind(at)
                .execute(pool)
                .await;
            match r {
                Ok(_) => Ok(true),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
                Err(e) => Err(unavailable(e)),
            }
        })
    }

    /// Forgets a room: its name, flags, members and messages (a room made
    /// later under the same name must not show them; keep a transcript
    /// first). False if there was nothing to forget.
    pub async fn delete_room(&self, key: &str) -> Result<bool, StoreError> {
        self.seqs().remove(&Conv::Room(key.into()));
        let conv = Conv::Room(key.into()).storage_key();
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.delete_members).bind(key).execute(pool).await.map_err(unavailable)?;
            let gone = sqlx::query(sql.delete_messages).bind(&conv).execute(pool).await.map_err(unavailable)?;
            let r = sqlx::query(sql.delete_room).bind(key).execute(pool).await.map_err(unavailable)?;
            Ok(r.rows_affected() > 0 || gone.rows_affected() > 0)
        })
    }

    /// Adds a member to a room, or changes its role.
    pub async fn set_member(&self, room_key: &str, member: &str, role: Role) -> Result<(), StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.upsert_member)
                .bind(room_key)
                .bind(member)
                .bind(role.as_str())
                .execute(pool)
                .await
                .map_err(unavailable)?;
        });
        Ok(())
    }

    pub async fn remove_member(&self, room_key: &str, member: &str) -> Result<bool, StoreError> {
        on_pool!(self, |pool, sql| {
            let r =
                sqlx::query(sql.remove_member).bind(room_key).bind(member).execute(pool).await.map_err(unavailable)?;
            Ok(r.rows_affected() > 0)
        })
    }

    pub async fn member_role(&self, room_key: &str, member: &str) -> Result<Option<Role>, StoreError> {
        let role: Option<String> = on_pool!(self, |pool, sql| {
            sqlx::query_scalar(sql.member_role)
                .bind(room_key)
                .bind(member)
                .fetch_optional(pool)
                .await
                .map_err(unavailable)?
        });
        Ok(role.map(|r| Role::parse(&r)))
    }

    pub async fn room_members(&self, room_key: &str) -> Result<Vec<(String, Role)>, StoreError> {
        let rows: Vec<(String, String)> = on_pool!(self, |pool, sql| {
            sqlx::query_as(sql.room_members).bind(room_key).fetch_all(pool).await.map_err(unavailable)?
        });
        Ok(rows.into_iter().map(|(n, r)| (n, Role::parse(&r))).collect())
    }

    /// Every named room (created through the API or given a topic).
    pub async fn list_rooms(&self) -> Result<Vec<RoomRecord>, StoreError> {
        let rows: Vec<(String, String, bool, bool)> =
            on_pool!(self, |pool, sql| sqlx::query_as(sql.list_rooms).fetch_all(pool).await.map_err(unavailable)?);
        Ok(rows
            .into_iter()
            .map(|(name, topic, private, managed)| RoomRecord {
                name: name.into(),
                topic: topic.into(),
                last_seq: 0,
                private,
                managed,
            })
            .collect())
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, |pool, _sql| sqlx::query("SELECT 1").execute(pool).await.map(|_| ()).map_err(unavailable))
    }

    /// Whether writing works now: a write that changes no value (a few
    /// rows rewritten as they are: SQLite skips a write that matches no
    /// row, even on a read-only connection), recorded like the writer's
    /// outcomes.
    pub async fn probe_write(&self) -> Result<(), StoreError> {
        let probe = "UPDATE _sqlx_migrations SET success = success";
        let result =
            on_pool!(self, |pool, _sql| sqlx::query(probe).execute(pool).await.map(|_| ()).map_err(unavailable));
        self.record(&result);
        result
    }

    /// Notes a write's outcome: a failure retires the connections open now.
    pub fn record<T>(&self, result: &Result<T, StoreError>) {
        match result {
            Ok(_) => self.health.succeeded(),
            Err(_) => self.health.failed(),
        }
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
        sender_id: get_s(11)?.into(),
    })
}
