//! `chat client`: the real binary against a server started in-process.
//!
//! Scripted runs pipe standard input and read standard output line by line,
//! awaiting each expected line (no sleeps). Lines start with the local time
//! (`HH:MM `), which [`untimed`] checks and strips. To prove that a client
//! received nothing, an observer is a protocol-level client whose `sync()`
//! requires its `ping`'s `pong` to be the very next frame.
//!
//! The interactive mode runs in a pseudo-terminal (`pty-process`) whose
//! output feeds a terminal emulator (`vt100`), so tests read the screen as
//! a person would see it, and wait for it to change rather than sleeping.
mod common;

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use common::{Client, WAIT, norm, quiet_room};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const BIN: &str = env!("CARGO_BIN_EXE_chat");
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `chat client URL --nick NICK …`, with no `CHAT_*` settings (a token or
/// password) inherited from the test's environment.
fn client_command(url: &str, nick: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("CHAT_") {
            cmd.env_remove(key);
        }
    }
    cmd.args(["client", url, "--nick", nick]).args(extra).env("TZ", "UTC").kill_on_drop(true);
    cmd
}

/// A line without its leading time (`HH:MM `, or `YYYY-MM-DD HH:MM ` for
/// another day), after checking that shape.
fn strip_time(line: &str) -> Option<&str> {
    let shaped = |s: Option<&str>, shape: &str| {
        s.is_some_and(|s| {
            s.bytes().zip(shape.bytes()).all(|(b, f)| if f == b'9' { b.is_ascii_digit() } else { b == f })
        })
    };
    if shaped(line.get(..6), "99:99 ") {
        line.get(6..)
    } else if shaped(line.get(..17), "9999-99-99 99:99 ") {
        line.get(17..)
    } else {
        None
    }
}

fn untimed(line: &str) -> &str {
    strip_time(line).unwrap_or_else(|| panic!("line without a time: {line:?}"))
}

/// A scripted client: standard input and output piped.
struct Scripted {
    nick: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
}

struct Ended {
    status: ExitStatus,
    /// Standard output not read before the end, without times.
    rest: Vec<String>,
    stderr: Vec<String>,
}

impl Scripted {
    fn start(url: &str, nick: &str, extra: &[&str]) -> Scripted {
        let mut child = client_command(url, nick, extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chat client");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Scripted { nick: nick.into(), child, stdin, stdout }
    }

    async fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
    }

    /// The next line of standard output, as printed.
    async fn raw_line(&mut self) -> String {
        match tokio::time::timeout(WAIT, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => panic!("{}: standard output ended", self.nick),
            Ok(Err(e)) => panic!("{}: {e}", self.nick),
            Err(_) => panic!("{}: no line within {WAIT:?}", self.nick),
        }
    }

    /// The next lines of standard output must be `expected` (times stripped).
    async fn expect(&mut self, expected: &[&str]) {
        for want in expected {
            let line = self.raw_line().await;
            assert_eq!(untimed(&line), *want, "{}: unexpected line", self.nick);
        }
    }

    /// Closes standard input and waits for the exit.
    async fn end(mut self) -> Ended {
        self.stdin = None;
        let mut rest = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, self.stdout.next_line()).await {
                Ok(Ok(Some(line))) => rest.push(untimed(&line).to_owned()),
                Ok(_) => break,
                Err(_) => panic!("{}: did not finish within {WAIT:?}", self.nick),
            }
        }
        let status = tokio::time::timeout(WAIT, self.child.wait()).await.expect("exit in time").unwrap();
        let mut stderr = String::new();
        self.child.stderr.take().unwrap().read_to_string(&mut stderr).await.unwrap();
        Ended { status, rest, stderr: stderr.lines().map(str::to_owned).collect() }
    }
}

fn connected(url: &str, nick: &str) -> String {
    format!("* connected to {url} (chat {VERSION}) as {nick}")
}

