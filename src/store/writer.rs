//! The batching writer: the durable step every message passes before anyone
//! receives it. One task (on a SQLite file, one thread of its own) takes
//! everything queued (up to `batch_max`), stores it in one step — an idle
//! writer commits at once, a busy one commits many messages per step (group
//! commit) — and then hands the committed batch, in `seq` order, to a
//! [`CommitSink`]. Because one writer does this in order, receivers see each
//! conversation's `seq` ascending.
//!
//! Each message travels with a payload `T` that the store never looks at
//! (the hub puts the reply route there).
//!
//! On a SQLite file, a message that finds the writer idle (nothing queued,
//! the connection free) is stored and delivered by its sender's task right
//! away, on the writer's connection, instead of waking the writer's thread,
//! which then woke the recipients' tasks from outside the runtime: half the
//! context switches per message at light load (docs/performance.md, "Issue
//! 13, fourth pass"). Anything else queues, and the thread commits it in
//! order; see [`Direct`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::sql::{Appender, NotStored};
use super::{NewMessage, Store, StoreError};
use crate::protocol::server::StoredMessage;

/// Receives the outcome of each batch, in commit order.
pub trait CommitSink<T>: Send + Sync + 'static {
    /// Stored: deliver and acknowledge.
    fn committed(&self, batch: Vec<(StoredMessage, T)>);
    /// Not stored: tell the senders; nobody receives anything.
    fn failed(&self, batch: Vec<T>, error: &StoreError);
    /// How long one step took (for the metrics), and whether it stored.
    fn durable_step(&self, _took: std::time::Duration, _ok: bool) {}
}

enum Job<T> {
    Message(NewMessage, T),
    /// Answered once everything queued before it is committed and handed on.
    Flush(oneshot::Sender<()>),
    /// Wakes the thread for its housekeeping, the search index and the
    /// WAL's restart (messages stored directly never pass the thread,
    /// which does it between its batches).
    Housekeeping,
}

/// The handle that queues messages for the writer task.
pub struct Writer<T> {
    tx: mpsc::Sender<Job<T>>,
    /// On a SQLite file: what the writer's thread shares with submitters.
    direct: Option<Arc<Direct<T>>>,
}

impl<T> Clone for Writer<T> {
    fn clone(&self) -> Self {
        Writer { tx: self.tx.clone(), direct: self.direct.clone() }
    }
}

/// The SQLite writer's connection and sink, shared by its thread and the
/// submitters. A submitter stores its message itself when the writer is
/// idle: no message queued or being stored (`queued` is zero) and the
/// connection free (`try_lock`), and only if no other connection holds
/// the file's write lock (it does not wait: that would stall a runtime
/// worker). Otherwise it queues. `queued` counts messages from their
/// submit until the thread has handed them on, under the connection's
/// lock, so a message stored directly never overtakes one queued before
/// it, and each session's messages keep their order.
struct Direct<T> {
    /// False with `database.sqlite_full_sync`: a commit then waits for the
    /// disk, which a runtime worker must not.
    now: bool,
    store: Store,
    appender: Mutex<Appender>,
    sink: Arc<dyn CommitSink<T>>,
    queued: AtomicUsize,
}

impl<T: 'static> Direct<T> {
    fn appender(&self) -> MutexGuard<'_, Appender> {
        self.appender.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores and hands on `msg` now if the writer is idle; gives it back
    /// otherwise (to be queued).
    fn try_now(&self, msg: NewMessage, payload: T, tx: &mpsc::Sender<Job<T>>) -> Option<(NewMessage, T)> {
        if !self.now || self.queued.load(Ordering::Acquire) != 0 {
            return Some((msg, payload));
        }
        let mut appender = match self.appender.try_lock() {
            Ok(appender) => appender,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Some((msg, payload)),
        };
        if self.queued.load(Ordering::Acquire) != 0 {
            return Some((msg, payload));
        }
        let began = std::time::Instant::now();
        let result = match self.store.append_blocking(&mut appender, vec![msg], false) {
            Err(NotStored::Busy(mut batch)) => return batch.pop().map(|msg| (msg, payload)),
            Err(NotStored::Failed(e)) => Err(e),
            Ok(stored) => Ok(stored),
        };
        let batch = Batch { messages: Vec::new(), payloads: vec![payload], flushes: Vec::new() };
        batch.done(&self.store, began, Some(result), &*self.sink);
        if appender.ask_housekeeping() {
            let _ = tx.try_send(Job::Housekeeping);
        }
        None
    }
}

