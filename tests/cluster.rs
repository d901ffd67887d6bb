//! Clustering: several nodes sharing one Redis and one database behave, to
//! their users, like one server. Clients are spread over the nodes (each
//! test checks `welcome.server.node`), and what the single-node tests assert
//! must hold across nodes: rooms, presence, `who`, direct messages, messages
//! to everyone, typing, events, read receipts, edits, nick uniqueness,
//! history (before and after the archiver has moved messages into the
//! database). Failures (a node stopped or killed, Redis in trouble) are in
//! `tests/cluster_faults.rs`; the cluster helpers in `tests/common/cluster.rs`.
//!
//! Every test needs `TEST_REDIS_URL` and is skipped (passing, with a
//! `SKIPPED` line) without it. Each cluster uses a Redis key prefix of its
//! own, so tests running in parallel on one Redis never meet; the keys are
//! deleted when a test ends well.
//!
//! Across nodes, `Client::sync` proves only that nothing is queued for the
//! session on its own node: a frame from another node may still be in
//! flight. To show that something did not arrive, a test awaits a later
//! frame that must come after it (room, DM and everyone messages arrive in
//! `seq` order).
mod common;

use std::time::Duration;

use common::cluster::*;
use common::*;
use serde_json::{Value, json};

// ---- rooms -------------------------------------------------------------------

#[tokio::test]
async fn room_messages_reach_members_on_every_node_in_seq_order() {
    let Some(cluster) = Cluster::start("room_messages_reach_members_on_every_node_in_seq_order", 3, |_| {}).await
    else {
        return;
    };
    // Each sees the others join; `joined.members` lists members on every node.
    let [mut alice, mut bob, mut carol] = gather(&cluster, "lobby", [(1, "alice"), (2, "bob"), (3, "carol")]).await;

    // One at a time: the ack and every other member's message carry the same seq.
    say_seen(&mut alice, "lobby", "hello from n1", 1, &mut [&mut bob, &mut carol]).await;
    say_seen(&mut bob, "lobby", "hello from n2", 2, &mut [&mut alice, &mut carol]).await;
    say_seen(&mut carol, "lobby", "hello from n3", 3, &mut [&mut alice, &mut bob]).await;
    // The room's name in any case.
    alice.send(json!({"type": "say", "room": "LOBBY", "text": "case", "id": "c"})).await;
    alice.expect_json(ack_of(&room_msg("lobby", 4, "alice", "case"), json!("c"))).await;
    for c in [&mut bob, &mut carol] {
        c.expect_json(room_msg("lobby", 4, "alice", "case")).await;
    }

    // All three at once, without waiting: every receiver sees every other
    // message once, gap-free and in seq order.
    const PER: usize = 50;
    let tasks: Vec<_> = [alice, bob, carol]
        .into_iter()
        .map(|c| tokio::spawn(burst(c, json!({"room": "lobby"}), PER, 2 * PER)))
        .collect();
    let mut bursts = Vec::new();
    for t in tasks {
        bursts.push(t.await.unwrap());
    }
    check_bursts(&bursts, 5);
    let [mut alice, mut bob, mut carol] = match bursts.into_iter().map(|b| b.client).collect::<Vec<_>>().try_into() {
        Ok(a) => a,
        Err(_) => unreachable!(),
    };

    // Nothing else was in flight: the next message is the next frame everywhere.
    let next = 5 + 3 * PER as u64;
    say_seen(&mut bob, "lobby", "the end", next, &mut [&mut alice, &mut carol]).await;
    for c in [&mut alice, &mut bob, &mut carol] {
        c.sync().await;
    }
    cluster.finish().await;
}

/// A node hands Redis its messages in batches (eight at most here, so a
/// burst makes many), and a channel's messages of one batch travel
/// together. One session's burst, sent without waiting: its acks come in
/// the order sent, each with the next seq, and every other member, on
/// either node, gets the messages in that order. Then two sessions on
/// different nodes say into two rooms at once, each alternating between
/// them: in each room the seqs are gap-free, each sender's messages are
/// acked in the order sent, and every member on either node sees the
/// room's messages in the same (seq) order.
#[tokio::test]
async fn batched_says_keep_each_rooms_order_on_every_node() {
    let Some(cluster) =
        Cluster::start("batched_says_keep_each_rooms_order_on_every_node", 2, |c| c.cluster.publish_batch = 8).await
    else {
        return;
    };
    let [mut alice, mut bob, mut carol, mut dave] =
        gather(&cluster, "one", [(1, "alice"), (2, "bob"), (1, "carol"), (2, "dave")]).await;

    const N: u64 = 120;
    for i in 0..N {
        alice.send(json!({"type": "say", "room": "one", "text": format!("a{i}"), "id": i})).await;
    }
    let mut acked = Vec::new();
    for i in 0..N {
        let ack = alice.expect_json(ack_of(&room_msg("one", i + 1, "alice", &format!("a{i}")), json!(i))).await;
        acked.push(ack["message"].clone());
    }
    for c in [&mut bob, &mut carol, &mut dave] {
        for (i, m) in acked.iter().enumerate() {
            let got = c.expect_json(room_msg("one", i as u64 + 1, "alice", &format!("a{i}"))).await;
            assert_eq!(&body(&got), m, "{}: message and ack differ", c.nick);
        }
    }

    // Everyone in a second room too.
    for (k, c) in [&mut alice, &mut bob, &mut carol, &mut dave].into_iter().enumerate() {
        c.send(json!({"type": "join", "room": "two", "id": "j"})).await;
        assert_eq!(c.expect("joined").await["members"].as_array().map(Vec::len), Some(k + 1), "{}", c.nick);
    }
    for (c, joins) in [(&mut alice, 3), (&mut bob, 2), (&mut carol, 1)] {
        c.expect_joins("two", joins).await;
    }

    // alice (n1) and bob (n2) at once, each alternating between the rooms.
    const M: u64 = 80;
    let senders = [alice, bob].map(|c| tokio::spawn(alternate(c, M)));
    let watchers = [carol, dave].map(|c| tokio::spawn(watch_rooms(c, 2 * M as usize)));
    let mut bursts = Vec::new();
    for t in senders {
        bursts.push(t.await.unwrap());
    }
    let mut watched = Vec::new();
    for t in watchers {
        watched.push(t.await.unwrap());
    }
    for (room, first) in [("one", N + 1), ("two", 1)] {
        let mut by_seq = std::collections::BTreeMap::new();
        for b in &bursts {
            let acks: Vec<&Value> = b.acks.iter().filter(|a| a["message"]["room"] == room).collect();
            let ids: Vec<u64> = acks.iter().map(|a| a["id"].as_u64().unwrap()).collect();
            let seqs: Vec<u64> = acks.iter().map(|a| seq_of(&a["message"])).collect();
            assert_eq!(acks.len() as u64, M / 2, "{} in {room}: {ids:?}", b.client.nick);
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "{} in {room}: acks out of order: {ids:?}", b.client.nick);
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{} in {room}: seqs out of order: {seqs:?}", b.client.nick);
            for a in acks {
                assert_eq!(a["message"]["text"], format!("{} {}", b.client.nick, a["id"]), "{a}");
                by_seq.insert(seq_of(&a["message"]), a["message"].clone());
            }
        }
        let seqs: Vec<u64> = by_seq.keys().copied().collect();
        assert_eq!(seqs, (first..first + M).collect::<Vec<_>>(), "{room}: the acks' seqs are not gap-free");
        // What each member saw of the room: every message not its own, in
        // seq order, each the same as its ack.
        let members =
            bursts.iter().map(|b| (&b.client.nick, &b.messages)).chain(watched.iter().map(|(c, m)| (&c.nick, m)));
        for (nick, got) in members {
            let got: Vec<Value> = got.iter().filter(|m| m["room"] == room).map(body).collect();
            let expected: Vec<Value> = by_seq.values().filter(|m| m["from"] != nick.as_str()).cloned().collect();
            assert_eq!(got, expected, "{nick} in {room}");
        }
    }
    let mut clients: Vec<Client> =
        bursts.into_iter().map(|b| b.client).chain(watched.into_iter().map(|(c, _)| c)).collect();
    let [alice, bob, carol, dave] = &mut clients[..] else { unreachable!() };
    say_seen(bob, "two", "the end", M + 1, &mut [alice, carol, dave]).await;
    cluster.finish().await;
}

