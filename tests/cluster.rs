//! Clustering: several nodes sharing one Redis and one database behave, to
//! their users, like one server. Clients are spread over the nodes (each
//! test checks `welcome.server.node`), and what the single-node tests assert
//! must hold across nodes: rooms, presence, `who`, direct messages, messages
//! to everyone, typing, events, read receipts, edits, nick uniqueness,
//! history (before and after the archiver has moved messages into the
//! database). Then failures: a node stopped or killed (`kill -9` of the real
//! binary), Redis killed and restarted, stalled, or cut off just after it
//! stored a message: no acknowledged message is lost, and no message its
//! sender was told was not sent is ever delivered.
//!
//! Every test needs `TEST_REDIS_URL` and is skipped (passing, with a
//! `SKIPPED` line) without it; the tests that start a Redis of their own
//! also need `redis-server`. Each cluster uses a Redis key prefix of its
//! own, so tests running in parallel on one Redis never meet; the keys are
//! deleted when a test ends well.
//!
//! Across nodes, `Client::sync` proves only that nothing is queued for the
//! session on its own node: a frame from another node may still be in
//! flight. To show that something did not arrive, a test awaits a later
//! frame that must come after it (room, DM and everyone messages arrive in
//! `seq` order).
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat::{Config, RunningServer};
use common::backends;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// How long data written by processes we do not control (the archiver, a
/// restarting Redis) may take to show up before a test fails.
const SETTLE: Duration = Duration::from_secs(30);

// ---- the cluster -------------------------------------------------------------

/// `TEST_REDIS_URL`, or `None` after saying that `test` was skipped.
fn redis_url(test: &str) -> Option<String> {
    match std::env::var("TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            backends::skipped(test, "redis (TEST_REDIS_URL not set)");
            None
        }
    }
}

/// A Redis key prefix no other test (or test run) uses.
fn new_prefix() -> String {
    format!("t-{}", ulid::Ulid::generate())
}

/// One node's settings: no rate limits worth mentioning, site tokens signed
/// with [`TOKEN_SECRET`], a fresh SQLite file (which every node of the
/// cluster then shares), and the cluster's Redis and prefix.
fn cluster_config(redis_url: &str, prefix: &str) -> Config {
    let mut c = unlimited_config();
    c.auth.token_secret = chat::config::Secret::new(TOKEN_SECRET);
    c.limits.outbound_queue = 100_000;
    c.cluster.redis_url = redis_url.into();
    c.cluster.prefix = prefix.into();
    c
}

/// Short cluster timings: a dead node is noticed within about a second and
/// the archiver runs ten times a second.
fn fast(c: &mut Config) {
    c.cluster.heartbeat = Duration::from_millis(200);
    c.cluster.node_timeout = Duration::from_secs(1);
    c.cluster.sync_interval = Duration::from_millis(100);
}

/// Nodes `n1`, `n2`, … of one cluster: one Redis prefix, one database.
struct Cluster {
    base: Config,
    /// `nodes[i]` is node `n{i+1}`; `None` once stopped.
    nodes: Vec<Option<RunningServer>>,
}

impl Cluster {
    /// Starts `n` nodes with [`cluster_config`] changed by `tweak`; `None`
    /// (the test is skipped) without `TEST_REDIS_URL`.
    async fn start(test: &str, n: usize, tweak: impl Fn(&mut Config)) -> Option<Cluster> {
        let redis = redis_url(test)?;
        Some(Cluster::start_on(&redis, n, tweak).await)
    }

    /// Starts `n` nodes on the Redis at `redis`.
    async fn start_on(redis: &str, n: usize, tweak: impl Fn(&mut Config)) -> Cluster {
        let mut base = cluster_config(redis, &new_prefix());
        tweak(&mut base);
        let mut cluster = Cluster { base, nodes: Vec::new() };
        for i in 1..=n {
            let config = cluster.config(i);
            cluster.nodes.push(Some(start(config).await));
        }
        cluster
    }

    /// The settings of node `n{i}`.
    fn config(&self, i: usize) -> Config {
        let mut c = self.base.clone();
        c.server.node = format!("n{i}");
        c
    }

    /// The `database.url` all nodes share.
    fn db(&self) -> &str {
        &self.base.database.url
    }

    fn node(&self, i: usize) -> &RunningServer {
        self.nodes[i - 1].as_ref().unwrap_or_else(|| panic!("n{i} is not running"))
    }

