//! The Socket.IO door (`/socket.io/`), with clients no one here wrote: the
//! official `socket.io-client` from npm (scripts in `tests/socketio/`, run
//! with node) and python-socketio's client; and, for bad input, raw
//! Engine.IO over a WebSocket, packet by packet.
//!
//! Without node or `tests/socketio/node_modules` (or python's `socketio`
//! module) those tests print `SKIPPED` and pass; `.ci/run` installs them.
//! The cluster test needs `TEST_REDIS_URL` (else `SKIPPED` too).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chat::{Config, RunningServer};
use common::cluster::Cluster;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

/// Longest a client script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/socketio")
}

fn config() -> Config {
    let mut c = auth_config();
    c.rooms.auto_join = vec!["lobby".into()];
    c
}

/// A WebSocket user, in the lobby (auto-joined).
async fn web_user(server: &RunningServer, nick: &str) -> Client {
    let (mut c, _) = Client::hello(server, nick).await;
    c.expect("joined").await;
    c
}

fn url(server: &RunningServer) -> String {
    format!("http://{}", server.addr())
}

/// Node and the npm packages, or why not.
fn node_missing() -> Option<String> {
    if !dir().join("node_modules/socket.io-client").is_dir() {
        return Some("tests/socketio/node_modules missing (cd tests/socketio && npm ci)".into());
    }
    match std::process::Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("node not found".into()),
    }
}

/// A client program, started; its standard output is read line by line.
struct Script {
    child: Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    out: Vec<String>,
    /// Its standard error, once it ends.
    errors: tokio::task::JoinHandle<String>,
}

