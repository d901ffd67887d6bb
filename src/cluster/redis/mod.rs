//! The Redis bus: several nodes share one Redis for fan-out (pub/sub),
//! cluster-wide nicks, presence and room membership, each conversation's
//! `seq`, and the buffer of new messages that the archiver moves into the
//! database. docs/cluster.md lists every key and channel.
//!
//! Tasks: the subscriber (one pub/sub connection for the node: it connects,
//! reconnects with backoff, re-registers the node's sessions, and applies
//! what arrives to the local hub, see [`inbound`]), the publishing task
//! (the durable step of the node's messages, in batches: [`publisher`]),
//! the heartbeat (liveness, and cleaning up after dead nodes) and the
//! archiver (see [`archiver`]); [`buffer`] is the
//! format of the stream entries the archiver reads. Commands go
//! over one multiplexed connection, shared by every task and session.
//!
//! [`presence`]: sessions, nicks and rooms; [`publisher`]: the durable
//! step, in batches; [`messages`]: unknown outcomes, acks and history;
//! [`liveness`]: heartbeats, dead nodes, reconciliation.

mod archiver;
mod buffer;
mod inbound;
mod liveness;
mod messages;
mod presence;
mod publisher;

use std::collections::BTreeMap;
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

use super::envelope::{self, Envelope, Kind, RS};
use crate::config::ClusterConfig;
use crate::hub::{Acked, Fanout, Hub, JoinStart, Online, Parting, Route, SessionHandle, SessionId};
use crate::protocol::server::{Conv, Frame, MemberView, ServerFrame, StoredMessage, encode};
use crate::protocol::{Name, ProtoError, now_ms};
use crate::store::{HistoryQuery, NewMessage, Page, RoomRecord, Store, StoreError};
pub(crate) use archiver::backlog;

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
    /// The publishing task's queue (bounded by `cluster.publish_queue`:
    /// full, a message is refused with `unavailable`).
    outgoing: mpsc::Sender<publisher::Job>,
    /// The head of a batch envelope from this node (see publish.lua).
    batch_head: String,
    subs: mpsc::UnboundedSender<SubCmd>,
    /// Wakes the subscriber to drop its connection and start over (a
    /// command found the connection broken).
    reconnect: Notify,
    pub(super) up: AtomicBool,
    /// Up, and caught up after (re)connecting: new messages may be sent.
    /// (Until then a catch-up could hand a sender its own new message.)
    serving: AtomicBool,
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
    /// The newest messages this node's sessions sent, with the sender: a
    /// catch-up after a reconnect must not hand a sender its own message
    /// (it gets the `ack`), even when the channel's copy was lost with the
    /// connection. Bounded ([`SENT_KEPT`]).
    sent: Mutex<std::collections::VecDeque<(ulid::Ulid, SessionId)>>,
    /// This node's stored messages whose senders wait for their `ack`
    /// until the subscriber has fanned them out here (see
    /// [`RedisBus::fanned_out`]).
    acks: Mutex<messages::Acks>,
    /// The notification decider: the archiver hands it each committed
    /// batch and acknowledges the batch in Redis once it is decided.
    pub(super) decide: Option<super::Decide>,
}

/// How many sent messages [`RedisBus::sent`] remembers: far more than can
/// be in flight when a connection breaks.
const SENT_KEPT: usize = 16 * 1024;

fn unavailable(e: impl std::fmt::Display) -> ProtoError {
    tracing::warn!(error = %e, "redis unavailable");
    ProtoError::unavailable()
}

impl RedisBus {
    /// Connects to Redis (failing if it cannot be reached now: a node
    /// starts only when its cluster is there) and starts the node's tasks.
    pub async fn start(
        config: &ClusterConfig,
        node: String,
        hub: Arc<Hub>,
        store: Store,
        decide: Option<super::Decide>,
    ) -> anyhow::Result<Arc<Self>> {
        let client = redis::Client::open(config.redis_url.as_str())?;
        let (subs, sub_rx) = mpsc::unbounded_channel();
        let (settle, settle_rx) = mpsc::unbounded_channel();
        let (outgoing, outgoing_rx) = mpsc::channel(config.publish_queue);
        let batch_head = envelope::batch_head(&node);
        let bus = Arc::new_cyclic(|me| RedisBus {
            hub,
            store,
            node,
            prefix: config.prefix.clone(),
            config: config.clone(),
            client,
            conn: Mutex::new(None),
            scripts: Scripts::new(),
            outgoing,
            batch_head,
            subs,
            reconnect: Notify::new(),
            up: AtomicBool::new(false),
            serving: AtomicBool::new(false),
            stop: CancellationToken::new(),
            beats: CancellationToken::new(),
            dirty: AtomicBool::new(false),
            settle,
            tasks: Mutex::new(Vec::new()),
            me: me.clone(),
            sent: Mutex::default(),
            acks: Mutex::default(),
            decide,
        });
        let conn = bus.connect().await?;
        *bus.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
        let (ready_tx, ready) = oneshot::channel();
        let tasks = vec![
            tokio::spawn(bus.clone().subscriber(sub_rx, ready_tx)),
            tokio::spawn(bus.clone().heartbeats()),
            tokio::spawn(archiver::run(bus.clone(), settle_rx)),
            tokio::spawn(publisher::run(bus.clone(), outgoing_rx)),
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
                    // What was published while the subscription was down
                    // may never arrive here: its senders wait no longer.
                    self.release_acks(Duration::ZERO);
                    self.serving.store(true, Ordering::Release);
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
                    self.serving.store(false, Ordering::Release);
                    self.up.store(false, Ordering::Release);
                    tracing::warn!("lost the connection to redis; reconnecting");
                    down_since = Some(tokio::time::Instant::now());
                }
                Err(e) => {
                    self.serving.store(false, Ordering::Release);
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

    /// An owned handle on this bus, for spawned work.
    fn me(&self) -> Option<Arc<RedisBus>> {
        self.me.upgrade()
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
