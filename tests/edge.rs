//! The HTTP edge: client addresses behind trusted proxies (caps and login
//! throttling by the real client), the per-address cap counting every TCP
//! connection, timeouts for silent and slow peers, JSON errors for every
//! refusal, `server.allowed_hosts`, a hook that never follows redirects,
//! and the transcript's security headers.
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::response::IntoResponse;
use chat::RunningServer;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket upgrade with extra headers: the socket, or the refusal's
/// status and JSON body.
async fn ws_with(server: &RunningServer, headers: &[(&str, &str)]) -> Result<Ws, (u16, Value)> {
    let mut req = server.ws_url().into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(r)) => {
            let body = serde_json::from_slice(r.body().as_deref().unwrap_or_default()).unwrap_or(json!(null));
            Err((r.status().as_u16(), body))
        }
        Err(e) => panic!("upgrade failed: {e}"),
    }
}

/// Through the trusted proxy (this test's own address), for `client`.
fn via(client: &str) -> [(&str, &str); 1] {
    [("X-Forwarded-For", client)]
}

fn refused_429(r: Result<Ws, (u16, Value)>) {
    match r {
        Err((status, body)) => {
            assert_eq!(status, 429, "{body}");
            assert_eq!(body["error"]["code"], "too_many_connections", "{body}");
        }
        Ok(_) => panic!("expected 429, got a WebSocket"),
    }
}

/// Upgrades until the server has released a closed connection's slot.
async fn ws_when_free(server: &RunningServer, headers: &[(&str, &str)]) -> Ws {
    let deadline = Instant::now() + WAIT;
    loop {
        match ws_with(server, headers).await {
            Ok(ws) => return ws,
            Err((429, _)) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(e) => panic!("upgrade refused: {e:?}"),
        }
    }
}

/// The next text frame, as JSON.
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("a frame in time") {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("connection ended: {other:?}"),
        }
    }
}

fn proxied_config() -> chat::Config {
    let mut config = auth_config();
    config.server.trusted_proxies = vec!["127.0.0.1".into()];
    config
}

// ---- client addresses and caps ------------------------------------------------------------

#[tokio::test]
async fn clients_behind_a_trusted_proxy_are_capped_by_their_own_address() {
    let mut config = proxied_config();
    config.limits.max_connections_per_ip = 1;
    let server = start(config).await;
    // Two users behind the one proxy: one connection each is fine.
    let mut ann = ws_with(&server, &via("198.51.100.1")).await.expect("ann");
    let _bob = ws_with(&server, &via("10.0.0.7, 198.51.100.2")).await.expect("bob");
    // ann's second connection is over her cap; bob's is not affected.
    refused_429(ws_with(&server, &via("198.51.100.1")).await);
    // A connection that closes frees its address's slot.
    ann.send(Message::Close(None)).await.unwrap();
    while let Some(Ok(_)) = ann.next().await {}
    let _ann = ws_when_free(&server, &via("198.51.100.1")).await;
}

#[tokio::test]
async fn an_untrusted_peer_s_forwarded_for_is_ignored() {
    let mut config = auth_config();
    config.server.trusted_proxies = vec!["192.0.2.0/24".into()];
    config.limits.max_connections_per_ip = 1;
    let server = start(config).await;
    let _first = ws_with(&server, &via("198.51.100.1")).await.expect("first");
    // Another claimed address from the same (untrusted) peer: the peer's cap.
    refused_429(ws_with(&server, &via("198.51.100.2")).await);
}

#[tokio::test]
async fn the_per_address_cap_counts_connections_before_the_upgrade() {
    let mut config = test_config();
    config.limits.max_connections_per_ip = 2;
    let server = start(config).await;
    // Two TCP connections that have not sent a byte yet.
    let mut silent = TcpStream::connect(server.addr()).await.unwrap();
    let _half = {
        let mut s = TcpStream::connect(server.addr()).await.unwrap();
        s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        s
    };
    refused_429(ws_with(&server, &[]).await);
    let r = http::get(server.addr(), "/healthz", &[]).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "too_many_connections");
    // One of them leaves: its slot is free.
    silent.shutdown().await.unwrap();
    let mut buf = [0u8; 64];
    let _ = silent.read(&mut buf).await;
    drop(silent);
    let mut ws = ws_when_free(&server, &[]).await;
    ws.send(Message::text(json!({"type": "hello", "nick": "alice"}).to_string())).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
}

// ---- login throttling ----------------------------------------------------------------------

