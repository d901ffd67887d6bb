//! Limits: text and event sizes, the rate bucket, rooms per session,
//! watches, and the connection caps.
mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio_tungstenite::tungstenite;

#[tokio::test]
async fn text_up_to_max_text_characters_after_trimming_is_accepted() {
    let server = start_default().await;
    let mut clients = quiet_room(&server, "r", &["alice", "bob"]).await;
    let longest = "x".repeat(4000);
    let padded = format!("  \n{longest}\t ");
    let wide = "é".repeat(4000); // 8000 bytes, 4000 characters
    for (i, text) in [&padded, &wide].into_iter().enumerate() {
        clients[0].say("r", text).await;
        let expected = if i == 0 { &longest } else { &wide };
        clients[1].expect_json(room_msg("r", i as u64 + 1, "alice", expected)).await;
    }
    clients[0].send(json!({"type": "say", "room": "r", "text": "x".repeat(4001), "id": 1})).await;
    let e = clients[0].expect_error("too_large").await;
    assert!(e["message"].as_str().unwrap().contains("4000"), "{e}");
    clients[1].sync().await;
}

#[tokio::test]
async fn max_text_is_configurable() {
    let mut config = test_config();
    config.limits.max_text = 10;
    let server = start(config).await;
    let mut clients = quiet_room(&server, "r", &["alice", "bob"]).await;
    clients[0].say("r", "0123456789").await;
    clients[1].expect_json(room_msg("r", 1, "alice", "0123456789")).await;
    clients[0].send(json!({"type": "say", "room": "r", "text": "0123456789a", "id": 1})).await;
    assert_eq!(clients[0].expect_error("too_large").await["id"], 1);
    clients[1].sync().await;
    clients[0].sync().await;
}

#[tokio::test]
async fn event_data_over_8_kib_is_too_large() {
    let server = start_default().await;
    let mut clients = quiet_room(&server, "r", &["alice", "bob"]).await;
    // A JSON string of n characters serialises to n + 2 bytes.
    let fits = "x".repeat(8192 - 2);
    let over = "x".repeat(8192 - 1);
    clients[0].send(json!({"type": "event", "room": "r", "name": "big", "data": fits, "id": 1})).await;
    clients[0].expect_json(json!({"type": "ack", "id": 1})).await;
    clients[1]
        .expect_json(json!({"type": "event", "room": "r", "nick": "alice", "name": "big",
            "data": fits}))
        .await;
    for (target, value) in [("room", "r"), ("to", "bob")] {
        clients[0].send(json!({"type": "event", target: value, "name": "big", "data": over, "id": 2})).await;
        let e = clients[0].expect_error("too_large").await;
        assert_eq!(e["id"], 2);
        assert!(e["message"].as_str().unwrap().contains("data"), "{e}");
    }
    clients[0]
        .send(json!({"type": "event", "room": "r", "name": "big",
            "data": {"nested": [over.clone()]}, "id": 3}))
        .await;
    clients[0].expect_error("too_large").await;
    clients[1].sync().await;
    clients[0].say("r", "still fine").await;
    clients[1].expect_json(room_msg("r", 1, "alice", "still fine")).await;
    clients[1].sync().await;
}

#[tokio::test]
async fn a_topic_over_max_topic_is_too_large() {
    let server = start_default().await;
    let mut clients = quiet_room(&server, "r", &["alice", "bob"]).await;
    clients[0].send(json!({"type": "topic", "room": "r", "topic": "t".repeat(513), "id": 1})).await;
    assert_eq!(clients[0].expect_error("too_large").await["id"], 1);
    clients[1].sync().await;
    let longest = "t".repeat(512);
    clients[0].send(json!({"type": "topic", "room": "r", "topic": longest})).await;
    let topic = json!({"type": "topic", "room": "r", "topic": longest, "by": "alice"});
    clients[0].expect_json(topic.clone()).await;
    clients[0].expect("ack").await;
    clients[1].expect_json(topic).await;
    clients[1].sync().await;
}