/// Sends `count` says without waiting, the even ones to room `one`, the
/// odd ones to room `two`, then reads until every one is acked and the
/// other sender's `count` messages have arrived.
async fn alternate(mut c: Client, count: u64) -> Burst {
    for i in 0..count {
        let room = if i % 2 == 0 { "one" } else { "two" };
        c.send(json!({"type": "say", "room": room, "text": format!("{} {i}", c.nick), "id": i})).await;
    }
    let (mut acks, mut messages) = (Vec::new(), Vec::new());
    while acks.len() < count as usize || messages.len() < count as usize {
        let v = c.recv().await;
        match v["type"].as_str() {
            Some("ack") => acks.push(v),
            Some("message") => messages.push(v),
            _ => panic!("{}: unexpected {v}", c.nick),
        }
    }
    Burst { client: c, acks, messages }
}

/// The next `count` frames, all of which must be messages.
async fn watch_rooms(mut c: Client, count: usize) -> (Client, Vec<Value>) {
    let mut messages = Vec::with_capacity(count);
    while messages.len() < count {
        let v = c.recv().await;
        assert_eq!(v["type"], "message", "{}: {v}", c.nick);
        messages.push(v);
    }
    (c, messages)
}

#[tokio::test]
async fn who_rooms_topic_leave_and_quit_are_seen_on_every_node() {
    let Some(cluster) = Cluster::start("who_rooms_topic_leave_and_quit_are_seen_on_every_node", 3, |_| {}).await else {
        return;
    };
    let [mut alice, mut bob, mut carol] = gather(&cluster, "lobby", [(1, "alice"), (2, "bob"), (3, "carol")]).await;
    let mut dave = cluster.hello(2, "dave").await; // in no room

    // `who` on any node, member or not, lists the members of every node.
    let all = json!([member("alice"), member("bob"), member("carol")]);
    for c in [&mut dave, &mut alice, &mut carol] {
        c.send(json!({"type": "who", "room": "Lobby", "id": "w"})).await;
        c.expect_json(json!({"type": "room_status", "id": "w", "room": "lobby", "topic": "", "count": 3,
            "members": all}))
            .await;
    }
    // `rooms` counts them too.
    dave.send(json!({"type": "rooms", "id": "r"})).await;
    dave.expect_json(json!({"type": "rooms", "id": "r", "rooms": [{"name": "lobby", "topic": "", "members": 3}]}))
        .await;

    // A topic set on n1 reaches members on n2 and n3 and shows in `who` on n2.
    alice.send(json!({"type": "topic", "room": "lobby", "topic": "cluster day", "id": "t"})).await;
    let topic = json!({"type": "topic", "room": "lobby", "topic": "cluster day", "by": "alice"});
    alice.expect_json(topic.clone()).await;
    alice.expect_json(json!({"type": "ack", "id": "t"})).await;
    bob.expect_json(topic.clone()).await;
    carol.expect_json(topic).await;

    // Away on n2 is seen by a watcher on n2 and in `who`.
    dave.send(json!({"type": "watch", "nicks": ["bob"]})).await;
    dave.expect_json(status("bob", true, false)).await;
    alice.send(json!({"type": "watch", "nicks": ["bob"]})).await;
    alice.expect_json(status("bob", true, false)).await;
    bob.send(json!({"type": "away", "away": true, "id": "a"})).await;
    bob.expect_json(json!({"type": "ack", "id": "a"})).await;
    dave.expect_json(status("bob", true, true)).await;
    alice.expect_json(status("bob", true, true)).await;
    let mut away_bob = member("bob");
    away_bob["away"] = json!(true);
    alice.send(json!({"type": "who", "room": "lobby", "id": 2})).await;
    alice
        .expect_json(json!({"type": "room_status", "id": 2, "room": "lobby", "topic": "cluster day", "count": 3,
            "members": [member("alice"), away_bob, member("carol")]}))
        .await;

    // bob leaves: members on n1 and n3 see it; `who` on n1 no longer lists him.
    bob.send(json!({"type": "leave", "room": "lobby", "id": "l"})).await;
    bob.expect_json(json!({"type": "left", "id": "l", "room": "lobby"})).await;
    alice.expect_json(presence("lobby", "bob", "leave")).await;
    carol.expect_json(presence("lobby", "bob", "leave")).await;
    alice.send(json!({"type": "who", "room": "lobby", "id": 3})).await;
    alice
        .expect_json(json!({"type": "room_status", "id": 3, "room": "lobby", "topic": "cluster day", "count": 2,
            "members": [member("alice"), member("carol")]}))
        .await;

    // carol disconnects from n3: a `quit` on n1.
    carol.close().await;
    alice.expect_json(presence("lobby", "carol", "quit")).await;
    alice.send(json!({"type": "who", "room": "lobby", "id": 4})).await;
    alice
        .expect_json(json!({"type": "room_status", "id": 4, "room": "lobby", "topic": "cluster day", "count": 1,
            "members": [member("alice")]}))
        .await;

    // bob, gone from the room, gets nothing from it: the room's next
    // message reaches alice, and a DM sent after it reaches bob first.
    alice.say("lobby", "bob is gone").await;
    alice.say_to("bob", "are you there?").await;
    bob.expect_json(dm_msg("bob", 1, "alice", "are you there?")).await;

    // The last member leaves: the room has no members anywhere.
    alice.send(json!({"type": "leave", "room": "lobby"})).await;
    alice.expect("left").await;
    alice.send(json!({"type": "who", "room": "lobby", "id": 5})).await;
    assert_eq!(alice.expect_error("no_such_room").await["id"], 5);
    alice.send(json!({"type": "rooms", "id": 6})).await;
    alice.expect_json(json!({"type": "rooms", "id": 6, "rooms": []})).await;
    for c in [&mut alice, &mut bob, &mut dave] {
        c.sync().await;
    }
    cluster.finish().await;
}