    /// Starts node `n{i}` with `config` (a new node, or one stopped before).
    async fn start_node(&mut self, i: usize, config: Config) {
        if self.nodes.len() < i {
            self.nodes.resize_with(i, || None);
        }
        assert!(self.nodes[i - 1].is_none(), "n{i} is already running");
        self.nodes[i - 1] = Some(start(config).await);
    }

    /// Takes node `n{i}` out of the cluster (to stop it).
    fn take(&mut self, i: usize) -> RunningServer {
        self.nodes[i - 1].take().unwrap_or_else(|| panic!("n{i} is not running"))
    }

    /// A guest `nick` on node `n{i}` (the `welcome` must say so).
    async fn hello(&self, i: usize, nick: &str) -> Client {
        let (c, welcome) = Client::hello(self.node(i), nick).await;
        assert_on(&welcome, i);
        c
    }

    /// A session of the site user `claims` on node `n{i}`.
    async fn site_user(&self, i: usize, claims: &chat::auth::SiteClaims) -> Client {
        let (c, welcome) = Client::with_token(self.node(i), &site_token(claims)).await;
        assert_on(&welcome, i);
        c
    }

    /// Stops every node, then deletes the cluster's Redis keys. Best
    /// effort: a test that fails before this leaves its (unique) keys.
    async fn finish(self) {
        let stops = self.nodes.into_iter().flatten().map(|n| tokio::time::timeout(Duration::from_secs(15), n.stop()));
        futures_util::future::join_all(stops).await;
        forget(&self.base.cluster.redis_url, &self.base.cluster.prefix).await;
    }
}

fn assert_on(welcome: &Value, node: usize) {
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["server"]["node"], format!("n{node}"), "the client is not on the node it asked for: {welcome}");
}

