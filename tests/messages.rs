//! Messages: say (room, direct, everyone), edit, delete, read, typing,
//! event; bare acks; `id` echo on every reply; ping/pong.
mod common;

use common::*;
use serde_json::{Value, json};

/// alice and bob in room `r`, carol elsewhere (`other`).
async fn three(server: &chat::RunningServer) -> (Client, Client, Client) {
    let mut clients = quiet_room(server, "r", &["alice", "bob"]).await;
    let carol = Client::in_rooms(server, "carol", &["other"]).await;
    let bob = clients.pop().unwrap();
    let alice = clients.pop().unwrap();
    (alice, bob, carol)
}

fn ack_of(message: &Value, id: Value) -> Value {
    json!({"type": "ack", "id": id, "message": body(message)})
}

#[tokio::test]
async fn say_to_a_room() {
    let server = start_default().await;
    let (mut alice, mut bob, mut carol) = three(&server).await;
    alice.send(json!({"type": "say", "room": "r", "text": "  hello bob \n", "id": "s1"})).await;
    let expected = room_msg("r", 1, "alice", "hello bob");
    let ack = alice.expect_json(ack_of(&expected, json!("s1"))).await;
    let msg = bob.expect_json(expected).await;
    assert_eq!(ack["message"], body(&msg), "ack and message are the same message");

    // Without an id the ack has none; seq goes on.
    alice.send(json!({"type": "say", "room": "R", "text": "two"})).await;
    let expected = room_msg("r", 2, "alice", "two");
    alice.expect_json(json!({"type": "ack", "message": body(&expected)})).await;
    bob.expect_json(expected).await;

    // Bob answers; alice gets it as a message.
    bob.send(json!({"type": "say", "room": "r", "text": "hi alice", "id": 7})).await;
    let expected = room_msg("r", 3, "bob", "hi alice");
    bob.expect_json(ack_of(&expected, json!(7))).await;
    alice.expect_json(expected).await;

    for c in [&mut alice, &mut bob, &mut carol] {
        c.sync().await;
    }
}

#[tokio::test]
async fn say_to_a_user() {
    let server = start_default().await;
    let (mut alice, mut bob, mut carol) = three(&server).await;
    alice.send(json!({"type": "say", "to": "bob", "text": "psst", "id": 1})).await;
    let expected = dm_msg("bob", 1, "alice", "psst");
    alice.expect_json(ack_of(&expected, json!(1))).await;
    bob.expect_json(expected).await;

    // The conversation's seq counts both directions; the nick is shown as
    // its owner spells it.
    bob.send(json!({"type": "say", "to": "ALICE", "text": "what?", "id": 2})).await;
    let expected = dm_msg("alice", 2, "bob", "what?");
    bob.expect_json(ack_of(&expected, json!(2))).await;
    alice.expect_json(expected).await;

    // Another pair has its own sequence.
    carol.say_to("bob", "hey").await;
    bob.expect_json(dm_msg("bob", 1, "carol", "hey")).await;

    for c in [&mut alice, &mut bob, &mut carol] {
        c.sync().await;
    }
}

#[tokio::test]
async fn a_direct_message_to_a_user_seen_before_is_kept_for_them() {
    let server = start_default().await;
    let (mut alice, _) = Client::hello(&server, "alice").await;
    let (mut bob, welcome) = Client::hello(&server, "bob").await;
    let bobs_token = welcome["token"].as_str().expect("welcome.token").to_string();
    alice.send(json!({"type": "watch", "nicks": ["bob"]})).await;
    alice.expect("status").await;
    bob.close().await;
    let status = alice.expect("status").await;
    assert_eq!(status["online"], false);

    let ack = alice.say_to("bob", "for later").await;
    assert_eq!(norm(ack["message"].clone()), body(&dm_msg("bob", 1, "alice", "for later")));

    // A guest is the same user again only with its token (within the grace
    // period): a new guest named bob would be someone else.
    let (mut bob, _) = Client::with_token(&server, &bobs_token).await;
    alice.expect("status").await;
    bob.send(json!({"type": "history", "with": "alice", "id": "h"})).await;
    bob.expect_json(json!({"type": "history", "id": "h", "with": "alice",
        "messages": [body(&dm_msg("bob", 1, "alice", "for later"))], "more": false}))
        .await;
    bob.sync().await;
    alice.sync().await;
}

