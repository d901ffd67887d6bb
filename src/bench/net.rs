//! Connection set-up shared by both benches: URL parsing, source-address
//! spreading, the WebSocket handshake, `hello` and `join`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub(crate) type Ws = WebSocketStream<TcpStream>;

/// How long one connection may take for connect + hello + join.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where to connect and from which local addresses.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) addr: SocketAddr,
    /// Spread connections over 127.0.0.1..=127.0.0.K (0 = let the kernel
    /// pick). Each source address has its own ~28k ephemeral ports, so this
    /// is what lets one bench open more than ~28k connections to one server
    /// port. Only used when the server is on loopback.
    pub(crate) source_ips: u8,
    /// Read buffer per connection; tungstenite zero-fills it on every read,
    /// so small is cheaper for idle connections and big batches frames.
    pub(crate) read_buffer: usize,
}

impl Target {
    pub(crate) async fn resolve(url: &str, source_ips: u32, read_buffer: usize) -> Result<Self> {
        let rest = url.strip_prefix("ws://").ok_or_else(|| anyhow!("--url must start with ws:// (no TLS): {url}"))?;
        let hostport = rest.split('/').next().unwrap_or(rest);
        let hostport = if hostport.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']')) {
            hostport.to_string()
        } else {
            format!("{hostport}:80")
        };
        let addr = tokio::net::lookup_host(&hostport)
            .await
            .with_context(|| format!("resolving {hostport}"))?
            .next()
            .ok_or_else(|| anyhow!("{hostport} resolves to nothing"))?;
        let loopback_v4 = matches!(addr.ip(), IpAddr::V4(ip) if ip.is_loopback());
        if source_ips > 1 && !loopback_v4 {
            eprintln!("note: --source-ips only applies to 127.x targets; using the default source");
        }
        Ok(Self {
            url: url.to_string(),
            addr,
            source_ips: if loopback_v4 { source_ips.min(254) as u8 } else { 0 },
            read_buffer,
        })
    }

    /// A Socket.IO URL (`ws://host/socket.io/?EIO=4&transport=websocket`):
    /// sessions are opened through namespace `/` instead of `hello`.
    pub(crate) fn is_socketio(&self) -> bool {
        self.url.contains("/socket.io/")
    }

    fn config(&self) -> WebSocketConfig {
        WebSocketConfig::default().read_buffer_size(self.read_buffer)
    }

    /// TCP connect (from source address number `i % source_ips`) and the
    /// WebSocket handshake.
    pub(crate) async fn connect(&self, i: usize) -> Result<Ws> {
        let socket = TcpSocket::new_v4().context("socket")?;
        if self.source_ips > 0 {
            let last = 1 + (i % usize::from(self.source_ips)) as u8;
            let local = SocketAddr::from((Ipv4Addr::new(127, 0, 0, last), 0));
            socket.bind(local).with_context(|| format!("bind {local}"))?;
        }
        let stream = socket.connect(self.addr).await.with_context(|| format!("connect {}", self.addr))?;
        // Publishers' frames must not wait for Nagle; harmless for readers.
        stream.set_nodelay(true)?;
        let (ws, _resp) = tokio_tungstenite::client_async_with_config(self.url.as_str(), stream, Some(self.config()))
            .await
            .context("websocket handshake")?;
        Ok(ws)
    }

    /// Connect, `hello` as `nick`, then `join` `room` (if any), with a timeout.
    pub(crate) async fn session(&self, i: usize, nick: &str, room: Option<&str>) -> Result<Ws> {
        tokio::time::timeout(SETUP_TIMEOUT, async {
            let mut ws = self.connect(i).await?;
            if self.is_socketio() {
                socketio_session(&mut ws, nick, room).await?;
                return Ok(ws);
            }
            hello(&mut ws, nick).await?;
            if let Some(room) = room {
                join(&mut ws, room).await?;
            }
            Ok(ws)
        })
        .await
        .map_err(|_| anyhow!("setup timed out after {SETUP_TIMEOUT:?}"))?
    }
}

async fn send_json(ws: &mut Ws, v: &Value) -> Result<()> {
    ws.send(Message::text(v.to_string())).await?;
    Ok(())
}

/// An `error` frame from the server.
#[derive(Debug)]
struct ServerError {
    code: String,
    message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "error {}: {}", self.code, self.message)
    }
}

impl std::error::Error for ServerError {}

fn is_code(e: &anyhow::Error, code: &str) -> bool {
    e.downcast_ref::<ServerError>().is_some_and(|e| e.code == code)
}

