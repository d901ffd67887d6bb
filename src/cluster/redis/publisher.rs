//! The publishing task: the durable step of this node's messages, in
//! batches. [`RedisBus::publish`] queues a message and returns at once (a
//! session reads its next frame meanwhile); one task per node takes
//! everything queued (up to `cluster.publish_batch`) and runs publish.lua
//! once for the batch: each message still gets its seq, its buffer entries
//! and its `PUBLISH` atomically, in queue order, so each conversation's
//! messages keep the order they were queued in. An idle task runs a batch
//! of one at once; a busy one runs as many as came in meanwhile (group
//! commit, as the single node's writer in `src/store/writer.rs`).
//!
//! One batch is under way at a time: the next one waits for its answer, so
//! a retry (a missing seq counter) or an unknown outcome never lets a later
//! message of a conversation overtake an earlier one.

use std::collections::HashMap;
use std::time::Instant;

use tokio::sync::mpsc::error::TrySendError;

use super::*;

/// What the publishing task is handed. (Nearly every job is a message:
/// boxing it to shrink the rare `Flush` would cost an allocation each.)
#[allow(clippy::large_enum_variant)]
pub(super) enum Job {
    Message(NewMessage, Route),
    /// Answered once every message queued before it has had its script
    /// run (stored, refused, or being resolved).
    Flush(oneshot::Sender<()>),
}

/// Why a message's durable step did not return a seq.
pub(super) enum Outcome {
    /// It did not happen: tell the sender.
    NotStored(ProtoError),
    /// The connection broke while it was under way.
    Unknown,
}

/// A queued message with its script arguments, computed once.
struct Ready {
    msg: NewMessage,
    route: Route,
    /// The conversation's storage key.
    conv: String,
    counter: String,
    stream: String,
    fate: String,
    /// The message frame before and after its seq.
    before: String,
    after: String,
    /// The envelope before and after its seq.
    head: String,
    mid: String,
    room: bool,
    channels: Vec<String>,
}

impl RedisBus {
    /// The durable step: queues the message for the publishing task and
    /// returns at once. Its route later gets the `ack` (once this node has
    /// fanned it out) or `unavailable`; a full queue (Redis slower than the
    /// node's senders) answers `unavailable` at once. Returns the route if
    /// the bus has stopped.
    pub fn publish(&self, msg: NewMessage, route: Route) -> Result<(), Route> {
        let Err(e) = self.outgoing.try_send(Job::Message(msg, route)) else { return Ok(()) };
        let full = matches!(e, TrySendError::Full(_));
        let Job::Message(_, route) = e.into_inner() else { return Ok(()) };
        if !full {
            return Err(route);
        }
        tracing::debug!(queue = self.config.publish_queue, "publish queue full: a message refused");
        self.hub.fail(route, &ProtoError::unavailable());
        Ok(())
    }

    /// Waits until every message queued so far has had its script run.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.outgoing.send(Job::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// One batch: its script, a retry if a conversation's seq counter is
    /// missing, then each message's outcome to its route.
    async fn publish_batch(&self, batch: Vec<(NewMessage, Route)>) {
        let mut ready = Vec::with_capacity(batch.len());
        for (msg, route) in batch {
            match self.ready(msg, route) {
                Ok(r) => ready.push(r),
                Err(route) => self.hub.fail(route, &ProtoError::internal()),
            }
        }
        self.remember_senders(&ready);
        let began = Instant::now();
        let mut floors: HashMap<String, String> = HashMap::new();
        let outcome = loop {
            if ready.is_empty() {
                return;
            }
            let results = match self.run_batch(&ready, &floors).await {
                Ok(results) => results,
                Err(o) => break Err(o),
            };
            let mut missing: Vec<String> =
                ready.iter().zip(&results).filter(|(_, r)| **r == -1).map(|(m, _)| m.conv.clone()).collect();
            missing.sort_unstable();
            missing.dedup();
            if missing.is_empty() {
                break Ok(results);
            }
            // Nothing was written. A counter missing (a new conversation,
            // or a new Redis) starts from the newest seq in the database.
            for conv in missing {
                if floors.contains_key(&conv) {
                    self.drop_conv(&mut ready, &conv, &unavailable("the seq counter could not be set"));
                    continue;
                }
                let Some(key) = ready.iter().find(|m| m.conv == conv).map(|m| m.msg.conv.clone()) else { continue };
                match self.store.newest_seq(&key).await {
                    Ok(n) => {
                        floors.insert(conv, n.to_string());
                    }
                    Err(e) => self.drop_conv(&mut ready, &conv, &unavailable(e)),
                }
            }
        };
        self.hub.metrics().durable_step(began.elapsed(), outcome.is_ok());
        match outcome {
            Ok(results) => {
                let mut stored = Vec::with_capacity(ready.len());
                for (m, seq) in ready.into_iter().zip(results) {
                    if seq > 0 {
                        stored.push(Acked { message: m.msg.stored(seq as u64), route: m.route });
                    } else {
                        if seq == -3 {
                            tracing::warn!(conv = %m.conv, "redis refused a message's buffer entry; not stored");
                        }
                        self.hub.fail(m.route, &ProtoError::unavailable());
                    }
                }
                self.hub.metrics().stored(stored.iter().map(|a| &a.message.conv));
                for acked in stored {
                    self.await_fanout(acked);
                }
                self.release_acks(messages::ACK_WAIT);
            }
            Err(Outcome::NotStored(e)) => {
                for m in ready {
                    self.hub.fail(m.route, &e);
                }
            }
            Err(Outcome::Unknown) => {
                // The script may have run before the connection broke (it
                // may even have published): find out for each message
                // before answering, without holding up the next batch.
                let Some(bus) = self.me() else { return };
                for m in ready {
                    let bus = bus.clone();
                    tokio::spawn(async move { bus.resolve(m.msg, m.route).await });
                }
            }
        }
    }

