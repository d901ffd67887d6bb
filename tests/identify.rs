//! Identification: `hello`, `welcome`, guest nicks, what is refused before
//! and after `hello`, and the hello timeout.
mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn welcome_then_a_joined_frame_per_auto_joined_room() {
    let mut config = test_config();
    config.rooms.auto_join = vec!["lobby".into(), "#help".into()];
    let server = start(config).await;
    let mut alice = Client::connect(&server).await;
    alice.send(json!({"type": "hello", "nick": "alice", "id": "h1"})).await;
    alice
        .expect_json(json!({
            "type": "welcome", "id": "h1", "session": SESSION, "nick": "alice", "token": TOKEN,
            "user": {"nick": "alice", "display_name": "alice", "guest": true},
            "rooms": ["lobby", "#help"],
            "server": {"name": "chat", "version": env!("CARGO_PKG_VERSION"), "node": NODE},
            "limits": {"max_text": 4000, "max_frame_bytes": 65536, "rate_per_sec": 10, "burst": 20, "allow_everyone": true},
        }))
        .await;
    for room in ["lobby", "#help"] {
        alice
            .expect_json(json!({"type": "joined", "room": room, "topic": "", "members": [member("alice")],
                "seq": 0, "history": [], "more": false}))
            .await;
    }
    alice.sync().await;

    // A second session gets its own session id and sees alice in the rooms.
    let (mut bob, welcome) = Client::hello(&server, "bob").await;
    alice.expect_json(presence("lobby", "bob", "join")).await;
    alice.expect_json(presence("#help", "bob", "join")).await;
    assert_ne!(welcome["session"], json!(null));
    for room in ["lobby", "#help"] {
        bob.expect_json(json!({"type": "joined", "room": room, "topic": "",
            "members": [member("alice"), member("bob")], "seq": 0, "history": [], "more": false}))
            .await;
    }
    bob.sync().await;
    alice.sync().await;
}

#[tokio::test]
async fn welcome_limits_follow_the_configuration() {
    let mut config = test_config();
    config.limits.max_text = 100;
    config.limits.max_frame_bytes = 5000;
    config.limits.rate_per_sec = 3;
    config.limits.burst = 7;
    config.chat.allow_everyone = false;
    config.server.name = "my-chat".into();
    let server = start(config).await;
    let (mut alice, welcome) = Client::hello(&server, "alice").await;
    assert_eq!(
        norm(welcome),
        json!({
            "type": "welcome", "session": SESSION, "nick": "alice", "token": TOKEN,
            "user": {"nick": "alice", "display_name": "alice", "guest": true},
            "rooms": [],
            "server": {"name": "my-chat", "version": env!("CARGO_PKG_VERSION"), "node": NODE},
            "limits": {"max_text": 100, "max_frame_bytes": 5000, "rate_per_sec": 3, "burst": 7, "allow_everyone": false},
        })
    );
    alice.sync().await;
}

