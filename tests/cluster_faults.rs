//! Clustering when things fail: a node stopped gracefully (its users are
//! seen gone at once, and it may come back), a node killed (`kill -9` of
//! the real binary), Redis killed and restarted mid-traffic, stalled, or
//! cut off just after it stored a message. No acknowledged message is
//! lost, and no message its sender was told was not sent is ever
//! delivered. Behaviour across healthy nodes is in `tests/cluster.rs`; the
//! cluster helpers in `tests/common/cluster.rs`.
//!
//! Every test needs `TEST_REDIS_URL` and is skipped (passing, with a
//! `SKIPPED` line) without it; the tests that start a Redis of their own
//! also need `redis-server` (and are skipped without it). Each cluster uses
//! a Redis key prefix of its own, so tests running in parallel on one Redis
//! never meet; the keys are deleted when a test ends well.
//!
//! Across nodes, `Client::sync` proves only that nothing is queued for the
//! session on its own node: a frame from another node may still be in
//! flight. To show that something did not arrive, a test awaits a later
//! frame that must come after it (room, DM and everyone messages arrive in
//! `seq` order).
mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::backends;
use common::cluster::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

// ---- nodes going away ----------------------------------------------------------

#[tokio::test]
async fn a_node_stopping_gracefully_is_seen_at_once_and_may_come_back() {
    // The default node_timeout (15 s) is longer than any wait here: the
    // quits must come from the stopping node itself.
    let Some(mut cluster) =
        Cluster::start("a_node_stopping_gracefully_is_seen_at_once_and_may_come_back", 2, |_| {}).await
    else {
        return;
    };
    let [mut alice, mut bob, mut carol] = gather(&cluster, "lobby", [(1, "alice"), (2, "bob"), (1, "carol")]).await;
    let mut dave = cluster.hello(2, "dave").await;
    dave.send(json!({"type": "watch", "nicks": ["alice"]})).await;
    dave.expect_json(status("alice", true, false)).await;
    say_seen(&mut bob, "lobby", "before", 1, &mut [&mut alice, &mut carol]).await;

    let n1 = cluster.take(1);
    let stopped = tokio::spawn(async move {
        tokio::time::timeout(Duration::from_secs(10), n1.stop()).await.expect("stop() took too long");
    });
    for c in [&mut alice, &mut carol] {
        let notice = c.expect("notice").await;
        assert_eq!(notice["code"], "shutdown");
        c.expect_close(1001).await;
    }
    // bob on n2 sees both users of n1 quit, dave sees alice go offline.
    let mut quits = vec![norm(bob.expect("presence").await), norm(bob.expect("presence").await)];
    quits.sort_by_key(|q| q["nick"].to_string());
    assert_eq!(quits, [presence("lobby", "alice", "quit"), presence("lobby", "carol", "quit")]);
    dave.expect_json(status("alice", false, false)).await;
    stopped.await.unwrap();

    // Their nicks are free, and the room lists bob only.
    let mut alice = cluster.hello(2, "alice").await;
    dave.expect_json(status("alice", true, false)).await;
    alice.send(json!({"type": "who", "room": "lobby", "id": "w"})).await;
    alice
        .expect_json(json!({"type": "room_status", "id": "w", "room": "lobby", "topic": "", "count": 1,
            "members": [member("bob")]}))
        .await;

    // n1 comes back; carol reconnects to it and resumes the room.
    let config = cluster.config(1);
    cluster.start_node(1, config).await;
    let mut carol = cluster.hello(1, "carol").await;
    carol.send(json!({"type": "join", "room": "lobby", "since": 1, "id": "j"})).await;
    carol
        .expect_json(json!({"type": "joined", "id": "j", "room": "lobby", "topic": "",
            "members": [member("bob"), member("carol")], "seq": 1, "history": [], "more": false}))
        .await;
    bob.expect_json(presence("lobby", "carol", "join")).await;
    say_seen(&mut bob, "lobby", "after", 2, &mut [&mut carol]).await;
    for c in [&mut alice, &mut bob, &mut carol, &mut dave] {
        c.sync().await;
    }
    cluster.finish().await;
}

// ---- kill -9 of a node ---------------------------------------------------------

