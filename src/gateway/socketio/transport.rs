//! Engine.IO's two transports, as HTTP sees them: [`Door::serve`] answers
//! every request under `/socket.io/`.
//!
//! - `GET ?EIO=4&transport=polling`: a new connection (the open packet);
//!   then `GET …&sid=` waits for packets, `POST …&sid=` sends them (one
//!   of each at a time: a second one closes the connection). Its heartbeat
//!   is a small task of its own, which also keeps a closed connection's
//!   last packets for a `GET` a while.
//! - `GET ?EIO=4&transport=websocket`: a new connection over a WebSocket;
//!   with `&sid=`, the upgrade of a polling one (`2probe`, `3probe`, `5`;
//!   one WebSocket at a time, holding its TCP connection's place under the
//!   caps; one that fails before `2probe` leaves polling as it was).
//!   Either way one task serves it: reads, writes the queued packets,
//!   pings; a write the peer does not take within `ping_timeout` ends it.
//!
//! Errors are engine.io's: 400 with `{"code","message"}` for an unknown
//! transport (0), session (1), handshake method (2), a request that does
//! not fit the connection (3), a protocol version other than 4 (5, so
//! Engine.IO v3 clients, socket.io-client 2.x, are refused); 413 for a
//! `POST` over `socketio.max_payload`, 408 for one whose body does not
//! arrive within `server.request_body_timeout`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::Door;
use super::engine::{self, Engine, Packet};
use crate::gateway::ws::handshake;

/// How a connection is carried (what the admission counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Long-polling: the connection outlives its requests, and counts once
    /// under the caps for its life, whatever requests carry it.
    Polling,
    /// A WebSocket: the upgraded TCP connection's own place under the caps.
    WebSocket,
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// How long a WebSocket's last packets and close may take.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// A request's Engine.IO parameters.
struct Query<'a> {
    transport: Transport,
    sid: Option<&'a str>,
}