#[tokio::test]
async fn past_the_burst_says_are_rate_limited_and_not_delivered() {
    // Defaults: 10 per second, burst 20.
    let server = start_default().await;
    let mut clients = quiet_room(&server, "r", &["alice", "bob"]).await;
    let mut bob = clients.pop().unwrap();
    let mut alice = clients.pop().unwrap();
    for i in 0..30 {
        alice.send(json!({"type": "say", "room": "r", "text": format!("m{i}"), "id": i})).await;
    }
    let mut acked = Vec::new();
    let mut limited = Vec::new();
    for _ in 0..30 {
        let v = alice.recv().await;
        let id = v["id"].as_u64().unwrap();
        match v["type"].as_str() {
            Some("ack") => {
                assert_eq!(v["message"]["text"], format!("m{id}"));
                assert_eq!(v["message"]["seq"], acked.len() as u64 + 1, "{v}");
                acked.push(id);
            }
            Some("error") => {
                assert_eq!(v["code"], "rate_limited", "{v}");
                let retry_after = v["retry_after_ms"].as_u64().expect("retry_after_ms");
                assert!((1..=100).contains(&retry_after), "{v}");
                limited.push(id);
            }
            _ => panic!("unexpected {v}"),
        }
    }
    assert!(acked.len() >= 20, "acked {acked:?}");
    assert!(!limited.is_empty(), "nothing was rate limited");
    assert_eq!(&acked[..20], &(0..20).collect::<Vec<_>>()[..], "the burst goes first");
    assert!(limited.iter().all(|id| *id >= 20), "{limited:?}");

    // bob received exactly the acked messages, in order.
    for (i, id) in acked.iter().enumerate() {
        bob.expect_json(room_msg("r", i as u64 + 1, "alice", &format!("m{id}"))).await;
    }
    bob.sync().await;

    // Typing and events share the bucket; other frames do not.
    alice.send(json!({"type": "typing", "room": "r", "active": true, "id": "t"})).await;
    let e = alice.expect_error("rate_limited").await;
    assert_eq!(e["id"], "t");
    let retry_after = e["retry_after_ms"].as_u64().expect("retry_after_ms");
    alice.sync().await;
    bob.sync().await;

    // After the advertised wait (the one wait the protocol asks for), a
    // say goes through.
    tokio::time::sleep(Duration::from_millis(retry_after)).await;
    alice.say("r", "patient").await;
    bob.expect_json(room_msg("r", acked.len() as u64 + 1, "alice", "patient")).await;
    bob.sync().await;
}

#[tokio::test]
async fn rooms_per_session_are_capped() {
    let mut config = test_config();
    config.limits.max_rooms_per_session = 2;
    let server = start(config).await;
    let mut alice = Client::in_rooms(&server, "alice", &["a", "b"]).await;
    let mut bob = Client::in_rooms(&server, "bob", &["c"]).await;
    alice.send(json!({"type": "join", "room": "c", "id": "j"})).await;
    let e = alice.expect_error("forbidden").await;
    assert_eq!(e["id"], "j");
    bob.sync().await;
    // Joining a room one is in is no new room.
    alice.join("a").await;
    alice.send(json!({"type": "leave", "room": "b"})).await;
    alice.expect("left").await;
    alice.join("c").await;
    bob.expect_json(presence("c", "alice", "join")).await;
    bob.sync().await;
}

#[tokio::test]
async fn watch_lists_are_capped() {
    let mut config = test_config();
    config.limits.max_watch = 3;
    let server = start(config).await;
    let mut clients = quiet_room(&server, "r", &["alice", "bob"]).await;
    clients[0].send(json!({"type": "watch", "nicks": ["a", "b"]})).await;
    clients[0].expect("status").await;
    clients[0].expect("status").await;
    clients[0].send(json!({"type": "watch", "nicks": ["c", "d"], "id": 1})).await;
    let e = clients[0].expect_error("invalid").await;
    assert!(e["message"].as_str().unwrap().contains("nicks"), "{e}");
    // Nicks already watched do not count twice.
    clients[0].send(json!({"type": "watch", "nicks": ["A", "b", "c"], "id": 2})).await;
    for _ in 0..3 {
        clients[0].expect("status").await;
    }
    clients[0].expect_json(json!({"type": "ack", "id": 2})).await;
    clients[0].say("r", "ok").await;
    clients[1].expect_json(room_msg("r", 1, "alice", "ok")).await;
    clients[1].sync().await;
}

fn refused_status(result: Result<Client, tungstenite::Error>) -> (u16, serde_json::Value) {
    match result {
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            let body = serde_json::from_slice(&body).unwrap_or(json!(null));
            (response.status().as_u16(), body)
        }
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected an HTTP refusal, got a connection"),
    }
}

