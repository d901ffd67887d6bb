//! Bad input: every malformed or refused frame gets its error, the
//! connection stays usable, and the other member of the room receives
//! nothing of it.
mod common;

use common::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// alice and bob in room `r`; alice sends the bad input.
struct Fixture {
    _server: chat::RunningServer,
    alice: Client,
    bob: Client,
    /// The room's latest seq.
    seq: u64,
    /// Ids given to refused frames.
    n: u64,
}

impl Fixture {
    /// Rate limits are not under test here: many frames go by quickly.
    async fn new() -> Fixture {
        Fixture::with(unlimited_config()).await
    }

    async fn with(config: chat::Config) -> Fixture {
        let server = start(config).await;
        let mut clients = quiet_room(&server, "r", &["alice", "bob"]).await;
        let bob = clients.pop().unwrap();
        let alice = clients.pop().unwrap();
        Fixture { _server: server, alice, bob, seq: 0, n: 0 }
    }

    /// After a refused frame: alice can still talk, and bob's next frame
    /// is her message (nothing of the refused frame reached him).
    async fn still_fine(&mut self) {
        self.seq += 1;
        let text = format!("still here {}", self.seq);
        let ack = self.alice.say("r", &text).await;
        assert_eq!(ack["message"]["seq"], self.seq, "{ack}");
        self.bob.expect_json(room_msg("r", self.seq, "alice", &text)).await;
        self.bob.sync().await;
        self.alice.sync().await;
    }

    /// Sends a raw frame (no id can be read from it), expects `code` with no
    /// id, then checks that all is still well.
    async fn refused_raw(&mut self, frame: Message, code: &str) {
        let shown = format!("{frame:?}");
        self.alice.send_raw(frame).await;
        let e = self.alice.expect_error(code).await;
        assert_eq!(e.get("id"), None, "{shown} -> {e}");
        assert_eq!(e.as_object().unwrap().len(), 3, "type, code, message: {e}");
        self.still_fine().await;
    }

    /// Sends `frame` with an id, expects `code` echoing it and a message
    /// that names `names` (the offending field or name, in backticks; ""
    /// for none), then checks that all is still well.
    async fn refused(&mut self, mut frame: Value, code: &str, names: &str) {
        self.n += 1;
        let id = json!(format!("bad-{}", self.n));
        frame["id"] = id.clone();
        self.alice.send(frame.clone()).await;
        let e = self.alice.expect_error(code).await;
        assert_eq!(e["id"], id, "{frame} -> {e}");
        let message = e["message"].as_str().unwrap();
        let named = format!("`{names}`");
        assert!(names.is_empty() || message.contains(&named), "{frame} -> {e}: the message should name {named}");
        assert_eq!(e.as_object().unwrap().len(), 4, "type, id, code, message: {e}");
        self.still_fine().await;
    }
}

#[tokio::test]
async fn invalid_json_is_bad_frame() {
    let mut f = Fixture::new().await;
    for text in [
        "{",
        "{\"type\":\"say\",",
        "not json",
        "",
        "   ",
        "{'type':'ping'}",
        "{\"type\":\"ping\"} trailing",
        "{\"type\":\"ping\",}",
    ] {
        f.refused_raw(Message::text(text), "bad_frame").await;
    }
}

#[tokio::test]
async fn a_json_array_is_bad_frame() {
    let mut f = Fixture::new().await;
    for text in ["[]", "[1,2]", r#"[{"type":"say","room":"r","text":"x"}]"#] {
        f.refused_raw(Message::text(text), "bad_frame").await;
    }
}

#[tokio::test]
async fn a_json_string_or_other_scalar_is_bad_frame() {
    let mut f = Fixture::new().await;
    for text in [r#""hello""#, r#""{\"type\":\"ping\"}""#, "42", "null", "true"] {
        f.refused_raw(Message::text(text), "bad_frame").await;
    }
}

#[tokio::test]
async fn an_unknown_type_is_unknown_type() {
    let mut f = Fixture::new().await;
    for ty in ["dance", "", "say ", "hello_world", &"x".repeat(500)] {
        f.refused(json!({"type": ty, "room": "r", "text": "x"}), "unknown_type", "").await;
    }
}

#[tokio::test]
async fn a_missing_type_is_invalid() {
    let mut f = Fixture::new().await;
    f.refused(json!({"room": "r", "text": "x"}), "invalid", "type").await;
    f.refused(json!({}), "invalid", "type").await;
}

