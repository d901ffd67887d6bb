//! Messages: an unknown outcome of the durable step settled (fence.lua),
//! senders waiting for their message's fan-out, history merged from the
//! buffer and the database, and catching up after a reconnect. (The
//! durable step itself, publish.lua in batches: [`super::publisher`].)

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use ulid::Ulid;

use super::*;
use crate::hub::acknowledge;

impl RedisBus {
    /// After a reconnect: hands each live room the messages published while
    /// the node was away (the room drops what it already had).
    pub(super) async fn catch_up(&self) {
        for (key, last) in self.hub.live_rooms() {
            let conv = Conv::Room(key.clone());
            let mut after = last;
            loop {
                let q = HistoryQuery { after: Some(after), limit: 500, ..Default::default() };
                let Ok(page) = self.history(&conv, q).await else {
                    tracing::warn!(room = %key, "could not catch up; members resume from history");
                    break;
                };
                for m in &page.messages {
                    let sender = self.sender_of(m.msg_id);
                    let fanout = Fanout::Room { key: &key, seq: m.seq, typing_off: None };
                    let ack = self.fanned_out(m.msg_id);
                    self.hub.deliver(&encode(&ServerFrame::Message(m)), fanout, sender, ack);
                    after = m.seq;
                }
                if !page.more || page.messages.is_empty() {
                    break;
                }
            }
        }
    }

    /// Answers a message whose durable step has an unknown outcome: once
    /// Redis is back, the message is looked for in its conversation's
    /// buffer, and fenced off if it is not there (so that a late run of its
    /// script does nothing), then looked for in the database. It waits as
    /// long as that takes: a late answer is better than a wrong one. A node
    /// shutting down meanwhile answers nothing (the client finds the
    /// message, or not, in history).
    pub(super) async fn resolve(&self, msg: NewMessage, route: Route) {
        let mut wait = Duration::from_millis(50);
        let conv = msg.conv.storage_key();
        while !self.stop.is_cancelled() {
            let mut inv = self.scripts.fence.prepare_invoke();
            inv.key(self.key(&format!("h:{conv}")))
                .key(self.key(&format!("fate:{}", msg.msg_id)))
                .arg(msg.msg_id.to_string())
                .arg(FATE_TTL.as_secs());
            match self.run::<i64>(inv).await {
                Ok(seq) if seq > 0 => return acknowledge(msg.stored(seq as u64), route),
                Ok(_) => match self.store.message(msg.msg_id).await {
                    Ok(Some(stored)) => return acknowledge(stored, route),
                    Ok(None) => return self.hub.fail(route, &ProtoError::unavailable()),
                    Err(_) => {}
                },
                Err(_) => {}
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(self.config.reconnect_max);
        }
    }

    /// The local session that sent a recent message, if any.
    fn sender_of(&self, msg_id: ulid::Ulid) -> Option<SessionId> {
        let sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        sent.iter().rev().find(|(id, _)| *id == msg_id).map(|(_, s)| *s)
    }

    /// A page of history: the database and the buffer (messages not yet
    /// archived), merged, with no gap and no repeat. The buffer is read
    /// first: an entry archived meanwhile is then in the database.
    pub async fn history(&self, conv: &Conv, q: HistoryQuery) -> Result<Page, StoreError> {
        let buffered = self.buffered(conv, &q).await.map_err(|e| StoreError::Buffer(e.message))?;
        let stored = self.store.history(conv, q).await?;
        let more = stored.more || buffered.len() > q.limit;
        let mut all: BTreeMap<u64, StoredMessage> = buffered.into_iter().map(|m| (m.seq, m)).collect();
        // The database's copy wins: it has edits and deletions.
        all.extend(stored.messages.into_iter().map(|m| (m.seq, m)));
        let mut messages: Vec<StoredMessage> = all.into_values().collect();
        let more = more || messages.len() > q.limit;
        if q.after.is_some() {
            messages.truncate(q.limit);
        } else if messages.len() > q.limit {
            messages.drain(..messages.len() - q.limit);
        }
        Ok(Page { messages, more })
    }

    /// The buffered messages of a conversation that a history query covers
    /// (at most `limit + 1` of them, from the right end), oldest first.
    async fn buffered(&self, conv: &Conv, q: &HistoryQuery) -> Result<Vec<StoredMessage>, ProtoError> {
        let key = self.key(&format!("h:{}", conv.storage_key()));
        let upto = q.upto.unwrap_or(u64::MAX);
        let n = q.limit + 1;
        let mut conn = self.conn()?;
        let reply: redis::streams::StreamRangeReply = if let Some(after) = q.after {
            if after >= upto {
                return Ok(Vec::new());
            }
            let end = if upto == u64::MAX { "+".to_owned() } else { format!("{upto}-1") };
            conn.xrange_count(&key, format!("{}-0", after + 1), end, n).await
        } else {
            let top = q.before.map_or(upto, |b| b.saturating_sub(1).min(upto));
            if top == 0 {
                return Ok(Vec::new());
            }
            let end = if top == u64::MAX { "+".to_owned() } else { format!("{top}-1") };
            conn.xrevrange_count(&key, end, "-", n).await
        }
        .map_err(|e| self.failed(&e))?;
        let mut messages: Vec<StoredMessage> = reply.ids.iter().filter_map(buffer::decode_entry).collect();
        messages.sort_by_key(|m| m.seq);
        Ok(messages)
    }

    /// Asks the archiver to move everything buffered into the database now
    /// (claiming other nodes' unfinished batches too), and waits for it.
    /// Returns whether it succeeded.
    pub async fn settle(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.settle.send(tx).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(self.config.redis_timeout * 4, rx).await, Ok(Ok(true)))
    }
}