/// Deletes every key under `prefix:` (best effort).
async fn forget(redis_url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(redis_url) else { return };
    let Ok(Ok(mut con)) = tokio::time::timeout(Duration::from_secs(2), client.get_multiplexed_async_connection()).await
    else {
        return;
    };
    let mut cursor = 0u64;
    loop {
        let scan: redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut con)
            .await;
        let Ok((next, keys)) = scan else { return };
        if !keys.is_empty() {
            let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(&keys).query_async(&mut con).await;
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// Guests who join `room` one after another, each on its node (`(node,
/// nick)`): each one's `joined` lists everyone before it, on whatever
/// node, and those already in the room see it join. Nicks are given in
/// alphabetical order, so the member list's order is the same whether it
/// is sorted by joining time or by nick.
async fn gather<const N: usize>(cluster: &Cluster, room: &str, who: [(usize, &str); N]) -> [Client; N] {
    let mut clients: Vec<Client> = Vec::new();
    let mut members = Vec::new();
    for (node, nick) in who {
        let mut c = cluster.hello(node, nick).await;
        members.push(member(nick));
        c.send(json!({"type": "join", "room": room, "id": "j"})).await;
        c.expect_json(json!({"type": "joined", "id": "j", "room": room, "topic": "", "members": members,
            "seq": 0, "history": [], "more": false}))
            .await;
        for earlier in clients.iter_mut() {
            earlier.expect_json(presence(room, nick, "join")).await;
        }
        clients.push(c);
    }
    match clients.try_into() {
        Ok(a) => a,
        Err(_) => unreachable!(),
    }
}

fn ack_of(message: &Value, id: Value) -> Value {
    json!({"type": "ack", "id": id, "message": body(message)})
}

fn status(nick: &str, online: bool, away: bool) -> Value {
    json!({"type": "status", "nick": nick, "online": online, "away": away, "last_seen": MS})
}

fn never_seen(nick: &str) -> Value {
    json!({"type": "status", "nick": nick, "online": false, "away": false, "last_seen": null})
}

fn seq_of(v: &Value) -> u64 {
    v["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {v}"))
}

/// `from` says `text` in `room`: its `ack` and each of `others`' `message`
/// carry `seq` and are the same message.
async fn say_seen(from: &mut Client, room: &str, text: &str, seq: u64, others: &mut [&mut Client]) {
    let expected = room_msg(room, seq, &from.nick, text);
    let ack = from.say(room, text).await;
    assert_eq!(norm(ack.clone()), ack_of(&expected, json!("say")), "{}", from.nick);
    for o in others.iter_mut() {
        let msg = o.expect_json(expected.clone()).await;
        assert_eq!(body(&msg), ack["message"], "{}: ack and message are the same message", o.nick);
    }
}

// ---- bursts: many senders at once --------------------------------------------

/// What one session sent and received in a burst.
struct Burst {
    client: Client,
    /// Its acks, in arrival order.
    acks: Vec<Value>,
    /// The `message` frames it received, in arrival order.
    messages: Vec<Value>,
}

/// Sends `count` messages to `target` (`{"room": …}` or `{"to": …}`)
/// without waiting, then reads until it has every ack and `incoming`
/// messages from the others.
async fn burst(mut c: Client, target: Value, count: usize, incoming: usize) -> Burst {
    for i in 0..count {
        let mut say = json!({"type": "say", "text": format!("{} {i}", c.nick), "id": i});
        say.as_object_mut().unwrap().extend(target.as_object().unwrap().clone());
        c.send(say).await;
    }
    let (mut acks, mut messages) = (Vec::new(), Vec::new());
    while acks.len() < count || messages.len() < incoming {
        let v = c.recv().await;
        match v["type"].as_str() {
            Some("ack") => acks.push(v),
            Some("message") => messages.push(v),
            _ => panic!("{}: unexpected frame in a burst: {v}", c.nick),
        }
    }
    Burst { client: c, acks, messages }
}

/// All acks together carry the seqs `first..first+n` once each; each
/// sender's messages got increasing seqs in the order it sent them; and
/// each session received exactly the other sessions' messages, in `seq`
/// order, each once, each the same object as its ack.
fn check_bursts(bursts: &[Burst], first: u64) {
    let mut by_seq: BTreeMap<u64, (usize, Value)> = BTreeMap::new();
    for (who, b) in bursts.iter().enumerate() {
        let mut acks = b.acks.clone();
        acks.sort_by_key(|a| a["id"].as_u64());
        for (i, ack) in acks.iter().enumerate() {
            assert_eq!(ack["id"], i, "{}: {ack}", b.client.nick);
            assert_eq!(ack["message"]["text"], format!("{} {i}", b.client.nick), "{}: {ack}", b.client.nick);
            let dup = by_seq.insert(seq_of(&ack["message"]), (who, ack["message"].clone()));
            assert!(dup.is_none(), "seq {} acked twice", ack["message"]["seq"]);
        }
        let seqs: Vec<u64> = acks.iter().map(|a| seq_of(&a["message"])).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{}: seqs out of sending order: {seqs:?}", b.client.nick);
    }
    let all: Vec<u64> = by_seq.keys().copied().collect();
    assert_eq!(all, (first..first + all.len() as u64).collect::<Vec<_>>(), "the acks' seqs have a gap");
    for (who, b) in bursts.iter().enumerate() {
        let got: Vec<u64> = b.messages.iter().map(seq_of).collect();
        let expected: Vec<u64> = by_seq.iter().filter(|(_, (w, _))| *w != who).map(|(s, _)| *s).collect();
        assert_eq!(got, expected, "{}: not every other message, once each, in seq order", b.client.nick);
        for m in &b.messages {
            assert_eq!(body(m), by_seq[&seq_of(m)].1, "{}: message and ack differ", b.client.nick);
        }
    }
}

// ---- the database, read directly ---------------------------------------------

/// A message row as the archiver stored it.
#[derive(Clone, Debug)]
struct Stored {
    msg_id: String,
    seq: u64,
    text: String,
    edited_at: Option<i64>,
    deleted: bool,
}

/// Every stored message of `room`, by seq, read from the database itself.
async fn stored(url: &str, room: &str) -> Vec<Stored> {
    type Row = (String, i64, String, Option<i64>, bool);
    let rows: Vec<Row> = if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.expect("open the SQLite file");
        sqlx::query_as("SELECT msg_id, seq, text, edited_at, deleted FROM messages WHERE room = ? ORDER BY seq")
            .bind(room)
            .fetch_all(&mut c)
            .await
            .expect("read messages")
    } else if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await.expect("connect to PostgreSQL");
        sqlx::query_as("SELECT msg_id, seq, text, edited_at, deleted FROM messages WHERE room = $1 ORDER BY seq")
            .bind(room)
            .fetch_all(&mut c)
            .await
            .expect("read messages")
    } else {
        let mut c = sqlx::MySqlConnection::connect(url).await.expect("connect to MySQL");
        sqlx::query_as("SELECT msg_id, seq, text, edited_at, deleted FROM messages WHERE room = ? ORDER BY seq")
            .bind(room)
            .fetch_all(&mut c)
            .await
            .expect("read messages")
    };
    rows.into_iter()
        .map(|(msg_id, seq, text, edited_at, deleted)| Stored {
            msg_id: msg_id.trim().to_string(),
            seq: seq as u64,
            text,
            edited_at,
            deleted,
        })
        .collect()
}

