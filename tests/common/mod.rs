//! Test harness: a real server on 127.0.0.1:0 (through `Server::start_on`)
//! and real WebSocket clients (tokio-tungstenite), as a user would connect.
//!
//! No sleeps: to prove that nothing else reached a client, `sync()` sends a
//! `ping` and requires the very next frame to be its `pong` — every frame
//! queued for that session before the ping would come first.
//!
//! Frames are compared whole, as JSON. [`norm`] replaces the volatile values
//! (message ids, timestamps, session ids) by placeholders after checking
//! their shape, so an expected frame names them [`ID`], [`MS`] and [`SESSION`].
#![allow(dead_code)]

pub mod backends;
pub mod cluster;
pub mod http;

use std::time::Duration;

use chat::{Config, RunningServer, Server};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, client_async_with_config, connect_async_with_config};

/// How long any expected frame may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// The node id tests give the server, so `welcome` is predictable.
pub const NODE: &str = "test-node";

/// What [`norm`] puts in place of a message id (a ULID).
pub const ID: &str = "<msg_id>";
/// What [`norm`] puts in place of a timestamp in epoch milliseconds.
pub const MS: &str = "<ms>";
/// What [`norm`] puts in place of a `welcome.session` (`s-…`).
pub const SESSION: &str = "s-<id>";
/// `welcome.token`, normalised (see [`norm`]).
pub const TOKEN: &str = "<token>";

/// Defaults for tests: no auto-joined room (each test says what it joins),
/// a fixed node id, a short shutdown grace, and a SQLite database (and an
/// uploads folder) of its own.
pub fn test_config() -> Config {
    let mut c = Config::default();
    c.rooms.auto_join = vec![];
    c.server.node = NODE.into();
    c.server.shutdown_grace = Duration::from_secs(3);
    let db = fresh_db_path();
    c.database.url = format!("sqlite://{}", db.display());
    // Uploaded files beside the database, never in the working directory.
    c.uploads.dir = db.with_file_name("uploads").display().to_string();
    c
}

/// A path for a new SQLite file under target/, so tests never share one.
pub fn fresh_db_path() -> std::path::PathBuf {
    let dir = tempfile::Builder::new().prefix("db-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir").keep();
    dir.join("chat.db")
}

/// [`test_config`] without rate limits worth mentioning, for tests that
/// send many frames quickly.
pub fn unlimited_config() -> Config {
    let mut c = test_config();
    c.limits.rate_per_sec = 1_000_000;
    c.limits.burst = 1_000_000;
    c.limits.requests_per_sec = 1_000_000;
    c.limits.requests_burst = 1_000_000;
    c
}

pub async fn start(config: Config) -> RunningServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Server::start_on(config, listener).await.unwrap()
}

pub async fn start_default() -> RunningServer {
    start(test_config()).await
}

/// Replaces volatile values by placeholders, anywhere in `v`, after checking
/// their shape: `msg_id` (a 26-character ULID) → [`ID`]; `sent_at`,
/// `joined_at`, `edited_at`, `last_seen` (a positive integer; `last_seen`
/// may be null) → [`MS`]; `session` (`s-…`) → [`SESSION`]. A value of the
/// wrong shape is left alone, so the comparison that follows shows it.
pub fn norm(mut v: Value) -> Value {
    norm_in_place(&mut v);
    v
}

fn norm_in_place(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                match (k.as_str(), &*val) {
                    ("msg_id", Value::String(s)) if s.len() == 26 && s.chars().all(|c| c.is_ascii_alphanumeric()) => {
                        *val = json!(ID)
                    }
                    ("sent_at" | "joined_at" | "edited_at" | "last_seen" | "topic_at", Value::Number(n))
                        if n.as_i64().is_some_and(|t| t > 1_600_000_000_000) =>
                    {
                        *val = json!(MS)
                    }
                    ("session", Value::String(s)) if s.starts_with("s-") && s.len() > 2 => *val = json!(SESSION),
                    ("token", Value::String(s)) if s.len() >= 32 => *val = json!(TOKEN),
                    _ => norm_in_place(val),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(norm_in_place),
        _ => {}
    }
}

/// A frame without its `type`: what an `ack`'s `message` and a history
/// entry look like next to a `message` frame.
pub fn body(frame: &Value) -> Value {
    let mut v = frame.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("type");
    }
    v
}

