//! Reactions and replies as users see them: `react` → `ack` and `reaction`
//! to everyone who can see the message, `reactions` in history (WebSocket
//! and HTTP, transcript included), `say` `reply_to` → `message.reply_to`;
//! on every backend (tests/common/backends.rs), across a two-node cluster
//! (skipped without Redis), and every bad field refused.

mod common;

use common::backends::{self, Backend};
use common::cluster::{Cluster, fast};
use common::http;
use common::*;
use serde_json::{Value, json};

fn config_for(b: &Backend) -> chat::Config {
    let mut c = auth_config();
    c.database.url = b.url.clone();
    c
}

fn key() -> [(&'static str, String); 1] {
    [("Authorization", bearer(API_KEY))]
}

fn h<'a>(headers: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    headers.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The messages of a `history` reply.
async fn history(c: &mut Client, fields: Value) -> Vec<Value> {
    let mut req = json!({"type": "history", "id": "h"});
    req.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
    let h = c.request(req).await;
    assert_eq!(h["type"], "history", "{h}");
    h["messages"].as_array().unwrap().clone()
}

fn by_id<'a>(messages: &'a [Value], id: &str) -> &'a Value {
    messages.iter().find(|m| m["msg_id"] == id).unwrap_or_else(|| panic!("no {id} in {messages:?}"))
}

#[tokio::test]
async fn reactions_reach_the_room_and_stay() {
    for b in backends::all("reactions_reach_the_room_and_stay").await {
        let kind = b.kind;
        let server = start(config_for(&b)).await;
        // Alice is a site user: the same user after the restart.
        let (mut alice, _) = Client::with_token(&server, &site_token(&claims("a", "alice"))).await;
        alice.join("dev").await;
        let mut bob = Client::in_rooms(&server, "bob", &["dev"]).await;
        alice.expect("presence").await;
        let id = alice.say("dev", "ship it?").await["message"]["msg_id"].as_str().unwrap().to_string();
        bob.expect("message").await;

        // Bob reacts: his ack; Alice sees the reaction; Bob gets no echo.
        bob.send(json!({"type":"react","msg_id":id,"emoji":"👍","on":true,"id":"r1"})).await;
        bob.expect_json(json!({"type":"ack","id":"r1"})).await;
        alice
            .expect_json(json!({"type":"reaction","msg_id":ID,"room":"dev","emoji":"👍","nick":"bob","on":true}))
            .await;
        bob.sync().await;
        // Alice adds two; the same one again changes nothing and tells nobody.
        for emoji in ["🎉", "👍", "🎉"] {
            alice.send(json!({"type":"react","msg_id":id,"emoji":emoji,"on":true,"id":"r"})).await;
            alice.expect_json(json!({"type":"ack","id":"r"})).await;
        }
        for emoji in ["🎉", "👍"] {
            let r = bob.expect("reaction").await;
            assert_eq!((r["emoji"].as_str(), r["nick"].as_str(), &r["on"]), (Some(emoji), Some("alice"), &json!(true)));
        }
        bob.sync().await;
        let want = json!({"👍":["bob","alice"],"🎉":["alice"]});
        assert_eq!(by_id(&history(&mut bob, json!({"room":"dev"})).await, &id)["reactions"], want, "{kind:?}");

        // Bob takes his back.
        bob.send(json!({"type":"react","msg_id":id,"emoji":"👍","on":false,"id":"r2"})).await;
        bob.expect_json(json!({"type":"ack","id":"r2"})).await;
        alice
            .expect_json(json!({"type":"reaction","msg_id":ID,"room":"dev","emoji":"👍","nick":"bob","on":false}))
            .await;
        let want = json!({"👍":["alice"],"🎉":["alice"]});
        let msgs = history(&mut alice, json!({"room":"dev"})).await;
        assert_eq!(by_id(&msgs, &id)["reactions"], want, "{kind:?}");
        // A message without reactions carries no `reactions` field.
        let plain = alice.say("dev", "no reactions here").await["message"].clone();
        assert!(plain.get("reactions").is_none(), "{plain}");
        bob.expect("message").await;

        // Over HTTP: history and the transcript show them too.
        let r = http::get(server.addr(), "/api/rooms/dev/messages", &h(&key())).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(by_id(r.json()["messages"].as_array().unwrap(), &id)["reactions"], want, "{kind:?}");
        let r = http::get(server.addr(), "/api/rooms/dev/transcript", &h(&key())).await;
        assert_eq!(by_id(r.json()["messages"].as_array().unwrap(), &id)["reactions"], want, "{kind:?}");
        drop((alice, bob));
        server.stop().await;

        // Stored: a restarted server shows them to a newcomer's join.
        let server = start(config_for(&b)).await;
        let (mut carol, _) = Client::hello(&server, "carol").await;
        let joined = carol.join("dev").await;
        let joined_history = joined["history"].as_array().unwrap();
        assert_eq!(by_id(joined_history, &id)["reactions"], want, "{kind:?} after a restart");

        // A deleted message loses its reactions with its text.
        let (mut alice, _) = Client::with_token(&server, &site_token(&claims("a", "alice"))).await;
        alice.join("dev").await;
        carol.expect("presence").await;
        alice.send(json!({"type":"delete","msg_id":id,"id":"d"})).await;
        alice.expect_json(json!({"type":"ack","id":"d"})).await;
        carol.expect("deleted").await;
        let gone = by_id(&history(&mut carol, json!({"room":"dev"})).await, &id).clone();
        assert_eq!((gone["deleted"].clone(), gone.get("reactions")), (json!(true), None), "{kind:?}");
        // And reacting to it is reacting to nothing.
        carol.send(json!({"type":"react","msg_id":id,"emoji":"👍","on":true,"id":"x"})).await;
        carol.expect_error("no_such_message").await;
        server.stop().await;
    }
}