#[tokio::test]
async fn a_user_who_leaves_and_rejoins_at_once_hears_nothing_about_itself() {
    let Some(cluster) =
        Cluster::start("a_user_who_leaves_and_rejoins_at_once_hears_nothing_about_itself", 2, |_| {}).await
    else {
        return;
    };
    let [mut alice, mut bob] = gather(&cluster, "r", [(1, "alice"), (2, "bob")]).await;
    const ROUNDS: usize = 50;
    // bob leaves and comes back at once (both frames sent together), again
    // and again: his next frames are the replies, never a `presence` about
    // himself.
    for i in 0..ROUNDS {
        bob.send(json!({"type": "leave", "room": "r", "id": format!("l{i}")})).await;
        bob.send(json!({"type": "join", "room": "r", "history": 0, "id": format!("j{i}")})).await;
        bob.expect_json(json!({"type": "left", "id": format!("l{i}"), "room": "r"})).await;
        let joined = bob.expect("joined").await;
        assert_eq!(joined["id"], format!("j{i}"));
    }
    // alice on n1 sees each leave and join.
    for _ in 0..ROUNDS {
        alice.expect_json(presence("r", "bob", "leave")).await;
        alice.expect_json(presence("r", "bob", "join")).await;
    }
    // The room's next message comes after whatever those sent to bob.
    say_seen(&mut alice, "r", "still here?", 1, &mut [&mut bob]).await;
    alice.sync().await;
    bob.sync().await;
    cluster.finish().await;
}

#[tokio::test]
async fn watch_follows_a_user_on_another_node() {
    let Some(cluster) = Cluster::start("watch_follows_a_user_on_another_node", 3, |_| {}).await else {
        return;
    };
    let mut carol = cluster.hello(3, "carol").await;
    let mut bob = cluster.hello(2, "bob").await;
    for w in [&mut carol, &mut bob] {
        w.send(json!({"type": "watch", "nicks": ["erin"], "id": "w"})).await;
        w.expect_json(never_seen("erin")).await;
        w.expect_json(json!({"type": "ack", "id": "w"})).await;
    }

    // erin comes online on n1, goes away and back, and disconnects.
    let mut erin = cluster.hello(1, "erin").await;
    for w in [&mut carol, &mut bob] {
        w.expect_json(status("erin", true, false)).await;
    }
    erin.send(json!({"type": "away", "away": true})).await;
    for w in [&mut carol, &mut bob] {
        w.expect_json(status("erin", true, true)).await;
    }
    erin.send(json!({"type": "away", "away": false})).await;
    for w in [&mut carol, &mut bob] {
        w.expect_json(status("erin", true, false)).await;
    }
    erin.close().await;
    for w in [&mut carol, &mut bob] {
        w.expect_json(status("erin", false, false)).await;
    }

    // Watching an online user on another node reports it at once.
    let mut erin = cluster.hello(2, "erin").await;
    for w in [&mut carol, &mut bob] {
        w.expect_json(status("erin", true, false)).await;
    }
    let mut dave = cluster.hello(1, "dave").await;
    dave.send(json!({"type": "watch", "nicks": ["ERIN", "carol"], "id": 1})).await;
    dave.expect_json(status("erin", true, false)).await;
    dave.expect_json(status("carol", true, false)).await;
    dave.expect_json(json!({"type": "ack", "id": 1})).await;

    // bob stops watching; carol does not: erin's disconnect reaches carol only.
    bob.send(json!({"type": "unwatch", "nicks": ["erin"], "id": "u"})).await;
    bob.expect_json(json!({"type": "ack", "id": "u"})).await;
    erin.close().await;
    carol.expect_json(status("erin", false, false)).await;
    dave.expect_json(status("erin", false, false)).await;
    for c in [&mut carol, &mut bob, &mut dave] {
        c.sync().await;
    }
    cluster.finish().await;
}

// ---- direct messages and messages to everyone --------------------------------

