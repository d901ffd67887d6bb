//! The `chat` binary: configuration errors exit 2 naming the key; `serve
//! --listen` answers `GET /healthz`.
mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_chat");

/// `chat` with no `CHAT_*` settings inherited from the test's environment,
/// a database of its own, and a scratch working directory (so that nothing
/// lands in the source tree).
fn chat() -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("CHAT_") {
            cmd.env_remove(key);
        }
    }
    let db = common::fresh_db_path();
    cmd.env_remove("RUST_LOG")
        .env("CHAT_DATABASE__URL", format!("sqlite://{}", db.display()))
        .current_dir(db.parent().unwrap());
    cmd
}

/// Waits for a child to exit, killing it after `limit`.
fn wait_with_deadline(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_with_env(key: &str, value: &str) -> (Option<i32>, String) {
    let mut child = chat()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("CHAT_DATABASE__URL", "memory://")
        .env(key, value)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_with_deadline(&mut child, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("chat serve with {key}={value} did not exit"));
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (status.code(), stderr)
}

#[test]
fn an_invalid_setting_exits_2_naming_the_key() {
    for (key, value, named) in [
        ("CHAT_LIMITS__MAX_TEXT", "abc", "limits.max_text"),
        ("CHAT_LIMITS__MAX_TEXT", "0", "limits.max_text"),
        ("CHAT_LIMITS__HELLO_TIMEOUT", "soon", "limits.hello_timeout"),
        ("CHAT_ROOMS__AUTO_JOIN", r#"["bad room"]"#, "rooms.auto_join"),
        ("CHAT_CHAT__ALLOW_EVERYONE", "perhaps", "chat.allow_everyone"),
        ("CHAT_CLUSTER__REDIS_URL", "http://127.0.0.1:6379", "cluster.redis_url"),
        ("CHAT_CLUSTER__NODE_TIMEOUT", "6s", "cluster.node_timeout"),
        ("CHAT_CLUSTER__SYNC_BATCH", "100000", "cluster.sync_batch"),
        ("CHAT_CLUSTER__PUBLISH_BATCH", "0", "cluster.publish_batch"),
        ("CHAT_CLUSTER__PUBLISH_BATCH", "5000", "cluster.publish_batch"),
        ("CHAT_CLUSTER__PUBLISH_QUEUE", "0", "cluster.publish_queue"),
        ("CHAT_SERVER__NODE", "node 1", "server.node"),
        // Nothing listens on port 1: a node does not start without its Redis.
        ("CHAT_CLUSTER__REDIS_URL", "redis://127.0.0.1:1", "cannot join the cluster"),
    ] {
        let (code, stderr) = run_with_env(key, value);
        assert_eq!(code, Some(2), "{key}={value}: {stderr}");
        assert!(stderr.contains(named), "{key}={value}: stderr should name `{named}`: {stderr}");
    }
}

/// One `GET path` over HTTP/1.1; the status code, or None if nobody answers.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    tcp.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((status, body))
}

#[test]
fn serve_listens_where_told_and_answers_healthz() {
    // A port that was free a moment ago.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = chat()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("CHAT_LOG__FILTER", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        if let Some(answer) = http_get(port, "/healthz") {
            break answer;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("chat serve exited early: {status}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chat serve did not answer /healthz on port {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(answer.0, 200, "{answer:?}");

    // SIGTERM stops it gracefully.
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = wait_with_deadline(&mut child, Duration::from_secs(15)).expect("chat serve did not stop on SIGTERM");
    assert!(status.success(), "{status}");
}

/// Starts `chat serve` on a free port with `env`, stderr into `log` (a
/// file: not a terminal), waits for `/healthz`, then stops it with SIGTERM.
fn serve_until_healthy(env: &[(&str, &str)], log: &std::path::Path) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = chat();
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let stderr = std::fs::File::create(log).unwrap();
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((status, _)) = http_get(port, "/healthz") {
            assert_eq!(status, 200);
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("chat serve with {env:?} exited: {status}: {}", std::fs::read_to_string(log).unwrap());
        }
        assert!(Instant::now() < deadline, "chat serve did not answer /healthz");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = wait_with_deadline(&mut child, Duration::from_secs(15)).expect("chat serve did not stop");
    assert!(status.success(), "{status}");
}

#[test]
fn chat_variables_that_are_not_settings_do_not_stop_serve() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    // The console client's own variables, and any other CHAT_ name without `__`.
    serve_until_healthy(
        &[
            ("CHAT_TOKEN", "abc"),
            ("CHAT_PASSWORD", "secret"),
            ("CHAT_URL", "ws://127.0.0.1:1/ws"),
            ("CHAT_HARNESS_ID", "7"),
        ],
        &log,
    );
    // A setting that does not exist still stops it, naming the key.
    let (code, stderr) = run_with_env("CHAT_LIMITS__MAX_TEXTS", "10");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("max_texts"), "stderr should name the key: {stderr}");
    let (code, stderr) = run_with_env("CHAT_NOSUCHSECTION__KEY", "10");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("nosuchsection"), "stderr should name the key: {stderr}");
}

