//! Search as users see it: the `search` frame and `GET /api/search` find
//! what the caller may read — never a private room it is not in, never
//! someone else's DMs, never a deleted message — newest first, on every
//! backend's own full-text index; hostile queries get results or a clear
//! `invalid`, never a server error.

mod common;

use common::backends::{self, Backend, Kind};
use common::http;
use common::*;
use serde_json::{Value, json};

fn config_for(b: &Backend) -> chat::Config {
    let mut c = auth_config();
    c.database.url = b.url.clone();
    c
}

fn texts(messages: &Value) -> Vec<String> {
    messages.as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap().to_string()).collect()
}

async fn site_user(server: &chat::RunningServer, sub: &str, nick: &str) -> (Client, String) {
    let (c, welcome) = Client::with_token(server, &site_token(&claims(sub, nick))).await;
    (c, welcome["token"].as_str().unwrap().to_string())
}

/// A `search` over the WebSocket: its results' texts and `more`.
async fn search(c: &mut Client, fields: Value) -> (Vec<String>, bool, Value) {
    let mut req = json!({"type": "search", "id": "q"});
    req.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
    let r = c.request(req.clone()).await;
    assert_eq!((r["type"].as_str(), r["id"].as_str()), (Some("search_results"), Some("q")), "{req}: {r}");
    (texts(&r["messages"]), r["more"].as_bool().unwrap(), r)
}

/// `GET /api/search?…` with a bearer token: status and body.
async fn api_search(server: &chat::RunningServer, token: &str, query: &str) -> (u16, Value) {
    let auth = bearer(token);
    let r = http::get(server.addr(), &format!("/api/search?{query}"), &[("Authorization", auth.as_str())]).await;
    (r.status, r.json())
}

