//! What an operator sees: `GET /metrics` in Prometheus text format, on the
//! main port or on `metrics.listen`, and its numbers following the traffic.
//! (Settings from the environment, logs, `chat token` and start-up errors
//! are in tests/cli.rs: they need the binary.)
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::*;
use serde_json::json;

/// `GET http://addr/metrics`: status, content type and body.
async fn scrape_at(addr: SocketAddr) -> (u16, String, String) {
    let response = reqwest::get(format!("http://{addr}/metrics")).await.expect("GET /metrics");
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

/// The metrics text of a server that serves them on its main port.
async fn scrape(addr: SocketAddr) -> String {
    let (status, content_type, body) = scrape_at(addr).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "text/plain; version=0.0.4");
    body
}

/// The value of one series (`name{labels}` exactly as rendered), if shown.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap_or_else(|_| panic!("{series}: not a number: {v}")))
}

/// [`value`], 0 when the series is not shown yet.
fn count(text: &str, series: &str) -> f64 {
    value(text, series).unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_follow_the_traffic() {
    let server = start_default().await;
    let addr = server.addr();
    let before = scrape(addr).await;
    for series in [
        "chat_sessions",
        "chat_rooms",
        "chat_connections{transport=\"websocket\"}",
        "chat_deliveries_total",
        "chat_messages_stored_total{kind=\"room\"}",
        "chat_slow_consumer_closes_total",
        "chat_durable_step_seconds_count",
    ] {
        assert_eq!(value(&before, series), Some(0.0), "{series} in:\n{before}");
    }
    assert!(before.contains("# TYPE chat_durable_step_seconds histogram"), "{before}");
    assert!(!before.contains("chat_redis_up"), "no cluster series on one node:\n{before}");

    let mut clients = quiet_room(&server, "r", &["alice", "bob"]).await;
    let mut bob = clients.pop().unwrap();
    let mut alice = clients.pop().unwrap();
    alice.say("r", "hi").await;
    bob.expect("message").await;
    alice.say_to("bob", "psst").await;
    bob.expect("message").await;
    alice.send(json!({"type": "say", "everyone": true, "text": "all", "id": "e"})).await;
    alice.expect("ack").await;
    bob.expect("message").await;
    alice.send(json!({"type": "join", "room": "bad room", "id": "j"})).await;
    alice.expect_error("invalid").await;
    let health = reqwest::get(format!("http://{addr}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let anonymous = reqwest::get(format!("http://{addr}/api/rooms/r")).await.unwrap();
    assert_eq!(anonymous.status(), 401);

    let after = scrape(addr).await;
    let grew = |series: &str| count(&after, series) - count(&before, series);
    assert_eq!(value(&after, "chat_sessions"), Some(2.0), "{after}");
    assert_eq!(value(&after, "chat_rooms"), Some(1.0), "{after}");
    assert_eq!(value(&after, "chat_connections{transport=\"websocket\"}"), Some(2.0), "{after}");
    assert_eq!(grew("chat_connections_opened_total{transport=\"websocket\"}"), 2.0, "{after}");
    assert_eq!(grew("chat_messages_stored_total{kind=\"room\"}"), 1.0, "{after}");
    assert_eq!(grew("chat_messages_stored_total{kind=\"dm\"}"), 1.0, "{after}");
    assert_eq!(grew("chat_messages_stored_total{kind=\"everyone\"}"), 1.0, "{after}");
    assert_eq!(grew("chat_deliveries_total"), 3.0, "{after}");
    assert_eq!(grew("chat_durable_step_seconds_count"), 3.0, "{after}");
    assert_eq!(grew("chat_durable_step_seconds_bucket{le=\"+Inf\"}"), 3.0, "{after}");
    assert_eq!(grew("chat_errors_total{code=\"invalid\"}"), 1.0, "{after}");
    assert_eq!(grew("chat_http_requests_total{route=\"/healthz\",status=\"200\"}"), 1.0, "{after}");
    assert_eq!(grew("chat_http_requests_total{route=\"/api/rooms/{room}\",status=\"401\"}"), 1.0, "{after}");
    // The first scrape itself was counted.
    assert!(grew("chat_http_requests_total{route=\"/metrics\",status=\"200\"}") >= 1.0, "{after}");

    // Gone: the gauges follow.
    alice.close().await;
    bob.close().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let now = scrape(addr).await;
        if value(&now, "chat_sessions") == Some(0.0)
            && value(&now, "chat_connections{transport=\"websocket\"}") == Some(0.0)
        {
            break;
        }
        assert!(Instant::now() < deadline, "sessions still counted:\n{now}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn metrics_listen_moves_metrics_to_their_own_address() {
    let mut config = test_config();
    config.metrics.listen = "127.0.0.1:0".into();
    let server = start(config).await;
    let metrics = server.metrics_addr().expect("metrics.listen is set");
    assert_ne!(metrics, server.addr());
    let (status, content_type, body) = scrape_at(metrics).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "text/plain; version=0.0.4");
    assert!(body.contains("chat_sessions 0"), "{body}");
    // Not on the main port any more.
    let (status, _, _) = scrape_at(server.addr()).await;
    assert_eq!(status, 404);
    // And only /metrics there.
    let other = reqwest::get(format!("http://{metrics}/healthz")).await.unwrap();
    assert_eq!(other.status(), 404);
    server.stop().await;

    let server = start_default().await;
    assert_eq!(server.metrics_addr(), None);
    server.stop().await;
}

#[tokio::test]
async fn two_servers_in_one_process_count_apart() {
    let (a, b) = (start_default().await, start_default().await);
    let mut alice = Client::in_rooms(&a, "alice", &["r"]).await;
    alice.say("r", "only on a").await;
    let (on_a, on_b) = (scrape(a.addr()).await, scrape(b.addr()).await);
    assert_eq!(value(&on_a, "chat_messages_stored_total{kind=\"room\"}"), Some(1.0), "{on_a}");
    assert_eq!(value(&on_b, "chat_messages_stored_total{kind=\"room\"}"), Some(0.0), "{on_b}");
    assert_eq!(value(&on_b, "chat_sessions"), Some(0.0), "{on_b}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_close_is_counted() {
    let mut config = unlimited_config();
    config.limits.outbound_queue = 8;
    config.limits.max_text = 60_000;
    let server = start(config).await;
    let mut alice = Client::in_rooms(&server, "alice", &["r"]).await;
    // Never read after `joined`, with a tiny receive buffer.
    let mut slow = Client::connect_small_rcvbuf(&server, 4096).await;
    slow.send(json!({"type": "hello", "nick": "slow"})).await;
    slow.expect("welcome").await;
    slow.join("r").await;
    alice.expect("presence").await;
    let filler = "x".repeat(50_000);
    let mut n = 0;
    loop {
        n += 1;
        assert!(n <= 1000, "the slow reader was never closed");
        alice.send(json!({"type": "say", "room": "r", "text": filler, "id": n})).await;
        // Its ack, or first the slow reader's `quit`.
        let v = alice.recv().await;
        if v["type"] == "presence" {
            assert_eq!((&v["nick"], &v["event"]), (&json!("slow"), &json!("quit")), "{v}");
            break;
        }
        assert_eq!(v["type"], "ack", "{v}");
    }
    let text = scrape(server.addr()).await;
    assert_eq!(value(&text, "chat_slow_consumer_closes_total"), Some(1.0), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn cluster_metrics_show_redis_and_the_archiver_backlog() {
    // The archiver runs once at start, then not for an hour: what is said
    // stays in the Redis buffer.
    let Some(cluster) = Cluster::start("cluster_metrics_show_redis_and_the_archiver_backlog", 1, |c| {
        c.cluster.sync_interval = Duration::from_secs(3600);
    })
    .await
    else {
        return;
    };
    let node = cluster.node(1).addr();
    let before = scrape(node).await;
    assert_eq!(value(&before, "chat_redis_up"), Some(1.0), "{before}");
    let backlog = value(&before, "chat_archiver_backlog_entries").expect("backlog shown");
    let mut alice = cluster.hello(1, "alice").await;
    alice.join("r").await;
    // Two log entries: each `say` waits for its ack, so the second is
    // published after the first's batch, never in it.
    alice.say("r", "one").await;
    alice.say("r", "two").await;
    let after = scrape(node).await;
    assert_eq!(value(&after, "chat_archiver_backlog_entries"), Some(backlog + 2.0), "{after}");
    assert!(value(&after, "chat_archiver_lag_seconds").is_some_and(|s| s >= 0.0), "{after}");
    assert_eq!(count(&after, "chat_messages_stored_total{kind=\"room\"}"), 2.0, "{after}");
    assert_eq!(count(&after, "chat_durable_step_seconds_count"), 2.0, "{after}");
    assert_eq!(count(&after, "chat_deliveries_total"), 2.0, "{after}");
    cluster.finish().await;
}
