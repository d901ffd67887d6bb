//! The decision: for each stored message, who is owed a notification, and
//! the outbox rows that carry it (webhook events, Web Push payloads). Off
//! the hot path: it runs on its own task, fed after delivery.
//!
//! A user is notified of a message while no session of it is connected, or
//! all are away: a DM to it (`dm`), a mention of it (`mention`, in a
//! private room only if it is a member), and with `settings.notify = "all"`
//! every message of the rooms it is a member of (`room`) and every message
//! to everyone (`everyone`). Never the sender, never for a room in its
//! `settings.muted_rooms`, never with `notify = "none"`; `"mentions"` (the
//! default) takes DMs and mentions only. Once per user and message,
//! however many sessions it has: the event id is `<msg_id>:<user id>`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use ulid::Ulid;

use super::Batch;
use crate::cluster::Bus;
use crate::config::NotifyConfig;
use crate::protocol::now_ms;
use crate::protocol::server::{Conv, StoredMessage};
use crate::service::access::{Readable, Reader, may_read};
use crate::store::{NewOutbox, Store, StoreError, Wanting};

/// Who wants every message, by conversation (rooms and everyone), per batch.
type Wanted = HashMap<Conv, Vec<Wanting>>;

/// Where the one-node decider keeps the newest `msg_id` it decided.
const CURSOR: &str = "cursor";
/// How often the cursor is written, at most.
const CURSOR_EVERY: Duration = Duration::from_secs(1);
/// A page of the replay after a start.
const REPLAY_PAGE: usize = 500;
/// Most users with `notify = "all"` read for one message to everyone.
const MAX_EVERYONE: usize = 10_000;

pub(super) struct Decider {
    pub(super) config: NotifyConfig,
    pub(super) store: Store,
    pub(super) bus: Bus,
    pub(super) wake: Arc<Notify>,
    /// The server's name as a host (ban masks).
    pub(super) host: String,
}

/// Why a user is notified, as the event's `kind` names it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dm,
    Mention,
    Room,
    Everyone,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Dm => "dm",
            Kind::Mention => "mention",
            Kind::Room => "room",
            Kind::Everyone => "everyone",
        }
    }
}

/// A user who may be owed a notification.
struct Candidate {
    id: String,
    nick: String,
    kind: Kind,
    /// Read already with the candidate (the `all` queries), else looked up.
    settings: Option<String>,
}

/// Most messages decided together after a `notify.gather` wait.
const GATHER_MAX: usize = 4096;

impl Decider {
    pub(super) async fn run(
        self,
        mut rx: mpsc::Receiver<Batch>,
        overflow: Arc<AtomicBool>,
        one_node: bool,
        stop: CancellationToken,
    ) {
        let mut newest: Option<Ulid> = None;
        let mut written: Option<Ulid> = None;
        let mut last_write = Instant::now();
        if one_node && let Err(e) = self.replay(&mut newest).await {
            tracing::warn!(error = %e, "could not decide again the messages of the last run");
        }
        loop {
            // At shutdown the decider lets go of the bus (which holds the
            // writer, whose sink feeds this queue) once its queue is empty:
            // what comes after is decided by the next start's replay.
            let next = tokio::select! {
                next = rx.recv() => next,
                _ = stop.cancelled() => rx.try_recv().ok(),
            };
            let Some((mut messages, done)) = next else { break };
            if one_node && done.is_none() && !self.config.gather.is_zero() {
                // Decide what arrived within `notify.gather` at once: the
                // queries for who wants every message run once per
                // conversation of the whole lot, not once per message.
                tokio::select! {
                    _ = tokio::time::sleep(self.config.gather) => {}
                    _ = stop.cancelled() => {}
                }
                while messages.len() < GATHER_MAX
                    && let Ok((more, None)) = rx.try_recv()
                {
                    messages.extend(more);
                }
            }
            let ok = self.decide_all(&messages).await;
            if let Some(done) = done {
                let _ = done.send(ok);
            }
            if one_node && !ok {
                // Not written (the database refused three times): decide
                // it again from the cursor, which stops advancing until then.
                overflow.store(true, Ordering::Release);
            }
            if one_node && overflow.load(Ordering::Acquire) {
                // Some batches did not fit in the queue: once it is empty,
                // decide again from the cursor (not advanced meanwhile).
                if rx.is_empty() {
                    overflow.store(false, Ordering::Release);
                    if let Err(e) = self.replay(&mut newest).await {
                        tracing::warn!(error = %e, "could not catch up with the notifications; trying again with the next batch");
                        overflow.store(true, Ordering::Release);
                    }
                }
                continue;
            }
            if one_node && ok {
                newest = messages.iter().map(|m| m.msg_id).max().max(newest);
                if newest != written && last_write.elapsed() >= CURSOR_EVERY {
                    self.write_cursor(newest, &mut written).await;
                    last_write = Instant::now();
                }
            }
        }
        if one_node {
            self.write_cursor(newest, &mut written).await;
        }
    }