#[tokio::test]
async fn a_non_string_type_is_invalid() {
    let mut f = Fixture::new().await;
    for ty in [json!(5), json!(null), json!(true), json!(["say"]), json!({"say": 1})] {
        f.refused(json!({"type": ty, "room": "r", "text": "x"}), "invalid", "type").await;
    }
}

#[tokio::test]
async fn missing_required_fields_are_invalid() {
    let mut f = Fixture::new().await;
    let ulid = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    let cases = [
        (json!({"type": "join"}), "room"),
        (json!({"type": "leave"}), "room"),
        (json!({"type": "who"}), "room"),
        (json!({"type": "topic", "room": "r"}), "topic"),
        (json!({"type": "topic", "topic": "t"}), "room"),
        (json!({"type": "say", "text": "x"}), "room"),
        (json!({"type": "history"}), "room"),
        (json!({"type": "edit", "text": "x"}), "msg_id"),
        (json!({"type": "edit", "msg_id": ulid}), "text"),
        (json!({"type": "delete"}), "msg_id"),
        (json!({"type": "read", "room": "r"}), "seq"),
        (json!({"type": "read", "seq": 1}), "room"),
        (json!({"type": "typing", "room": "r"}), "active"),
        (json!({"type": "typing", "active": true}), "room"),
        (json!({"type": "event", "room": "r"}), "name"),
        (json!({"type": "event", "name": "x"}), "room"),
        (json!({"type": "watch"}), "nicks"),
        (json!({"type": "unwatch"}), "nicks"),
        (json!({"type": "away"}), "away"),
    ];
    for (frame, field) in cases {
        f.refused(frame, "invalid", field).await;
    }
}

#[tokio::test]
async fn wrong_json_types_are_invalid() {
    let mut f = Fixture::new().await;
    let cases = [
        (json!({"type": "join", "room": 7}), "room"),
        (json!({"type": "join", "room": ["r"]}), "room"),
        (json!({"type": "join", "room": "r", "since": "3"}), "since"),
        (json!({"type": "join", "room": "r", "since": -1}), "since"),
        (json!({"type": "join", "room": "r", "history": 1.5}), "history"),
        (json!({"type": "say", "room": "r", "text": 5}), "text"),
        (json!({"type": "say", "room": "r", "text": ["x"]}), "text"),
        (json!({"type": "say", "room": "r", "text": "x", "attachments": "a"}), "attachments"),
        (json!({"type": "say", "room": "r", "text": "x", "attachments": [1]}), "attachments"),
        (json!({"type": "say", "to": 5, "text": "x"}), "to"),
        (json!({"type": "say", "everyone": "yes", "text": "x"}), "everyone"),
        (json!({"type": "history", "room": "r", "limit": "10"}), "limit"),
        (json!({"type": "history", "room": "r", "before": 1.5}), "before"),
        (json!({"type": "history", "room": "r", "after": -2}), "after"),
        (json!({"type": "read", "room": "r", "seq": -1}), "seq"),
        (json!({"type": "read", "room": "r", "seq": "1"}), "seq"),
        (json!({"type": "typing", "room": "r", "active": "yes"}), "active"),
        (json!({"type": "typing", "room": "r", "active": 1}), "active"),
        (json!({"type": "event", "room": "r", "name": 5}), "name"),
        (json!({"type": "edit", "msg_id": 5, "text": "x"}), "msg_id"),
        (json!({"type": "edit", "msg_id": "not-a-ulid", "text": "x"}), "msg_id"),
        (json!({"type": "delete", "msg_id": "01ARZ3NDEKTSV4RRFFQ69G5FA"}), "msg_id"),
        (json!({"type": "away", "away": "no"}), "away"),
        (json!({"type": "topic", "room": "r", "topic": 5}), "topic"),
        (json!({"type": "watch", "nicks": "bob"}), "nicks"),
        (json!({"type": "watch", "nicks": [1]}), "nicks"),
        (json!({"type": "hello", "nick": 5}), "nick"),
    ];
    for (frame, field) in cases {
        f.refused(frame, "invalid", field).await;
    }
}

