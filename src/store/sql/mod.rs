//! The SQL backends: SQLite (the embedded default), PostgreSQL and
//! MySQL/MariaDB, through sqlx. Every query is written once per dialect in
//! [`dialect`], side by side, with bind parameters only; the code around
//! them is written once and expanded for each pool type by `on_pool!`.
//!
//! This file opens the pool, migrates and watches write health; the
//! queries live by concern: [`messages`] (`seq`, history, edits),
//! [`users`] (accounts, profiles, sessions, guests, grants) and [`rooms`]
//! (rooms, topics, members).
//!
//! `seq` is assigned here, by the one writer task: the next number of each
//! conversation is cached after being read once from the database, so it
//! continues across restarts. A failed write forgets the cache, so that a
//! write whose outcome is unknown cannot make the next one collide.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use ulid::Ulid;

use super::error::Context;
use super::health::Health;
use super::{StoreError, redact_url};
use crate::config::DatabaseConfig;
use crate::protocol::server::Conv;

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
            $crate::store::sql::Pool::Sqlite($pool) => {
                let $sql = &$crate::store::sql::dialect::SQLITE;
                $body
            }
            $crate::store::sql::Pool::Postgres($pool) => {
                let $sql = &$crate::store::sql::dialect::POSTGRES;
                $body
            }
            $crate::store::sql::Pool::Mysql($pool) => {
                let $sql = &$crate::store::sql::dialect::MYSQL;
                $body
            }
        }
    };
}

// After `on_pool!`: a macro is visible only below its definition.
#[macro_use]
mod dialect;
mod appender;
pub(crate) use appender::{Appender, NotStored};
mod messages;
pub(crate) mod notify;
mod rooms;
mod social;
pub(crate) use social::ReactionChange;
mod uploads;
mod users;

pub struct SqlStore {
    pool: Pool,
    /// Each conversation's latest `seq`, once read. Only the writer task
    /// appends, so the cache cannot race with another writer in this process.
    seqs: Mutex<HashMap<Conv, u64>>,
    /// SQLite's background checkpoint task.
    checkpointer: Option<tokio::task::JoinHandle<()>>,
    /// The background search indexer of SQLite and PostgreSQL (see `social::indexer`).
    indexer: Option<tokio::task::JoinHandle<()>>,
    /// When writing last failed: older connections are reopened.
    health: Arc<Health>,
    /// SQLite in memory: the connection the writer task keeps for its appends (see
    /// `SqlStore::append_on_kept`); `None` until the first append, after a
    /// failed one, or always when the pool has a single connection.
    writer: Option<tokio::sync::Mutex<Option<sqlx::pool::PoolConnection<sqlx::Sqlite>>>>,
    /// A SQLite file database: the writer appends on a connection of its
    /// own thread instead (see [`appender`]).
    sqlite_file: Option<appender::SqliteFile>,
}

impl Drop for SqlStore {
    fn drop(&mut self) {
        if let Some(task) = &self.checkpointer {
            task.abort();
        }
        if let Some(task) = &self.indexer {
            task.abort();
        }
    }
}

/// How often the SQLite WAL is checkpointed.
pub(super) const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Moves the SQLite WAL into the database file once a second, on a pool
/// connection of its own. PASSIVE never waits for or blocks the writer, so
/// the fsync it does is never in a message's path. Under steady load it
/// never catches up with the writer either (commits land while it copies),
/// so a file database's writer also checkpoints between its own batches,
/// which lets its next commit start the WAL over (`Appender::checkpoint`).
/// Each finished pass is noted in `done`, for the writer's restart.
async fn checkpoints(pool: SqlitePool, done: Arc<Mutex<Option<std::time::Instant>>>) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            Ok(_) => *done.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now()),
            Err(e) => tracing::debug!(error = %e, "WAL checkpoint failed; retrying later"),
        }
    }
}

