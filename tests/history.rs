//! History: `join` with `since` (resume), `history` paging with
//! before/after/limit, for rooms, direct conversations and everyone.
mod common;

use common::*;
use serde_json::{Value, json};

fn room_page(room: &str, from: &str, seqs: impl IntoIterator<Item = u64>) -> Vec<Value> {
    seqs.into_iter().map(|i| body(&room_msg(room, i, from, &format!("m{i}")))).collect()
}

fn seqs(messages: &Value) -> Vec<u64> {
    messages.as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect()
}

/// Says m{i} for each i, waiting for each ack.
async fn say_all(c: &mut Client, room: &str, range: impl IntoIterator<Item = u64>) {
    for i in range {
        let ack = c.say(room, &format!("m{i}")).await;
        assert_eq!(ack["message"]["seq"], i);
    }
}

#[tokio::test]
async fn join_since_delivers_each_missed_message_exactly_once() {
    let server = start(unlimited_config()).await;
    let mut clients = quiet_room(&server, "r", &["alice", "bob"]).await;
    let mut bob = clients.pop().unwrap();
    let mut alice = clients.pop().unwrap();
    say_all(&mut alice, "r", 1..=3).await;
    for i in 1..=3 {
        bob.expect_json(room_msg("r", i, "alice", &format!("m{i}"))).await;
    }
    // bob drops off; alice goes on.
    bob.close().await;
    alice.expect_json(presence("r", "bob", "quit")).await;
    say_all(&mut alice, "r", 4..=8).await;

    // bob resumes after the last seq he saw.
    let (mut bob, _) = Client::hello(&server, "bob").await;
    bob.send(json!({"type": "join", "room": "r", "since": 3, "id": "resume"})).await;
    bob.expect_json(json!({"type": "joined", "id": "resume", "room": "r", "topic": "",
        "members": [member("alice"), member("bob")], "seq": 8,
        "history": room_page("r", "alice", 4..=8), "more": false}))
        .await;
    alice.expect_json(presence("r", "bob", "join")).await;
    // Live delivery carries on from there, without repeats.
    say_all(&mut alice, "r", 9..=9).await;
    bob.expect_json(room_msg("r", 9, "alice", "m9")).await;
    bob.sync().await;

    // Nothing missed: an empty history.
    bob.send(json!({"type": "leave", "room": "r"})).await;
    bob.expect("left").await;
    alice.expect_json(presence("r", "bob", "leave")).await;
    bob.send(json!({"type": "join", "room": "r", "since": 9})).await;
    let joined = bob.expect("joined").await;
    assert_eq!((&joined["seq"], &joined["history"], &joined["more"]), (&json!(9), &json!([]), &json!(false)));
    bob.sync().await;
    alice.expect_json(presence("r", "bob", "join")).await;
    alice.sync().await;
}

#[tokio::test]
async fn join_since_says_more_when_capped() {
    let mut config = unlimited_config();
    config.limits.history_default = 3;
    config.limits.history_max = 5;
    let server = start(config).await;
    let mut alice = Client::in_rooms(&server, "alice", &["r"]).await;
    say_all(&mut alice, "r", 1..=8).await;

    let (mut bob, _) = Client::hello(&server, "bob").await;
    bob.send(json!({"type": "join", "room": "r", "since": 0})).await;
    // The oldest page after `since`, and `more`.
    bob.expect_json(json!({"type": "joined", "room": "r", "topic": "",
        "members": [member("alice"), member("bob")], "seq": 8,
        "history": room_page("r", "alice", 1..=5), "more": true}))
        .await;
    // The rest through `history` `after`.
    bob.send(json!({"type": "history", "room": "r", "after": 5})).await;
    bob.expect_json(json!({"type": "history", "room": "r",
        "messages": room_page("r", "alice", 6..=8), "more": false}))
        .await;
    alice.expect_json(presence("r", "bob", "join")).await;
    say_all(&mut alice, "r", 9..=9).await;
    bob.expect_json(room_msg("r", 9, "alice", "m9")).await;
    bob.sync().await;

    // Without since: the latest `history_default`, or as many as asked
    // up to `history_max`.
    let (mut carol, _) = Client::hello(&server, "carol").await;
    let joined = carol.join("r").await;
    assert_eq!((seqs(&joined["history"]), &joined["more"]), (vec![7, 8, 9], &json!(true)));
    carol.send(json!({"type": "leave", "room": "r"})).await;
    carol.expect("left").await;
    carol.send(json!({"type": "join", "room": "r", "history": 100})).await;
    let joined = carol.expect("joined").await;
    assert_eq!((seqs(&joined["history"]), &joined["more"]), (vec![5, 6, 7, 8, 9], &json!(true)));
    carol.sync().await;
}