/// How long a fenced-off message's mark stays in Redis: far longer than a
/// command can wait in a stalled Redis or a broken connection.
const FATE_TTL: Duration = Duration::from_secs(3600);

/// How long a sender waits for its message to come back through this
/// node's subscriber before it is acknowledged anyway (it is stored; only
/// the local fan-out is late or was lost with a broken subscription).
pub(super) const ACK_WAIT: Duration = Duration::from_secs(2);

/// Senders waiting for their message's fan-out on this node, by `msg_id`;
/// and messages the subscriber fanned out before their publisher heard
/// back from Redis (the script publishes before it answers).
#[derive(Default)]
pub(super) struct Acks {
    waiting: HashMap<Ulid, (Acked, Instant)>,
    early: HashSet<Ulid>,
}

impl RedisBus {
    /// A stored message's `ack` waits until this node's subscriber has
    /// handed the message to the local recipients (the one delivery sink,
    /// [`Hub::deliver`], then acks), unless this node hosts none of them:
    /// then there is nothing to wait for. (Senders that waited too long are
    /// released once per batch by its publisher, and by the heartbeat.)
    pub(super) fn await_fanout(&self, acked: Acked) {
        let msg = &acked.message;
        let hosted = match &msg.conv {
            Conv::Room(key) => self.hub.room_is_live(key),
            Conv::Dm(..) => acked.route.origin.is_some(),
            Conv::Everyone => true,
        };
        if !hosted {
            return acknowledge(acked.message, acked.route);
        }
        let mut acks = self.acks.lock().unwrap_or_else(|e| e.into_inner());
        if acks.early.remove(&msg.msg_id) {
            drop(acks);
            return acknowledge(acked.message, acked.route);
        }
        acks.waiting.insert(msg.msg_id, (acked, Instant::now()));
    }

    /// The subscriber fanned out a message this node published: its sender
    /// may now be acknowledged (by the sink, after the fan-out).
    pub(super) fn fanned_out(&self, msg_id: Ulid) -> Option<Acked> {
        let mut acks = self.acks.lock().unwrap_or_else(|e| e.into_inner());
        match acks.waiting.remove(&msg_id) {
            Some((acked, _)) => Some(acked),
            None => {
                if acks.early.len() >= SENT_KEPT {
                    acks.early.clear();
                }
                acks.early.insert(msg_id);
                None
            }
        }
    }

    /// The `ack` for an envelope this node published, if its sender waits.
    pub(super) fn ours(&self, e: &Envelope<'_>, frame: &str) -> Option<Acked> {
        if e.node != self.node {
            return None;
        }
        self.fanned_out(buffer::msg_id_of(frame)?)
    }

    /// Acknowledges every sender that has waited longer than `late`.
    pub(super) fn release_acks(&self, late: Duration) {
        let released: Vec<Acked> = {
            let now = Instant::now();
            let mut acks = self.acks.lock().unwrap_or_else(|e| e.into_inner());
            let old: Vec<Ulid> = acks
                .waiting
                .iter()
                .filter(|(_, (_, at))| now.saturating_duration_since(*at) >= late)
                .map(|(id, _)| *id)
                .collect();
            old.iter().filter_map(|id| acks.waiting.remove(id)).map(|(a, _)| a).collect()
        };
        for a in released {
            acknowledge(a.message, a.route);
        }
    }
}