/// How many messages may wait for the writer before senders wait too. A
/// full queue back-pressures only the reader tasks that submit (one
/// session each), never fan-out.
const QUEUE: usize = 8192;

impl<T: Send + 'static> Writer<T> {
    /// Starts the writer. It ends when every `Writer` handle is dropped
    /// and the queue is drained. On a SQLite file it is a thread of its own
    /// that runs each batch's statements itself (see `sql::appender`);
    /// elsewhere a task that awaits the pool.
    pub fn start(store: Store, batch_max: usize, sink: impl CommitSink<T>) -> (Writer<T>, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut direct = None;
        let task = match store.appender() {
            Some(appender) => {
                let shared = Arc::new(Direct {
                    now: !appender.syncs_each_commit(),
                    store,
                    appender: Mutex::new(appender),
                    sink: Arc::new(sink),
                    queued: AtomicUsize::new(0),
                });
                direct = Some(shared.clone());
                let (done, ended) = oneshot::channel();
                let runtime = tokio::runtime::Handle::current();
                let thread = std::thread::Builder::new().name("chat-sqlite-writer".into()).spawn(move || {
                    // Delivery may need the runtime (spawning, timers).
                    let _runtime = runtime.enter();
                    run_on_thread(&shared, batch_max, rx);
                    let _ = done.send(());
                });
                if let Err(e) = thread {
                    // No thread, no writer: every submit now fails (the
                    // queue's receiver is gone), as at shutdown.
                    tracing::error!(error = %e, "cannot start the SQLite writer thread");
                }
                tokio::spawn(async move {
                    let _ = ended.await;
                })
            }
            None => tokio::spawn(run(store, batch_max, rx, sink)),
        };
        (Writer { tx, direct }, task)
    }

    /// Stores and hands on the message now if the writer is idle (see
    /// [`Direct`]), or queues it; waits only while the queue is full.
    /// Returns the payload back if the writer is gone (shutting down).
    pub async fn submit(&self, msg: NewMessage, payload: T) -> Result<(), T> {
        let Some(direct) = &self.direct else {
            return self.queue(msg, payload).await;
        };
        let Some((msg, payload)) = direct.try_now(msg, payload, &self.tx) else {
            return Ok(());
        };
        direct.queued.fetch_add(1, Ordering::AcqRel);
        let queued = self.queue(msg, payload).await;
        if queued.is_err() {
            direct.queued.fetch_sub(1, Ordering::AcqRel);
        }
        queued
    }

    async fn queue(&self, msg: NewMessage, payload: T) -> Result<(), T> {
        self.tx.send(Job::Message(msg, payload)).await.map_err(|e| match e.0 {
            Job::Message(_, payload) => payload,
            Job::Flush(_) | Job::Housekeeping => unreachable!("submit sends messages only"),
        })
    }

    /// Waits until everything submitted so far has been committed (or
    /// failed) and handed to the sink.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Job::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// One batch taken off the queue: its messages, their payloads, and the
/// flushes to answer once they are handed on.
struct Batch<T> {
    messages: Vec<NewMessage>,
    payloads: Vec<T>,
    flushes: Vec<oneshot::Sender<()>>,
}

impl<T> Batch<T> {
    fn take(jobs: &mut Vec<Job<T>>) -> Batch<T> {
        let mut batch = Batch {
            messages: Vec::with_capacity(jobs.len()),
            payloads: Vec::with_capacity(jobs.len()),
            flushes: Vec::new(),
        };
        for job in jobs.drain(..) {
            match job {
                Job::Message(m, p) => {
                    batch.messages.push(m);
                    batch.payloads.push(p);
                }
                Job::Flush(done) => batch.flushes.push(done),
                Job::Housekeeping => {}
            }
        }
        batch
    }

    /// Hands the outcome of storing `messages` to the sink, then answers the flushes.
    fn done(
        self,
        store: &Store,
        began: std::time::Instant,
        result: Option<Result<Vec<StoredMessage>, StoreError>>,
        sink: &(impl CommitSink<T> + ?Sized),
    ) {
        if let Some(result) = result {
            sink.durable_step(began.elapsed(), result.is_ok());
            store.record(&result);
            match result {
                Ok(stored) => sink.committed(stored.into_iter().zip(self.payloads).collect()),
                Err(e) => {
                    tracing::warn!(error = %e, count = self.payloads.len(), "could not store messages");
                    sink.failed(self.payloads, &e);
                }
            }
        }
        for done in self.flushes {
            let _ = done.send(());
        }
    }
}