/// Polls the database (written by an archiver we do not control) until
/// `ok` holds for the rows of `room`; fails after [`SETTLE`].
async fn poll_db(url: &str, room: &str, what: &str, ok: impl Fn(&[Stored]) -> bool) -> Vec<Stored> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let rows = stored(url, room).await;
        if ok(&rows) {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "after {SETTLE:?} the database still lacks {what}: {} rows {rows:?}",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // polling the archiver's output
    }
}

/// The seqs of `rows` are 1..=n, each once.
fn gap_free(rows: &[Stored]) -> bool {
    rows.iter().enumerate().all(|(i, r)| r.seq == i as u64 + 1)
}

/// The room's whole history as `c` reads it, paging forward.
async fn whole_history(c: &mut Client, room: &str) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    loop {
        let after = out.last().map_or(0, seq_of);
        c.send(json!({"type": "history", "room": room, "after": after, "limit": 200, "id": "page"})).await;
        let page = c.expect("history").await;
        out.extend(page["messages"].as_array().expect("messages").iter().cloned());
        if page["more"] != true {
            return out;
        }
    }
}

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
    let mut dave = cluster.hello(2, "dave").await;
    alice.send(json!({"type": "watch", "nicks": ["dave"]})).await;
    alice.expect_json(status("dave", true, false)).await;
    dave.close().await;
    alice.expect_json(status("dave", false, false)).await;
    let ack = alice.say_to("dave", "for later").await;
    assert_eq!(norm(ack["message"].clone()), body(&dm_msg("dave", 1, "alice", "for later")));
    alice.send(json!({"type": "say", "to": "nobody", "text": "hello?", "id": "n"})).await;
    assert_eq!(alice.expect_error("no_such_user").await["id"], "n");
    let mut dave = cluster.hello(3, "dave").await;
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `chat serve` as node `node` of the cluster on `redis`/`prefix`,
/// with the short timings of [`fast`], and waits until `/healthz` answers.
async fn spawn_node(db: &str, redis: &str, prefix: &str, node: &str) -> (Child, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_chat"))
        .args(["serve", "--listen", &addr.to_string()])
        .env("CHAT_DATABASE__URL", db)
        .env("CHAT_CLUSTER__REDIS_URL", redis)
        .env("CHAT_CLUSTER__PREFIX", prefix)
        .env("CHAT_CLUSTER__HEARTBEAT", "200ms")
        .env("CHAT_CLUSTER__NODE_TIMEOUT", "1s")
        .env("CHAT_CLUSTER__SYNC_INTERVAL", "100ms")
        .env("CHAT_SERVER__NODE", node)
        .env("CHAT_ROOMS__AUTO_JOIN", "[]")
        .env("CHAT_LIMITS__RATE_PER_SEC", "100000")
        .env("CHAT_LIMITS__BURST", "100000")
        .env("CHAT_LIMITS__OUTBOUND_QUEUE", "100000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn chat");
    let deadline = Instant::now() + SETTLE;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok()
            && common::http::get(addr, "/healthz", &[]).await.status == 200
        {
            return (child, addr);
        }
        assert!(Instant::now() < deadline, "node {node} did not start");
        tokio::time::sleep(Duration::from_millis(20)).await; // polling a process we do not control
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw WebSocket to the spawned node: `nick` in `room`.
async fn raw_client(addr: SocketAddr, nick: &str, room: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await.unwrap();
    ws.send(Message::text(json!({"type": "hello", "nick": nick}).to_string())).await.unwrap();
    ws.send(Message::text(json!({"type": "join", "room": room, "history": 0}).to_string())).await.unwrap();
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next()).await.expect("joined in time");
        if let Some(Ok(Message::Text(t))) = frame {
            let v: Value = serde_json::from_str(&t).unwrap();
            assert_ne!(v["type"], "error", "{nick}: {v}");
            if v["type"] == "joined" {
                return ws;
            }
        } else {
            panic!("{nick}: connection ended before `joined`: {frame:?}");
        }
    }
}

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

