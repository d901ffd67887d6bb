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
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use super::SqlStore;
use super::dialect::SQLITE;
use crate::protocol::server::{Conv, StoredMessage};
use crate::store::{NewMessage, StoreError};

/// Where and how the appender opens its connection.
#[derive(Clone, Debug)]
pub(crate) struct SqliteFile {
    pub(super) path: PathBuf,
    pub(super) full_sync: bool,
    pub(super) busy_timeout: Duration,
}

/// The writer thread's connection: opened on the first append, dropped
/// after a failed one (the next append opens a fresh one, as the pool
/// does with its connections, see `health`).
pub(crate) struct Appender {
    file: SqliteFile,
    conn: Option<Connection>,
    /// When this connection last checkpointed (see [`Appender::checkpoint`]).
    checkpointed: Instant,
}

/// How long the writer's checkpoint waits for other connections.
const CHECKPOINT_WAIT: Duration = Duration::from_millis(20);

/// How often the writer starts the WAL over. The checkpoint holds the
/// writer while it copies what the background checkpointer has not copied
/// yet and syncs the database file (tens of milliseconds on a slow disk):
/// once a second, that pause reached the light-load p99; once every ten
/// seconds it stays out of it, and the WAL stays at ten seconds of commits.
const RESTART_EVERY: Duration = Duration::from_secs(10);

/// One row's placeholders, after `insert_messages`' column list.
const ROW: &str = "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

impl Appender {
    pub(super) fn new(file: SqliteFile) -> Appender {
        Appender { file, conn: None, checkpointed: Instant::now() }
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

    /// Inserts numbered messages, all or nothing: one statement per row,
    /// prepared once; a batch of several in one transaction.
    fn insert(&mut self, messages: &[StoredMessage]) -> rusqlite::Result<()> {
        let conn = self.conn()?;
        let tx = (messages.len() > 1)
            .then(|| Transaction::new_unchecked(conn, TransactionBehavior::Immediate))
            .transpose()?;
        {
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
        }
        match tx {
            Some(tx) => tx.commit(),
            None => Ok(()),
        }
    }
}

impl Appender {
    /// Copies the WAL into the database between two batches, at most once
    /// per [`RESTART_EVERY`], and only when nothing waits in the queue
    /// (unless twice that went by). Done here, between this thread's
    /// own commits, the checkpoint catches up with the whole WAL, so the
    /// next commit starts the WAL file over instead of appending to it.
    /// (The background checkpointer runs between commits and never catches
    /// up under steady load: the WAL then grows without end, and each
    /// commit extends the file, which ext4 zeroes and allocates page by
    /// page: a tenth of the server's CPU at 2,000 messages a second.)
    pub(crate) fn checkpoint(&mut self, queue_empty: bool) {
        let since = self.checkpointed.elapsed();
        if since < RESTART_EVERY || (!queue_empty && since < RESTART_EVERY * 2) {
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
    /// `None` on other backends and on `memory://`.
    pub(crate) fn appender(&self) -> Option<Appender> {
        self.sqlite_file.clone().map(Appender::new)
    }

    /// [`SqlStore::append`] on the appender's connection, on the calling
    /// thread (which blocks until the batch is committed).
    pub(crate) fn append_blocking(
        &self,
        appender: &mut Appender,
        batch: Vec<NewMessage>,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let mut next: HashMap<Conv, u64> = HashMap::new();
        for m in &batch {
            if !next.contains_key(&m.conv) {
                let cached = self.seqs().get(&m.conv).copied();
                let seq = match cached {
                    Some(seq) => seq,
                    None => match appender.newest_seq(&m.conv) {
                        Ok(seq) => seq,
                        Err(e) => {
                            appender.conn = None;
                            return Err(unavailable("reading the newest seq")(e));
                        }
                    },
                };
                next.insert(m.conv.clone(), seq);
            }
        }
        let stored = super::messages::number(batch, &mut next);
        let mut inserted = appender.insert(&stored);
        if inserted.as_ref().is_err_and(read_only) {
            // Opened while the file was read-only: it stays so. Retire it
            // (and the pool's connections) and try once more on a fresh one.
            appender.conn = None;
            self.health.failed();
            inserted = appender.insert(&stored);
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
                Err(unavailable("storing messages")(e))
            }
        }
    }
}
