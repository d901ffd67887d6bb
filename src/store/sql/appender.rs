//! SQLite's append path, run on the writer's own thread (see
//! `store::writer`): a plain rusqlite connection that stores a whole batch
//! per call, without crossing to another thread.
//!
//! Through sqlx, every statement is a command sent to the connection's
//! worker thread and an answer sent back: at light load, when each batch
//! is one message, that is two thread wake-ups per message on top of the
//! commit. Here the thread that takes the batch off the queue runs the
//! statements itself. It shares the SQLite library sqlx links
//! (`libsqlite3-sys`), opens the same file with the same pragmas, and
//! waits for other connections' writes (`busy_timeout`) like theirs do.
//! Only file databases take this path; `memory://` (a shared-cache
//! database) keeps the sqlx writer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use super::SqlStore;
use super::dialect::SQLITE;
use super::social::{INDEX_EVERY, INDEX_SQLITE, UNQUEUE_SQLITE};
use crate::protocol::server::{Conv, StoredMessage};
use crate::store::{NewMessage, StoreError};

/// Where and how the appender opens its connection.
#[derive(Clone, Debug)]
pub(crate) struct SqliteFile {
    pub(super) path: PathBuf,
    pub(super) full_sync: bool,
    pub(super) busy_timeout: Duration,
    /// When the background checkpointer last finished a pass (`checkpoints`).
    pub(super) passive_done: Arc<Mutex<Option<Instant>>>,
}

/// The writer thread's connection: opened on the first append, dropped
/// after a failed one (the next append opens a fresh one, as the pool
/// does with its connections, see `health`).
pub(crate) struct Appender {
    file: SqliteFile,
    conn: Option<Connection>,
    /// When this connection last checkpointed (see [`Appender::checkpoint`]).
    checkpointed: Instant,
    /// When this connection last indexed for search (see [`Appender::index`]).
    indexed: Instant,
    /// Whether the last indexing step left messages in the queue.
    index_more: bool,
    /// Whether the writer's thread was woken for its housekeeping already.
    asked: bool,
}

/// How long the writer's checkpoint waits for other connections.
const CHECKPOINT_WAIT: Duration = Duration::from_millis(20);

/// How often the writer starts the WAL over. The checkpoint holds the
/// writer while it copies what the background checkpointer has not copied
/// yet and syncs the database file: once a second, that pause reached the
/// light-load p99; once every ten seconds it stays out of it, and the WAL
/// stays at ten seconds of commits.
const RESTART_EVERY: Duration = Duration::from_secs(10);

/// The writer restarts the WAL only this soon after the background
/// checkpointer finished a pass: what is left to copy and sync is then a
/// few milliseconds of commits, not up to a second of them (which held the
/// writer for tens of milliseconds). If that moment never comes, it
/// restarts anyway after [`RESTART_EVERY`] three times over.
const CAUGHT_UP: Duration = Duration::from_millis(200);

/// Most queued messages one indexing step of the writer takes: the step
/// holds the writer (a message arriving meanwhile waits for it), so it
/// stays short; steps follow each other while nothing else waits.
const INDEX_STEP: i64 = 64;

/// One row's placeholders, after `insert_messages`' column list.
const ROW: &str = "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

impl Appender {
    pub(super) fn new(file: SqliteFile) -> Appender {
        Appender {
            file,
            conn: None,
            checkpointed: Instant::now(),
            indexed: Instant::now(),
            index_more: false,
            asked: false,
        }
    }