    /// Refuses the messages of conversation `conv` (their batch wrote
    /// nothing): the others go on without them.
    fn drop_conv(&self, ready: &mut Vec<Ready>, conv: &str, error: &ProtoError) {
        let (gone, kept): (Vec<Ready>, Vec<Ready>) = std::mem::take(ready).into_iter().partition(|m| m.conv == conv);
        *ready = kept;
        for m in gone {
            self.hub.fail(m.route, error);
        }
    }

    /// Runs publish.lua for the batch: one number per message (see the
    /// script), or why there is none.
    async fn run_batch(&self, ready: &[Ready], floors: &HashMap<String, String>) -> Result<Vec<i64>, Outcome> {
        // Without a connection nothing is sent; a broken one leaves the
        // outcome unknown.
        if !self.serving.load(Ordering::Acquire) {
            return Err(Outcome::NotStored(ProtoError::unavailable()));
        }
        let mut inv = self.scripts.publish.prepare_invoke();
        inv.key(self.key(archiver::LOG)).arg(&self.batch_head);
        for m in ready {
            inv.key(&m.counter).key(&m.stream).key(&m.fate);
            inv.arg(floors.get(&m.conv).map_or("", String::as_str))
                .arg(&m.before)
                .arg(&m.after)
                .arg(&m.head)
                .arg(&m.mid)
                .arg(&m.conv)
                .arg(&*m.msg.sender_id)
                .arg(if m.room { "1" } else { "" })
                .arg(m.channels.len());
            for c in &m.channels {
                inv.arg(c);
            }
        }
        let mut conn = self.conn().map_err(Outcome::NotStored)?;
        let results: Vec<i64> = match inv.invoke_async(&mut conn).await {
            Ok(results) => results,
            // The connection broke or the answer is late: the script may
            // have run, or may still run. Never guess.
            Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => {
                self.failed(&e);
                return Err(Outcome::Unknown);
            }
            // An error reply (OOM, READONLY, BUSY, ...): the script wrote
            // nothing (see publish.lua).
            Err(e) => return Err(Outcome::NotStored(self.failed(&e))),
        };
        if results.len() != ready.len() {
            tracing::error!(sent = ready.len(), answers = results.len(), "publish.lua answered a batch wrongly");
            return Err(Outcome::Unknown);
        }
        Ok(results)
    }