async fn login_from(server: &RunningServer, client: &str, nick: &str, password: &str) -> http::Response {
    http::post(server.addr(), "/api/login", &via(client), &json!({"nick": nick, "password": password})).await
}

fn status_and_code(r: &http::Response) -> (u16, String) {
    let code = if r.status == 200 { String::new() } else { r.json()["error"]["code"].as_str().unwrap().to_string() };
    (r.status, code)
}

#[tokio::test]
async fn an_attacker_s_wrong_passwords_do_not_lock_the_owner_out() {
    let mut config = proxied_config();
    config.auth.login_per_nick_per_minute = 3;
    config.auth.login_failures_per_nick_per_minute = 4;
    let server = start(config).await;
    const OWNER: &str = "198.51.100.7";
    let r =
        http::post(server.addr(), "/api/register", &via(OWNER), &json!({"nick": "alice", "password": "correct horse"}))
            .await;
    assert_eq!(r.status, 201, "{}", r.body);

    // One attacker's address: three guesses, then 429 for it.
    for _ in 0..3 {
        let r = login_from(&server, "203.0.113.9", "alice", "guess123").await;
        assert_eq!(status_and_code(&r), (401, "unauthorized".into()), "{}", r.body);
    }
    let r = login_from(&server, "203.0.113.9", "alice", "correct horse").await;
    assert_eq!(status_and_code(&r), (429, "rate_limited".into()), "{}", r.body);
    // Guessing from many addresses: past four failures on `alice`, an
    // address that failed on her may not try again, though its own bucket
    // is not empty; a fresh address still gets its attempt.
    let r = login_from(&server, "203.0.113.10", "alice", "guess123").await;
    assert_eq!(status_and_code(&r), (401, "unauthorized".into()), "{}", r.body);
    let r = login_from(&server, "203.0.113.10", "alice", "guess456").await;
    assert_eq!(status_and_code(&r), (429, "rate_limited".into()), "{}", r.body);
    let r = login_from(&server, "203.0.113.11", "alice", "guess123").await;
    assert_eq!(status_and_code(&r), (401, "unauthorized".into()), "{}", r.body);
    // The attacker's address may still try other nicks.
    let r = login_from(&server, "203.0.113.9", "bob", "guess123").await;
    assert_eq!(status_and_code(&r), (401, "unauthorized".into()), "{}", r.body);

    // The owner, from her own address, logs in over HTTP and in `hello`.
    let r = login_from(&server, OWNER, "alice", "correct horse").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["user"]["nick"], "alice");
    let mut ws = ws_with(&server, &via(OWNER)).await.expect("upgrade");
    let hello = json!({"type": "hello", "nick": "alice", "password": "correct horse"});
    ws.send(Message::text(hello.to_string())).await.unwrap();
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["user"]["guest"], false, "{welcome}");
}

// ---- timeouts --------------------------------------------------------------------------------

fn short_timeouts() -> chat::Config {
    let mut config = test_config();
    config.server.request_head_timeout = Duration::from_millis(300);
    config.server.request_body_timeout = Duration::from_millis(300);
    config.limits.hello_timeout = Duration::from_millis(300);
    config
}

/// Reads until the server closes the connection; what it sent, and when.
async fn read_until_closed(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
            Err(_) => panic!("still open after {WAIT:?}; got {:?}", String::from_utf8_lossy(&got)),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), started.elapsed())
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_head_timeout() {
    let server = start(short_timeouts()).await;
    let mut silent = TcpStream::connect(server.addr()).await.unwrap();
    let (got, after) = read_until_closed(&mut silent).await;
    assert!(!got.contains("200 OK"), "{got}");
    assert!(after >= Duration::from_millis(200) && after < Duration::from_secs(5), "closed after {after:?}");

    // Idle after a response on a kept-alive connection: the same.
    let mut idle = TcpStream::connect(server.addr()).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let (got, after) = read_until_closed(&mut idle).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(after < Duration::from_secs(5), "closed after {after:?}");
}