#[tokio::test]
async fn empty_and_whitespace_only_text_is_invalid() {
    let mut f = Fixture::new().await;
    for text in [json!(""), json!("   "), json!("\n\t \r\n"), json!("\u{3000}\u{a0}"), json!(null)] {
        f.refused(json!({"type": "say", "room": "r", "text": text}), "invalid", "text").await;
        f.refused(json!({"type": "say", "to": "bob", "text": text}), "invalid", "text").await;
    }
    f.refused(json!({"type": "say", "room": "r"}), "invalid", "text").await;
    // Nor may an edit empty a message.
    let ack = f.alice.say("r", "edit me").await;
    f.seq += 1;
    f.bob.expect("message").await;
    let msg_id = ack["message"]["msg_id"].clone();
    f.refused(json!({"type": "edit", "msg_id": msg_id, "text": "  "}), "invalid", "text").await;
}

#[tokio::test]
async fn a_nul_character_is_invalid() {
    // PostgreSQL cannot store it; no backend gets the chance to choke on it.
    let mut f = Fixture::new().await;
    f.refused(json!({"type": "say", "room": "r", "text": "a\u{0}b"}), "invalid", "text").await;
    f.refused(json!({"type": "say", "to": "bob", "text": "\u{0}"}), "invalid", "text").await;
    let ack = f.alice.say("r", "edit me").await;
    f.seq += 1;
    f.bob.expect("message").await;
    let msg_id = ack["message"]["msg_id"].clone();
    f.refused(json!({"type": "edit", "msg_id": msg_id, "text": "x\u{0}"}), "invalid", "text").await;
}

#[tokio::test]
async fn too_long_text_is_too_large() {
    let mut f = Fixture::new().await;
    let long = "x".repeat(4001);
    f.refused(json!({"type": "say", "room": "r", "text": long}), "too_large", "text").await;
    f.refused(json!({"type": "say", "to": "bob", "text": long}), "too_large", "text").await;
    f.refused(json!({"type": "say", "everyone": true, "text": long}), "too_large", "text").await;
    let multibyte = "é".repeat(4001);
    f.refused(json!({"type": "say", "room": "r", "text": multibyte}), "too_large", "text").await;
    let ack = f.alice.say("r", "edit me").await;
    f.seq += 1;
    f.bob.expect("message").await;
    let msg_id = ack["message"]["msg_id"].clone();
    f.refused(json!({"type": "edit", "msg_id": msg_id, "text": long}), "too_large", "text").await;
}

#[tokio::test]
async fn bad_room_names_are_invalid() {
    let mut f = Fixture::new().await;
    let names = [
        String::new(),
        "#".into(),
        "##r".into(),
        "a b".into(),
        "a/b".into(),
        "r\n".into(),
        "ü".into(),
        "a".repeat(65),
        format!("#{}", "a".repeat(64)),
    ];
    for name in &names {
        f.refused(json!({"type": "join", "room": name}), "invalid", "room").await;
        f.refused(json!({"type": "say", "room": name, "text": "x"}), "invalid", "room").await;
    }
    // The longest names are fine.
    for name in ["a".repeat(64), format!("#{}", "a".repeat(63))] {
        let joined = f.alice.join(&name).await;
        assert_eq!(joined["room"], json!(name));
    }
    f.still_fine().await;
}

#[tokio::test]
async fn bad_nicks_in_frames_are_invalid() {
    let mut f = Fixture::new().await;
    for nick in ["1bob", "-bob", "b b", "bob!", "", &"b".repeat(33)] {
        f.refused(json!({"type": "say", "to": nick, "text": "x"}), "invalid", "to").await;
        f.refused(json!({"type": "history", "with": nick}), "invalid", "with").await;
        f.refused(json!({"type": "watch", "nicks": [nick]}), "invalid", "nicks").await;
    }
}

#[tokio::test]
async fn a_binary_frame_is_bad_frame_and_the_connection_stays_open() {
    let mut f = Fixture::new().await;
    f.refused_raw(Message::binary(b"{\"type\":\"ping\"}".to_vec()), "bad_frame").await;
    f.refused_raw(Message::binary(vec![0u8; 1000]), "bad_frame").await;
}