#[tokio::test]
async fn join_since_while_messages_flow_has_no_gap_and_no_duplicate() {
    let server = start(unlimited_config()).await;
    for round in 0..5 {
        let room = format!("r{round}");
        let mut alice = Client::in_rooms(&server, &format!("alice{round}"), &[&room]).await;
        let (mut bob, _) = Client::hello(&server, &format!("bob{round}")).await;
        // alice keeps talking while bob joins in the middle.
        for i in 1..=50 {
            alice.send(json!({"type": "say", "room": room, "text": format!("m{i}")})).await;
        }
        bob.send(json!({"type": "join", "room": room, "since": 0})).await;
        for i in 51..=100 {
            alice.send(json!({"type": "say", "room": room, "text": format!("m{i}")})).await;
        }
        let mut acks = Vec::new();
        while acks.len() < 100 {
            let v = alice.recv().await;
            match v["type"].as_str() {
                Some("ack") => acks.push(v["message"]["seq"].as_u64().unwrap()),
                Some("presence") => {}
                _ => panic!("alice: {v}"),
            }
        }
        assert_eq!(acks, (1..=100).collect::<Vec<_>>());

        let joined = bob.expect("joined").await;
        let mut seen = seqs(&joined["history"]);
        assert_eq!(joined["seq"], json!(seen.len()), "{joined}");
        while seen.len() < 100 {
            let m = bob.expect("message").await;
            seen.push(m["seq"].as_u64().unwrap());
            let i = m["seq"].as_u64().unwrap();
            assert_eq!(norm(m), room_msg(&room, i, &alice.nick, &format!("m{i}")));
        }
        assert_eq!(seen, (1..=100).collect::<Vec<_>>());
        bob.sync().await;
    }
}

#[tokio::test]
async fn history_pages_with_before_after_and_limit() {
    let server = start(unlimited_config()).await;
    let mut alice = Client::in_rooms(&server, "alice", &["r"]).await;
    say_all(&mut alice, "r", 1..=10).await;
    let (mut carol, _) = Client::hello(&server, "carol").await; // not a member
    let cases: [(Value, Vec<u64>, bool); 9] = [
        (json!({"limit": 3}), vec![8, 9, 10], true),
        (json!({"before": 8, "limit": 3}), vec![5, 6, 7], true),
        (json!({"before": 3, "limit": 3}), vec![1, 2], false),
        (json!({"before": 1}), vec![], false),
        (json!({"after": 7, "limit": 2}), vec![8, 9], true),
        (json!({"after": 8}), vec![9, 10], false),
        (json!({"after": 10}), vec![], false),
        (json!({"after": 0, "limit": 3}), vec![1, 2, 3], true),
        (json!({}), (1..=10).collect(), false),
    ];
    for (i, (params, page, more)) in cases.into_iter().enumerate() {
        let mut frame = params.clone();
        frame["type"] = json!("history");
        frame["room"] = json!("r");
        frame["id"] = json!(i);
        carol.send(frame).await;
        let v = carol.recv().await;
        assert_eq!(
            norm(v),
            json!({"type": "history", "id": i, "room": "r",
                "messages": room_page("r", "alice", page), "more": more}),
            "{params}"
        );
    }
    carol.sync().await;
}

#[tokio::test]
async fn history_pages_default_to_50_and_hold_at_most_200() {
    let server = start(unlimited_config()).await;
    let mut alice = Client::in_rooms(&server, "alice", &["r"]).await;
    for i in 1..=210 {
        alice.send(json!({"type": "say", "room": "r", "text": format!("m{i}")})).await;
    }
    for _ in 1..=210 {
        alice.expect("ack").await;
    }
    alice.send(json!({"type": "history", "room": "r"})).await;
    let v = alice.expect("history").await;
    assert_eq!((seqs(&v["messages"]), &v["more"]), ((161..=210).collect(), &json!(true)));
    alice.send(json!({"type": "history", "room": "r", "limit": 1000})).await;
    let v = alice.expect("history").await;
    assert_eq!((seqs(&v["messages"]), &v["more"]), ((11..=210).collect(), &json!(true)));
    alice.send(json!({"type": "history", "room": "r", "after": 0, "limit": 201})).await;
    let v = alice.expect("history").await;
    assert_eq!((seqs(&v["messages"]), &v["more"]), ((1..=200).collect(), &json!(true)));
    let (mut bob, _) = Client::hello(&server, "bob").await;
    bob.send(json!({"type": "join", "room": "r", "history": 500})).await;
    let joined = bob.expect("joined").await;
    assert_eq!((seqs(&joined["history"]), &joined["more"]), ((11..=210).collect(), &json!(true)));
    bob.sync().await;
}