async fn run<T>(store: Store, batch_max: usize, mut rx: mpsc::Receiver<Job<T>>, sink: impl CommitSink<T>) {
    let mut jobs = Vec::with_capacity(batch_max);
    while rx.recv_many(&mut jobs, batch_max).await > 0 {
        let mut batch = Batch::take(&mut jobs);
        let began = std::time::Instant::now();
        let result = match batch.messages.is_empty() {
            true => None,
            false => Some(store.append(std::mem::take(&mut batch.messages)).await),
        };
        batch.done(&store, began, result, &sink);
    }
}

/// The writer on its own thread (SQLite file): the thread sleeps on the
/// queue, stores what it takes on its own connection and delivers it, so a
/// batch costs one wake-up of this thread and no other hand-off.
fn run_on_thread<T: 'static>(direct: &Direct<T>, batch_max: usize, mut rx: mpsc::Receiver<Job<T>>) {
    let mut jobs = Vec::with_capacity(batch_max);
    while rx.blocking_recv_many(&mut jobs, batch_max) > 0 {
        let mut batch = Batch::take(&mut jobs);
        let count = batch.messages.len();
        let mut appender = direct.appender();
        let began = std::time::Instant::now();
        let result = match batch.messages.is_empty() {
            true => None,
            false => {
                Some(direct.store.append_blocking(&mut appender, std::mem::take(&mut batch.messages), true).map_err(
                    |e| match e {
                        NotStored::Failed(e) => e,
                        NotStored::Busy(_) => unreachable!("an append that waits is never busy"),
                    },
                ))
            }
        };
        batch.done(&direct.store, began, result, &*direct.sink);
        // Handed on: direct stores may go ahead of nothing now.
        direct.queued.fetch_sub(count, Ordering::AcqRel);
        appender.housekeeping(|| rx.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::config::Config;
    use crate::protocol::server::Conv;
    use crate::store::HistoryQuery;

    /// Keeps what the writer hands on: `(room, seq, text)` per message.
    #[derive(Clone, Default)]
    struct Seen(std::sync::Arc<Mutex<Vec<(String, u64, String)>>>);

    impl CommitSink<()> for Seen {
        fn committed(&self, batch: Vec<(StoredMessage, ())>) {
            let mut seen = self.0.lock().unwrap();
            seen.extend(batch.into_iter().map(|(m, ())| (m.conv.storage_key(), m.seq, m.text)));
        }
        fn failed(&self, _batch: Vec<()>, error: &StoreError) {
            panic!("not stored: {error}");
        }
    }

    fn say(room: &str, text: &str) -> NewMessage {
        NewMessage {
            msg_id: ulid::Ulid::generate(),
            conv: Conv::Room(room.into()),
            room: Some(room.into()),
            to: None,
            from: "Alice".into(),
            sender_id: "a-alice".into(),
            text: text.into(),
            attachments: vec![],
            mentions: vec!["Bob".into()],
            sent_at: 1_700_000_000_000,
            reply_to: None,
        }
    }

    async fn open(url: &str) -> Store {
        let mut config = Config::default();
        config.database.url = url.into();
        Store::open(&config).await.expect("open")
    }

    /// On a SQLite file the writer is a thread with its own connection:
    /// each room is numbered from 1 in submit order, what it hands on is
    /// what the pool reads back, and a new server on the same file goes on
    /// from the stored seq.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sqlite_file_is_numbered_stored_and_continued() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("chat.db").display());
        let store = open(&url).await;
        assert!(store.appender().is_some(), "a file database has a writer thread");
        let seen = Seen::default();
        let (writer, task) = Writer::start(store.clone(), 256, seen.clone());
        for (room, text) in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("a", "a3"), ("b", "b2")] {
            writer.submit(say(room, text), ()).await.unwrap();
        }
        writer.flush().await;
        let got = seen.0.lock().unwrap().clone();
        let want = [("r:a", 1, "a1"), ("r:b", 1, "b1"), ("r:a", 2, "a2"), ("r:a", 3, "a3"), ("r:b", 2, "b2")];
        let want: Vec<_> = want.iter().map(|(c, s, t)| (c.to_string(), *s, t.to_string())).collect();
        assert_eq!(got, want);
        let q = HistoryQuery { before: None, after: None, upto: None, limit: 10 };
        let page = store.history(&Conv::Room("a".into()), q).await.unwrap();
        let texts: Vec<_> = page.messages.iter().map(|m| (m.seq, m.text.as_str(), m.mentions.len())).collect();
        assert_eq!(texts, [(1, "a1", 1), (2, "a2", 1), (3, "a3", 1)]);
        drop(writer);
        task.await.unwrap();
        drop(store);

        let store = open(&url).await;
        let seen = Seen::default();
        let (writer, _task) = Writer::start(store.clone(), 256, seen.clone());
        writer.submit(say("a", "a4"), ()).await.unwrap();
        writer.flush().await;
        assert_eq!(*seen.0.lock().unwrap(), [("r:a".to_string(), 4, "a4".to_string())]);
    }

    /// A message stored directly by a submitter never waits for another
    /// connection's write lock (it would stall a runtime worker for up to
    /// `busy_timeout`): it queues, and the thread stores it once the lock
    /// is free.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_locked_file_queues_instead_of_blocking_the_submitter() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.database.url = format!("sqlite://{}", dir.path().join("chat.db").display());
        config.database.busy_timeout = std::time::Duration::from_secs(600);
        let store = Store::open(&config).await.unwrap();
        let seen = Seen::default();
        let (writer, _task) = Writer::start(store.clone(), 256, seen.clone());
        writer.submit(say("a", "a1"), ()).await.unwrap();
        assert_eq!(seen.0.lock().unwrap().len(), 1, "an idle writer stores at once");

        let other = rusqlite::Connection::open(dir.path().join("chat.db")).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        // Returns while the other connection holds the lock (waiting for it
        // would take ten minutes), and nothing is delivered yet.
        writer.submit(say("a", "a2"), ()).await.unwrap();
        writer.submit(say("a", "a3"), ()).await.unwrap();
        assert_eq!(seen.0.lock().unwrap().len(), 1);
        other.execute_batch("COMMIT").unwrap();
        writer.flush().await;
        let got: Vec<_> = seen.0.lock().unwrap().iter().map(|(_, seq, text)| (*seq, text.clone())).collect();
        assert_eq!(got, [(1, "a1".to_string()), (2, "a2".to_string()), (3, "a3".to_string())]);
    }

    /// Sessions submitting at once, some messages stored directly and some
    /// queued: each conversation is numbered without a gap in the order it
    /// is handed on, and each sender's messages keep their order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_senders_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&format!("sqlite://{}", dir.path().join("chat.db").display())).await;
        let seen = Seen::default();
        let (writer, _task) = Writer::start(store.clone(), 256, seen.clone());
        let senders: Vec<_> = (0..4)
            .map(|k| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    for i in 0..300 {
                        // Each sender in a room of its own and in one they share.
                        let room = if i % 2 == 0 { format!("own{k}") } else { "shared".into() };
                        writer.submit(say(&room, &format!("{k}:{i}")), ()).await.unwrap();
                    }
                })
            })
            .collect();
        for s in senders {
            s.await.unwrap();
        }
        writer.flush().await;
        let got = seen.0.lock().unwrap().clone();
        assert_eq!(got.len(), 1200);
        let mut next: std::collections::HashMap<String, u64> = Default::default();
        let mut last: std::collections::HashMap<String, usize> = Default::default();
        for (conv, seq, text) in got {
            let want = next.entry(conv.clone()).or_insert(0);
            *want += 1;
            assert_eq!(seq, *want, "{conv} numbered in the order handed on");
            let (k, i) = text.split_once(':').unwrap();
            let i: usize = i.parse().unwrap();
            if let Some(prev) = last.insert(k.to_string(), i) {
                assert!(i > prev, "sender {k}: {i} handed on after {prev}");
            }
        }
    }

    /// `memory://` keeps the task that writes through the pool.
    #[tokio::test]
    async fn memory_keeps_the_pool_writer() {
        let store = open("memory://").await;
        assert!(store.appender().is_none());
        let seen = Seen::default();
        let (writer, _task) = Writer::start(store.clone(), 256, seen.clone());
        writer.submit(say("a", "a1"), ()).await.unwrap();
        writer.flush().await;
        assert_eq!(*seen.0.lock().unwrap(), [("r:a".to_string(), 1, "a1".to_string())]);
    }
}