#[tokio::test]
async fn reactions_in_direct_messages_reach_only_the_two() {
    let server = start(test_config()).await;
    let (mut alice, _) = Client::hello(&server, "alice").await;
    let (mut bob, welcome) = Client::hello(&server, "bob").await;
    let (mut bob2, _) = Client::with_token(&server, welcome["token"].as_str().unwrap()).await;
    let (mut carol, _) = Client::hello(&server, "carol").await;
    let id = alice.say_to("bob", "lunch?").await["message"]["msg_id"].as_str().unwrap().to_string();
    bob.expect("message").await;
    bob2.expect("message").await;
    bob.send(json!({"type":"react","msg_id":id,"emoji":"🍕","on":true,"id":"r"})).await;
    bob.expect_json(json!({"type":"ack","id":"r"})).await;
    alice.expect_json(json!({"type":"reaction","msg_id":ID,"with":"bob","emoji":"🍕","nick":"bob","on":true})).await;
    // Bob's other session hears of it, as the conversation with alice.
    bob2.expect_json(json!({"type":"reaction","msg_id":ID,"with":"alice","emoji":"🍕","nick":"bob","on":true})).await;
    // Carol is not part of it: to her the message does not exist.
    carol.send(json!({"type":"react","msg_id":id,"emoji":"🍕","on":true,"id":"c"})).await;
    carol.expect_error("no_such_message").await;
    alice.sync().await;
    bob.sync().await;
    bob2.sync().await;
    let msgs = history(&mut alice, json!({"with":"bob"})).await;
    assert_eq!(by_id(&msgs, &id)["reactions"], json!({"🍕":["bob"]}));
}