    /// Whether each commit waits for the disk (`database.sqlite_full_sync`).
    pub(crate) fn syncs_each_commit(&self) -> bool {
        self.file.full_sync
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        // No CREATE: the pool created and migrated the file already.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.file.path, flags)?;
        conn.busy_timeout(self.file.busy_timeout)?;
        // As the pool's connections (sqlx's defaults plus `SqlStore::open`'s).
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "synchronous", if self.file.full_sync { "FULL" } else { "NORMAL" })?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(conn)
    }

    fn conn(&mut self) -> rusqlite::Result<&Connection> {
        match self.conn {
            Some(ref conn) => Ok(conn),
            None => {
                let conn = self.open()?;
                Ok(self.conn.insert(conn))
            }
        }
    }

    fn newest_seq(&mut self, conv: &Conv) -> rusqlite::Result<u64> {
        let conn = self.conn()?;
        let seq: i64 = conn.prepare_cached(SQLITE.last_seq)?.query_row([conv.storage_key()], |r| r.get(0))?;
        Ok(seq as u64)
    }

    /// Starts the write transaction (`BEGIN IMMEDIATE`: the file's write
    /// lock). `wait`: for as long as `busy_timeout` when another connection
    /// writes; otherwise not at all (the error is then `DatabaseBusy`).
    fn begin(&mut self, wait: bool) -> rusqlite::Result<()> {
        let timeout = if wait { self.file.busy_timeout } else { Duration::ZERO };
        let conn = self.conn()?;
        conn.busy_timeout(timeout)?;
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(())
    }

    /// Inserts numbered messages and commits the transaction [`Appender::begin`]
    /// started: one statement per row, prepared once.
    fn insert(&mut self, messages: &[StoredMessage]) -> rusqlite::Result<()> {
        let conn = self.conn()?;
        let mut insert = conn.prepare_cached(&format!("{}{ROW}", SQLITE.insert_messages))?;
        for m in messages {
            let attachments = serde_json::to_string(&m.attachments).unwrap_or_else(|_| "[]".into());
            let mentions = (!m.mentions.is_empty()).then(|| serde_json::to_string(&m.mentions).unwrap_or_default());
            insert.execute(rusqlite::params![
                m.msg_id.to_string(),
                m.conv.storage_key(),
                m.seq as i64,
                m.room.as_deref(),
                &*m.from,
                m.to.as_deref(),
                &m.text,
                attachments,
                m.sent_at,
                &*m.sender_id,
                m.reply_to.as_ref().map(|r| r.msg_id.to_string()),
                mentions,
            ])?;
        }
        conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    }

    /// Whether the writer's thread should wake for its housekeeping (the
    /// search index, the WAL's restart: see [`Appender::housekeeping`]),
    /// said once until it has run: the thread does it only between its
    /// own batches, and messages stored directly never pass the thread.
    pub(crate) fn ask_housekeeping(&mut self) -> bool {
        let due = !self.asked && (self.index_due() || self.restart_due());
        self.asked |= due;
        due
    }

    /// Whether the WAL should start over now (see [`CAUGHT_UP`]).
    fn restart_due(&self) -> bool {
        let since = self.checkpointed.elapsed();
        let passive = *self.file.passive_done.lock().unwrap_or_else(|e| e.into_inner());
        let caught_up = passive.is_some_and(|done| done > self.checkpointed && done.elapsed() < CAUGHT_UP);
        since >= RESTART_EVERY * 3 || (since >= RESTART_EVERY && caught_up)
    }

    fn index_due(&self) -> bool {
        self.index_more || self.indexed.elapsed() >= INDEX_EVERY
    }

    /// The writer's thread between batches: indexes queued messages for
    /// search, a short step at a time while nothing waits, then restarts
    /// the WAL if that is due.
    pub(crate) fn housekeeping(&mut self, queue_empty: impl Fn() -> bool) {
        self.asked = false;
        while queue_empty() && self.index_due() {
            self.indexed = Instant::now();
            match self.index() {
                Ok(more) => self.index_more = more,
                Err(e) => {
                    tracing::debug!(error = %e, "indexing new messages for search failed; retrying later");
                    self.index_more = false;
                    self.conn = None;
                }
            }
        }
        self.checkpoint(queue_empty());
    }

    /// Indexes the first [`INDEX_STEP`] queued messages for search (see
    /// migrations/sqlite/0007) in one transaction; says whether more wait.
    fn index(&mut self) -> rusqlite::Result<bool> {
        self.begin(true)?;
        let conn = self.conn()?;
        let indexed = conn.prepare_cached(INDEX_SQLITE)?.execute([i64::MAX, INDEX_STEP])?;
        conn.prepare_cached(UNQUEUE_SQLITE)?.execute([i64::MAX, INDEX_STEP])?;
        conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(indexed as i64 == INDEX_STEP)
    }
}

