//! Mentions and notifications (issue 15, PROTOCOL.md "Mentions and
//! notifications"): `mentions` in frames and history; the decision (who is
//! notified: DMs, mentions, settings, away, muted rooms, several sessions);
//! the site webhook as a local receiver sees it (signature, payload, retry
//! after 503, a hanging receiver, a 50 MB answer, at-least-once across
//! `kill -9` of the real binary); a cluster of two nodes notifies once.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::{Client, auth_config, backends, bearer, claims, site_token};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const SECRET: &str = "webhook-secret-for-tests";

/// What the receiver does with a call.
const OK: u32 = 0;
const FAIL_503: u32 = 1;
const HANG: u32 = 2;
const HUGE: u32 = 3;

struct Call {
    signature: String,
    events: Vec<Value>,
    /// How the receiver answered it.
    answered: u32,
}

/// A local webhook receiver: checks nothing itself, hands every call over.
struct Receiver {
    url: String,
    calls: mpsc::UnboundedReceiver<Call>,
    mode: Arc<AtomicU32>,
}

#[derive(Clone)]
struct St {
    tx: mpsc::UnboundedSender<Call>,
    mode: Arc<AtomicU32>,
    fail_first: Arc<AtomicU32>,
}

async fn hook(State(st): State<St>, headers: HeaderMap, body: Bytes) -> Response {
    let signature = headers.get("x-chat-signature").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let want: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(signature, format!("sha256={want}"), "the signature is the HMAC-SHA256 of the raw body");
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
    let v: Value = serde_json::from_slice(&body).expect("JSON body");
    let events = v["events"].as_array().expect("events").clone();
    let mode = if st.fail_first.load(Ordering::SeqCst) > 0 {
        st.fail_first.fetch_sub(1, Ordering::SeqCst);
        FAIL_503
    } else {
        st.mode.load(Ordering::SeqCst)
    };
    let _ = st.tx.send(Call { signature, events, answered: mode });
    match mode {
        FAIL_503 => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        HANG => std::future::pending().await,
        HUGE => {
            // 50 MB announced and trickling: the server must not read it.
            let chunk = Bytes::from(vec![b'x'; 1 << 20]);
            let stream = futures_util::stream::iter((0..50).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
            Response::builder()
                .header("content-length", (50u64 << 20).to_string())
                .body(Body::from_stream(stream))
                .unwrap()
        }
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}

impl Receiver {
    async fn start(mode: u32, fail_first: u32) -> Receiver {
        Self::start_on(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(), mode, fail_first)
    }

    fn start_on(listener: tokio::net::TcpListener, mode: u32, fail_first: u32) -> Receiver {
        let (tx, calls) = mpsc::unbounded_channel();
        let mode = Arc::new(AtomicU32::new(mode));
        let fail_first = Arc::new(AtomicU32::new(fail_first));
        let st = St { tx, mode: mode.clone(), fail_first };
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/hook", axum::routing::post(hook)).with_state(st);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url: format!("http://{addr}/hook"), calls, mode }
    }

    async fn next(&mut self) -> Call {
        tokio::time::timeout(Duration::from_secs(20), self.calls.recv()).await.expect("a webhook call").unwrap()
    }

    /// Every event of calls up to (and including) the one holding `last`'s
    /// id, deduplicated by id (a receiver's duty: delivery is at least once).
    async fn events_until(&mut self, last: &str) -> Vec<Value> {
        let mut seen: Vec<Value> = Vec::new();
        loop {
            let call = self.next().await;
            let done = call.events.iter().any(|e| e["id"] == last);
            for e in call.events {
                if !seen.iter().any(|s| s["id"] == e["id"]) {
                    seen.push(e);
                }
            }
            if done {
                return seen;
            }
        }
    }
}

fn notify_config(url: &str) -> chat::Config {
    let mut c = auth_config();
    c.notify.webhook_url = url.into();
    c.notify.webhook_secret = chat::config::Secret::new(SECRET);
    c.notify.retry_base = Duration::from_millis(50);
    c.notify.retry_max = Duration::from_millis(400);
    c.notify.poll_interval = Duration::from_millis(200);
    c.limits.rate_per_sec = 1_000_000;
    c.limits.burst = 1_000_000;
    c
}

async fn site(server: &chat::RunningServer, nick: &str) -> (Client, Value) {
    Client::with_token(server, &site_token(&claims(&format!("sub-{nick}"), nick))).await
}

/// A site user who has been here (owns the nick) and left.
async fn gone(server: &chat::RunningServer, nick: &str, settings: Option<Value>) {
    let (mut c, welcome) = site(server, nick).await;
    if let Some(s) = settings {
        let token = welcome["token"].as_str().unwrap();
        let r = common::http::patch(
            server.addr(),
            "/api/me",
            &[("authorization", &bearer(token))],
            &json!({"settings": s}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.json());
    }
    c.close().await;
    // Its quit is seen by the server before the next message is decided.
    let (mut probe, _) = Client::hello(server, &format!("probe{nick}")).await;
    probe.send(json!({"type":"watch","nicks":[nick]})).await;
    let status = probe.expect("status").await;
    assert_eq!(status["online"], false, "{status}");
    probe.close().await;
}

/// (kind, user nick, message text) of each event.
fn summary(events: &[Value]) -> Vec<(String, String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["user"]["nick"].as_str().unwrap_or_default().to_owned(),
                e["message"]["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn s(kind: &str, nick: &str, text: &str) -> (String, String, String) {
    (kind.into(), nick.into(), text.into())
}

#[tokio::test]
async fn mentions_in_message_ack_and_history() {
    let server = common::start(common::test_config()).await;
    let mut alice = Client::in_rooms(&server, "alice", &["lobby"]).await;
    let mut bob = Client::in_rooms(&server, "Bob", &["lobby"]).await;
    alice.expect("presence").await;
    alice
        .send(json!({"type":"say","room":"lobby","text":"hey @BOB and @nobody, mail x@bob.org; @alice!","id":1}))
        .await;
    let ack = alice.expect("ack").await;
    assert_eq!(ack["message"]["mentions"], json!(["Bob", "alice"]), "{ack}");
    let got = bob.expect("message").await;
    assert_eq!(got["mentions"], json!(["Bob", "alice"]), "{got}");
    bob.say("lobby", "no at sign here").await;
    let plain = alice.expect("message").await;
    assert!(plain.get("mentions").is_none(), "no mentions, no field: {plain}");
    let h = alice.request(json!({"type":"history","room":"lobby"})).await;
    let msgs = h["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["mentions"], json!(["Bob", "alice"]), "{h}");
    assert!(msgs[1].get("mentions").is_none(), "{h}");
    server.stop().await;
}

#[tokio::test]
async fn webhook_events_follow_the_rules_on_every_backend() {
    for backend in backends::all("webhook_events_follow_the_rules_on_every_backend").await {
        let mut receiver = Receiver::start(OK, 1).await;
        let mut config = notify_config(&receiver.url);
        config.database.url = backend.url.clone();
        let server = common::start(config).await;
        gone(&server, "bob", Some(json!({"muted_rooms": ["Quiet"]}))).await;
        gone(&server, "erin", Some(json!({"notify": "none"}))).await;
        gone(&server, "zed", None).await;
        let (mut alice, _) = site(&server, "alice").await;
        let (mut carol, _) = site(&server, "carol").await;
        let (_dave, _) = site(&server, "dave").await;
        let (mut frank1, _) = site(&server, "frank").await;
        let (_frank2, _) = site(&server, "frank").await;
        carol.request(json!({"type":"away","away":true,"id":"a"})).await;
        frank1.request(json!({"type":"away","away":true,"id":"a"})).await;
        alice.join("lobby").await;
        alice.join("quiet").await;
        alice.say_to("bob", "one").await;
        alice.say("lobby", "hi @bob @carol @dave @frank @erin @alice @ghost").await;
        alice.say("quiet", "@bob in quiet").await;
        alice.say_to("erin", "two").await;
        alice.say_to("frank", "three").await;
        let last = alice.say_to("zed", "end").await;
        let end_id = format!("{}:s-sub-zed", last["message"]["msg_id"].as_str().unwrap());
        // The first call was answered 503: the same events come again.
        let first = receiver.next().await;
        let again = receiver.next().await;
        let ids = |c: &Call| c.events.iter().map(|e| e["id"].clone()).collect::<Vec<_>>();
        assert!(ids(&again).starts_with(&ids(&first)), "retried whole: {:?} then {:?}", ids(&first), ids(&again));
        assert!(first.signature.starts_with("sha256="));
        let mut events = again.events.clone();
        if !events.iter().any(|e| e["id"] == end_id.as_str()) {
            events.extend(receiver.events_until(&end_id).await);
        }
        let mention = "hi @bob @carol @dave @frank @erin @alice @ghost";
        assert_eq!(
            summary(&events),
            [
                s("dm", "bob", "one"),
                s("mention", "bob", mention),
                s("mention", "carol", mention),
                s("mention", "frank", mention),
                s("dm", "frank", "three"),
                s("dm", "zed", "end"),
            ],
            "{backend:?}",
            backend = backend.kind
        );
        let e = &events[1];
        assert_eq!(e["user"], json!({"nick":"bob","sub":"sub-bob"}));
        assert_eq!(e["message"]["room"], "lobby");
        assert_eq!(e["message"]["from"], "alice");
        assert_eq!(e["message"]["mentions"], json!(["bob", "carol", "dave", "frank", "erin", "alice"]));
        assert_eq!(e["id"], format!("{}:s-sub-bob", e["message"]["msg_id"].as_str().unwrap()));
        assert!(e["message"].get("sender_id").is_none());
        server.stop().await;
    }
}

#[tokio::test]
async fn webhook_messages_stream_every_message_in_seq_order() {
    let mut receiver = Receiver::start(OK, 0).await;
    let mut config = notify_config(&receiver.url);
    config.notify.webhook_messages = true;
    config.notify.webhook_batch = 7;
    let server = common::start(config).await;
    let mut alice = Client::in_rooms(&server, "alice", &["lobby", "other"]).await;
    for i in 1..=20 {
        alice.say(if i % 2 == 0 { "lobby" } else { "other" }, &format!("m{i}")).await;
    }
    let last = alice.say("lobby", "last").await;
    let last_id = format!("m:{}", last["message"]["msg_id"].as_str().unwrap());
    let events = receiver.events_until(&last_id).await;
    assert!(events.iter().all(|e| e["kind"] == "message"), "nobody is away: only the stream");
    for room in ["lobby", "other"] {
        let seqs: Vec<u64> = events
            .iter()
            .filter(|e| e["message"]["room"] == room)
            .map(|e| e["message"]["seq"].as_u64().unwrap())
            .collect();
        let want: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, want, "{room}: every message, in seq order");
    }
    assert_eq!(events.len(), 21);
    server.stop().await;
}

#[tokio::test]
async fn a_full_decision_queue_loses_nothing() {
    let mut receiver = Receiver::start(OK, 0).await;
    let mut config = notify_config(&receiver.url);
    config.notify.webhook_messages = true;
    config.notify.queue = 1;
    let server = common::start(config).await;
    let mut alice = Client::in_rooms(&server, "alice", &["lobby"]).await;
    // Sent without waiting: many batches reach a queue of one.
    for i in 0..200 {
        alice.send(json!({"type":"say","room":"lobby","text":format!("m{i}"),"id":i})).await;
    }
    let mut last = Value::Null;
    for _ in 0..200 {
        last = alice.expect("ack").await;
    }
    let last_id = format!("m:{}", last["message"]["msg_id"].as_str().unwrap());
    let mut events = receiver.events_until(&last_id).await;
    while events.len() < 200 {
        // The catch-up may follow the newest message.
        events.extend(receiver.next().await.events);
        events.sort_by_key(|e| e["id"].as_str().unwrap().to_owned());
        events.dedup_by_key(|e| e["id"].clone());
    }
    let mut seqs: Vec<u64> = events.iter().map(|e| e["message"]["seq"].as_u64().unwrap()).collect();
    seqs.sort();
    assert_eq!(seqs, (1..=200).collect::<Vec<u64>>(), "every message, once");
    server.stop().await;
}

#[tokio::test]
async fn a_hanging_or_huge_answering_receiver_blocks_nothing() {
    let mut receiver = Receiver::start(HANG, 0).await;
    let mut config = notify_config(&receiver.url);
    config.notify.webhook_timeout = Duration::from_millis(300);
    let server = common::start(config).await;
    gone(&server, "bob", None).await;
    let (mut alice, _) = site(&server, "alice").await;
    let (mut carol, _) = site(&server, "carol").await;
    let first = alice.say_to("bob", "while the receiver hangs").await;
    let id = format!("{}:s-sub-bob", first["message"]["msg_id"].as_str().unwrap());
    // Delivery goes on while the webhook call hangs.
    for i in 0..5 {
        let t = std::time::Instant::now();
        alice.say_to("carol", &format!("n{i}")).await;
        assert_eq!(carol.expect("message").await["text"], format!("n{i}"));
        assert!(t.elapsed() < Duration::from_secs(2));
    }
    // The hung call times out and the same event is sent again.
    assert_eq!(receiver.next().await.events[0]["id"], id.as_str());
    assert_eq!(receiver.next().await.events[0]["id"], id.as_str());
    // A 50 MB answer is not read: the batch counts as delivered at once.
    receiver.mode.store(HUGE, Ordering::SeqCst);
    while receiver.next().await.answered != HUGE {}
    let after = alice.say_to("bob", "after the big answer").await;
    let after = format!("{}:s-sub-bob", after["message"]["msg_id"].as_str().unwrap());
    let call = receiver.next().await;
    let ids: Vec<&Value> = call.events.iter().map(|e| &e["id"]).collect();
    assert_eq!(ids, [&json!(after)], "the first event was delivered by the call answered with 50 MB");
    server.stop().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn spawn_server(db: &str, hook: &str) -> (tokio::process::Child, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat"))
        .args(["serve", "--listen", &addr.to_string()])
        .env("CHAT_DATABASE__URL", db)
        .env("CHAT_ROOMS__AUTO_JOIN", "[]")
        .env("CHAT_AUTH__TOKEN_SECRET", common::TOKEN_SECRET)
        .env("CHAT_NOTIFY__WEBHOOK_URL", hook)
        .env("CHAT_NOTIFY__WEBHOOK_SECRET", SECRET)
        .env("CHAT_NOTIFY__RETRY_BASE", "50ms")
        .env("CHAT_NOTIFY__RETRY_MAX", "300ms")
        .env("CHAT_NOTIFY__POLL_INTERVAL", "200ms")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn chat");
    common::wait_healthy(addr).await;
    (child, addr)
}

async fn ws_site(addr: SocketAddr, nick: &str) -> Client {
    let mut c = Client::connect_url(&format!("ws://{addr}/ws")).await;
    c.send(json!({"type":"hello","token": site_token(&claims(&format!("sub-{nick}"), nick))})).await;
    c.expect("welcome").await;
    c.nick = nick.into();
    c
}

#[tokio::test]
async fn events_survive_kill_9_at_least_once() {
    let mut receiver = Receiver::start(FAIL_503, 0).await;
    let db = format!("sqlite://{}", common::fresh_db_path().display());
    let (mut child, addr) = spawn_server(&db, &receiver.url).await;
    let mut bob = ws_site(addr, "bob").await;
    bob.close().await;
    let mut alice = ws_site(addr, "alice").await;
    alice.send(json!({"type":"watch","nicks":["bob"]})).await;
    while alice.expect("status").await["online"] == true {}
    // One event in the outbox (the receiver is down: 503), then one sent
    // right before the crash (maybe not even decided yet).
    let one = alice.say_to("bob", "before the crash").await;
    let one = format!("{}:s-sub-bob", one["message"]["msg_id"].as_str().unwrap());
    let call = receiver.next().await;
    assert_eq!(call.events[0]["id"], one.as_str());
    let two = alice.say_to("bob", "right before the crash").await;
    let two = format!("{}:s-sub-bob", two["message"]["msg_id"].as_str().unwrap());
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    // Drain what the dead server sent, then the receiver is back.
    while receiver.calls.try_recv().is_ok() {}
    receiver.mode.store(OK, Ordering::SeqCst);
    let (mut child, _addr) = spawn_server(&db, &receiver.url).await;
    let mut events = receiver.events_until(&two).await;
    if !events.iter().any(|e| e["id"] == one.as_str()) {
        panic!("the first event was lost: {events:?}");
    }
    events.retain(|e| e["kind"] == "dm");
    assert_eq!(summary(&events), [s("dm", "bob", "before the crash"), s("dm", "bob", "right before the crash")]);
    child.start_kill().unwrap();
    let _ = child.wait().await;
}

#[tokio::test]
async fn a_cluster_notifies_once() {
    let receiver_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", receiver_listener.local_addr().unwrap());
    let Some(cluster) = common::cluster::Cluster::start("a_cluster_notifies_once", 2, |c| {
        let n = notify_config(&url);
        c.notify = n.notify;
        c.auth = n.auth;
    })
    .await
    else {
        return;
    };
    let mut receiver = Receiver::start_on(receiver_listener, OK, 0);
    let mut bob = cluster.site_user(2, &claims("sub-bob", "bob")).await;
    bob.close().await;
    let mut alice = cluster.site_user(1, &claims("sub-alice", "alice")).await;
    let mut carol = cluster.site_user(2, &claims("sub-carol", "carol")).await;
    alice.send(json!({"type":"watch","nicks":["bob"]})).await;
    while alice.expect("status").await["online"] == true {}
    alice.join("lobby").await;
    carol.join("lobby").await;
    alice.expect("presence").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let a = alice.say("lobby", &format!("@bob a{i}")).await;
        ids.push(format!("{}:s-sub-bob", a["message"]["msg_id"].as_str().unwrap()));
        assert_eq!(carol.expect("message").await["msg_id"], a["message"]["msg_id"]);
        let c = carol.say_to("bob", &format!("c{i}")).await;
        ids.push(format!("{}:s-sub-bob", c["message"]["msg_id"].as_str().unwrap()));
    }
    let last = ids.last().unwrap().clone();
    // Every call's events, duplicates kept: there must be none.
    let mut all: Vec<Value> = Vec::new();
    while !all.iter().any(|e| e["id"] == last.as_str())
        || !ids.iter().all(|id| all.iter().any(|e| e["id"] == id.as_str()))
    {
        all.extend(receiver.next().await.events);
    }
    // Anything else still on its way would be a second copy.
    tokio::time::sleep(Duration::from_secs(2)).await; // waiting for an event that must not come
    while let Ok(c) = receiver.calls.try_recv() {
        all.extend(c.events);
    }
    for id in &ids {
        assert_eq!(all.iter().filter(|e| e["id"] == id.as_str()).count(), 1, "{id} once: {all:?}");
    }
    assert_eq!(all.len(), ids.len());
    cluster.finish().await;
}

// ---- Web Push ------------------------------------------------------------------------

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;

/// A browser's side of a push subscription: its keys, and a local push
/// service that hands over every push it gets.
struct Browser {
    secret: p256::SecretKey,
    auth: [u8; 16],
    endpoint: String,
    pushes: mpsc::UnboundedReceiver<(HeaderMap, Bytes)>,
    /// The push service's answer.
    status: Arc<AtomicU32>,
}

#[derive(Clone)]
struct PushSt {
    tx: mpsc::UnboundedSender<(HeaderMap, Bytes)>,
    status: Arc<AtomicU32>,
}

async fn push_endpoint(State(st): State<PushSt>, headers: HeaderMap, body: Bytes) -> Response {
    let _ = st.tx.send((headers, body));
    StatusCode::from_u16(st.status.load(Ordering::SeqCst) as u16).unwrap().into_response()
}

impl Browser {
    async fn start() -> Browser {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, pushes) = mpsc::unbounded_channel();
        let status = Arc::new(AtomicU32::new(201));
        let app = axum::Router::new()
            .route("/push/{id}", axum::routing::post(push_endpoint))
            .with_state(PushSt { tx, status: status.clone() });
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut raw = [0u8; 32];
        raw[0] = 7;
        raw[31] = 42;
        let mut auth = [0u8; 16];
        auth[3] = 9;
        Browser {
            secret: p256::SecretKey::from_slice(&raw).unwrap(),
            auth,
            endpoint: format!("http://{addr}/push/abc"),
            pushes,
            status,
        }
    }

    fn subscription(&self) -> Value {
        json!({"endpoint": self.endpoint, "keys": {
            "p256dh": B64.encode(self.secret.public_key().to_encoded_point(false).as_bytes()),
            "auth": B64.encode(self.auth)}, "expirationTime": null})
    }

    /// The next push, checked (VAPID against `server_key`) and decrypted
    /// as a browser does (RFC 8291).
    async fn next(&mut self, server_key: &str) -> Value {
        let (headers, body) =
            tokio::time::timeout(Duration::from_secs(20), self.pushes.recv()).await.expect("a push").unwrap();
        assert_eq!(headers.get("content-encoding").unwrap(), "aes128gcm");
        assert_eq!(headers.get("ttl").unwrap(), "86400");
        // VAPID (RFC 8292): `vapid t=<JWT>, k=<key>`, ES256 by the server's key.
        let authz = headers.get("authorization").unwrap().to_str().unwrap();
        let rest = authz.strip_prefix("vapid t=").expect("vapid scheme");
        let (jwt, k) = rest.split_once(", k=").unwrap();
        assert_eq!(k, server_key);
        let parts: Vec<&str> = jwt.split('.').collect();
        let header: Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        let claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        let origin = self.endpoint.split("/push").next().unwrap();
        assert_eq!(claims["aud"], origin);
        assert_eq!(claims["sub"], "mailto:ops@example.org");
        assert!(claims["exp"].as_u64().unwrap() > common::unix_now());
        let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&B64.decode(server_key).unwrap()).unwrap();
        let sig = p256::ecdsa::Signature::from_slice(&B64.decode(parts[2]).unwrap()).unwrap();
        use p256::ecdsa::signature::Verifier as _;
        vk.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .expect("the JWT is signed by the server's key");
        // aes128gcm (RFC 8188 header) with the RFC 8291 keys.
        let salt = &body[..16];
        let idlen = body[20] as usize;
        let as_public = p256::PublicKey::from_sec1_bytes(&body[21..21 + idlen]).unwrap();
        let ciphertext = &body[21 + idlen..];
        let shared = p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), as_public.as_affine());
        let mut info = b"WebPush: info\0".to_vec();
        info.extend_from_slice(self.secret.public_key().to_encoded_point(false).as_bytes());
        info.extend_from_slice(&body[21..21 + idlen]);
        let mut ikm = [0u8; 32];
        hkdf::Hkdf::<sha2::Sha256>::new(Some(&self.auth), shared.raw_secret_bytes()).expand(&info, &mut ikm).unwrap();
        let prk = hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), &ikm);
        let (mut cek, mut nonce) = ([0u8; 16], [0u8; 12]);
        prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek).unwrap();
        prk.expand(b"Content-Encoding: nonce\0", &mut nonce).unwrap();
        use aes_gcm::aead::{Aead, KeyInit as _};
        let cipher = aes_gcm::Aes128Gcm::new_from_slice(&cek).unwrap();
        let mut plain = cipher.decrypt(aes_gcm::Nonce::from_slice(&nonce), ciphertext).expect("decrypts");
        while plain.last() == Some(&0) {
            plain.pop();
        }
        assert_eq!(plain.pop(), Some(2), "the last record's delimiter");
        serde_json::from_slice(&plain).expect("a JSON payload")
    }
}

