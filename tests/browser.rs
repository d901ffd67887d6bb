//! The web client in a real browser, run by `cargo test`.
//!
//! Each browser test starts the real server binary on a port and SQLite file
//! of its own, then runs one script of `tests/e2e/` with node
//! (playwright-core driving Debian's Chromium), the server's URL and
//! secrets in its environment, and fails with the script's output and the
//! server's log unless the script exits 0. A script can have the server
//! stopped (SIGTERM), killed (SIGKILL) or started again on the same port and
//! database by printing `@@control stop|kill|start`; the answer (`ok`, or
//! what went wrong) comes back on its standard input.
//!
//! Without Chromium, node or `tests/e2e/node_modules`, the browser tests
//! print `SKIPPED browser tests: …` and pass; `.ci/run` installs all three.
//! Screenshots go to `target/e2e-screenshots/`; the main one is copied to
//! `docs/screenshot.png` when that file is missing or
//! `CHAT_UPDATE_SCREENSHOT=1`.
//!
//! The other tests here need no browser: the web client's HTTP headers
//! (caching, CSP) and a check that its JavaScript never builds HTML.

mod common;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

const TOKEN_SECRET: &str = "browser-test-token-secret";
const API_KEY: &str = "browser-test-api-key";
/// `uploads.max_bytes` for the browser tests: small, so that a script can
/// send a file over it (files.mjs knows this number).
const UPLOAD_CAP: u64 = 4 * 1024 * 1024;
/// Longest a script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest the server may take to answer `/healthz`, or to stop.
const SERVER_WAIT: Duration = Duration::from_secs(30);

/// One browser at a time: the machine has two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn browser_chat() {
    run_script("chat.mjs");
}

#[test]
fn browser_restart() {
    run_script("restart.mjs");
}

#[test]
fn browser_embed() {
    run_script("embed.mjs");
}

#[test]
fn browser_xss() {
    run_script("xss.mjs");
}

#[test]
fn browser_files() {
    run_script("files.mjs");
}

#[test]
fn browser_profile() {
    run_script("profile.mjs");
}

#[test]
fn browser_notify() {
    run_script("notify.mjs");
}

#[test]
fn browser_text() {
    run_script("text.mjs");
}

#[test]
fn browser_people() {
    run_script("people.mjs");
}

#[test]
fn browser_social() {
    run_script("social.mjs");
}

#[test]
fn browser_layout() {
    run_script("layout.mjs");
}

