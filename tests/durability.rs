//! `ack` means stored: every acknowledged message survives `kill -9` of the
//! server. The real binary is spawned, several clients send 1,000 messages
//! without waiting, the process is killed mid-stream, restarted on the same
//! database, and history must hold every acknowledged message exactly once,
//! with the same `seq`, and `seq` gap-free and continuing.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::backends;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

const CLIENTS: usize = 5;
const PER_CLIENT: usize = 200;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `chat serve` on `db` and waits until `/healthz` answers.
async fn spawn_server(db: &str) -> (Child, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_chat"))
        .args(["serve", "--listen", &addr.to_string()])
        .env("CHAT_DATABASE__URL", db)
        .env("CHAT_ROOMS__AUTO_JOIN", "[]")
        .env("CHAT_LIMITS__RATE_PER_SEC", "100000")
        .env("CHAT_LIMITS__BURST", "100000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn chat");
    common::wait_healthy(addr).await;
    (child, addr)
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: SocketAddr, nick: &str, room: &str) -> Ws {
    let (mut ws, _) = connect_async(format!("ws://{addr}/ws")).await.unwrap();
    ws.send(Message::text(json!({"type":"hello","nick":nick}).to_string())).await.unwrap();
    ws.send(Message::text(json!({"type":"join","room":room,"history":0}).to_string())).await.unwrap();
    loop {
        if next_json(&mut ws).await.expect("joined")["type"] == "joined" {
            return ws;
        }
    }
}

async fn next_json(ws: &mut Ws) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await.ok()?? {
            Ok(Message::Text(t)) => return serde_json::from_str(&t).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// The room's whole history, paging forward.
async fn all_history(ws: &mut Ws, room: &str) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    loop {
        let after = out.last().map_or(0, |m| m["seq"].as_u64().unwrap());
        let req = json!({"type":"history","room":room,"after":after,"limit":200});
        ws.send(Message::text(req.to_string())).await.unwrap();
        let page = loop {
            let v = next_json(ws).await.expect("history");
            if v["type"] == "history" {
                break v;
            }
        };
        out.extend(page["messages"].as_array().unwrap().iter().cloned());
        if page["more"] != true {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_kill_9() {
    for b in backends::all("acknowledged_messages_survive_kill_9").await {
        let (mut child, addr) = spawn_server(&b.url).await;
        let acked: Arc<std::sync::Mutex<Vec<(String, u64)>>> = Arc::default();
        let count = Arc::new(AtomicUsize::new(0));
        let kill_at = CLIENTS * PER_CLIENT / 2;
        let (killed_tx, killed_rx) = tokio::sync::watch::channel(false);
        let halfway = Arc::new(tokio::sync::Notify::new());

        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let ws = connect(addr, &format!("w{c}"), "durable").await;
            let (acked, count, mut killed) = (acked.clone(), count.clone(), killed_rx.clone());
            let halfway = halfway.clone();
            tasks.push(tokio::spawn(async move {
                let (mut tx, mut rx) = ws.split();
                let sender = tokio::spawn(async move {
                    for i in 0..PER_CLIENT {
                        let say = json!({"type":"say","room":"durable","text":format!("w{c} {i}"),"id":i});
                        if tx.send(Message::text(say.to_string())).await.is_err() {
                            return;
                        }
                    }
                });
                loop {
                    let frame = tokio::select! {
                        f = rx.next() => f,
                        _ = killed.wait_for(|k| *k) => None,
                    };
                    let Some(Ok(Message::Text(t))) = frame else { break };
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "ack" {
                        let m = &v["message"];
                        acked.lock().unwrap().push((m["msg_id"].as_str().unwrap().into(), m["seq"].as_u64().unwrap()));
                        if count.fetch_add(1, Ordering::SeqCst) + 1 == kill_at {
                            halfway.notify_one();
                        }
                    }
                }
                sender.abort();
            }));
        }
        // kill -9 in the middle of the stream.
        halfway.notified().await;
        child.start_kill().unwrap(); // SIGKILL
        child.wait().await.unwrap();
        killed_tx.send(true).unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        let acked = acked.lock().unwrap().clone();
        assert!(acked.len() >= kill_at, "{:?}", b.kind);

        let (mut child, addr) = spawn_server(&b.url).await;
        let mut ws = connect(addr, "auditor", "durable").await;
        let history = all_history(&mut ws, "durable").await;
        let stored: HashMap<&str, u64> =
            history.iter().map(|m| (m["msg_id"].as_str().unwrap(), m["seq"].as_u64().unwrap())).collect();
        assert_eq!(stored.len(), history.len(), "{:?}: a msg_id appears twice", b.kind);
        let seqs: Vec<u64> = history.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=history.len() as u64).collect::<Vec<_>>(), "{:?}: seq has a gap", b.kind);
        for (id, seq) in &acked {
            assert_eq!(stored.get(id.as_str()), Some(seq), "{:?}: acked message {id} (seq {seq}) lost", b.kind);
        }
        eprintln!("{:?}: {} acked before kill -9, {} stored", b.kind, acked.len(), history.len());
        // seq continues after the restart.
        ws.send(Message::text(json!({"type":"say","room":"durable","text":"after","id":"a"}).to_string()))
            .await
            .unwrap();
        let ack = loop {
            let v = next_json(&mut ws).await.unwrap();
            if v["type"] == "ack" {
                break v;
            }
        };
        assert_eq!(ack["message"]["seq"], history.len() as u64 + 1, "{:?}", b.kind);
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }
}
