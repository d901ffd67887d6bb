//! What the web client's people features need of the server (issue 18
//! items 4-5): read receipts in rooms as well as DMs, member lists with
//! each member's away flag, avatar and status line, and a profile card
//! with online state and last seen (`GET /api/users/{nick}`).

mod common;

use common::http;
use common::*;
use serde_json::json;

#[tokio::test]
async fn read_receipts_reach_the_rooms_other_members() {
    let server = start(test_config()).await;
    let mut alice = Client::in_rooms(&server, "alice", &["dev"]).await;
    let mut bob = Client::in_rooms(&server, "bob", &["dev"]).await;
    let (mut carol, _) = Client::hello(&server, "carol").await;
    alice.expect("presence").await;
    alice.say("dev", "read me").await;
    bob.expect("message").await;
    bob.send(json!({"type":"read","room":"dev","seq":1,"id":"r"})).await;
    bob.expect_json(json!({"type":"ack","id":"r"})).await;
    alice.expect_json(json!({"type":"read","room":"dev","nick":"bob","seq":1})).await;
    // Someone outside the room hears nothing.
    carol.sync().await;
    bob.sync().await;
}

#[tokio::test]
async fn member_lists_show_status_lines_and_profiles_show_last_seen() {
    let server = start(auth_config()).await;
    let addr = server.addr();
    let r = http::post(addr, "/api/register", &[], &json!({"nick": "alice", "password": "correct horse"})).await;
    let token = r.json()["token"].as_str().unwrap().to_string();
    let auth = bearer(&token);
    let r = http::patch(addr, "/api/me", &[("Authorization", auth.as_str())], &json!({"status": "at lunch"})).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Bob sees Alice's status line in the member list, with away.
    let (mut alice, _) = Client::hello_with(&server, json!({"nick": "alice", "password": "correct horse"})).await;
    alice.join("dev").await;
    alice.send(json!({"type":"away","away":true,"id":"a"})).await;
    alice.expect("ack").await;
    let (mut bob, welcome) = Client::hello(&server, "bob").await;
    let joined = bob.join("dev").await;
    let mut want_alice = member("alice");
    want_alice["status"] = json!("at lunch");
    want_alice["away"] = json!(true);
    assert_eq!(norm(joined["members"].clone()), json!([want_alice, member("bob")]));
    alice.expect("presence").await;
    let who = bob.request(json!({"type":"who","room":"dev"})).await;
    assert_eq!(norm(who["members"][0].clone()), want_alice);

    // The profile card: online, away, and last seen once gone.
    let bob_auth = bearer(welcome["token"].as_str().unwrap());
    let card = http::get(addr, "/api/users/alice", &[("Authorization", bob_auth.as_str())]).await.json();
    assert_eq!(
        (card["status"].as_str(), card["online"].as_bool(), card["away"].as_bool()),
        (Some("at lunch"), Some(true), Some(true)),
        "{card}"
    );
    alice.close().await;
    bob.expect_json(presence("dev", "alice", "quit")).await;
    let card = http::get(addr, "/api/users/alice", &[("Authorization", bob_auth.as_str())]).await.json();
    assert_eq!(card["online"], false, "{card}");
    assert!(card["last_seen"].as_i64().is_some_and(|t| t > 1_600_000_000_000), "{card}");
}
