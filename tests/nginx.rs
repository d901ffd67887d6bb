//! config/nginx.conf works: Debian's nginx, run from that file (with its
//! two addresses pointed at a test server and a free port), carries the
//! WebSocket chat and the HTTP API. Without nginx installed the test prints
//! `SKIPPED: nginx not installed` and passes; `.ci/run` installs it.
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const NGINX: &str = "/usr/sbin/nginx";
const SITE: &str = include_str!("../config/nginx.conf");

/// config/nginx.conf with nginx listening on `listen` and chat at
/// `upstream`, inside a main configuration that keeps every file nginx
/// writes under `dir` and runs one process in the foreground.
fn nginx_conf(dir: &Path, listen: SocketAddr, upstream: SocketAddr) -> String {
    let mut site = SITE.to_string();
    for (from, to) in [
        ("    listen 80;\n", format!("    listen {listen};\n")),
        ("    listen [::]:80;\n", String::new()),
        ("    server 127.0.0.1:8080;\n", format!("    server {upstream};\n")),
    ] {
        assert!(site.contains(from), "config/nginx.conf no longer has `{}`", from.trim());
        site = site.replacen(from, &to, 1);
    }
    let d = dir.display();
    format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{site}\n}}\n"
    )
}

/// nginx as a child process; killed when dropped.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

#[tokio::test]
async fn chat_and_the_api_work_through_nginx() {
    if !Path::new(NGINX).exists() {
        println!("SKIPPED: nginx not installed");
        eprintln!("SKIPPED: nginx not installed");
        return;
    }
    let server = start(auth_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let listen = free_port();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, nginx_conf(dir.path(), listen, server.addr())).unwrap();
    let error_log = dir.path().join("error.log");
    let log = || std::fs::read_to_string(&error_log).unwrap_or_default();
    let check = Command::new(NGINX)
        .args(["-t", "-q", "-e"])
        .arg(&error_log)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(check.status.success(), "nginx -t: {}{}", String::from_utf8_lossy(&check.stderr), log());
    let mut nginx = Nginx(
        Command::new(NGINX)
            .arg("-e")
            .arg(&error_log)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(listen).await.is_err() {
        if let Some(status) = nginx.0.try_wait().unwrap() {
            panic!("nginx exited: {status}: {}", log());
        }
        assert!(Instant::now() < deadline, "nginx does not listen on {listen}: {}", log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // WebSocket through the proxy: hello, join, say; the other user hears it.
    let url = format!("ws://{listen}/ws");
    let mut alice = Client::connect_url(&url).await;
    alice.nick = "alice".into();
    alice.send(json!({"type": "hello", "nick": "alice"})).await;
    alice.expect("welcome").await;
    alice.join("r").await;
    let mut bob = Client::connect_url(&url).await;
    bob.nick = "bob".into();
    bob.send(json!({"type": "hello", "nick": "bob"})).await;
    bob.expect("welcome").await;
    bob.join("r").await;
    alice.expect_json(presence("r", "bob", "join")).await;
    alice.say("r", "through nginx").await;
    bob.expect_json(room_msg("r", 1, "alice", "through nginx")).await;

    // The HTTP API through the proxy.
    let http = reqwest::Client::new();
    let room =
        http.get(format!("http://{listen}/api/rooms/r")).header("Authorization", bearer(API_KEY)).send().await.unwrap();
    assert_eq!(room.status(), 200);
    let room: serde_json::Value = room.json().await.unwrap();
    assert_eq!(room["name"], "r", "{room}");
    let posted = http
        .post(format!("http://{listen}/api/rooms/r/messages"))
        .header("Authorization", bearer(API_KEY))
        .json(&json!({"text": "from the site"}))
        .send()
        .await
        .unwrap();
    assert!(posted.status().is_success(), "{}", posted.status());
    for c in [&mut alice, &mut bob] {
        let m = c.expect("message").await;
        assert_eq!((&m["from"], &m["text"]), (&json!("server"), &json!("from the site")), "{m}");
    }
    // Metrics are not for the world: nginx answers 403 to others (here the
    // test is on 127.0.0.1, which config/nginx.conf allows).
    let metrics = http.get(format!("http://{listen}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);

    alice.close().await;
    bob.close().await;
    drop(nginx);
    server.stop().await;
}
