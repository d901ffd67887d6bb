//! The Bus: everything that must reach sessions on other nodes goes through
//! here — stored messages, presence, typing, events, read receipts, kicks,
//! topics — and so do the questions only the whole cluster can answer (is
//! a nick online, who is in a room).
//!
//! `Local` (one node): the store's batching writer is the durable step, and
//! everything else goes straight to this process's hub. `Redis` (several
//! nodes, [`redis`]): the node's publishing task hands Redis batches of
//! messages, and Redis takes each message's seq and buffers it in one
//! atomic step, pub/sub carries frames to the nodes that host their
//! recipients, and the [`archiver`] moves the buffer into the database.
//! The hub knows nothing of either; handlers call the bus.

pub mod envelope;
mod redis;

use std::sync::Arc;

use crate::hub::Outbound;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::hub::{Acked, Gate, Hub, JoinStart, Online, Parting, RoleChange, RoomRef, Route, SessionHandle, SessionId};
use crate::model::{Identity, Role};
use crate::protocol::server::{Conv, Frame, MemberView, Place, RoomSummary, StoredMessage};
use crate::protocol::{Name, ProtoError};
use crate::store::{CommitSink, HistoryQuery, NewMessage, Page, RoomRecord, Store, StoreError, Writer};
use envelope::Kind;
use redis::{Chan, RedisBus};

/// Stored messages for the notification decider, and (from the archiver)
/// who waits for the decision to be written (see `service::notify`).
pub(crate) type DecideBatch = (Vec<StoredMessage>, Option<tokio::sync::oneshot::Sender<bool>>);
#[derive(Clone)]
pub(crate) struct Decide {
    pub(crate) tx: tokio::sync::mpsc::Sender<DecideBatch>,
    /// Set when a batch did not fit in the queue: the decider then decides
    /// again from its cursor (which it stops advancing meanwhile).
    pub(crate) overflow: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Clone)]
pub struct Bus {
    hub: Arc<Hub>,
    store: Store,
    kind: BusKind,
}

#[derive(Clone)]
enum BusKind {
    Local(Writer<Route>),
    Redis(Arc<RedisBus>),
}

/// Which of a room's sessions a frame skips.
#[derive(Clone, Copy, Debug)]
pub enum Except<'a> {
    Nobody,
    Session(SessionId),
    /// Every session of this nick key (say, the typist's own).
    User(&'a str),
}

impl Bus {
    /// A single-node bus: store, then deliver through `hub`.
    pub fn local(store: Store, hub: Arc<Hub>, batch_max: usize, decide: Option<Decide>) -> (Bus, JoinHandle<()>) {
        let (writer, task) = Writer::start(store.clone(), batch_max, HubSink(hub.clone(), decide));
        (Bus { hub, store, kind: BusKind::Local(writer) }, task)
    }

    /// A cluster node's bus over the Redis at `cluster.redis_url`.
    pub async fn redis(
        config: &crate::config::ClusterConfig,
        node: String,
        store: Store,
        hub: Arc<Hub>,
        decide: Option<Decide>,
    ) -> anyhow::Result<Bus> {
        let bus = RedisBus::start(config, node, hub.clone(), store.clone(), decide).await?;
        Ok(Bus { hub, store, kind: BusKind::Redis(bus) })
    }

    pub fn clustered(&self) -> bool {
        matches!(self.kind, BusKind::Redis(_))
    }

    // ---- sessions ------------------------------------------------------------

    /// Registers a session; its nick must be free cluster-wide.
    pub async fn connect(
        &self,
        identity: &Identity,
        closed: CancellationToken,
    ) -> Result<(Arc<SessionHandle>, Outbound), ProtoError> {
        let (session, rx) = self.hub.connect(identity, closed)?;
        if let BusKind::Redis(r) = &self.kind
            && let Err(e) = r.connected(&session).await
        {
            // Undo: the hub's registration, and whatever Redis got of it.
            self.hub.disconnect(&session);
            r.disconnected(&session, Vec::new()).await;
            return Err(e);
        }
        Ok((session, rx))
    }

    /// Removes a session from everything; members see `quit`, watchers see
    /// the user go offline with its last session.
    pub async fn disconnect(&self, session: &Arc<SessionHandle>) {
        let rooms: Vec<RoomRef> = session.rooms().clone();
        self.hub.disconnect(session);
        if let BusKind::Redis(r) = &self.kind {
            r.disconnected(session, rooms).await;
        }
    }

