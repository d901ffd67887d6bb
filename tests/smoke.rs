mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn two_clients_chat_in_a_room() {
    let server = start_default().await;
    let mut alice = Client::in_rooms(&server, "alice", &["lobby"]).await;
    let mut bob = Client::in_rooms(&server, "bob", &["lobby"]).await;
    assert_eq!(alice.expect("presence").await, json!({"type":"presence","room":"lobby","nick":"bob","event":"join"}));
    let ack = alice.say("lobby", "hello bob").await;
    let msg = bob.expect("message").await;
    assert_eq!(ack["message"], {
        let mut m = msg.clone();
        m.as_object_mut().unwrap().remove("type");
        m
    });
    assert_eq!(msg["text"], "hello bob");
    assert_eq!(msg["seq"], 1);
    alice.sync().await;
    bob.sync().await;
    server.stop().await;
}