impl Script {
    fn start(program: &str, args: &[&str], env: &[(&str, String)]) -> Script {
        let mut cmd = Command::new(program);
        cmd.args(args).current_dir(dir()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut stderr = child.stderr.take().unwrap();
        let errors = tokio::spawn(async move {
            let mut text = String::new();
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await;
            text
        });
        Script { child, lines, out: Vec::new(), errors }
    }

    fn node(script: &str, env: &[(&str, String)]) -> Option<Script> {
        if let Some(why) = node_missing() {
            println!("SKIPPED socket.io-client test {script}: {why}");
            return None;
        }
        Some(Script::start("node", &[script], env))
    }

    /// Waits for the script to print `line`.
    async fn wait_for(&mut self, line: &str) {
        let found = tokio::time::timeout(SCRIPT_TIMEOUT, async {
            while let Ok(Some(l)) = self.lines.next_line().await {
                self.out.push(l.clone());
                if l == line {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(found, Ok(true), "the script never printed {line}; its output: {:?}", self.out);
    }

    /// Waits for the script to end; it must exit 0 after printing `OK`.
    async fn succeeds(mut self) {
        let status = tokio::time::timeout(SCRIPT_TIMEOUT, async {
            while let Ok(Some(l)) = self.lines.next_line().await {
                self.out.push(l);
            }
            self.child.wait().await
        })
        .await
        .expect("the script timed out")
        .unwrap();
        let errors = self.errors.await.unwrap_or_default();
        let ok = status.success() && self.out.last().map(String::as_str) == Some("OK");
        assert!(ok, "{status}: {:?}\n{errors}", self.out);
    }
}

// ---- the official JS client -------------------------------------------------------------------

#[tokio::test]
async fn chat_namespace_over_websocket() {
    let server = start(config()).await;
    let env = [("CHAT_URL", url(&server)), ("SIO_TRANSPORTS", "websocket".into())];
    let Some(script) = Script::node("chat.mjs", &env) else { return };
    script.succeeds().await;
}

#[tokio::test]
async fn chat_namespace_over_long_polling() {
    let server = start(config()).await;
    let env = [("CHAT_URL", url(&server)), ("SIO_TRANSPORTS", "polling".into())];
    let Some(script) = Script::node("chat.mjs", &env) else { return };
    script.succeeds().await;
}

#[tokio::test]
async fn long_polling_upgrades_to_websocket_without_losing_a_message() {
    let server = start(config()).await;
    let env = [("CHAT_URL", url(&server))];
    let Some(script) = Script::node("upgrade.mjs", &env) else { return };
    script.succeeds().await;
}

fn bee_token() -> String {
    let mut claims = claims("site-bee", "bee");
    claims.rooms = Some(vec!["lobby".into(), "conv-a".into()]);
    site_token(&claims)
}

#[tokio::test]
async fn max_namespace_runs_cmaxtalks_client_code() {
    let server = start(config()).await;
    // A web user in the lobby sees cMaxtalk's notifications as `event`s.
    let mut web = web_user(&server, "web").await;
    let env = [("CHAT_URL", url(&server)), ("SITE_TOKEN", bee_token())];
    let Some(script) = Script::node("max.mjs", &env) else { return };
    script.succeeds().await;
    web.expect_json(presence("lobby", "user.name", "join")).await;
    web.expect_json(presence("lobby", "bee", "join")).await;
    let update = web.expect("event").await;
    assert_eq!(
        update,
        json!({"type": "event", "room": "lobby", "nick": "user.name", "name": "maxtalk.update",
               "data": {"timestamp": 347815255145999u64, "messageID": "0f2343512345252"}})
    );
    let mut gone = vec![web.expect("presence").await, web.expect("presence").await];
    gone.sort_by_key(|p| p["nick"].to_string());
    assert_eq!(gone, vec![presence("lobby", "bee", "quit"), presence("lobby", "user.name", "quit")]);
    // Nothing was stored: the room has no history.
    web.send(json!({"type": "history", "room": "lobby", "id": 1})).await;
    let history = web.expect("history").await;
    assert_eq!(history["messages"], json!([]));
    web.sync().await;
}

#[tokio::test]
async fn max_namespace_over_websocket_only() {
    let server = start(config()).await;
    let env = [("CHAT_URL", url(&server)), ("SITE_TOKEN", bee_token()), ("SIO_TRANSPORTS", "websocket".into())];
    let Some(script) = Script::node("max.mjs", &env) else { return };
    script.succeeds().await;
}

#[tokio::test]
async fn max_namespace_can_be_turned_off() {
    let mut c = config();
    c.socketio.maxtalk = false;
    let server = start(c).await;
    let mut sio = RawSio::connect(&server).await;
    sio.send("40/max,{\"nick\":\"x\"}").await;
    let refused = sio.recv().await;
    assert!(refused.starts_with("44/max,"), "{refused}");
}

#[tokio::test]
async fn socketio_user_and_websocket_user_share_a_room() {
    let server = start(config()).await;
    let mut web = web_user(&server, "web").await;
    let Some(mut script) = Script::node("mixed.mjs", &[("CHAT_URL", url(&server))]) else { return };
    script.wait_for("@@ready").await;
    web.expect_json(presence("lobby", "sio", "join")).await;
    web.say("lobby", "hello from the web").await;
    let typing = web.expect("typing").await;
    assert_eq!(typing, json!({"type": "typing", "room": "lobby", "nick": "sio", "active": true}));
    let typing = web.expect("typing").await;
    assert_eq!(typing["active"], false, "the typist's message ends its typing");
    let m = web.expect("message").await;
    assert_eq!(norm(m), room_msg("lobby", 2, "sio", "hello from socket.io"));
    let dm = web.expect("message").await;
    assert_eq!((dm["from"].as_str(), dm["text"].as_str()), (Some("sio"), Some("a private word")));
    web.say_to("sio", "private answer").await;
    script.succeeds().await;
    web.expect_json(presence("lobby", "sio", "quit")).await;
}

#[tokio::test]
async fn a_socketio_user_on_each_of_two_cluster_nodes() {
    let Some(cluster) = Cluster::start("socketio cluster", 2, |c| c.rooms.auto_join = vec!["lobby".into()]).await
    else {
        return;
    };
    let env = [("CHAT_URL", url(cluster.node(1))), ("CHAT_URL2", url(cluster.node(2)))];
    let Some(script) = Script::node("cluster.mjs", &env) else { return };
    script.succeeds().await;
    cluster.finish().await;
}

// ---- python-socketio --------------------------------------------------------------------------

#[tokio::test]
async fn python_socketio_client() {
    let has_module = std::process::Command::new("python3")
        .args(["-c", "import socketio, websocket, requests"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_module {
        println!("SKIPPED python-socketio test: python3 with python-socketio[client] not found");
        return;
    }
    let server = start(config()).await;
    let mut web = web_user(&server, "web").await;
    let mut script = Script::start("python3", &["client.py"], &[("CHAT_URL", url(&server))]);
    script.wait_for("@@ready").await;
    web.expect_json(presence("lobby", "snake", "join")).await;
    let m = web.expect("message").await;
    assert_eq!(norm(m), room_msg("lobby", 1, "snake", "hello from python"));
    web.say("lobby", "hello, python").await;
    script.succeeds().await;
    web.expect_json(presence("lobby", "snake", "quit")).await;
    web.sync().await;
}

// ---- bad input, packet by packet ------------------------------------------------------------

/// A Socket.IO client written by hand: Engine.IO v4 over a WebSocket.
struct RawSio {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl RawSio {
    async fn connect(server: &RunningServer) -> RawSio {
        let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr());
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("engine.io handshake");
        let mut sio = RawSio { ws };
        let open = match tokio::time::timeout(WAIT, sio.ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => t.as_str().to_owned(),
            other => panic!("no Engine.IO open packet: {other:?}"),
        };
        assert!(open.starts_with("0{") && open.contains("\"sid\""), "{open}");
        sio
    }

    /// Connects to `/` as `nick`, through `welcome` and the lobby's `joined`.
    async fn chat(server: &RunningServer, nick: &str) -> RawSio {
        let mut sio = RawSio::connect(server).await;
        sio.send(&format!("40{}", json!({"nick": nick}))).await;
        assert!(sio.recv().await.starts_with("40{\"sid\""));
        assert_eq!(sio.event().await.0, "welcome");
        assert_eq!(sio.event().await.0, "joined");
        sio
    }

    /// Sends one Engine.IO message (`4` and a Socket.IO packet: `42[…]`).
    async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// The next Engine.IO message but pings (which are answered).
    async fn recv(&mut self) -> String {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next()).await.expect("nothing within WAIT");
            match m {
                Some(Ok(Message::Text(t))) if t.as_str() == "2" => self.ws.send(Message::text("3")).await.unwrap(),
                Some(Ok(Message::Text(t))) => return t.as_str().to_owned(),
                other => panic!("expected a packet, got {other:?}"),
            }
        }
    }

    /// The next packet, which must be an event on `/`: its name and argument.
    async fn event(&mut self) -> (String, Value) {
        let p = self.recv().await;
        let args: Vec<Value> =
            serde_json::from_str(p.strip_prefix("42").unwrap_or_else(|| panic!("not an event: {p}")))
                .unwrap_or_else(|e| panic!("{e}: {p}"));
        (args[0].as_str().unwrap().to_owned(), args[1].clone())
    }

    /// `ping` with ack id `n` answered by its `pong`, with nothing before it.
    async fn sync(&mut self, n: u64) {
        self.send(&format!("42{n}[\"ping\"]")).await;
        let p = self.recv().await;
        let expected = format!("43{n}[");
        assert!(p.starts_with(&expected) && p.contains("\"pong\""), "{p}");
    }

    /// Whether the server closes the connection (without an error of ours).
    async fn closed(&mut self) -> bool {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await.expect("not closed within WAIT") {
                None | Some(Ok(Message::Close(_))) | Some(Err(_)) => return true,
                // The Engine.IO close packet, or packets already queued.
                Some(Ok(_)) => continue,
            }
        }
    }
}

#[tokio::test]
async fn events_before_connecting_a_namespace_are_dropped() {
    let server = start(config()).await;
    let mut other = RawSio::chat(&server, "other").await;
    let mut sio = RawSio::connect(&server).await;
    sio.send("42[\"say\",{\"room\":\"lobby\",\"text\":\"sneaky\"}]").await;
    sio.send("421[\"ping\"]").await;
    // Then it connects as usual and is answered.
    sio.send("40{\"nick\":\"late\"}").await;
    assert!(sio.recv().await.starts_with("40{"));
    assert_eq!(sio.event().await.0, "welcome");
    assert_eq!(sio.event().await.0, "joined");
    sio.sync(2).await;
    let (name, p) = other.event().await;
    assert_eq!((name.as_str(), p["nick"].as_str()), ("presence", Some("late")));
    other.sync(1).await;
}

#[tokio::test]
async fn unknown_namespaces_and_bad_auth_are_refused() {
    let server = start(config()).await;
    let mut sio = RawSio::connect(&server).await;
    sio.send("40/admin,{\"nick\":\"x\"}").await;
    let p = sio.recv().await;
    assert!(p.starts_with("44/admin,{") && p.contains("Invalid namespace"), "{p}");
    sio.send("40[1,2]").await;
    let p = sio.recv().await;
    let data: Value = serde_json::from_str(p.strip_prefix("44").unwrap()).unwrap();
    assert_eq!(data["data"]["code"], "invalid");
    sio.send("40{\"nick\":\"fine\",\"password\":7}").await;
    let p = sio.recv().await;
    assert!(p.starts_with("44{") && p.contains("auth.password"), "{p}");
    // Still usable.
    sio.send("40{\"nick\":\"fine\"}").await;
    assert!(sio.recv().await.starts_with("40{"));
    assert_eq!(sio.event().await.0, "welcome");
    // Counted as a Socket.IO connection.
    let metrics = reqwest::get(format!("http://{}/metrics", server.addr())).await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "chat_connections{transport=\"socketio\"} 1"), "{metrics}");
}

#[tokio::test]
async fn malformed_events_get_errors_and_the_connection_stays() {
    let server = start(config()).await;
    let mut other = RawSio::chat(&server, "other").await;
    let mut sio = RawSio::chat(&server, "sio").await;
    other.event().await;
    for (n, packet) in
        ["42{\"type\":\"say\"}", "42[]", "42[42]", "42[\"say\",", "42\"just a string\"", "42[\"say\",[1,2]]"]
            .iter()
            .enumerate()
    {
        sio.send(packet).await;
        let (name, e) = sio.event().await;
        assert_eq!(name, "error", "{packet}");
        assert!(matches!(e["code"].as_str(), Some("bad_frame" | "invalid")), "{packet}: {e}");
        sio.sync(n as u64).await;
    }
    // A binary event: refused, its attachment skipped, still usable.
    sio.send("451-7[\"say\",{\"room\":\"lobby\",\"text\":{\"_placeholder\":true,\"num\":0}}]").await;
    sio.ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    let p = sio.recv().await;
    assert!(p.starts_with("437[") && p.contains("bad_frame"), "{p}");
    sio.sync(100).await;
    // Nothing reached the other user.
    other.sync(1).await;
}

#[tokio::test]
async fn broken_packets_close_only_that_connection() {
    let server = start(config()).await;
    let mut other = RawSio::chat(&server, "other").await;
    // Bad Socket.IO packets, and Engine.IO messages that are none.
    for bad in ["49", "4x", "45x-[]", "42999999999999999999999[\"ping\"]", "44{}", "4", "z", "7abc"] {
        let mut sio = RawSio::chat(&server, "victim").await;
        let (name, _) = other.event().await;
        assert_eq!(name, "presence");
        sio.send(bad).await;
        assert!(sio.closed().await, "{bad}");
        let (name, quit) = other.event().await;
        assert_eq!((name.as_str(), quit["event"].as_str()), ("presence", Some("quit")), "{bad}");
    }
    // A binary message outside a binary packet.
    let mut sio = RawSio::chat(&server, "victim").await;
    other.event().await;
    sio.ws.send(Message::binary(vec![0u8; 8])).await.unwrap();
    assert!(sio.closed().await);
    other.event().await;
    other.sync(1).await;
}

#[tokio::test]
async fn huge_payloads_close_the_connection() {
    let mut c = config();
    c.socketio.max_payload = 8192;
    let server = start(c).await;
    let mut other = RawSio::chat(&server, "other").await;
    let mut sio = RawSio::chat(&server, "big").await;
    other.event().await;
    let text = "x".repeat(10_000);
    sio.send(&format!("42[\"say\",{}]", json!({"room": "lobby", "text": text}))).await;
    assert!(sio.closed().await);
    let (_, quit) = other.event().await;
    assert_eq!(quit["event"], "quit");
    // A polling request over the limit is refused too.
    let client = reqwest::Client::new();
    let base = format!("http://{}/socket.io/?EIO=4&transport=polling", server.addr());
    let open = client.get(&base).send().await.unwrap().text().await.unwrap();
    let sid =
        serde_json::from_str::<Value>(open.strip_prefix('0').unwrap()).unwrap()["sid"].as_str().unwrap().to_owned();
    let url = format!("{base}&sid={sid}");
    let post = client.post(&url).body(format!("40{}", "y".repeat(20_000))).send().await.unwrap();
    assert_eq!(post.status(), reqwest::StatusCode::PAYLOAD_TOO_LARGE);
    // And that closed the connection: its sid names nothing now.
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"code": 1, "message": "Session ID unknown"}));
    other.sync(1).await;
}