/// A redis-server of the test's own, persisting every write (appendonly,
/// fsync always) in a directory that survives its restarts.
struct OwnRedis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl OwnRedis {
    /// `None` when there is no `redis-server` to run.
    async fn start() -> Option<OwnRedis> {
        if Command::new("redis-server").arg("--version").output().await.is_err() {
            return None;
        }
        let dir = tempfile::Builder::new().prefix("redis-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
        let mut redis = OwnRedis { child: None, port: free_port(), dir };
        redis.restart().await;
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again, on the same port and directory) and waits until it answers.
    async fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--save", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + SETTLE;
        loop {
            if self.ping().await {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not start on port {}", self.port);
            tokio::time::sleep(Duration::from_millis(20)).await; // polling a process we do not control
        }
    }

    async fn ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else { return false };
        let Ok(Ok(mut con)) =
            tokio::time::timeout(Duration::from_secs(1), client.get_multiplexed_async_connection()).await
        else {
            return false;
        };
        let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut con).await;
        pong.is_ok_and(|p| p == "PONG")
    }

    /// Redis stops executing writes (and scripts, and PUBLISH) for `how_long`:
    /// a stall, as a slow disk or a long command would cause.
    async fn pause_writes(&self, how_long: Duration) {
        let client = redis::Client::open(self.url()).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let ok: String = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(how_long.as_millis() as u64)
            .arg("WRITE")
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(ok, "OK");
    }

    /// kill -9.
    async fn kill(&mut self) {
        let mut child = self.child.take().expect("redis-server is running");
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }
}

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
    let test = "redis_restarting_mid_traffic_loses_no_acknowledged_message";
    if redis_url(test).is_none() {
        return;
    }
    let Some(mut redis) = OwnRedis::start().await else {
        backends::skipped(test, "redis-server not found");
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
    let test = "a_message_refused_during_a_redis_stall_is_never_delivered";
    if redis_url(test).is_none() {
        return;
    }
    let Some(redis) = OwnRedis::start().await else {
        backends::skipped(test, "redis-server not found");
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

/// How the [`Proxy`] treats the connections through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// Both ways.
    Up,
    /// What the nodes send reaches Redis, which acts on it; its replies
    /// and publications are dropped.
    Mute,
    /// Every connection is closed and new ones are refused.
    Down,
}

/// A TCP proxy in front of Redis that the test can cut.
struct Proxy {
    addr: SocketAddr,
    link: watch::Sender<Link>,
}

impl Proxy {
    async fn start(upstream_port: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (link, rx) = watch::channel(Link::Up);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *rx.borrow() == Link::Down {
                    continue; // dropped: refused
                }
                if let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream_port)).await {
                    tokio::spawn(Proxy::pipe(client, server, rx.clone()));
                }
            }
        });
        Proxy { addr, link }
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    fn set(&self, link: Link) {
        self.link.send_replace(link);
    }

    async fn pipe(client: tokio::net::TcpStream, server: tokio::net::TcpStream, mut changes: watch::Receiver<Link>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let link = changes.clone();
        let (mut client_rx, mut client_tx) = client.into_split();
        let (mut server_rx, mut server_tx) = server.into_split();
        let (mut up, mut down) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
        loop {
            tokio::select! {
                n = client_rx.read(&mut up) => match n {
                    Ok(n) if n > 0 => if server_tx.write_all(&up[..n]).await.is_err() { return },
                    _ => return,
                },
                n = server_rx.read(&mut down) => match n {
                    Ok(n) if n > 0 => {
                        let pass = *link.borrow() == Link::Up;
                        if pass && client_tx.write_all(&down[..n]).await.is_err() {
                            return;
                        }
                    }
                    _ => return,
                },
                changed = changes.changed() => {
                    if changed.is_err() || *link.borrow() == Link::Down {
                        return;
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_stored_just_as_redis_went_away_is_never_refused_and_delivered() {
    let test = "a_message_stored_just_as_redis_went_away_is_never_refused_and_delivered";
    if redis_url(test).is_none() {
        return;
    }
    let Some(redis) = OwnRedis::start().await else {
        backends::skipped(test, "redis-server not found");
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
