//! Properties (proptest, on stable in the normal run): any JSON value a
//! client sends gets a reply or a clean error, never a panic — at the
//! parser, and over a live connection that stays open. The fuzz targets in
//! `fuzz/` push the same code much further (see docs/testing.md).

mod common;

use chat::protocol::ClientFrame;
use common::*;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const TYPES: &[&str] = &[
    "hello", "join", "leave", "rooms", "who", "topic", "kick", "say", "history", "edit", "delete", "read", "typing",
    "event", "watch", "unwatch", "away", "ping", "nope",
];
const FIELDS: &[&str] = &[
    "id",
    "type",
    "nick",
    "room",
    "to",
    "with",
    "text",
    "since",
    "history",
    "before",
    "after",
    "limit",
    "msg_id",
    "seq",
    "active",
    "data",
    "nicks",
    "away",
    "topic",
    "everyone",
    "attachments",
    "password",
    "token",
];

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        prop::sample::select(TYPES).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(FIELDS).prop_map(String::from), inner.clone()), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            prop::collection::vec((".{0,12}", inner), 0..4).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A frame that looks like a request: a known `type` and fields of any value.
fn request_like() -> impl Strategy<Value = Map<String, Value>> {
    (
        prop::sample::select(TYPES),
        prop::collection::vec((prop::sample::select(FIELDS).prop_map(String::from), any_json()), 0..6),
    )
        .prop_map(|(ty, fields)| {
            let mut m: Map<String, Value> = fields.into_iter().collect();
            m.insert("type".into(), json!(ty));
            m
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_parser_answers_any_json(v in any_json()) {
        check_parse(&v.to_string());
    }

    #[test]
    fn the_parser_answers_any_request_like_object(m in request_like()) {
        check_parse(&Value::Object(m).to_string());
    }

    #[test]
    fn the_parser_answers_any_text(s in ".{0,200}") {
        check_parse(&s);
    }
}

/// A parse is a request or an error with a code and a message.
fn check_parse(text: &str) {
    if let Err(e) = ClientFrame::parse(text) {
        let code = serde_json::to_value(e.error.code).unwrap();
        assert!(code.as_str().is_some_and(|c| !c.is_empty()), "{text}: {code}");
        assert!(!e.error.message.is_empty(), "{text}: {code} without a message");
    }
}

/// Over a live connection: each value gets its reply or error (objects
/// carry an `id` to find it by), and the connection stays open.
#[test]
fn a_live_connection_answers_any_json_and_stays_open() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(start(unlimited_config()));
    let client = runtime.block_on(async {
        let mut c = Client::in_rooms(&server, "prop", &["r"]).await;
        c.sync().await;
        c
    });
    let client = std::cell::RefCell::new(client);
    let n = std::cell::Cell::new(0u64);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(150));
    let frames = prop_oneof![any_json(), request_like().prop_map(Value::Object)];
    runner
        .run(&frames, |v| {
            n.set(n.get() + 1);
            let c = &mut *client.borrow_mut();
            runtime.block_on(answered(c, v, n.get()));
            Ok(())
        })
        .unwrap();
    runtime.block_on(async {
        let mut c = client.into_inner();
        c.send(json!({"type": "ping", "id": "last"})).await;
        let (pong, _) = c.until("pong").await;
        assert_eq!(pong["id"], "last");
    });
}

async fn answered(c: &mut Client, mut v: Value, n: u64) {
    let id = format!("p{n}");
    let tagged = match &mut v {
        Value::Object(m) if m.get("type") != Some(&json!("hello")) => {
            m.insert("id".into(), json!(id));
            true
        }
        _ => false,
    };
    c.send(v.clone()).await;
    if tagged {
        loop {
            let r = c.recv().await;
            assert!(!r["type"].as_str().unwrap_or("").starts_with('<'), "{v} ended the connection: {r}");
            if r["id"] == json!(id) {
                if r["type"] == "error" {
                    assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}: {r}");
                }
                break;
            }
        }
    }
    // Whatever came of it, the connection still answers, in order.
    let ping = format!("ping{n}");
    c.send(json!({"type": "ping", "id": ping})).await;
    loop {
        let r = c.recv().await;
        assert!(!r["type"].as_str().unwrap_or("").starts_with('<'), "{v} ended the connection: {r}");
        if r["type"] == "pong" && r["id"] == json!(ping) {
            break;
        }
    }
}