#[tokio::test]
async fn direct_messages_reach_every_session_of_both_users_on_any_node() {
    let Some(cluster) =
        Cluster::start("direct_messages_reach_every_session_of_both_users_on_any_node", 3, |_| {}).await
    else {
        return;
    };
    let mut alice = cluster.hello(1, "alice").await;
    // bob is a site user with a session on n2 and another on n3.
    let bob_claims = claims("site-bob", "bob");
    let mut bob2 = cluster.site_user(2, &bob_claims).await;
    let mut bob3 = cluster.site_user(3, &bob_claims).await;
    let mut carol = cluster.hello(3, "carol").await;

    alice.send(json!({"type": "say", "to": "bob", "text": "psst", "id": 1})).await;
    let expected = dm_msg("bob", 1, "alice", "psst");
    alice.expect_json(ack_of(&expected, json!(1))).await;
    bob2.expect_json(expected.clone()).await;
    bob3.expect_json(expected).await;

    // Answered from n2: alice gets it, and so does bob's session on n3.
    bob2.send(json!({"type": "say", "to": "ALICE", "text": "what?", "id": 2})).await;
    let expected = dm_msg("alice", 2, "bob", "what?");
    bob2.expect_json(ack_of(&expected, json!(2))).await;
    alice.expect_json(expected.clone()).await;
    bob3.expect_json(expected).await;
    bob3.send(json!({"type": "say", "to": "alice", "text": "from my phone", "id": 3})).await;
    let expected = dm_msg("alice", 3, "bob", "from my phone");
    bob3.expect_json(ack_of(&expected, json!(3))).await;
    alice.expect_json(expected.clone()).await;
    bob2.expect_json(expected).await;

    // Another pair has its own sequence.
    carol.say_to("bob", "hey").await;
    bob2.expect_json(dm_msg("bob", 1, "carol", "hey")).await;
    bob3.expect_json(dm_msg("bob", 1, "carol", "hey")).await;

    // alice and bob (n2) at once, without waiting; bob's n3 session reads.
    const PER: usize = 30;
    let tasks = vec![
        tokio::spawn(burst(alice, json!({"to": "bob"}), PER, PER)),
        tokio::spawn(burst(bob2, json!({"to": "alice"}), PER, PER)),
        tokio::spawn(burst(bob3, json!({}), 0, 2 * PER)),
    ];
    let mut bursts = Vec::new();
    for t in tasks {
        bursts.push(t.await.unwrap());
    }
    check_bursts(&bursts, 4);
    let mut it = bursts.into_iter().map(|b| b.client);
    let (mut alice, mut bob2, mut bob3) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    let next = 4 + 2 * PER as u64;
    alice.say_to("bob", "bye").await;
    bob2.expect_json(dm_msg("bob", next, "alice", "bye")).await;
    bob3.expect_json(dm_msg("bob", next, "alice", "bye")).await;

    // The whole conversation, read on n3: every message once, gap-free.
    bob3.send(json!({"type": "history", "with": "alice", "limit": 200, "id": "h"})).await;
    let h = bob3.expect("history").await;
    assert_eq!((&h["with"], &h["more"]), (&json!("alice"), &json!(false)), "{h}");
    let seqs: Vec<u64> = h["messages"].as_array().unwrap().iter().map(seq_of).collect();
    assert_eq!(seqs, (1..=next).collect::<Vec<_>>());

    // A DM to someone seen before, now offline, is kept for them; a DM to
    // a nick never seen is refused.
    let (mut dave, welcome) = Client::hello(cluster.node(2), "dave").await;
    let daves_token = welcome["token"].as_str().expect("welcome.token").to_string();
    alice.send(json!({"type": "watch", "nicks": ["dave"]})).await;
    alice.expect_json(status("dave", true, false)).await;
    dave.close().await;
    alice.expect_json(status("dave", false, false)).await;
    let ack = alice.say_to("dave", "for later").await;
    assert_eq!(norm(ack["message"].clone()), body(&dm_msg("dave", 1, "alice", "for later")));
    alice.send(json!({"type": "say", "to": "nobody", "text": "hello?", "id": "n"})).await;
    assert_eq!(alice.expect_error("no_such_user").await["id"], "n");
    // dave comes back as himself (a guest, within its grace period) with its token.
    let (mut dave, _) = Client::with_token(cluster.node(3), &daves_token).await;
    alice.expect_json(status("dave", true, false)).await;
    dave.send(json!({"type": "history", "with": "alice", "id": "h"})).await;
    dave.expect_json(json!({"type": "history", "id": "h", "with": "alice",
        "messages": [body(&dm_msg("dave", 1, "alice", "for later"))], "more": false}))
        .await;
    for c in [&mut alice, &mut bob2, &mut bob3, &mut carol, &mut dave] {
        c.sync().await;
    }
    cluster.finish().await;
}

#[tokio::test]
async fn messages_to_everyone_reach_users_on_every_node() {
    let Some(cluster) = Cluster::start("messages_to_everyone_reach_users_on_every_node", 3, |_| {}).await else {
        return;
    };
    let mut alice = cluster.hello(1, "alice").await;
    let mut bob = cluster.hello(2, "bob").await;
    let mut carol = cluster.hello(3, "carol").await;
    let mut dave = cluster.hello(1, "dave").await;

    alice.send(json!({"type": "say", "everyone": true, "text": "attention", "id": "e"})).await;
    let expected = everyone_msg(1, "alice", "attention");
    alice.expect_json(ack_of(&expected, json!("e"))).await;
    for c in [&mut bob, &mut carol, &mut dave] {
        c.expect_json(expected.clone()).await;
    }
    carol.send(json!({"type": "say", "everyone": true, "text": "me too", "id": "e"})).await;
    let expected = everyone_msg(2, "carol", "me too");
    carol.expect_json(ack_of(&expected, json!("e"))).await;
    for c in [&mut alice, &mut bob, &mut dave] {
        c.expect_json(expected.clone()).await;
    }

    // Its own sequence, separate from the rooms'.
    bob.join("r").await;
    let ack = bob.say("r", "in a room").await;
    assert_eq!(ack["message"]["seq"], 1);

    // Someone arriving later on n2 gets what follows, and can read what came before.
    let mut erin = cluster.hello(2, "erin").await;
    erin.send(json!({"type": "history", "everyone": true, "id": "h"})).await;
    erin.expect_json(json!({"type": "history", "id": "h", "everyone": true, "messages": [
        body(&everyone_msg(1, "alice", "attention")), body(&everyone_msg(2, "carol", "me too"))], "more": false}))
        .await;
    dave.send(json!({"type": "say", "everyone": true, "text": "welcome erin"})).await;
    let expected = everyone_msg(3, "dave", "welcome erin");
    dave.expect_json(json!({"type": "ack", "message": body(&expected)})).await;
    for c in [&mut alice, &mut bob, &mut carol, &mut erin] {
        c.expect_json(expected.clone()).await;
    }
    for c in [&mut alice, &mut bob, &mut carol, &mut dave, &mut erin] {
        c.sync().await;
    }
    cluster.finish().await;
}

// ---- ephemeral frames --------------------------------------------------------