    /// A queued message's script arguments; its route back if its frame
    /// cannot be built.
    fn ready(&self, msg: NewMessage, route: Route) -> Result<Ready, Route> {
        let Some((before, after)) = buffer::split_frame(&msg) else { return Err(route) };
        let from_key = msg.from.to_ascii_lowercase();
        let sid = route.origin.as_ref().map(|s| s.id);
        let off = route.clear_typing.then(|| crate::protocol::server::typing_off(&msg.clone().stored(0)));
        let (kind, channels) = match &msg.conv {
            Conv::Room(k) => (Kind::RoomMessage, vec![self.chan_name(&Chan::Room(k.clone()))]),
            Conv::Dm(..) => {
                let to = msg.to.as_deref().unwrap_or_default().to_ascii_lowercase();
                // The sender's node waits for the sender's channel, the
                // last one published (see `dispatch`).
                (
                    Kind::Direct,
                    vec![self.chan_name(&Chan::User(to.into())), self.chan_name(&Chan::User(from_key.as_str().into()))],
                )
            }
            Conv::Everyone => (Kind::Everyone, vec![self.all_chan()]),
        };
        let mid = match &off {
            Some(off) => format!("\u{1f}{from_key}\n{}{RS}", &**off),
            None => format!("\u{1f}{from_key}\n"),
        };
        let conv = msg.conv.storage_key();
        Ok(Ready {
            counter: self.key(&format!("seq:{conv}")),
            stream: self.key(&format!("h:{conv}")),
            fate: self.key(&format!("fate:{}", msg.msg_id)),
            head: envelope::head(kind, &self.node, sid),
            room: kind == Kind::RoomMessage,
            conv,
            before,
            after,
            mid,
            channels,
            msg,
            route,
        })
    }

    /// Notes which local session sent each message (see [`RedisBus::sent`]).
    fn remember_senders(&self, ready: &[Ready]) {
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        for m in ready {
            if let Some(origin) = &m.route.origin {
                if sent.len() == SENT_KEPT {
                    sent.pop_front();
                }
                sent.push_back((m.msg.msg_id, origin.id));
            }
        }
    }
}

/// The publishing task: takes everything queued (up to `publish_batch`)
/// and runs it as one batch, until the bus stops; then refuses what is
/// still queued (it was never sent).
pub(super) async fn run(bus: Arc<RedisBus>, mut queue: mpsc::Receiver<Job>) {
    let max = bus.config.publish_batch;
    let mut jobs = Vec::with_capacity(max);
    loop {
        let got = tokio::select! {
            got = queue.recv_many(&mut jobs, max) => got,
            _ = bus.stop.cancelled() => 0,
        };
        if got == 0 {
            break;
        }
        let mut batch = Vec::with_capacity(jobs.len());
        let mut flushes = Vec::new();
        for job in jobs.drain(..) {
            match job {
                Job::Message(msg, route) => batch.push((msg, route)),
                Job::Flush(done) => flushes.push(done),
            }
        }
        if !batch.is_empty() {
            bus.publish_batch(batch).await;
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
    queue.close();
    while let Ok(job) = queue.try_recv() {
        if let Job::Message(_, route) = job {
            bus.hub.fail(route, &ProtoError::unavailable());
        }
    }
}

#[cfg(test)]
mod tests {
    use redis::AsyncCommands;

    use super::super::buffer;

    /// publish.lua takes a batch of `cluster.publish_batch`'s largest size
    /// (1000, see config.rs): its log entry's XADD unpacks six values a
    /// message in one go, which Lua refuses above about 1333 messages.
    #[tokio::test]
    async fn publish_lua_takes_a_batch_of_the_largest_size() {
        let Ok(url) = std::env::var("TEST_REDIS_URL") else { return };
        let mut conn = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
        let p = format!("test-publish-{}", ulid::Ulid::generate());
        let (log, counter, stream) = (format!("{p}:logb"), format!("{p}:seq:r:x"), format!("{p}:h:r:x"));
        let script = redis::Script::new(include_str!("lua/publish.lua"));
        let mut inv = script.prepare_invoke();
        inv.key(&log).arg("");
        for i in 0..1000 {
            inv.key(&counter).key(&stream).key(format!("{p}:fate:{i}"));
            inv.arg("0").arg(r#"{"seq":"#).arg("}").arg("").arg("").arg("r:x").arg("a-x").arg("1").arg(0);
        }
        let seqs: Vec<i64> = inv.invoke_async(&mut conn).await.unwrap();
        assert_eq!(seqs, (1..=1000).collect::<Vec<i64>>());
        let entries: redis::streams::StreamRangeReply = conn.xrange_all(&log).await.unwrap();
        assert_eq!(entries.ids.len(), 1, "one log entry for the batch");
        assert_eq!(buffer::log_len(&entries.ids[0]), 1000);
        let _: () = conn.del(&[&log, &counter, &stream]).await.unwrap();
    }
}