#[tokio::test]
async fn two_clients_chat_in_a_room_by_dm_and_to_everyone() {
    let server = common::start(common::test_config()).await;
    let url = server.ws_url();
    let mut bob = Scripted::start(&url, "bob", &[]);
    bob.send("/join dev").await;
    bob.expect(&["[dev] you joined; members: bob"]).await;
    let mut alice = Scripted::start(&url, "alice", &[]);
    alice.send("/join dev").await;
    alice.expect(&["[dev] you joined; members: alice, bob"]).await;
    bob.expect(&["[dev] --> alice joined"]).await;

    alice.send("hello bob").await;
    alice.expect(&["[dev] <alice> hello bob"]).await;
    bob.expect(&["[dev] <alice> hello bob"]).await;
    bob.send("hi alice").await;
    bob.expect(&["[dev] <bob> hi alice"]).await;
    alice.expect(&["[dev] <bob> hi alice"]).await;

    alice.send("/msg bob just between us").await;
    alice.expect(&["-> *bob* just between us"]).await;
    bob.expect(&["*alice* just between us"]).await;
    bob.send("/msg alice ok").await;
    bob.expect(&["-> *alice* ok"]).await;
    alice.expect(&["*bob* ok"]).await;

    alice.send("/all hello, everyone").await;
    alice.send("/me waves").await;
    alice.expect(&["[all] <alice> hello, everyone", "[dev] * alice waves"]).await;
    bob.expect(&["[all] <alice> hello, everyone", "[dev] * alice waves"]).await;

    let alice = alice.end().await;
    assert!(alice.status.success(), "{:?}", alice.stderr);
    assert_eq!(alice.rest, Vec::<String>::new());
    assert_eq!(alice.stderr, [connected(&url, "alice")]);
    bob.expect(&["[dev] <-- alice quit"]).await;
    let bob = bob.end().await;
    assert!(bob.status.success(), "{:?}", bob.stderr);
    assert_eq!((bob.rest, bob.stderr), (vec![], vec![connected(&url, "bob")]));
}

#[tokio::test]
async fn a_bad_command_prints_usage_sends_nothing_and_exits_2() {
    let server = common::start(common::test_config()).await;
    let url = server.ws_url();
    let mut bob = quiet_room(&server, "dev", &["bob"]).await.pop().unwrap();

    let mut alice = Scripted::start(&url, "alice", &[]);
    alice.send("/join dev").await;
    alice.expect(&["[dev] you joined; members: alice, bob"]).await;
    bob.expect_json(common::presence("dev", "alice", "join")).await;
    for bad in ["/jion dev", "/msg bob", "/history lots", "/leave #", "/nick 9lives"] {
        alice.send(bad).await;
    }
    let ended = alice.end().await;
    assert_eq!(ended.status.code(), Some(2));
    assert_eq!(ended.rest, Vec::<String>::new());
    assert_eq!(
        ended.stderr,
        [
            connected(&url, "alice").as_str(),
            "! unknown command /jion (usage: /help lists the commands)",
            "! /msg bob needs a message (usage: /msg NICK TEXT)",
            "! `lots` is not a number from 1 to 200 (usage: /history [N])",
            "! `#` is not a room name (usage: /leave [ROOM])",
            "! `9lives` is not a nick (usage: /nick NEW)",
        ]
    );
    // Bob saw alice come and go, and nothing else.
    bob.expect_json(common::presence("dev", "alice", "quit")).await;
    bob.sync().await;
}

#[tokio::test]
async fn a_refused_send_is_shown_in_words_and_exits_1() {
    let server = common::start(common::test_config()).await;
    let url = server.ws_url();
    let mut alice = Scripted::start(&url, "alice", &[]);
    alice.send("talking to nobody").await;
    alice.send("/switch dev").await;
    alice.send("/msg nobody hello?").await;
    let ended = alice.end().await;
    assert_eq!(ended.status.code(), Some(1));
    assert_eq!(ended.rest, Vec::<String>::new());
    assert_eq!(ended.stderr[0], connected(&url, "alice"));
    assert_eq!(ended.stderr[1], "! you are in no room: /join ROOM first (or /msg NICK TEXT)");
    assert_eq!(ended.stderr[2], "! you are not in dev: /join dev first");
    assert!(ended.stderr[3].starts_with("! not sent to nobody: "), "{:?}", ended.stderr);
    assert_eq!(ended.stderr.len(), 4, "{:?}", ended.stderr);
}

