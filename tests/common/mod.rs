//! Test harness: a real server on 127.0.0.1:0 (through `Server::start_on`)
//! and real WebSocket clients (tokio-tungstenite), as a user would connect.
//!
//! No sleeps: to prove that nothing else reached a client, `sync()` sends a
//! `ping` and requires the very next frame to be its `pong` — every frame
//! queued for that session before the ping would come first.
#![allow(dead_code)]

use std::time::Duration;

use chat::{Config, RunningServer, Server};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// How long any expected frame may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Defaults for tests: no auto-joined room (each test says what it joins),
/// and a SQLite database of its own.
pub fn test_config() -> Config {
    let mut c = Config::default();
    c.rooms.auto_join = vec![];
    c.database.url = format!("sqlite://{}", fresh_db_path().display());
    c
}

/// A path for a new SQLite file under target/, so tests never share one.
pub fn fresh_db_path() -> std::path::PathBuf {
    let dir = tempfile::Builder::new()
        .prefix("db-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
        .keep();
    dir.join("chat.db")
}

pub async fn start(config: Config) -> RunningServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Server::start_on(config, listener).await.unwrap()
}

pub async fn start_default() -> RunningServer {
    start(test_config()).await
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub nick: String,
    sync_n: u64,
}

impl Client {
    /// Opens a WebSocket without identifying.
    pub async fn connect(server: &RunningServer) -> Client {
        let (ws, _) = connect_async(server.ws_url()).await.expect("connect");
        Client {
            ws,
            nick: String::new(),
            sync_n: 0,
        }
    }

    /// Connects and identifies as a guest; returns the client and `welcome`.
    pub async fn hello(server: &RunningServer, nick: &str) -> (Client, Value) {
        let mut c = Client::connect(server).await;
        c.send(json!({"type": "hello", "nick": nick})).await;
        let welcome = c.expect("welcome").await;
        c.nick = nick.to_string();
        (c, welcome)
    }

    /// Connects as `nick` and joins `rooms`, consuming each `joined`.
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
        self.ws
            .send(Message::text(v.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.expect("send");
    }

    /// The next frame (text frames parsed as JSON; a close frame as
    /// `{"type":"<close>","code":…}`); fails the test after `WAIT`.
    pub async fn recv(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{}: no frame within {WAIT:?}", self.nick));
            match m {
                Some(Ok(Message::Text(t))) => {
                    return serde_json::from_str(&t).expect("server sent invalid JSON");
                }
                Some(Ok(Message::Close(f))) => {
                    return json!({"type": "<close>", "code": f.map(|f| u16::from(f.code))});
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => panic!("unexpected frame {other:?}"),
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

    /// The next frame, which must be an `error` with `code`.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let v = self.expect("error").await;
        assert_eq!(
            v["code"], code,
            "{}: expected error `{code}`, got {v}",
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
        assert_eq!(
            v,
            json!({"type": "pong", "id": id}),
            "{}: expected nothing before the pong",
            self.nick
        );
    }

    /// Says `text` in `room` and returns the `ack`.
    pub async fn say(&mut self, room: &str, text: &str) -> Value {
        self.send(json!({"type": "say", "room": room, "text": text, "id": "say"}))
            .await;
        self.expect("ack").await
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
}