#[tokio::test]
async fn typing_events_and_read_receipts_cross_nodes() {
    let Some(cluster) = Cluster::start("typing_events_and_read_receipts_cross_nodes", 3, |_| {}).await else {
        return;
    };
    // alice (n1) and bob (a site user on n2 and n3) in room r; carol (n3) elsewhere.
    let mut alice = cluster.hello(1, "alice").await;
    alice.join("r").await;
    let bob_claims = claims("site-bob", "bob");
    let mut bob2 = cluster.site_user(2, &bob_claims).await;
    let joined = bob2.join("r").await;
    assert_eq!(norm(joined["members"].clone()), json!([member("alice"), member("bob")]));
    alice.expect_json(presence("r", "bob", "join")).await;
    let mut bob3 = cluster.site_user(3, &bob_claims).await;
    bob3.join("r").await; // bob's second session: nobody is told
    let mut carol = cluster.hello(3, "carol").await;
    carol.join("other").await;

    // Typing on n1 reaches both of bob's sessions; the message clears it first.
    let typing = |active| json!({"type": "typing", "room": "r", "nick": "alice", "active": active});
    alice.send(json!({"type": "typing", "room": "r", "active": true})).await;
    bob2.expect_json(typing(true)).await;
    bob3.expect_json(typing(true)).await;
    alice.say("r", "done typing").await;
    for b in [&mut bob2, &mut bob3] {
        b.expect_json(typing(false)).await;
        b.expect_json(room_msg("r", 1, "alice", "done typing")).await;
    }
    // Without typing first, no `active:false`.
    alice.say("r", "again").await;
    for b in [&mut bob2, &mut bob3] {
        b.expect_json(room_msg("r", 2, "alice", "again")).await;
    }

    // Events in the room, and to a user on another node.
    let data = json!({"board": [[1, 0], [0, 2]], "turn": "bob"});
    alice.send(json!({"type": "event", "room": "r", "name": "move", "data": data})).await;
    for b in [&mut bob2, &mut bob3] {
        b.expect_json(json!({"type": "event", "room": "r", "nick": "alice", "name": "move", "data": data})).await;
    }
    alice.send(json!({"type": "event", "to": "carol", "name": "ring", "data": {"n": 1}, "id": "ev"})).await;
    alice.expect_json(json!({"type": "ack", "id": "ev"})).await;
    carol
        .expect_json(json!({"type": "event", "from": "alice", "nick": "alice", "name": "ring", "data": {"n": 1}}))
        .await;
    alice.send(json!({"type": "event", "to": "nobody", "name": "ring", "data": 1, "id": "x"})).await;
    assert_eq!(alice.expect_error("no_such_user").await["id"], "x");
    // Events are not stored.
    carol.send(json!({"type": "history", "room": "r", "id": "h"})).await;
    let h = carol.expect("history").await;
    assert_eq!(h["messages"].as_array().map(Vec::len), Some(2), "{h}");

    // A read receipt from bob on n2 reaches alice on n1 and bob's own session on n3.
    bob2.send(json!({"type": "read", "room": "r", "seq": 2})).await;
    let read = json!({"type": "read", "room": "r", "nick": "bob", "seq": 2});
    alice.expect_json(read.clone()).await;
    bob3.expect_json(read).await;

    // Typing and read receipts in a DM across nodes.
    alice.send(json!({"type": "typing", "to": "carol", "active": true})).await;
    let dm_typing = |active| json!({"type": "typing", "from": "alice", "nick": "alice", "active": active});
    carol.expect_json(dm_typing(true)).await;
    alice.say_to("carol", "hi carol").await;
    carol.expect_json(dm_typing(false)).await;
    carol.expect_json(dm_msg("carol", 1, "alice", "hi carol")).await;
    carol.send(json!({"type": "read", "with": "alice", "seq": 1, "id": "rd"})).await;
    carol.expect_json(json!({"type": "ack", "id": "rd"})).await;
    alice.expect_json(json!({"type": "read", "with": "carol", "nick": "carol", "seq": 1})).await;

    // Nothing else was on its way to bob: the room's next message comes next.
    alice.say("r", "last").await;
    for b in [&mut bob2, &mut bob3] {
        b.expect_json(room_msg("r", 3, "alice", "last")).await;
    }
    for c in [&mut alice, &mut bob2, &mut bob3, &mut carol] {
        c.sync().await;
    }
    cluster.finish().await;
}

