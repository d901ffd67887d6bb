//! Clusters for the cluster tests (`tests/cluster.rs` for behaviour across
//! nodes, `tests/cluster_faults.rs` for failures): nodes `n1`, `n2`, … in
//! this process sharing one Redis key prefix and one SQLite database, the
//! real binary started as a node (to `kill -9` it), a redis-server of a
//! test's own (to kill, restart or stall it), a TCP proxy in front of Redis
//! that a test can cut, and the database the archiver writes, read
//! directly.
//!
//! A cluster needs `TEST_REDIS_URL`: without it [`redis_url`] and
//! [`Cluster::start`] say the test was `SKIPPED` and return `None`. Each
//! cluster uses a Redis key prefix of its own ([`new_prefix`]), so tests
//! running in parallel on one Redis never meet; [`Cluster::finish`] deletes
//! the keys when a test ends well.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use chat::{Config, RunningServer};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::{
    Client, MS, TOKEN_SECRET, WAIT, backends, body, member, norm, presence, room_msg, site_token, start,
    unlimited_config,
};

/// How long data written by processes we do not control (the archiver, a
/// restarting Redis) may take to show up before a test fails.
pub const SETTLE: Duration = Duration::from_secs(30);

// ---- the cluster -------------------------------------------------------------

/// `TEST_REDIS_URL`, or `None` after saying that `test` was skipped.
pub fn redis_url(test: &str) -> Option<String> {
    match std::env::var("TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            backends::skipped(test, "redis (TEST_REDIS_URL not set)");
            None
        }
    }
}

/// A Redis key prefix no other test (or test run) uses.
pub fn new_prefix() -> String {
    format!("t-{}", ulid::Ulid::generate())
}

/// One node's settings: no rate limits worth mentioning, site tokens signed
/// with [`TOKEN_SECRET`], a fresh SQLite file (which every node of the
/// cluster then shares), and the cluster's Redis and prefix.
pub fn cluster_config(redis_url: &str, prefix: &str) -> Config {
    let mut c = unlimited_config();
    c.auth.token_secret = chat::config::Secret::new(TOKEN_SECRET);
    c.limits.outbound_queue = 100_000;
    c.cluster.redis_url = redis_url.into();
    c.cluster.prefix = prefix.into();
    c
}

/// Short cluster timings: a dead node is noticed within about a second and
/// the archiver runs ten times a second.
pub fn fast(c: &mut Config) {
    c.cluster.heartbeat = Duration::from_millis(200);
    c.cluster.node_timeout = Duration::from_secs(1);
    c.cluster.sync_interval = Duration::from_millis(100);
}

/// Nodes `n1`, `n2`, … of one cluster: one Redis prefix, one database.
pub struct Cluster {
    pub base: Config,
    /// `nodes[i]` is node `n{i+1}`; `None` once stopped.
    nodes: Vec<Option<RunningServer>>,
}

impl Cluster {
    /// Starts `n` nodes with [`cluster_config`] changed by `tweak`; `None`
    /// (the test is skipped) without `TEST_REDIS_URL`.
    pub async fn start(test: &str, n: usize, tweak: impl Fn(&mut Config)) -> Option<Cluster> {
        let redis = redis_url(test)?;
        Some(Cluster::start_on(&redis, n, tweak).await)
    }

    /// Starts `n` nodes on the Redis at `redis`.
    pub async fn start_on(redis: &str, n: usize, tweak: impl Fn(&mut Config)) -> Cluster {
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
    pub fn config(&self, i: usize) -> Config {
        let mut c = self.base.clone();
        c.server.node = format!("n{i}");
        c
    }

    /// The `database.url` all nodes share.
    pub fn db(&self) -> &str {
        &self.base.database.url
    }

    pub fn node(&self, i: usize) -> &RunningServer {
        self.nodes[i - 1].as_ref().unwrap_or_else(|| panic!("n{i} is not running"))
    }

    /// Starts node `n{i}` with `config` (a new node, or one stopped before).
    pub async fn start_node(&mut self, i: usize, config: Config) {
        if self.nodes.len() < i {
            self.nodes.resize_with(i, || None);
        }
        assert!(self.nodes[i - 1].is_none(), "n{i} is already running");
        self.nodes[i - 1] = Some(start(config).await);
    }

    /// Takes node `n{i}` out of the cluster (to stop it).
    pub fn take(&mut self, i: usize) -> RunningServer {
        self.nodes[i - 1].take().unwrap_or_else(|| panic!("n{i} is not running"))
    }

    /// A guest `nick` on node `n{i}` (the `welcome` must say so).
    pub async fn hello(&self, i: usize, nick: &str) -> Client {
        let (c, welcome) = Client::hello(self.node(i), nick).await;
        assert_on(&welcome, i);
        c
    }

    /// A session of the site user `claims` on node `n{i}`.
    pub async fn site_user(&self, i: usize, claims: &chat::auth::SiteClaims) -> Client {
        let (c, welcome) = Client::with_token(self.node(i), &site_token(claims)).await;
        assert_on(&welcome, i);
        c
    }

    /// Stops every node, then deletes the cluster's Redis keys. Best
    /// effort: a test that fails before this leaves its (unique) keys.
    pub async fn finish(self) {
        let stops = self.nodes.into_iter().flatten().map(|n| tokio::time::timeout(Duration::from_secs(15), n.stop()));
        futures_util::future::join_all(stops).await;
        forget(&self.base.cluster.redis_url, &self.base.cluster.prefix).await;
    }
}

pub fn assert_on(welcome: &Value, node: usize) {
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["server"]["node"], format!("n{node}"), "the client is not on the node it asked for: {welcome}");
}

