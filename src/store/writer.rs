//! The batching writer: the durable step every message passes before anyone
//! receives it. One task takes everything queued (up to `batch_max`),
//! stores it in one step — an idle writer commits at once, a busy one
//! commits many messages per step (group commit) — and then hands the
//! committed batch, in `seq` order, to a [`CommitSink`]. Because one task
//! does this in order, receivers see each conversation's `seq` ascending.
//!
//! Each message travels with a payload `T` that the store never looks at
//! (the hub puts the reply route there).

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

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
}

/// The handle that queues messages for the writer task.
pub struct Writer<T> {
    tx: mpsc::Sender<Job<T>>,
}

impl<T> Clone for Writer<T> {
    fn clone(&self) -> Self {
        Writer { tx: self.tx.clone() }
    }
}

/// How many messages may wait for the writer before senders wait too. A
/// full queue back-pressures only the reader tasks that submit (one
/// session each), never fan-out.
const QUEUE: usize = 8192;

impl<T: Send + 'static> Writer<T> {
    /// Starts the writer task. It ends when every `Writer` handle is dropped
    /// and the queue is drained.
    pub fn start(store: Store, batch_max: usize, sink: impl CommitSink<T>) -> (Writer<T>, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(store, batch_max, rx, sink));
        (Writer { tx }, task)
    }

    /// Queues a message; waits only while the queue is full. Returns the
    /// payload back if the writer is gone (shutting down).
    pub async fn submit(&self, msg: NewMessage, payload: T) -> Result<(), T> {
        self.tx.send(Job::Message(msg, payload)).await.map_err(|e| match e.0 {
            Job::Message(_, payload) => payload,
            Job::Flush(_) => unreachable!("submit sends messages only"),
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

async fn run<T>(store: Store, batch_max: usize, mut rx: mpsc::Receiver<Job<T>>, sink: impl CommitSink<T>) {
    let mut jobs = Vec::with_capacity(batch_max);
    while rx.recv_many(&mut jobs, batch_max).await > 0 {
        let mut messages = Vec::with_capacity(jobs.len());
        let mut payloads = Vec::with_capacity(jobs.len());
        let mut flushes = Vec::new();
        for job in jobs.drain(..) {
            match job {
                Job::Message(m, p) => {
                    messages.push(m);
                    payloads.push(p);
                }
                Job::Flush(done) => flushes.push(done),
            }
        }
        if !messages.is_empty() {
            let began = std::time::Instant::now();
            let result = store.append(messages).await;
            sink.durable_step(began.elapsed(), result.is_ok());
            store.record(&result);
            match result {
                Ok(stored) => sink.committed(stored.into_iter().zip(payloads).collect()),
                Err(e) => {
                    tracing::warn!(error = %e, count = payloads.len(), "could not store messages");
                    sink.failed(payloads, &e);
                }
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}