/// A `message` frame (normalised) for a room message.
pub fn room_msg(room: &str, seq: u64, from: &str, text: &str) -> Value {
    json!({"type": "message", "msg_id": ID, "room": room, "seq": seq, "from": from,
        "text": text, "attachments": [], "sent_at": MS})
}

/// A `message` frame (normalised) for a direct message.
pub fn dm_msg(to: &str, seq: u64, from: &str, text: &str) -> Value {
    json!({"type": "message", "msg_id": ID, "to": to, "seq": seq, "from": from,
        "text": text, "attachments": [], "sent_at": MS})
}

/// A `message` frame (normalised) for a message to everyone.
pub fn everyone_msg(seq: u64, from: &str, text: &str) -> Value {
    json!({"type": "message", "msg_id": ID, "everyone": true, "seq": seq, "from": from,
        "text": text, "attachments": [], "sent_at": MS})
}

/// A room member (normalised) as `joined` and `room_status` list a guest.
pub fn member(nick: &str) -> Value {
    json!({"nick": nick, "display_name": nick, "joined_at": MS, "away": false})
}

pub fn presence(room: &str, nick: &str, event: &str) -> Value {
    json!({"type": "presence", "room": room, "nick": nick, "event": event})
}

/// Client settings: a small read buffer (tungstenite zero-fills the spare
/// read buffer on every read; 128 KiB of it per read slows big tests).
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(16 * 1024)
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub nick: String,
    sync_n: u64,
}

impl Client {
    /// Opens a WebSocket without identifying.
    pub async fn connect(server: &RunningServer) -> Client {
        Client::try_connect(server).await.expect("connect")
    }

    /// Opens a WebSocket; the error if the upgrade is refused.
    pub async fn try_connect(server: &RunningServer) -> Result<Client, tungstenite::Error> {
        let (ws, _) = connect_async_with_config(server.ws_url(), Some(ws_config()), true).await?;
        Ok(Client::wrap(ws))
    }

    /// Opens a WebSocket over a socket whose kernel receive buffer is
    /// `rcvbuf` bytes (no autotuning), so that a client that stops reading
    /// backs the server up after little traffic.
    pub async fn connect_small_rcvbuf(server: &RunningServer, rcvbuf: u32) -> Client {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(rcvbuf).unwrap();
        let tcp = socket.connect(server.addr()).await.expect("tcp connect");
        let (ws, _) = client_async_with_config(server.ws_url(), MaybeTlsStream::Plain(tcp), Some(ws_config()))
            .await
            .expect("upgrade");
        Client::wrap(ws)
    }

    /// Opens a WebSocket at `url` (a server behind a proxy, say).
    pub async fn connect_url(url: &str) -> Client {
        let (ws, _) = connect_async_with_config(url, Some(ws_config()), true).await.expect("connect");
        Client::wrap(ws)
    }

