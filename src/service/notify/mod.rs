//! Notifications (DESIGN.md, after step 3 of a message's data flow):
//! [`decide`] reads each stored message off the hot path and writes what
//! is owed into the durable outbox (store, `notify_outbox`); [`webhook`]
//! delivers the outbox to the embedding site, [`push`] to browsers (Web
//! Push); [`subscriptions`] are the HTTP API's push subscriptions.
//!
//! Who decides, once per message:
//! - one node: the batching writer's sink hands every committed batch to
//!   the decider (a bounded queue, `try_send`); the decider keeps a cursor
//!   (the newest `msg_id` decided, written at most once a second) and, at
//!   the next start, decides again every message stored after it (less
//!   `notify.replay_margin`): a crash between storing and deciding loses
//!   nothing, and a second decision writes no second event (the outbox
//!   ignores an id it holds);
//! - a cluster: the archiver, after committing a batch to the database and
//!   before acknowledging it in Redis. The consumer group gives each entry
//!   to one node; a node dying before its acknowledgement leaves the entry
//!   to another node, which decides again (same event ids).

mod decide;
pub(crate) mod push;
mod subscriptions;
mod webhook;

use std::sync::Arc;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::cluster::Bus;
use crate::config::NotifyConfig;
use crate::store::Store;

pub(crate) use crate::cluster::DecideBatch as Batch;

/// Whether anything is to be notified at all (else no decider runs and
/// the hot path hands it nothing).
pub(crate) fn enabled(config: &NotifyConfig) -> bool {
    !config.webhook_url.is_empty() || config.push
}

/// The decider's queue: created before the bus, which feeds it.
pub(crate) fn queue(config: &NotifyConfig) -> (crate::cluster::Decide, Queue) {
    let (tx, rx) = mpsc::channel(config.queue.max(1));
    let overflow = Arc::new(std::sync::atomic::AtomicBool::new(false));
    (crate::cluster::Decide { tx, overflow: overflow.clone() }, Queue { rx, overflow })
}

/// The decider's end of its queue.
pub(crate) struct Queue {
    rx: mpsc::Receiver<Batch>,
    overflow: Arc<std::sync::atomic::AtomicBool>,
}

/// This server as the notifiers name it.
pub(crate) struct Names {
    /// The node's id (outbox leases).
    pub(crate) node: String,
    /// The server's name as a host (ban masks: see `access::may_read`).
    pub(crate) host: String,
}

/// Starts the decider (fed by `rx`) and the outbox workers. They stop on
/// `stop` (the decider when its queue closes).
pub(crate) fn start(
    config: &NotifyConfig,
    Names { node, host }: Names,
    store: Store,
    bus: Bus,
    queue: Queue,
    vapid: Option<Arc<push::Vapid>>,
    stop: CancellationToken,
) {
    let wake = Arc::new(Notify::new());
    let decider =
        decide::Decider { config: config.clone(), store: store.clone(), bus: bus.clone(), wake: wake.clone(), host };
    tokio::spawn(decider.run(queue.rx, queue.overflow, !bus.clustered(), stop.clone()));
    if let Some(vapid) = vapid {
        let wake = wake.clone();
        tokio::spawn(push::run(
            config.clone(),
            node.clone(),
            bus.clustered(),
            store.clone(),
            vapid,
            wake,
            stop.clone(),
        ));
    }
    if !config.webhook_url.is_empty() {
        tokio::spawn(webhook::run(config.clone(), node, bus.clustered(), store, wake, stop));
    }
}

/// The delay before retry `attempt` (1, 2, …): `base` doubling, at most `max`.
pub(crate) fn backoff(base: std::time::Duration, max: std::time::Duration, attempt: u32) -> std::time::Duration {
    base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(max)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = Duration::from_secs;
        let b = |n| super::backoff(s(1), s(60), n);
        assert_eq!([b(1), b(2), b(3), b(7), b(40)], [s(1), s(2), s(4), s(60), s(60)]);
    }
}