/// Writes `bytes` one at a time, 20 ms apart, until the peer is gone.
fn drip(mut w: tokio::net::tcp::OwnedWriteHalf, bytes: Vec<u8>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for b in bytes {
            if w.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

#[tokio::test]
async fn headers_dripped_a_byte_at_a_time_are_cut_off() {
    let server = start(short_timeouts()).await;
    let long_header = format!("X-Filler: {}\r\n", "a".repeat(2000));
    for head in [
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{long_header}\r\n"),
        // An upgrade that never finishes its request.
        format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{long_header}\r\n"
        ),
    ] {
        let (mut r, w) = TcpStream::connect(server.addr()).await.unwrap().into_split();
        let dripper = drip(w, head.into_bytes());
        let started = Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(WAIT, r.read(&mut buf)).await {
                Err(_) => panic!("a dripping client is still connected after {WAIT:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            }
        }
        let got = String::from_utf8_lossy(&got);
        assert!(!got.contains(" 200 ") && !got.contains(" 101 "), "{got}");
        assert!(started.elapsed() < Duration::from_secs(5), "closed after {:?}", started.elapsed());
        dripper.abort();
    }
}

#[tokio::test]
async fn an_upgraded_socket_that_never_says_hello_is_closed() {
    let server = start(short_timeouts()).await;
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let (got, after) = read_until_closed(&mut s).await;
    assert!(got.starts_with("HTTP/1.1 101"), "{got}");
    assert!(after < Duration::from_secs(5), "closed after {after:?}");
}

#[tokio::test]
async fn a_slow_body_gets_408_and_the_connection_closes() {
    let server = start(short_timeouts()).await;
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    s.write_all(
        b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"nick\"",
    )
    .await
    .unwrap();
    let (got, after) = read_until_closed(&mut s).await;
    let r = http::parse(got.as_bytes());
    assert_eq!(r.status, 408, "{got}");
    assert_eq!(r.json()["error"]["code"], "timeout", "{got}");
    assert!(after < Duration::from_secs(5), "closed after {after:?}");
}

#[tokio::test]
async fn health_answers_while_50_slow_connections_are_open() {
    let server = start_default().await;
    let mut held = Vec::new();
    for i in 0..50 {
        let mut s = TcpStream::connect(server.addr()).await.unwrap();
        if i % 2 == 0 {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHo").await.unwrap();
        }
        held.push(s);
    }
    let r = http::get(server.addr(), "/healthz", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (mut c, _) = Client::hello(&server, "alice").await;
    c.sync().await;
}

// ---- JSON errors -----------------------------------------------------------------------------

fn json_error(r: &http::Response, status: u16, code: &str) -> String {
    assert_eq!(r.status, status, "{}", r.body);
    assert!(r.header("content-type").is_some_and(|t| t.starts_with("application/json")), "{:?}", r.headers);
    let body = r.json();
    assert_eq!(body["error"]["code"], code, "{body}");
    body["error"]["message"].as_str().expect("a message").to_string()
}

#[tokio::test]
async fn bad_query_strings_and_paths_answer_the_json_error_form() {
    let server = start(auth_config()).await;
    let key = bearer(API_KEY);
    let auth = [("Authorization", key.as_str())];
    let m = json_error(&http::get(server.addr(), "/api/rooms/r/messages?limit=abc", &auth).await, 400, "invalid");
    assert!(m.contains("limit"), "{m}");
    let m = json_error(&http::get(server.addr(), "/api/rooms/r/messages?before=x", &auth).await, 400, "invalid");
    assert!(m.contains("before"), "{m}");
    json_error(&http::get(server.addr(), "/api/rooms/%FF/messages", &auth).await, 400, "invalid");
    json_error(&http::request(server.addr(), "PUT", "/api/rooms", &auth, Some("{}")).await, 405, "method_not_allowed");
    // The good request still works.
    assert_eq!(http::get(server.addr(), "/api/rooms/r/messages?limit=5", &auth).await.status, 200);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_too_large() {
    let server = start(auth_config()).await;
    let body = json!({"nick": "alice", "password": "x".repeat(3 * 1024 * 1024)}).to_string();
    let head = format!(
        "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let (mut r, mut w) = TcpStream::connect(server.addr()).await.unwrap().into_split();
    // The server may answer before reading it all: write on the side.
    let writer = tokio::spawn(async move {
        let _ = w.write_all(head.as_bytes()).await;
        let _ = w.write_all(body.as_bytes()).await;
        w
    });
    let mut got = Vec::new();
    let _ = tokio::time::timeout(WAIT, r.read_to_end(&mut got)).await.expect("an answer in time");
    let _ = writer.await;
    json_error(&http::parse(&got), 413, "too_large");
}

// ---- host names ------------------------------------------------------------------------------

async fn with_host(addr: SocketAddr, path: &str, host: &str) -> http::Response {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    http::parse(&raw)
}

#[tokio::test]
async fn with_allowed_hosts_other_host_names_get_421() {
    let mut config = test_config();
    config.server.allowed_hosts = vec!["chat.example.org".into(), "127.0.0.1".into()];
    let server = start(config).await;
    let addr = server.addr();
    json_error(&with_host(addr, "/", "evil.example").await, 421, "misdirected");
    json_error(&with_host(addr, "/api/rooms", "evil.example:8080").await, 421, "misdirected");
    json_error(&with_host(addr, "/", "chat.example.org.evil.example").await, 421, "misdirected");
    assert_eq!(with_host(addr, "/", "chat.example.org").await.status, 200);
    assert_eq!(with_host(addr, "/", "CHAT.example.org:443").await.status, 200);
    // Health checks answer whatever the host.
    assert_eq!(with_host(addr, "/healthz", "10.1.2.3:8080").await.status, 200);
    // The WebSocket too: a rebinding page cannot open it.
    match ws_with(&server, &[("Host", "evil.example")]).await {
        Err((status, body)) => assert_eq!((status, &body["error"]["code"]), (421, &json!("misdirected")), "{body}"),
        Ok(_) => panic!("a WebSocket for another host name"),
    }
    let (mut c, _) = Client::hello(&server, "alice").await;
    c.sync().await;
}

// ---- the authorization hook --------------------------------------------------------------

#[tokio::test]
async fn the_hook_does_not_follow_redirects() {
    // `/hook` redirects to `/allow`, which allows; the redirect itself even
    // carries an allowing body.
    let followed = Arc::new(AtomicUsize::new(0));
    let counter = followed.clone();
    let allow = move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { axum::Json(json!({"allow": true})) }
    };
    let hook = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(|| async {
                (
                    axum::http::StatusCode::FOUND,
                    [(axum::http::header::LOCATION, "/allow")],
                    axum::Json(json!({"allow": true})),
                )
                    .into_response()
            }),
        )
        .route("/allow", axum::routing::get(allow.clone()).post(allow));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, hook).await.unwrap() });

    let mut config = test_config();
    config.auth.hook_url = format!("http://{hook_addr}/hook");
    let server = start(config).await;
    let (mut alice, _) = Client::hello(&server, "alice").await;
    alice.send(json!({"type": "join", "room": "r", "id": 1})).await;
    assert_eq!(alice.expect_error("forbidden").await["id"], 1);
    assert_eq!(followed.load(Ordering::SeqCst), 0, "the redirect was followed");
}