#[tokio::test]
async fn say_to_everyone() {
    let server = start_default().await;
    let (mut alice, mut bob, mut carol) = three(&server).await;
    let (mut dave, _) = Client::hello(&server, "dave").await; // in no room
    alice.send(json!({"type": "say", "everyone": true, "text": "attention", "id": "e"})).await;
    let expected = everyone_msg(1, "alice", "attention");
    alice.expect_json(ack_of(&expected, json!("e"))).await;
    for c in [&mut bob, &mut carol, &mut dave] {
        c.expect_json(expected.clone()).await;
    }
    // Its own sequence, separate from the rooms'.
    alice.say("r", "in the room").await;
    bob.expect_json(room_msg("r", 1, "alice", "in the room")).await;
    dave.send(json!({"type": "say", "everyone": true, "text": "me too"})).await;
    let expected = everyone_msg(2, "dave", "me too");
    dave.expect("ack").await;
    for c in [&mut alice, &mut bob, &mut carol] {
        c.expect_json(expected.clone()).await;
    }
    for c in [&mut alice, &mut bob, &mut carol, &mut dave] {
        c.sync().await;
    }
}

#[tokio::test]
async fn say_to_everyone_can_be_forbidden() {
    let mut config = test_config();
    config.chat.allow_everyone = false;
    let server = start(config).await;
    let (mut alice, mut bob, mut carol) = three(&server).await;
    alice.send(json!({"type": "say", "everyone": true, "text": "attention", "id": 3})).await;
    assert_eq!(alice.expect_error("forbidden").await["id"], 3);
    alice.say("r", "ok then").await;
    bob.expect_json(room_msg("r", 1, "alice", "ok then")).await;
    for c in [&mut alice, &mut bob, &mut carol] {
        c.sync().await;
    }
}