// ---- the browser scripts ---------------------------------------------------

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Why the browser tests cannot run here, if they cannot.
fn missing() -> Option<String> {
    if !chromium().is_file() {
        return Some(format!("no Chromium at {} (apt-get install chromium)", chromium().display()));
    }
    let node = Command::new("node").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !node.is_ok_and(|s| s.success()) {
        return Some("no node on PATH".into());
    }
    if !e2e_dir().join("node_modules/playwright-core/package.json").is_file() {
        return Some("no tests/e2e/node_modules (run `npm ci` in tests/e2e)".into());
    }
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn run_script(script: &str) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = missing() {
        // Straight to the process's stderr: the test harness does not capture it.
        let _ = writeln!(std::io::stderr(), "SKIPPED browser tests: {script}: {why}");
        return;
    }
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").to_path_buf();
    let shots = target.join("e2e-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let dir = tempfile::Builder::new().prefix("browser-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let (embed_port, foreign_port) = (free_port(), free_port());
    let mut server = Server {
        addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
        db_url: format!("sqlite://{}", dir.path().join("chat.db").display()),
        uploads: dir.path().join("uploads"),
        log: dir.path().join("server.log"),
        embed_origin: format!("http://localhost:{embed_port}"),
        child: None,
    };
    if let Err(e) = server.start() {
        panic!("{script}: the server did not start: {e}\n{}", server.log_tail());
    }

    let docs_shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshot.png");
    let update_docs = !docs_shot.exists() || std::env::var_os("CHAT_UPDATE_SCREENSHOT").is_some_and(|v| v == "1");
    let mut node = Command::new("node")
        .arg(script)
        .current_dir(e2e_dir())
        .env("CHAT_URL", format!("http://{}", server.addr))
        .env("CHAT_API_KEY", API_KEY)
        .env("CHAT_TOKEN_SECRET", TOKEN_SECRET)
        .env("CHROMIUM", chromium())
        .env("SCREENSHOT_DIR", &shots)
        .env("EMBED_PORT", embed_port.to_string())
        .env("FOREIGN_PORT", foreign_port.to_string())
        .env("DOCS_SCREENSHOT", if update_docs { docs_shot.as_os_str() } else { "".as_ref() })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node");
    let mut stdin = node.stdin.take().expect("stdin");
    let lines = read_lines(node.stdout.take().expect("stdout"));
    let mut stderr = node.stderr.take().expect("stderr");
    let err_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    let started = Instant::now();
    let mut out = String::new();
    let mut timed_out = false;
    loop {
        match lines.recv_timeout(SCRIPT_TIMEOUT.saturating_sub(started.elapsed())) {
            Ok(line) => {
                out.push_str(&line);
                out.push('\n');
                if let Some(command) = line.strip_prefix("@@control ") {
                    answer(&mut stdin, &mut server, command.trim());
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                timed_out = true;
                let _ = node.kill();
                break;
            }
        }
    }
    let status: ExitStatus = node.wait().expect("wait for node");
    let err = err_reader.join().unwrap_or_default();
    let ok = status.success() && !timed_out;
    if !ok {
        let why = if timed_out {
            format!("did not finish within {SCRIPT_TIMEOUT:?}")
        } else {
            format!("exited with {status}")
        };
        panic!(
            "tests/e2e/{script} {why}\n--- its output ---\n{out}--- its errors ---\n{err}--- server log (end) ---\n{}",
            server.log_tail()
        );
    }
    println!("{out}{err}");
}

/// The script's standard output, line by line, from a thread.
fn read_lines(stdout: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn answer(stdin: &mut ChildStdin, server: &mut Server, command: &str) {
    let result = match command {
        "stop" => server.stop(false),
        "kill" => server.stop(true),
        "start" => server.start(),
        other => Err(format!("unknown command `{other}`")),
    };
    let reply = match result {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("error: {e}").replace('\n', " "),
    };
    let _ = writeln!(stdin, "{reply}");
    let _ = stdin.flush();
}

/// The real server binary, stopped and started on the same port and database.
struct Server {
    addr: SocketAddr,
    db_url: String,
    log: PathBuf,
    /// Uploaded files: in the test's own directory, never the checkout's `data/`.
    uploads: PathBuf,
    embed_origin: String,
    child: Option<Child>,
}

impl Server {
    fn start(&mut self) -> Result<(), String> {
        if self.child.is_some() {
            return Err("already running".into());
        }
        let log = OpenOptions::new().create(true).append(true).open(&self.log).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chat"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CHAT_") {
                cmd.env_remove(key);
            }
        }
        let child = cmd
            .args(["serve", "--listen", &self.addr.to_string()])
            .env("CHAT_DATABASE__URL", &self.db_url)
            .env("CHAT_UPLOADS__DIR", &self.uploads)
            .env("CHAT_UPLOADS__MAX_BYTES", UPLOAD_CAP.to_string())
            .env("CHAT_AUTH__TOKEN_SECRET", TOKEN_SECRET)
            .env("CHAT_AUTH__API_KEYS", format!("[\"{API_KEY}\"]"))
            .env("CHAT_AUTH__ALLOWED_ORIGINS", format!("[\"{}\"]", self.embed_origin))
            .env("CHAT_SERVER__SHUTDOWN_GRACE", "3s")
            // notify.mjs's push endpoint is a local http:// server.
            .env("CHAT_NOTIFY__ALLOW_INSECURE_PUSH", "true")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run the server: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + SERVER_WAIT;
        loop {
            if healthy(self.addr) {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Err(format!("the server exited with {status}"));
            }
            if Instant::now() > deadline {
                return Err(format!("no answer from /healthz within {SERVER_WAIT:?}"));
            }
            // Polling a process we do not control.
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM and wait for the graceful exit, or SIGKILL (`hard`).
    fn stop(&mut self, hard: bool) -> Result<(), String> {
        let Some(mut child) = self.child.take() else { return Err("not running".into()) };
        if hard {
            child.kill().map_err(|e| e.to_string())?;
            child.wait().map_err(|e| e.to_string())?;
            return Ok(());
        }
        let pid = child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        if !sent.is_ok_and(|s| s.success()) {
            let _ = child.kill();
            let _ = child.wait();
            return Err("could not send SIGTERM".into());
        }
        let deadline = Instant::now() + SERVER_WAIT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(format!("the server exited with {status} on SIGTERM")),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("the server did not stop within {SERVER_WAIT:?} of SIGTERM"));
                }
            }
        }
    }

    /// The last lines of the server's log.
    fn log_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `GET /healthz` answers 200.