#[tokio::test]
async fn edits_and_deletions_cross_nodes_and_reach_the_database() {
    // The archiver of n1 and n2 never runs: messages stay in Redis until n3
    // (which syncs often) is started.
    let Some(mut cluster) = Cluster::start("edits_and_deletions_cross_nodes_and_reach_the_database", 2, |c| {
        c.cluster.sync_interval = Duration::from_secs(3600)
    })
    .await
    else {
        return;
    };
    let [mut alice, mut bob] = gather(&cluster, "r", [(1, "alice"), (2, "bob")]).await;

    // Edit on n1 a message still in Redis: bob on n2 sees it, and history.
    let ack = alice.say("r", "helo").await;
    let first = ack["message"]["msg_id"].clone();
    bob.expect("message").await;
    alice.send(json!({"type": "edit", "msg_id": first, "text": " hello ", "id": "e"})).await;
    alice.expect_json(json!({"type": "ack", "id": "e"})).await;
    let edited =
        bob.expect_json(json!({"type": "edited", "msg_id": ID, "room": "r", "text": "hello", "edited_at": MS})).await;
    assert_eq!(edited["msg_id"], first);
    // Not someone else's, from any node.
    bob.send(json!({"type": "edit", "msg_id": first, "text": "pwned", "id": 2})).await;
    assert_eq!(bob.expect_error("forbidden").await["id"], 2);

    let ack = alice.say("r", "oops").await;
    let second = ack["message"]["msg_id"].clone();
    bob.expect_json(room_msg("r", 2, "alice", "oops")).await;
    alice.send(json!({"type": "delete", "msg_id": second, "id": "d"})).await;
    alice.expect_json(json!({"type": "ack", "id": "d"})).await;
    bob.expect_json(json!({"type": "deleted", "msg_id": ID, "room": "r"})).await;

    let mut edited_first = body(&room_msg("r", 1, "alice", "hello"));
    edited_first["edited_at"] = json!(MS);
    let mut gone = body(&room_msg("r", 2, "alice", ""));
    gone["deleted"] = json!(true);
    bob.send(json!({"type": "history", "room": "r", "id": "h"})).await;
    bob.expect_json(json!({"type": "history", "id": "h", "room": "r", "messages": [edited_first, gone],
        "more": false}))
        .await;

    // In a DM, each party sees it `with` the other.
    let ack = alice.say_to("bob", "typo").await;
    bob.expect("message").await;
    alice.send(json!({"type": "edit", "msg_id": ack["message"]["msg_id"], "text": "fixed", "id": "e2"})).await;
    alice.expect_json(json!({"type": "ack", "id": "e2"})).await;
    bob.expect_json(json!({"type": "edited", "msg_id": ID, "with": "alice", "text": "fixed", "edited_at": MS})).await;

    // The archiver moves them into the database as they are now.
    let mut n3 = cluster.config(3);
    n3.cluster.sync_interval = Duration::from_millis(100);
    cluster.start_node(3, n3).await;
    // (The edit and the deletion were made while the messages were in
    // Redis only: the database must end up with them, not the originals.)
    let rows = poll_db(cluster.db(), "r", "both messages of r, edited and deleted", |rows| {
        rows.len() == 2 && rows[0].text == "hello" && rows[0].edited_at.is_some() && rows[1].deleted
    })
    .await;
    assert_eq!((rows[0].msg_id.as_str(), rows[1].msg_id.as_str()), (first.as_str().unwrap(), second.as_str().unwrap()));
    assert!(!rows[0].deleted && rows[1].edited_at.is_none(), "{rows:?}");

    // Edited again on n1, now that it is in the database: bob on n2 sees it,
    // and history shows it next to bob's newer message.
    bob.say("r", "mine").await;
    alice.expect("message").await;
    alice.send(json!({"type": "edit", "msg_id": first, "text": "hello!", "id": "e3"})).await;
    alice.expect_json(json!({"type": "ack", "id": "e3"})).await;
    bob.expect_json(json!({"type": "edited", "msg_id": ID, "room": "r", "text": "hello!", "edited_at": MS})).await;
    bob.send(json!({"type": "history", "room": "r", "id": "h2"})).await;
    let h = bob.expect("history").await;
    let texts: Vec<&str> = h["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["hello!", "", "mine"], "{h}");
    alice.sync().await;
    bob.sync().await;
    cluster.finish().await;
}

// ---- identity ----------------------------------------------------------------

#[tokio::test]
async fn a_nick_is_held_cluster_wide() {
    let Some(cluster) = Cluster::start("a_nick_is_held_cluster_wide", 2, |_| {}).await else {
        return;
    };
    let mut zed = cluster.hello(1, "zed").await;

    // n2 refuses the nick in any case; the connection stays usable.
    let mut other = Client::connect(cluster.node(2)).await;
    other.nick = "other".into();
    for (nick, id) in [("zed", json!(1)), ("ZED", json!("two"))] {
        other.send(json!({"type": "hello", "nick": nick, "id": id})).await;
        assert_eq!(other.expect_error("nick_taken").await["id"], id);
    }
    // Nor may a site user on n2 take a guest's nick held on n1. (Another
    // nick: a refused site-token hello leaves the nick to that site user.)
    let _yan = cluster.hello(1, "yan").await;
    other.send(json!({"type": "hello", "token": site_token(&claims("site-yan", "Yan")), "id": 3})).await;
    assert_eq!(other.expect_error("nick_taken").await["id"], 3);
    other.send(json!({"type": "hello", "nick": "zed2", "id": "h"})).await;
    let welcome = other.expect("welcome").await;
    assert_eq!((&welcome["nick"], &welcome["id"]), (&json!("zed2"), &json!("h")));
    assert_on(&welcome, 2);

    // Once zed has left n1, n2 can take the nick; then n1 cannot.
    other.send(json!({"type": "watch", "nicks": ["zed"]})).await;
    other.expect_json(status("zed", true, false)).await;
    zed.close().await;
    other.expect_json(status("zed", false, false)).await;
    let mut zed_again = cluster.hello(2, "ZED").await;
    let online = other.expect("status").await;
    assert!(
        online["nick"].as_str().is_some_and(|n| n.eq_ignore_ascii_case("zed")) && online["online"] == true,
        "{online}"
    );
    let mut late = Client::connect(cluster.node(1)).await;
    late.send(json!({"type": "hello", "nick": "zed", "id": 4})).await;
    assert_eq!(late.expect_error("nick_taken").await["id"], 4);

    // Two nodes asked for one new nick at the same moment: exactly one wins.
    for i in 0..10 {
        let nick = format!("race{i}");
        let mut a = Client::connect(cluster.node(1)).await;
        let mut b = Client::connect(cluster.node(2)).await;
        let hello = json!({"type": "hello", "nick": nick});
        tokio::join!(a.send(hello.clone()), b.send(hello));
        let (ra, rb) = tokio::join!(a.recv(), b.recv());
        let mut outcome = [ra["type"].clone(), rb["type"].clone()];
        outcome.sort_by_key(|t| t.to_string());
        assert_eq!(outcome, [json!("error"), json!("welcome")], "{nick}: {ra} / {rb}");
        let error = if ra["type"] == "error" { &ra } else { &rb };
        assert_eq!(error["code"], "nick_taken", "{error}");
    }
    late.send(json!({"type": "hello", "nick": "zed3"})).await;
    late.expect("welcome").await;
    for c in [&mut other, &mut zed_again, &mut late] {
        c.sync().await;
    }
    cluster.finish().await;
}

// ---- history -----------------------------------------------------------------

#[tokio::test]
async fn history_is_whole_across_nodes_before_and_after_the_archiver_syncs() {
    // n1 and n2 never sync (the first tick of an interval aside, when
    // nothing is there yet): their messages stay in Redis only.
    let test = "history_is_whole_across_nodes_before_and_after_the_archiver_syncs";
    let Some(mut cluster) = Cluster::start(test, 2, |c| c.cluster.sync_interval = Duration::from_secs(3600)).await
    else {
        return;
    };
    let mut alice = cluster.hello(1, "alice").await;
    alice.join("h").await;
    let mut acks = Vec::new();
    for i in 1..=5 {
        let ack = alice.say("h", &format!("m{i}")).await;
        assert_eq!(ack["message"]["seq"], i);
        acks.push(ack["message"].clone());
    }
    let msgs = |range: std::ops::RangeInclusive<u64>| -> Vec<Value> {
        range.map(|i| body(&room_msg("h", i, "alice", &format!("m{i}")))).collect()
    };

    // On n2 at once: history, join … history, join … since, before and after.
    let mut bob = cluster.hello(2, "bob").await;
    bob.send(json!({"type": "history", "room": "h", "id": 1})).await;
    let h =
        bob.expect_json(json!({"type": "history", "id": 1, "room": "h", "messages": msgs(1..=5), "more": false})).await;
    assert_eq!(h["messages"], json!(acks), "history holds the very messages acked on n1");
    bob.send(json!({"type": "join", "room": "h", "history": 3, "id": "j"})).await;
    bob.expect_json(json!({"type": "joined", "id": "j", "room": "h", "topic": "",
        "members": [member("alice"), member("bob")], "seq": 5, "history": msgs(3..=5), "more": true}))
        .await;
    alice.expect_json(presence("h", "bob", "join")).await;
    let mut dave = cluster.hello(2, "dave").await;
    dave.send(json!({"type": "join", "room": "h", "since": 2, "id": "s"})).await;
    dave.expect_json(json!({"type": "joined", "id": "s", "room": "h", "topic": "",
        "members": [member("alice"), member("bob"), member("dave")], "seq": 5, "history": msgs(3..=5),
        "more": false}))
        .await;
    alice.expect_json(presence("h", "dave", "join")).await;
    bob.expect_json(presence("h", "dave", "join")).await;
    bob.send(json!({"type": "history", "room": "h", "before": 3, "id": 2})).await;
    bob.expect_json(json!({"type": "history", "id": 2, "room": "h", "messages": msgs(1..=2), "more": false})).await;
    bob.send(json!({"type": "history", "room": "h", "after": 4, "id": 3})).await;
    bob.expect_json(json!({"type": "history", "id": 3, "room": "h", "messages": msgs(5..=5), "more": false})).await;
    assert_eq!(stored(cluster.db(), "h").await.len(), 0, "test premise: nothing is archived yet");

    // n3 archives m1..m5 into the database, then stops; m6..m8 stay in Redis.
    let mut n3 = cluster.config(3);
    n3.cluster.sync_interval = Duration::from_millis(100);
    cluster.start_node(3, n3).await;
    let rows = poll_db(cluster.db(), "h", "m1..m5", |rows| rows.len() == 5).await;
    let ids: Vec<&str> = rows.iter().map(|r| r.msg_id.as_str()).collect();
    let acked: Vec<&str> = acks.iter().map(|a| a["msg_id"].as_str().unwrap()).collect();
    assert_eq!(ids, acked);
    cluster.take(3).stop().await;
    for i in 6..=8 {
        alice.say("h", &format!("m{i}")).await;
        bob.expect_json(room_msg("h", i, "alice", &format!("m{i}"))).await;
        dave.expect_json(room_msg("h", i, "alice", &format!("m{i}"))).await;
    }

    // History merges the database and Redis: each message once, no gap,
    // on both nodes, whichever way it is paged.
    for c in [&mut bob, &mut alice] {
        c.send(json!({"type": "history", "room": "h", "id": 4})).await;
        c.expect_json(json!({"type": "history", "id": 4, "room": "h", "messages": msgs(1..=8), "more": false})).await;
        c.send(json!({"type": "history", "room": "h", "before": 7, "limit": 3, "id": 5})).await;
        c.expect_json(json!({"type": "history", "id": 5, "room": "h", "messages": msgs(4..=6), "more": true})).await;
        c.send(json!({"type": "history", "room": "h", "after": 3, "limit": 3, "id": 6})).await;
        c.expect_json(json!({"type": "history", "id": 6, "room": "h", "messages": msgs(4..=6), "more": true})).await;
        c.send(json!({"type": "history", "room": "h", "after": 6, "limit": 3, "id": 7})).await;
        c.expect_json(json!({"type": "history", "id": 7, "room": "h", "messages": msgs(7..=8), "more": false})).await;
    }
    let mut erin = cluster.hello(1, "erin").await;
    erin.send(json!({"type": "join", "room": "h", "since": 3, "id": "c"})).await;
    erin.expect_json(json!({"type": "joined", "id": "c", "room": "h", "topic": "",
            "members": [member("alice"), member("bob"), member("dave"), member("erin")], "seq": 8,
            "history": msgs(4..=8), "more": false}))
        .await;
    for c in [&mut alice, &mut bob, &mut dave] {
        c.expect_json(presence("h", "erin", "join")).await;
    }
    assert_eq!(stored(cluster.db(), "h").await.len(), 5, "test premise: m6..m8 are in Redis only");

    // seq goes on from n2.
    let ack = bob.say("h", "m9").await;
    assert_eq!(ack["message"]["seq"], 9);
    for c in [&mut alice, &mut dave, &mut erin] {
        c.expect_json(room_msg("h", 9, "bob", "m9")).await;
    }
    for c in [&mut alice, &mut bob, &mut dave, &mut erin] {
        c.sync().await;
    }
    cluster.finish().await;
}

/// A log entry as nodes from before `P:logb` wrote it (one message per
/// entry, in `P:log`) still reaches the database and leaves its
/// conversation's stream; the emptied old log is then deleted, and made
/// again (with its consumer group) if an old node writes to it once more.
#[tokio::test]
async fn an_old_nodes_log_entries_are_archived_and_the_emptied_old_log_dropped() {
    let test = "an_old_nodes_log_entries_are_archived_and_the_emptied_old_log_dropped";
    let Some(cluster) = Cluster::start(test, 1, |c| c.cluster.sync_interval = Duration::from_secs(3600)).await else {
        return;
    };
    let config = cluster.config(1);
    let p = &config.cluster.prefix;
    let client = redis::Client::open(config.cluster.redis_url.as_str()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let (logb, log) = (format!("{p}:logb"), format!("{p}:log"));
    let mut alice = cluster.hello(1, "alice").await;
    alice.join("old").await;
    for round in 1..=2 {
        let text = format!("from an old node, {round}");
        let ack = alice.say("old", &text).await;
        // Moved from P:logb to P:log, as an older node would have written it.
        let entries: redis::streams::StreamRangeReply =
            redis::AsyncCommands::xrange_all(&mut redis, &logb).await.unwrap();
        assert_eq!(entries.ids.len(), 1, "test premise: nothing archived yet");
        let e = &entries.ids[0];
        let field = |k: &str| e.get::<String>(k).unwrap();
        let old = [("m", field("m")), ("c", field("c")), ("u", field("u"))];
        let _: String = redis::AsyncCommands::xadd(&mut redis, &log, "*", &old).await.unwrap();
        let _: i64 = redis::AsyncCommands::xdel(&mut redis, &logb, &[&e.id]).await.unwrap();
        // An edit of a message not in the database archives the buffer first.
        let msg_id = ack["message"]["msg_id"].clone();
        alice.send(json!({"type": "edit", "msg_id": msg_id, "text": "edited", "id": "e"})).await;
        alice.expect_json(json!({"type": "ack", "id": "e"})).await;
        let rows = stored(cluster.db(), "old").await;
        assert_eq!(rows.len(), round, "{rows:?}");
        assert_eq!(rows[round - 1].msg_id, msg_id.as_str().unwrap());
        assert_eq!(rows[round - 1].text, "edited");
        let left: usize = redis::AsyncCommands::xlen(&mut redis, format!("{p}:h:r:old")).await.unwrap();
        assert_eq!(left, 0, "archived: gone from its conversation's stream");
        let there: bool = redis::AsyncCommands::exists(&mut redis, &log).await.unwrap();
        assert!(!there, "the emptied old log is deleted");
    }
    alice.sync().await;
    cluster.finish().await;
}

/// A room destroyed over HTTP on one node is gone on every node, and what
/// was said in it — archived or still buffered in Redis — never shows in a
/// new room of the same name.
#[tokio::test]
async fn a_destroyed_room_is_gone_everywhere_with_its_messages() {
    // n1 never archives: the messages are only in Redis when it is destroyed.
    let Some(cluster) = Cluster::start("a_destroyed_room_is_gone_everywhere_with_its_messages", 2, |c| {
        c.cluster.sync_interval = Duration::from_secs(3600);
        c.auth.api_keys = vec![chat::config::Secret::new("k")];
    })
    .await
    else {
        return;
    };
    let [mut alice, mut bob] = gather(&cluster, "old", [(1, "alice"), (2, "bob")]).await;
    say_seen(&mut alice, "old", "secret 1", 1, &mut [&mut bob]).await;
    say_seen(&mut bob, "old", "secret 2", 2, &mut [&mut alice]).await;

    let r = common::http::delete(cluster.node(2).addr(), "/api/rooms/old", &[("authorization", "Bearer k")]).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    for c in [&mut alice, &mut bob] {
        c.expect_json(json!({"type": "left", "room": "old", "reason": "destroyed"})).await;
    }
    // A new room of that name starts empty, on either node.
    let joined = alice.join("old").await;
    assert_eq!((&joined["history"], &joined["more"]), (&json!([]), &json!(false)), "{joined}");
    bob.send(json!({"type": "history", "room": "old", "id": "h"})).await;
    bob.expect_json(json!({"type": "history", "id": "h", "room": "old", "messages": [], "more": false})).await;
    cluster.finish().await;
}

// ---- the API's room members --------------------------------------------------

/// Adding a user to a room through the API on one node joins that user's
/// sessions on every node (issue 11: rooms through the API, clarified).
#[tokio::test]
async fn a_member_added_through_the_api_joins_on_every_node() {
    let Some(cluster) = Cluster::start("a_member_added_through_the_api_joins_on_every_node", 3, |c| {
        c.auth.api_keys = vec![chat::config::Secret::new(API_KEY)];
    })
    .await
    else {
        return;
    };
    let key = bearer(API_KEY);
    let auth = [("Authorization", key.as_str())];
    let r =
        common::http::post(cluster.node(1).addr(), "/api/rooms", &auth, &json!({"name": "ops", "private": true})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let mut watcher = cluster.site_user(1, &claims("w", "watcher")).await;
    let r = common::http::post(cluster.node(1).addr(), "/api/rooms/ops/members", &auth, &json!({"sub": "w"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(watcher.expect("joined").await["room"], "ops");
    let mut ivy2 = cluster.site_user(2, &claims("i", "ivy")).await;
    let mut ivy3 = cluster.site_user(3, &claims("i", "ivy")).await;
    let r = common::http::post(cluster.node(1).addr(), "/api/rooms/ops/members", &auth, &json!({"nick": "ivy"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    for ivy in [&mut ivy2, &mut ivy3] {
        let joined = ivy.expect("joined").await;
        assert_eq!(joined["room"], "ops");
    }
    watcher.expect_json(presence("ops", "ivy", "join")).await;
    // The same user on another node, but another identity's nick: nothing.
    let mut guest = cluster.hello(2, "guestie").await;
    let r =
        common::http::post(cluster.node(3).addr(), "/api/rooms/ops/members", &auth, &json!({"nick": "guestie"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    ivy2.say("ops", "after the grant").await;
    ivy3.expect("message").await;
    watcher.expect("message").await;
    guest.send(json!({"type": "ping", "id": "p"})).await;
    guest.expect_json(json!({"type": "pong", "id": "p"})).await;
    cluster.finish().await;
}

/// Whoever makes a room by joining it moderates it, whatever node the
/// others are on: its kick, with a comment, reaches the kicked user and the
/// members on every node; a leave's reason too.
#[tokio::test]
async fn a_rooms_maker_kicks_across_nodes_with_a_comment() {
    let Some(cluster) = Cluster::start("a_rooms_maker_kicks_across_nodes_with_a_comment", 2, |_| {}).await else {
        return;
    };
    let [mut dave, mut alice, mut bob] = gather(&cluster, "arena", [(1, "dave"), (2, "alice"), (2, "bob")]).await;
    // alice joined a room someone else made: not a moderator.
    alice.send(json!({"type": "kick", "room": "arena", "nick": "bob", "id": "x"})).await;
    alice.expect_error("forbidden").await;

    dave.send(json!({"type": "kick", "room": "arena", "nick": "alice", "comment": "out", "id": "k"})).await;
    let kicked =
        json!({"type": "presence", "room": "arena", "nick": "alice", "event": "leave", "by": "dave", "reason": "out"});
    alice
        .expect_json(json!({"type": "left", "room": "arena", "reason": "kicked", "by": "dave", "comment": "out"}))
        .await;
    bob.expect_json(kicked.clone()).await;
    // dave's ack and the presence from alice's node, in either order.
    let mut got = vec![dave.recv().await, dave.recv().await];
    got.sort_by_key(|v| v["type"].to_string());
    assert_eq!(got, [json!({"type": "ack", "id": "k"}), kicked]);

    bob.send(json!({"type": "leave", "room": "arena", "reason": "bored", "id": "l"})).await;
    bob.expect_json(json!({"type": "left", "id": "l", "room": "arena"})).await;
    dave.expect_json(json!({"type": "presence", "room": "arena", "nick": "bob", "event": "leave", "reason": "bored"}))
        .await;
    for c in [&mut dave, &mut alice, &mut bob] {
        c.sync().await;
    }
    cluster.finish().await;
}

/// A room's settings changed on one node hold on the others: `+m` stops a
/// member on another node until it is voiced (its role travels to its
/// node), and a ban stops a join there.
#[tokio::test]
async fn room_settings_hold_on_every_node() {
    let Some(cluster) = Cluster::start("room_settings_hold_on_every_node", 2, |_| {}).await else {
        return;
    };
    // alice makes #agora by joining it on n1: its moderator.
    let [mut alice, mut bob] = gather(&cluster, "agora", [(1, "alice"), (2, "bob")]).await;
    let set = json!({"type": "mode", "room": "agora", "set": {"moderated": true, "ban": ["carol"]}, "id": "m"});
    alice.send(set).await;
    let changed = json!({"type": "mode", "room": "agora", "by": "alice", "changes": [
        {"mode": "moderated", "on": true}, {"mode": "ban", "on": true, "arg": "carol!*@*"}]});
    // (The `mode` frame goes round Redis: it may come after the `ack`.)
    let (ack, mut other) = alice.until("ack").await;
    assert_eq!(ack, json!({"type": "ack", "id": "m"}));
    if other.is_empty() {
        other.push(alice.expect("mode").await);
    }
    assert_eq!(other, std::slice::from_ref(&changed));
    bob.expect_json(changed).await;
    bob.send(json!({"type": "say", "room": "agora", "text": "may I?", "id": "s"})).await;
    assert_eq!(bob.expect_error("forbidden").await["reason"], "moderated");
    let mut carol = cluster.hello(2, "carol").await;
    carol.send(json!({"type": "join", "room": "agora", "id": "j"})).await;
    assert_eq!(carol.expect_error("forbidden").await["reason"], "banned");

    alice.send(json!({"type": "mode", "room": "agora", "set": {"voice": ["bob"]}, "id": "v"})).await;
    let voiced = json!({"type": "mode", "room": "agora", "by": "alice", "changes": [
        {"mode": "voice", "on": true, "arg": "bob"}]});
    let (ack, mut other) = alice.until("ack").await;
    assert_eq!(ack, json!({"type": "ack", "id": "v"}));
    if other.is_empty() {
        other.push(alice.expect("mode").await);
    }
    assert_eq!(other, std::slice::from_ref(&voiced));
    bob.expect_json(voiced).await;
    bob.send(json!({"type": "say", "room": "agora", "text": "now I may", "id": "s2"})).await;
    let (ack, _) = bob.until("ack").await;
    assert_eq!(ack["message"]["text"], "now I may", "{ack}");
    let (msg, _) = alice.until("message").await;
    assert_eq!(msg["text"], "now I may", "{msg}");
    carol.sync().await;
    cluster.finish().await;
}
