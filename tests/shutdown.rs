//! Shutdown: every client gets the `notice` and close 1001; what was acked
//! before is not lost.
mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// The next frames must be the shutdown notice, then close 1001.
async fn expect_shutdown(c: &mut Client) {
    let notice = c.recv().await;
    assert_eq!((&notice["type"], &notice["code"]), (&json!("notice"), &json!("shutdown")), "{}: {notice}", c.nick);
    assert!(notice["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(notice.as_object().unwrap().len(), 3, "{notice}");
    c.expect_close(1001).await;
}

#[tokio::test]
async fn every_client_gets_the_notice_then_close_1001() {
    let server = start_default().await;
    let mut clients = quiet_room(&server, "r", &["alice", "bob"]).await;
    clients.push(Client::in_rooms(&server, "carol", &[]).await);
    let mut unidentified = Client::connect(&server).await;
    unidentified.nick = "unidentified".into();
    // Make sure the server has seen the unidentified connection.
    unidentified.send(json!({"type": "ping", "id": 1})).await;
    unidentified.expect_error("unauthorized").await;
    clients.push(unidentified);

    let stopped = tokio::spawn(async move {
        tokio::time::timeout(Duration::from_secs(10), server.stop()).await.expect("stop() took too long");
    });
    // Nothing else first: members leave silently at shutdown.
    for c in clients.iter_mut() {
        expect_shutdown(c).await;
    }
    stopped.await.unwrap();
}

#[tokio::test]
async fn the_server_refuses_connections_once_stopped() {
    let server = start_default().await;
    let url = server.ws_url();
    let (mut alice, _) = Client::hello(&server, "alice").await;
    server.trigger_shutdown();
    expect_shutdown(&mut alice).await;
    server.wait().await;
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
}

#[tokio::test]
async fn acks_of_messages_sent_just_before_shutdown_are_not_lost() {
    let server = start_default().await;
    let mut clients = quiet_room(&server, "r", &["alice", "bob"]).await;
    let mut bob = clients.pop().unwrap();
    let mut alice = clients.pop().unwrap();
    for i in 1..=15 {
        alice.send(json!({"type": "say", "room": "r", "text": format!("m{i}"), "id": i})).await;
    }
    // The pong says the server has read every say; their acks may still
    // be on the way when the shutdown starts.
    alice.send(json!({"type": "ping", "id": "p"})).await;
    let mut acks: Vec<Value> = Vec::new();
    loop {
        let v = alice.recv().await;
        if v["type"] == "pong" {
            break;
        }
        acks.push(v);
    }
    server.trigger_shutdown();
    // Usually none of the acks has arrived yet at this point.
    eprintln!("acks received before the shutdown started: {} of 15", acks.len());
    loop {
        let v = alice.recv().await;
        if v["type"] == "notice" {
            assert_eq!(v["code"], "shutdown");
            break;
        }
        acks.push(v);
    }
    alice.expect_close(1001).await;
    for (i, ack) in acks.iter().enumerate() {
        let i = i as u64 + 1;
        let expected = room_msg("r", i, "alice", &format!("m{i}"));
        assert_eq!(norm(ack.clone()), json!({"type": "ack", "id": i, "message": body(&expected)}));
    }
    assert_eq!(acks.len(), 15, "every say was acked before the close");

    // bob got some prefix of them (he stops receiving when the server stops
    // reading), then the notice and the close.
    let mut seq = 0;
    loop {
        let v = bob.recv().await;
        if v["type"] == "notice" {
            break;
        }
        seq += 1;
        assert_eq!(norm(v), room_msg("r", seq, "alice", &format!("m{seq}")));
    }
    bob.expect_close(1001).await;
    tokio::time::timeout(Duration::from_secs(10), server.wait()).await.expect("the server stopped");
}

/// Frames sent while the server starts shutting down: each is either never
/// read (no reply, not stored; the client sends it again after
/// reconnecting) or read, stored and acked. A message stored without its
/// ack reaching the sender would be sent twice.
#[tokio::test]
async fn a_message_stored_during_shutdown_is_acked() {
    const SENT: u64 = 15;
    let config = unlimited_config();
    let server = start(config.clone()).await;
    let (mut alice, welcome) = Client::hello(&server, "alice").await;
    let alices_token = welcome["token"].as_str().expect("welcome.token").to_string();
    // bob has been here, and is offline: a direct message to him looks him
    // up in storage before it is stored.
    let (mut bob, _) = Client::hello(&server, "bob").await;
    alice.send(json!({"type": "watch", "nicks": ["bob"]})).await;
    alice.expect("status").await;
    bob.close().await;
    assert_eq!(alice.expect("status").await["online"], false);

    for i in 1..=SENT {
        alice.send(json!({"type": "say", "to": "bob", "text": format!("m{i}"), "id": i})).await;
    }
    // Once the first is acked, the server is busy with the others.
    let first = alice.expect("ack").await;
    server.trigger_shutdown();
    let mut acked = vec![first["message"]["seq"].as_u64().unwrap()];
    loop {
        let v = alice.recv().await;
        match v["type"].as_str() {
            Some("ack") => acked.push(v["message"]["seq"].as_u64().unwrap()),
            Some("notice") => break,
            _ => panic!("alice: unexpected {v}"),
        }
    }
    alice.expect_close(1001).await;
    tokio::time::timeout(Duration::from_secs(10), server.wait()).await.expect("the server stopped");

    // The same database, a new server: what was stored was acked. (alice
    // comes back as herself, within her grace period, with her token.)
    let server = start(config).await;
    let (mut alice, _) = Client::with_token(&server, &alices_token).await;
    alice.send(json!({"type": "history", "with": "bob", "limit": 200})).await;
    let history = alice.expect("history").await;
    let stored: Vec<u64> = history["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(stored, acked, "stored (left) vs acked (right), of {SENT} sent");
    eprintln!("{} of {SENT} sent were stored and acked", acked.len());
}