    async fn write_cursor(&self, newest: Option<Ulid>, written: &mut Option<Ulid>) {
        let Some(id) = newest.filter(|n| Some(*n) != *written) else { return };
        match self.store.set_notify_state(CURSOR, &id.to_string()).await {
            Ok(()) => *written = Some(id),
            Err(e) => tracing::warn!(error = %e, "could not write the notification cursor"),
        }
    }

    /// Decides again the messages stored after the cursor (less the
    /// margin): those a crash may have left undecided.
    async fn replay(&self, newest: &mut Option<Ulid>) -> Result<(), StoreError> {
        let Some((cursor, _)) = self.store.notify_state(CURSOR).await? else {
            // First start with notifications: nothing was owed before; what
            // is stored from now on is, even if this run dies within a second.
            let now = Ulid::from_parts(now_ms() as u64, 0);
            return self.store.set_notify_state(CURSOR, &now.to_string()).await;
        };
        let Ok(cursor) = Ulid::from_string(&cursor) else { return Ok(()) };
        let margin = self.config.replay_margin.as_millis() as u64;
        let mut after = Ulid::from_parts(cursor.timestamp_ms().saturating_sub(margin), 0);
        let mut count = 0;
        loop {
            let page = self.store.messages_after(after, REPLAY_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.msg_id;
            count += page.len();
            if !self.decide_all(&page).await {
                return Err(StoreError::Buffer("the decision failed".into()));
            }
            *newest = Some(after).max(*newest);
            if page.len() < REPLAY_PAGE {
                break;
            }
        }
        if count > 0 {
            tracing::info!(messages = count, "decided notifications again for messages of the last run");
        }
        Ok(())
    }

    /// Decides a batch, retrying a failed write a few times; false if it
    /// still failed (logged).
    async fn decide_all(&self, messages: &[StoredMessage]) -> bool {
        let mut rows = Vec::new();
        let mut failure = None;
        for attempt in 1..=3u32 {
            rows.clear();
            // Who wants every message of a conversation, read once per batch.
            let mut wanting = HashMap::new();
            let mut result = Ok(());
            for m in messages {
                if let Err(e) = self.decide(m, &mut rows, &mut wanting).await {
                    result = Err(e);
                    break;
                }
            }
            let result = match result {
                Ok(()) => self.store.outbox_put(&rows, now_ms()).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    if !rows.is_empty() {
                        self.wake.notify_waiters();
                    }
                    return true;
                }
                Err(e) => failure = Some(e),
            }
            tokio::time::sleep(super::backoff(self.config.retry_base, self.config.retry_max, attempt)).await;
        }
        if let Some(e) = failure {
            tracing::warn!(error = %e, messages = messages.len(), "could not decide notifications");
        }
        false
    }