/// Reads frames until one of type `want` (optionally for `room`) arrives;
/// an `error` frame ([`ServerError`]) or a close fails.
async fn wait_for(ws: &mut Ws, want: &str, room: Option<&str>) -> Result<Value> {
    while let Some(msg) = ws.next().await {
        let text = match msg? {
            Message::Text(t) => t,
            Message::Close(f) => bail!("closed while waiting for {want}: {f:?}"),
            _ => continue,
        };
        let v: Value = serde_json::from_str(&text).context("server sent invalid JSON")?;
        match v["type"].as_str() {
            Some("error") => {
                let text = |k: &str| v[k].as_str().unwrap_or("").to_string();
                return Err(ServerError { code: text("code"), message: text("message") })
                    .with_context(|| format!("waiting for {want}"));
            }
            Some(t) if t == want => {
                let room_ok = room.is_none_or(|r| v["room"].as_str().is_some_and(|got| got.eq_ignore_ascii_case(r)));
                if room_ok {
                    return Ok(v);
                }
            }
            _ => {} // presence, auto-joined rooms, …
        }
    }
    bail!("connection ended while waiting for {want}")
}

/// Says `hello`. A nick still held by the previous run's session (the server
/// has not yet seen it go) is retried for up to 2 s.
async fn hello(ws: &mut Ws, nick: &str) -> Result<()> {
    let mut retries = 10;
    loop {
        send_json(ws, &json!({"type": "hello", "nick": nick})).await?;
        match wait_for(ws, "welcome", None).await {
            Err(e) if retries > 0 && is_code(&e, "nick_taken") => {
                retries -= 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other.map(drop),
        }
    }
}

/// Joins with `history: 0` (the bench needs no backlog); a server that
/// rejects 0 gets a plain join instead.
async fn join(ws: &mut Ws, room: &str) -> Result<()> {
    send_json(ws, &json!({"type": "join", "room": room, "history": 0})).await?;
    match wait_for(ws, "joined", Some(room)).await {
        Err(e) if is_code(&e, "invalid") => {
            send_json(ws, &json!({"type": "join", "room": room})).await?;
            wait_for(ws, "joined", Some(room)).await.map(drop)
        }
        other => other.map(drop),
    }
}

/// A Socket.IO session: the Engine.IO open packet, namespace `/` with
/// `auth {nick}` until `welcome`, then `join` (as an event) until `joined`.
async fn socketio_session(ws: &mut Ws, nick: &str, room: Option<&str>) -> Result<()> {
    ws.send(Message::text(format!("40{}", json!({ "nick": nick })))).await?;
    socketio_wait(ws, "welcome").await?;
    if let Some(room) = room {
        let join = json!(["join", {"room": room, "history": 0}]);
        ws.send(Message::text(format!("42{join}"))).await?;
        socketio_wait(ws, "joined").await?;
    }
    Ok(())
}

/// Reads Engine.IO messages until the event `want` (answering pings); a
/// `connect_error` or an `error` event fails.
async fn socketio_wait(ws: &mut Ws, want: &str) -> Result<()> {
    while let Some(msg) = ws.next().await {
        let text = match msg? {
            Message::Text(t) => t,
            Message::Close(f) => bail!("closed while waiting for {want}: {f:?}"),
            _ => continue,
        };
        let text = text.as_str();
        if text == "2" {
            ws.send(Message::text("3")).await?;
        } else if text.starts_with("44") {
            bail!("connect_error: {text}");
        } else if text.starts_with("42[\"error\"") {
            bail!("error while waiting for {want}: {text}");
        } else if text.starts_with(&format!("42[\"{want}\"")) {
            return Ok(());
        }
    }
    bail!("connection ended while waiting for {want}")
}

/// How the set-up phase went.
pub(crate) struct SetupSummary {
    pub(crate) ok: usize,
    pub(crate) failed: usize,
    /// The first few error messages.
    pub(crate) errors: Vec<String>,
    pub(crate) secs: f64,
}

/// Collects `total` set-up results (one per connection task), printing
/// progress to stderr every second.
pub(crate) async fn await_setup(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Result<(), String>>,
    total: usize,
    start: std::time::Instant,
) -> SetupSummary {
    let mut s = SetupSummary { ok: 0, failed: 0, errors: Vec::new(), secs: 0.0 };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while s.ok + s.failed < total {
        tokio::select! {
            r = rx.recv() => match r {
                Some(Ok(())) => s.ok += 1,
                Some(Err(e)) => {
                    s.failed += 1;
                    if s.errors.len() < 5 {
                        s.errors.push(e);
                    }
                }
                None => break,
            },
            _ = tick.tick() => eprintln!(
                "  {:>5.1}s set-up: {} connected, {} failed of {total}",
                start.elapsed().as_secs_f64(), s.ok, s.failed
            ),
        }
    }
    s.secs = start.elapsed().as_secs_f64();
    s
}