impl Appender {
    /// Copies the WAL into the database between two batches, at most once
    /// per [`RESTART_EVERY`], right after the background checkpointer's
    /// pass (see [`CAUGHT_UP`]) and only when nothing waits in the queue
    /// (unless three times that went by). Done here, between this thread's
    /// own commits, the checkpoint catches up with the whole WAL, so the
    /// next commit starts the WAL file over instead of appending to it.
    /// (The background checkpointer runs between commits and never catches
    /// up under steady load: the WAL then grows without end, and each
    /// commit extends the file, which ext4 zeroes and allocates page by
    /// page: a tenth of the server's CPU at 2,000 messages a second.)
    fn checkpoint(&mut self, queue_empty: bool) {
        if !self.restart_due() || (!queue_empty && self.checkpointed.elapsed() < RESTART_EVERY * 3) {
            return;
        }
        self.checkpointed = Instant::now();
        let Some(conn) = &self.conn else { return };
        // RESTART waits for other writers and for readers of the WAL, so
        // that the next commit starts the file over; but not for long: a
        // checkpoint that cannot have the WAL to itself within
        // `CHECKPOINT_WAIT` is tried again at the next one.
        let restart = || -> rusqlite::Result<(i64, i64, i64)> {
            conn.busy_timeout(CHECKPOINT_WAIT)?;
            let done = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)));
            conn.busy_timeout(self.file.busy_timeout)?;
            done
        };
        match restart() {
            Ok((busy, frames, copied)) => tracing::debug!(busy, frames, copied, "WAL checkpoint"),
            Err(e) => tracing::debug!(error = %e, "WAL checkpoint failed; retrying later"),
        }
    }
}

/// A failed append, with the rusqlite error as its source.
fn unavailable(what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { what, source }
}

/// Whether a write failed because the connection is read-only
/// (`SQLITE_READONLY` and its extended codes): nothing was written.
fn read_only(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::ReadOnly)
}

impl SqlStore {
    /// The appender of a SQLite file database, for the writer's thread;
    /// `None` on other backends and on `memory://`. The thread indexes for
    /// search from now on (see [`Appender::housekeeping`]), so the pool's
    /// indexer stops.
    pub(crate) fn appender(&self) -> Option<Appender> {
        let appender = self.sqlite_file.clone().map(Appender::new);
        if let (Some(_), Some(indexer)) = (&appender, &self.indexer) {
            indexer.abort();
        }
        appender
    }

