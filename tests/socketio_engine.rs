//! Engine.IO v4 under the Socket.IO door, request by request: long-polling
//! (its errors, one `GET` at a time, garbage bodies, the heartbeat, its
//! place under the connection caps), the upgrade to WebSocket, and a
//! WebSocket client that stops answering pings. The official clients'
//! tests are in `tests/socketio.rs`.

mod common;

use std::time::Duration;

use chat::{Config, RunningServer};
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn config() -> Config {
    let mut c = auth_config();
    c.rooms.auto_join = vec!["lobby".into()];
    c
}

/// A WebSocket user, in the lobby (auto-joined).
async fn web_user(server: &RunningServer, nick: &str) -> Client {
    let (mut c, _) = Client::hello(server, nick).await;
    c.expect("joined").await;
    c
}

fn base(server: &RunningServer) -> String {
    format!("http://{}/socket.io/?EIO=4&transport=polling", server.addr())
}

/// A long-polling Engine.IO connection, by hand.
struct Polling {
    http: reqwest::Client,
    url: String,
    sid: String,
    /// Packets received and not yet looked at.
    queued: Vec<String>,
}

impl Polling {
    async fn open(server: &RunningServer) -> Polling {
        Polling::open_with(server, reqwest::Client::new()).await.expect("polling handshake")
    }

    /// The handshake; `Err` is the refusal's status.
    async fn open_with(server: &RunningServer, http: reqwest::Client) -> Result<Polling, reqwest::StatusCode> {
        let r = http.get(base(server)).send().await.unwrap();
        if !r.status().is_success() {
            return Err(r.status());
        }
        let open = r.text().await.unwrap();
        let v: Value = serde_json::from_str(open.strip_prefix('0').unwrap_or_else(|| panic!("{open}"))).unwrap();
        assert_eq!(v["upgrades"], json!(["websocket"]), "{open}");
        assert!(v["pingInterval"].is_u64() && v["pingTimeout"].is_u64() && v["maxPayload"].is_u64(), "{open}");
        let sid = v["sid"].as_str().unwrap().to_owned();
        Ok(Polling { url: format!("{}&sid={sid}", base(server)), http, sid, queued: Vec::new() })
    }

    /// Connects to `/` as `nick`, through `welcome` and the lobby's `joined`.
    async fn chat(server: &RunningServer, nick: &str) -> Polling {
        let mut p = Polling::open(server).await;
        assert_eq!(p.post(format!("40{}", json!({"nick": nick}))).await, 200);
        assert!(p.next().await.starts_with("40{\"sid\""));
        assert!(p.next().await.starts_with("42[\"welcome\""));
        assert!(p.next().await.starts_with("42[\"joined\""));
        p
    }

    async fn post(&self, body: impl Into<reqwest::Body>) -> u16 {
        self.http.post(&self.url).body(body).send().await.unwrap().status().as_u16()
    }