/// Deletes every key under `prefix:` (best effort).
pub async fn forget(redis_url: &str, prefix: &str) {
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
pub async fn gather<const N: usize>(cluster: &Cluster, room: &str, who: [(usize, &str); N]) -> [Client; N] {
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

pub fn ack_of(message: &Value, id: Value) -> Value {
    json!({"type": "ack", "id": id, "message": body(message)})
}

pub fn status(nick: &str, online: bool, away: bool) -> Value {
    json!({"type": "status", "nick": nick, "online": online, "away": away, "last_seen": MS})
}

pub fn never_seen(nick: &str) -> Value {
    json!({"type": "status", "nick": nick, "online": false, "away": false, "last_seen": null})
}

pub fn seq_of(v: &Value) -> u64 {
    v["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {v}"))
}

/// `from` says `text` in `room`: its `ack` and each of `others`' `message`
/// carry `seq` and are the same message.
pub async fn say_seen(from: &mut Client, room: &str, text: &str, seq: u64, others: &mut [&mut Client]) {
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
pub struct Burst {
    pub client: Client,
    /// Its acks, in arrival order.
    pub acks: Vec<Value>,
    /// The `message` frames it received, in arrival order.
    pub messages: Vec<Value>,
}

/// Sends `count` messages to `target` (`{"room": …}` or `{"to": …}`)
/// without waiting, then reads until it has every ack and `incoming`
/// messages from the others.
pub async fn burst(mut c: Client, target: Value, count: usize, incoming: usize) -> Burst {
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
pub fn check_bursts(bursts: &[Burst], first: u64) {
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
pub struct Stored {
    pub msg_id: String,
    pub seq: u64,
    pub text: String,
    pub edited_at: Option<i64>,
    pub deleted: bool,
}

/// Every stored message of `room`, by seq, read from the database itself.
pub async fn stored(url: &str, room: &str) -> Vec<Stored> {
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
pub async fn poll_db(url: &str, room: &str, what: &str, ok: impl Fn(&[Stored]) -> bool) -> Vec<Stored> {
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
pub fn gap_free(rows: &[Stored]) -> bool {
    rows.iter().enumerate().all(|(i, r)| r.seq == i as u64 + 1)
}

/// The room's whole history as `c` reads it, paging forward.
pub async fn whole_history(c: &mut Client, room: &str) -> Vec<Value> {
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

// ---- the real binary as a node ----------------------------------------------

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `chat serve` as node `node` of the cluster on `redis`/`prefix`,
/// with the short timings of [`fast`], and waits until `/healthz` answers.
pub async fn spawn_node(db: &str, redis: &str, prefix: &str, node: &str) -> (Child, SocketAddr) {
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
            && super::http::get(addr, "/healthz", &[]).await.status == 200
        {
            return (child, addr);
        }
        assert!(Instant::now() < deadline, "node {node} did not start");
        tokio::time::sleep(Duration::from_millis(20)).await; // polling a process we do not control
    }
}

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw WebSocket to the spawned node: `nick` in `room`.
pub async fn raw_client(addr: SocketAddr, nick: &str, room: &str) -> Ws {
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

// ---- Redis of a test's own, and a proxy that cuts it off -------------------

/// A redis-server of the test's own, persisting every write (appendonly,
/// fsync always) in a directory that survives its restarts.
pub struct OwnRedis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl OwnRedis {
    /// For a test that kills or stalls Redis: `None` (the test is skipped,
    /// and says why) without `TEST_REDIS_URL` or a `redis-server` to run.
    pub async fn for_test(test: &str) -> Option<OwnRedis> {
        redis_url(test)?;
        let redis = OwnRedis::start().await;
        if redis.is_none() {
            super::backends::skipped(test, "redis-server not found");
        }
        redis
    }

    /// `None` when there is no `redis-server` to run.
    pub async fn start() -> Option<OwnRedis> {
        if Command::new("redis-server").arg("--version").output().await.is_err() {
            return None;
        }
        let dir = tempfile::Builder::new().prefix("redis-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
        let mut redis = OwnRedis { child: None, port: free_port(), dir };
        redis.restart().await;
        Some(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again, on the same port and directory) and waits until it answers.
    pub async fn restart(&mut self) {
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

    pub async fn ping(&self) -> bool {
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
    pub async fn pause_writes(&self, how_long: Duration) {
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
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("redis-server is running");
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }
}

/// How the [`Proxy`] treats the connections through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Both ways.
    Up,
    /// What the nodes send reaches Redis, which acts on it; its replies
    /// and publications are dropped.
    Mute,
    /// Every connection is closed and new ones are refused.
    Down,
}

/// A TCP proxy in front of Redis that the test can cut.
pub struct Proxy {
    addr: SocketAddr,
    link: watch::Sender<Link>,
}

impl Proxy {
    pub async fn start(upstream_port: u16) -> Proxy {
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

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    pub fn set(&self, link: Link) {
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
