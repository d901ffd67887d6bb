//! Memory amplification: a client that asks for big history pages fast and
//! reads nothing must not make the server buffer them without bound. Its
//! own test binary, so that the process's RSS is this test's alone.

mod common;

use common::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// This process's resident set size, in kB.
fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_history_pages_for_a_reader_that_reads_nothing_are_bounded() {
    let mut config = unlimited_config();
    config.limits.max_frame_bytes = 200_000;
    let server = start(config).await;
    let mut alice = Client::in_rooms(&server, "alice", &["r"]).await;
    // 200 messages that JSON-escape to 24 kB each: 4.8 MB in a full page.
    let text = "\u{1}".repeat(4000);
    for _ in 0..200 {
        alice.say("r", &text).await;
    }
    let mut bob = Client::in_rooms(&server, "bob", &["r"]).await;
    alice.expect_json(presence("r", "bob", "join")).await;

    // A client with a tiny receive buffer that asks and never reads.
    let mut greedy = Client::slow_reader(&server, "greedy", "r").await;
    alice.expect_json(presence("r", "greedy", "join")).await;
    bob.expect_json(presence("r", "greedy", "join")).await;

    let before = rss_kb();
    let ask = Message::text(json!({"type": "history", "room": "r", "limit": 200}).to_string());
    // 100 pages of 4.8 MB would be 480 MB if they were all buffered.
    for _ in 0..100 {
        if greedy.try_send_raw(ask.clone()).await.is_err() {
            break; // closed already
        }
    }
    // The server closes it (others see it quit) ...
    alice.expect_json(presence("r", "greedy", "quit")).await;
    bob.expect_json(presence("r", "greedy", "quit")).await;
    let grown_mb = rss_kb().saturating_sub(before) / 1024;
    eprintln!("RSS grew by {grown_mb} MB");
    assert!(grown_mb < 40, "the server buffered {grown_mb} MB for one reader");
    // ... with 1013, after what its socket already took.
    assert_eq!(greedy.closed().await, Some(1013));
    // Nobody else noticed.
    let ack = alice.say("r", "still here").await;
    assert_eq!(norm(bob.recv().await), room_msg("r", ack["message"]["seq"].as_u64().unwrap(), "alice", "still here"));
    bob.sync().await;
}