#[tokio::test]
async fn bad_reactions_are_refused_and_harm_nobody() {
    let mut config = test_config();
    config.reactions.max_emoji_per_message = 2;
    let server = start(config).await;
    let mut alice = Client::in_rooms(&server, "alice", &["dev"]).await;
    let mut bob = Client::in_rooms(&server, "bob", &["dev"]).await;
    alice.expect("presence").await;
    let id = alice.say("dev", "react to me").await["message"]["msg_id"].as_str().unwrap().to_string();
    bob.expect("message").await;
    let long = "x".repeat(33);
    for (frame, field) in [
        (json!({"type":"react","emoji":"👍","on":true}), "msg_id"),
        (json!({"type":"react","msg_id":"nope","emoji":"👍","on":true}), "msg_id"),
        (json!({"type":"react","msg_id":7,"emoji":"👍","on":true}), "msg_id"),
        (json!({"type":"react","msg_id":id,"on":true}), "emoji"),
        (json!({"type":"react","msg_id":id,"emoji":"","on":true}), "emoji"),
        (json!({"type":"react","msg_id":id,"emoji":long,"on":true}), "emoji"),
        (json!({"type":"react","msg_id":id,"emoji":"a b","on":true}), "emoji"),
        (json!({"type":"react","msg_id":id,"emoji":"\u{7}","on":true}), "emoji"),
        (json!({"type":"react","msg_id":id,"emoji":["👍"],"on":true}), "emoji"),
        (json!({"type":"react","msg_id":id,"emoji":"👍"}), "on"),
        (json!({"type":"react","msg_id":id,"emoji":"👍","on":"yes"}), "on"),
    ] {
        let mut frame = frame;
        frame["id"] = json!("bad");
        bob.send(frame.clone()).await;
        let e = bob.expect_error("invalid").await;
        assert_eq!(e["id"], "bad", "{frame}");
        assert!(e["message"].as_str().unwrap().contains(field), "{frame}: {e}");
    }
    // 32 characters is the most, counted as characters (not bytes).
    bob.send(json!({"type":"react","msg_id":id,"emoji":"é".repeat(32),"on":true,"id":"ok"})).await;
    bob.expect_json(json!({"type":"ack","id":"ok"})).await;
    alice.expect("reaction").await;
    // Past the distinct-emoji limit (2 here): too_large; an emoji there already is fine.
    bob.send(json!({"type":"react","msg_id":id,"emoji":"🎉","on":true,"id":"2"})).await;
    bob.expect_json(json!({"type":"ack","id":"2"})).await;
    alice.expect("reaction").await;
    bob.send(json!({"type":"react","msg_id":id,"emoji":"🔥","on":true,"id":"3"})).await;
    bob.expect_error("too_large").await;
    alice.send(json!({"type":"react","msg_id":id,"emoji":"🎉","on":true,"id":"4"})).await;
    alice.expect_json(json!({"type":"ack","id":"4"})).await;
    bob.expect("reaction").await;
    // An unknown message; a room the reactor is not in.
    let unknown = ulid::Ulid::generate().to_string();
    bob.send(json!({"type":"react","msg_id":unknown,"emoji":"👍","on":true,"id":"u"})).await;
    bob.expect_error("no_such_message").await;
    let (mut carol, _) = Client::hello(&server, "carol").await;
    carol.send(json!({"type":"react","msg_id":id,"emoji":"👍","on":true,"id":"c"})).await;
    carol.expect_error("not_in_room").await;
    // Nobody else heard anything; every connection still works.
    alice.sync().await;
    bob.sync().await;
    carol.sync().await;
    let msgs = history(&mut alice, json!({"room":"dev"})).await;
    let mut want = serde_json::Map::new();
    want.insert("é".repeat(32), json!(["bob"]));
    want.insert("🎉".into(), json!(["bob", "alice"]));
    assert_eq!(by_id(&msgs, &id)["reactions"], Value::Object(want));
}