// ---- transcripts -------------------------------------------------------------------------------

#[tokio::test]
async fn transcripts_in_html_and_text_carry_csp_and_nosniff() {
    let server = start(auth_config()).await;
    let mut alice = Client::in_rooms(&server, "alice", &["r"]).await;
    alice.say("r", "<script>alert(1)</script>").await;
    let key = bearer(API_KEY);
    for format in ["html", "text"] {
        let r =
            http::get(server.addr(), &format!("/api/rooms/r/transcript?format={format}"), &[("Authorization", &key)])
                .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let csp = r.header("content-security-policy").unwrap_or_else(|| panic!("{format}: no CSP: {:?}", r.headers));
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{format}");
        if format == "html" {
            assert!(!r.body.contains("<script>"), "{}", r.body);
        }
    }
}

/// The WebSocket handshake (our own since issue 13): what is not one gets
/// its status and the API's error body, and the server goes on.
#[tokio::test]
async fn a_request_that_is_not_a_websocket_handshake_is_refused_with_its_reason() {
    let server = start(test_config()).await;
    let addr = server.addr();
    let r = http::get(addr, "/ws", &[]).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (426, Some("invalid")), "{}", r.body);
    let upgrade = [("Upgrade", "websocket"), ("Connection", "Upgrade")];
    let with = |more: &[(&'static str, &'static str)]| [upgrade.as_slice(), more].concat();
    let r = http::get(
        addr,
        "/ws",
        &with(&[("Sec-WebSocket-Version", "8"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")]),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.json()["error"]["message"].as_str().is_some_and(|m| m.contains("13")), "{}", r.body);
    let r = http::get(addr, "/ws", &with(&[("Sec-WebSocket-Version", "13")])).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.json()["error"]["message"].as_str().is_some_and(|m| m.contains("Sec-WebSocket-Key")), "{}", r.body);
    let r = http::request(addr, "POST", "/ws", &with(&[("Sec-WebSocket-Version", "13")]), Some("{}")).await;
    assert_eq!(r.status, 405, "{}", r.body);
    // A real client still connects.
    let mut ws = ws_with(&server, &[]).await.expect("a WebSocket");
    ws.send(Message::text(json!({"type": "hello", "nick": "alice"}).to_string())).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
}