/// Connects until the server has released a closed connection's slot.
async fn connect_when_free(server: &chat::RunningServer) -> Client {
    let deadline = Instant::now() + WAIT;
    loop {
        match Client::try_connect(server).await {
            Ok(c) => return c,
            Err(tungstenite::Error::Http(_)) if Instant::now() < deadline => tokio::task::yield_now().await,
            Err(e) => panic!("connect: {e}"),
        }
    }
}

#[tokio::test]
async fn connections_per_ip_are_capped_with_429() {
    let mut config = test_config();
    config.limits.max_connections_per_ip = 2;
    let server = start(config).await;
    let (mut alice, _) = Client::hello(&server, "alice").await;
    let mut unidentified = Client::connect(&server).await;
    let (status, body) = refused_status(Client::try_connect(&server).await);
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "too_many_connections", "{body}");
    // The open connections are unharmed.
    alice.sync().await;
    unidentified.send(json!({"type": "hello", "nick": "bob"})).await;
    unidentified.expect("welcome").await;
    // A closed connection frees its slot.
    alice.close().await;
    alice.closed().await;
    let mut carol = connect_when_free(&server).await;
    carol.send(json!({"type": "hello", "nick": "carol"})).await;
    carol.expect("welcome").await;
}

#[tokio::test]
async fn total_connections_are_capped_with_503() {
    let mut config = test_config();
    config.limits.max_connections = 2;
    let server = start(config).await;
    let (mut alice, _) = Client::hello(&server, "alice").await;
    let (mut bob, _) = Client::hello(&server, "bob").await;
    let (status, body) = refused_status(Client::try_connect(&server).await);
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "too_many_connections", "{body}");
    alice.sync().await;
    bob.sync().await;
}

#[tokio::test]
async fn a_peer_silent_for_idle_timeout_is_dropped() {
    let mut config = test_config();
    config.limits.ping_interval = Duration::from_millis(100);
    config.limits.idle_timeout = Duration::from_millis(300);
    let server = start(config).await;
    let mut clients = quiet_room(&server, "r", &["alice", "bob"]).await;
    let mut bob = clients.pop().unwrap();
    let mut alice = clients.pop().unwrap();
    // alice keeps reading, so her client answers the server's pings; bob's
    // is not polled, so it answers nothing and goes silent.
    alice.expect_json(presence("r", "bob", "quit")).await;
    // bob's connection is over. Its close frame (1001) waits behind the
    // server's pings, and reading those makes bob's client write pongs
    // into the closed connection, which may fail before the close frame
    // is read: an I/O error is the other acceptable ending.
    let code = bob.closed().await;
    assert!(matches!(code, Some(1001) | None), "close code {code:?}");
    alice.sync().await;
    alice.say("r", "still here").await;
}

/// The server pings each peer within `limits.ping_interval` of its start
/// and once per interval after, so peers that answer pings stay even with
/// an `idle_timeout` under two intervals, while silent ones are dropped.
/// (A first ping that came only at the second interval closed such peers
/// as idle.)
#[tokio::test]
async fn peers_answering_pings_stay_with_idle_timeout_under_two_intervals() {
    let mut config = test_config();
    config.limits.ping_interval = Duration::from_millis(200);
    config.limits.idle_timeout = Duration::from_millis(280);
    let server = start(config).await;
    // Sessions are nudged in 16 slices by id, from the server's start: eight
    // sessions first put the readers' nudges late in their first interval,
    // where a first ping that waits for the second nudge comes too late.
    for i in 0..8 {
        Client::hello(&server, &format!("early{i}")).await;
    }
    let mut readers = quiet_room(&server, "r", &["alice", "carol", "dave", "erin"]).await;
    // Two silent peers, one after the other: the readers keep reading
    // (and answering pings) for at least two idle timeouts.
    for silent in ["bob", "frank"] {
        let quiet = Client::in_rooms(&server, silent, &["r"]).await;
        let seen = readers.iter_mut().map(|c| async move {
            c.expect_json(presence("r", silent, "join")).await;
            c.expect_json(presence("r", silent, "quit")).await;
        });
        futures_util::future::join_all(seen).await;
        drop(quiet);
    }
    for c in &mut readers {
        c.sync().await;
    }
}