    /// [`SqlStore::append`] on the appender's connection, on the calling
    /// thread (which blocks until the batch is committed). Unless `wait`,
    /// a database another connection is writing to is not waited for: the
    /// batch comes back untouched ([`NotStored::Busy`]).
    pub(crate) fn append_blocking(
        &self,
        appender: &mut Appender,
        batch: Vec<NewMessage>,
        wait: bool,
    ) -> Result<Vec<StoredMessage>, NotStored> {
        if let Err(e) = self.begin(appender, wait) {
            if !wait && e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) {
                return Err(NotStored::Busy(batch));
            }
            appender.conn = None;
            return Err(NotStored::Failed(unavailable("starting a write")(e)));
        }
        // Inside the transaction: nobody else appends messages meanwhile.
        let mut next: HashMap<Conv, u64> = HashMap::new();
        for m in &batch {
            if !next.contains_key(&m.conv) {
                let cached = self.seqs().get(&m.conv).copied();
                let seq = match cached {
                    Some(seq) => seq,
                    None => match appender.newest_seq(&m.conv) {
                        Ok(seq) => seq,
                        Err(e) => {
                            // Dropping the connection rolls the transaction back.
                            appender.conn = None;
                            return Err(NotStored::Failed(unavailable("reading the newest seq")(e)));
                        }
                    },
                };
                next.insert(m.conv.clone(), seq);
            }
        }
        let stored = super::messages::number(batch, &mut next);
        let mut inserted = appender.insert(&stored);
        if inserted.as_ref().is_err_and(read_only) {
            // Written on a connection opened while the file was read-only:
            // it stays so. Retire it (and the pool's connections) and try
            // once more on a fresh one.
            appender.conn = None;
            self.health.failed();
            inserted = appender.begin(true).and_then(|()| appender.insert(&stored));
        }
        match inserted {
            Ok(()) => {
                self.seqs().extend(next);
                Ok(stored)
            }
            Err(e) => {
                // The write may or may not have happened: read the seqs
                // anew, on a fresh connection.
                appender.conn = None;
                self.seqs().clear();
                Err(NotStored::Failed(unavailable("storing messages")(e)))
            }
        }
    }

    /// [`Appender::begin`], once more on a fresh connection if the first
    /// one turns out read-only (opened while the file was).
    fn begin(&self, appender: &mut Appender, wait: bool) -> rusqlite::Result<()> {
        let begun = appender.begin(wait);
        if begun.as_ref().is_err_and(read_only) {
            appender.conn = None;
            self.health.failed();
            return appender.begin(wait);
        }
        begun
    }
}

/// Why [`SqlStore::append_blocking`] stored nothing.
pub(crate) enum NotStored {
    /// Another connection was writing and the caller would not wait:
    /// nothing was done, and here is the batch.
    Busy(Vec<NewMessage>),
    /// The write failed (or may have: see `storing messages`).
    Failed(StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::store::Store;

    fn say(text: &str) -> NewMessage {
        NewMessage {
            msg_id: ulid::Ulid::generate(),
            conv: Conv::Room("a".into()),
            room: Some("a".into()),
            to: None,
            from: "Alice".into(),
            sender_id: "a-alice".into(),
            text: text.into(),
            attachments: vec![],
            mentions: vec![],
            sent_at: 1_700_000_000_000,
            reply_to: None,
        }
    }

    fn count(appender: &mut Appender, sql: &str) -> i64 {
        appender.conn().unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// The writer's housekeeping indexes what it stored, a step at a time,
    /// and only while nothing waits for it.
    #[tokio::test]
    async fn housekeeping_indexes_in_steps_while_nothing_waits() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.database.url = format!("sqlite://{}", dir.path().join("chat.db").display());
        let store = Store::open(&config).await.unwrap();
        let mut appender = store.appender().unwrap();
        let batch: Vec<_> = (0..100).map(|i| say(&format!("hello {i}"))).collect();
        let Ok(stored) = store.append_blocking(&mut appender, batch, true) else { panic!("not stored") };
        assert_eq!(stored.len(), 100);
        let pending = "SELECT count(*) FROM messages_fts_pending";
        let found = "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'hello'";
        assert_eq!(count(&mut appender, pending), 100);

        appender.indexed = Instant::now() - INDEX_EVERY;
        assert!(appender.ask_housekeeping(), "due: a wake-up is asked for");
        assert!(!appender.ask_housekeeping(), "asked once");
        // Something waits: nothing is indexed.
        appender.housekeeping(|| false);
        assert_eq!(count(&mut appender, pending), 100);
        appender.indexed = Instant::now() - INDEX_EVERY;
        // Nothing waits: every step until the queue is empty.
        appender.housekeeping(|| true);
        assert_eq!(count(&mut appender, pending), 0);
        assert_eq!(count(&mut appender, found), 100);
        assert!(!appender.ask_housekeeping(), "indexed just now");
    }
}