impl SqlStore {
    /// Connects (creating a SQLite file and its folder if needed) and
    /// applies the migrations.
    pub(crate) async fn open(config: &DatabaseConfig) -> Result<SqlStore, StoreError> {
        // memory:// is SQLite in memory, shared by the pool's connections
        // and kept while the pool keeps one open.
        let memory = config.url.starts_with("memory:");
        let memory_url = format!("sqlite:file:chat-{}?mode=memory&cache=shared", Ulid::generate());
        let url = if memory { memory_url.as_str() } else { config.url.as_str() };
        let timeout = Duration::from_secs(5);
        let max = config.max_connections;
        let health = Arc::new(Health::default());
        let mut sqlite_file = None;
        let passive_done = Arc::new(Mutex::new(None));
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
                .context("reading the SQLite url")?
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
                std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir { dir: dir.to_owned(), source })?;
            }
            if !memory {
                sqlite_file = Some(appender::SqliteFile {
                    path: options.get_filename().to_owned(),
                    full_sync: config.sqlite_full_sync,
                    busy_timeout: config.busy_timeout,
                    passive_done: passive_done.clone(),
                });
            }
            let pool = renewing!(SqlitePoolOptions::new())
                .max_connections(max)
                .min_connections(if memory { 1 } else { 0 })
                .idle_timeout(if memory { None } else { Some(Duration::from_secs(600)) })
                .max_lifetime(if memory { None } else { Some(Duration::from_secs(1800)) })
                .acquire_timeout(timeout)
                .connect_with(options)
                .await;
            Pool::Sqlite(pool.context("connecting")?)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            // One connection first: a pool that cannot connect says only
            // "pool timed out"; this says why (refused, unknown host, auth).
            let first = tokio::time::timeout(timeout, <sqlx::PgConnection as sqlx::Connection>::connect(url)).await;
            match first {
                Ok(Ok(c)) => drop(sqlx::Connection::close(c).await),
                Ok(Err(e)) => return Err(e).context("connecting"),
                Err(_) => return Err(StoreError::NoAnswer { after: timeout }),
            }
            let pool = renewing!(PgPoolOptions::new()).max_connections(max).acquire_timeout(timeout).connect(url).await;
            Pool::Postgres(pool.context("connecting")?)
        } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
            let url = url.replacen("mariadb:", "mysql:", 1);
            let first = tokio::time::timeout(timeout, <sqlx::MySqlConnection as sqlx::Connection>::connect(&url)).await;
            match first {
                Ok(Ok(c)) => drop(sqlx::Connection::close(c).await),
                Ok(Err(e)) => return Err(e).context("connecting"),
                Err(_) => return Err(StoreError::NoAnswer { after: timeout }),
            }
            let pool =
                renewing!(MySqlPoolOptions::new()).max_connections(max).acquire_timeout(timeout).connect(&url).await;
            Pool::Mysql(pool.context("connecting")?)
        } else {
            return Err(StoreError::UnsupportedUrl { url: redact_url(url) });
        };
        let checkpointer = match &pool {
            Pool::Sqlite(p) if !memory => Some(tokio::spawn(checkpoints(p.clone(), passive_done))),
            _ => None,
        };
        // A pool of one connection cannot lend it to the writer for good;
        // a file database's writer has a connection of its own (`sqlite_file`).
        let writer =
            (matches!(pool, Pool::Sqlite(_)) && sqlite_file.is_none() && max > 1).then(tokio::sync::Mutex::default);
        let mut store =
            SqlStore { pool, seqs: Mutex::default(), checkpointer, indexer: None, health, writer, sqlite_file };
        store.migrate().await?;
        store.indexer = match &store.pool {
            Pool::Sqlite(p) => Some(tokio::spawn(social::indexer(Pool::Sqlite(p.clone())))),
            Pool::Postgres(p) => Some(tokio::spawn(social::indexer(Pool::Postgres(p.clone())))),
            Pool::Mysql(_) => None,
        };
        Ok(store)
    }

    /// Applies the migrations of `migrations/<backend>/` that are not applied yet.
    async fn migrate(&self) -> Result<(), StoreError> {
        let result = match &self.pool {
            Pool::Sqlite(p) => sqlx::migrate!("migrations/sqlite").run(p).await,
            Pool::Postgres(p) => sqlx::migrate!("migrations/postgres").run(p).await,
            Pool::Mysql(p) => sqlx::migrate!("migrations/mysql").run(p).await,
        };
        result.map_err(StoreError::Migrate)
    }

    /// The cache of each conversation's latest `seq` (see [`SqlStore`]).
    fn seqs(&self) -> MutexGuard<'_, HashMap<Conv, u64>> {
        self.seqs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the database answers (for `/readyz`).
    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, |pool, _sql| sqlx::query("SELECT 1").execute(pool).await.map(|_| ()).context("pinging"))
    }

    /// Whether writing works now: a write that changes no value (a few
    /// rows rewritten as they are: SQLite skips a write that matches no
    /// row, even on a read-only connection), recorded like the writer's
    /// outcomes.
    /// A failed probe retires the pool's connections and probes once more
    /// on a fresh one: the answer is about the database, not about one
    /// connection that stayed broken (opened while the file was read-only,
    /// killed by the server) after its cause went away.
    pub(crate) async fn probe_write(&self) -> Result<(), StoreError> {
        let mut result = self.probe_once().await;
        if result.is_err() {
            result = self.probe_once().await;
        }
        result
    }

    async fn probe_once(&self) -> Result<(), StoreError> {
        let probe = "UPDATE _sqlx_migrations SET success = success";
        let result =
            on_pool!(self, |pool, _sql| sqlx::query(probe).execute(pool).await.map(|_| ()).context("probing a write"));
        self.record(&result);
        result
    }

    /// Notes a write's outcome: a failure retires the connections open now.
    pub(crate) fn record<T>(&self, result: &Result<T, StoreError>) {
        if result.is_err() {
            self.health.failed();
        }
    }
}