const KILL_CLIENTS: usize = 5;
const KILL_PER_CLIENT: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_messages_survive_kill_9_of_a_node() {
    let test = "acknowledged_messages_survive_kill_9_of_a_node";
    let Some(redis) = redis_url(test) else { return };
    for b in backends::all(test).await {
        let kind = b.kind;
        let room = "durable";
        let prefix = new_prefix();
        // n1: the real binary, killed below. n2: in this process.
        let (mut child, n1_addr) = spawn_node(&b.url, &redis, &prefix, "n1").await;
        let mut n2_config = cluster_config(&redis, &prefix);
        n2_config.database.url = b.url.clone();
        n2_config.server.node = "n2".into();
        fast(&mut n2_config);
        let n2 = start(n2_config).await;

        // obs on n2 is in the room and watches n1's users.
        let (mut obs, welcome) = Client::hello(&n2, "obs").await;
        assert_on(&welcome, 2);
        obs.join(room).await;
        let nicks: Vec<String> = (0..KILL_CLIENTS).map(|c| format!("w{c}")).collect();
        obs.send(json!({"type": "watch", "nicks": nicks})).await;
        for nick in &nicks {
            obs.expect_json(never_seen(nick)).await;
        }
        let mut senders = Vec::new();
        for nick in &nicks {
            senders.push(raw_client(n1_addr, nick, room).await);
        }
        // Each came online and joined (two channels: any order).
        let mut seen = Vec::new();
        for _ in 0..2 * KILL_CLIENTS {
            seen.push(norm(obs.recv().await));
        }
        let mut expected: Vec<Value> =
            nicks.iter().flat_map(|n| [status(n, true, false), presence(room, n, "join")]).collect();
        for v in [&mut seen, &mut expected] {
            v.sort_by_key(|f| f.to_string());
        }
        assert_eq!(seen, expected, "{kind:?}");

        // obs reads all along, until every n1 user has quit and gone offline.
        let obs_task = tokio::spawn(async move {
            let (mut messages, mut gone) = (Vec::new(), Vec::new());
            while gone.len() < 2 * KILL_CLIENTS {
                let v = obs.recv().await;
                match v["type"].as_str() {
                    Some("message") => messages.push(v),
                    Some("presence" | "status") => gone.push(norm(v)),
                    _ => panic!("obs: unexpected {v}"),
                }
            }
            (obs, messages, gone, Instant::now())
        });

        // n1's users send without waiting; n1 is killed halfway through the acks.
        let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
        let count = Arc::new(AtomicUsize::new(0));
        let kill_at = KILL_CLIENTS * KILL_PER_CLIENT / 2;
        let halfway = Arc::new(tokio::sync::Notify::new());
        let (killed_tx, killed_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for (c, ws) in senders.into_iter().enumerate() {
            let (acked, count, halfway, mut killed) =
                (acked.clone(), count.clone(), halfway.clone(), killed_rx.clone());
            tasks.push(tokio::spawn(async move {
                let (mut tx, mut rx) = ws.split();
                let sender = tokio::spawn(async move {
                    for i in 0..KILL_PER_CLIENT {
                        let say = json!({"type": "say", "room": room, "text": format!("w{c} {i}"), "id": i});
                        if tx.send(Message::text(say.to_string())).await.is_err() {
                            return;
                        }
                    }
                });
                loop {
                    let frame = tokio::select! {
                        f = rx.next() => f,
                        _ = killed.wait_for(|k| *k) => None,
                    };
                    let Some(Ok(Message::Text(t))) = frame else { break };
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "ack" {
                        let m = &v["message"];
                        acked.lock().unwrap().push((m["msg_id"].as_str().unwrap().into(), seq_of(m)));
                        if count.fetch_add(1, Ordering::SeqCst) + 1 == kill_at {
                            halfway.notify_one();
                        }
                    }
                }
                sender.abort();
            }));
        }
        halfway.notified().await;
        child.start_kill().unwrap(); // SIGKILL
        child.wait().await.unwrap();
        let killed_at = Instant::now();
        killed_tx.send(true).unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        let acked = acked.lock().unwrap().clone();
        assert!(acked.len() >= kill_at, "{kind:?}");

        // n2's user sees each of n1's users quit (and go offline) within
        // about the node timeout.
        let (mut obs, mut received, mut gone, all_gone_at) = obs_task.await.unwrap();
        let mut expected: Vec<Value> =
            nicks.iter().flat_map(|n| [status(n, false, false), presence(room, n, "quit")]).collect();
        for v in [&mut gone, &mut expected] {
            v.sort_by_key(|f| f.to_string());
        }
        assert_eq!(gone, expected, "{kind:?}");
        let took = all_gone_at.duration_since(killed_at);
        eprintln!("{kind:?}: n1's users seen gone {took:?} after kill -9 (node_timeout 1s)");
        assert!(took < Duration::from_secs(10), "{kind:?}: a dead node's users lingered {took:?}");

        // obs received every acknowledged message (and maybe some whose
        // ack n1 never sent), each once, in seq order.
        let acked_ids: HashMap<&str, u64> = acked.iter().map(|(id, seq)| (id.as_str(), *seq)).collect();
        loop {
            let got: BTreeSet<&str> = received.iter().map(|m| m["msg_id"].as_str().unwrap()).collect();
            let missing = acked_ids.keys().filter(|id| !got.contains(*id)).count();
            if missing == 0 {
                break;
            }
            eprintln!("{kind:?}: obs still waits for {missing} acked messages");
            let v = obs.recv().await;
            assert_eq!(v["type"], "message", "{kind:?}: {v}");
            received.push(v);
        }
        let seqs: Vec<u64> = received.iter().map(seq_of).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{kind:?}: obs got messages out of order or twice: {seqs:?}");
        for m in &received {
            if let Some(seq) = acked_ids.get(m["msg_id"].as_str().unwrap()) {
                assert_eq!(seq_of(m), *seq, "{kind:?}: {m}");
            }
        }

        // Every acknowledged (and every received) message reaches the
        // database once, with its seq, and seq has no gap.
        let received_ids: HashMap<String, u64> =
            received.iter().map(|m| (m["msg_id"].as_str().unwrap().to_string(), seq_of(m))).collect();
        let rows = poll_db(&b.url, room, "every acked and received message, gap-free", |rows| {
            let ids: HashMap<&str, u64> = rows.iter().map(|r| (r.msg_id.as_str(), r.seq)).collect();
            gap_free(rows)
                && acked_ids.keys().all(|id| ids.contains_key(id))
                && received_ids.keys().all(|id| ids.contains_key(id.as_str()))
        })
        .await;
        let by_id: HashMap<&str, u64> = rows.iter().map(|r| (r.msg_id.as_str(), r.seq)).collect();
        assert_eq!(by_id.len(), rows.len(), "{kind:?}: a msg_id stored twice");
        for (id, seq) in
            acked_ids.iter().map(|(i, s)| (*i, *s)).chain(received_ids.iter().map(|(i, s)| (i.as_str(), *s)))
        {
            assert_eq!(by_id.get(id), Some(&seq), "{kind:?}: message {id} (seq {seq}) stored with another seq");
        }
        eprintln!(
            "{kind:?}: {} acked before kill -9, {} received on n2, {} stored",
            acked.len(),
            received.len(),
            rows.len()
        );

        // History on n2 says the same, and seq goes on.
        let history = whole_history(&mut obs, room).await;
        let listed: Vec<(&str, u64)> = history.iter().map(|m| (m["msg_id"].as_str().unwrap(), seq_of(m))).collect();
        let in_db: Vec<(&str, u64)> = rows.iter().map(|r| (r.msg_id.as_str(), r.seq)).collect();
        assert_eq!(listed, in_db, "{kind:?}: history on n2 differs from the database");
        let ack = obs.say(room, "after the crash").await;
        assert_eq!(seq_of(&ack["message"]), rows.len() as u64 + 1, "{kind:?}");
        n2.stop().await;
        forget(&redis, &prefix).await;
    }
}

// ---- Redis in trouble: restarted, stalled, cut off ---------------------------

/// What a chattering client saw.
#[derive(Debug)]
enum Said {
    Acked { who: usize, msg: Value },
    Refused { who: usize, text: String },
    Received { who: usize, msg: Value },
}

/// Says numbered messages in `room` until `stop`; reports each ack, each
/// `unavailable` and each message received. Like a real client it does not
/// wait forever for an answer: a message whose outcome the server cannot
/// know yet (Redis died mid-script) is answered once Redis is back, and
/// meanwhile the chatterer goes on. After `stop` it waits for every answer.
/// Any other reply, or the connection ending, fails the test.
async fn chatter(
    who: usize,
    mut c: Client,
    room: &'static str,
    stop: watch::Receiver<bool>,
    log: mpsc::UnboundedSender<Said>,
) -> Client {
    let mut i = 0u64;
    let mut waiting: HashMap<u64, String> = HashMap::new();
    let mut last_sent = Instant::now();
    let deadline = || Instant::now() + SETTLE;
    let mut drain_until = None;
    loop {
        let stopping = *stop.borrow();
        if stopping && drain_until.is_none() {
            drain_until = Some(deadline());
        }
        if let Some(until) = drain_until {
            if waiting.is_empty() {
                break;
            }
            assert!(Instant::now() < until, "{}: unanswered after the run: {waiting:?}", c.nick);
        } else if waiting.is_empty() || last_sent.elapsed() > Duration::from_millis(300) {
            i += 1;
            let text = format!("{} {i}", c.nick);
            c.send(json!({"type": "say", "room": room, "text": text, "id": i})).await;
            waiting.insert(i, text);
            last_sent = Instant::now();
        }
        let Some(v) = c.recv_within(Duration::from_millis(100)).await else { continue };
        let id = v["id"].as_u64();
        match v["type"].as_str() {
            Some("ack") if id.is_some_and(|id| waiting.contains_key(&id)) => {
                waiting.remove(&id.unwrap_or_default());
                let _ = log.send(Said::Acked { who, msg: v["message"].clone() });
            }
            Some("error") if id.is_some_and(|id| waiting.contains_key(&id)) => {
                assert_eq!(v["code"], "unavailable", "{}: {v}", c.nick);
                let text = waiting.remove(&id.unwrap_or_default()).unwrap_or_default();
                let _ = log.send(Said::Refused { who, text });
                // A client backs off a little before trying again.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Some("message") => {
                let _ = log.send(Said::Received { who, msg: v });
            }
            // Whether presence flickers while Redis is away is not what
            // this test is about.
            Some("presence" | "<ping>") => {}
            _ => panic!("{}: unexpected frame while Redis restarts: {v}", c.nick),
        }
    }
    c
}

/// Per chatterer: how many acks, refusals and received messages so far.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    acked: [usize; 2],
    refused: [usize; 2],
    received: [usize; 2],
}