#[tokio::test]
async fn search_finds_only_what_the_caller_may_read() {
    for b in backends::all("search_finds_only_what_the_caller_may_read").await {
        let kind = b.kind;
        let server = start(config_for(&b)).await;
        let key = bearer(API_KEY);
        let r = http::post(
            server.addr(),
            "/api/rooms",
            &[("Authorization", key.as_str())],
            &json!({"name":"vault","private":true,"members":["alice"]}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let (mut alice, alice_token) = site_user(&server, "a", "alice").await;
        let (mut bob, bob_token) = site_user(&server, "b", "bob").await;
        let (mut carol, _) = site_user(&server, "c", "carol").await;
        let (mut dave, _) = site_user(&server, "d", "dave").await;
        alice.join("dev").await;
        alice.join("vault").await;
        bob.join("dev").await;
        alice.expect("presence").await;

        alice.say("dev", "the quick brown fox").await;
        bob.expect("message").await;
        bob.say("dev", "Café au lait, anyone?").await;
        alice.expect("message").await;
        let deploy = alice.say("dev", "deploy on friday").await["message"]["msg_id"].as_str().unwrap().to_string();
        bob.expect("message").await;
        alice.say("vault", "secret fox plan").await;
        alice.say_to("bob", "a fox in our DM").await;
        bob.expect("message").await;
        carol.say_to("dave", "carol's fox for dave").await;
        dave.expect("message").await;
        let gone = bob.say("dev", "fox to be deleted").await["message"]["msg_id"].as_str().unwrap().to_string();
        alice.expect("message").await;
        bob.send(json!({"type":"delete","msg_id":gone,"id":"d"})).await;
        bob.expect("ack").await;
        alice.expect("deleted").await;

        // Each sees its own: newest first, no private room of others, no
        // DMs of others, nothing deleted.
        let (found, more, r) = search(&mut bob, json!({"q":"FOX"})).await;
        assert_eq!(found, ["a fox in our DM", "the quick brown fox"], "{kind:?}");
        assert!(!more);
        assert_eq!(norm(r["messages"][0].clone()), body(&dm_msg("bob", 1, "alice", "a fox in our DM")), "{kind:?}");
        let (found, ..) = search(&mut alice, json!({"q":"fox"})).await;
        assert_eq!(found, ["a fox in our DM", "secret fox plan", "the quick brown fox"], "{kind:?}");
        let (found, ..) = search(&mut carol, json!({"q":"fox"})).await;
        assert_eq!(found, ["carol's fox for dave", "the quick brown fox"], "{kind:?}");
        // One conversation: a room, a DM.
        let (found, ..) = search(&mut alice, json!({"q":"fox","room":"vault"})).await;
        assert_eq!(found, ["secret fox plan"], "{kind:?}");
        let (found, ..) = search(&mut alice, json!({"q":"fox","with":"bob"})).await;
        assert_eq!(found, ["a fox in our DM"], "{kind:?}");
        let (found, ..) = search(&mut carol, json!({"q":"fox","with":"bob"})).await;
        assert!(found.is_empty(), "{kind:?}: {found:?}");
        bob.send(json!({"type":"search","q":"fox","room":"vault","id":"v"})).await;
        bob.expect_error("forbidden").await;

        // Prefixes; every word must match; case (and on SQLite and MySQL
        // accents) fold.
        let (found, ..) = search(&mut bob, json!({"q":"depl fri"})).await;
        assert_eq!(found, ["deploy on friday"], "{kind:?}");
        let (found, ..) = search(&mut bob, json!({"q":"deploy monday"})).await;
        assert!(found.is_empty(), "{kind:?}");
        let (found, ..) = search(&mut bob, json!({"q":"café"})).await;
        assert_eq!(found, ["Café au lait, anyone?"], "{kind:?}");
        if kind != Kind::Postgres {
            let (found, ..) = search(&mut bob, json!({"q":"cafe"})).await;
            assert_eq!(found, ["Café au lait, anyone?"], "{kind:?}: accents fold");
        }

        // The index follows edits.
        alice.send(json!({"type":"edit","msg_id":deploy,"text":"ship on monday","id":"e"})).await;
        alice.expect("ack").await;
        bob.expect("edited").await;
        let (found, ..) = search(&mut bob, json!({"q":"deploy"})).await;
        assert!(found.is_empty(), "{kind:?}: {found:?}");
        let (found, _, r) = search(&mut bob, json!({"q":"monday ship"})).await;
        assert_eq!(found, ["ship on monday"], "{kind:?}");
        assert!(r["messages"][0]["edited_at"].is_number());

        // A message deleted once indexed leaves the index.
        let brief = bob.say("dev", "a brief weasel").await["message"]["msg_id"].as_str().unwrap().to_string();
        alice.expect("message").await;
        let (found, ..) = search(&mut alice, json!({"q":"weasel"})).await;
        assert_eq!(found, ["a brief weasel"], "{kind:?}");
        bob.send(json!({"type":"delete","msg_id":brief,"id":"d2"})).await;
        bob.expect("ack").await;
        alice.expect("deleted").await;
        let (found, ..) = search(&mut alice, json!({"q":"weasel"})).await;
        assert!(found.is_empty(), "{kind:?}: {found:?}");

        // Pages: limit, more, before.
        let (found, more, r) = search(&mut alice, json!({"q":"fox","limit":2})).await;
        assert_eq!((found.len(), more), (2, true), "{kind:?}");
        let last = r["messages"][1]["msg_id"].clone();
        let (found, more, _) = search(&mut alice, json!({"q":"fox","limit":2,"before":last})).await;
        assert_eq!((found, more), (vec!["the quick brown fox".to_string()], false), "{kind:?}");

        // Over HTTP: the same rules with a user's token; an API key reads
        // every room but no DM.
        let (status, v) = api_search(&server, &bob_token, "q=fox").await;
        assert_eq!(
            (status, texts(&v["messages"])),
            (200, vec!["a fox in our DM".into(), "the quick brown fox".into()])
        );
        assert_eq!(v["more"], false);
        let (status, v) = api_search(&server, &alice_token, "q=fox&room=vault").await;
        assert_eq!((status, texts(&v["messages"])), (200, vec!["secret fox plan".into()]), "{kind:?}");
        let (status, v) = api_search(&server, &bob_token, "q=fox&room=vault").await;
        assert_eq!((status, v["error"]["code"].as_str()), (403, Some("forbidden")), "{v}");
        let (status, v) = api_search(&server, &bob_token, "q=fox&with=alice&limit=1").await;
        assert_eq!((status, texts(&v["messages"])), (200, vec!["a fox in our DM".into()]), "{kind:?}");
        let (status, v) = api_search(&server, API_KEY, "q=fox").await;
        assert_eq!(
            (status, texts(&v["messages"])),
            (200, vec!["secret fox plan".into(), "the quick brown fox".into()]),
            "{kind:?}"
        );
        let (status, v) = api_search(&server, API_KEY, "q=fox&with=bob").await;
        assert_eq!((status, v["error"]["code"].as_str()), (400, Some("invalid")), "{v}");
        let r = http::get(server.addr(), "/api/search?q=fox", &[]).await;
        assert_eq!(r.status, 401);
        for c in [&mut alice, &mut bob, &mut carol, &mut dave] {
            c.sync().await;
        }
        if kind == Kind::Postgres {
            // After a search the index holds every message, with its text as it is now.
            search(&mut alice, json!({"q":"fox"})).await;
            use sqlx::Connection;
            let mut db = sqlx::PgConnection::connect(&b.url).await.unwrap();
            let stale: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM messages m LEFT JOIN message_search s USING (msg_id) \
                 WHERE s.search IS DISTINCT FROM to_tsvector('simple', m.text)",
            )
            .fetch_one(&mut db)
            .await
            .unwrap();
            assert_eq!(stale, 0, "messages whose index entry is missing or stale");
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn hostile_queries_get_results_or_invalid() {
    for b in backends::all("hostile_queries_get_results_or_invalid").await {
        let kind = b.kind;
        let server = start(config_for(&b)).await;
        let (mut alice, token) = site_user(&server, "a", "alice").await;
        let mut bob = Client::in_rooms(&server, "bob", &["dev"]).await;
        alice.join("dev").await;
        bob.expect("presence").await;
        alice.say("dev", "the fox said \"hello\" (twice) - near the end; O'Brien's café 日本語 🦊").await;
        bob.expect("message").await;
        let ten_kb = "fox ".repeat(2600);
        let nested = "(".repeat(500);
        let hostile: Vec<&str> = vec![
            "\"",
            "\"fox",
            "*",
            "fox*",
            "NEAR(fox said)",
            "fox NEAR/2 said",
            "-fox",
            "fox -said",
            "fox)",
            "((((fox",
            &nested,
            "fox\" OR 1=1 --",
            "'; DROP TABLE messages; --",
            "O'Brien",
            "text:fox",
            "fox AND said OR NOT hello",
            "^fox",
            "fox:*",
            "'fox':* & !said | <->",
            "+fox -said ~near <hello >twice @3",
            "\\",
            "%_%",
            "²",
            "ǅ",
            "e\u{301}",
            "🦊",
            "日本語",
            "\u{0}fox",
            "ـــ",
            "ab",
        ];
        for (i, q) in hostile.iter().enumerate() {
            let id = format!("h{i}");
            alice.send(json!({"type":"search","q":q,"id":id})).await;
            let r = alice.recv().await;
            assert_eq!(r["id"], id.as_str(), "{kind:?} {q:?}: {r}");
            match r["type"].as_str() {
                Some("search_results") => assert!(r["messages"].is_array()),
                Some("error") => assert_eq!(r["code"], "invalid", "{kind:?} {q:?}: {r}"),
                _ => panic!("{kind:?} {q:?}: {r}"),
            }
            let (status, v) = api_search(&server, &token, &format!("q={}", urlencode(q))).await;
            assert!(
                status == 200 || (status == 400 && v["error"]["code"] == "invalid"),
                "{kind:?} {q:?}: {status} {v}"
            );
        }
        // The words in them still match.
        let (found, ..) = search(&mut alice, json!({"q":"\"fox said\" NEAR(twice"})).await;
        assert_eq!(found.len(), 1, "{kind:?}");
        let (found, ..) = search(&mut alice, json!({"q":"O'Brien"})).await;
        assert_eq!(found.len(), 1, "{kind:?}");
        // 10 KB, nothing but punctuation, bad fields: a clear `invalid`.
        for (frame, field) in [
            (json!({"type":"search","q":ten_kb}), "q"),
            (json!({"type":"search","q":"*** \" ( ) -"}), "q"),
            (json!({"type":"search","q":""}), "q"),
            (json!({"type":"search"}), "q"),
            (json!({"type":"search","q":7}), "q"),
            (json!({"type":"search","q":"fox","limit":0}), "limit"),
            (json!({"type":"search","q":"fox","limit":-1}), "limit"),
            (json!({"type":"search","q":"fox","limit":"5"}), "limit"),
            (json!({"type":"search","q":"fox","room":"a b"}), "room"),
            (json!({"type":"search","q":"fox","room":5}), "room"),
            (json!({"type":"search","q":"fox","with":"9bad"}), "with"),
            (json!({"type":"search","q":"fox","room":"dev","with":"bob"}), "only one"),
            (json!({"type":"search","q":"fox","with":"alice"}), "with"),
            (json!({"type":"search","q":"fox","before":"nope"}), "before"),
        ] {
            let mut frame = frame;
            frame["id"] = json!("bad");
            alice.send(frame.clone()).await;
            let e = alice.expect_error("invalid").await;
            assert!(e["message"].as_str().unwrap().contains(field), "{kind:?} {frame}: {e}");
            assert_eq!(e["id"], "bad");
        }
        let (status, v) = api_search(&server, &token, &format!("q={}", urlencode(&ten_kb))).await;
        assert_eq!((status, v["error"]["code"].as_str()), (400, Some("invalid")), "{kind:?}");
        for query in
            ["", "q=fox&limit=0", "q=fox&limit=x", "q=fox&room=a%20b", "q=fox&room=dev&with=bob", "q=fox&before=x"]
        {
            let (status, v) = api_search(&server, &token, query).await;
            assert_eq!((status, v["error"]["code"].as_str()), (400, Some("invalid")), "{kind:?} {query}: {v}");
        }
        // A limit past the most is cut, not refused.
        let (found, ..) = search(&mut alice, json!({"q":"fox","limit":100000})).await;
        assert_eq!(found.len(), 1);
        // Short and common words: found on SQLite and PostgreSQL; a clear
        // `invalid` on MySQL/MariaDB, whose index leaves them out.
        alice.send(json!({"type":"search","q":"the","id":"the"})).await;
        let r = alice.recv().await;
        if kind == Kind::Mysql {
            assert_eq!((r["type"].as_str(), r["code"].as_str()), (Some("error"), Some("invalid")), "{r}");
        } else {
            assert_eq!(texts(&r["messages"]).len(), 1, "{kind:?}: {r}");
        }
        // Nobody else heard anything; the connection still works.
        bob.sync().await;
        alice.sync().await;
        server.stop().await;
    }
}

/// Percent-encodes a query-string value.
fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[tokio::test]
async fn search_in_a_cluster_finds_what_was_just_said() {
    use common::cluster::{Cluster, fast};
    let Some(cluster) = Cluster::start("search_in_a_cluster_finds_what_was_just_said", 2, fast).await else { return };
    let mut alice = cluster.hello(1, "alice").await;
    let mut bob = cluster.hello(2, "bob").await;
    alice.join("dev").await;
    bob.join("dev").await;
    alice.expect("presence").await;
    // Said on n1, searched on n2 at once: it may still be in the buffer.
    alice.say("dev", "a clustered fox").await;
    bob.expect("message").await;
    alice.say_to("bob", "a private fox").await;
    bob.expect("message").await;
    let (found, ..) = search(&mut bob, json!({"q":"fox"})).await;
    assert_eq!(found, ["a private fox", "a clustered fox"]);
    let (found, ..) = search(&mut alice, json!({"q":"clustered","room":"dev"})).await;
    assert_eq!(found, ["a clustered fox"]);
}

/// SQLite: the FTS5 index matches the messages exactly (its own
/// `integrity-check` against the content table) after edits and deletions
/// of messages both still queued for indexing and indexed already.
#[tokio::test]
async fn the_sqlite_index_stays_in_step() {
    use sqlx::Connection;
    let config = test_config();
    let url = config.database.url.clone();
    let server = start(config).await;
    let mut alice = Client::in_rooms(&server, "alice", &["dev"]).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            alice.say("dev", &format!("otter number {i}")).await["message"]["msg_id"].as_str().unwrap().to_string(),
        );
    }
    // Queued (most likely) or indexed, then changed; then indexed for sure, then changed.
    for (i, id) in ids.iter().enumerate().take(3) {
        let frame = if i == 2 {
            json!({"type":"delete","msg_id":id,"id":"c"})
        } else {
            json!({"type":"edit","msg_id":id,"text":format!("beaver {i}"),"id":"c"})
        };
        alice.send(frame).await;
        alice.expect("ack").await;
    }
    let (found, ..) = search(&mut alice, json!({"q":"otter"})).await;
    assert_eq!(found, ["otter number 5", "otter number 4", "otter number 3"]);
    alice.send(json!({"type":"edit","msg_id":ids[3],"text":"a badger","id":"c"})).await;
    alice.expect("ack").await;
    alice.send(json!({"type":"delete","msg_id":ids[4],"id":"c"})).await;
    alice.expect("ack").await;
    let (found, ..) = search(&mut alice, json!({"q":"beaver"})).await;
    assert_eq!(found, ["beaver 1", "beaver 0"]);
    let (found, ..) = search(&mut alice, json!({"q":"otter"})).await;
    assert_eq!(found, ["otter number 5"]);
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)")
        .execute(&mut db)
        .await
        .expect("the index matches the messages");
}

/// `memory://` (SQLite's shared cache): the indexer and the writer share
/// the database without refusing each other.
#[tokio::test]
async fn search_works_on_an_in_memory_database() {
    let mut config = unlimited_config();
    config.database.url = "memory://".into();
    let server = start(config).await;
    let mut alice = Client::in_rooms(&server, "alice", &["dev"]).await;
    for i in 0..300 {
        alice.send(json!({"type":"say","room":"dev","text":format!("heron {i}"),"id":i})).await;
        if i % 100 == 99 {
            // A search while messages are being stored.
            alice.send(json!({"type":"search","q":"heron","limit":1,"id":"q"})).await;
        }
    }
    let mut results = 0;
    for _ in 0..303 {
        let v = alice.recv().await;
        match v["type"].as_str() {
            Some("ack") => {}
            Some("search_results") => results += 1,
            _ => panic!("{v}"),
        }
    }
    assert_eq!(results, 3);
    let (found, more, _) = search(&mut alice, json!({"q":"heron","limit":2})).await;
    assert_eq!((found, more), (vec!["heron 299".to_string(), "heron 298".to_string()], true));
    // Paging with `before` meets every message once, newest first, even
    // among messages sent within one millisecond.
    let (mut seen, mut before) = (Vec::new(), Value::Null);
    loop {
        let (found, more, r) = search(&mut alice, json!({"q":"heron","limit":70,"before":before})).await;
        seen.extend(found.iter().map(|t| t.strip_prefix("heron ").unwrap().parse::<u32>().unwrap()));
        if !more {
            break;
        }
        before = r["messages"].as_array().unwrap().last().unwrap()["msg_id"].clone();
    }
    assert_eq!(seen, (0..300).rev().collect::<Vec<u32>>());
}

/// A closed room's messages (keyed, secret) are found only by those in it
/// (and API keys), on every backend.
#[tokio::test]
async fn search_leaves_out_closed_rooms() {
    for b in backends::all("search_leaves_out_closed_rooms").await {
        let kind = b.kind;
        let server = start(config_for(&b)).await;
        let (mut alice, _) = site_user(&server, "a", "alice").await;
        let (mut bob, _) = site_user(&server, "b", "bob").await;
        for (room, set) in [("keyed", json!({"key": "sesame"})), ("hush", json!({"secret": true})), ("open", json!({}))]
        {
            alice.join(room).await;
            if set != json!({}) {
                alice.send(json!({"type": "mode", "room": room, "set": set, "id": room})).await;
                alice.expect("mode").await;
                alice.expect_json(json!({"type": "ack", "id": room})).await;
            }
            alice.say(room, &format!("{room} otter")).await;
        }
        let (found, ..) = search(&mut alice, json!({"q":"otter"})).await;
        assert_eq!(found, ["open otter", "hush otter", "keyed otter"], "{kind:?}");
        let (found, ..) = search(&mut bob, json!({"q":"otter"})).await;
        assert_eq!(found, ["open otter"], "{kind:?}");
        let (status, v) = api_search(&server, API_KEY, "q=otter").await;
        assert_eq!((status, texts(&v["messages"]).len()), (200, 3), "{kind:?}: {v}");
        server.stop().await;
    }
}