    /// Is the user online (anywhere), and how.
    pub async fn online(&self, nick_key: &str) -> Result<Option<Online>, ProtoError> {
        match &self.kind {
            BusKind::Local(_) => Ok(self.hub.online(nick_key)),
            BusKind::Redis(r) => r.online(nick_key).await,
        }
    }

    pub async fn set_away(&self, session: &SessionHandle, away: bool) -> Result<(), ProtoError> {
        self.hub.set_away(session, away);
        match &self.kind {
            // The user's other nodes may hold another flag: Redis decides
            // whether it changed.
            BusKind::Redis(r) => r.set_away(session, away).await,
            BusKind::Local(_) => Ok(()),
        }
    }

    // ---- rooms ---------------------------------------------------------------

    /// First half of a `join` (see [`Hub::join_begin`]); in a cluster the
    /// members and seq are the cluster's.
    pub async fn join_begin(
        &self,
        session: &Arc<SessionHandle>,
        room: &Name,
        record: Option<RoomRecord>,
        role: Option<Role>,
    ) -> Result<JoinStart, ProtoError> {
        match &self.kind {
            BusKind::Local(_) => Ok(self.hub.join_begin(session, room, record, role)),
            BusKind::Redis(r) => r.join_begin(session, room, record, role).await,
        }
    }

    /// Leaves a room; `event` is what the others see. Returns the room's
    /// name if the session was in it.
    pub async fn leave(&self, session: &Arc<SessionHandle>, room_key: &str, how: Parting<'_>) -> Option<Arc<str>> {
        match &self.kind {
            BusKind::Local(_) => self.hub.leave(session, room_key, how),
            BusKind::Redis(r) => r.leave(session, room_key, how).await,
        }
    }