    fn wrap(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Client {
        Client { ws, nick: String::new(), sync_n: 0 }
    }

    /// Connects and identifies as a guest; returns the client and `welcome`.
    pub async fn hello(server: &RunningServer, nick: &str) -> (Client, Value) {
        let mut c = Client::connect(server).await;
        c.nick = nick.to_string();
        c.send(json!({"type": "hello", "nick": nick})).await;
        let welcome = c.expect("welcome").await;
        (c, welcome)
    }

    /// Connects as `nick` and joins `rooms`, consuming each `joined`.
    /// A session with a 4 KiB kernel receive buffer, identified as `nick`
    /// and in `room`: a reader the test can stop polling (a slow consumer).
    pub async fn slow_reader(server: &RunningServer, nick: &str, room: &str) -> Client {
        let mut c = Client::connect_small_rcvbuf(server, 4096).await;
        c.nick = nick.into();
        c.send(json!({"type": "hello", "nick": nick})).await;
        c.expect("welcome").await;
        c.join(room).await;
        c
    }

    pub async fn in_rooms(server: &RunningServer, nick: &str, rooms: &[&str]) -> Client {
        let (mut c, _) = Client::hello(server, nick).await;
        for room in rooms {
            c.join(room).await;
        }
        c
    }

    pub async fn join(&mut self, room: &str) -> Value {
        self.send(json!({"type": "join", "room": room})).await;
        self.expect("joined").await
    }

    pub async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    /// Sends a text frame as is (it need not be JSON).
    pub async fn send_text(&mut self, text: &str) {
        self.send_raw(Message::text(text)).await;
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.expect("send");
    }

    /// Sends a frame; the error if the connection is gone.
    pub async fn try_send_raw(&mut self, m: Message) -> Result<(), tungstenite::Error> {
        self.ws.send(m).await
    }

    /// Sends a close frame (the server sees the peer leave).
    pub async fn close(&mut self) {
        self.ws.close(None).await.expect("close");
    }

    /// Sends `v` and returns the next frame.
    pub async fn request(&mut self, v: Value) -> Value {
        self.send(v).await;
        self.recv().await
    }

    /// The next WebSocket message as it came (pings and pongs included);
    /// `None` at the end of the stream. Fails the test after `WAIT`.
    pub async fn recv_raw(&mut self) -> Option<Result<Message, tungstenite::Error>> {
        tokio::time::timeout(WAIT, self.ws.next())
            .await
            .unwrap_or_else(|_| panic!("{}: no frame within {WAIT:?}", self.nick))
    }

    /// The next frame, or `None` if none comes within `wait`.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Value> {
        let nick = self.nick.clone();
        match tokio::time::timeout(wait, self.ws.next()).await {
            Err(_) => None,
            Ok(Some(Ok(Message::Text(t)))) => Some(serde_json::from_str(&t).expect("server sent invalid JSON")),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => Some(json!({"type": "<ping>"})),
            Ok(other) => panic!("{nick}: unexpected {other:?}"),
        }
    }

    /// The next frame (text frames parsed as JSON; a close frame as
    /// `{"type":"<close>","code":…}`); fails the test after `WAIT`.
    pub async fn recv(&mut self) -> Value {
        loop {
            match self.recv_raw().await {
                Some(Ok(Message::Text(t))) => {
                    return serde_json::from_str(&t).expect("server sent invalid JSON");
                }
                Some(Ok(Message::Close(f))) => {
                    return json!({"type": "<close>", "code": f.map(|f| u16::from(f.code))});
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => panic!("{}: unexpected frame {other:?}", self.nick),
                Some(Err(e)) => return json!({"type": "<error>", "error": e.to_string()}),
                None => return json!({"type": "<eof>"}),
            }
        }
    }

    /// The next frame, which must be of type `ty`.
    pub async fn expect(&mut self, ty: &str) -> Value {
        let v = self.recv().await;
        assert_eq!(v["type"], ty, "{}: expected `{ty}`, got {v}", self.nick);
        v
    }

    /// The next frame, normalised ([`norm`]), which must equal `expected`.
    pub async fn expect_json(&mut self, expected: Value) -> Value {
        let v = self.recv().await;
        assert_eq!(norm(v.clone()), expected, "{}: unexpected frame", self.nick);
        v
    }

    /// The next frame, which must be an `error` with `code`.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let v = self.expect("error").await;
        assert_eq!(v["code"], code, "{}: expected error `{code}`, got {v}", self.nick);
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}: an error needs a human-readable message: {v}",
            self.nick
        );
        v
    }

    /// Frames until one of type `ty` (the skipped ones are returned too).
    pub async fn until(&mut self, ty: &str) -> (Value, Vec<Value>) {
        let mut skipped = Vec::new();
        loop {
            let v = self.recv().await;
            if v["type"] == ty {
                return (v, skipped);
            }
            skipped.push(v);
        }
    }

    /// Asserts that nothing was queued for this client: a `ping`'s `pong`
    /// is the very next frame.
    pub async fn sync(&mut self) {
        self.sync_n += 1;
        let id = format!("sync-{}", self.sync_n);
        self.send(json!({"type": "ping", "id": id})).await;
        let v = self.recv().await;
        assert_eq!(v, json!({"type": "pong", "id": id}), "{}: expected nothing before the pong", self.nick);
    }

    /// Says `text` in `room` and returns the `ack`.
    pub async fn say(&mut self, room: &str, text: &str) -> Value {
        self.send(json!({"type": "say", "room": room, "text": text, "id": "say"})).await;
        self.expect("ack").await
    }

    /// Sends a direct message to `to` and returns the `ack`.
    pub async fn say_to(&mut self, to: &str, text: &str) -> Value {
        self.send(json!({"type": "say", "to": to, "text": text, "id": "dm"})).await;
        self.expect("ack").await
    }

    /// Expects `count` `presence` `join` frames for `room` (any nicks).
    pub async fn expect_joins(&mut self, room: &str, count: usize) {
        for _ in 0..count {
            let v = self.expect("presence").await;
            assert_eq!((&v["room"], &v["event"]), (&json!(room), &json!("join")), "{}: {v}", self.nick);
        }
    }

    /// Waits for the connection to end and returns the close code, if any.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            let v = self.recv().await;
            match v["type"].as_str() {
                Some("<close>") => return v["code"].as_u64().map(|c| c as u16),
                Some("<eof>") | Some("<error>") => return None,
                _ => continue,
            }
        }
    }

    /// The next frame must be a close frame with `code`.
    pub async fn expect_close(&mut self, code: u16) {
        let v = self.recv().await;
        assert_eq!(v, json!({"type": "<close>", "code": code}), "{}: expected close {code}", self.nick);
    }
}