/// engine.io's error answer: 400 and `{"code","message"}`.
fn refuse(code: u8, message: &str) -> Response {
    let body = serde_json::json!({ "code": code, "message": message }).to_string();
    (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn query(q: Option<&str>) -> Result<Query<'_>, Box<Response>> {
    let q = q.unwrap_or("");
    let param = |name: &str| q.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='));
    if param("EIO") != Some("4") {
        return Err(Box::new(refuse(5, "Unsupported protocol version")));
    }
    let transport = match param("transport") {
        Some("polling") => Transport::Polling,
        Some("websocket") => Transport::WebSocket,
        _ => return Err(Box::new(refuse(0, "Transport unknown"))),
    };
    Ok(Query { transport, sid: param("sid") })
}

fn plain(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=UTF-8")], body).into_response()
}

impl Door {
    /// Every request under `/socket.io/`.
    pub(crate) async fn serve(self: Arc<Self>, mut req: Request) -> Response {
        let q = match query(req.uri().query()) {
            Ok(q) => q,
            Err(refused) => return *refused,
        };
        let engine = match q.sid {
            None => None,
            Some(sid) => match self.sessions.get(sid) {
                Some(e) => Some(e.clone()),
                None => return refuse(1, "Session ID unknown"),
            },
        };
        let method = req.method().clone();
        match (method, q.transport, engine) {
            (Method::GET, Transport::Polling, None) => self.open_polling(&req),
            (Method::GET, Transport::Polling, Some(engine)) => self.poll(engine).await,
            (Method::POST, Transport::Polling, Some(engine)) => self.post(engine, req.into_body()).await,
            (Method::GET, Transport::WebSocket, engine) => {
                let Ok(key) = handshake::check(&Method::GET, req.headers()).cloned() else {
                    return refuse(3, "Bad request");
                };
                let Some(upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
                    return refuse(3, "Bad request");
                };
                let engine = match engine {
                    // One WebSocket at a time may ask to take a polling
                    // connection over.
                    Some(engine) if engine.is_closed() || !engine.start_probe() => return refuse(3, "Bad request"),
                    // The probe holds its TCP connection's place under the
                    // caps (the connection's own once upgraded).
                    Some(engine) => match (self.admit)(req.headers(), req.extensions(), Transport::WebSocket) {
                        Ok((_, permit)) => Upgrade::Probe(engine, permit),
                        Err(refused) => {
                            engine.probe_failed();
                            return *refused;
                        }
                    },
                    None => match self.connect_engine(req.headers(), req.extensions(), Transport::WebSocket) {
                        Ok(engine) => Upgrade::Open(engine),
                        Err(refused) => return *refused,
                    },
                };
                let tracker = self.svc.lifecycle.tracker.clone();
                tokio::spawn(tracker.track_future(self.websocket(engine, upgrade)));
                handshake::switching_protocols(&key)
            }
            (_, _, None) => refuse(2, "Bad handshake method"),
            _ => refuse(3, "Bad request"),
        }
    }

    // ---- long-polling ----------------------------------------------------------------------

    fn open_polling(self: &Arc<Self>, req: &Request) -> Response {
        let engine = match self.connect_engine(req.headers(), req.extensions(), Transport::Polling) {
            Ok(engine) => engine,
            Err(refused) => return *refused,
        };
        self.sessions.insert(engine.sid.clone(), engine.clone());
        let open = self.open_packet(&engine.sid, true);
        let tracker = self.svc.lifecycle.tracker.clone();
        tokio::spawn(tracker.track_future(self.clone().heartbeat(engine)));
        plain(open)
    }

    fn open_packet(&self, sid: &str, upgrades: bool) -> String {
        let c = &self.svc.config.socketio;
        engine::open_packet(sid, upgrades, c.ping_interval.as_millis(), c.ping_timeout.as_millis(), c.max_payload)
    }

    fn max_payload(&self) -> usize {
        usize::try_from(self.svc.config.socketio.max_payload).unwrap_or(usize::MAX)
    }

    /// A polling connection's heartbeat: a ping every `ping_interval`, a
    /// pong within `ping_timeout` or the connection ends. Ends when the
    /// connection does (and then ends it for good), or when a WebSocket
    /// took it over (whose task pings from then on).
    async fn heartbeat(self: Arc<Self>, engine: Arc<Engine>) {
        let (interval, timeout) = (self.svc.config.socketio.ping_interval, self.svc.config.socketio.ping_timeout);
        let stop = self.svc.lifecycle.stop_reading.clone();
        let mut stopping = false;
        let mut pinged = false;
        let mut next = Instant::now() + interval;
        loop {
            tokio::select! {
                _ = engine.closed() => break,
                _ = stop.cancelled(), if !stopping => {
                    stopping = true;
                    if at_stop(&engine) {
                        break;
                    }
                }
                _ = tokio::time::sleep_until(next) => {
                    if engine.is_websocket() {
                        return;
                    }
                    if !pinged {
                        engine.pong.store(false, Ordering::Release);
                        engine.control("2");
                        pinged = true;
                        next = Instant::now() + timeout;
                    } else if engine.pong.load(Ordering::Acquire) {
                        pinged = false;
                        next = Instant::now() + interval.saturating_sub(timeout);
                    } else {
                        tracing::debug!(conn = %engine.tag(), "socket.io: no pong within socketio.ping_timeout: closing");
                        break;
                    }
                }
            }
        }
        self.disconnect(&engine);
        // Boxed: the end should not weigh on the future a connection keeps.
        Box::pin(self.linger(&engine, timeout)).await;
    }

    /// A closed polling connection with packets left (a slow consumer's
    /// last ones, a `connect_error`): a `GET` may take them, and the close,
    /// for `ping_timeout`; then the `sid` is forgotten. Not at shutdown
    /// (which would wait for it; a `GET` waiting then still gets them).
    async fn linger(&self, engine: &Engine, timeout: Duration) {
        let stop = &self.svc.lifecycle.stop_reading;
        let until = Instant::now() + timeout;
        while self.sessions.contains_key(&engine.sid) && !stop.is_cancelled() {
            tokio::select! {
                _ = engine.wake.notified() => {}
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(until) => break,
            }
        }
        self.sessions.remove(&engine.sid);
    }

    /// `GET` with a `sid`: the packets queued, once there are some.
    async fn poll(&self, engine: Arc<Engine>) -> Response {
        if engine.is_websocket() {
            return refuse(3, "Bad request");
        }
        if engine.is_upgrading() {
            // The client is to pause polling: let this request go.
            return plain("6".into());
        }
        if engine.polling.swap(true, Ordering::AcqRel) {
            tracing::debug!(conn = %engine.tag(), "socket.io: a second polling GET at once: closing");
            self.disconnect(&engine);
            return refuse(3, "Bad request");
        }
        /// Lets the next `GET` in, however this one ends.
        struct Waiting<'a>(&'a Engine);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.polling.store(false, Ordering::Release);
            }
        }
        let _waiting = Waiting(&engine);
        let max = self.max_payload();
        loop {
            if let Some(mut payload) = engine.take_payload(max) {
                if engine.is_closed() && engine.drained() {
                    // The last packets, then the close.
                    payload.push(engine::SEPARATOR);
                    payload.push('1');
                    self.forget(&engine);
                }
                return plain(payload);
            }
            if engine.is_closed() {
                self.forget(&engine);
                return plain("1".into());
            }
            tokio::select! {
                _ = engine.wake.notified() => {}
                _ = engine.closed() => {}
            }
        }
    }

    /// A closed polling connection's last packets were taken: its `sid`
    /// names nothing from now on.
    fn forget(&self, engine: &Engine) {
        self.sessions.remove(&engine.sid);
        engine.wake.notify_one();
    }

    /// `POST` with a `sid`: the client's packets, handled in order (one
    /// `POST` at a time: a second one closes the connection).
    async fn post(self: &Arc<Self>, engine: Arc<Engine>, body: Body) -> Response {
        if engine.is_websocket() {
            return refuse(3, "Bad request");
        }
        if engine.is_closed() {
            // Closed, its last packets not yet taken: it takes no more.
            return refuse(1, "Session ID unknown");
        }
        if engine.posting.swap(true, Ordering::AcqRel) {
            tracing::debug!(conn = %engine.tag(), "socket.io: a second polling POST at once: closing");
            self.disconnect(&engine);
            return refuse(3, "Bad request");
        }
        /// Lets the next `POST` in, however this one ends.
        struct Posting<'a>(&'a Engine);
        impl Drop for Posting<'_> {
            fn drop(&mut self) {
                self.0.posting.store(false, Ordering::Release);
            }
        }
        let _posting = Posting(&engine);
        let body = match self.read_body(body).await {
            Ok(b) => b,
            Err(refused) => {
                self.disconnect(&engine);
                return refused;
            }
        };
        let Ok(text) = std::str::from_utf8(&body) else {
            self.disconnect(&engine);
            return refuse(3, "Bad request");
        };
        for packet in engine::decode_payload(text) {
            // Closed (by another request, a timeout) while this body came:
            // none of it counts.
            if engine.is_closed() {
                break;
            }
            match packet {
                Ok(Packet::Message(msg)) => self.on_message(msg, &engine),
                Ok(Packet::Binary(data)) => self.on_binary(data.into(), &engine),
                Ok(Packet::Ping(_) | Packet::Pong(_)) => engine.pong.store(true, Ordering::Release),
                Ok(Packet::Noop) => {}
                Ok(Packet::Close) => {
                    self.disconnect(&engine);
                    break;
                }
                Ok(Packet::Upgrade) | Err(_) => {
                    tracing::debug!(conn = %engine.tag(), ?packet, "socket.io: bad polling packet: closing");
                    self.disconnect(&engine);
                    return refuse(3, "Bad request");
                }
            }
        }
        ([(header::CONTENT_TYPE, "text/html")], "ok").into_response()
    }

    /// A `POST`'s body, at most `socketio.max_payload`; else 413, or 408 if
    /// it did not arrive within `server.request_body_timeout`, or 400 if
    /// the client gave up.
    async fn read_body(&self, body: Body) -> Result<Vec<u8>, Response> {
        let max = self.max_payload();
        let mut stream = body.into_data_stream();
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) if buf.len() + chunk.len() > max => {
                    tracing::debug!("socket.io: polling body over socketio.max_payload: closing");
                    return Err(StatusCode::PAYLOAD_TOO_LARGE.into_response());
                }
                Ok(chunk) => buf.extend_from_slice(&chunk),
                Err(e) if (self.body_timed_out)(&e) => {
                    tracing::debug!("socket.io: polling body timed out: closing");
                    let r = (
                        StatusCode::REQUEST_TIMEOUT,
                        [(header::CONNECTION, "close")],
                        "the request body did not arrive in time",
                    );
                    return Err(r.into_response());
                }
                Err(e) => {
                    tracing::debug!(error = %e, "socket.io: polling body failed: closing");
                    return Err(refuse(3, "Bad request"));
                }
            }
        }
        Ok(buf)
    }

    // ---- WebSocket -------------------------------------------------------------------------

    /// One WebSocket connection's task: the probe of an upgrade or the open
    /// packet, then reading, writing and pinging until the end.
    async fn websocket(self: Arc<Self>, upgrade: Upgrade, on_upgrade: hyper::upgrade::OnUpgrade) {
        let (engine, probe) = match upgrade {
            Upgrade::Open(e) => (e, None),
            Upgrade::Probe(e, permit) => (e, Some(permit)),
        };
        let c = &self.svc.config.socketio;
        let max = self.max_payload();
        let config = WebSocketConfig::default()
            .read_buffer_size(self.svc.config.limits.ws_read_buffer)
            .write_buffer_size(self.svc.config.limits.ws_write_buffer)
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        let mut socket = match on_upgrade.await {
            Ok(io) => WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, Some(config)).await,
            Err(e) => {
                tracing::debug!(conn = %engine.tag(), error = %e, "socket.io: upgrade failed");
                match probe {
                    Some(_) => engine.probe_failed(),
                    None => self.disconnect(&engine),
                }
                return;
            }
        };
        if let Some(permit) = probe {
            let probed = tokio::select! {
                r = tokio::time::timeout(c.ping_timeout, Box::pin(probe_upgrade(&engine, &mut socket))) => {
                    r.unwrap_or(Err("timed out"))
                }
                _ = engine.closed() => Err("the connection closed"),
            };
            if let Err(why) = probed {
                // Before `2probe` only the WebSocket goes (polling goes on,
                // as engine.io-client expects); once polling paused, the
                // connection goes.
                if engine.is_upgrading() {
                    tracing::debug!(conn = %engine.tag(), why, "socket.io: upgrade failed: closing");
                    self.disconnect(&engine);
                } else {
                    tracing::debug!(conn = %engine.tag(), why, "socket.io: upgrade probe failed: polling goes on");
                    engine.probe_failed();
                }
                let _ = tokio::time::timeout(CLOSE_WAIT, socket.close(None)).await;
                return;
            }
            // The connection's place under the caps is now its WebSocket's
            // (the polling one is let go), unless it ended meanwhile.
            let mut st = engine.data.state();
            if !engine.is_closed() {
                st.permit = Some(permit);
            }
        } else {
            let open = Message::text(self.open_packet(&engine.sid, false));
            if !matches!(tokio::time::timeout(c.ping_timeout, socket.send(open)).await, Ok(Ok(()))) {
                self.disconnect(&engine);
                return;
            }
        }
        let peer_gone = self.run(&engine, &mut socket).await;
        self.disconnect(&engine);
        if peer_gone {
            return;
        }
        // What was queued before the close (the shutdown notice), then the
        // close frame; briefly.
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            for packet in engine.take_all().0 {
                socket.feed(Message::text(packet)).await?;
            }
            socket.close(None).await
        })
        .await;
    }

    /// Reads, writes and pings until the connection ends; `true` if the
    /// peer left (or the socket broke), so that nothing more is written.
    async fn run(self: &Arc<Self>, engine: &Arc<Engine>, socket: &mut Ws) -> bool {
        let (interval, timeout) = (self.svc.config.socketio.ping_interval, self.svc.config.socketio.ping_timeout);
        let stop = self.svc.lifecycle.stop_reading.clone();
        let mut stopping = false;
        let mut pinged: Option<Instant> = None;
        let mut next = Instant::now() + interval;
        // Packets that polling left, or that came during the upgrade.
        engine.wake.notify_one();
        loop {
            tokio::select! {
                biased;
                _ = engine.closed() => return false,
                _ = stop.cancelled(), if !stopping => {
                    stopping = true;
                    if at_stop(engine) {
                        return false;
                    }
                }
                _ = engine.wake.notified() => {
                    let (batch, bytes) = engine.take_all();
                    if batch.is_empty() {
                        continue;
                    }
                    let write = async {
                        for packet in batch {
                            socket.feed(Message::text(packet)).await?;
                        }
                        socket.flush().await
                    };
                    // A peer that does not read holds this write (and
                    // nothing is read meanwhile): it has `ping_timeout`, as
                    // for a pong, unless its buffer fills first and the
                    // session closes it. (Boxed: a write lives only while
                    // it runs, the connection's future for its whole life.)
                    tokio::select! {
                        r = Box::pin(tokio::time::timeout(timeout, write)) => match r {
                            Ok(Ok(())) => engine.written(bytes),
                            Ok(Err(_)) => return true,
                            Err(_) => {
                                tracing::debug!(conn = %engine.tag(), "socket.io: a write took over socketio.ping_timeout: closing");
                                return true;
                            }
                        },
                        _ = engine.closed() => return true,
                    }
                }
                _ = tokio::time::sleep_until(next) => {
                    if pinged.is_some() {
                        tracing::debug!(conn = %engine.tag(), "socket.io: no pong within socketio.ping_timeout: closing");
                        return false;
                    }
                    // The ping too: a peer that takes nothing is gone.
                    let ping = Box::pin(tokio::time::timeout(timeout, socket.send(Message::text("2"))));
                    if !matches!(ping.await, Ok(Ok(()))) {
                        return true;
                    }
                    let now = Instant::now();
                    pinged = Some(now);
                    next = now + timeout;
                }
                msg = socket.next() => match msg {
                    Some(Ok(Message::Text(text))) => match engine::decode(&text) {
                        Ok(Packet::Message(msg)) => self.on_message(msg, engine),
                        Ok(Packet::Binary(data)) => self.on_binary(data.into(), engine),
                        Ok(Packet::Pong(_) | Packet::Ping(_)) => {
                            engine.pong.store(true, Ordering::Release);
                            if let Some(at) = pinged.take() {
                                next = at + interval;
                            }
                        }
                        Ok(Packet::Noop) => {}
                        Ok(Packet::Close) => return true,
                        Ok(Packet::Upgrade) | Err(_) => {
                            tracing::debug!(conn = %engine.tag(), "socket.io: not an Engine.IO packet: closing");
                            return false;
                        }
                    },
                    Some(Ok(Message::Binary(data))) => self.on_binary(data, engine),
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(_))) | None => return true,
                    Some(Err(e)) => {
                        tracing::debug!(conn = %engine.tag(), error = %e, "socket.io: websocket error: closing");
                        return true;
                    }
                },
            }
        }
    }
}