#[tokio::test]
async fn nick_reconnects_under_the_new_nick_and_keeps_the_rooms() {
    let server = common::start(common::test_config()).await;
    let url = server.ws_url();
    let mut bob = quiet_room(&server, "dev", &["bob"]).await.pop().unwrap();
    let mut alice = Scripted::start(&url, "alice", &[]);
    for line in ["/join dev", "hi as alice", "/nick carol", "hi as carol"] {
        alice.send(line).await;
    }
    let ended = alice.end().await;
    assert!(ended.status.success(), "{:?}", ended.stderr);
    assert_eq!(
        ended.rest,
        ["[dev] you joined; members: alice, bob", "[dev] <alice> hi as alice", "[dev] <carol> hi as carol"]
    );
    assert_eq!(ended.stderr, [connected(&url, "alice").as_str(), "* reconnecting as carol", "* you are now carol"]);
    bob.expect_json(common::presence("dev", "alice", "join")).await;
    bob.expect_json(common::room_msg("dev", 1, "alice", "hi as alice")).await;
    bob.expect_json(common::presence("dev", "alice", "quit")).await;
    bob.expect_json(common::presence("dev", "carol", "join")).await;
    bob.expect_json(common::room_msg("dev", 2, "carol", "hi as carol")).await;
    bob.expect_json(common::presence("dev", "carol", "quit")).await;
    bob.sync().await;
}

#[tokio::test]
async fn a_taken_nick_is_refused_in_words() {
    let server = common::start(common::test_config()).await;
    let (_alice, _) = Client::hello(&server, "alice").await;
    let ended = Scripted::start(&server.ws_url(), "Alice", &[]).end().await;
    assert_eq!(ended.status.code(), Some(1));
    assert_eq!(ended.stderr, ["chat client: the nick Alice is taken: choose another with --nick"]);
}

#[tokio::test]
async fn json_prints_each_received_frame_as_a_line() {
    let server = common::start(common::test_config()).await;
    let mut bob = Scripted::start(&server.ws_url(), "bob", &["--json", "--history", "0"]);
    let welcome: Value = serde_json::from_str(&bob.raw_line().await).unwrap();
    assert_eq!((&welcome["type"], &welcome["nick"]), (&json!("welcome"), &json!("bob")));
    bob.send("/join dev").await;
    let joined: Value = serde_json::from_str(&bob.raw_line().await).unwrap();
    assert_eq!(
        norm(joined),
        json!({"type": "joined", "id": 1, "room": "dev", "topic": "", "seq": 0, "history": [], "more": false,
            "members": [common::member("bob")]})
    );
    let mut alice = Client::in_rooms(&server, "alice", &["dev"]).await;
    alice.say("dev", "hi bob").await;
    for expected in [common::presence("dev", "alice", "join"), common::room_msg("dev", 1, "alice", "hi bob")] {
        let frame: Value = serde_json::from_str(&bob.raw_line().await).unwrap();
        assert_eq!(norm(frame), expected);
    }
    let ended = bob.end().await;
    assert!(ended.status.success());
    assert_eq!(ended.rest, Vec::<String>::new());
}

/// A TCP relay in front of the server, so that a restarted server (on a
/// new port) is found at the same address.
struct Relay {
    addr: std::net::SocketAddr,
    target: Arc<Mutex<std::net::SocketAddr>>,
}