/// A group of clients in one room, joined one after another, each having
/// consumed the `presence` frames of those who joined after it: a quiet
/// room, ready for a test to talk in.
pub async fn quiet_room(server: &RunningServer, room: &str, nicks: &[&str]) -> Vec<Client> {
    let mut clients: Vec<Client> = Vec::new();
    for nick in nicks {
        let mut c = Client::in_rooms(server, nick, &[room]).await;
        for earlier in clients.iter_mut() {
            earlier.expect_json(presence(room, nick, "join")).await;
        }
        c.sync().await;
        clients.push(c);
    }
    clients
}

// ---- identity and access (tests/auth.rs, tests/access.rs, tests/admin_api.rs) ----

/// The site-token secret of [`auth_config`].
pub const TOKEN_SECRET: &str = "test-site-token-secret-at-least-32-bytes";
/// The API key of [`auth_config`].
pub const API_KEY: &str = "test-api-key";

/// [`test_config`] with site tokens ([`TOKEN_SECRET`]) and an API key ([`API_KEY`]).
pub fn auth_config() -> Config {
    let mut c = test_config();
    c.auth.token_secret = chat::config::Secret::new(TOKEN_SECRET);
    c.auth.api_keys = vec![chat::config::Secret::new(API_KEY)];
    c
}

/// Now, in seconds since the epoch (a site token's `exp`).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Site-token claims for `nick` (`sub`), valid for an hour, nothing optional.
pub fn claims(sub: &str, nick: &str) -> chat::auth::SiteClaims {
    chat::auth::SiteClaims {
        sub: sub.into(),
        nick: nick.into(),
        exp: unix_now() + 3600,
        nbf: None,
        iat: None,
        name: None,
        avatar: None,
        rooms: None,
        admin: false,
    }
}

/// A site token signed with [`TOKEN_SECRET`].
pub fn site_token(claims: &chat::auth::SiteClaims) -> String {
    chat::auth::mint_site_token(&chat::config::Secret::new(TOKEN_SECRET), claims).expect("mint")
}

/// `Bearer <token>`, for an `Authorization` header.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

impl Client {
    /// Connects and sends `hello` with `fields` (`nick`, `password`,
    /// `token`); returns the client (named after `welcome.nick`) and `welcome`.
    pub async fn hello_with(server: &RunningServer, fields: Value) -> (Client, Value) {
        let mut c = Client::connect(server).await;
        let mut hello = json!({"type": "hello"});
        hello.as_object_mut().unwrap().extend(fields.as_object().expect("fields").clone());
        c.send(hello).await;
        let welcome = c.expect("welcome").await;
        c.nick = welcome["nick"].as_str().unwrap_or_default().to_string();
        (c, welcome)
    }

    /// Connects with a site or session token; returns the client and `welcome`.
    pub async fn with_token(server: &RunningServer, token: &str) -> (Client, Value) {
        Client::hello_with(server, json!({"token": token})).await
    }
}

/// Waits until a server in another process answers `/healthz` (at most
/// 30 s): a process we do not control is polled.
pub async fn wait_healthy(addr: std::net::SocketAddr) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !(tokio::net::TcpStream::connect(addr).await.is_ok() && http::get(addr, "/healthz", &[]).await.status == 200)
    {
        assert!(tokio::time::Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