#[test]
fn logs_to_a_file_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    serve_until_healthy(&[("CHAT_LOG__FILTER", "info")], &log);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("listening"), "the log should say where it listens: {text}");
    assert!(text.contains("stopped"), "{text}");
    assert!(!text.contains("\x1b["), "colour codes in a log file: {text:?}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    serve_until_healthy(&[("CHAT_LOG__FILTER", "info"), ("CHAT_LOG__FORMAT", "json")], &log);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("\x1b["), "colour codes in JSON: {text:?}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let listening = lines
        .iter()
        .find(|v| v["fields"]["message"] == "listening")
        .unwrap_or_else(|| panic!("no `listening` event: {text}"));
    assert_eq!(listening["level"], "INFO");
    assert!(listening["fields"]["addr"].as_str().is_some_and(|a| a.starts_with("127.0.0.1:")), "{listening}");

    // A format that does not exist is a configuration error.
    let (code, stderr) = run_with_env("CHAT_LOG__FORMAT", "xml");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("log.format"), "{stderr}");
}

/// `chat token ARGS` with `secret` as auth.token_secret: exit code, stdout, stderr.
fn token(secret: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out =
        chat().arg("token").args(args).env("CHAT_AUTH__TOKEN_SECRET", secret).stdin(Stdio::null()).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn chat_token_refuses_a_bad_nick_and_a_short_secret() {
    let good = "0123456789abcdef0123456789abcdef";
    let (code, out, err) = token(good, &["--sub", "1", "--nick", "dora"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim().split('.').count(), 3, "a JWT: {out}");

    for nick in ["bad nick", "", "x".repeat(40).as_str(), "dora<script>"] {
        let (code, out, err) = token(good, &["--sub", "1", "--nick", nick]);
        assert_eq!(code, Some(2), "nick {nick:?}: {err}");
        assert!(out.is_empty(), "no token for {nick:?}: {out}");
        assert!(err.contains("--nick"), "{err}");
    }

    let (code, out, err) = token("hunter2", &["--sub", "1", "--nick", "dora"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("auth.token_secret") && err.contains("7 bytes") && err.contains("at least 32"), "{err}");
    assert!(!err.contains("hunter2"), "the secret is not printed: {err}");
    let (code, _, err) = token(&good[..31], &["--sub", "1", "--nick", "dora"]);
    assert_eq!(code, Some(2), "{err}");
}

#[test]
fn an_unreachable_database_fails_fast_with_the_real_cause() {
    // Nothing listens on port 1.
    for url in ["postgres://postgres@127.0.0.1:1/x", "mysql://root@127.0.0.1:1/x"] {
        let started = Instant::now();
        let (code, stderr) = run_with_env("CHAT_DATABASE__URL", url);
        let took = started.elapsed();
        assert_eq!(code, Some(2), "{url}: {stderr}");
        assert!(stderr.to_lowercase().contains("connection refused"), "{url}: the cause: {stderr}");
        assert!(!stderr.contains("timed out"), "{url}: {stderr}");
        assert!(took < Duration::from_secs(4), "{url}: took {took:?}");
    }
}

/// `chat bench fanout --json-out FILE` appends one JSON object per run (the
/// record docs/performance.md keeps), and the run it describes lost nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_json_out_keeps_one_line_per_run() {
    let server = common::start(common::unlimited_config()).await;
    let kept = common::fresh_db_path().with_extension("jsonl");
    for _ in 0..2 {
        let mut cmd = chat();
        cmd.args(["bench", "fanout", "--url", &server.ws_url(), "--rooms", "2", "--members", "3"])
            .args(["--publishers", "1", "--rate", "20", "--duration", "1", "--warmup", "0", "--drain", "2"])
            .arg("--json-out")
            .arg(&kept)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let status = tokio::task::spawn_blocking(move || cmd.status().unwrap()).await.unwrap();
        assert!(status.success(), "chat bench exited with {status}");
    }
    let text = std::fs::read_to_string(&kept).unwrap();
    let runs: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(runs.len(), 2, "{text}");
    for run in &runs {
        assert_eq!(run["bench"], "fanout");
        assert_eq!(run["rooms"], 2);
        assert!(run["sent"].as_u64().unwrap() > 0, "{run}");
        assert_eq!(run["delivered"], run["expected"], "{run}");
        assert_eq!(run["loss"], 0.0, "{run}");
        assert!(run["unix_time"].as_u64().unwrap() > 1_700_000_000, "{run}");
    }
    server.stop().await;
}