#[tokio::test]
async fn replies_quote_the_message_they_answer() {
    for b in backends::all("replies_quote_the_message_they_answer").await {
        let kind = b.kind;
        let server = start(config_for(&b)).await;
        let mut alice = Client::in_rooms(&server, "alice", &["dev", "ops"]).await;
        let mut bob = Client::in_rooms(&server, "bob", &["dev"]).await;
        alice.expect("presence").await;
        let long = format!("{}{}", "é".repeat(199), "xyz");
        let first = alice.say("dev", &long).await["message"]["msg_id"].as_str().unwrap().to_string();
        bob.expect("message").await;
        let quote = json!({"msg_id": ID, "from": "alice", "text": format!("{}x", "é".repeat(199))});

        bob.send(json!({"type":"say","room":"dev","text":"agreed","reply_to":first,"id":"s"})).await;
        let ack = bob.expect("ack").await;
        let mut want = room_msg("dev", 2, "bob", "agreed");
        want["reply_to"] = quote.clone();
        assert_eq!(norm(ack["message"].clone()), body(&want), "{kind:?}");
        assert_eq!(ack["message"]["reply_to"]["msg_id"], first);
        alice.expect_json(want.clone()).await;
        let reply = ack["message"]["msg_id"].as_str().unwrap().to_string();
        let msgs = history(&mut alice, json!({"room":"dev"})).await;
        assert_eq!(norm(by_id(&msgs, &reply).clone()), body(&want), "{kind:?}");

        // Over HTTP: publish a reply; history shows it.
        let r =
            http::post(server.addr(), "/api/rooms/dev/messages", &h(&key()), &json!({"text":"noted","reply_to":first}))
                .await;
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(norm(r.json()["message"]["reply_to"].clone()), quote, "{kind:?}");
        alice.expect("message").await;
        bob.expect("message").await;
        let r = http::post(server.addr(), "/api/rooms/ops/messages", &h(&key()), &json!({"text":"x","reply_to":first}))
            .await;
        assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some("invalid")), "{}", r.body);
        let r = http::post(server.addr(), "/api/rooms/dev/messages", &h(&key()), &json!({"text":"x","reply_to":"zz"}))
            .await;
        assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some("invalid")), "{}", r.body);

        // The quote follows the original: edited, then deleted.
        alice.send(json!({"type":"edit","msg_id":first,"text":"changed my mind","id":"e"})).await;
        alice.expect("ack").await;
        bob.expect("edited").await;
        let msgs = history(&mut bob, json!({"room":"dev"})).await;
        assert_eq!(by_id(&msgs, &reply)["reply_to"]["text"], "changed my mind", "{kind:?}");
        alice.send(json!({"type":"delete","msg_id":first,"id":"d"})).await;
        alice.expect("ack").await;
        bob.expect("deleted").await;
        let msgs = history(&mut bob, json!({"room":"dev"})).await;
        assert_eq!(
            norm(by_id(&msgs, &reply)["reply_to"].clone()),
            json!({"msg_id": ID, "from": "alice", "text": "", "deleted": true}),
            "{kind:?}"
        );
        // A deleted message cannot be answered.
        bob.send(json!({"type":"say","room":"dev","text":"late","reply_to":first,"id":"late"})).await;
        bob.expect_error("invalid").await;
        alice.sync().await;
        server.stop().await;
    }
}

#[tokio::test]
async fn bad_replies_are_refused_and_harm_nobody() {
    let server = start(test_config()).await;
    let mut alice = Client::in_rooms(&server, "alice", &["dev", "ops"]).await;
    let mut bob = Client::in_rooms(&server, "bob", &["dev"]).await;
    alice.expect("presence").await;
    let in_dev = alice.say("dev", "in dev").await["message"]["msg_id"].as_str().unwrap().to_string();
    bob.expect("message").await;
    let in_ops = alice.say("ops", "in ops").await["message"]["msg_id"].as_str().unwrap().to_string();
    let dm = alice.say_to("bob", "a secret").await["message"]["msg_id"].as_str().unwrap().to_string();
    bob.expect("message").await;
    let unknown = ulid::Ulid::generate().to_string();
    for (frame, why) in [
        (json!({"type":"say","room":"dev","text":"x","reply_to":7}), "not a string"),
        (json!({"type":"say","room":"dev","text":"x","reply_to":"not-a-ulid"}), "not an id"),
        (json!({"type":"say","room":"dev","text":"x","reply_to":unknown}), "unknown"),
        (json!({"type":"say","room":"dev","text":"x","reply_to":in_ops}), "another room"),
        (json!({"type":"say","room":"dev","text":"x","reply_to":dm}), "a DM, from a room"),
        (json!({"type":"say","to":"alice","text":"x","reply_to":in_dev}), "a room message, from a DM"),
    ] {
        let mut frame = frame;
        frame["id"] = json!("bad");
        bob.send(frame.clone()).await;
        let e = bob.expect_error("invalid").await;
        assert!(e["message"].as_str().unwrap().contains("reply_to"), "{why}: {e}");
    }
    // Nothing reached anyone; the connection still works, and a good reply goes.
    alice.sync().await;
    bob.send(json!({"type":"say","to":"alice","text":"ok","reply_to":dm,"id":"ok"})).await;
    let ack = bob.expect("ack").await;
    assert_eq!(ack["message"]["reply_to"]["text"], "a secret");
    let m = alice.expect("message").await;
    assert_eq!(m["reply_to"]["from"], "alice");
}