    /// Removes a user's sessions from a room, everywhere. Returns how many
    /// sessions were in it.
    pub async fn kick(
        &self,
        room_key: &str,
        nick_key: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<usize, ProtoError> {
        match &self.kind {
            BusKind::Local(_) => Ok(self.hub.kick(room_key, nick_key, by, comment).len()),
            BusKind::Redis(r) => {
                let n = r.sessions_in(room_key, nick_key).await?;
                if n > 0 {
                    let env = envelope::envelope(Kind::Kick, &r.node, None, room_key, by, comment.unwrap_or(""));
                    r.send(Some(Chan::User(nick_key.into())), env).await?;
                }
                Ok(n)
            }
        }
    }

    /// Destroys a live room everywhere: members get `left` `destroyed`.
    /// Returns how many sessions (one node) or users (a cluster) were in it.
    pub async fn destroy(&self, room_key: &str) -> Result<usize, ProtoError> {
        match &self.kind {
            BusKind::Local(_) => Ok(self.hub.destroy(room_key).len()),
            BusKind::Redis(r) => r.destroy(room_key).await,
        }
    }

    pub async fn set_moderator(&self, room_key: &str, nick_key: &str, moderator: bool) -> Result<(), ProtoError> {
        match &self.kind {
            BusKind::Local(_) => {
                self.hub.set_moderator(room_key, nick_key, moderator);
                Ok(())
            }
            BusKind::Redis(r) => {
                let env =
                    envelope::envelope(Kind::Moderator, &r.node, None, room_key, if moderator { "1" } else { "0" }, "");
                r.send(Some(Chan::User(nick_key.into())), env).await
            }
        }
    }

    /// Sets user `id`'s roles (holding `nick_key`) in a room, for its
    /// sessions in it on every node (see [`Hub::set_role`]).
    pub async fn set_role(
        &self,
        room_key: &str,
        nick_key: &str,
        id: &str,
        change: RoleChange,
    ) -> Result<(), ProtoError> {
        match &self.kind {
            BusKind::Local(_) => {
                self.hub.set_role(room_key, nick_key, id, change);
                Ok(())
            }
            BusKind::Redis(r) => {
                // Here at once (before the change is acknowledged), then on
                // the other nodes (the same change again here: no effect).
                self.hub.set_role(room_key, nick_key, id, change);
                let flag = |f: Option<bool>| match f {
                    Some(true) => '1',
                    Some(false) => '0',
                    None => '-',
                };
                let whole = if change.whole_history { '1' } else { '0' };
                let flags: String = [flag(change.moderator), flag(change.voiced), whole].into_iter().collect();
                let env = envelope::envelope(Kind::Role, &r.node, None, room_key, id, &flags);
                r.send(Some(Chan::User(nick_key.into())), env).await
            }
        }
    }

    /// A live room's settings that `say` checks changed: every node's copy
    /// follows (here at once, then on the other nodes).
    pub async fn set_gate(&self, room_key: &str, gate: Gate) -> Result<(), ProtoError> {
        let payload = match &self.kind {
            BusKind::Redis(_) => {
                let flag = |f: bool| if f { '1' } else { '0' };
                let mut p: String = [flag(gate.moderated), flag(gate.secret)].into_iter().collect();
                for b in gate.bans.iter() {
                    p.push('\n');
                    p.push_str(b);
                }
                p
            }
            BusKind::Local(_) => String::new(),
        };
        self.hub.set_gate(room_key, gate);
        match &self.kind {
            BusKind::Local(_) => Ok(()),
            BusKind::Redis(r) => {
                let env = envelope::envelope(Kind::Gate, &r.node, None, "", "", &payload);
                r.send(Some(Chan::Room(room_key.into())), env).await
            }
        }
    }

    /// Joins the connected sessions of user `id` (holding `nick_key`), on
    /// every node, to `room_key`: each session's reader joins it as if the
    /// user had asked (see [`crate::hub::SessionHandle::admit`]).
    pub async fn admit(&self, room_key: &str, id: &str, nick_key: &str) -> Result<(), ProtoError> {
        match &self.kind {
            BusKind::Local(_) => {
                self.hub.admit(room_key, id, nick_key);
                Ok(())
            }
            BusKind::Redis(r) => {
                let env = envelope::envelope(Kind::Admit, &r.node, None, room_key, id, "");
                r.send(Some(Chan::User(nick_key.into())), env).await
            }
        }
    }

    /// Sets a live room's topic and tells its members.
    pub async fn set_topic(&self, room_key: &str, topic: Arc<str>, by: &str) -> Result<(), ProtoError> {
        match &self.kind {
            BusKind::Local(_) => {
                self.hub.set_topic(room_key, topic, by);
                Ok(())
            }
            BusKind::Redis(r) => {
                // Here at once (the setter sees `topic` before its `ack`),
                // then on the other nodes.
                let env = envelope::envelope(Kind::Topic, &r.node, None, by, "", &topic);
                self.hub.set_topic(room_key, topic, by);
                r.send(Some(Chan::Room(room_key.into())), env).await
            }
        }
    }

    /// `who`: a live room's name, topic and members.
    pub async fn who(&self, room_key: &str) -> Result<Option<(Arc<str>, Arc<str>, Vec<MemberView>)>, ProtoError> {
        match &self.kind {
            BusKind::Local(_) => Ok(self.hub.who(room_key)),
            BusKind::Redis(r) => {
                let Some((name, members)) = r.who(room_key).await? else { return Ok(None) };
                let topic = self.topic(room_key).await?;
                Ok(Some((name, topic, members)))
            }
        }
    }

    async fn topic(&self, room_key: &str) -> Result<Arc<str>, ProtoError> {
        let record = self.store.room(room_key).await?;
        Ok(record.map(|r| r.topic).unwrap_or_else(|| "".into()))
    }

    /// Every live room with its number of users, by name (private ones too).
    pub async fn room_list(&self) -> Result<Vec<RoomSummary>, ProtoError> {
        match &self.kind {
            BusKind::Local(_) => Ok(self.hub.room_list()),
            BusKind::Redis(r) => {
                let live = r.live_rooms().await?;
                let records: std::collections::HashMap<String, RoomRecord> =
                    (self.store.list_rooms().await)?.into_iter().map(|r| (r.name.to_ascii_lowercase(), r)).collect();
                let mut list: Vec<RoomSummary> = live
                    .into_iter()
                    .map(|(key, (name, members))| {
                        let rec = records.get(&key);
                        RoomSummary {
                            name: name.into(),
                            topic: rec.map(|r| r.topic.clone()).unwrap_or_else(|| "".into()),
                            members,
                            private: rec.is_some_and(|r| r.private),
                        }
                    })
                    .collect();
                list.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(list)
            }
        }
    }

    /// A live room's name as shown, if it is live anywhere.
    pub async fn room_name(&self, room_key: &str) -> Result<Option<Arc<str>>, ProtoError> {
        match &self.kind {
            BusKind::Local(_) => Ok(self.hub.room_name(room_key)),
            BusKind::Redis(r) => r.room_name(room_key).await,
        }
    }

    // ---- frames that are not stored ------------------------------------------------

    /// Sends a frame to a room's members everywhere, but `except`.
    pub async fn to_room(&self, room_key: &str, frame: &Frame, except: Except<'_>) -> Result<(), ProtoError> {
        match &self.kind {
            BusKind::Local(_) => {
                self.hub.to_room(room_key, frame, |s| match except {
                    Except::Nobody => true,
                    Except::Session(id) => s.id != id,
                    Except::User(key) => **s.nick().key() != *key,
                });
                Ok(())
            }
            BusKind::Redis(r) => {
                let (sid, nick) = match except {
                    Except::Nobody => (None, ""),
                    Except::Session(id) => (Some(id), ""),
                    Except::User(key) => (None, key),
                };
                let env = envelope::envelope(Kind::Frame, &r.node, sid, nick, "", frame);
                r.send(Some(Chan::Room(room_key.into())), env).await
            }
        }
    }

    /// Sends a frame to every session of a user everywhere but `except`.
    /// Returns whether the user is online (on one node; a cluster does not
    /// know without asking Redis, so it says true: ask [`Bus::online`]).
    pub async fn to_user(&self, nick_key: &str, frame: &Frame, except: Option<SessionId>) -> Result<bool, ProtoError> {
        match &self.kind {
            BusKind::Local(_) => Ok(self.hub.to_user(nick_key, frame, except)),
            BusKind::Redis(r) => {
                let env = envelope::envelope(Kind::Frame, &r.node, except, "", "", frame);
                r.send(Some(Chan::User(nick_key.into())), env).await?;
                Ok(true)
            }
        }
    }

    async fn to_everyone(&self, frame: &Frame, except: Option<SessionId>) -> Result<(), ProtoError> {
        match &self.kind {
            BusKind::Local(_) => {
                self.hub.to_everyone(frame, except);
                Ok(())
            }
            BusKind::Redis(r) => r.send(None, envelope::envelope(Kind::Frame, &r.node, except, "", "", frame)).await,
        }
    }

    /// Sends a frame about a stored message (`edited`, `deleted`) to all who
    /// could see it, but `except`. `make` builds the frame for a [`Place`]:
    /// a DM's two parties see it `with` each other.
    pub async fn about_message(
        &self,
        msg: &StoredMessage,
        except: Option<SessionId>,
        make: impl Fn(Place<'_>) -> Frame,
    ) -> Result<(), ProtoError> {
        match &msg.conv {
            Conv::Room(key) => {
                let frame = make(Place::room(msg.room.as_deref().unwrap_or(key)));
                let except = except.map_or(Except::Nobody, Except::Session);
                self.to_room(key, &frame, except).await
            }
            Conv::Dm(a, b) => {
                // Only to the two parties: a nick may be held by someone
                // else now (a new guest), who must not hear of the message.
                let to = msg.to.as_deref().unwrap_or_default();
                for (nick, peer) in [(to, &*msg.from), (&*msg.from, to)] {
                    let key = nick.to_ascii_lowercase();
                    let party = self.online(&key).await?.is_some_and(|o| o.id == *a || o.id == *b);
                    if party {
                        self.to_user(&key, &make(Place::with(peer)), except).await?;
                    }
                }
                Ok(())
            }
            Conv::Everyone => self.to_everyone(&make(Place::everyone()), except).await,
        }
    }

    // ---- messages ------------------------------------------------------------------

    /// Hands a message to the durable step. Its route later gets the `ack`
    /// (stored and delivered) or `unavailable` (not stored, not delivered).
    /// Fails, returning the route, only while shutting down.
    pub async fn publish(&self, msg: NewMessage, route: Route) -> Result<(), Route> {
        match &self.kind {
            BusKind::Local(w) => w.submit(msg, route).await,
            BusKind::Redis(r) => r.publish(msg, route),
        }
    }

    /// Waits until everything published so far is delivered or failed (in
    /// a cluster: stored or failed; a sender's `ack` may still wait for its
    /// node's fan-out).
    pub async fn flush(&self) {
        match &self.kind {
            BusKind::Local(w) => w.flush().await,
            BusKind::Redis(r) => r.flush().await,
        }
    }

    /// A page of a conversation's history: in a cluster, the database and
    /// the Redis buffer merged.
    pub async fn history(&self, conv: &Conv, q: HistoryQuery) -> Result<Page, StoreError> {
        match &self.kind {
            BusKind::Local(_) => self.store.history(conv, q).await,
            BusKind::Redis(r) => r.history(conv, q).await,
        }
    }

    /// Makes every message sent so far reach the database (in a cluster the
    /// newest may still be buffered in Redis): before editing, deleting or
    /// exporting stored messages.
    /// Returns whether that worked (always, on one node).
    pub async fn settle(&self) -> bool {
        match &self.kind {
            BusKind::Redis(r) => r.settle().await,
            BusKind::Local(_) => true,
        }
    }

    /// Whether the cluster's Redis answers (always true on one node).
    pub async fn ready(&self) -> bool {
        match &self.kind {
            BusKind::Local(_) => true,
            BusKind::Redis(r) => r.ping().await,
        }
    }

    /// What a metrics scrape shows of the cluster (None on one node).
    pub async fn metrics_snapshot(&self) -> Option<crate::metrics::ClusterSnapshot> {
        let BusKind::Redis(r) = &self.kind else { return None };
        let redis_up = r.ping().await;
        let archiver = if redis_up { redis::backlog(r).await } else { None };
        Some(crate::metrics::ClusterSnapshot { redis_up, archiver })
    }

    /// Leaves the cluster (a no-op on one node): this node's users quit
    /// everywhere, a last archiver pass runs, the bus's tasks end.
    pub async fn shutdown(&self) {
        if let BusKind::Redis(r) = &self.kind {
            r.shutdown().await;
        }
    }

    /// Stops the bus's tasks at once (a shutdown that ran out of time).
    pub fn abort(&self) {
        if let BusKind::Redis(r) = &self.kind {
            r.abort();
        }
    }
}

/// A [`Kind::Gate`] payload read back.
pub(crate) fn gate_from(payload: &str) -> Gate {
    let mut lines = payload.split('\n');
    let flags = lines.next().unwrap_or("").as_bytes();
    let (moderated, secret) = (flags.first() == Some(&b'1'), flags.get(1) == Some(&b'1'));
    Gate { moderated, secret, bans: lines.filter(|l| !l.is_empty()).map(Into::into).collect() }
}

/// A [`Kind::Role`] payload read back: moderator, voiced.
pub(crate) fn role_flags(payload: &str) -> RoleChange {
    let flag = |c: Option<u8>| match c {
        Some(b'1') => Some(true),
        Some(b'0') => Some(false),
        _ => None,
    };
    let b = payload.as_bytes();
    RoleChange {
        moderator: flag(b.first().copied()),
        voiced: flag(b.get(1).copied()),
        whole_history: b.get(2) == Some(&b'1'),
    }
}

/// Delivers committed batches through the one delivery sink
/// ([`Hub::deliver`]), in commit order.
/// After delivery, the batch goes to the notification decider (if any):
/// one copy of each message, never waited for (a full queue makes the
/// decider catch up from its cursor in the database).
struct HubSink(Arc<Hub>, Option<Decide>);

impl CommitSink<Route> for HubSink {
    fn committed(&self, batch: Vec<(StoredMessage, Route)>) {
        self.0.metrics().stored(batch.iter().map(|(m, _)| &m.conv));
        let copies = self.1.as_ref().map(|_| batch.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>());
        for (message, route) in batch {
            Acked { message, route }.deliver_on(&self.0);
        }
        if let (Some(decide), Some(copies)) = (&self.1, copies)
            && decide.tx.try_send((copies, None)).is_err()
            && !decide.overflow.swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            tracing::warn!("the notification queue is full; the decider catches up from its cursor");
        }
    }

    fn failed(&self, batch: Vec<Route>, _error: &StoreError) {
        let error = ProtoError::unavailable();
        for route in batch {
            self.0.fail(route, &error);
        }
    }

    fn durable_step(&self, took: std::time::Duration, ok: bool) {
        self.0.metrics().durable_step(took, ok);
    }
}