#[tokio::test]
async fn a_flood_is_rate_limited_or_closed_and_reaches_no_one() {
    let mut c = config();
    c.socketio.inbound_queue = 16;
    let server = start(c).await;
    let mut other = RawSio::chat(&server, "other").await;
    let mut sio = RawSio::chat(&server, "flood").await;
    other.event().await;
    // Events that reach no one: ten thousand of a type that does not exist.
    let flood = "2[\"dance\",{\"room\":\"lobby\"}]";
    for _ in 0..10_000 {
        if sio.ws.feed(Message::text(format!("4{flood}"))).await.is_err() {
            break;
        }
    }
    let _ = sio.ws.flush().await;
    // Errors for what was handled (if any), then the close.
    let mut errors = 0;
    loop {
        match tokio::time::timeout(WAIT, sio.ws.next()).await.expect("neither answered nor closed") {
            Some(Ok(Message::Text(t))) if t.as_str().starts_with("42[\"error\"") => errors += 1,
            Some(Ok(Message::Text(_))) => {}
            _ => break,
        }
    }
    // Closed before it was all handled (the rest reached no one).
    assert!(errors < 10_000, "{errors} errors");
    let (_, quit) = other.event().await;
    assert_eq!((quit["nick"].as_str(), quit["event"].as_str()), (Some("flood"), Some("quit")));
    other.sync(1).await;
    // The server still serves.
    let mut again = RawSio::chat(&server, "again").await;
    again.sync(1).await;
}

