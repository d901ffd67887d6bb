//! The connection's edges: WebSocket protocol violations close with their
//! status code (1002, 1007), a slow reader gets its 1013 close frame even
//! when it reads late, and history pages are capped in bytes.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{WebSocketStream, client_async};

/// A WebSocket whose raw TCP stream the test can write to, identified as
/// `nick` (its `welcome` consumed) when `nick` is given.
async fn raw_client(server: &chat::RunningServer, nick: Option<&str>) -> WebSocketStream<TcpStream> {
    let tcp = TcpStream::connect(server.addr()).await.unwrap();
    let (mut ws, _) = client_async(server.ws_url(), tcp).await.expect("upgrade");
    if let Some(nick) = nick {
        use futures_util::SinkExt;
        ws.send(Message::text(json!({"type": "hello", "nick": nick}).to_string())).await.unwrap();
        match next(&mut ws).await {
            Message::Text(t) => assert!(t.contains("\"welcome\""), "{t}"),
            other => panic!("expected welcome, got {other:?}"),
        }
    }
    ws
}

async fn next(ws: &mut WebSocketStream<TcpStream>) -> Message {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("no frame in time") {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(m)) => return m,
            other => panic!("expected a frame, got {other:?}"),
        }
    }
}

/// A client frame as bytes: `first` is FIN, RSV and opcode; `masked`
/// says whether it carries a (zero) mask, as clients must.
fn frame(first: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut f = vec![first, payload.len() as u8 | if masked { 0x80 } else { 0 }];
    if masked {
        f.extend_from_slice(&[0, 0, 0, 0]); // a zero mask leaves the payload as is
    }
    f.extend_from_slice(payload);
    f
}

/// Writes `bytes` under the WebSocket and expects a close frame with `code`.
async fn violation_closes_with(server: &chat::RunningServer, nick: Option<&str>, bytes: &[u8], code: u16) {
    let mut ws = raw_client(server, nick).await;
    ws.get_mut().write_all(bytes).await.unwrap();
    match next(&mut ws).await {
        Message::Close(Some(f)) => assert_eq!(u16::from(f.code), code, "{bytes:02x?}: {f:?}"),
        other => panic!("{bytes:02x?}: expected close {code}, got {other:?}"),
    }
}

#[tokio::test]
async fn protocol_violations_close_with_1002() {
    let server = start_default().await;
    let ping = br#"{"type":"ping"}"#;
    for nick in [None, Some("alice")] {
        // An unmasked client frame.
        violation_closes_with(&server, nick, &frame(0x81, false, ping), 1002).await;
        // RSV1 set without an extension.
        violation_closes_with(&server, nick, &frame(0xC1, true, ping), 1002).await;
        // Reserved data opcode 0x3, and reserved control opcode 0xB.
        violation_closes_with(&server, nick, &frame(0x83, true, ping), 1002).await;
        violation_closes_with(&server, nick, &frame(0x8B, true, b""), 1002).await;
        // A continuation frame with nothing to continue.
        violation_closes_with(&server, nick, &frame(0x80, true, ping), 1002).await;
    }
    // The server is fine: a well-behaved client chats on.
    let (mut bob, _) = Client::hello(&server, "bob").await;
    bob.sync().await;
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_closes_with_1007() {
    let server = start_default().await;
    for nick in [None, Some("alice")] {
        violation_closes_with(&server, nick, &frame(0x81, true, b"{\"type\":\"\xff\xfe\"}"), 1007).await;
    }
}

/// A reader whose queue overflowed gets its 1013 close frame after
/// everything the socket already took, even if it reads only seconds
/// later: the frames still queued are dropped, not sent before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_that_reads_late_still_gets_1013() {
    let mut config = unlimited_config();
    config.limits.outbound_queue = 8;
    config.limits.max_text = 60_000;
    let server = start(config).await;
    let mut clients = quiet_room(&server, "r", &["alice", "bob"]).await;
    let mut bob = clients.pop().unwrap();
    let mut alice = clients.pop().unwrap();
    let mut slow = Client::slow_reader(&server, "slow", "r").await;
    alice.expect_json(presence("r", "slow", "join")).await;
    bob.expect_json(presence("r", "slow", "join")).await;

    let filler = "x".repeat(50_000);
    let quit = presence("r", "slow", "quit");
    let mut seq = 0;
    loop {
        seq += 1;
        assert!(seq <= 1000, "the slow reader was never closed");
        alice.send(json!({"type": "say", "room": "r", "text": format!("{seq} {filler}"), "id": seq})).await;
        let (_, _) = alice.until("ack").await;
        let v = bob.recv().await;
        if v == quit {
            break;
        }
        assert_eq!(v["seq"], seq, "{}", v["type"]);
    }
    // The reader comes back well after the server decided to close it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut got = 0;
    let code = loop {
        let v = slow.recv().await;
        match v["type"].as_str() {
            Some("message") => got += 1,
            Some("<close>") => break v["code"].as_u64(),
            _ => panic!("slow: expected messages then close 1013, got {} after {got} messages", v["type"]),
        }
    };
    assert_eq!(code, Some(1013));
    assert!(got < seq, "it fell behind ({got} of {seq})");
}

/// A text that JSON escapes to six bytes a character.
fn escaped_text(chars: usize) -> String {
    "\u{1}".repeat(chars)
}

#[tokio::test]
async fn history_pages_are_capped_in_bytes_with_more() {
    let mut config = unlimited_config();
    config.limits.history_max_bytes = 100_000;
    config.limits.max_text = 20_000;
    config.limits.max_frame_bytes = 200_000;
    let server = start(config).await;
    let mut alice = Client::in_rooms(&server, "alice", &["r"]).await;
    let text = escaped_text(4000); // 24 kB as JSON
    for _ in 0..10 {
        alice.say("r", &text).await;
    }
    // The latest page keeps the newest messages that fit (4 × 24 kB).
    let page = alice.request(json!({"type": "history", "room": "r", "limit": 10, "id": 1})).await;
    let seqs: Vec<u64> = page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!((seqs, &page["more"]), (vec![7, 8, 9, 10], &json!(true)), "{}", page["type"]);
    // Reading forwards keeps the oldest after the point.
    let page = alice.request(json!({"type": "history", "room": "r", "after": 2, "limit": 10, "id": 2})).await;
    let seqs: Vec<u64> = page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!((seqs, &page["more"]), (vec![3, 4, 5, 6], &json!(true)));
    // A page that fits is whole, and says so.
    let page = alice.request(json!({"type": "history", "room": "r", "after": 8, "limit": 10, "id": 3})).await;
    assert_eq!((page["messages"].as_array().unwrap().len(), &page["more"]), (2, &json!(false)));
    // `join` history: the same cap.
    let (mut bob, _) = Client::hello(&server, "bob").await;
    bob.send(json!({"type": "join", "room": "r", "history": 10})).await;
    let joined = bob.expect("joined").await;
    let seqs: Vec<u64> = joined["history"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!((seqs, &joined["more"]), (vec![7, 8, 9, 10], &json!(true)));
    alice.expect_json(presence("r", "bob", "join")).await;
    // One message over the cap still comes alone, so paging moves on.
    alice.say("r", &escaped_text(20_000)).await;
    bob.expect("message").await;
    let page = alice.request(json!({"type": "history", "room": "r", "limit": 5, "id": 4})).await;
    let seqs: Vec<u64> = page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!((seqs, &page["more"]), (vec![11], &json!(true)));
}