impl Relay {
    async fn start(target: std::net::SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target = Arc::new(Mutex::new(target));
        let current = target.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let to = *current.lock().unwrap();
                tokio::spawn(async move {
                    // A refused connection drops the inbound one: the client sees it fail.
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Relay { addr, target }
    }

    fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    fn point_to(&self, target: std::net::SocketAddr) {
        *self.target.lock().unwrap() = target;
    }
}

#[tokio::test]
async fn resumes_each_room_after_a_server_restart() {
    let config = common::test_config();
    let server = common::start(config.clone()).await;
    let relay = Relay::start(server.addr()).await;
    let url = relay.url();
    let mut alice = Client::in_rooms(&server, "alice", &["dev"]).await;
    alice.say("dev", "before").await;

    let mut bob = Scripted::start(&url, "bob", &[]);
    bob.send("/join dev").await;
    bob.expect(&["[dev] you joined; members: alice, bob", "[dev] <alice> before"]).await;
    alice.expect_json(common::presence("dev", "bob", "join")).await;

    // Shutdown: every client gets the notice and close 1001. The new
    // server keeps the same database; bob cannot reach it (the relay still
    // points at the old one) until carol has spoken.
    server.stop().await;
    alice.closed().await;
    let server = common::start(config).await;
    let mut carol = Client::in_rooms(&server, "carol", &["dev"]).await;
    carol.say("dev", "while you were away").await;
    relay.point_to(server.addr());

    // Bob resumes with `join … since` and gets the missed message once.
    bob.expect(&["[dev] <carol> while you were away"]).await;
    bob.send("back").await;
    bob.expect(&["[dev] <bob> back"]).await;
    let ended = bob.end().await;
    assert!(ended.status.success(), "{:?}", ended.stderr);
    assert_eq!(ended.rest, Vec::<String>::new());
    assert_eq!(ended.stderr.first(), Some(&connected(&url, "bob")));
    assert!(ended.stderr.iter().any(|l| l.starts_with("! server:")), "{:?}", ended.stderr);
    assert_eq!(ended.stderr.last().map(String::as_str), Some("* reconnected as bob"));
}

/// The interactive client in a pseudo-terminal, read through a terminal
/// emulator.
struct Terminal {
    pty: pty_process::Pty,
    child: Child,
    screen: vt100::Parser,
    /// Everything the client wrote, as bytes.
    raw: Vec<u8>,
}

const ROWS: u16 = 24;
const COLS: u16 = 100;

impl Terminal {
    fn start(url: &str, nick: &str, env: &[(&str, &str)]) -> Terminal {
        let (pty, pts) = pty_process::open().unwrap();
        pty.resize(pty_process::Size::new(ROWS, COLS)).unwrap();
        let mut cmd = pty_process::Command::new(BIN).args(["client", url, "--nick", nick]).env("TZ", "UTC");
        for (key, _) in std::env::vars() {
            if key.starts_with("CHAT_") || key == "NO_COLOR" {
                cmd = cmd.env_remove(key);
            }
        }
        cmd = cmd.env("TERM", "xterm-256color").envs(env.iter().copied()).kill_on_drop(true);
        let child = cmd.spawn(pts).unwrap();
        let screen = vt100::Parser::new(ROWS.try_into().unwrap(), COLS.try_into().unwrap(), 0);
        Terminal { pty, child, screen, raw: Vec::new() }
    }

    /// The screen's rows, trailing blanks trimmed.
    fn rows(&self) -> Vec<String> {
        self.screen.screen().rows(0, COLS).map(|r| r.trim_end().to_owned()).collect()
    }

    /// The row the cursor is on: the prompt and what is being typed.
    fn cursor_row(&self) -> String {
        let (row, _) = self.screen.screen().cursor_position();
        self.rows()[row as usize].clone()
    }

    /// Reads output until `done` holds for the screen.
    async fn until(&mut self, what: &str, done: impl Fn(&Terminal) -> bool) {
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(self) {
            match tokio::time::timeout_at(deadline, self.pty.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {
                    self.screen.process(&buf[..n]);
                    self.raw.extend_from_slice(&buf[..n]);
                }
                Ok(_) => panic!("the terminal closed while waiting for {what}:\n{}", self.rows().join("\n")),
                Err(_) => panic!(
                    "no {what} within {WAIT:?}; the screen:\n{}\nthe output: {:?}",
                    self.rows().join("\n"),
                    String::from_utf8_lossy(&self.raw)
                ),
            }
        }
    }

    /// Waits until a row reads `line` after its time.
    async fn until_line(&mut self, line: &str) {
        let has = |t: &Terminal| t.rows().iter().any(|r| strip_time(r) == Some(line));
        self.until(line, has).await;
    }

    async fn until_prompt(&mut self, prompt: &str) {
        self.until(&format!("the prompt {prompt:?}"), |t| t.cursor_row() == prompt.trim_end()).await;
    }

    async fn type_keys(&mut self, keys: &str) {
        self.pty.write_all(keys.as_bytes()).await.unwrap();
        self.pty.flush().await.unwrap();
    }

    /// Reads the rest of the output and returns the exit status.
    async fn exit(mut self) -> ExitStatus {
        let mut buf = [0u8; 4096];
        // The pty reports EIO once the client has exited and closed it.
        while let Ok(Ok(n)) = tokio::time::timeout(WAIT, self.pty.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            self.screen.process(&buf[..n]);
        }
        tokio::time::timeout(WAIT, self.child.wait()).await.expect("exit in time").unwrap()
    }
}

#[tokio::test]
async fn interactive_client_prints_above_the_prompt_without_breaking_the_line_being_typed() {
    let server = common::start(common::test_config()).await;
    let mut bob = quiet_room(&server, "dev", &["bob"]).await.pop().unwrap();
    let mut term = Terminal::start(&server.ws_url(), "alice", &[]);
    term.until_line(&format!("* connected to {} (chat {VERSION}) as alice", server.ws_url())).await;
    term.until_prompt("> ").await;

    term.type_keys("/join dev\r").await;
    term.until_line("[dev] you joined; members: alice, bob").await;
    term.until_prompt("[dev] ").await;
    bob.expect_json(common::presence("dev", "alice", "join")).await;

    // Half a line typed: the room hears that alice is typing.
    term.type_keys("hel").await;
    term.until_prompt("[dev] hel").await;
    bob.expect_json(json!({"type": "typing", "room": "dev", "nick": "alice", "active": true})).await;

    // A message arrives: printed above the prompt, the half line intact.
    bob.say("dev", "hi alice").await;
    term.until_line("[dev] <bob> hi alice").await;
    term.until_prompt("[dev] hel").await;

    // Enter: the message goes, shown once with its time; the typed echo is gone.
    term.type_keys("lo\r").await;
    bob.expect_json(json!({"type": "typing", "room": "dev", "nick": "alice", "active": false})).await;
    bob.expect_json(common::room_msg("dev", 2, "alice", "hello")).await;
    term.until_line("[dev] <alice> hello").await;
    term.until_prompt("[dev] ").await;
    assert!(!term.rows().iter().any(|r| r == "[dev] hello"), "the echo stayed:\n{}", term.rows().join("\n"));

    // History: the up arrow brings the line back.
    term.type_keys("\x1b[A").await;
    term.until_prompt("[dev] hello").await;
    bob.expect_json(json!({"type": "typing", "room": "dev", "nick": "alice", "active": true})).await;
    // Ctrl-U empties the line (typing stops), then a command.
    term.type_keys("\x15").await;
    bob.expect_json(json!({"type": "typing", "room": "dev", "nick": "alice", "active": false})).await;
    // Typed ahead, before the first line's reply: nothing is lost.
    term.type_keys("/who\r/rooms\r").await;
    term.until_line("[dev] 2 here: alice, bob").await;
    term.until_line("rooms: dev (2)").await;

    // Colours: the room tag is cyan, unless NO_COLOR says otherwise.
    let raw = String::from_utf8_lossy(&term.raw).into_owned();
    assert!(raw.contains("\x1b[36m[dev]"), "no colour in {raw:?}");

    term.type_keys("/quit\r").await;
    assert!(term.exit().await.success());
    bob.expect_json(common::presence("dev", "alice", "quit")).await;
}

#[tokio::test]
async fn no_color_turns_colours_off() {
    let server = common::start(common::test_config()).await;
    let mut term = Terminal::start(&server.ws_url(), "alice", &[("NO_COLOR", "1")]);
    term.until_prompt("> ").await;
    term.type_keys("/join dev\r").await;
    term.until_line("[dev] you joined; members: alice").await;
    let raw = String::from_utf8_lossy(&term.raw).into_owned();
    assert!(!raw.contains("\x1b[36m") && !raw.contains("\x1b[2m"), "colour in {raw:?}");
    term.type_keys("\x04").await;
    assert!(term.exit().await.success());
}

/// `printf 'hello\n' | chat client URL --nick x`: the plain first line goes
/// to the auto-joined room, every time (the client waits for its `joined`
/// before reading standard input).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_piped_first_line_goes_to_the_auto_joined_room_every_time() {
    let mut config = common::test_config();
    config.rooms.auto_join = vec!["lobby".into()];
    let server = common::start(config).await;
    let url = server.ws_url();
    let (mut observer, _) = Client::hello(&server, "observer").await;
    observer.expect("joined").await;
    for run in 0..20 {
        let nick = format!("x{run}");
        let mut client = Scripted::start(&url, &nick, &[]);
        // Written and closed at once, before the client is even connected.
        client.stdin.take().unwrap().write_all(b"hello\n").await.unwrap();
        let ended = client.end().await;
        assert!(ended.status.success(), "run {run}: {:?}; out {:?}; err {:?}", ended.status, ended.rest, ended.stderr);
        let (msg, _) = observer.until("message").await;
        assert_eq!((&msg["from"], &msg["room"], &msg["text"]), (&json!(nick), &json!("lobby"), &json!("hello")));
    }
}

/// `/upload PATH [TEXT]` sends a file to the current room (`/upload @NICK …`
/// to a nick); everyone sees
/// `[name, size] URL`, and the URL serves the file. A missing file is an
/// error that sends nothing.
#[tokio::test]
async fn upload_sends_a_file_to_the_room() {
    let server = common::start(common::test_config()).await;
    let url = server.ws_url();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "remember the milk").unwrap();
    let mut observer = quiet_room(&server, "dev", &["bob"]).await.remove(0);
    let mut alice = Scripted::start(&url, "alice", &[]);
    alice.send("/join dev").await;
    alice.expect(&["[dev] you joined; members: alice, bob"]).await;
    observer.expect("presence").await;