fn push_config() -> chat::Config {
    let mut c = auth_config();
    c.notify.allow_insecure_push = true;
    c.notify.vapid_subject = "mailto:ops@example.org".into();
    c.notify.retry_base = Duration::from_millis(50);
    c.notify.poll_interval = Duration::from_millis(200);
    c
}

#[tokio::test]
async fn web_push_is_encrypted_for_the_browser_and_signed_with_vapid() {
    let server = common::start(push_config()).await;
    let addr = server.addr();
    let key = common::http::get(addr, "/api/push/key", &[]).await;
    assert_eq!(key.status, 200);
    let key = key.json()["public_key"].as_str().unwrap().to_owned();
    assert_eq!(B64.decode(&key).unwrap().len(), 65);
    let mut browser = Browser::start().await;
    let (mut bob, welcome) = site(&server, "bob").await;
    let token = bearer(welcome["token"].as_str().unwrap());
    let auth = [("authorization", token.as_str())];
    let r = common::http::post(addr, "/api/me/push", &auth, &browser.subscription()).await;
    assert_eq!(r.status, 201, "{}", r.json());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let r = common::http::patch(addr, "/api/me", &auth, &json!({"settings": {"muted_rooms": ["quiet"]}})).await;
    assert_eq!(r.status, 200);
    bob.close().await;
    let (mut alice, _) = site(&server, "alice").await;
    alice.send(json!({"type":"watch","nicks":["bob"]})).await;
    while alice.expect("status").await["online"] == true {}
    alice.join("lobby").await;
    alice.join("quiet").await;
    let dm = alice.say_to("bob", "psst").await;
    let got = browser.next(&key).await;
    assert_eq!(
        got,
        json!({"title":"alice","body":"psst","with":"alice","msg_id": dm["message"]["msg_id"],"url":"/?dm=alice"})
    );
    alice.say("quiet", "@bob muted here").await;
    let m = alice.say("lobby", "look @bob").await;
    let got = browser.next(&key).await;
    assert_eq!(
        got,
        json!({"title":"alice mentioned you in lobby","body":"look @bob","room":"lobby",
               "msg_id": m["message"]["msg_id"],"url":"/?room=lobby"}),
        "the muted room's mention was not pushed"
    );
    // The push service says the subscription is gone: it is dropped.
    browser.status.store(410, Ordering::SeqCst);
    alice.say_to("bob", "anyone?").await;
    browser.next(&key).await;
    let mut gone = false;
    for _ in 0..100 {
        let r = common::http::delete(addr, &format!("/api/me/push/{id}"), &auth).await;
        if r.status == 404 {
            gone = true;
            break;
        }
        assert_eq!(r.status, 204, "only while the push is under way");
        // The removal follows the 410 answer the test cannot await.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "a 410 drops the subscription");
    server.stop().await;
}

#[tokio::test]
async fn push_subscriptions_are_checked() {
    let mut config = auth_config();
    config.notify.vapid_subject = "mailto:ops@example.org".into();
    let server = common::start(config).await;
    let addr = server.addr();
    let (mut bob, welcome) = site(&server, "bob").await;
    let token = bearer(welcome["token"].as_str().unwrap());
    let auth = [("authorization", token.as_str())];
    let browser = Browser::start().await;
    let good = browser.subscription();
    let with = |endpoint: &str| {
        let mut s = good.clone();
        s["endpoint"] = json!(endpoint);
        s
    };
    let r = common::http::post(addr, "/api/me/push", &[], &good).await;
    assert_eq!(r.status, 401);
    let api = bearer(common::API_KEY);
    let r = common::http::post(addr, "/api/me/push", &[("authorization", api.as_str())], &good).await;
    assert_eq!(r.status, 403);
    // A guest has no push subscriptions (its id is never used again).
    let (_guest, welcome) = Client::hello(&server, "passerby").await;
    let guest = bearer(welcome["token"].as_str().unwrap());
    let r = common::http::post(addr, "/api/me/push", &[("authorization", guest.as_str())], &good).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("guests"), "{}", r.body);
    let cases: Vec<(Value, &str)> = vec![
        (with("not a url"), "not a URL"),
        (with("ftp://push.example.org/x"), "https://"),
        (with(&browser.endpoint), "https://"),
        (with("https://127.0.0.1/x"), "loopback"),
        (with("https://localhost:1/x"), "loopback"),
        (with("https://10.0.0.1/x"), "private"),
        (with("https://[::1]/x"), "loopback"),
        (with(&format!("https://push.example.org/{}", "x".repeat(3000))), "longer"),
        (
            json!({"endpoint": "https://push.example.org/x", "keys": {"p256dh": "abc", "auth": good["keys"]["auth"]}}),
            "p256dh",
        ),
        (
            json!({"endpoint": "https://push.example.org/x", "keys": {"p256dh": B64.encode([4u8; 65]), "auth": good["keys"]["auth"]}}),
            "p256dh",
        ),
        (
            json!({"endpoint": "https://push.example.org/x", "keys": {"p256dh": good["keys"]["p256dh"], "auth": "AAAA"}}),
            "auth",
        ),
        (json!({"endpoint": "https://push.example.org/x"}), "keys"),
    ];
    for (body, says) in cases {
        let r = common::http::post(addr, "/api/me/push", &auth, &body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.json());
        assert_eq!(r.json()["error"]["code"], "invalid");
        assert!(r.json()["error"]["message"].as_str().unwrap().contains(says), "{body}: {}", r.json());
    }
    let r = common::http::delete(addr, "/api/me/push/0123456789abcdef0123456789abcdef", &auth).await;
    assert_eq!(r.status, 404);
    // The session is unharmed.
    assert_eq!(bob.request(json!({"type":"ping","id":1})).await["type"], "pong");
    server.stop().await;
}