#[tokio::test]
async fn edit_own_messages() {
    let server = start_default().await;
    let (mut alice, mut bob, mut carol) = three(&server).await;
    let ack = alice.say("r", "helo").await;
    let msg_id = ack["message"]["msg_id"].clone();
    bob.expect("message").await;

    alice.send(json!({"type": "edit", "msg_id": msg_id, "text": " hello ", "id": "e"})).await;
    alice.expect_json(json!({"type": "ack", "id": "e"})).await;
    let edited = bob
        .expect_json(json!({"type": "edited", "msg_id": ID, "room": "r", "text": "hello",
            "edited_at": MS}))
        .await;
    assert_eq!(edited["msg_id"], msg_id);
    carol.sync().await;

    alice.send(json!({"type": "history", "room": "r", "id": 1})).await;
    let mut expected = body(&room_msg("r", 1, "alice", "hello"));
    expected["edited_at"] = json!(MS);
    let history = alice
        .expect_json(json!({"type": "history", "id": 1, "room": "r", "messages": [expected],
            "more": false}))
        .await;
    assert_eq!(history["messages"][0]["msg_id"], msg_id);
    assert_eq!(history["messages"][0]["edited_at"], edited["edited_at"]);

    // Not someone else's.
    bob.send(json!({"type": "edit", "msg_id": msg_id, "text": "pwned", "id": 2})).await;
    assert_eq!(bob.expect_error("forbidden").await["id"], 2);
    // Not one that does not exist.
    bob.send(json!({"type": "edit", "msg_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "text": "x", "id": 3})).await;
    assert_eq!(bob.expect_error("no_such_message").await["id"], 3);
    for c in [&mut alice, &mut bob, &mut carol] {
        c.sync().await;
    }

    // In a DM, each party sees it `with` the other.
    let ack = alice.say_to("bob", "typo").await;
    bob.expect("message").await;
    let msg_id = ack["message"]["msg_id"].clone();
    alice.send(json!({"type": "edit", "msg_id": msg_id, "text": "fixed", "id": "e2"})).await;
    alice.expect_json(json!({"type": "ack", "id": "e2"})).await;
    bob.expect_json(json!({"type": "edited", "msg_id": ID, "with": "alice", "text": "fixed",
        "edited_at": MS}))
        .await;
    // A third party cannot touch it.
    carol.send(json!({"type": "edit", "msg_id": msg_id, "text": "x", "id": 4})).await;
    assert_eq!(carol.expect_error("no_such_message").await["id"], 4);
    for c in [&mut alice, &mut bob, &mut carol] {
        c.sync().await;
    }
}

#[tokio::test]
async fn delete_own_messages() {
    let server = start_default().await;
    let (mut alice, mut bob, mut carol) = three(&server).await;
    let first = alice.say("r", "keep me").await;
    let ack = alice.say("r", "oops").await;
    let msg_id = ack["message"]["msg_id"].clone();
    bob.expect("message").await;
    bob.expect("message").await;

    // Not someone else's.
    bob.send(json!({"type": "delete", "msg_id": msg_id, "id": 1})).await;
    assert_eq!(bob.expect_error("forbidden").await["id"], 1);

    alice.send(json!({"type": "delete", "msg_id": msg_id, "id": "d"})).await;
    alice.expect_json(json!({"type": "ack", "id": "d"})).await;
    let deleted = bob.expect_json(json!({"type": "deleted", "msg_id": ID, "room": "r"})).await;
    assert_eq!(deleted["msg_id"], msg_id);
    carol.sync().await;

    // History shows it deleted, text gone; the other message is intact.
    bob.send(json!({"type": "history", "room": "r", "id": 2})).await;
    let mut gone = body(&room_msg("r", 2, "alice", ""));
    gone["deleted"] = json!(true);
    let history = bob
        .expect_json(json!({"type": "history", "id": 2, "room": "r", "messages": [
            body(&room_msg("r", 1, "alice", "keep me")), gone], "more": false}))
        .await;
    assert_eq!(history["messages"][0], first["message"]);
    assert_eq!(history["messages"][1]["msg_id"], msg_id);

    // Gone for good.
    alice.send(json!({"type": "delete", "msg_id": msg_id, "id": 3})).await;
    assert_eq!(alice.expect_error("no_such_message").await["id"], 3);
    alice.send(json!({"type": "edit", "msg_id": msg_id, "text": "back", "id": 4})).await;
    assert_eq!(alice.expect_error("no_such_message").await["id"], 4);
    for c in [&mut alice, &mut bob, &mut carol] {
        c.sync().await;
    }

    // In a DM: `deleted` `with` the other party.
    let ack = alice.say_to("bob", "secret").await;
    bob.expect("message").await;
    alice.send(json!({"type": "delete", "msg_id": ack["message"]["msg_id"]})).await;
    alice.expect_json(json!({"type": "ack"})).await;
    bob.expect_json(json!({"type": "deleted", "msg_id": ID, "with": "alice"})).await;
    bob.send(json!({"type": "history", "with": "alice"})).await;
    let mut gone = body(&dm_msg("bob", 1, "alice", ""));
    gone["deleted"] = json!(true);
    bob.expect_json(json!({"type": "history", "with": "alice", "messages": [gone], "more": false})).await;
    for c in [&mut alice, &mut bob, &mut carol] {
        c.sync().await;
    }
}

#[tokio::test]
async fn read_receipts() {
    let server = start_default().await;
    let (mut alice, mut bob, mut carol) = three(&server).await;
    alice.say("r", "one").await;
    bob.expect("message").await;

    bob.send(json!({"type": "read", "room": "r", "seq": 1})).await;
    alice.expect_json(json!({"type": "read", "room": "r", "nick": "bob", "seq": 1})).await;
    bob.sync().await;
    carol.sync().await;

    // DM: the other party gets it `with` the reader.
    alice.say_to("bob", "dm").await;
    bob.expect("message").await;
    bob.send(json!({"type": "read", "with": "alice", "seq": 1, "id": "rd"})).await;
    bob.expect_json(json!({"type": "ack", "id": "rd"})).await;
    alice.expect_json(json!({"type": "read", "with": "bob", "nick": "bob", "seq": 1})).await;

    // Only for rooms one is in.
    carol.send(json!({"type": "read", "room": "r", "seq": 1, "id": 5})).await;
    assert_eq!(carol.expect_error("not_in_room").await["id"], 5);
    for c in [&mut alice, &mut bob, &mut carol] {
        c.sync().await;
    }
}

#[tokio::test]
async fn typing_indicators_and_their_end_when_the_message_arrives() {
    let server = start_default().await;
    let (mut alice, mut bob, mut carol) = three(&server).await;
    let typing = |active| json!({"type": "typing", "room": "r", "nick": "alice", "active": active});

    alice.send(json!({"type": "typing", "room": "r", "active": true})).await;
    bob.expect_json(typing(true)).await;
    alice.sync().await;
    carol.sync().await;

    // The message clears the indicator: `active:false` comes first.
    alice.say("r", "done typing").await;
    bob.expect_json(typing(false)).await;
    bob.expect_json(room_msg("r", 1, "alice", "done typing")).await;
    // Without typing first, no `active:false`.
    alice.say("r", "again").await;
    bob.expect_json(room_msg("r", 2, "alice", "again")).await;
    bob.sync().await;

    // Stopped explicitly: the message adds no second `active:false`.
    alice.send(json!({"type": "typing", "room": "r", "active": true})).await;
    alice.send(json!({"type": "typing", "room": "r", "active": false})).await;
    bob.expect_json(typing(true)).await;
    bob.expect_json(typing(false)).await;
    alice.say("r", "three").await;
    bob.expect_json(room_msg("r", 3, "alice", "three")).await;
    bob.sync().await;

    // To a user: `from` the typist.
    alice.send(json!({"type": "typing", "to": "carol", "active": true})).await;
    let dm_typing = |active| json!({"type": "typing", "from": "alice", "nick": "alice", "active": active});
    carol.expect_json(dm_typing(true)).await;
    alice.say_to("carol", "hi carol").await;
    carol.expect_json(dm_typing(false)).await;
    carol.expect_json(dm_msg("carol", 1, "alice", "hi carol")).await;

    // Only in rooms one is in.
    carol.send(json!({"type": "typing", "room": "r", "active": true, "id": 1})).await;
    assert_eq!(carol.expect_error("not_in_room").await["id"], 1);
    for c in [&mut alice, &mut bob, &mut carol] {
        c.sync().await;
    }
}

#[tokio::test]
async fn events_reach_the_others_and_are_not_stored() {
    let server = start_default().await;
    let (mut alice, mut bob, mut carol) = three(&server).await;
    let data = json!({"board": [[1, 0], [0, 2]], "turn": "bob", "ünï": "ok"});
    alice.send(json!({"type": "event", "room": "r", "name": "move", "data": data})).await;
    bob.expect_json(json!({"type": "event", "room": "r", "nick": "alice", "name": "move",
        "data": data}))
        .await;
    alice.sync().await;
    carol.sync().await;

    alice.send(json!({"type": "event", "to": "carol", "name": "ring", "data": {"n": 1}, "id": "ev"})).await;
    alice.expect_json(json!({"type": "ack", "id": "ev"})).await;
    carol
        .expect_json(json!({"type": "event", "from": "alice", "nick": "alice", "name": "ring",
            "data": {"n": 1}}))
        .await;

    // Not stored: history is empty.
    bob.send(json!({"type": "history", "room": "r"})).await;
    bob.expect_json(json!({"type": "history", "room": "r", "messages": [], "more": false})).await;

    // Only in rooms one is in.
    carol.send(json!({"type": "event", "room": "r", "name": "x", "data": 1, "id": 2})).await;
    assert_eq!(carol.expect_error("not_in_room").await["id"], 2);
    for c in [&mut alice, &mut bob, &mut carol] {
        c.sync().await;
    }
}

#[tokio::test]
async fn frames_without_a_reply_get_a_bare_ack_with_an_id_and_nothing_without() {
    let server = start_default().await;
    let (mut alice, mut bob, _carol) = three(&server).await;
    let frames = [
        json!({"type": "typing", "room": "r", "active": true}),
        json!({"type": "event", "room": "r", "name": "n", "data": {}}),
        json!({"type": "read", "room": "r", "seq": 0}),
        json!({"type": "away", "away": true}),
        json!({"type": "away", "away": false}),
        json!({"type": "unwatch", "nicks": ["nobody"]}),
    ];
    for (i, frame) in frames.iter().enumerate() {
        // Without an id: no reply.
        alice.send(frame.clone()).await;
        alice.sync().await;
        // With one: a bare ack, string or integer.
        for id in [json!(format!("x{i}")), json!(i)] {
            let mut f = frame.clone();
            f["id"] = id.clone();
            alice.send(f).await;
            alice.expect_json(json!({"type": "ack", "id": id})).await;
        }
    }
    // `watch` replies with `status` frames, then the bare ack.
    alice.send(json!({"type": "watch", "nicks": ["bob"], "id": 99})).await;
    alice.expect("status").await;
    alice.expect_json(json!({"type": "ack", "id": 99})).await;
    alice.send(json!({"type": "watch", "nicks": ["carol"]})).await;
    alice.expect("status").await;
    alice.sync().await;

    // bob saw the typing, event and read frames, three times each.
    for _ in 0..3 {
        bob.expect("typing").await;
    }
    for _ in 0..3 {
        bob.expect("event").await;
    }
    for _ in 0..3 {
        bob.expect("read").await;
    }
    bob.sync().await;
}

#[tokio::test]
async fn every_reply_echoes_the_id() {
    let server = start_default().await;
    let (mut alice, mut bob, _carol) = three(&server).await;
    for id in [json!("req-1"), json!(42), json!(-7), json!("x".repeat(64))] {
        let ack = alice.request(json!({"type": "say", "room": "r", "text": "hi", "id": id})).await;
        assert_eq!((&ack["type"], &ack["id"]), (&json!("ack"), &id));
        bob.expect("message").await;
        let msg_id = ack["message"]["msg_id"].clone();
        let requests = [
            (json!({"type": "ping"}), "pong"),
            (json!({"type": "join", "room": "s"}), "joined"),
            (json!({"type": "leave", "room": "s"}), "left"),
            (json!({"type": "rooms"}), "rooms"),
            (json!({"type": "who", "room": "r"}), "room_status"),
            (json!({"type": "history", "room": "r"}), "history"),
            (json!({"type": "history", "with": "bob"}), "history"),
            (json!({"type": "history", "everyone": true}), "history"),
            (json!({"type": "edit", "msg_id": msg_id, "text": "hey"}), "ack"),
            (json!({"type": "delete", "msg_id": msg_id}), "ack"),
            (json!({"type": "say", "to": "bob", "text": "dm"}), "ack"),
            (json!({"type": "say", "everyone": true, "text": "all"}), "ack"),
            // Errors echo it too.
            (json!({"type": "say", "room": "nope", "text": "x"}), "error"),
            (json!({"type": "who", "room": "nope"}), "error"),
            (json!({"type": "dance"}), "error"),
            (json!({"type": "join"}), "error"),
            (json!({"id_only": true}), "error"),
        ];
        for (mut frame, reply) in requests {
            frame["id"] = id.clone();
            let v = alice.request(frame.clone()).await;
            assert_eq!(v["type"], reply, "{frame} -> {v}");
            assert_eq!(v["id"], id, "{frame} -> {v}");
        }
        alice.sync().await;
        // edited, deleted, dm, everyone
        for ty in ["edited", "deleted", "message", "message"] {
            assert_eq!(bob.expect(ty).await.get("id"), None);
        }
        bob.sync().await;
    }
}

#[tokio::test]
async fn ids_that_are_too_long_or_not_strings_or_integers_are_invalid() {
    let server = start_default().await;
    let (mut alice, mut bob, _carol) = three(&server).await;
    for id in [json!("x".repeat(65)), json!(1.5), json!({"a": 1}), json!([1]), json!(true)] {
        alice.send(json!({"type": "ping", "id": id})).await;
        let e = alice.expect_error("invalid").await;
        assert_eq!(e.get("id"), None, "{e}");
        assert!(e["message"].as_str().unwrap().contains("id"), "{e}");
    }
    alice.say("r", "fine").await;
    bob.expect_json(room_msg("r", 1, "alice", "fine")).await;
    bob.sync().await;
}

#[tokio::test]
async fn ping_gets_pong_with_the_id() {
    let server = start_default().await;
    let (mut alice, _) = Client::hello(&server, "alice").await;
    alice.send(json!({"type": "ping"})).await;
    alice.expect_json(json!({"type": "pong"})).await;
    for id in [json!("p"), json!(0), json!(9_007_199_254_740_993_i64)] {
        alice.send(json!({"type": "ping", "id": id})).await;
        alice.expect_json(json!({"type": "pong", "id": id})).await;
    }
    alice.sync().await;
}
