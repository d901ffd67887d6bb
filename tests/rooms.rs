//! Rooms: join, leave, rooms, who, topic, and what the other members see.
mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn join_and_leave_tell_the_other_members() {
    let server = start_default().await;
    let mut alice = Client::in_rooms(&server, "alice", &[]).await;
    alice.send(json!({"type": "join", "room": "r", "id": "j1"})).await;
    alice
        .expect_json(json!({"type": "joined", "id": "j1", "room": "r", "topic": "",
            "members": [member("alice")], "seq": 0, "history": [], "more": false}))
        .await;

    let (mut bob, _) = Client::hello(&server, "bob").await;
    bob.send(json!({"type": "join", "room": "r", "id": 5})).await;
    bob.expect_json(json!({"type": "joined", "id": 5, "room": "r", "topic": "",
        "members": [member("alice"), member("bob")], "seq": 0, "history": [], "more": false}))
        .await;
    alice.expect_json(presence("r", "bob", "join")).await;
    bob.sync().await;

    // Joining again changes nothing for the others.
    bob.send(json!({"type": "join", "room": "r", "id": 6})).await;
    assert_eq!(bob.expect("joined").await["id"], 6);
    alice.sync().await;

    bob.send(json!({"type": "leave", "room": "r", "id": "l"})).await;
    bob.expect_json(json!({"type": "left", "id": "l", "room": "r"})).await;
    alice.expect_json(presence("r", "bob", "leave")).await;
    bob.sync().await;
    alice.sync().await;

    // After leaving, nothing from the room reaches bob.
    alice.say("r", "bob is gone").await;
    bob.sync().await;

    // A disconnect is a `quit`.
    let mut carol = Client::in_rooms(&server, "carol", &["r"]).await;
    alice.expect_json(presence("r", "carol", "join")).await;
    carol.close().await;
    alice.expect_json(presence("r", "carol", "quit")).await;
    alice.sync().await;
    bob.sync().await;
}

#[tokio::test]
async fn room_names_are_case_insensitive_and_keep_the_first_spelling() {
    let server = start_default().await;
    let mut alice = Client::in_rooms(&server, "alice", &["#Games"]).await;
    let (mut bob, _) = Client::hello(&server, "bob").await;
    let joined = bob.join("#GAMES").await;
    assert_eq!(joined["room"], "#Games");
    alice.expect_json(presence("#Games", "bob", "join")).await;
    alice.say("#games", "gg").await;
    bob.expect_json(room_msg("#Games", 1, "alice", "gg")).await;
    bob.send(json!({"type": "leave", "room": "#gAmEs"})).await;
    bob.expect_json(json!({"type": "left", "room": "#Games"})).await;
    alice.expect_json(presence("#Games", "bob", "leave")).await;
    alice.sync().await;
    bob.sync().await;
}

#[tokio::test]
async fn rooms_lists_the_rooms_with_their_member_counts() {
    let server = start_default().await;
    let mut alice = Client::in_rooms(&server, "alice", &["beta", "alpha"]).await;
    let mut bob = Client::in_rooms(&server, "bob", &["beta"]).await;
    alice.expect_json(presence("beta", "bob", "join")).await;
    bob.send(json!({"type": "topic", "room": "beta", "topic": "all things beta"})).await;
    bob.expect("topic").await;
    bob.expect_json(json!({"type": "ack"})).await;
    alice.expect("topic").await;

    bob.send(json!({"type": "rooms", "id": "r1"})).await;
    bob.expect_json(json!({"type": "rooms", "id": "r1", "rooms": [
        {"name": "alpha", "topic": "", "members": 1},
        {"name": "beta", "topic": "all things beta", "members": 2},
    ]}))
    .await;
    bob.sync().await;

    // A room nobody is in is not listed.
    alice.send(json!({"type": "leave", "room": "alpha"})).await;
    alice.expect("left").await;
    alice.send(json!({"type": "rooms", "id": 2})).await;
    alice
        .expect_json(json!({"type": "rooms", "id": 2, "rooms": [
            {"name": "beta", "topic": "all things beta", "members": 2},
        ]}))
        .await;
    alice.sync().await;
}

#[tokio::test]
async fn who_lists_the_members_of_a_room() {
    let server = start_default().await;
    let mut clients = quiet_room(&server, "r", &["alice", "bob"]).await;
    let (mut carol, _) = Client::hello(&server, "carol").await;

    // Works without being a member.
    carol.send(json!({"type": "who", "room": "R", "id": "w"})).await;
    carol
        .expect_json(json!({"type": "room_status", "id": "w", "room": "r", "topic": "",
            "count": 2, "members": [member("alice"), member("bob")]}))
        .await;

    // Away shows in the member list.
    clients[1].send(json!({"type": "away", "away": true})).await;
    clients[1].sync().await;
    carol.send(json!({"type": "who", "room": "r", "id": 2})).await;
    let mut away_bob = member("bob");
    away_bob["away"] = json!(true);
    carol
        .expect_json(json!({"type": "room_status", "id": 2, "room": "r", "topic": "",
            "count": 2, "members": [member("alice"), away_bob]}))
        .await;

    // A room with no members does not exist.
    carol.send(json!({"type": "who", "room": "empty", "id": 3})).await;
    assert_eq!(carol.expect_error("no_such_room").await["id"], 3);
    for c in clients.iter_mut() {
        c.send(json!({"type": "leave", "room": "r"})).await;
    }
    for c in clients.iter_mut() {
        c.until("left").await;
    }
    carol.send(json!({"type": "who", "room": "r", "id": 4})).await;
    assert_eq!(carol.expect_error("no_such_room").await["id"], 4);
    carol.sync().await;
    for c in clients.iter_mut() {
        c.sync().await;
    }
}