#[tokio::test]
async fn history_of_direct_conversations_and_of_everyone() {
    let server = start(unlimited_config()).await;
    let (mut alice, _) = Client::hello(&server, "alice").await;
    let (mut bob, _) = Client::hello(&server, "bob").await;
    let (mut carol, _) = Client::hello(&server, "carol").await;
    for i in 1..=5 {
        let (from, to) = if i % 2 == 1 { (&mut alice, &mut bob) } else { (&mut bob, &mut alice) };
        from.say_to(&to.nick.clone(), &format!("d{i}")).await;
        to.expect("message").await;
    }
    let dm = |i: u64| {
        let (from, to) = if i % 2 == 1 { ("alice", "bob") } else { ("bob", "alice") };
        body(&dm_msg(to, i, from, &format!("d{i}")))
    };
    // Each party names the other with `with`.
    bob.send(json!({"type": "history", "with": "alice", "limit": 2, "id": 1})).await;
    bob.expect_json(json!({"type": "history", "id": 1, "with": "alice",
        "messages": [dm(4), dm(5)], "more": true}))
        .await;
    alice.send(json!({"type": "history", "with": "bob", "before": 4, "id": 2})).await;
    alice
        .expect_json(json!({"type": "history", "id": 2, "with": "bob",
            "messages": [dm(1), dm(2), dm(3)], "more": false}))
        .await;
    alice.send(json!({"type": "history", "with": "bob", "after": 3})).await;
    alice
        .expect_json(json!({"type": "history", "with": "bob",
            "messages": [dm(4), dm(5)], "more": false}))
        .await;
    // A third party sees only their own conversation with each.
    carol.send(json!({"type": "history", "with": "alice"})).await;
    carol.expect_json(json!({"type": "history", "with": "alice", "messages": [], "more": false})).await;

    // Everyone's stream.
    for i in 1..=3 {
        carol.send(json!({"type": "say", "everyone": true, "text": format!("e{i}")})).await;
        carol.expect("ack").await;
        alice.expect("message").await;
        bob.expect("message").await;
    }
    let e = |i: u64| body(&everyone_msg(i, "carol", &format!("e{i}")));
    alice.send(json!({"type": "history", "everyone": true, "limit": 2})).await;
    alice
        .expect_json(json!({"type": "history", "everyone": true,
            "messages": [e(2), e(3)], "more": true}))
        .await;
    alice.send(json!({"type": "history", "everyone": true, "after": 1})).await;
    alice
        .expect_json(json!({"type": "history", "everyone": true,
            "messages": [e(2), e(3)], "more": false}))
        .await;
    for c in [&mut alice, &mut bob, &mut carol] {
        c.sync().await;
    }
}

#[tokio::test]
async fn history_of_rooms_that_are_empty_or_unknown() {
    let server = start_default().await;
    let mut alice = Client::in_rooms(&server, "alice", &["r"]).await;
    alice.say("r", "m1").await;
    alice.say("r", "m2").await;
    alice.send(json!({"type": "leave", "room": "r"})).await;
    alice.expect("left").await;

    // The room has no members now; its messages are still there.
    let (mut bob, _) = Client::hello(&server, "bob").await;
    bob.send(json!({"type": "history", "room": "r"})).await;
    bob.expect_json(json!({"type": "history", "room": "r",
        "messages": room_page("r", "alice", 1..=2), "more": false}))
        .await;
    bob.send(json!({"type": "history", "room": "never", "id": 1})).await;
    assert_eq!(bob.expect_error("no_such_room").await["id"], 1);

    // Rejoining continues the room's sequence.
    let joined = bob.join("r").await;
    assert_eq!((&joined["seq"], seqs(&joined["history"])), (&json!(2), vec![1, 2]));
    let ack = bob.say("r", "m3").await;
    assert_eq!(ack["message"]["seq"], 3);
    bob.sync().await;
    alice.sync().await;
}