/// A mention in a closed room (keyed or secret) or in one that bans the
/// user notifies nobody who may not read the room; in an open room it does.
#[tokio::test]
async fn mentions_reach_only_those_who_may_read_the_room() {
    let mut receiver = Receiver::start(OK, 0).await;
    let server = common::start(notify_config(&receiver.url)).await;
    gone(&server, "bob", None).await;
    gone(&server, "zed", None).await;
    let (mut alice, _) = site(&server, "alice").await;
    for (room, set) in
        [("den", json!({"key": "sesame"})), ("vault", json!({"secret": true})), ("pit", json!({"ban": ["bob"]}))]
    {
        alice.join(room).await;
        alice.send(json!({"type": "mode", "room": room, "set": set, "id": room})).await;
        alice.expect("mode").await;
        alice.expect_json(json!({"type": "ack", "id": room})).await;
        alice.say(room, &format!("@bob in {room}")).await;
    }
    alice.join("lobby").await;
    alice.say("lobby", "@bob in lobby").await;
    let last = alice.say_to("zed", "end").await;
    let end_id = format!("{}:s-sub-zed", last["message"]["msg_id"].as_str().unwrap());
    let events = receiver.events_until(&end_id).await;
    assert_eq!(summary(&events), [s("mention", "bob", "@bob in lobby"), s("dm", "zed", "end")]);
    server.stop().await;
}