    /// The outbox rows one message owes.
    async fn decide(
        &self,
        m: &StoredMessage,
        rows: &mut Vec<NewOutbox>,
        wanting: &mut Wanted,
    ) -> Result<(), StoreError> {
        let webhook = !self.config.webhook_url.is_empty();
        // The message as the webhook shows it, made only if one is posted.
        let message = if webhook { serde_json::to_value(m).unwrap_or(Value::Null) } else { Value::Null };
        if webhook && self.config.webhook_messages {
            let id = format!("m:{}", m.msg_id);
            let body = json!({"id": id, "kind": "message", "message": message});
            rows.push(NewOutbox { id, channel: "webhook", target: String::new(), body: body.to_string() });
        }
        for c in self.candidates(m, wanting).await? {
            if c.id == *m.sender_id || !self.wants(m, &c).await? || self.present(&c).await? {
                continue;
            }
            let id = format!("{}:{}", m.msg_id, c.id);
            if webhook {
                let sub = c.id.strip_prefix("s-").map(|s| s.replace("%3A", ":").replace("%25", "%"));
                let body = json!({"id": id, "kind": c.kind.as_str(),
                    "user": {"nick": c.nick, "sub": sub}, "message": message});
                rows.push(NewOutbox {
                    id: id.clone(),
                    channel: "webhook",
                    target: String::new(),
                    body: body.to_string(),
                });
            }
            if self.config.push {
                let payload = push_payload(m, c.kind).to_string();
                for s in self.store.subscriptions(&c.id).await? {
                    rows.push(NewOutbox {
                        id: format!("{id}:{}", s.id),
                        channel: "push",
                        target: s.id,
                        body: payload.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Everyone the message may concern, each once, the strongest reason
    /// first (a DM, then a mention, then `all`).
    async fn candidates(&self, m: &StoredMessage, wanting: &mut Wanted) -> Result<Vec<Candidate>, StoreError> {
        let mut out: Vec<Candidate> = Vec::new();
        let mut add = |c: Candidate| {
            if !out.iter().any(|o| o.id == c.id) {
                out.push(c);
            }
        };
        if let Conv::Dm(a, b) = &m.conv {
            let to = if **a == *m.sender_id { b } else { a };
            if let Some(nick) = &m.to {
                add(Candidate { id: to.to_string(), nick: nick.to_string(), kind: Kind::Dm, settings: None });
            }
        }
        for nick in &m.mentions {
            let Some(id) = self.holder(nick).await? else { continue };
            if let Conv::Room(room) = &m.conv {
                // Only one who may read the room hears of it (not in it
                // now: a closed room's members; nobody banned).
                let record = self.store.room(room).await?;
                let reader = Reader { id: &id, nick, admin: false };
                if may_read(&self.store, &self.host, Some(reader), room, record.as_ref(), false).await? != Readable::Yes
                {
                    continue;
                }
            }
            if matches!(m.conv, Conv::Dm(..)) {
                // Only the two parties read a DM.
                continue;
            }
            add(Candidate { id, nick: nick.to_string(), kind: Kind::Mention, settings: None });
        }
        let kind = match &m.conv {
            Conv::Room(_) => Kind::Room,
            Conv::Everyone => Kind::Everyone,
            Conv::Dm(..) => return Ok(out),
        };
        if !wanting.contains_key(&m.conv) {
            let room = match &m.conv {
                Conv::Room(room) => Some(&**room),
                _ => None,
            };
            wanting.insert(m.conv.clone(), self.store.wanting_all(room, MAX_EVERYONE).await?);
        }
        for w in wanting.get(&m.conv).into_iter().flatten() {
            add(Candidate { id: w.owner.clone(), nick: w.nick.clone(), kind, settings: Some(w.settings.clone()) });
        }
        Ok(out)
    }

    /// The id of the user who holds or owns `nick` now.
    async fn holder(&self, nick: &str) -> Result<Option<String>, StoreError> {
        let key = nick.to_ascii_lowercase();
        if let Ok(Some(o)) = self.bus.online(&key).await {
            return Ok(Some(o.id.to_string()));
        }
        if let Some(owner) = self.store.account(&key).await?.and_then(|a| a.owner) {
            return Ok(Some(owner));
        }
        self.store.guest_holder(&key, now_ms()).await
    }

    /// Whether the user's settings take this notification.
    async fn wants(&self, m: &StoredMessage, c: &Candidate) -> Result<bool, StoreError> {
        let settings = match &c.settings {
            Some(s) => s.clone(),
            None => {
                let account = self.store.account(&c.nick.to_ascii_lowercase()).await?;
                // The nick's row is the user's if it owns it (a guest owns none).
                account
                    .filter(|a| a.owner.as_deref().is_none_or(|o| o == c.id))
                    .map(|a| a.settings.to_string())
                    .unwrap_or_default()
            }
        };
        let settings: Value = serde_json::from_str(&settings).unwrap_or(Value::Null);
        let level = settings.get("notify").and_then(Value::as_str).unwrap_or("mentions");
        let wanted = match level {
            "none" => false,
            "all" => true,
            _ => matches!(c.kind, Kind::Dm | Kind::Mention),
        };
        let muted = match (&m.conv, settings.get("muted_rooms").and_then(Value::as_array)) {
            (Conv::Room(room), Some(list)) => {
                list.iter().filter_map(Value::as_str).any(|r| r.eq_ignore_ascii_case(room))
            }
            _ => false,
        };
        Ok(wanted && !muted)
    }

    /// Whether the user has a session connected (anywhere) that is not away.
    async fn present(&self, c: &Candidate) -> Result<bool, StoreError> {
        match self.bus.online(&c.nick.to_ascii_lowercase()).await {
            Ok(Some(o)) => Ok(*o.id == *c.id && !o.away),
            Ok(None) => Ok(false),
            Err(e) => Err(StoreError::Buffer(e.message)),
        }
    }
}

/// The decrypted body of a Web Push: `{title, body, room | with, msg_id, url}`.
fn push_payload(m: &StoredMessage, kind: Kind) -> Value {
    let body: String = if m.text.is_empty() { "(a file)".into() } else { m.text.chars().take(200).collect() };
    let mut v = json!({"body": body, "msg_id": m.msg_id.to_string()});
    match (&m.conv, &m.room) {
        (Conv::Room(_), Some(room)) => {
            v["title"] = json!(match kind {
                Kind::Mention => format!("{} mentioned you in {room}", m.from),
                _ => format!("{} in {room}", m.from),
            });
            v["room"] = json!(room);
            v["url"] = json!(format!("/?room={}", urlencode(room)));
        }
        (Conv::Dm(..), _) => {
            v["title"] = json!(format!("{}", m.from));
            v["with"] = json!(m.from);
            v["url"] = json!(format!("/?dm={}", urlencode(&m.from)));
        }
        _ => {
            v["title"] = json!(format!("{} to everyone", m.from));
            v["url"] = json!("/");
        }
    }
    v
}

/// Names hold ASCII letters, digits, `_-.` and a leading `#`.
fn urlencode(s: &str) -> String {
    s.replace('#', "%23")
}
