//! The Redis bus: several nodes share one Redis for fan-out (pub/sub),
//! cluster-wide nicks, presence and room membership, each conversation's
//! `seq`, and the buffer of new messages that the archiver moves into the
//! database. docs/cluster.md lists every key and channel.
//!
//! Tasks: the subscriber (one pub/sub connection for the node: it connects,
//! reconnects with backoff, re-registers the node's sessions, and applies
//! what arrives to the local hub), the heartbeat (liveness, and cleaning up
//! after dead nodes) and the archiver (see [`super::archiver`]). Commands go
//! over one multiplexed connection, shared by every task and session.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink};
use redis::{AsyncCommands, AsyncConnectionConfig, RedisError, Script};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::buffer;
use super::envelope::{self, Envelope, Kind, RS};
use crate::config::ClusterConfig;
use crate::hub::{Hub, JoinStart, Online, Route, SessionHandle, SessionId};
use crate::protocol::server::{Conv, Frame, MemberView, ServerFrame, StoredMessage, encode};
use crate::protocol::{Name, ProtoError, now_ms};
use crate::store::{HistoryQuery, NewMessage, Page, RoomRecord, Store, StoreError};

struct Scripts {
    publish: Script,
    claim: Script,
    release: Script,
    join: Script,
    leave: Script,
    who: Script,
    heartbeat: Script,
    reap: Script,
    away: Script,
    fence: Script,
    destroy: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            publish: Script::new(include_str!("lua/publish.lua")),
            claim: Script::new(include_str!("lua/claim.lua")),
            release: Script::new(include_str!("lua/release.lua")),
            join: Script::new(include_str!("lua/join.lua")),
            leave: Script::new(include_str!("lua/leave.lua")),
            who: Script::new(include_str!("lua/who.lua")),
            heartbeat: Script::new(include_str!("lua/heartbeat.lua")),
            reap: Script::new(include_str!("lua/reap.lua")),
            away: Script::new(include_str!("lua/away.lua")),
            fence: Script::new(include_str!("lua/fence.lua")),
            destroy: Script::new(include_str!("lua/destroy.lua")),
        }
    }
}

/// A member as the room's members hash keeps it.
#[derive(Serialize, Deserialize)]
struct MemberRecord {
    nick: Arc<str>,
    display_name: Arc<str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    avatar: Option<Arc<str>>,
    joined_at: i64,
}

/// A channel a node subscribes to while it has a local interest in it.
#[derive(Clone, Debug)]
pub(super) enum Chan {
    Room(Arc<str>),
    User(Arc<str>),
}

enum SubCmd {
    Subscribe(Chan, oneshot::Sender<bool>),
    Unsubscribe(Chan),
}

pub struct RedisBus {
    hub: Arc<Hub>,
    pub(super) store: Store,
    pub(super) node: String,
    pub(super) prefix: String,
    pub(super) config: ClusterConfig,
    client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
    scripts: Scripts,
    subs: mpsc::UnboundedSender<SubCmd>,
    /// Wakes the subscriber to drop its connection and start over (a
    /// command found the connection broken).
    reconnect: Notify,
    pub(super) up: AtomicBool,
    /// Stops every task of the bus.
    pub(super) stop: CancellationToken,
    /// Stops the heartbeats alone (first thing at shutdown: a node leaving
    /// must not be re-registered by its own heartbeat).
    beats: CancellationToken,
    /// A registration could not be undone (Redis hiccup): the next
    /// heartbeat reconciles Redis with the hub.
    dirty: AtomicBool,
    /// Asks the archiver for a pass now; answered when it is done.
    pub(super) settle: mpsc::UnboundedSender<oneshot::Sender<bool>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    me: std::sync::Weak<RedisBus>,
    /// Messages whose durable step had an unknown outcome, with the session
    /// that sent them: catching up after a reconnect must not hand a sender
    /// its own message (it gets the `ack`).
    unresolved: Mutex<HashMap<ulid::Ulid, (SessionId, tokio::time::Instant)>>,
}

fn unavailable(e: impl std::fmt::Display) -> ProtoError {
    tracing::warn!(error = %e, "redis unavailable");
    ProtoError::unavailable()
}

impl RedisBus {
    /// Connects to Redis (failing if it cannot be reached now: a node
    /// starts only when its cluster is there) and starts the node's tasks.
    pub async fn start(config: &ClusterConfig, node: String, hub: Arc<Hub>, store: Store) -> anyhow::Result<Arc<Self>> {
        let client = redis::Client::open(config.redis_url.as_str())?;
        let (subs, sub_rx) = mpsc::unbounded_channel();
        let (settle, settle_rx) = mpsc::unbounded_channel();
        let bus = Arc::new_cyclic(|me| RedisBus {
            hub,
            store,
            node,
            prefix: config.prefix.clone(),
            config: config.clone(),
            client,
            conn: Mutex::new(None),
            scripts: Scripts::new(),
            subs,
            reconnect: Notify::new(),
            up: AtomicBool::new(false),
            stop: CancellationToken::new(),
            beats: CancellationToken::new(),
            dirty: AtomicBool::new(false),
            settle,
            tasks: Mutex::new(Vec::new()),
            me: me.clone(),
            unresolved: Mutex::default(),
        });
        let conn = bus.connect().await?;
        *bus.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
        let (ready_tx, ready) = oneshot::channel();
        let tasks = vec![
            tokio::spawn(bus.clone().subscriber(sub_rx, ready_tx)),
            tokio::spawn(bus.clone().heartbeats()),
            tokio::spawn(super::archiver::run(bus.clone(), settle_rx)),
        ];
        *bus.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        if ready.await != Ok(true) {
            bus.abort();
            anyhow::bail!("redis at {} did not answer", redis_host(&config.redis_url));
        }
        tracing::info!(redis = %redis_host(&config.redis_url), prefix = %bus.prefix, "cluster bus up");
        Ok(bus)
    }