/// At shutdown: whether the connection should end now, having never
/// connected a namespace (one that did ends with its session, after the
/// session's notice).
fn at_stop(engine: &Engine) -> bool {
    let idle = !engine.data.state().connected_once;
    if idle {
        tracing::debug!(conn = %engine.tag(), "socket.io: shutdown: closing a connection without a namespace");
    }
    idle
}

/// What a WebSocket request is for.
enum Upgrade {
    /// A new connection.
    Open(Arc<Engine>),
    /// The upgrade of a polling connection, and the place under the caps
    /// of the WebSocket's TCP connection.
    Probe(Arc<Engine>, Box<dyn Send + Sync>),
}

/// The upgrade's probe: `2probe` → `3probe`, a noop to the polling `GET`
/// (the client pauses polling), then `5`: the WebSocket carries the
/// connection from now on.
async fn probe_upgrade(engine: &Engine, socket: &mut Ws) -> Result<(), &'static str> {
    if next_text(socket).await?.as_str() != "2probe" {
        return Err("no probe");
    }
    if !engine.start_upgrade() {
        return Err("not probing");
    }
    socket.send(Message::text("3probe")).await.map_err(|_| "socket closed")?;
    engine.control("6");
    loop {
        match next_text(socket).await?.as_str() {
            "5" => break,
            // engine.io-client may probe again, or answer a ping that
            // polling delivered.
            "2probe" => socket.send(Message::text("3probe")).await.map_err(|_| "socket closed")?,
            "3" => engine.pong.store(true, Ordering::Release),
            _ => return Err("neither upgrade nor probe"),
        }
    }
    engine.upgraded();
    Ok(())
}