#[tokio::test]
async fn topic_goes_to_every_member_the_setter_included() {
    let server = start_default().await;
    let mut clients = quiet_room(&server, "r", &["alice", "bob"]).await;
    let mut outsider = Client::in_rooms(&server, "carol", &["elsewhere"]).await;

    clients[0].send(json!({"type": "topic", "room": "r", "topic": "  Rust 2024  ", "id": "t"})).await;
    let topic = json!({"type": "topic", "room": "r", "topic": "Rust 2024", "by": "alice"});
    clients[0].expect_json(topic.clone()).await;
    clients[0].expect_json(json!({"type": "ack", "id": "t"})).await;
    clients[1].expect_json(topic).await;
    outsider.sync().await;

    // New members and `who` see it.
    let (mut dave, _) = Client::hello(&server, "dave").await;
    let joined = dave.join("r").await;
    assert_eq!(joined["topic"], "Rust 2024");
    dave.send(json!({"type": "who", "room": "r"})).await;
    assert_eq!(dave.expect("room_status").await["topic"], "Rust 2024");

    // Only members may set it.
    outsider.send(json!({"type": "topic", "room": "r", "topic": "hijacked", "id": 1})).await;
    assert_eq!(outsider.expect_error("not_in_room").await["id"], 1);
    outsider.sync().await;
    for c in clients.iter_mut() {
        c.expect_json(presence("r", "dave", "join")).await;
        c.sync().await;
    }
    dave.sync().await;
}

#[tokio::test]
async fn join_returns_the_latest_history() {
    let server = start(unlimited_config()).await;
    let mut alice = Client::in_rooms(&server, "alice", &["r"]).await;
    for i in 1..=5 {
        alice.say("r", &format!("m{i}")).await;
    }
    let (mut bob, _) = Client::hello(&server, "bob").await;
    bob.send(json!({"type": "join", "room": "r", "history": 3})).await;
    let history: Vec<_> = (3..=5).map(|i| body(&room_msg("r", i, "alice", &format!("m{i}")))).collect();
    bob.expect_json(json!({"type": "joined", "room": "r", "topic": "",
        "members": [member("alice"), member("bob")], "seq": 5, "history": history, "more": true}))
        .await;
    // history 0: none; default: all of them (fewer than 50).
    bob.send(json!({"type": "leave", "room": "r"})).await;
    bob.expect("left").await;
    bob.send(json!({"type": "join", "room": "r", "history": 0})).await;
    let joined = bob.expect("joined").await;
    assert_eq!((&joined["history"], &joined["more"]), (&json!([]), &json!(false)));
    bob.send(json!({"type": "leave", "room": "r"})).await;
    bob.expect("left").await;
    let joined = bob.join("r").await;
    let seqs: Vec<_> = joined["history"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    assert_eq!(joined["more"], false);
    bob.sync().await;
}

#[tokio::test]
async fn join_without_create_on_join_is_no_such_room() {
    let mut config = test_config();
    config.rooms.create_on_join = false;
    let server = start(config).await;
    let (mut alice, _) = Client::hello(&server, "alice").await;
    alice.send(json!({"type": "join", "room": "nowhere", "id": "j"})).await;
    assert_eq!(alice.expect_error("no_such_room").await["id"], "j");
    alice.send(json!({"type": "rooms", "id": 1})).await;
    alice.expect_json(json!({"type": "rooms", "id": 1, "rooms": []})).await;
    alice.sync().await;
}

#[tokio::test]
async fn leaving_a_room_one_is_not_in_is_not_in_room() {
    let server = start_default().await;
    let mut clients = quiet_room(&server, "r", &["alice", "bob"]).await;
    clients[0].send(json!({"type": "leave", "room": "other", "id": 1})).await;
    assert_eq!(clients[0].expect_error("not_in_room").await["id"], 1);
    clients[0].say("r", "still here").await;
    clients[1].expect_json(room_msg("r", 1, "alice", "still here")).await;
    clients[1].sync().await;
}

#[tokio::test]
async fn auto_joined_rooms_are_joined_even_without_create_on_join() {
    let mut config = test_config();
    config.rooms.create_on_join = false;
    config.rooms.auto_join = vec!["lobby".into()];
    let server = start(config).await;
    let (mut alice, welcome) = Client::hello(&server, "alice").await;
    assert_eq!(welcome["rooms"], json!(["lobby"]));
    // PROTOCOL.md: each room of `welcome.rooms` produces a `joined` frame.
    alice
        .expect_json(json!({"type": "joined", "room": "lobby", "topic": "", "members": [member("alice")],
            "seq": 0, "history": [], "more": false}))
        .await;
    alice.sync().await;
    // Others may then join it: it exists.
    let (mut bob, _) = Client::hello(&server, "bob").await;
    bob.expect("joined").await;
    alice.expect_json(presence("lobby", "bob", "join")).await;
    bob.send(json!({"type": "join", "room": "elsewhere", "id": 1})).await;
    assert_eq!(bob.expect_error("no_such_room").await["id"], 1);
    bob.sync().await;
    alice.sync().await;
}