fn healthy(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

// ---- no browser needed -----------------------------------------------------

/// Pages: no-cache, a strict CSP naming the WebSocket and the embedding
/// origins; assets under a versioned path: cached for a year, with ETags.
#[tokio::test]
async fn web_client_headers() {
    let mut config = common::test_config();
    config.auth.allowed_origins = vec!["https://site.example".into(), "bad; script-src *".into()];
    let server = common::start(config).await;
    let addr = server.addr();
    let get = |path: String, etag: Option<String>| async move {
        match etag {
            Some(e) => common::http::get(addr, &path, &[("If-None-Match", &e)]).await,
            None => common::http::get(addr, &path, &[]).await,
        }
    };

    let index = get("/".into(), None).await;
    assert_eq!(index.status, 200);
    assert_eq!(index.header("cache-control"), Some("no-cache"));
    assert!(index.header("content-type").is_some_and(|t| t.starts_with("text/html")));
    let csp = index.header("content-security-policy").expect("CSP").to_string();
    for directive in [
        "default-src 'none'",
        "script-src 'self';",
        "style-src 'self';",
        &format!("connect-src 'self' ws://{addr} wss://{addr};"),
        "frame-ancestors 'self' https://site.example",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(directive), "CSP lacks `{directive}`: {csp}");
    }
    assert!(!csp.contains("bad;") && !csp.contains("script-src *"), "a malformed origin got into the CSP: {csp}");
    assert!(!index.body.contains("{{v}}"), "the version placeholder was replaced");
    assert!(!index.body.contains(" style=") && !index.body.contains("<style"), "no inline style");
    assert!(
        index.body.matches("<script").count() == index.body.matches("<script type=\"module\" src=").count(),
        "no inline script"
    );

    // The versioned asset path, as the page names it.
    let start = index.body.find("a/").expect("an asset link");
    let version = index.body[start + 2..].split('/').next().unwrap().to_string();
    assert!(version.starts_with(env!("CARGO_PKG_VERSION")), "asset version {version}");
    let app_js = format!("/a/{version}/js/app.js");
    let js = get(app_js.clone(), None).await;
    assert_eq!(js.status, 200);
    assert_eq!(js.header("cache-control"), Some("public, max-age=31536000, immutable"));
    assert!(js.header("content-type").is_some_and(|t| t.contains("javascript")));
    let etag = js.header("etag").expect("ETag").to_string();
    let again = get(app_js, Some(etag)).await;
    assert_eq!(again.status, 304);

    let old = get("/a/0.0.0-old/js/app.js".into(), None).await;
    assert_eq!((old.status, old.header("cache-control")), (200, Some("no-cache")), "another version: revalidated");
    assert_eq!(get("/a/x/index.html".into(), None).await.status, 404);
    assert_eq!(get("/a/x/nope.js".into(), None).await.status, 404);

    let embed = get("/embed?room=support&token=abc".into(), None).await;
    assert_eq!(embed.status, 200);
    assert_eq!(embed.header("cache-control"), Some("no-cache"));
    assert_eq!(embed.header("referrer-policy"), Some("no-referrer"));
    assert!(embed.body.contains("data-mode=\"embed\""));
    assert!(
        embed
            .header("content-security-policy")
            .is_some_and(|c| c.contains("frame-ancestors 'self' https://site.example"))
    );
    let page_etag = embed.header("etag").expect("ETag").to_string();
    assert_eq!(get("/embed".into(), Some(page_etag)).await.status, 304);

    let snippet = get("/embed.js".into(), None).await;
    assert_eq!(snippet.status, 200);
    assert_eq!(snippet.header("cache-control"), Some("public, max-age=3600"));
    assert!(snippet.body.contains("/embed"));
    server.stop().await;
}

/// User data is only ever text: no module of the client builds HTML from
/// strings, so nothing a user types can become markup.
#[test]
fn web_client_never_builds_html() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("static");
    let mut files = vec![dir.join("embed.js"), dir.join("sw.js")];
    for entry in std::fs::read_dir(dir.join("js")).expect("static/js") {
        files.push(entry.expect("entry").path());
    }
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        assert!(text.starts_with("//"), "{}: starts with a comment saying what it does", file.display());
        for banned in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"] {
            assert!(!text.contains(banned), "{} uses {banned}", file.display());
        }
    }
}