    async fn connect(&self) -> Result<MultiplexedConnection, RedisError> {
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.redis_timeout))
            .set_response_timeout(Some(self.config.redis_timeout));
        self.client.get_multiplexed_async_connection_with_config(&cfg).await
    }

    // ---- names -------------------------------------------------------------

    /// A Redis key or channel name: `<prefix>:<rest>`.
    pub(super) fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }
    fn chan_name(&self, chan: &Chan) -> String {
        match chan {
            Chan::Room(k) => self.key(&format!("r:{k}")),
            Chan::User(k) => self.key(&format!("u:{k}")),
        }
    }
    fn all_chan(&self) -> String {
        self.key("all")
    }
    fn member(&self, session: &SessionHandle) -> String {
        format!("{}|{}", self.node, session.id)
    }
    fn node_key(&self, node: &str) -> String {
        self.key(&format!("node:{node}"))
    }

    // ---- connection ----------------------------------------------------------

    /// The shared command connection, or `unavailable` while Redis is away.
    pub(super) fn conn(&self) -> Result<MultiplexedConnection, ProtoError> {
        match &*self.conn.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(c) if self.up.load(Ordering::Acquire) => Ok(c.clone()),
            _ => Err(ProtoError::unavailable()),
        }
    }

    /// Notes a failed command. A broken connection, or a server that cannot
    /// take writes (a demoted primary, one still loading), makes the
    /// subscriber start over. (A slow command alone does not.)
    pub(super) fn failed(&self, e: &RedisError) -> ProtoError {
        let unfit = matches!(e.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"));
        if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || unfit {
            self.reconnect.notify_waiters();
        }
        unavailable(e)
    }

    async fn run<T: redis::FromRedisValue>(&self, inv: redis::ScriptInvocation<'_>) -> Result<T, ProtoError> {
        let mut conn = self.conn()?;
        inv.invoke_async(&mut conn).await.map_err(|e| self.failed(&e))
    }

    async fn publish_raw(&self, channel: &str, text: &str) -> Result<(), ProtoError> {
        let mut conn = self.conn()?;
        let _: i64 = conn.publish(channel, text).await.map_err(|e| self.failed(&e))?;
        Ok(())
    }

    /// Waits for a subscription to be in place (or fails while Redis is away).
    async fn subscribe(&self, chan: Chan) -> Result<(), ProtoError> {
        let (tx, rx) = oneshot::channel();
        let _ = self.subs.send(SubCmd::Subscribe(chan, tx));
        match tokio::time::timeout(self.config.redis_timeout * 2, rx).await {
            Ok(Ok(true)) => Ok(()),
            _ => Err(ProtoError::unavailable()),
        }
    }

    fn unsubscribe(&self, chan: Chan) {
        let _ = self.subs.send(SubCmd::Unsubscribe(chan));
    }

    /// Whether the node still has a local interest in `chan`.
    fn wanted(&self, chan: &Chan) -> bool {
        match chan {
            Chan::Room(k) => self.hub.room_is_live(k),
            Chan::User(k) => self.hub.online(k).is_some(),
        }
    }

    /// The subscriber task: (re)connects with backoff, subscribes to what
    /// the node hosts, re-registers its sessions, then applies what arrives.
    async fn subscriber(self: Arc<Self>, mut cmds: mpsc::UnboundedReceiver<SubCmd>, ready: oneshot::Sender<bool>) {
        let mut ready = Some(ready);
        let mut backoff = Duration::from_millis(100);
        let mut down_since: Option<tokio::time::Instant> = None;
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            match self.session_up().await {
                Ok((mut sink, mut stream)) => {
                    backoff = Duration::from_millis(100);
                    if let Some(since) = down_since.take() {
                        tracing::info!(after = ?since.elapsed(), "redis is back");
                    }
                    self.up.store(true, Ordering::Release);
                    // Alive first (a long re-registration must not get the
                    // node taken for dead), then make Redis match the hub.
                    let _ = self.heartbeat().await;
                    self.reconcile().await;
                    self.catch_up().await;
                    if let Some(r) = ready.take() {
                        let _ = r.send(true);
                    }
                    loop {
                        tokio::select! {
                            msg = stream.next() => match msg {
                                Some(m) => self.dispatch(m.get_channel_name(), m.get_payload_bytes()),
                                None => break,
                            },
                            cmd = cmds.recv() => match cmd {
                                Some(SubCmd::Subscribe(chan, done)) => {
                                    let name = self.chan_name(&chan);
                                    let ok = self.bounded(sink.subscribe(name)).await;
                                    let _ = done.send(ok);
                                    if !ok { break; }
                                }
                                Some(SubCmd::Unsubscribe(chan)) => {
                                    if !self.wanted(&chan) && !self.bounded(sink.unsubscribe(self.chan_name(&chan))).await {
                                        break;
                                    }
                                }
                                None => return,
                            },
                            _ = self.reconnect.notified() => break,
                            _ = self.stop.cancelled() => return,
                        }
                    }
                    self.up.store(false, Ordering::Release);
                    tracing::warn!("lost the connection to redis; reconnecting");
                    down_since = Some(tokio::time::Instant::now());
                }
                Err(e) => {
                    self.up.store(false, Ordering::Release);
                    if down_since.is_none() {
                        down_since = Some(tokio::time::Instant::now());
                    }
                    tracing::debug!(error = %e, retry_in = ?backoff, "cannot reach redis");
                }
            }
            if let Some(r) = ready.take() {
                let _ = r.send(false);
                return; // the node does not start
            }
            // While away: subscriptions fail at once (they are made again
            // from the hub's state on reconnect).
            let wait = tokio::time::sleep(backoff);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    _ = self.stop.cancelled() => return,
                    cmd = cmds.recv() => match cmd {
                        Some(SubCmd::Subscribe(_, done)) => { let _ = done.send(false); }
                        Some(SubCmd::Unsubscribe(_)) => {}
                        None => return,
                    },
                }
            }
            backoff = (backoff * 2).min(self.config.reconnect_max);
        }
    }

    /// Whether a pub/sub command succeeded within `redis_timeout` (a stalled
    /// or half-open connection must not stall the subscriber).
    async fn bounded(&self, op: impl std::future::Future<Output = redis::RedisResult<()>>) -> bool {
        matches!(tokio::time::timeout(self.config.redis_timeout, op).await, Ok(Ok(())))
    }

    /// Opens both connections and subscribes to everything the node hosts.
    async fn session_up(&self) -> Result<(PubSubSink, redis::aio::PubSubStream), RedisError> {
        let conn = self.connect().await?;
        let pubsub = tokio::time::timeout(self.config.redis_timeout, self.client.get_async_pubsub())
            .await
            .map_err(|_| RedisError::from((redis::ErrorKind::Io, "timed out connecting")))??;
        let (mut sink, stream) = pubsub.split();
        let mut channels = vec![self.all_chan()];
        channels.extend(self.hub.live_rooms().into_iter().map(|(k, _)| self.chan_name(&Chan::Room(k))));
        channels.extend(self.hub.local_users().into_iter().map(|k| self.chan_name(&Chan::User(k))));
        for ch in channels.chunks(256) {
            tokio::time::timeout(self.config.redis_timeout, sink.subscribe(ch))
                .await
                .map_err(|_| RedisError::from((redis::ErrorKind::Io, "timed out subscribing")))??;
        }
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
        Ok((sink, stream))
    }

    /// Makes Redis match the hub (after Redis came back, after this node was
    /// taken for dead, or after an unregistration failed): registrations of
    /// sessions and memberships that are gone are removed (members see them
    /// quit), and every local session and membership is registered again.
    /// Idempotent; a session that leaves meanwhile is undone right after.
    async fn reconcile(&self) {
        self.dirty.store(false, Ordering::Relaxed);
        let sessions = self.hub.sessions();
        let mut keep = Vec::new();
        for s in &sessions {
            keep.push(online_entry(s));
            keep.extend(s.rooms().iter().map(|r| member_entry(&r.key, s)));
        }
        if let Err(e) = self.reap(&self.node, -1, Some(keep)).await {
            tracing::warn!(error = %e.message, "could not reconcile this node's registrations");
            self.dirty.store(true, Ordering::Relaxed);
            return;
        }
        let registered = futures_util::stream::iter(sessions)
            .map(|s| async move { self.reregister(&s).await })
            .buffer_unordered(32)
            .collect::<Vec<bool>>()
            .await;
        if registered.contains(&false) {
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Registers one local session and its rooms again; undoes what a
    /// concurrent leave or disconnect made stale. False if Redis failed.
    async fn reregister(&self, session: &Arc<SessionHandle>) -> bool {
        match self.claim(session).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(nick = %session.nick(), "nick taken elsewhere while redis was away; closing");
                session.close(crate::hub::CloseReason::Normal);
                return true;
            }
            Err(_) => return false,
        }
        let rooms = session.rooms().clone();
        for r in rooms {
            if self.register_member(session, &r.key, &r.name).await.is_err() {
                return false;
            }
            if session.joined(&r.key).is_none() || session.closed().is_cancelled() {
                let _ = self.unregister_member(session, &r.key, &r.name, Some("leave")).await;
            }
        }
        if session.closed().is_cancelled() {
            self.disconnected(session, Vec::new()).await;
        }
        true
    }

    /// After a reconnect: hands each live room the messages published while
    /// the node was away (the room drops what it already had).
    async fn catch_up(&self) {
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
                    let sender = self.unresolved.lock().unwrap_or_else(|e| e.into_inner()).get(&m.msg_id).map(|u| u.0);
                    self.hub.room_message(&key, &encode(&ServerFrame::Message(m)), m.seq, sender, None);
                    after = m.seq;
                }
                if !page.more || page.messages.is_empty() {
                    break;
                }
            }
        }
    }

    // ---- what arrives ----------------------------------------------------------

    /// Applies one envelope to the local hub.
    fn dispatch(&self, channel: &str, payload: &[u8]) {
        let Ok(text) = std::str::from_utf8(payload) else { return };
        let Some(e) = Envelope::parse(text) else {
            tracing::warn!(channel, "ignoring a malformed envelope");
            return;
        };
        // Shutting down: messages still reach the sessions until they
        // close, the comings and goings of others do not.
        if self.hub.hushed() && matches!(e.kind, Kind::Frame | Kind::Status) {
            return;
        }
        let Some(rest) = channel.strip_prefix(&self.prefix).and_then(|c| c.strip_prefix(':')) else { return };
        let except = e.except_on(&self.node);
        let (first, main) = e.frames();
        let frame = || Frame::from_json(main.to_owned());
        match (rest.split_once(':'), e.kind) {
            (Some(("r", room)), Kind::RoomMessage) => {
                let Ok(seq) = e.a.parse() else { return };
                let off = first.map(|f| Frame::from_json(f.to_owned()));
                self.hub.room_message(room, &frame(), seq, except, off.as_ref().map(|f| (f, e.b)));
            }
            (Some(("r", room)), Kind::Frame) => {
                self.hub.to_room(room, &frame(), |s| Some(s.id) != except && **s.nick().key() != *e.a);
            }
            // The node that set it applied it at once (see `set_topic`).
            (Some(("r", room)), Kind::Topic) if e.node != self.node => {
                self.hub.set_topic(room, e.payload.into(), e.a);
            }
            (Some(("r", _)), Kind::Topic) => {}
            (Some(("r", room)), Kind::Destroy) => {
                let sessions = self.hub.destroy(room);
                self.forget_members(room, sessions);
            }
            (Some(("u", user)), Kind::Direct) => {
                if let Some(off) = first.filter(|_| user != e.b) {
                    self.hub.to_user(user, &Frame::from_json(off.to_owned()), None);
                }
                self.hub.to_user(user, &frame(), except);
            }
            (Some(("u", user)), Kind::Frame) => {
                self.hub.to_user(user, &frame(), except);
            }
            (Some(("u", user)), Kind::Kick) => {
                let sessions = self.hub.kick(e.a, user, e.b);
                self.after_leaving(e.a, sessions, "leave");
            }
            (Some(("u", user)), Kind::Moderator) => {
                self.hub.set_moderator(e.a, user, e.b == "1");
            }
            (None, Kind::Everyone | Kind::Frame) if rest == "all" => self.hub.to_everyone(&frame(), except),
            (None, Kind::Status) if rest == "all" => {
                self.hub.to_watchers(e.a, &frame(), e.b.parse().unwrap_or_default());
            }
            _ => tracing::warn!(channel, kind = ?e.kind, "ignoring an envelope on the wrong channel"),
        }
    }

    /// Sessions this node removed from a room (kicked): unregister them,
    /// telling the members when a user's last session left.
    fn after_leaving(&self, room_key: &str, sessions: Vec<Arc<SessionHandle>>, event: &'static str) {
        if sessions.is_empty() {
            return;
        }
        let Some(bus) = self.me() else { return };
        let room_key: Arc<str> = room_key.into();
        tokio::spawn(async move {
            let name = room_key.clone();
            for s in sessions {
                let _ = bus.unregister_member(&s, &room_key, &name, Some(event)).await;
            }
            bus.unsubscribe(Chan::Room(room_key));
        });
    }

    /// Sessions removed from a destroyed room: unregister them silently.
    fn forget_members(&self, room_key: &str, sessions: Vec<Arc<SessionHandle>>) {
        let Some(bus) = self.me() else { return };
        let room_key: Arc<str> = room_key.into();
        tokio::spawn(async move {
            for s in sessions {
                let _ = bus.unregister_member(&s, &room_key, &room_key, None).await;
            }
            bus.unsubscribe(Chan::Room(room_key));
        });
    }

    /// An owned handle on this bus, for spawned work.
    fn me(&self) -> Option<Arc<RedisBus>> {
        self.me.upgrade()
    }

    // ---- sessions and nicks ----------------------------------------------------

    /// Claims the session's nick cluster-wide; false if another identity
    /// (or another guest) holds it on some node.
    pub async fn claim(&self, session: &SessionHandle) -> Result<bool, ProtoError> {
        let nick = session.nick();
        let user = &session.user;
        let env = self.status_envelope(nick.as_str(), true, user.away.load(Ordering::Relaxed));
        let mut inv = self.scripts.claim.prepare_invoke();
        inv.key(self.key(&format!("os:{}", nick.key())))
            .key(self.key(&format!("on:{}", nick.key())))
            .key(self.node_key(&self.node))
            .key(self.all_chan())
            .arg(self.member(session))
            .arg(&user.identity)
            .arg(if user.guest { "1" } else { "0" })
            .arg(nick.as_str())
            .arg(online_entry(session))
            .arg(env)
            .arg(if user.away.load(Ordering::Relaxed) { "1" } else { "0" });
        let claimed: i64 = self.run(inv).await?;
        Ok(claimed == 1)
    }

    /// Registers a new local session cluster-wide.
    pub async fn connected(&self, session: &Arc<SessionHandle>) -> Result<(), ProtoError> {
        let nick = session.nick();
        self.subscribe(Chan::User(nick.key().clone())).await?;
        if self.claim(session).await? {
            Ok(())
        } else {
            Err(ProtoError::new(crate::protocol::ErrorCode::NickTaken, format!("the nick `{nick}` is taken")))
        }
    }

    /// Unregisters a session that left the hub: its rooms (members see
    /// `quit`), then its nick (watchers see it go offline with its last
    /// session).
    pub async fn disconnected(&self, session: &SessionHandle, rooms: Vec<crate::hub::RoomRef>) {
        if self.hub.hushed() {
            return; // shutting down: `shutdown` unregisters every session at once
        }
        for r in rooms {
            if self.unregister_member(session, &r.key, &r.name, Some("quit")).await.is_err() {
                self.dirty.store(true, Ordering::Relaxed);
            }
            self.unsubscribe(Chan::Room(r.key));
        }
        let nick = session.nick();
        let env = self.status_envelope(nick.as_str(), false, false);
        let mut inv = self.scripts.release.prepare_invoke();
        inv.key(self.key(&format!("os:{}", nick.key())))
            .key(self.key(&format!("on:{}", nick.key())))
            .key(self.node_key(&self.node))
            .key(self.all_chan())
            .arg(self.member(session))
            .arg(online_entry(session))
            .arg(env);
        if self.run::<i64>(inv).await.is_err() {
            self.dirty.store(true, Ordering::Relaxed);
        }
        self.unsubscribe(Chan::User(nick.key().clone()));
    }

    /// A `status` envelope for the watchers of `nick` (as shown).
    fn status_envelope(&self, nick: &str, online: bool, away: bool) -> String {
        let status = encode(&ServerFrame::Status { nick, online, away, last_seen: Some(now_ms()) });
        let code = crate::hub::status_code(online, away).to_string();
        envelope::envelope(Kind::Status, &self.node, None, &nick.to_ascii_lowercase(), &code, &status)
    }

    /// Is the user online anywhere, and how.
    pub async fn online(&self, nick_key: &str) -> Result<Option<Online>, ProtoError> {
        let mut conn = self.conn()?;
        let (name, away): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.key(&format!("on:{nick_key}")))
            .arg("name")
            .arg("away")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(&e))?;
        Ok(name.map(|n| Online { nick: n.into(), away: away.as_deref() == Some("1") }))
    }

    pub async fn set_away(&self, session: &SessionHandle, away: bool) -> Result<(), ProtoError> {
        let nick = session.nick();
        let env = self.status_envelope(nick.as_str(), true, away);
        let mut inv = self.scripts.away.prepare_invoke();
        inv.key(self.key(&format!("on:{}", nick.key())))
            .key(self.all_chan())
            .arg(if away { "1" } else { "0" })
            .arg(env);
        let _: i64 = self.run(inv).await?;
        Ok(())
    }

    // ---- rooms -------------------------------------------------------------------

    /// Registers a session as a member of a room cluster-wide; the members
    /// hear of the user's first session there. Returns the room's seq
    /// counter and its members.
    async fn register_member(
        &self,
        session: &SessionHandle,
        room_key: &str,
        room_name: &str,
    ) -> Result<(u64, Vec<MemberView>), ProtoError> {
        let nick = session.nick();
        let user = &session.user;
        let view = serde_json::to_string(&MemberRecord {
            nick: nick.shown().clone(),
            display_name: user.display_name.clone(),
            avatar: user.avatar.clone(),
            joined_at: now_ms(),
        })
        .unwrap_or_default();
        let presence = encode(&ServerFrame::Presence { room: room_name, nick: nick.as_str(), event: "join" });
        let env = envelope::envelope(Kind::Frame, &self.node, None, nick.key(), "", &presence);
        let mut inv = self.scripts.join.prepare_invoke();
        inv.key(self.key(&format!("rs:{room_key}:{}", nick.key())))
            .key(self.key(&format!("rm:{room_key}")))
            .key(self.key("rooms"))
            .key(self.node_key(&self.node))
            .key(self.key(&format!("seq:{}", Conv::Room(room_key.into()).storage_key())))
            .key(self.chan_name(&Chan::Room(room_key.into())))
            .arg(self.member(session))
            .arg(nick.key().as_ref())
            .arg(view)
            .arg(room_key)
            .arg(room_name)
            .arg(member_entry(room_key, session))
            .arg(env)
            .arg(&self.prefix);
        let (_first, seq, members, away): (i64, u64, Vec<String>, Vec<String>) = self.run(inv).await?;
        Ok((seq, member_views(&members, &away)))
    }

    /// Unregisters a session from a room; with `event`, the members hear of
    /// the user's last session leaving.
    async fn unregister_member(
        &self,
        session: &SessionHandle,
        room_key: &str,
        room_name: &str,
        event: Option<&str>,
    ) -> Result<(), ProtoError> {
        let nick = session.nick();
        let env = match event {
            Some(event) => {
                // Not to the user itself: it may be back in the room by the
                // time this arrives.
                let presence = encode(&ServerFrame::Presence { room: room_name, nick: nick.as_str(), event });
                envelope::envelope(Kind::Frame, &self.node, None, nick.key(), "", &presence)
            }
            None => String::new(),
        };
        let mut inv = self.scripts.leave.prepare_invoke();
        inv.key(self.key(&format!("rs:{room_key}:{}", nick.key())))
            .key(self.key(&format!("rm:{room_key}")))
            .key(self.key("rooms"))
            .key(self.node_key(&self.node))
            .key(self.chan_name(&Chan::Room(room_key.into())))
            .arg(self.member(session))
            .arg(nick.key().as_ref())
            .arg(room_key)
            .arg(member_entry(room_key, session))
            .arg(env);
        let _: i64 = self.run(inv).await?;
        Ok(())
    }

    /// A `join`, cluster-wide: enters the local room (holding the session's
    /// frames back), makes sure the node hears the room, and registers the
    /// membership. On failure the session is not in the room.
    pub async fn join_begin(
        &self,
        session: &Arc<SessionHandle>,
        room: &Name,
        record: Option<RoomRecord>,
        moderator: bool,
    ) -> Result<JoinStart, ProtoError> {
        let mut start = self.hub.join_begin(session, room, record, moderator);
        let key = room.key();
        let registered = async {
            self.subscribe(Chan::Room(key.clone())).await?;
            self.register_member(session, key, &start.name).await
        };
        match registered.await {
            Ok((seq, members)) => {
                start.seq = start.seq.max(seq);
                start.members = members;
                Ok(start)
            }
            Err(e) => {
                if !start.already {
                    // The script may have run (a timeout): undo it, or
                    // leave it to the next reconciliation.
                    self.hub.leave(session, key, "leave");
                    if self.unregister_member(session, key, &start.name, None).await.is_err() {
                        self.dirty.store(true, Ordering::Relaxed);
                    }
                    self.unsubscribe(Chan::Room(key.clone()));
                }
                Err(e)
            }
        }
    }

    pub async fn leave(&self, session: &Arc<SessionHandle>, room_key: &str, event: &str) -> Option<Arc<str>> {
        let name = self.hub.leave(session, room_key, event)?;
        if self.unregister_member(session, room_key, &name, Some(event)).await.is_err() {
            self.dirty.store(true, Ordering::Relaxed);
        }
        self.unsubscribe(Chan::Room(room_key.into()));
        Some(name)
    }

    /// `who`, cluster-wide: the room's name and members, if it is live.
    pub async fn who(&self, room_key: &str) -> Result<Option<(Arc<str>, Vec<MemberView>)>, ProtoError> {
        let mut inv = self.scripts.who.prepare_invoke();
        inv.key(self.key(&format!("rm:{room_key}"))).key(self.key("rooms")).arg(room_key).arg(&self.prefix);
        let found: Option<(String, Vec<String>, Vec<String>)> = self.run(inv).await?;
        Ok(found.map(|(name, members, away)| (name.into(), member_views(&members, &away))))
    }

    /// The live rooms cluster-wide: key → (name, number of users).
    pub async fn live_rooms(&self) -> Result<BTreeMap<String, (String, usize)>, ProtoError> {
        let mut conn = self.conn()?;
        let rooms: BTreeMap<String, String> = conn.hgetall(self.key("rooms")).await.map_err(|e| self.failed(&e))?;
        if rooms.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut pipe = redis::pipe();
        for key in rooms.keys() {
            pipe.hlen(self.key(&format!("rm:{key}")));
        }
        let counts: Vec<usize> = pipe.query_async(&mut conn).await.map_err(|e| self.failed(&e))?;
        Ok(rooms.into_iter().zip(counts).map(|((k, name), n)| (k, (name, n))).collect())
    }

    pub async fn room_name(&self, room_key: &str) -> Result<Option<Arc<str>>, ProtoError> {
        let mut conn = self.conn()?;
        let name: Option<String> = conn.hget(self.key("rooms"), room_key).await.map_err(|e| self.failed(&e))?;
        Ok(name.map(Into::into))
    }

    /// Sessions of the user in the room, cluster-wide.
    pub async fn sessions_in(&self, room_key: &str, nick_key: &str) -> Result<usize, ProtoError> {
        let mut conn = self.conn()?;
        conn.scard(self.key(&format!("rs:{room_key}:{nick_key}"))).await.map_err(|e| self.failed(&e))
    }

    /// Sends an envelope to a room's nodes, a user's nodes, or every node.
    pub async fn send(&self, to: Option<Chan>, env: String) -> Result<(), ProtoError> {
        let channel = match &to {
            Some(chan) => self.chan_name(chan),
            None => self.all_chan(),
        };
        self.publish_raw(&channel, &env).await
    }

    /// Destroys a room everywhere: every node removes its members, and the
    /// room's buffer and seq counter go (the caller archived the buffer
    /// first). Returns how many users were in it.
    pub async fn destroy(&self, room_key: &str) -> Result<usize, ProtoError> {
        let users = self.who(room_key).await?.map_or(0, |(_, m)| m.len());
        let conv = Conv::Room(room_key.into()).storage_key();
        let mut inv = self.scripts.destroy.prepare_invoke();
        inv.key(self.key(&format!("seq:{conv}")))
            .key(self.key(&format!("h:{conv}")))
            .key(self.key(&format!("gone:{conv}")));
        let _: i64 = self.run(inv).await?;
        let env = envelope::envelope(Kind::Destroy, &self.node, None, "", "", "");
        self.send(Some(Chan::Room(room_key.into())), env).await?;
        Ok(users)
    }

    // ---- messages --------------------------------------------------------------

    /// The durable step: seq, buffer and publish in one atomic script, then
    /// the sender's `ack`. Receivers (this node's too) get the message from
    /// the channel.
    pub async fn publish(&self, msg: NewMessage, route: Route) {
        match self.append(&msg, &route).await {
            Ok(seq) => acknowledge(msg.stored(seq), route),
            Err(Outcome::NotStored(e)) => self.hub.fail(route, &e),
            Err(Outcome::Unknown) => {
                // The script may have run before the connection broke (it
                // may even have been published): find out before answering,
                // without holding up the sender's other frames.
                if let Some(bus) = self.me() {
                    tokio::spawn(async move { bus.resolve(msg, route).await });
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
    async fn resolve(&self, msg: NewMessage, route: Route) {
        if let Some(origin) = &route.origin {
            let mut unresolved = self.unresolved.lock().unwrap_or_else(|e| e.into_inner());
            let now = tokio::time::Instant::now();
            unresolved.retain(|_, (_, at)| now.duration_since(*at) < self.config.node_timeout * 4);
            unresolved.insert(msg.msg_id, (origin.id, now));
        }
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

    async fn append(&self, msg: &NewMessage, route: &Route) -> Result<u64, Outcome> {
        let (before, after) = buffer::split_frame(msg).ok_or(Outcome::NotStored(ProtoError::internal()))?;
        let from_key = msg.from.to_ascii_lowercase();
        let sid = route.origin.as_ref().map(|s| s.id);
        let off = route.clear_typing.then(|| crate::hub::typing_off(&msg.clone().stored(0)));
        let (kind, channels) = match &msg.conv {
            Conv::Room(k) => (Kind::RoomMessage, vec![self.chan_name(&Chan::Room(k.clone()))]),
            Conv::Dm(..) => {
                let to = msg.to.as_deref().unwrap_or_default().to_ascii_lowercase();
                (
                    Kind::Direct,
                    vec![self.chan_name(&Chan::User(to.into())), self.chan_name(&Chan::User(from_key.as_str().into()))],
                )
            }
            Conv::Everyone => (Kind::Everyone, vec![self.all_chan()]),
        };
        let head = envelope::head(kind, &self.node, sid);
        let mid = match &off {
            Some(off) => format!("\u{1f}{from_key}\n{}{RS}", &**off),
            None => format!("\u{1f}{from_key}\n"),
        };
        let conv = msg.conv.storage_key();
        let mut floor = String::new();
        loop {
            let mut inv = self.scripts.publish.prepare_invoke();
            inv.key(self.key(&format!("seq:{conv}")))
                .key(self.key("log"))
                .key(self.key(&format!("h:{conv}")))
                .key(self.key(&format!("fate:{}", msg.msg_id)))
                .arg(&floor)
                .arg(&before)
                .arg(&after)
                .arg(&head)
                .arg(&mid);
            for c in &channels {
                inv.arg(c);
            }
            // Without a connection nothing was sent; a broken one leaves
            // the outcome unknown.
            let mut conn = self.conn().map_err(Outcome::NotStored)?;
            let seq: i64 = match inv.invoke_async(&mut conn).await {
                Ok(seq) => seq,
                // The connection broke or the answer is late: the script
                // may have run, or may still run. Never guess.
                Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => {
                    self.failed(&e);
                    return Err(Outcome::Unknown);
                }
                // An error reply (OOM, READONLY, BUSY, ...): the script
                // wrote nothing (see publish.lua).
                Err(e) => return Err(Outcome::NotStored(self.failed(&e))),
            };
            if seq > 0 {
                return Ok(seq as u64);
            }
            if seq == -2 {
                return Err(Outcome::NotStored(ProtoError::unavailable()));
            }
            if !floor.is_empty() {
                return Err(Outcome::NotStored(unavailable("the seq counter could not be set")));
            }
            // No counter yet (a new conversation, or a new Redis): it starts
            // from the newest seq in the database.
            floor = self.store.newest_seq(&msg.conv).await.map_err(|e| Outcome::NotStored(unavailable(e)))?.to_string();
        }
    }

    /// A page of history: the database and the buffer (messages not yet
    /// archived), merged, with no gap and no repeat. The buffer is read
    /// first: an entry archived meanwhile is then in the database.
    pub async fn history(&self, conv: &Conv, q: HistoryQuery) -> Result<Page, StoreError> {
        let buffered = self.buffered(conv, &q).await.map_err(|e| StoreError::Unavailable(e.message))?;
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
        let mut messages: Vec<StoredMessage> = reply
            .ids
            .iter()
            .filter_map(|entry| entry.get::<String>("m"))
            .filter_map(|frame| buffer::decode(&frame))
            .collect();
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

    // ---- liveness ------------------------------------------------------------------

    /// Whether Redis answers a PING now.
    pub async fn ping(&self) -> bool {
        let Ok(mut conn) = self.conn() else { return false };
        redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
    }

    async fn heartbeats(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.beats.cancelled() => return,
            }
            if !self.up.load(Ordering::Acquire) {
                continue;
            }
            match self.heartbeat().await {
                Ok(known) if !known || self.dirty.load(Ordering::Relaxed) => {
                    if !known {
                        tracing::warn!("this node was taken for dead; registering its sessions again");
                    }
                    self.reconcile().await;
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e.message, "heartbeat failed"),
            }
        }
    }

    /// Says this node is alive and cleans up after dead ones. Returns whether
    /// Redis knew this node (if not, its registrations are gone).
    async fn heartbeat(&self) -> Result<bool, ProtoError> {
        let mut inv = self.scripts.heartbeat.prepare_invoke();
        // Found silent for node_timeout − heartbeat by a check that runs
        // every heartbeat, a dead node is cleaned up within node_timeout.
        let silent = self.config.node_timeout.saturating_sub(self.config.heartbeat).as_millis() as i64;
        inv.key(self.key("nodes")).arg(&self.node).arg(silent);
        let (known, dead): (i64, Vec<String>) = self.run(inv).await?;
        for node in dead.into_iter().filter(|n| *n != self.node) {
            if let Err(e) = self.reap(&node, silent, None).await {
                tracing::warn!(node, error = %e.message, "could not clean up after a dead node");
            }
        }
        Ok(known == 1)
    }

    /// Removes a node's sessions everywhere (or, with `keep`, those of its
    /// registrations not listed) and tells the members and watchers
    /// (`timeout` -1: regardless of its last heartbeat).
    async fn reap(&self, node: &str, timeout: i64, keep: Option<Vec<String>>) -> Result<(), ProtoError> {
        let mut inv = self.scripts.reap.prepare_invoke();
        inv.key(self.key("nodes")).key(self.node_key(node)).arg(&self.prefix).arg(node).arg(timeout);
        match keep {
            Some(keep) => {
                inv.arg("prune").arg(keep);
            }
            None => {
                inv.arg("all");
            }
        }
        let (left, offline): (Vec<String>, Vec<String>) = self.run(inv).await?;
        if !left.is_empty() || !offline.is_empty() {
            tracing::info!(node, users = offline.len(), memberships = left.len() / 3, "removed stale registrations");
        } else {
            return Ok(());
        }
        let mut conn = self.conn()?;
        let mut pipe = redis::pipe();
        for t in left.chunks_exact(3) {
            let (key, name, nick) = (&t[0], &t[1], &t[2]);
            let presence = encode(&ServerFrame::Presence { room: name, nick, event: "quit" });
            let env = envelope::envelope(Kind::Frame, &self.node, None, &nick.to_ascii_lowercase(), "", &presence);
            pipe.publish(self.chan_name(&Chan::Room(key.as_str().into())), env);
        }
        for nick in &offline {
            pipe.publish(self.all_chan(), self.status_envelope(nick, false, false));
        }
        let _: () = pipe.query_async(&mut conn).await.map_err(|e| self.failed(&e))?;
        Ok(())
    }

    /// Leaves the cluster at shutdown: this node's users quit everywhere at
    /// once, then the tasks stop (after a last archiver pass).
    pub async fn shutdown(&self) {
        self.beats.cancel();
        if self.up.load(Ordering::Acquire)
            && let Err(e) = self.reap(&self.node, -1, None).await
        {
            tracing::warn!(error = %e.message, "could not unregister this node's sessions");
        }
        self.settle().await;
        self.abort();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Stops the bus's tasks at once.
    pub fn abort(&self) {
        self.beats.cancel();
        self.stop.cancel();
    }
}

/// The node's registration of a session's nick (see reap.lua).
fn online_entry(session: &SessionHandle) -> String {
    format!("o|{}|{}", session.nick().as_str(), session.id)
}

/// The node's registration of a session's room membership (see reap.lua).
fn member_entry(room_key: &str, session: &SessionHandle) -> String {
    format!("m|{room_key}|{}|{}", session.nick().as_str(), session.id)
}

/// Where Redis is, for logs and errors: host and port only (a URL may
/// carry a password, in its user part or its query).
fn redis_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or_default().to_owned()
}

/// How long a fenced-off message's mark stays in Redis: far longer than a
/// command can wait in a stalled Redis or a broken connection.
const FATE_TTL: Duration = Duration::from_secs(3600);

/// Why a message's durable step did not return a seq.
enum Outcome {
    /// It did not happen: tell the sender.
    NotStored(ProtoError),
    /// The connection broke while it was under way.
    Unknown,
}

/// Tells the sender (and an HTTP caller) that its message is stored.
fn acknowledge(stored: StoredMessage, route: Route) {
    if let Some(s) = &route.origin {
        s.send(&encode(&ServerFrame::Ack { id: route.reply_id.as_ref(), message: Some(&stored) }));
    }
    if let Some(waiter) = route.waiter {
        let _ = waiter.send(Ok(stored));
    }
}

/// Member views from a members hash (nick, record, ...) and away flags.
fn member_views(flat: &[String], away: &[String]) -> Vec<MemberView> {
    let mut v: Vec<MemberView> = flat
        .chunks_exact(2)
        .zip(away.iter().map(|a| a == "1").chain(std::iter::repeat(false)))
        .filter_map(|(kv, away)| {
            let r: MemberRecord = serde_json::from_str(&kv[1]).ok()?;
            Some(MemberView {
                nick: r.nick,
                display_name: r.display_name,
                avatar: r.avatar,
                joined_at: r.joined_at,
                away,
            })
        })
        .collect();
    v.sort_by(|a, b| a.joined_at.cmp(&b.joined_at).then_with(|| a.nick.cmp(&b.nick)));
    v
}
