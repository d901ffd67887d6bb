//! The Socket.IO door at `/socket.io/`: Socket.IO clients (the JS client
//! v3/v4, and the other languages' clients of protocol v5) over WebSocket
//! or HTTP long-polling. The Engine.IO v4 transport under it is ours
//! ([`engine`], [`transport`]): handshake, both transports and the upgrade
//! between them, heartbeats, payload limits; the Engine.IO side of a
//! connection over WebSocket is one task, as a `/ws` one is (and each
//! namespace connection one more). The Socket.IO packets on top
//! are decoded here ([`codec`]): each namespace connection is a session of
//! our own hub, opened with [`Service::open`] like a WebSocket's `hello`,
//! so users, rooms, history, limits, durability and the cluster are the
//! same for every door.
//!
//! - [`chat`]: namespace `/`, the chat protocol as events.
//! - [`max`]: namespace `/max`, the cMaxtalk notification protocol.
//! - [`link`]: what the two share: one namespace connection's packets in
//!   and out, and its end.
//!
//! The transport calls [`Door`] synchronously for each message; a
//! namespace connection's own task does the work, fed through a bounded
//! queue (`socketio.inbound_queue`: a client that outruns it is
//! disconnected). Packets out go into the connection's bounded queue
//! (`socketio.buffer`): full means a slow consumer, and the session is
//! closed as a WebSocket one is with 1013.

mod chat;
mod codec;
mod engine;
mod link;
mod max;
mod transport;

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use bytes::Bytes;
use dashmap::DashMap;
use serde_json::Value;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use crate::metrics::OpenConnection;
use crate::protocol::ProtoError;
use crate::service::Service;
use codec::Kind;
use engine::Engine;
pub(crate) use transport::Transport;

/// Where Socket.IO is served.
pub(crate) const PATH: &str = "/socket.io";

/// Most binary attachments a packet may announce (they are refused, but
/// counted so that they can be skipped).
const MAX_ATTACHMENTS: usize = 16;

/// What the HTTP floor decides for a new Engine.IO connection (its
/// request's headers and extensions, and its transport): the client's
/// address and the connection's place under the caps (held for its life,
/// whatever requests carry it), or the response that refuses it.
pub(crate) type Admit = Box<
    dyn Fn(
            &axum::http::HeaderMap,
            &axum::http::Extensions,
            Transport,
        ) -> Result<(IpAddr, Box<dyn Send + Sync>), Box<axum::response::Response>>
        + Send
        + Sync,
>;

/// Whether a request body's error is the HTTP floor's body deadline
/// (`server.request_body_timeout`).
pub(crate) type BodyTimedOut = fn(&(dyn std::error::Error + 'static)) -> bool;

/// The door: serves the Engine.IO requests and routes each connection's
/// packets to its namespace connections.
pub(crate) struct Door {
    svc: Arc<Service>,
    admit: Admit,
    /// Whether a request body's error is the HTTP floor's body deadline.
    body_timed_out: BodyTimedOut,
    /// The connections that polling requests can name (by `sid`).
    sessions: DashMap<Box<str>, Arc<Engine>>,
    /// New connections and when their hello timeout ends, oldest first
    /// (one watcher task for all of them, not a timer task each).
    waiting: Mutex<VecDeque<(Instant, Weak<Engine>)>>,
    arrived: Notify,
    watching: OnceLock<()>,
}

impl fmt::Debug for Door {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("socketio::Door")
    }
}

/// The namespaces served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ns {
    Chat,
    Max,
}

impl Ns {
    fn path(self) -> &'static str {
        match self {
            Ns::Chat => "/",
            Ns::Max => "/max",
        }
    }
}

/// A client event for a namespace connection's task.
#[derive(Debug)]
pub(super) enum Inbound {
    Event {
        name: String,
        args: Vec<Value>,
        ack: Option<u64>,
    },
    /// A packet refused at the door (binary attachments, bad JSON): an
    /// `error` for the client, nothing else.
    Refused {
        error: ProtoError,
        ack: Option<u64>,
    },
}

/// One Engine.IO connection's Socket.IO state.
#[derive(Default)]
pub(crate) struct Conn {
    state: Mutex<ConnState>,
}