    alice.send(&format!("/upload {}/missing.txt", dir.path().display())).await;
    alice.send(&format!("/upload {} the list", file.display())).await;
    let got = observer.expect("message").await;
    let a = &got["attachments"][0];
    assert_eq!(
        (got["text"].as_str(), a["name"].as_str(), a["size"].as_u64()),
        (Some("the list"), Some("notes.txt"), Some(17))
    );
    let file_url = format!("http://{}{}", server.addr(), a["url"].as_str().unwrap());
    alice.expect(&[&format!("[dev] <alice> the list [notes.txt, 17 B] {file_url}")]).await;
    let r = common::http::get(server.addr(), a["url"].as_str().unwrap(), &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "remember the milk"));
    // `/upload @NICK` sends it as a direct message instead.
    alice.send(&format!("/upload @bob {} for you", file.display())).await;
    let dm = observer.expect("message").await;
    assert_eq!(
        (dm["from"].as_str(), dm["text"].as_str(), dm["attachments"][0]["name"].as_str()),
        (Some("alice"), Some("for you"), Some("notes.txt"))
    );
    assert!(dm.get("room").is_none(), "a DM: {dm}");
    // The failed upload was said on standard error, and makes the
    // script's exit status 1.
    let alice = alice.end().await;
    assert_eq!(alice.status.code(), Some(1), "{:?}", alice.stderr);
    assert!(alice.stderr.iter().any(|l| l.contains("missing.txt not sent: cannot read it")), "{:?}", alice.stderr);
    // bob saw the one message, then alice leave.
    observer.expect_json(json!({"type": "presence", "room": "dev", "nick": "alice", "event": "quit"})).await;
    observer.sync().await;
    server.stop().await;
}
