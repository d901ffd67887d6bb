//! Ordering and fan-out under load: one sender's order, `seq` with
//! concurrent senders, a thousand members, and a slow consumer that must
//! not slow anyone else.
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use futures_util::stream;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::json;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

#[tokio::test]
async fn one_senders_messages_arrive_in_order() {
    let server = start(unlimited_config()).await;
    let mut clients = quiet_room(&server, "r", &["alice", "bob"]).await;
    let mut bob = clients.pop().unwrap();
    let mut alice = clients.pop().unwrap();
    for i in 1..=200 {
        alice.send(json!({"type": "say", "room": "r", "text": format!("m{i}"), "id": i})).await;
    }
    for i in 1..=200u64 {
        let expected = room_msg("r", i, "alice", &format!("m{i}"));
        alice.expect_json(json!({"type": "ack", "id": i, "message": body(&expected)})).await;
        bob.expect_json(expected).await;
    }
    alice.sync().await;
    bob.sync().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seq_is_gap_free_and_ordered_with_ten_concurrent_senders() {
    const SENDERS: usize = 10;
    const EACH: u64 = 30;
    const TOTAL: u64 = SENDERS as u64 * EACH;
    let server = start(unlimited_config()).await;
    let nicks: Vec<String> = (0..SENDERS).map(|i| format!("s{i}")).collect();
    let mut names: Vec<&str> = nicks.iter().map(|s| s.as_str()).collect();
    names.push("reader");
    let mut clients = quiet_room(&server, "r", &names).await;
    let mut reader = clients.pop().unwrap();

    let senders: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                for k in 0..EACH {
                    c.send(json!({"type": "say", "room": "r", "text": format!("{} {k}", c.nick),
                        "id": k}))
                        .await;
                }
                // Acks and the others' messages, interleaved in seq order.
                let mut seen = Vec::new();
                let mut next_own = 0;
                while seen.len() < TOTAL as usize {
                    let v = c.recv().await;
                    let m = match v["type"].as_str() {
                        Some("ack") => {
                            assert_eq!(v["id"], next_own, "{}: acks in order: {v}", c.nick);
                            next_own += 1;
                            v["message"].clone()
                        }
                        Some("message") => body(&v),
                        _ => panic!("{}: unexpected {v}", c.nick),
                    };
                    seen.push((m["seq"].as_u64().unwrap(), m["text"].clone()));
                }
                c.sync().await;
                // The client lives on until every member is done: a close
                // now would be a `quit` in the others' streams.
                (seen, c)
            })
        })
        .collect();

    // The reader sees 1..=TOTAL once each, in order, each sender's in its order.
    let mut reader_saw = Vec::new();
    let mut next_k: HashMap<String, u64> = HashMap::new();
    for seq in 1..=TOTAL {
        let v = reader.expect("message").await;
        assert_eq!(v["seq"], seq, "{v}");
        let from = v["from"].as_str().unwrap().to_string();
        let k = next_k.entry(from.clone()).or_default();
        assert_eq!(v["text"], format!("{from} {k}"), "per-sender order");
        *k += 1;
        reader_saw.push((seq, v["text"].clone()));
    }
    reader.sync().await;
    assert!(next_k.values().all(|k| *k == EACH), "{next_k:?}");
    let mut keep = Vec::new();
    for s in senders {
        let (seen, c) = s.await.unwrap();
        assert_eq!(seen, reader_saw, "every member saw the same sequence");
        keep.push(c);
    }
}

/// `joined`, read without building a `Value` (a thousand joins make half a
/// million member entries): every field, exactly, the members counted.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Joined<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    room: &'a str,
    #[serde(rename = "topic")]
    _topic: &'a str,
    members: Vec<IgnoredAny>,
    seq: u64,
    history: Vec<IgnoredAny>,
    more: bool,
}

/// `presence`, likewise (half a million of them).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Presence<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    room: &'a str,
    #[serde(rename = "nick")]
    _nick: &'a str,
    event: &'a str,
}