#[derive(Default)]
struct ConnState {
    /// The namespace connections open, and their tasks' queues.
    /// (Boxed events: the queue's first block of slots is allocated up
    /// front, so a slot is a pointer.)
    nsps: Vec<(Ns, mpsc::Sender<Box<Inbound>>)>,
    /// Whether any namespace connected (else the hello timeout closes it).
    connected_once: bool,
    /// Binary messages still to skip (attachments of a refused packet).
    skip_binaries: usize,
    ip: Option<IpAddr>,
    /// The connection's place under the caps, and its gauge.
    permit: Option<Box<dyn Send + Sync>>,
    open: Option<OpenConnection>,
}

impl Conn {
    fn state(&self) -> MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets a namespace connection (its task ended, or the client left it).
    fn remove(&self, ns: Ns) {
        self.state().nsps.retain(|(n, _)| *n != ns);
    }
}

/// The door to mount at [`PATH`] (and `PATH/`): see [`Door::serve`].
pub(crate) fn door(svc: Arc<Service>, admit: Admit, body_timed_out: BodyTimedOut) -> Arc<Door> {
    Arc::new(Door {
        svc,
        admit,
        body_timed_out,
        sessions: DashMap::new(),
        waiting: Mutex::default(),
        arrived: Notify::new(),
        watching: OnceLock::new(),
    })
}

impl Door {
    /// A new Engine.IO connection: admitted (origin, caps), counted, and
    /// under the hello timeout. `Err` is the refusal's response.
    fn connect_engine(
        self: &Arc<Self>,
        headers: &axum::http::HeaderMap,
        extensions: &axum::http::Extensions,
        transport: Transport,
    ) -> Result<Arc<Engine>, Box<axum::response::Response>> {
        let (ip, permit) = (self.admit)(headers, extensions, transport)?;
        let engine = Arc::new(Engine::new(
            engine::new_sid(),
            self.svc.config.socketio.buffer,
            self.svc.config.limits.outbound_bytes,
            transport == Transport::WebSocket,
        ));
        {
            let mut st = engine.data.state();
            st.ip = Some(ip);
            st.permit = Some(permit);
            st.open = Some(self.svc.metrics.socketio_connection_opened());
        }
        // A connection that never opens a namespace is closed after
        // `limits.hello_timeout`, as a WebSocket without `hello` is.
        let deadline = Instant::now() + self.svc.config.limits.hello_timeout;
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).push_back((deadline, Arc::downgrade(&engine)));
        self.arrived.notify_one();
        self.watching.get_or_init(|| {
            let door = Arc::downgrade(self);
            self.svc.lifecycle.tracker.spawn(hello_timeouts(door, self.svc.lifecycle.stop_reading.clone()));
        });
        Ok(engine)
    }

    /// The connection ended (whoever ended it; again is harmless): its
    /// namespace tasks see their queues end and end their sessions (and no
    /// namespace connects any more), its place under the caps is free.
    /// Polling can no longer name it, unless packets are left for a `GET`
    /// to take (see [`Door::linger`]).
    fn disconnect(&self, engine: &Engine) {
        engine.close();
        if engine.is_websocket() || engine.drained() {
            self.sessions.remove(&engine.sid);
        }
        let mut st = engine.data.state();
        st.nsps.clear();
        st.ip = None;
        st.permit = None;
        st.open = None;
    }

    fn on_message(self: &Arc<Self>, msg: &str, socket: &Arc<Engine>) {
        let packet = match codec::decode(msg) {
            Ok(p) => p,
            Err(codec::Malformed(why)) => {
                tracing::debug!(conn = %socket.tag(), why, "socket.io: malformed packet: closing");
                socket.close();
                return;
            }
        };
        match packet.kind {
            Kind::Connect => self.connect(socket, packet.nsp, packet.data),
            Kind::Disconnect => {
                if let Some(ns) = self.namespace(packet.nsp) {
                    socket.data.remove(ns);
                }
            }
            Kind::Event => {
                let inbound = match codec::event_args(packet.data) {
                    Ok((name, args)) => Inbound::Event { name, args, ack: packet.ack },
                    Err(error) => Inbound::Refused { error, ack: packet.ack },
                };
                self.route(socket, packet.nsp, inbound);
            }
            Kind::BinaryEvent | Kind::BinaryAck => {
                if packet.attachments > MAX_ATTACHMENTS {
                    socket.close();
                    return;
                }
                socket.data.state().skip_binaries += packet.attachments;
                if packet.kind == Kind::BinaryEvent {
                    let error = ProtoError::bad_frame("binary attachments are not accepted: send JSON");
                    self.route(socket, packet.nsp, Inbound::Refused { error, ack: packet.ack });
                }
            }
            // Acks of server events: the server asks for none.
            Kind::Ack => {}
            Kind::ConnectError => socket.close(),
        }
    }

    fn on_binary(&self, _data: Bytes, socket: &Engine) {
        let mut st = socket.data.state();
        if st.skip_binaries > 0 {
            st.skip_binaries -= 1;
            return;
        }
        drop(st);
        tracing::debug!(conn = %socket.tag(), "socket.io: binary message outside a binary packet: closing");
        socket.close();
    }
}

