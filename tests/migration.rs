//! Data written before user ids (migrations 0001–0003) carries over into
//! migration 0004 on every backend: accounts keep their sessions, messages,
//! memberships and roles; site users keep their DMs; grants to nicks nobody
//! owned wait for the site user; old guests' conversations go to nobody.
mod common;

use std::path::{Path, PathBuf};

use common::backends::{self, Kind};
use common::*;
use serde_json::json;
use sha2::Digest;
use sqlx::{AssertSqlSafe, Connection};

/// A folder with the first three migrations of `kind`: the schema as it was.
fn migrations_before_ids(kind: Kind) -> PathBuf {
    let dir = match kind {
        Kind::Sqlite => "sqlite",
        Kind::Postgres => "postgres",
        Kind::Mysql => "mysql",
    };
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(dir);
    let dst = tempfile::tempdir().unwrap().keep();
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap();
        let name = f.file_name().into_string().unwrap();
        if ["0001", "0002", "0003"].iter().any(|p| name.starts_with(p)) {
            std::fs::copy(f.path(), dst.join(name)).unwrap();
        }
    }
    dst
}

async fn old_schema_with_data(kind: Kind, url: &str, ids: &[String; 3], token_hash: &str) {
    let migrator = sqlx::migrate::Migrator::new(migrations_before_ids(kind)).await.unwrap();
    let statements = [
        // An account, a site user, a nick only a guest used.
        "INSERT INTO users (nick_key, nick, created_at, last_seen, password_hash, owner) VALUES \
         ('alice', 'Alice', 1, 1, 'x', 'account'), ('carol', 'carol', 1, 1, NULL, 'site:c1'), \
         ('bob', 'bob', 1, 1, NULL, NULL)"
            .into(),
        format!("INSERT INTO auth_sessions (token_hash, nick_key, created_at, expires_at) VALUES ('{token_hash}', 'alice', 1, 99999999999999)"),
        "INSERT INTO rooms (name_key, name, topic, private, managed, created_at) VALUES ('club', 'club', '', TRUE, TRUE, 1)".into(),
        "INSERT INTO room_members (room_key, nick_key, role) VALUES ('club', 'alice', 'moderator'), ('club', 'ghost', 'member')".into(),
        format!(
            "INSERT INTO messages (msg_id, conv, seq, room, sender, recipient, text, attachments, sent_at) VALUES \
             ('{}', 'r:club', 1, 'club', 'Alice', NULL, 'old room message', '[]', 1), \
             ('{}', 'd:alice:carol', 1, NULL, 'Alice', 'carol', 'to carol', '[]', 2), \
             ('{}', 'd:alice:bob', 1, NULL, 'bob', 'Alice', 'from guest bob', '[]', 3)",
            ids[0], ids[1], ids[2]
        ),
    ];
    macro_rules! fill {
        ($conn:expr) => {{
            let mut c = $conn;
            migrator.run(&mut c).await.expect("migrations 0001-0003");
            for s in &statements {
                sqlx::query(AssertSqlSafe(s.clone())).execute(&mut c).await.expect("old data");
            }
        }};
    }
    match kind {
        Kind::Sqlite => {
            let opts: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
            fill!(sqlx::SqliteConnection::connect_with(&opts.create_if_missing(true)).await.unwrap())
        }
        Kind::Postgres => fill!(sqlx::PgConnection::connect(url).await.unwrap()),
        Kind::Mysql => fill!(sqlx::MySqlConnection::connect(url).await.unwrap()),
    }
}

#[tokio::test]
async fn data_from_before_user_ids_carries_over() {
    for b in backends::all("data_from_before_user_ids_carries_over").await {
        let kind = b.kind;
        let ids = [ulid::Ulid::generate(), ulid::Ulid::generate(), ulid::Ulid::generate()].map(|u| u.to_string());
        let token = "ab".repeat(32);
        let hash: String = sha2::Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        old_schema_with_data(kind, &b.url, &ids, &hash).await;

        let mut config = auth_config();
        config.database.url = b.url.clone();
        let server = start(config).await;
        // The account's session token still works; it is still a member
        // and moderator of its private room, and its old message is its own.
        let (mut alice, welcome) = Client::with_token(&server, &token).await;
        assert_eq!((welcome["nick"].as_str(), welcome["user"]["guest"].as_bool()), (Some("Alice"), Some(false)));
        let joined = alice.join("club").await;
        assert_eq!(joined["history"][0]["text"], "old room message", "{kind:?}");
        alice.send(json!({"type": "edit", "msg_id": ids[0], "text": "edited", "id": "e"})).await;
        alice.expect_json(json!({"type": "ack", "id": "e"})).await;
        alice.send(json!({"type": "topic", "room": "club", "topic": "mine", "id": "t"})).await;
        alice.expect("topic").await;
        alice.expect_json(json!({"type": "ack", "id": "t"})).await;
        // Her DM with the site user carol is hers and carol's.
        alice.send(json!({"type": "history", "with": "carol", "id": "h"})).await;
        let h = alice.expect("history").await;
        assert_eq!(h["messages"][0]["text"], "to carol", "{kind:?}: {h}");
        let (mut carol, _) = Client::with_token(&server, &site_token(&claims("c1", "carol"))).await;
        carol.send(json!({"type": "history", "with": "alice", "id": "h"})).await;
        let h = carol.expect("history").await;
        assert_eq!(h["messages"][0]["text"], "to carol", "{kind:?}: {h}");
        // A new guest bob is not the old one.
        let (mut bob, _) = Client::hello(&server, "bob").await;
        bob.send(json!({"type": "history", "with": "alice", "id": "h"})).await;
        bob.expect_json(json!({"type": "history", "id": "h", "with": "alice", "messages": [], "more": false})).await;
        bob.send(json!({"type": "join", "room": "club", "id": "j"})).await;
        bob.expect_error("forbidden").await;
        // The grant to `ghost`, who never came, waits for the site user ghost.
        let (mut ghost, _) = Client::with_token(&server, &site_token(&claims("g1", "ghost"))).await;
        ghost.join("club").await;
        alice.expect_json(presence("club", "ghost", "join")).await;
        alice.sync().await;
        server.stop().await;
    }
}