async fn next_text(socket: &mut Ws) -> Result<tokio_tungstenite::tungstenite::Utf8Bytes, &'static str> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            _ => return Err("not a text frame"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ret2<A, B, Fut, F: FnOnce(A, B) -> Fut>(_: &F) -> usize {
        std::mem::size_of::<Fut>()
    }

    fn ret3<A, B, C, Fut, F: FnOnce(A, B, C) -> Fut>(_: &F) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// A connection keeps its transport task's future for its whole life:
    /// its size is memory per connection.
    #[test]
    fn transport_futures_are_small() {
        let ws = ret3(&Door::websocket);
        let heartbeat = ret2(&Door::heartbeat);
        eprintln!("websocket {ws}, heartbeat {heartbeat}, Engine {}", std::mem::size_of::<Engine>());
        assert!(ws < 1536 && heartbeat < 512, "websocket {ws}, heartbeat {heartbeat}");
    }

    #[test]
    fn queries() {
        let q = query(Some("EIO=4&transport=polling&t=abc&sid=XYZ")).ok().unwrap();
        assert_eq!((q.transport, q.sid), (Transport::Polling, Some("XYZ")));
        let q = query(Some("transport=websocket&EIO=4")).ok().unwrap();
        assert_eq!((q.transport, q.sid), (Transport::WebSocket, None));
        for bad in [None, Some("EIO=3&transport=polling"), Some("EIO=4"), Some("EIO=4&transport=flash")] {
            let r = query(bad).err().unwrap();
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }
}
