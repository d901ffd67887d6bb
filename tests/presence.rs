//! Presence: watch → `status` at once and on every change (connect,
//! disconnect, away), unwatch stops them.
mod common;

use common::*;
use serde_json::{Value, json};

fn status(nick: &str, online: bool, away: bool) -> Value {
    json!({"type": "status", "nick": nick, "online": online, "away": away, "last_seen": MS})
}

#[tokio::test]
async fn watch_reports_the_current_status_at_once() {
    let server = start_default().await;
    let (mut alice, _) = Client::hello(&server, "alice").await;
    let (mut bob, _) = Client::hello(&server, "bob").await;

    // Someone seen before, now gone.
    bob.send(json!({"type": "watch", "nicks": ["gone"]})).await;
    bob.expect_json(json!({"type": "status", "nick": "gone", "online": false, "away": false,
        "last_seen": null}))
        .await;
    let (mut gone, _) = Client::hello(&server, "gone").await;
    bob.expect_json(status("gone", true, false)).await;
    gone.close().await;
    bob.expect_json(status("gone", false, false)).await;

    alice.send(json!({"type": "away", "away": true})).await;
    alice.sync().await;
    bob.send(json!({"type": "watch", "nicks": ["alice", "never", "gone", "ALICE"], "id": "w"})).await;
    bob.expect_json(status("alice", true, true)).await;
    bob.expect_json(json!({"type": "status", "nick": "never", "online": false, "away": false,
        "last_seen": null}))
        .await;
    bob.expect_json(status("gone", false, false)).await;
    bob.expect_json(json!({"type": "ack", "id": "w"})).await;
    bob.sync().await;
    alice.sync().await;
}

#[tokio::test]
async fn status_follows_connects_disconnects_and_away_until_unwatch() {
    let server = start_default().await;
    let (mut bob, _) = Client::hello(&server, "bob").await;
    let (mut carol, _) = Client::hello(&server, "carol").await;
    for w in [&mut bob, &mut carol] {
        w.send(json!({"type": "watch", "nicks": ["dave"]})).await;
        w.expect_json(json!({"type": "status", "nick": "dave", "online": false, "away": false,
            "last_seen": null}))
            .await;
    }

    let (mut dave, _) = Client::hello(&server, "dave").await;
    for w in [&mut bob, &mut carol] {
        w.expect_json(status("dave", true, false)).await;
    }
    dave.send(json!({"type": "away", "away": true, "id": 1})).await;
    dave.expect_json(json!({"type": "ack", "id": 1})).await;
    for w in [&mut bob, &mut carol] {
        w.expect_json(status("dave", true, true)).await;
    }
    // No change, no status.
    dave.send(json!({"type": "away", "away": true})).await;
    dave.sync().await;
    bob.sync().await;
    dave.send(json!({"type": "away", "away": false})).await;
    for w in [&mut bob, &mut carol] {
        w.expect_json(status("dave", true, false)).await;
    }
    // Away when leaving: offline is not away.
    dave.send(json!({"type": "away", "away": true})).await;
    for w in [&mut bob, &mut carol] {
        w.expect_json(status("dave", true, true)).await;
    }
    dave.close().await;
    let offline =
        [bob.expect_json(status("dave", false, false)).await, carol.expect_json(status("dave", false, false)).await];

    // bob stops watching; carol does not.
    bob.send(json!({"type": "unwatch", "nicks": ["DAVE"], "id": "u"})).await;
    bob.expect_json(json!({"type": "ack", "id": "u"})).await;
    let (mut dave, _) = Client::hello(&server, "dave").await;
    carol.expect_json(status("dave", true, false)).await;
    dave.close().await;
    let last = carol.expect_json(status("dave", false, false)).await;
    assert!(last["last_seen"].as_i64() >= offline[1]["last_seen"].as_i64());
    // The connect and the disconnect happened; bob heard of neither.
    bob.sync().await;
    carol.sync().await;
}

#[tokio::test]
async fn watching_oneself_and_bad_nicks() {
    let server = start_default().await;
    let mut clients = quiet_room(&server, "r", &["alice", "bob"]).await;
    clients[0].send(json!({"type": "watch", "nicks": ["alice"]})).await;
    clients[0].expect_json(status("alice", true, false)).await;
    for nicks in [json!(["ok", "1bad"]), json!("bob"), json!([1]), json!(null)] {
        clients[0].send(json!({"type": "watch", "nicks": nicks, "id": "w"})).await;
        let e = clients[0].expect_error("invalid").await;
        assert_eq!(e["id"], "w");
        assert!(e["message"].as_str().unwrap().contains("nick"), "{e}");
    }
    // The valid nick of the refused list was not watched either.
    let (mut ok, _) = Client::hello(&server, "ok").await;
    ok.sync().await;
    clients[0].say("r", "still fine").await;
    clients[1].expect_json(room_msg("r", 1, "alice", "still fine")).await;
    for c in clients.iter_mut() {
        c.sync().await;
    }
}