#[tokio::test]
async fn a_slow_socketio_consumer_is_closed_and_the_others_go_on() {
    let mut c = config();
    c.limits.rate_per_sec = 1_000_000;
    c.limits.burst = 1_000_000;
    c.socketio.buffer = 8;
    let server = start(c).await;
    let mut talker = web_user(&server, "talker").await;
    // A Socket.IO client that stops reading.
    let slow = RawSio::chat(&server, "slow").await;
    talker.expect_json(presence("lobby", "slow", "join")).await;
    let text = "z".repeat(3900);
    let mut quit = None;
    for _ in 0..5000 {
        talker.send(json!({"type": "say", "room": "lobby", "text": text})).await;
        // Acks, and at some point the slow one's quit.
        loop {
            let f = talker.recv().await;
            if f["type"] == "ack" {
                break;
            }
            if f["type"] == "presence" {
                quit = Some(f);
            }
        }
        if quit.is_some() {
            break;
        }
    }
    let quit = quit.expect("the slow consumer was never closed");
    assert_eq!((quit["nick"].as_str(), quit["event"].as_str()), (Some("slow"), Some("quit")));
    drop(slow);
    let metrics = reqwest::get(format!("http://{}/metrics", server.addr())).await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("chat_slow_consumer_closes_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
    talker.sync().await;
}

#[tokio::test]
async fn socketio_can_be_turned_off() {
    let mut c = config();
    c.socketio.enabled = false;
    let server = start(c).await;
    let r = reqwest::get(format!("http://{}/socket.io/?EIO=4&transport=polling", server.addr())).await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_connection_that_opens_no_namespace_is_closed_after_the_hello_timeout() {
    let mut c = config();
    c.limits.hello_timeout = Duration::from_millis(300);
    let server = start(c).await;
    let mut idle = RawSio::connect(&server).await;
    let mut prompt = RawSio::connect(&server).await;
    prompt.send("40{\"nick\":\"prompt\"}").await;
    assert!(prompt.recv().await.starts_with("40{"));
    assert!(idle.closed().await);
    // The one that connected a namespace in time stays.
    assert_eq!(prompt.event().await.0, "welcome");
    assert_eq!(prompt.event().await.0, "joined");
    prompt.sync(1).await;
}

#[tokio::test]
async fn shutdown_sends_the_notice_and_closes() {
    let server = start(config()).await;
    let mut sio = RawSio::chat(&server, "sio").await;
    let stopping = tokio::spawn(server.stop());
    let (name, notice) = sio.event().await;
    assert_eq!((name.as_str(), notice["code"].as_str()), ("notice", Some("shutdown")));
    assert!(sio.closed().await);
    stopping.await.unwrap();
}