#[tokio::test]
async fn an_oversize_frame_closes_with_1009() {
    let mut f = Fixture::new().await;
    // A frame of exactly max_frame_bytes is read (its text is too long).
    let pad = |len: usize| {
        let frame = json!({"type": "say", "room": "r", "text": ""}).to_string();
        let text = "x".repeat(len - frame.len());
        json!({"type": "say", "room": "r", "text": text}).to_string()
    };
    let exact = pad(65536);
    assert_eq!(exact.len(), 65536);
    f.refused_raw(Message::text(exact), "too_large").await;

    // One byte more closes the connection.
    f.alice.send_raw(Message::text(pad(65537))).await;
    assert_eq!(f.alice.closed().await, Some(1009));
    // bob sees alice quit, and nothing else.
    f.bob.expect_json(presence("r", "alice", "quit")).await;
    f.bob.sync().await;
    // The server is fine: a newcomer can talk to bob.
    let mut carol = Client::in_rooms(&f._server, "carol", &["r"]).await;
    f.bob.expect_json(presence("r", "carol", "join")).await;
    carol.say("r", "hi bob").await;
    f.bob.expect_json(room_msg("r", f.seq + 1, "carol", "hi bob")).await;
    f.bob.sync().await;
}

#[tokio::test]
async fn an_oversize_frame_before_hello_closes_with_1009() {
    let mut config = test_config();
    config.limits.max_frame_bytes = 1000;
    let server = start(config).await;
    let mut c = Client::connect(&server).await;
    c.send_text(&format!(r#"{{"type":"hello","nick":"{}"}}"#, "a".repeat(1000))).await;
    assert_eq!(c.closed().await, Some(1009));
    let (mut ok, _) = Client::hello(&server, "ok").await;
    ok.sync().await;
}

#[tokio::test]
async fn say_to_a_room_not_joined_is_not_in_room() {
    let mut f = Fixture::new().await;
    f.refused(json!({"type": "say", "room": "other", "text": "x"}), "not_in_room", "other").await;
    // Even when the room exists and has members.
    let mut carol = Client::in_rooms(&f._server, "carol", &["other"]).await;
    f.refused(json!({"type": "say", "room": "other", "text": "x"}), "not_in_room", "other").await;
    carol.sync().await;
}

#[tokio::test]
async fn a_direct_message_to_an_unknown_nick_is_no_such_user() {
    let mut f = Fixture::new().await;
    f.refused(json!({"type": "say", "to": "nobody", "text": "x"}), "no_such_user", "nobody").await;
}

#[tokio::test]
async fn a_direct_message_to_oneself_is_invalid() {
    let mut f = Fixture::new().await;
    for to in ["alice", "ALICE"] {
        f.refused(json!({"type": "say", "to": to, "text": "x"}), "invalid", "to").await;
    }
}

#[tokio::test]
async fn conflicting_or_out_of_range_fields_are_invalid() {
    let mut f = Fixture::new().await;
    let cases = [
        (json!({"type": "say", "room": "r", "to": "bob", "text": "x"}), "room"),
        (json!({"type": "say", "room": "r", "everyone": true, "text": "x"}), "everyone"),
        (json!({"type": "history", "room": "r", "with": "bob"}), "with"),
        (json!({"type": "history", "room": "r", "before": 5, "after": 1}), "before"),
        (json!({"type": "history", "room": "r", "limit": 0}), "limit"),
        (json!({"type": "history", "with": "alice"}), "with"),
        (json!({"type": "read", "everyone": true, "seq": 1}), "everyone"),
        (json!({"type": "typing", "everyone": true, "active": true}), "room"),
        (json!({"type": "event", "room": "r", "name": ""}), "name"),
        (json!({"type": "event", "room": "r", "name": "x".repeat(65)}), "name"),
        (json!({"type": "say", "room": "r", "text": "x", "attachments": ["no-such-upload"]}), "attachments"),
    ];
    for (frame, field) in cases {
        f.refused(frame, "invalid", field).await;
    }
}

#[tokio::test]
async fn unknown_fields_are_ignored() {
    let mut f = Fixture::new().await;
    f.alice
        .send(json!({"type": "say", "room": "r", "text": "hi", "id": 1, "colour": "red",
            "nested": {"deep": [1, 2]}}))
        .await;
    f.alice.expect("ack").await;
    f.bob.expect_json(room_msg("r", 1, "alice", "hi")).await;
    f.seq = 1;
    f.alice.send(json!({"type": "ping", "id": "p", "extra": null})).await;
    f.alice.expect_json(json!({"type": "pong", "id": "p"})).await;
    f.still_fine().await;
}
