//! Storage recovers by itself: a pool connection that failed is dropped and
//! reopened, so writing resumes within seconds of the cause going away, and
//! `/readyz` says 503 while writes fail.
//!
//! SQLite is made read-only with `chattr +i` (tests run as root, whom file
//! modes do not stop); where that is not possible the test says so and
//! skips. PostgreSQL and MariaDB (when `TEST_*_URL` is set) have their
//! server-side connections killed.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::backends::{self, Kind};
use common::*;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, Row};

/// How long recovery may take once the cause is gone.
const RECOVERY: Duration = Duration::from_secs(5);

/// A file made immutable (`chattr +i`) until dropped.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Option<Immutable> {
        let ok = std::process::Command::new("chattr").arg("+i").arg(path).status().is_ok_and(|s| s.success());
        ok.then(|| Immutable(path.to_owned()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

fn read_only(test: &str, db: &Path) -> Option<Immutable> {
    let guard = Immutable::set(db);
    if guard.is_none() {
        backends::skipped(test, "chattr +i is not possible here (no chattr, or a filesystem without it)");
    }
    guard
}

/// Says `text`; the `ack` or the `error` that came instead.
async fn try_say(c: &mut Client, text: &str) -> Value {
    c.send(json!({"type": "say", "room": "r", "text": text, "id": text})).await;
    loop {
        let v = c.recv().await;
        if v["id"] == text {
            return v;
        }
    }
}

/// Says until a `say` is acknowledged; fails after [`RECOVERY`].
async fn say_until_stored(c: &mut Client, what: &str) -> Duration {
    let start = Instant::now();
    for attempt in 0.. {
        let v = try_say(c, &format!("{what} {attempt}")).await;
        if v["type"] == "ack" {
            return start.elapsed();
        }
        assert_eq!(v["code"], "unavailable", "{v}");
        assert!(start.elapsed() < RECOVERY, "{what}: still `unavailable` after {RECOVERY:?}");
        // Nothing to await: storage recovers on its own time.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!()
}

async fn readyz(server: &chat::RunningServer) -> u16 {
    common::http::get(server.addr(), "/readyz", &[]).await.status
}

/// Every one of `n` says is stored.
async fn all_stored(c: &mut Client, n: usize, what: &str) {
    for i in 0..n {
        let v = try_say(c, &format!("{what} {i}")).await;
        assert_eq!(v["type"], "ack", "{what}: say {i} of {n} after recovery: {v}");
    }
}

#[tokio::test]
async fn sqlite_started_read_only_writes_once_the_file_is_writable() {
    let db = fresh_db_path();
    let mut config = unlimited_config();
    config.database.url = format!("sqlite://{}", db.display());
    // Create and migrate the database in another process (in this one,
    // SQLite could reuse a read-write file descriptor of that pool).
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_chat"))
        .arg("migrate")
        .env("CHAT_DATABASE__URL", &config.database.url)
        .status()
        .unwrap();
    assert!(status.success());
    let Some(guard) = read_only("sqlite_started_read_only", &db) else { return };

    let server = start(config).await;
    let mut alice = Client::in_rooms(&server, "alice", &["r"]).await;
    let v = try_say(&mut alice, "while read-only").await;
    assert_eq!((&v["type"], &v["code"]), (&json!("error"), &json!("unavailable")), "{v}");
    assert_eq!(readyz(&server).await, 503, "ready while writes fail");

    drop(guard);
    let took = say_until_stored(&mut alice, "writable again").await;
    eprintln!("writing resumed {took:?} after the file became writable");
    all_stored(&mut alice, 20, "then").await;
    assert_eq!(readyz(&server).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_connections_opened_while_read_only_are_reopened() {
    let db = fresh_db_path();
    let mut config = unlimited_config();
    config.database.url = format!("sqlite://{}", db.display());
    let server = start(config).await;
    let mut alice = Client::in_rooms(&server, "alice", &["r"]).await;
    alice.say("r", "before").await;

    let Some(guard) = read_only("sqlite_connections_opened_while_read_only", &db) else { return };
    // Readers side by side make the pool open connections: read-only ones.
    let mut readers = Vec::new();
    for i in 0..10 {
        readers.push(Client::in_rooms(&server, &format!("reader{i}"), &["r"]).await);
    }
    for _ in 0..5 {
        for r in readers.iter_mut() {
            r.send(json!({"type": "history", "room": "r", "limit": 50})).await;
        }
        for r in readers.iter_mut() {
            r.until("history").await;
        }
    }
    // Connections opened before `chattr` keep a writable descriptor, so a
    // say (and /readyz's probe) may or may not work now: no assertion.
    let v = try_say(&mut alice, "while read-only").await;
    eprintln!("a say while the file is read-only: {}", v["type"]);

    drop(guard);
    let took = say_until_stored(&mut alice, "writable again").await;
    eprintln!("writing resumed {took:?} after the file became writable");
    // Not one in five, not one at all: every say is stored.
    all_stored(&mut alice, 50, "then").await;
    assert_eq!(readyz(&server).await, 200);
}

/// Kills every other server-side connection to the database of `url`.
async fn kill_connections(kind: Kind, url: &str) -> usize {
    match kind {
        Kind::Postgres => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            let rows = sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .fetch_all(&mut c)
            .await
            .unwrap();
            rows.len()
        }
        Kind::Mysql => {
            let mut c = sqlx::MySqlConnection::connect(url).await.unwrap();
            let ids: Vec<u64> = sqlx::query(
                "SELECT id FROM information_schema.processlist WHERE db = DATABASE() AND id <> CONNECTION_ID()",
            )
            .fetch_all(&mut c)
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get::<u64, _>(0).or_else(|_| r.try_get::<i64, _>(0).map(|v| v as u64)).unwrap())
            .collect();
            for id in &ids {
                // `id` comes from the server, not from input.
                let _ = sqlx::query(AssertSqlSafe(format!("KILL {id}"))).execute(&mut c).await;
            }
            ids.len()
        }
        Kind::Sqlite => unreachable!(),
    }
}

#[tokio::test]
async fn killed_database_connections_are_reopened() {
    for backend in backends::all("killed_database_connections_are_reopened").await {
        if backend.kind == Kind::Sqlite {
            continue;
        }
        let mut config = unlimited_config();
        config.database.url = backend.url.clone();
        let server = start(config).await;
        let mut alice = Client::in_rooms(&server, "alice", &["r"]).await;
        alice.say("r", "before").await;
        for round in 0..3 {
            let killed = kill_connections(backend.kind, &backend.url).await;
            assert!(killed > 0, "{:?}: no connection to kill", backend.kind);
            let took = say_until_stored(&mut alice, &format!("round {round}")).await;
            eprintln!("{:?}: {killed} connections killed; writing resumed after {took:?}", backend.kind);
            all_stored(&mut alice, 10, "then").await;
            assert_eq!(readyz(&server).await, 200);
        }
        server.stop().await;
    }
}