/// The next text frame, unparsed.
async fn next_text(c: &mut Client) -> Utf8Bytes {
    loop {
        match c.recv_raw().await {
            Some(Ok(Message::Text(t))) => return t,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("{}: expected a text frame, got {other:?}", c.nick),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_members_all_receive_every_message() {
    const MEMBERS: usize = 1000;
    const MESSAGES: u64 = 5;
    let mut config = test_config();
    config.limits.max_connections_per_ip = MEMBERS + 10;
    let server = start(config).await;
    let started = Instant::now();

    // Connect with bounded concurrency; each member then reads on its own
    // task, whose handle is what each connect yields.
    #[allow(clippy::async_yields_async)]
    let members: Vec<_> = stream::iter(0..MEMBERS)
        .map(|i| {
            let server = &server;
            async move {
                let (mut c, _) = Client::hello(server, &format!("u{i}")).await;
                c.send(json!({"type": "join", "room": "big", "history": 0})).await;
                let text = next_text(&mut c).await;
                let joined: Joined = serde_json::from_str(&text).unwrap();
                assert_eq!((joined.kind, joined.room, joined.seq, joined.more), ("joined", "big", 0, false));
                assert!(joined.history.is_empty());
                let present = joined.members.len();
                // It will see everyone who joins after it (the sender too),
                // then the messages.
                let joins_to_come = MEMBERS + 1 - present;
                tokio::spawn(async move {
                    for _ in 0..joins_to_come {
                        let text = next_text(&mut c).await;
                        let p: Presence = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
                        assert_eq!((p.kind, p.room, p.event), ("presence", "big", "join"), "{text}");
                    }
                    let mut received = 0;
                    for seq in 1..=MESSAGES {
                        c.expect_json(room_msg("big", seq, "sender", &format!("hello {seq}"))).await;
                        received += 1;
                    }
                    c.sync().await;
                    // Kept open until every member is done (see below).
                    (c, joins_to_come, received)
                })
            }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    let connected = started.elapsed();

    let (mut sender, _) = Client::hello(&server, "sender").await;
    let joined = sender.join("big").await;
    assert_eq!(joined["members"].as_array().unwrap().len(), MEMBERS + 1);
    for seq in 1..=MESSAGES {
        let ack = sender.say("big", &format!("hello {seq}")).await;
        assert_eq!(ack["message"]["seq"], seq);
    }
    let mut delivered = 0;
    let mut presences = 0;
    let mut keep = Vec::new();
    for m in members {
        let (c, joins, received) = m.await.unwrap();
        presences += joins;
        delivered += received;
        keep.push(c);
    }
    assert_eq!(delivered, MEMBERS as u64 * MESSAGES);
    // Member i (0-based, in join order) saw MEMBERS - i joins.
    assert_eq!(presences, (1..=MEMBERS).sum::<usize>());
    sender.sync().await;
    eprintln!("{MEMBERS} members connected in {connected:?}; all done in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_never_reads_is_closed_with_1013_and_slows_nobody() {
    let mut config = unlimited_config();
    config.limits.outbound_queue = 8;
    config.limits.max_text = 60_000;
    let server = start(config).await;
    let test = async {
        let mut clients = quiet_room(&server, "r", &["alice", "bob"]).await;
        let mut bob = clients.pop().unwrap();
        let mut alice = clients.pop().unwrap();
        // A raw client with a tiny kernel receive buffer: after `joined`,
        // the test never polls it again until the end.
        let mut slow = Client::slow_reader(&server, "slow", "r").await;
        alice.expect_json(presence("r", "slow", "join")).await;
        bob.expect_json(presence("r", "slow", "join")).await;

        let filler = "x".repeat(50_000);
        let quit = presence("r", "slow", "quit");
        let mut alice_saw_quit = false;
        // The seq at which bob saw the slow reader go; five more follow.
        let mut quit_at = None;
        let mut seq = 0u64;
        while quit_at.is_none_or(|q| seq < q + 5) {
            seq += 1;
            assert!(seq <= 1000, "the slow reader was never closed");
            let text = format!("{seq} {filler}");
            let sent = Instant::now();
            alice.send(json!({"type": "say", "room": "r", "text": text, "id": seq})).await;
            loop {
                let v = alice.recv().await;
                if v == quit && !alice_saw_quit {
                    alice_saw_quit = true;
                    continue;
                }
                assert_eq!((&v["type"], &v["id"]), (&json!("ack"), &json!(seq)));
                break;
            }
            loop {
                let v = bob.recv().await;
                if v == quit && quit_at.is_none() {
                    quit_at = Some(seq);
                    // Read the slow client now: its close frame waits
                    // behind everything it did not read.
                    let mut got = Vec::new();
                    let code = loop {
                        let v = slow.recv().await;
                        match v["type"].as_str() {
                            Some("message") => got.push(v["seq"].as_u64().unwrap()),
                            Some("<close>") => break v["code"].as_u64(),
                            _ => panic!("slow: unexpected {v}"),
                        }
                    };
                    assert_eq!(code, Some(1013), "slow consumer close code");
                    assert_eq!(got, (1..=got.len() as u64).collect::<Vec<_>>());
                    assert!((got.len() as u64) < seq, "it fell behind");
                    continue;
                }
                assert_eq!(norm(v), room_msg("r", seq, "alice", &text));
                break;
            }
            let took = sent.elapsed();
            assert!(took < Duration::from_secs(3), "message {seq} took {took:?} to reach bob");
        }
        if !alice_saw_quit {
            alice.expect_json(quit).await;
        }
        alice.sync().await;
        bob.sync().await;
        eprintln!("the slow reader was closed after {seq} messages of 50 kB");
    };
    tokio::time::timeout(Duration::from_secs(30), test).await.expect("the slow consumer test took over 30 s");
}