#[tokio::test]
async fn a_taken_nick_is_refused_case_insensitively_and_hello_may_be_retried() {
    let server = start_default().await;
    let mut observer = Client::in_rooms(&server, "observer", &["r"]).await;
    let (mut alice, _) = Client::hello(&server, "Alice").await;
    alice.join("r").await;
    observer.expect_json(presence("r", "Alice", "join")).await;

    let mut other = Client::connect(&server).await;
    other.nick = "other".into();
    for (nick, id) in [("Alice", json!(1)), ("alice", json!("two")), ("ALICE", json!(3))] {
        other.send(json!({"type": "hello", "nick": nick, "id": id})).await;
        let e = other.expect_error("nick_taken").await;
        assert_eq!(e["id"], id);
    }
    // The connection is still open and may identify with another nick.
    other.send(json!({"type": "hello", "nick": "carol", "id": "h"})).await;
    let welcome = other.expect("welcome").await;
    assert_eq!((&welcome["nick"], &welcome["id"]), (&json!("carol"), &json!("h")));
    other.sync().await;

    // The first spelling is the one shown.
    let status = other.request(json!({"type": "who", "room": "r", "id": 1})).await;
    assert_eq!(
        norm(status),
        json!({"type": "room_status", "id": 1, "room": "r", "topic": "", "count": 2,
            "members": [member("observer"), member("Alice")]})
    );

    // Nobody else heard of the refused attempts.
    observer.sync().await;
    alice.sync().await;

    // Once Alice has gone, the nick is free again, in any spelling.
    other.send(json!({"type": "watch", "nicks": ["alice"]})).await;
    assert_eq!(
        norm(other.recv().await),
        json!({"type": "status", "nick": "Alice", "online": true, "away": false, "last_seen": MS})
    );
    alice.close().await;
    assert_eq!(
        norm(other.recv().await),
        json!({"type": "status", "nick": "Alice", "online": false, "away": false, "last_seen": MS})
    );
    observer.expect_json(presence("r", "Alice", "quit")).await;
    let (mut again, welcome) = Client::hello(&server, "alice").await;
    assert_eq!(welcome["nick"], "alice");
    again.sync().await;
}

/// No account is registered and no token secret is configured here: a
/// `password` or a `token` in `hello` is refused, and the connection may
/// still identify as a guest.
#[tokio::test]
async fn a_password_without_an_account_or_a_bad_token_is_unauthorized() {
    let server = start_default().await;
    let mut observer = Client::in_rooms(&server, "observer", &["r"]).await;
    let mut c = Client::connect(&server).await;
    c.send(json!({"type": "hello", "nick": "alice", "password": "secret", "id": "p"})).await;
    assert_eq!(c.expect_error("unauthorized").await["id"], "p");
    c.send(json!({"type": "hello", "token": "eyJhbGciOi.x.y", "id": 9})).await;
    assert_eq!(c.expect_error("unauthorized").await["id"], 9);
    c.send(json!({"type": "hello", "nick": "alice", "token": "t"})).await;
    assert_eq!(c.expect_error("unauthorized").await.get("id"), None, "no id sent, none echoed");
    // The nick was not taken by the refused attempts.
    c.send(json!({"type": "hello", "nick": "alice"})).await;
    assert_eq!(c.expect("welcome").await["nick"], "alice");
    c.join("r").await;
    observer.expect_json(presence("r", "alice", "join")).await;
    observer.sync().await;
    c.sync().await;
}

#[tokio::test]
async fn guests_can_be_disabled() {
    let mut config = test_config();
    config.auth.guests = false;
    let server = start(config).await;
    let mut c = Client::connect(&server).await;
    c.send(json!({"type": "hello", "nick": "alice", "id": 1})).await;
    assert_eq!(c.expect_error("unauthorized").await["id"], 1);
    c.send(json!({"type": "ping", "id": 2})).await;
    assert_eq!(c.expect_error("unauthorized").await["id"], 2);
}

#[tokio::test]
async fn bad_nicks_are_invalid() {
    let server = start_default().await;
    let mut observer = Client::in_rooms(&server, "observer", &["r"]).await;
    let mut c = Client::connect(&server).await;
    let too_long = "a".repeat(33);
    let bad = [
        json!(""),
        json!(too_long),
        json!("1alice"),
        json!("-alice"),
        json!("al ice"),
        json!("al!ce"),
        json!("alice#"),
        json!("#alice"),
        json!("élise"),
        json!("ali\u{0}ce"),
        json!(42),
        json!(["alice"]),
        json!(true),
    ];
    for (i, nick) in bad.iter().enumerate() {
        c.send(json!({"type": "hello", "nick": nick, "id": i})).await;
        let e = c.expect_error("invalid").await;
        assert_eq!(e["id"], i, "{e}");
        assert!(e["message"].as_str().unwrap().contains("nick"), "the message names the field: {e}");
    }
    // A hello without a nick (and no token) is invalid too.
    c.send(json!({"type": "hello", "id": "none"})).await;
    let e = c.expect_error("invalid").await;
    assert!(e["message"].as_str().unwrap().contains("nick"), "{e}");

    // The connection is still usable: the longest valid nick works.
    let longest = format!("_{}", "Z9.-".repeat(7) + "abc");
    assert_eq!(longest.len(), 32);
    c.send(json!({"type": "hello", "nick": longest})).await;
    assert_eq!(c.expect("welcome").await["nick"], json!(longest));
    c.join("r").await;
    observer.expect_json(presence("r", &longest, "join")).await;
    observer.sync().await;
    c.sync().await;
}

