//! Persistence, on every backend: SQLite always; PostgreSQL and MariaDB when
//! `TEST_POSTGRES_URL` / `TEST_MYSQL_URL` are set (`.ci/run` sets them). Each
//! test runs the same steps on a fresh database of each backend.

mod common;

use std::time::Duration;

use chat::Config;
use common::backends::{self, Backend, Kind};
use common::*;
use serde_json::{Value, json};
use sqlx::Connection;

fn config_for(b: &Backend) -> Config {
    let mut c = test_config();
    c.database.url = b.url.clone();
    c
}

fn texts(messages: &Value) -> Vec<String> {
    messages.as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap().to_string()).collect()
}

fn seqs(messages: &Value) -> Vec<u64> {
    messages.as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn everything_said_survives_a_restart() {
    for b in backends::all("everything_said_survives_a_restart").await {
        let kind = b.kind;
        let config = config_for(&b);

        // First run: say, DM, everyone, edit, delete, topic.
        let server = start(config.clone()).await;
        let (mut alice, welcome) = Client::hello(&server, "Alice").await;
        let alices_token = welcome["token"].as_str().expect("welcome.token").to_string();
        alice.join("Dev").await;
        let mut bob = Client::in_rooms(&server, "bob", &["dev"]).await;
        alice.expect("presence").await;
        let mut ids = Vec::new();
        for i in 1..=5 {
            let ack = alice.say("dev", &format!("m{i}")).await;
            assert_eq!(ack["message"]["seq"], i, "{kind:?}");
            ids.push(ack["message"]["msg_id"].as_str().unwrap().to_string());
            bob.expect("message").await;
        }
        alice.say_to("bob", "psst 1").await;
        alice.say_to("bob", "psst 2").await;
        alice.send(json!({"type":"say","everyone":true,"text":"hello all","id":"e"})).await;
        alice.expect("ack").await;
        alice.send(json!({"type":"edit","msg_id":ids[1],"text":"m2 (edited)","id":"ed"})).await;
        alice.expect_json(json!({"type":"ack","id":"ed"})).await;
        alice.send(json!({"type":"delete","msg_id":ids[2],"id":"del"})).await;
        alice.expect_json(json!({"type":"ack","id":"del"})).await;
        alice.send(json!({"type":"topic","room":"dev","topic":"release friday","id":"t"})).await;
        alice.expect("topic").await;
        alice.expect("ack").await;
        drop((alice, bob));
        server.stop().await;

        // Second run on the same database.
        let server = start(config).await;
        let (mut carol, _) = Client::hello(&server, "carol").await;
        carol.send(json!({"type":"join","room":"dev","history":10})).await;
        let joined = carol.expect("joined").await;
        assert_eq!(joined["room"], "Dev", "{kind:?}: the first spelling is kept");
        assert_eq!(joined["topic"], "release friday", "{kind:?}");
        assert_eq!(joined["seq"], 5, "{kind:?}");
        assert_eq!(texts(&joined["history"]), ["m1", "m2 (edited)", "", "m4", "m5"], "{kind:?}");
        assert_eq!(seqs(&joined["history"]), [1, 2, 3, 4, 5], "{kind:?}");
        assert!(joined["history"][1]["edited_at"].is_i64(), "{kind:?}");
        assert_eq!(joined["history"][2]["deleted"], true, "{kind:?}");
        assert_eq!(joined["history"][0]["msg_id"], ids[0].as_str(), "{kind:?}");
        // seq continues after the restart.
        assert_eq!(carol.say("dev", "m6").await["message"]["seq"], 6, "{kind:?}");
        // bob was seen before: a DM to him (offline) is stored.
        assert_eq!(carol.say_to("bob", "are you there?").await["message"]["seq"], 1, "{kind:?}");
        carol.send(json!({"type":"history","everyone":true,"id":"h"})).await;
        let h = carol.expect("history").await;
        assert_eq!(texts(&h["messages"]), ["hello all"], "{kind:?}");
        // alice comes back as herself (within her grace period) with her token.
        let (mut alice, _) = Client::with_token(&server, &alices_token).await;
        alice.send(json!({"type":"history","with":"BOB"})).await;
        let h = alice.expect("history").await;
        assert_eq!(h["with"], "BOB");
        assert_eq!(texts(&h["messages"]), ["psst 1", "psst 2"], "{kind:?}");
        assert_eq!(seqs(&h["messages"]), [1, 2], "{kind:?}");
        alice.send(json!({"type":"history","room":"dev","before":3,"limit":1})).await;
        let h = alice.expect("history").await;
        assert_eq!((texts(&h["messages"]), h["more"].clone()), (vec!["m2 (edited)".to_string()], json!(true)));
        server.stop().await;
    }
}

#[tokio::test]
async fn seq_is_gap_free_with_concurrent_senders() {
    for b in backends::all("seq_is_gap_free_with_concurrent_senders").await {
        let mut config = config_for(&b);
        config.limits.rate_per_sec = 10_000;
        config.limits.burst = 10_000;
        let server = start(config).await;
        let mut reader = Client::in_rooms(&server, "reader", &["r"]).await;
        let (senders, per) = (8, 25);
        let mut tasks = Vec::new();
        for s in 0..senders {
            let mut c = Client::in_rooms(&server, &format!("s{s}"), &["r"]).await;
            tasks.push(tokio::spawn(async move {
                for i in 0..per {
                    c.send(json!({"type":"say","room":"r","text":format!("{s}:{i}")})).await;
                }
                let mut acks = 0;
                while acks < per {
                    if c.recv().await["type"] == "ack" {
                        acks += 1;
                    }
                }
            }));
        }
        let mut got = Vec::new();
        while got.len() < senders * per {
            let v = reader.recv().await;
            if v["type"] == "message" {
                got.push(v["seq"].as_u64().unwrap());
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(got, (1..=(senders * per) as u64).collect::<Vec<_>>(), "{:?}", b.kind);
        server.stop().await;
    }
}

#[tokio::test]
async fn history_and_transcript_over_http() {
    for b in backends::all("history_and_transcript_over_http").await {
        let mut config = config_for(&b);
        config.auth.api_keys = vec![chat::config::Secret::new("k-one"), chat::config::Secret::new("k-two")];
        let server = start(config).await;
        let mut alice = Client::in_rooms(&server, "alice", &["hall"]).await;
        for i in 1..=3 {
            alice.say("hall", &format!("line {i}")).await;
        }
        alice.say("hall", "<script>alert('x')</script> & more").await;
        let addr = server.addr();

        for auth in [None, Some("Bearer nope"), Some("k-one"), Some("Bearer ")] {
            let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
            let r = http::get(addr, "/api/rooms/hall/messages", &headers).await;
            assert_eq!(r.status, 401, "{auth:?}");
            assert_eq!(r.json()["error"]["code"], "unauthorized");
        }
        let key = [("Authorization", "Bearer k-two")];
        let r = http::get(addr, "/api/rooms/hall/messages?limit=2", &key).await;
        assert_eq!(r.status, 200);
        let page = r.json();
        assert_eq!((seqs(&page["messages"]), page["more"].clone()), (vec![3, 4], json!(true)));
        let r = http::get(addr, "/api/rooms/hall/messages?before=3", &key).await;
        assert_eq!(texts(&r.json()["messages"]), ["line 1", "line 2"]);
        let r = http::get(addr, "/api/rooms/HALL/messages?after=3", &key).await;
        assert_eq!(seqs(&r.json()["messages"]), [4]);
        assert_eq!(http::get(addr, "/api/rooms/hall/messages?limit=0", &key).await.status, 400);
        assert_eq!(http::get(addr, "/api/rooms/a%20b/messages", &key).await.status, 400);

        let r = http::get(addr, "/api/rooms/hall/transcript?format=json&from=0", &key).await;
        assert_eq!(r.status, 200);
        assert_eq!(seqs(&r.json()["messages"]), [1, 2, 3, 4]);
        let r = http::get(addr, "/api/rooms/hall/transcript?format=text&from=2020-01-01T00:00:00Z", &key).await;
        let lines: Vec<&str> = r.body.lines().collect();
        assert_eq!(lines.len(), 4, "{}", r.body);
        assert!(lines[0].ends_with(" <alice> line 1") && lines[0].starts_with("20"), "{}", lines[0]);
        let r = http::get(addr, "/api/rooms/hall/transcript?format=html", &key).await;
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert!(!r.body.contains("<script>"), "{}", r.body);
        assert!(r.body.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"), "{}", r.body);
        let r = http::get(addr, "/api/rooms/hall/transcript?to=2020-01-01T00:00:00Z", &key).await;
        assert_eq!(r.json()["messages"], json!([]));
        assert_eq!(http::get(addr, "/api/rooms/hall/transcript?from=soon", &key).await.status, 400);
        assert_eq!(http::get(addr, "/api/rooms/hall/transcript?format=pdf", &key).await.status, 400);
        server.stop().await;
    }
}

/// Storage goes away mid-run: senders get `unavailable`, nobody receives
/// the message, nothing crashes; when storage returns, messages flow again
/// with `seq` continuing without a gap.
#[tokio::test]
async fn storage_outage_gives_unavailable_then_recovers() {
    for b in backends::all("storage_outage_gives_unavailable_then_recovers").await {
        let mut config = config_for(&b);
        config.database.busy_timeout = Duration::from_millis(200);
        let server = start(config).await;
        let mut alice = Client::in_rooms(&server, "alice", &["r"]).await;
        let mut bob = Client::in_rooms(&server, "bob", &["r"]).await;
        alice.expect("presence").await;
        assert_eq!(alice.say("r", "before").await["message"]["seq"], 1);
        bob.expect("message").await;

        let outage = Outage::begin(&b).await;
        alice.send(json!({"type":"say","room":"r","text":"lost","id":"x"})).await;
        let e = alice.expect_error("unavailable").await;
        assert_eq!(e["id"], "x");
        bob.sync().await;
        alice.sync().await; // the connection is still usable
        outage.end().await;

        let ack = alice.say("r", "after").await;
        assert_eq!(ack["message"]["seq"], 2, "{:?}: no gap after the outage", b.kind);
        assert_eq!(bob.expect("message").await["text"], "after");
        let (mut carol, _) = Client::hello(&server, "carol").await;
        let joined = carol.join("r").await;
        assert_eq!(texts(&joined["history"]), ["before", "after"]);
        server.stop().await;
    }
}

/// A way to make one backend refuse writes, and to undo it.
enum Outage {
    /// Another connection holds SQLite's write lock.
    Sqlite(sqlx::SqliteConnection),
    /// The database is made read-only and the server's connections cut.
    Postgres { admin: sqlx::PgConnection, db: String },
    /// The messages table is renamed away.
    Mysql(sqlx::MySqlConnection),
}

impl Outage {
    async fn begin(b: &Backend) -> Outage {
        match b.kind {
            Kind::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&b.url).await.unwrap();
                sqlx::query("BEGIN EXCLUSIVE").execute(&mut c).await.unwrap();
                Outage::Sqlite(c)
            }
            Kind::Postgres => {
                let db = b.url.rsplit('/').next().unwrap().to_string();
                let base = std::env::var("TEST_POSTGRES_URL").unwrap();
                let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
                let sql = format!("ALTER DATABASE {db} SET default_transaction_read_only = on");
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await.unwrap();
                terminate(&mut admin, &db).await;
                Outage::Postgres { admin, db }
            }
            Kind::Mysql => {
                let mut c = sqlx::MySqlConnection::connect(&b.url).await.unwrap();
                sqlx::query("RENAME TABLE messages TO messages_away").execute(&mut c).await.unwrap();
                Outage::Mysql(c)
            }
        }
    }

    async fn end(self) {
        match self {
            Outage::Sqlite(mut c) => {
                sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
            }
            Outage::Postgres { mut admin, db } => {
                let sql = format!("ALTER DATABASE {db} RESET default_transaction_read_only");
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await.unwrap();
                terminate(&mut admin, &db).await;
            }
            Outage::Mysql(mut c) => {
                sqlx::query("RENAME TABLE messages_away TO messages").execute(&mut c).await.unwrap();
            }
        }
    }
}

/// Cuts every connection to `db` (the server's pool reconnects).
async fn terminate(admin: &mut sqlx::PgConnection, db: &str) {
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(db)
    .execute(admin)
    .await
    .unwrap();
}

/// Room settings (docs/protocol.md, `mode`) are stored on every backend:
/// a room made through the API keeps them across a restart; a room made by
/// joining loses them when it is made again.
#[tokio::test]
async fn room_settings_are_stored_on_every_backend() {
    for b in backends::all("room_settings_are_stored_on_every_backend").await {
        let kind = b.kind;
        let mut config = config_for(&b);
        config.auth.api_keys = vec![chat::config::Secret::new(API_KEY)];
        let server = start(config.clone()).await;
        let key = bearer(API_KEY);
        let r = http::post(server.addr(), "/api/rooms", &[("Authorization", &key)], &json!({"name": "Hall"})).await;
        assert_eq!(r.status, 201, "{kind:?}: {}", r.body);
        let set = json!({"moderated": true, "topic_lock": false, "invite_only": true, "secret": true,
            "key": "k3y", "limit": 7, "ban": ["troll", "*!*@elsewhere"]});
        let r = http::patch(server.addr(), "/api/rooms/hall", &[("Authorization", &key)], &set).await;
        assert_eq!(r.status, 200, "{kind:?}: {}", r.body);
        let r = http::patch(server.addr(), "/api/rooms/hall", &[("Authorization", &key)], &json!({"unban": ["troll"]}))
            .await;
        assert_eq!(r.status, 200, "{kind:?}: {}", r.body);
        // A room made by joining: its creator sets it, then it ends.
        let (mut ann, _) = Client::hello(&server, "ann").await;
        ann.join("fresh").await;
        let set = json!({"moderated": true, "key": "x", "ban": ["bob"]});
        ann.send(json!({"type": "mode", "room": "fresh", "set": set, "id": "m"})).await;
        ann.until("ack").await;
        server.stop().await;

        let server = start(config).await;
        let (mut ann, _) = Client::hello(&server, "ann").await;
        ann.send(json!({"type": "mode", "room": "hall", "id": "r"})).await;
        let mut modes = ann.expect("modes").await;
        modes["bans"][0]["at"] = json!(0);
        assert_eq!(
            modes,
            json!({"type": "modes", "id": "r", "room": "Hall", "moderated": true, "topic_lock": false,
                "invite_only": true, "secret": true, "key": "*", "limit": 7,
                "bans": [{"mask": "*!*@elsewhere", "by": "server", "at": 0}]}),
            "{kind:?}"
        );
        ann.send(json!({"type": "join", "room": "hall", "key": "k3y", "id": "j"})).await;
        assert_eq!(ann.expect_error("forbidden").await["reason"], "invite_only", "{kind:?}");
        // Made again by joining: no key, no ban, not moderated.
        ann.join("fresh").await;
        ann.send(json!({"type": "mode", "room": "fresh", "id": "f"})).await;
        let modes = ann.expect("modes").await;
        assert_eq!(
            modes,
            json!({"type": "modes", "id": "f", "room": "fresh", "moderated": false, "topic_lock": false,
                "invite_only": false, "secret": false, "bans": []}),
            "{kind:?}"
        );
        server.stop().await;
    }
}