/// Closes the connections that opened no namespace in time; one task for
/// the door, until shutdown.
async fn hello_timeouts(door: Weak<Door>, stop: tokio_util::sync::CancellationToken) {
    loop {
        let Some(d) = door.upgrade() else { return };
        let next = d.waiting.lock().unwrap_or_else(|e| e.into_inner()).front().map(|(at, _)| *at);
        let wait = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => d.arrived.notified().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = wait => {}
        }
        let now = Instant::now();
        loop {
            let expired = {
                let mut q = d.waiting.lock().unwrap_or_else(|e| e.into_inner());
                match q.front() {
                    Some((at, _)) if *at <= now => q.pop_front(),
                    _ => None,
                }
            };
            let Some((_, socket)) = expired else { break };
            if let Some(socket) = socket.upgrade()
                && !socket.data.state().connected_once
            {
                tracing::info!(conn = %socket.tag(), "socket.io: closed: no namespace connected within limits.hello_timeout");
                socket.close();
            }
        }
    }
}

impl Door {
    fn namespace(&self, path: &str) -> Option<Ns> {
        match path {
            "/" => Some(Ns::Chat),
            "/max" if self.svc.config.socketio.maxtalk => Some(Ns::Max),
            _ => None,
        }
    }

    /// `CONNECT` to a namespace: its task opens the session.
    fn connect(&self, socket: &Arc<Engine>, path: &str, data: &str) {
        let Some(ns) = self.namespace(path) else {
            let _ = socket.emit(codec::connect_error(path, "invalid", "Invalid namespace"));
            return;
        };
        let auth = match data.trim() {
            "" => None,
            json => match serde_json::from_str::<Value>(json) {
                Ok(v @ Value::Object(_)) => Some(v),
                Ok(Value::Null) => None,
                _ => {
                    let message = "`auth` must be an object: {nick}, {nick, password} or {token}";
                    let _ = socket.emit(codec::connect_error(path, "invalid", message));
                    return;
                }
            },
        };
        let (tx, rx) = mpsc::channel(self.svc.config.socketio.inbound_queue);
        let ip = {
            let mut st = socket.data.state();
            // Connected already (or connecting): ignored, as Socket.IO does.
            // No address: the connection ended (or was refused at its
            // start). Checked under the lock `disconnect` takes, so that no
            // session opens on a connection that has ended.
            if socket.is_closed() {
                return;
            }
            let Some(ip) = st.ip.filter(|_| !st.nsps.iter().any(|(n, _)| *n == ns)) else { return };
            st.nsps.push((ns, tx));
            st.connected_once = true;
            ip
        };
        let link = link::Link::new(self.svc.clone(), socket.clone(), ns, rx);
        let task = match ns {
            Ns::Chat => tokio::spawn(self.svc.lifecycle.tracker.track_future(chat::run(link, auth, ip))),
            Ns::Max => tokio::spawn(self.svc.lifecycle.tracker.track_future(max::run(link, auth, ip))),
        };
        drop(task);
    }

    /// Hands a client event to its namespace connection's task. An event
    /// for a namespace not connected is dropped (as Socket.IO does); one
    /// the task cannot keep up with ends the connection (a flood).
    fn route(&self, socket: &Arc<Engine>, path: &str, inbound: Inbound) {
        let Some(ns) = self.namespace(path) else { return };
        let tx = socket.data.state().nsps.iter().find(|(n, _)| *n == ns).map(|(_, tx)| tx.clone());
        let Some(tx) = tx else {
            tracing::debug!(conn = %socket.tag(), path, "socket.io: event for a namespace not connected: dropped");
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(Box::new(inbound)) {
            tracing::info!(conn = %socket.tag(), "socket.io: closed: events arrive faster than they are handled");
            socket.close();
        }
    }
}