#[tokio::test]
async fn frames_before_hello_are_unauthorized() {
    let server = start_default().await;
    let mut observer = Client::in_rooms(&server, "observer", &["r"]).await;
    let mut c = Client::connect(&server).await;
    let frames = [
        json!({"type": "ping", "id": "p"}),
        json!({"type": "join", "room": "r", "id": 1}),
        json!({"type": "say", "room": "r", "text": "sneaky", "id": 2}),
        json!({"type": "say", "to": "observer", "text": "sneaky", "id": 3}),
        json!({"type": "say", "everyone": true, "text": "sneaky", "id": 4}),
        json!({"type": "rooms", "id": 5}),
        json!({"type": "watch", "nicks": ["observer"], "id": 6}),
    ];
    for f in frames {
        c.send(f.clone()).await;
        let e = c.expect_error("unauthorized").await;
        assert_eq!(e["id"], f["id"], "{e}");
    }
    // Bad input before hello gets the same errors as after it.
    c.send_text("{not json").await;
    assert!(c.expect_error("bad_frame").await.get("id").is_none());
    c.send(json!({"type": "dance", "id": 7})).await;
    assert_eq!(c.expect_error("unknown_type").await["id"], 7);
    c.send_raw(Message::binary(vec![1u8, 2, 3])).await;
    c.expect_error("bad_frame").await;

    // Then hello works and the connection is usable.
    c.send(json!({"type": "hello", "nick": "late"})).await;
    c.expect("welcome").await;
    c.sync().await;
    observer.sync().await;
}

#[tokio::test]
async fn a_second_hello_is_invalid() {
    let server = start_default().await;
    let mut clients = quiet_room(&server, "r", &["alice", "bob"]).await;
    let mut bob = clients.pop().unwrap();
    let mut alice = clients.pop().unwrap();
    alice.send(json!({"type": "hello", "nick": "mallory", "id": "again"})).await;
    let e = alice.expect_error("invalid").await;
    assert_eq!(e["id"], "again");
    alice.send(json!({"type": "hello", "nick": "alice", "id": 2})).await;
    assert_eq!(alice.expect_error("invalid").await["id"], 2);

    // Still alice, still usable; bob heard nothing of it.
    let ack = alice.say("r", "still me").await;
    assert_eq!(ack["message"]["from"], "alice");
    bob.expect_json(room_msg("r", 1, "alice", "still me")).await;
    bob.sync().await;
    // And the nick she asked for was not taken.
    let (mut mallory, _) = Client::hello(&server, "mallory").await;
    mallory.sync().await;
}

#[tokio::test]
async fn no_hello_in_time_closes_with_1008() {
    let mut config = test_config();
    config.limits.hello_timeout = Duration::from_millis(300);
    let server = start(config).await;
    // Identified in time: stays connected.
    let mut alice = Client::in_rooms(&server, "alice", &["r"]).await;

    let mut silent = Client::connect(&server).await;
    assert_eq!(silent.closed().await, Some(1008));

    // Frames other than hello do not count as identifying.
    let mut chatty = Client::connect(&server).await;
    chatty.send(json!({"type": "ping", "id": 1})).await;
    chatty.expect_error("unauthorized").await;
    assert_eq!(chatty.closed().await, Some(1008));

    // alice connected before both and is still fine, and heard nothing.
    alice.sync().await;
    alice.say("r", "hi").await;
}