#[tokio::test]
async fn reactions_and_replies_cross_a_cluster() {
    let Some(cluster) = Cluster::start("reactions_and_replies_cross_a_cluster", 2, fast).await else { return };
    let mut alice = cluster.hello(1, "alice").await;
    let mut bob = cluster.hello(2, "bob").await;
    alice.join("dev").await;
    bob.join("dev").await;
    alice.expect("presence").await;
    // Reacted to and answered at once, on the other node: it may still be
    // in the cluster's buffer, not yet in the database.
    let id = alice.say("dev", "across").await["message"]["msg_id"].as_str().unwrap().to_string();
    bob.expect("message").await;
    bob.send(json!({"type":"react","msg_id":id,"emoji":"👋","on":true,"id":"r"})).await;
    bob.expect_json(json!({"type":"ack","id":"r"})).await;
    alice.expect_json(json!({"type":"reaction","msg_id":ID,"room":"dev","emoji":"👋","nick":"bob","on":true})).await;
    bob.send(json!({"type":"say","room":"dev","text":"hi back","reply_to":id,"id":"s"})).await;
    bob.expect("ack").await;
    let m = alice.expect("message").await;
    assert_eq!(norm(m["reply_to"].clone()), json!({"msg_id": ID, "from": "alice", "text": "across"}));
    // Both nodes' history shows the reaction and the quote.
    for c in [&mut alice, &mut bob] {
        let msgs = history(c, json!({"room":"dev"})).await;
        assert_eq!(by_id(&msgs, &id)["reactions"], json!({"👋":["bob"]}));
        assert_eq!(msgs.last().unwrap()["reply_to"]["msg_id"], id);
    }
    alice.send(json!({"type":"react","msg_id":id,"emoji":"👋","on":false,"id":"off"})).await;
    alice.expect("ack").await;
    bob.sync().await;
    alice.send(json!({"type":"react","msg_id":id,"emoji":"👋","on":true,"id":"on"})).await;
    alice.expect("ack").await;
    let r = bob.expect("reaction").await;
    assert_eq!((r["nick"].as_str(), r["on"].as_bool()), (Some("alice"), Some(true)));
}

#[tokio::test]
async fn transcripts_show_replies_and_reactions_as_text() {
    let server = start(auth_config()).await;
    let mut alice = Client::in_rooms(&server, "alice", &["dev"]).await;
    let id = alice.say("dev", "first <words>").await["message"]["msg_id"].as_str().unwrap().to_string();
    alice.send(json!({"type":"say","room":"dev","text":"second","reply_to":id,"id":"s"})).await;
    alice.expect("ack").await;
    alice.send(json!({"type":"react","msg_id":id,"emoji":"<b>x</b>","on":true,"id":"r"})).await;
    alice.expect("ack").await;
    let text = http::get(server.addr(), "/api/rooms/dev/transcript?format=text", &h(&key())).await.body;
    assert!(text.contains("<alice> first <words> [<b>x</b> alice]\n"), "{text}");
    assert!(text.contains("<alice> second (reply to alice: \"first <words>\")\n"), "{text}");
    let html = http::get(server.addr(), "/api/rooms/dev/transcript?format=html", &h(&key())).await.body;
    assert!(html.contains("<small>[&lt;b&gt;x&lt;/b&gt; alice]</small>"), "{html}");
    assert!(html.contains("<small>(reply to alice: &quot;first &lt;words&gt;&quot;)</small>"), "{html}");
    assert!(!html.contains("<b>x</b>"), "{html}");
}