impl Tally {
    fn add(&mut self, s: &Said) {
        match s {
            Said::Acked { who, .. } => self.acked[*who] += 1,
            Said::Refused { who, .. } => self.refused[*who] += 1,
            Said::Received { who, .. } => self.received[*who] += 1,
        }
    }

    /// What happened since `mark`.
    fn since(&self, mark: &Tally) -> Tally {
        let d = |a: [usize; 2], b: [usize; 2]| [a[0] - b[0], a[1] - b[1]];
        Tally {
            acked: d(self.acked, mark.acked),
            refused: d(self.refused, mark.refused),
            received: d(self.received, mark.received),
        }
    }
}

/// Reads `log` into `seen` (and `tally`) until `done(tally)` holds; fails
/// after [`SETTLE`].
async fn until_said(
    rx: &mut mpsc::UnboundedReceiver<Said>,
    seen: &mut Vec<Said>,
    tally: &mut Tally,
    what: &str,
    done: impl Fn(&Tally) -> bool,
) {
    let deadline = Instant::now() + SETTLE;
    while !done(tally) {
        // Checked on every event: the log may never run dry.
        assert!(Instant::now() < deadline, "no {what} within {SETTLE:?}: {tally:?}");
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(s)) => {
                tally.add(&s);
                seen.push(s);
            }
            Ok(None) => panic!("the chatterers stopped before {what}"),
            Err(_) => panic!("no {what} within {SETTLE:?}: {tally:?}"),
        }
    }
}