    /// One `GET`: its status and body.
    async fn get(&self) -> (u16, String) {
        let r = tokio::time::timeout(WAIT, self.http.get(&self.url).send()).await.expect("GET within WAIT").unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// The next packet but pings (which are answered).
    async fn next(&mut self) -> String {
        loop {
            if !self.queued.is_empty() {
                let p = self.queued.remove(0);
                if p == "2" {
                    self.post("3").await;
                    continue;
                }
                return p;
            }
            let (status, body) = self.get().await;
            assert_eq!(status, 200, "{body}");
            self.queued = body.split('\x1e').map(str::to_owned).collect();
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next Engine.IO packet on a WebSocket but pings (which are answered).
async fn recv(ws: &mut Ws) -> String {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("a packet within WAIT") {
            Some(Ok(Message::Text(t))) if t.as_str() == "2" => ws.send(Message::text("3")).await.unwrap(),
            Some(Ok(Message::Text(t))) => return t.as_str().to_owned(),
            other => panic!("{other:?}"),
        }
    }
}

/// engine.io's error body.
async fn engine_error(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let ctype = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(ctype.as_deref(), Some("application/json"));
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn requests_engine_io_cannot_serve_get_its_errors() {
    let server = start(config()).await;
    let http = reqwest::Client::new();
    let root = format!("http://{}/socket.io/", server.addr());
    let cases = [
        (format!("{root}?EIO=4&transport=polling&sid=nosuchsid"), json!({"code": 1, "message": "Session ID unknown"})),
        (format!("{root}?EIO=3&transport=polling"), json!({"code": 5, "message": "Unsupported protocol version"})),
        (format!("{root}?transport=polling"), json!({"code": 5, "message": "Unsupported protocol version"})),
        (format!("{root}?EIO=4&transport=carrier-pigeon"), json!({"code": 0, "message": "Transport unknown"})),
        (format!("{root}?EIO=4"), json!({"code": 0, "message": "Transport unknown"})),
    ];
    for (url, expected) in cases {
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(engine_error(r).await, (400, expected), "{url}");
    }
    let r = http.post(format!("{root}?EIO=4&transport=polling")).body("40").send().await.unwrap();
    assert_eq!(engine_error(r).await, (400, json!({"code": 2, "message": "Bad handshake method"})));
    // A WebSocket handshake that is none.
    let r = http.get(format!("{root}?EIO=4&transport=websocket")).send().await.unwrap();
    assert_eq!(engine_error(r).await, (400, json!({"code": 3, "message": "Bad request"})));
    // The server still serves.
    let mut p = Polling::chat(&server, "after").await;
    assert_eq!(p.post("421[\"ping\"]").await, 200);
    let pong = p.next().await;
    assert!(pong.starts_with("431[{\"type\":\"pong\""), "{pong}");
}

#[tokio::test]
async fn a_second_get_at_once_closes_the_polling_connection() {
    let server = start(config()).await;
    let mut web = web_user(&server, "web").await;
    let p = Polling::chat(&server, "twice").await;
    web.expect_json(presence("lobby", "twice", "join")).await;
    // Two GETs at once (nothing is queued, so neither ends by itself):
    // one is refused, the other learns that the connection closed.
    let (one, two) = tokio::join!(p.get(), p.get());
    let mut answers = [one, two];
    answers.sort();
    assert_eq!(answers[0], (200, "1".into()));
    assert_eq!(answers[1].0, 400);
    assert!(answers[1].1.contains("Bad request"), "{:?}", answers[1]);
    web.expect_json(presence("lobby", "twice", "quit")).await;
    let r = p.http.get(&p.url).send().await.unwrap();
    assert_eq!(engine_error(r).await, (400, json!({"code": 1, "message": "Session ID unknown"})));
    web.sync().await;
}

#[tokio::test]
async fn garbage_polling_bodies_close_only_that_connection() {
    let server = start(config()).await;
    let mut web = web_user(&server, "web").await;
    let bad: Vec<Vec<u8>> = vec![
        b"z".to_vec(),
        b"".to_vec(),
        b"b!!not base64".to_vec(),
        b"0{}".to_vec(),
        b"5".to_vec(),
        b"4".to_vec(),
        b"49".to_vec(),
        b"42[\"ping\"]\x1e\x1e".to_vec(),
        vec![b'4', b'2', 0xff, 0xfe],
        b"bAAAA".to_vec(),
    ];
    for body in bad {
        let p = Polling::chat(&server, "victim").await;
        web.expect_json(presence("lobby", "victim", "join")).await;
        let status = p.post(body.clone()).await;
        assert!(status == 200 || status == 400, "{status}");
        web.expect_json(presence("lobby", "victim", "quit")).await;
        let r = p.http.get(&p.url).send().await.unwrap();
        assert_eq!(engine_error(r).await.0, 400, "{body:?}: the connection is gone");
    }
    web.sync().await;
}

#[tokio::test]
async fn a_polling_connection_counts_once_under_the_caps() {
    let mut c = config();
    // This client's one keep-alive TCP connection, and two Engine.IO ones.
    c.limits.max_connections_per_ip = 3;
    let server = start(c).await;
    let http = reqwest::Client::new();
    let mut a = Polling::open_with(&server, http.clone()).await.unwrap();
    let b = Polling::open_with(&server, http.clone()).await.unwrap();
    // Many requests on one connection take no more places.
    assert_eq!(a.post(format!("40{}", json!({"nick": "a"}))).await, 200);
    for _ in 0..5 {
        assert_eq!(a.post("421[\"ping\"]").await, 200);
    }
    assert!(a.next().await.starts_with("40{"));
    assert_eq!(Polling::open_with(&server, http.clone()).await.err(), Some(reqwest::StatusCode::TOO_MANY_REQUESTS));
    // A connection that closes frees its place.
    assert_eq!(b.post("1").await, 200);
    let c = Polling::open_with(&server, http.clone()).await.expect("a place again");
    assert_eq!(c.post("1").await, 200);
    drop((a, b));
}

#[tokio::test]
async fn clients_that_stop_answering_pings_are_dropped() {
    let mut c = config();
    c.socketio.ping_interval = Duration::from_millis(300);
    c.socketio.ping_timeout = Duration::from_millis(300);
    let server = start(c).await;
    let mut web = web_user(&server, "web").await;
    // Long-polling that stops polling.
    let _gone = Polling::chat(&server, "gone").await;
    web.expect_json(presence("lobby", "gone", "join")).await;
    web.expect_json(presence("lobby", "gone", "quit")).await;
    // A WebSocket that reads but never answers.
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::text(format!("40{}", json!({"nick": "mute"})))).await.unwrap();
    web.expect_json(presence("lobby", "mute", "join")).await;
    let mut pings = 0;
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("closed within WAIT") {
            Some(Ok(Message::Text(t))) if t.as_str() == "2" => pings += 1,
            Some(Ok(Message::Text(_))) => {}
            _ => break,
        }
    }
    assert_eq!(pings, 1, "one ping, unanswered, then the close");
    web.expect_json(presence("lobby", "mute", "quit")).await;
    web.sync().await;
}

#[tokio::test]
async fn polling_upgrades_to_websocket() {
    let server = start(config()).await;
    let mut web = web_user(&server, "web").await;
    let mut p = Polling::chat(&server, "up").await;
    web.expect_json(presence("lobby", "up", "join")).await;
    // A GET waits while the WebSocket probes.
    let url = p.url.clone();
    let waiting = tokio::spawn(async move { reqwest::get(url).await.unwrap().text().await.unwrap() });
    let ws_url = format!("ws://{}/socket.io/?EIO=4&transport=websocket&sid={}", server.addr(), p.sid);
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(recv(&mut ws).await, "3probe");
    // The waiting GET is let go with a noop (a ping may come with it).
    let noop = tokio::time::timeout(WAIT, waiting).await.expect("the GET ends").unwrap();
    assert!(noop.split('\x1e').any(|p| p == "6"), "{noop}");
    // While upgrading, polling gets noops at once, even with a message
    // waiting: it is the WebSocket's, once upgraded.
    web.say("lobby", "in between").await;
    assert_eq!(p.get().await, (200, "6".into()));
    ws.send(Message::text("5")).await.unwrap();
    // The WebSocket carries the connection now: the message said in
    // between, once, then an ack, and a message.
    let mut got = recv(&mut ws).await;
    while got == "6" {
        got = recv(&mut ws).await;
    }
    assert!(got.starts_with("42[\"message\"") && got.contains("in between"), "{got}");
    ws.send(Message::text("421[\"ping\"]")).await.unwrap();
    let got = recv(&mut ws).await;
    assert!(got.starts_with("431[{\"type\":\"pong\""), "{got}");
    web.say("lobby", "over the websocket").await;
    let m = recv(&mut ws).await;
    assert!(m.starts_with("42[\"message\"") && m.contains("over the websocket"), "{m}");
    // Polling is over for this connection, and so is a second upgrade.
    let r = p.http.get(&p.url).send().await.unwrap();
    assert_eq!(engine_error(r).await, (400, json!({"code": 3, "message": "Bad request"})));
    assert!(tokio_tungstenite::connect_async(&ws_url).await.is_err());
    p.queued.clear();
    // Leaving over the WebSocket ends the session.
    ws.send(Message::text("1")).await.unwrap();
    let (quit, _) = web.until("presence").await;
    assert_eq!(norm(quit), presence("lobby", "up", "quit"));
    web.sync().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_connections_without_a_namespace() {
    let mut c = config();
    c.server.shutdown_grace = Duration::from_secs(30);
    c.limits.hello_timeout = Duration::from_secs(30);
    let server = start(c).await;
    // Long-polling (a GET waiting), and a WebSocket, neither in a namespace.
    let p = Polling::open(&server).await;
    let waiting = tokio::spawn(async move { p.get().await });
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert!(recv(&mut ws).await.starts_with("0{"));
    let stopped = tokio::time::timeout(Duration::from_secs(5), server.stop()).await;
    assert!(stopped.is_ok(), "the server waited for idle Engine.IO connections");
    assert_eq!(waiting.await.unwrap(), (200, "1".into()), "the waiting GET learns of the close");
    let end = tokio::time::timeout(WAIT, ws.next()).await.expect("closed");
    assert!(matches!(end, None | Some(Ok(Message::Close(_))) | Some(Err(_))), "{end:?}");
}

/// A `POST` whose headers arrived and whose body is being read (the
/// server asked for it with `100 Continue`), `sent` bytes of it so far.
async fn partial_post(server: &RunningServer, sid: &str, body: &str, sent: usize) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let head = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        server.addr(),
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(WAIT, tcp.read(&mut b)).await.expect("100 Continue").unwrap();
        assert_eq!(n, 1, "closed: {}", String::from_utf8_lossy(&got));
        got.push(b[0]);
    }
    assert!(got.starts_with(b"HTTP/1.1 100"), "{}", String::from_utf8_lossy(&got));
    tcp.write_all(&body.as_bytes()[..sent]).await.unwrap();
    tcp
}

/// The rest of a [`partial_post`]'s body, and the response's status line.
async fn finish_post(mut tcp: tokio::net::TcpStream, body: &str, sent: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(&body.as_bytes()[sent..]).await.unwrap();
    let mut got = Vec::new();
    while !got.windows(2).any(|w| w == b"\r\n") {
        let mut b = [0u8; 256];
        let n = tokio::time::timeout(WAIT, tcp.read(&mut b)).await.expect("a response").unwrap();
        assert!(n > 0, "closed without a response");
        got.extend_from_slice(&b[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    text.lines().next().unwrap().to_owned()
}

#[tokio::test]
async fn a_connect_whose_body_ends_after_the_close_opens_no_session() {
    let mut c = config();
    c.limits.hello_timeout = Duration::from_secs(1);
    let server = start(c).await;
    let mut web = web_user(&server, "web").await;
    let p = Polling::open(&server).await;
    let body = format!("40{}", json!({"nick": "victim"}));
    let slow = partial_post(&server, &p.sid, &body, 6).await;
    // The connection ends while the body comes (here: no namespace within
    // the hello timeout); a waiting GET learns of it.
    assert_eq!(p.get().await, (200, "1".into()));
    // The body's `CONNECT` comes too late: no session opens.
    let status = finish_post(slow, &body, 6).await;
    assert!(status.starts_with("HTTP/1.1 "), "{status}");
    // The nick is free, and the lobby sees one join: the real one's.
    let _victim = Polling::chat(&server, "victim").await;
    web.expect_json(presence("lobby", "victim", "join")).await;
    web.sync().await;
}

#[tokio::test]
async fn a_post_during_another_is_refused_and_closes_the_connection() {
    let server = start(config()).await;
    let mut web = web_user(&server, "web").await;
    let p = Polling::open(&server).await;
    let body = format!("40{}", json!({"nick": "victim"}));
    let slow = partial_post(&server, &p.sid, &body, 6).await;
    // A second POST while the first is read is refused, and ends the
    // connection (as engine.io does).
    let r = p.http.post(&p.url).body("1").send().await.unwrap();
    assert_eq!(engine_error(r).await, (400, json!({"code": 3, "message": "Bad request"})));
    let r = p.http.get(&p.url).send().await.unwrap();
    assert_eq!(engine_error(r).await, (400, json!({"code": 1, "message": "Session ID unknown"})));
    // The first body's `CONNECT` comes too late: no session opens.
    let status = finish_post(slow, &body, 6).await;
    assert!(status.starts_with("HTTP/1.1 "), "{status}");
    // The nick is free, and the lobby sees one join: the real one's.
    let _victim = Polling::chat(&server, "victim").await;
    web.expect_json(presence("lobby", "victim", "join")).await;
    web.sync().await;
}

#[tokio::test]
async fn a_probe_holds_its_place_under_the_caps() {
    let mut c = config();
    // This client's keep-alive TCP connection, its polling connection, and
    // the probe's TCP connection.
    c.limits.max_connections_per_ip = 3;
    let server = start(c).await;
    let http = reqwest::Client::new();
    let p = Polling::open_with(&server, http.clone()).await.unwrap();
    let ws_url = format!("ws://{}/socket.io/?EIO=4&transport=websocket&sid={}", server.addr(), p.sid);
    let (_probe, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    assert_eq!(Polling::open_with(&server, http.clone()).await.err(), Some(reqwest::StatusCode::TOO_MANY_REQUESTS));
}

#[tokio::test]
async fn a_second_probe_at_once_is_refused() {
    let server = start(config()).await;
    let p = Polling::open(&server).await;
    let ws_url = format!("ws://{}/socket.io/?EIO=4&transport=websocket&sid={}", server.addr(), p.sid);
    let (mut probe, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    match tokio_tungstenite::connect_async(&ws_url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 400),
        other => panic!("a second probe: {:?}", other.map(|(_, r)| r.status())),
    }
    // The first one goes on.
    probe.send(Message::text("2probe")).await.unwrap();
    assert_eq!(recv(&mut probe).await, "3probe");
}

#[tokio::test]
async fn a_failed_probe_leaves_polling_working() {
    let server = start(config()).await;
    let mut web = web_user(&server, "web").await;
    let mut p = Polling::chat(&server, "poller").await;
    web.expect_json(presence("lobby", "poller", "join")).await;
    let ws_url = format!("ws://{}/socket.io/?EIO=4&transport=websocket&sid={}", server.addr(), p.sid);
    let (mut probe, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    // A probe that fails (here: no `2probe`) closes only its WebSocket.
    probe.send(Message::text("nonsense")).await.unwrap();
    let end = tokio::time::timeout(WAIT, probe.next()).await.expect("the probe closed");
    assert!(matches!(end, None | Some(Ok(Message::Close(_))) | Some(Err(_))), "{end:?}");
    // Polling goes on: a message arrives, and the client can still post.
    web.say("lobby", "still polling").await;
    let m = p.next().await;
    assert!(m.starts_with("42[\"message\"") && m.contains("still polling"), "{m}");
    assert_eq!(p.post("421[\"ping\"]").await, 200);
    assert!(p.next().await.starts_with("431[{\"type\":\"pong\""));
    // And another probe may try.
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(recv(&mut ws).await, "3probe");
    web.sync().await;
}

/// Says `text` in the lobby, through its `ack`; a `presence` that came
/// meanwhile, if any.
async fn say_noting_presence(web: &mut Client, text: &str) -> Option<Value> {
    web.send(json!({"type": "say", "room": "lobby", "text": text, "id": "say"})).await;
    let mut seen = None;
    loop {
        let v = web.recv().await;
        match v["type"].as_str() {
            Some("ack") => return seen,
            Some("presence") => seen = Some(v),
            _ => panic!("{v}"),
        }
    }
}

/// Packets of a polling `GET` after the first: all of them, pings left out,
/// until the close packet; `None` if a `GET` is refused first.
async fn drain_until_close(p: &Polling) -> Option<Vec<String>> {
    let mut got = Vec::new();
    loop {
        let (status, body) = p.get().await;
        if status != 200 {
            return None;
        }
        for packet in body.split('\x1e') {
            if packet == "1" {
                return Some(got);
            }
            if packet != "2" {
                got.push(packet.to_owned());
            }
        }
    }
}

#[tokio::test]
async fn a_closed_polling_connection_delivers_its_last_packets_then_the_close() {
    let mut c = config();
    c.socketio.buffer = 4;
    let server = start(c).await;
    let mut web = web_user(&server, "web").await;
    let p = Polling::chat(&server, "slow").await;
    web.expect_json(presence("lobby", "slow", "join")).await;
    // Six messages for a buffer of four, no GET: a slow consumer, closed.
    let mut quit = None;
    for i in 0..6 {
        quit = quit.or(say_noting_presence(&mut web, &format!("m{i}")).await);
    }
    let quit = match quit {
        Some(q) => q,
        None => web.recv().await,
    };
    assert_eq!(norm(quit), presence("lobby", "slow", "quit"));
    // Its client still gets what was queued, in order, then the close.
    let got = drain_until_close(&p).await.expect("the last packets, not a refusal");
    let texts: Vec<String> = got
        .iter()
        .map(|m| {
            let v: Value = serde_json::from_str(m.strip_prefix("42").unwrap_or_else(|| panic!("{m}"))).unwrap();
            assert_eq!(v[0], "message", "{m}");
            v[1]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(texts, ["m0", "m1", "m2", "m3"]);
    // Then the sid names nothing.
    let r = p.http.get(&p.url).send().await.unwrap();
    assert_eq!(engine_error(r).await, (400, json!({"code": 1, "message": "Session ID unknown"})));
    web.sync().await;
}

#[tokio::test]
async fn a_polling_client_that_takes_nothing_is_bounded_in_bytes() {
    let mut c = config();
    // Room for about four of these messages, in the hub and in the
    // connection's queue each; far more in messages.
    c.limits.outbound_bytes = 4096;
    c.socketio.buffer = 1024;
    let server = start(c).await;
    let mut web = web_user(&server, "web").await;
    let p = Polling::chat(&server, "hoarder").await;
    web.expect_json(presence("lobby", "hoarder", "join")).await;
    let text = "x".repeat(1000);
    let mut quit = None;
    for _ in 0..20 {
        quit = say_noting_presence(&mut web, &text).await;
        if quit.is_some() {
            break;
        }
    }
    let quit = quit.expect("dropped before twenty 1 KB messages were queued for a client that takes none");
    assert_eq!(norm(quit), presence("lobby", "hoarder", "quit"));
    drop(p);
}

#[tokio::test]
async fn a_polling_body_that_does_not_arrive_in_time_gets_408() {
    use tokio::io::AsyncReadExt;
    let mut c = config();
    c.server.request_body_timeout = Duration::from_secs(1);
    let server = start(c).await;
    let p = Polling::open(&server).await;
    let body = format!("40{}", json!({"nick": "late"}));
    let mut slow = partial_post(&server, &p.sid, &body, 6).await;
    let mut got = Vec::new();
    while !got.windows(2).any(|w| w == b"\r\n") {
        let mut b = [0u8; 256];
        let n = tokio::time::timeout(WAIT, slow.read(&mut b)).await.expect("a response").unwrap();
        assert!(n > 0, "closed without a response");
        got.extend_from_slice(&b[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    // And the connection is closed.
    let r = p.http.get(&p.url).send().await.unwrap();
    assert_eq!(engine_error(r).await, (400, json!({"code": 1, "message": "Session ID unknown"})));
}

#[tokio::test]
async fn a_websocket_client_that_stops_reading_is_dropped() {
    let mut c = config();
    c.socketio.ping_interval = Duration::from_secs(3);
    c.socketio.ping_timeout = Duration::from_secs(1);
    c.limits.rate_per_sec = 10_000;
    c.limits.burst = 10_000;
    let server = start(c).await;
    let mut web = web_user(&server, "web").await;
    // A client with a small receive window, so that what it does not read
    // soon fills it and the server's writes wait.
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let tcp = tcp.connect(server.addr()).await.unwrap();
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr());
    let (mut ws, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp)).await.unwrap();
    assert!(recv(&mut ws).await.starts_with("0{"));
    ws.send(Message::text(format!("40{}", json!({"nick": "deaf"})))).await.unwrap();
    assert!(recv(&mut ws).await.starts_with("40{\"sid\""));
    web.expect_json(presence("lobby", "deaf", "join")).await;
    // It reads no more; the room talks (3 MB: more than the TCP buffers
    // hold, less than the byte budgets), then falls silent: the write that
    // waits for it, not the session's buffer, drops it.
    let text = "x".repeat(3000);
    let mut quit = None;
    for _ in 0..1000 {
        quit = quit.or(say_noting_presence(&mut web, &text).await);
    }
    let quit = match quit {
        Some(q) => q,
        None => web.recv().await,
    };
    assert_eq!(norm(quit), presence("lobby", "deaf", "quit"));
    drop(ws);
}