/// `c` says `text` in `room`; returns the ack, logging messages that arrive first.
async fn say_logged(c: &mut Client, who: usize, room: &str, text: &str, seen: &mut Vec<Said>) -> Value {
    c.send(json!({"type": "say", "room": room, "text": text, "id": "final"})).await;
    loop {
        let v = c.recv().await;
        match v["type"].as_str() {
            Some("ack") => return v,
            Some("message") => seen.push(Said::Received { who, msg: v }),
            Some("presence") => {}
            _ => panic!("{}: unexpected {v}", c.nick),
        }
    }
}

/// Reads `c`'s frames, logging messages, until the message with `text`.
async fn until_text(c: &mut Client, who: usize, text: &str, seen: &mut Vec<Said>) {
    loop {
        let v = c.recv().await;
        match v["type"].as_str() {
            Some("message") => {
                let found = v["text"] == text;
                seen.push(Said::Received { who, msg: v });
                if found {
                    return;
                }
            }
            Some("presence") => {}
            _ => panic!("{}: unexpected {v}", c.nick),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restarting_mid_traffic_loses_no_acknowledged_message() {
    let Some(mut redis) = OwnRedis::for_test("redis_restarting_mid_traffic_loses_no_acknowledged_message").await else {
        return;
    };
    let cluster = Cluster::start_on(&redis.url(), 2, |c| {
        c.cluster.heartbeat = Duration::from_millis(200);
        // Longer than the outage: whether nodes declare each other dead is not tested here.
        c.cluster.node_timeout = Duration::from_secs(5);
        c.cluster.sync_interval = Duration::from_millis(100);
        c.cluster.redis_timeout = Duration::from_millis(500);
        c.cluster.reconnect_max = Duration::from_millis(500);
    })
    .await;
    const ROOM: &str = "r";
    let [alice, bob] = gather(&cluster, ROOM, [(1, "alice"), (2, "bob")]).await;

    let (stop_tx, stop_rx) = watch::channel(false);
    let (log_tx, mut log) = mpsc::unbounded_channel();
    let talkers = [
        tokio::spawn(chatter(0, alice, ROOM, stop_rx.clone(), log_tx.clone())),
        tokio::spawn(chatter(1, bob, ROOM, stop_rx, log_tx)),
    ];
    let mut seen: Vec<Said> = Vec::new();
    let mut tally = Tally::default();

    // Traffic flows both ways.
    until_said(&mut log, &mut seen, &mut tally, "traffic before the restart", |t| {
        (0..2).all(|w| t.acked[w] >= 20 && t.received[w] >= 10)
    })
    .await;

    // kill -9 Redis: both nodes refuse with `unavailable`, connections stay open.
    redis.kill().await;
    let killed = tally;
    until_said(&mut log, &mut seen, &mut tally, "`unavailable` on both nodes", |t| {
        (0..2).all(|w| t.since(&killed).refused[w] >= 3)
    })
    .await;

    // Redis comes back on the same port, with its data: the nodes reconnect
    // by themselves, say is acked again and crosses nodes again.
    redis.restart().await;
    let restarted = tally;
    until_said(&mut log, &mut seen, &mut tally, "traffic after the restart", |t| {
        let t = t.since(&restarted);
        (0..2).all(|w| t.acked[w] >= 20 && t.received[w] >= 10)
    })
    .await;
    stop_tx.send(true).unwrap();
    let mut clients = Vec::new();
    for t in talkers {
        clients.push(t.await.unwrap());
    }
    while let Some(s) = log.recv().await {
        seen.push(s);
    }
    let (mut alice, mut bob) = {
        let mut it = clients.into_iter();
        (it.next().unwrap(), it.next().unwrap())
    };
    // One more each way, read through to the end.
    let ack = say_logged(&mut alice, 0, ROOM, "final from n1", &mut seen).await;
    seen.push(Said::Acked { who: 0, msg: ack["message"].clone() });
    until_text(&mut bob, 1, "final from n1", &mut seen).await;
    let ack = say_logged(&mut bob, 1, ROOM, "final from n2", &mut seen).await;
    seen.push(Said::Acked { who: 1, msg: ack["message"].clone() });
    until_text(&mut alice, 0, "final from n2", &mut seen).await;

    let refused_texts: BTreeSet<&str> = seen
        .iter()
        .filter_map(|s| match s {
            Said::Refused { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let acks: HashMap<&str, (u64, &str)> = seen
        .iter()
        .filter_map(|s| match s {
            Said::Acked { msg, .. } => {
                Some((msg["msg_id"].as_str().unwrap(), (seq_of(msg), msg["text"].as_str().unwrap())))
            }
            _ => None,
        })
        .collect();
    eprintln!("{} acked, {} refused while Redis was down", acks.len(), refused_texts.len());

    // What each received: in seq order, each once, nothing refused.
    for who in 0..2 {
        let got: Vec<&Value> = seen
            .iter()
            .filter_map(|s| match s {
                Said::Received { who: w, msg } if *w == who => Some(msg),
                _ => None,
            })
            .collect();
        let seqs: Vec<u64> = got.iter().map(|m| seq_of(m)).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{}: out of order or twice: {seqs:?}", ["alice", "bob"][who]);
        let nick = ["alice", "bob"][who];
        for m in &got {
            let text = m["text"].as_str().unwrap();
            assert_ne!(m["from"], nick, "{nick} received their own message as a `message` frame: {m}");
            assert!(!refused_texts.contains(text), "{nick} received a refused message: {m}");
            if let Some((seq, t)) = acks.get(m["msg_id"].as_str().unwrap()) {
                assert_eq!((seq_of(m), text), (*seq, *t), "{nick}: {m}");
            }
        }
    }

    // The database ends up with every acknowledged message, once, with its
    // seq, gap-free, and none of the refused ones.
    let rows = poll_db(cluster.db(), ROOM, "every acked message, gap-free", |rows| {
        let ids: BTreeSet<&str> = rows.iter().map(|r| r.msg_id.as_str()).collect();
        gap_free(rows) && acks.keys().all(|id| ids.contains(id))
    })
    .await;
    for r in &rows {
        assert!(!refused_texts.contains(r.text.as_str()), "a refused message was stored: {r:?}");
        if let Some((seq, text)) = acks.get(r.msg_id.as_str()) {
            assert_eq!((r.seq, r.text.as_str()), (*seq, *text), "{r:?}");
        }
    }
    cluster.finish().await;
}

/// The next reply to the request `id`; messages that come first are kept
/// in `messages`, presence changes are let pass.
async fn reply_to(c: &mut Client, id: &str, messages: &mut Vec<Value>) -> Value {
    loop {
        let v = c.recv().await;
        match v["type"].as_str() {
            Some("ack" | "error") if v["id"] == id => return v,
            Some("message") => messages.push(v),
            Some("presence") => {}
            _ => panic!("{}: unexpected {v}", c.nick),
        }
    }
}

/// After a say (`during`) whose fate Redis trouble made uncertain: alice
/// retries until a message is acked again; it reaches bob. Either answer
/// to `during` is fine — `ack` (then bob gets it) or `unavailable` (then
/// nobody ever does: not bob, not alice as a `message`, not history, not
/// the database) — but not both.
async fn check_either_acked_or_never_seen(
    cluster: &Cluster,
    mut alice: Client,
    mut bob: Client,
    during: Value,
    text: &str,
) {
    let mut alice_got = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    if during["type"] != "ack" {
        assert_eq!(during["code"], "unavailable", "{during}");
        refused.push(text.into());
    }
    let deadline = Instant::now() + SETTLE;
    let after = loop {
        let text = format!("after the trouble #{}", refused.len());
        alice.send(json!({"type": "say", "room": "r", "text": text, "id": "a"})).await;
        let v = reply_to(&mut alice, "a", &mut alice_got).await;
        if v["type"] == "ack" {
            break v;
        }
        assert_eq!(v["code"], "unavailable", "{v}");
        refused.push(text);
        assert!(Instant::now() < deadline, "still refused {SETTLE:?} after the trouble");
        tokio::time::sleep(Duration::from_millis(50)).await; // a client backing off before it retries
    };
    let mut bob_got = Vec::new();
    while bob_got.last().is_none_or(|m: &Value| m["msg_id"] != after["message"]["msg_id"]) {
        let v = bob.recv().await;
        match v["type"].as_str() {
            Some("message") => bob_got.push(v),
            Some("presence") => {}
            _ => panic!("bob: unexpected {v}"),
        }
    }
    eprintln!("the uncertain say got {during}; refused: {refused:?}");

    let was_refused = |m: &Value| refused.iter().any(|t| m["text"] == t.as_str());
    for m in &bob_got {
        assert!(!was_refused(m), "bob received a message alice was told was not sent: {m}");
    }
    assert!(alice_got.is_empty(), "alice received messages (her own?) as `message` frames: {alice_got:?}");
    let seqs: Vec<u64> = bob_got.iter().map(seq_of).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "bob: {seqs:?}");
    if during["type"] == "ack" {
        assert!(bob_got.iter().any(|m| body(m) == during["message"]), "bob never got the acked message: {bob_got:?}");
    }
    // History on n2 and, once archived, the database agree.
    // (Right after the trouble a read may still be refused: a client retries.)
    let h = loop {
        bob.send(json!({"type": "history", "room": "r", "id": "h"})).await;
        let v = bob.recv().await;
        if v["type"] == "history" {
            break v;
        }
        assert_eq!((&v["type"], &v["code"]), (&json!("error"), &json!("unavailable")), "bob: {v}");
        eprintln!("history refused after the trouble: {v}");
        assert!(Instant::now() < deadline, "history still refused {SETTLE:?} after the trouble");
        tokio::time::sleep(Duration::from_millis(50)).await; // a client backing off before it retries
    };
    let messages = h["messages"].as_array().unwrap();
    let seqs: Vec<u64> = messages.iter().map(seq_of).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{h}");
    assert!(!messages.iter().any(was_refused), "history holds a refused message: {h}");
    let last = seq_of(&after["message"]);
    let rows = poll_db(cluster.db(), "r", "the acked messages", |rows| rows.len() as u64 >= last).await;
    assert!(!rows.iter().any(|r| refused.contains(&r.text)), "a refused message was stored: {rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_refused_during_a_redis_stall_is_never_delivered() {
    let Some(redis) = OwnRedis::for_test("a_message_refused_during_a_redis_stall_is_never_delivered").await else {
        return;
    };
    let cluster = Cluster::start_on(&redis.url(), 2, |c| {
        fast(c);
        c.cluster.redis_timeout = Duration::from_millis(300);
        c.cluster.reconnect_max = Duration::from_millis(300);
    })
    .await;
    let [mut alice, mut bob] = gather(&cluster, "r", [(1, "alice"), (2, "bob")]).await;
    say_seen(&mut alice, "r", "before", 1, &mut [&mut bob]).await;

    // Redis stalls for longer than redis_timeout and node_timeout; alice
    // says something in the middle of it.
    redis.pause_writes(Duration::from_secs(3)).await;
    alice.send(json!({"type": "say", "room": "r", "text": "during the stall", "id": "d"})).await;
    let during = reply_to(&mut alice, "d", &mut Vec::new()).await;
    check_either_acked_or_never_seen(&cluster, alice, bob, during, "during the stall").await;
    cluster.finish().await;
}

/// While Redis is stalled, a node's publish queue fills (one message in
/// flight and one queued at most, here): the says after that are refused
/// at once with `unavailable` and never delivered to anyone; the ones taken
/// are stored, acked in the order sent and delivered when Redis goes on,
/// and the session goes on as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_publish_queue_refuses_says_at_once_and_delivers_none_of_them() {
    let Some(redis) = OwnRedis::for_test("a_full_publish_queue_refuses_says_at_once_and_delivers_none_of_them").await
    else {
        return;
    };
    let cluster = Cluster::start_on(&redis.url(), 2, |c| {
        c.cluster.publish_batch = 1;
        c.cluster.publish_queue = 1;
    })
    .await;
    let [mut alice, mut bob] = gather(&cluster, "r", [(1, "alice"), (2, "bob")]).await;
    say_seen(&mut alice, "r", "before", 1, &mut [&mut bob]).await;

    // Shorter than redis_timeout (2 s): the message in flight is stored.
    redis.pause_writes(Duration::from_secs(1)).await;
    const N: u64 = 10;
    for i in 0..N {
        alice.send(json!({"type": "say", "room": "r", "text": format!("burst {i}"), "id": i})).await;
    }
    let (mut acks, mut refused) = (Vec::new(), Vec::new());
    while acks.len() + refused.len() < N as usize {
        let v = alice.recv().await;
        match v["type"].as_str() {
            Some("ack") => acks.push(v),
            Some("error") => {
                assert_eq!(v["code"], "unavailable", "{v}");
                assert!(acks.is_empty(), "a refusal came after an ack, not at once: {v}");
                refused.push(v["id"].as_u64().unwrap());
            }
            _ => panic!("alice: unexpected {v}"),
        }
    }
    // The first was taken at once; at most one more could wait for it.
    assert!((1..=2).contains(&acks.len()), "acked: {acks:?}");
    assert_eq!(acks[0]["id"], 0, "{acks:?}");
    let expected: Vec<Value> = acks
        .iter()
        .enumerate()
        .map(|(k, a)| room_msg("r", 2 + k as u64, "alice", &format!("burst {}", a["id"])))
        .collect();
    for (a, m) in acks.iter().zip(&expected) {
        assert_eq!(norm(a.clone()), ack_of(m, a["id"].clone()), "acked in the order sent, seqs gap-free");
    }
    // bob gets the acked ones and then the next message: none refused.
    for (a, m) in acks.iter().zip(&expected) {
        let got = bob.expect_json(m.clone()).await;
        assert_eq!(body(&got), a["message"]);
    }
    let next = 2 + acks.len() as u64;
    say_seen(&mut alice, "r", "after", next, &mut [&mut bob]).await;
    let rows = poll_db(cluster.db(), "r", "every acked message", |rows| rows.len() as u64 >= next).await;
    assert!(rows.iter().all(|r| !r.text.starts_with("burst ") || acks.iter().any(|a| a["message"]["text"] == r.text)));
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_stored_just_as_redis_went_away_is_never_refused_and_delivered() {
    let Some(redis) =
        OwnRedis::for_test("a_message_stored_just_as_redis_went_away_is_never_refused_and_delivered").await
    else {
        return;
    };
    let proxy = Proxy::start(redis.port).await;
    let cluster = Cluster::start_on(&proxy.url(), 2, |c| {
        fast(c);
        c.cluster.redis_timeout = Duration::from_millis(300);
        c.cluster.reconnect_max = Duration::from_millis(300);
    })
    .await;
    let [mut alice, mut bob] = gather(&cluster, "r", [(1, "alice"), (2, "bob")]).await;
    say_seen(&mut alice, "r", "before", 1, &mut [&mut bob]).await;

    // Listening to Redis itself (not through the proxy): every channel
    // starts with the cluster's prefix.
    let mut spy = redis::Client::open(redis.url()).unwrap().get_async_pubsub().await.unwrap();
    spy.psubscribe(format!("{}:*", cluster.base.cluster.prefix)).await.unwrap();

    // alice's say reaches Redis, which stores and publishes it, but no
    // answer gets back to the nodes; then Redis is out of their reach for
    // longer than node_timeout, and comes back.
    proxy.set(Link::Mute);
    alice.send(json!({"type": "say", "room": "r", "text": "in the dark", "id": "d"})).await;
    let published = tokio::time::timeout(WAIT, async {
        let mut messages = spy.on_message();
        while let Some(m) = messages.next().await {
            if m.get_payload::<String>().is_ok_and(|p| p.contains("in the dark")) {
                return;
            }
        }
    })
    .await;
    assert!(published.is_ok(), "Redis never published the message");
    proxy.set(Link::Down);
    let mut alice_got = Vec::new();
    let during = tokio::time::timeout(Duration::from_secs(3), reply_to(&mut alice, "d", &mut alice_got)).await;
    proxy.set(Link::Up);
    let during = match during {
        Ok(v) => v,
        Err(_) => reply_to(&mut alice, "d", &mut alice_got).await,
    };
    assert!(alice_got.is_empty(), "{alice_got:?}");
    check_either_acked_or_never_seen(&cluster, alice, bob, during, "in the dark").await;
    cluster.finish().await;
}

/// What happens while Redis is away is put right when it returns: a user
/// who left meanwhile is seen to quit, its nick is free again, and the one
/// who stayed is still in the room.
#[tokio::test]
async fn who_left_during_a_redis_outage_is_gone_when_it_returns() {
    let Some(mut redis) = OwnRedis::for_test("who_left_during_a_redis_outage_is_gone_when_it_returns").await else {
        return;
    };
    let cluster = Cluster::start_on(&redis.url(), 2, |c| {
        c.cluster.heartbeat = Duration::from_millis(200);
        c.cluster.node_timeout = Duration::from_secs(5);
        c.cluster.redis_timeout = Duration::from_millis(500);
        c.cluster.reconnect_max = Duration::from_millis(200);
    })
    .await;
    let [mut alice, mut bob, mut carol] = gather(&cluster, "r", [(1, "alice"), (2, "bob"), (1, "carol")]).await;

    redis.kill().await;
    // carol goes while nobody can be told.
    carol.close().await;
    redis.restart().await;

    // n1 puts Redis right: both members, on either node, see carol quit, once.
    bob.expect_json(presence("r", "carol", "quit")).await;
    alice.expect_json(presence("r", "carol", "quit")).await;
    // The nick is free again, on either node.
    let mut carol = cluster.hello(2, "carol").await;
    // alice is still a member everywhere.
    carol.send(json!({"type": "who", "room": "r", "id": "w"})).await;
    let who = carol.expect("room_status").await;
    let nicks: Vec<&str> = who["members"].as_array().unwrap().iter().map(|m| m["nick"].as_str().unwrap()).collect();
    assert_eq!(nicks, ["alice", "bob"], "{who}");
    alice.sync().await;
    bob.sync().await;
    cluster.finish().await;
}
