//! The connection: opening it (WebSocket + `hello` until `welcome`), and
//! the driver loop that carries lines to the [`Session`] and frames both
//! ways, reconnecting with backoff and resuming after a drop or a server
//! shutdown.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::sleep_until;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use super::input::Input;
use super::output::Output;
use super::render::{Body, Line};
use super::session::{Next, Session, UploadJob, now_ms};
use super::wire::{Incoming, Welcome};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long connecting and identifying may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// The server pings every 30 s: this long without any frame means it is gone.
const SILENCE_LIMIT: Duration = Duration::from_secs(100);
/// Reconnect delays: doubling from the first to the cap (plus jitter).
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(15);
/// Without a terminal, give up after this many failed reconnects in a row.
const SCRIPT_RECONNECTS: u32 = 8;
/// Without a terminal, after the end of input: give up on replies after
/// this long without any frame.
const REPLY_WAIT: Duration = Duration::from_secs(30);
/// Input lines are not read while this many frames wait to be sent (a fast
/// script against a rate limit, or a long reconnect): the outbox is bounded
/// and standard input is the back-pressure.
const MAX_QUEUED: usize = 1000;
/// How long the first prompt waits for the rooms joined on `welcome`.
const FIRST_PROMPT_WAIT: Duration = Duration::from_secs(2);
/// How long a script's first input line waits for the rooms joined on
/// `welcome` (a plain line goes to the current room: it must be known).
const SCRIPT_START_WAIT: Duration = Duration::from_secs(10);

/// How the user identifies (PROTOCOL.md `hello`).
#[derive(Clone, Debug)]
pub(crate) enum Login {
    Guest,
    Token(String),
    Password(String),
}

impl Login {
    fn hello(&self, nick: &str) -> Value {
        match self {
            Login::Guest => json!({"type": "hello", "id": 0, "nick": nick}),
            Login::Token(token) => json!({"type": "hello", "id": 0, "token": token}),
            Login::Password(password) => json!({"type": "hello", "id": 0, "nick": nick, "password": password}),
        }
    }
}

#[derive(Debug)]
pub(crate) enum OpenError {
    /// The server answered `hello` with an error.
    Refused { code: String, message: String },
    /// No connection, or it broke before `welcome`.
    Failed(anyhow::Error),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Refused { code, message } => {
                write!(f, "{}", if message.is_empty() { code } else { message })
            }
            OpenError::Failed(e) => write!(f, "{e}"),
        }
    }
}

pub(crate) struct Opened {
    pub(crate) ws: Ws,
    pub(crate) welcome: Welcome,
    /// The `welcome` frame as it came (for `--json`).
    pub(crate) raw: String,
}

/// Connects and identifies.
pub(crate) async fn open(url: String, login: Login, nick: String) -> Result<Opened, OpenError> {
    let attempt = async {
        let (mut ws, _) = connect_async(url.as_str()).await.map_err(|e| OpenError::Failed(e.into()))?;
        let hello = login.hello(&nick).to_string();
        ws.send(Message::text(hello)).await.map_err(|e| OpenError::Failed(e.into()))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => match Incoming::parse(&text) {
                    Some(Incoming::Welcome(welcome)) => return Ok(Opened { ws, welcome, raw: text.to_string() }),
                    Some(Incoming::Error(e)) => return Err(OpenError::Refused { code: e.code, message: e.message }),
                    _ => continue,
                },
                Some(Ok(Message::Close(frame))) => {
                    let why = frame.map(|f| format!(" ({}: {})", u16::from(f.code), f.reason)).unwrap_or_default();
                    return Err(OpenError::Failed(anyhow!("the server closed the connection{why}")));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(OpenError::Failed(e.into())),
                None => return Err(OpenError::Failed(anyhow!("the server closed the connection"))),
            }
        }
    };
    tokio::time::timeout(OPEN_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(OpenError::Failed(anyhow!("no welcome within {OPEN_TIMEOUT:?}"))))
}

type Opening = Pin<Box<dyn Future<Output = Result<Opened, OpenError>> + Send>>;

enum Link {
    Up(Box<Ws>),
    Opening(Opening),
    /// Reconnect at this time.
    Waiting(Instant),
    /// Refused for good (interactive: the user may still /quit).
    Offline,
}

enum LinkEvent {
    Frame(Option<Result<Message, tungstenite::Error>>),
    Silent,
    Opened(Box<Result<Opened, OpenError>>),
    Retry,
}

async fn link_event(link: &mut Link, silence_deadline: Instant) -> LinkEvent {
    match link {
        Link::Up(ws) => match tokio::time::timeout_at(silence_deadline.into(), ws.next()).await {
            Ok(m) => LinkEvent::Frame(m),
            Err(_) => LinkEvent::Silent,
        },
        Link::Opening(f) => LinkEvent::Opened(Box::new(f.await)),
        Link::Waiting(at) => {
            sleep_until((*at).into()).await;
            LinkEvent::Retry
        }
        Link::Offline => std::future::pending().await,
    }
}

fn backoff(attempt: u32) -> Duration {
    let base = BACKOFF_FIRST.saturating_mul(1 << attempt.min(10)).min(BACKOFF_CAP);
    // Jitter, so that clients dropped together do not return together.
    let jitter = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_millis());
    base + Duration::from_millis(u64::from(jitter % 250))
}

fn info(text: String) -> Line {
    Line { at: now_ms(), body: Body::Info(text) }
}

fn error(context: Option<String>, message: String) -> Line {
    Line { at: now_ms(), body: Body::Error { context, message } }
}

/// Which connection a `welcome` is for.
enum Welcomed {
    First,
    /// After a drop or a server restart.
    Again,
    /// After `/nick`.
    Renamed,
}

/// Drives one client until it quits; returns the exit status.
pub(crate) struct Driver {
    url: String,
    login: Login,
    session: Session,
    output: Output,
    /// Standard input is not a terminal: end of input waits for replies,
    /// and reconnecting gives up after a while.
    script: bool,
    /// Frames to send before the outbox (resuming after a reconnect).
    urgent: Vec<String>,
}

impl Driver {
    pub(crate) fn new(url: String, login: Login, mut session: Session, output: Output, script: bool) -> Driver {
        session.http_base = super::upload::http_base(&url);
        Driver { url, login, session, output, script, urgent: Vec::new() }
    }

    pub(crate) async fn run(mut self, first: Opened, mut input: mpsc::Receiver<Input>) -> ExitCode {
        let mut lines = Vec::new();
        let mut link = self.welcomed(first, Welcomed::First, &mut lines);
        let mut last_frame = Instant::now();
        let mut attempt = 0u32;
        let mut eof = false;
        // The nick we were before a /nick, to return to if the new one is refused.
        let mut renick_from: Option<String> = None;
        // The first prompt waits (briefly) for the rooms joined on `welcome`.
        // A script's input waits for them too: its first plain line goes to
        // the auto-joined room.
        let mut first_prompt_by =
            Some(Instant::now() + if self.script { SCRIPT_START_WAIT } else { FIRST_PROMPT_WAIT });
        // Finished uploads come back here (each one's task sends once).
        let (uploaded_tx, mut uploaded) = mpsc::channel::<(UploadJob, Result<String, String>)>(8);
        loop {
            for job in self.session.take_uploads() {
                let (base, token, tx) =
                    (self.session.http_base.clone(), self.session.token.clone(), uploaded_tx.clone());
                tokio::spawn(async move {
                    let result = super::upload::upload(&base, token.as_deref().unwrap_or_default(), &job.path).await;
                    let _ = tx.send((job, result)).await;
                });
            }
            // Send what may go now.
            let mut wake = None;
            let mut broken = false;
            let mut renick = None;
            if let Link::Up(ws) = &mut link {
                for text in std::mem::take(&mut self.urgent) {
                    if ws.send(Message::text(text)).await.is_err() {
                        broken = true;
                        break;
                    }
                }
                while !broken {
                    match self.session.next(Instant::now()) {
                        Next::Send(text) => {
                            if ws.send(Message::text(text)).await.is_err() {
                                broken = true;
                                break;
                            }
                        }
                        Next::Renick(nick) => {
                            let _ = ws.as_mut().close(None).await;
                            renick = Some(nick);
                            break;
                        }
                        Next::Wait(at) => {
                            wake = Some(at);
                            break;
                        }
                        Next::Idle => break,
                    }
                }
            }
            if let Some(nick) = renick {
                self.session.disconnected(true, &mut lines);
                lines.push(info(format!("reconnecting as {nick}")));
                renick_from = Some(self.session.nick.clone());
                link = Link::Opening(Box::pin(open(self.url.clone(), self.login.clone(), nick)));
            }
            if broken {
                link = self.lost("the connection broke", false, &mut attempt, &mut lines);
            }
            self.output.lines(std::mem::take(&mut lines));
            self.output.update(&self.session);
            if first_prompt_by.is_some() && !self.session.auto_joining() {
                first_prompt_by = None;
                self.output.ready();
            }

            if self.session.quit && !self.script {
                return self.finish(link).await;
            }
            if self.session.quit {
                eof = true;
            }
            if eof && self.session.settled() {
                return self.finish(link).await;
            }
            if self.script && matches!(link, Link::Offline) {
                self.session.abandon(&mut lines);
                self.output.lines(std::mem::take(&mut lines));
                return self.finish(link).await;
            }

            let silence_deadline = last_frame + SILENCE_LIMIT;
            let reply_deadline = last_frame + REPLY_WAIT;
            let started = !self.script || first_prompt_by.is_none();
            let reading = started && !eof && self.session.queued() < MAX_QUEUED;
            tokio::select! {
                event = link_event(&mut link, silence_deadline) => match event {
                    LinkEvent::Frame(Some(Ok(Message::Text(text)))) => {
                        last_frame = Instant::now();
                        self.output.frame(&text);
                        self.session.frame(&text, &mut lines);
                    }
                    LinkEvent::Frame(Some(Ok(Message::Close(frame)))) => {
                        let code = frame.as_ref().map(|f| u16::from(f.code));
                        let graceful = self.session.shutdown_notice || code == Some(1001);
                        let why = match &frame {
                            Some(f) if f.reason.is_empty() => format!("the server closed the connection ({})", u16::from(f.code)),
                            Some(f) => format!("the server closed the connection ({}: {})", u16::from(f.code), f.reason),
                            None => "the server closed the connection".into(),
                        };
                        link = self.lost(&why, graceful, &mut attempt, &mut lines);
                    }
                    LinkEvent::Frame(Some(Ok(_))) => last_frame = Instant::now(),
                    LinkEvent::Frame(Some(Err(e))) => {
                        let graceful = self.session.shutdown_notice;
                        link = self.lost(&format!("the connection broke: {e}"), graceful, &mut attempt, &mut lines);
                    }
                    LinkEvent::Frame(None) => {
                        let graceful = self.session.shutdown_notice;
                        link = self.lost("the connection ended", graceful, &mut attempt, &mut lines);
                    }
                    LinkEvent::Silent => {
                        let why = format!("no word from the server for {} s", SILENCE_LIMIT.as_secs());
                        link = self.lost(&why, false, &mut attempt, &mut lines);
                    }
                    LinkEvent::Retry => link = Link::Opening(self.reopen()),
                    LinkEvent::Opened(opened) => match *opened {
                    Ok(opened) => {
                        attempt = 0;
                        last_frame = Instant::now();
                        let how = if renick_from.take().is_some() { Welcomed::Renamed } else { Welcomed::Again };
                        link = self.welcomed(opened, how, &mut lines);
                    }
                    Err(e) => {
                        if let Some(old) = renick_from.take() {
                            self.session.failures += 1;
                            lines.push(error(Some("cannot change nick".into()), e.to_string()));
                            self.session.nick = old;
                            link = Link::Opening(self.reopen());
                        } else {
                            link = self.reopen_failed(e, &mut attempt, &mut lines);
                        }
                    }
                    },
                },
                Some((job, result)) = uploaded.recv() => self.session.uploaded(job, result, &mut lines),
                got = input.recv(), if reading => match got {
                    Some(Input::Line(text, reply)) => {
                        // A paste may hold several lines.
                        for line in text.split('\n') {
                            self.session.input(line, &mut lines);
                        }
                        self.output.lines(std::mem::take(&mut lines));
                        self.output.update(&self.session);
                        if let Some(reply) = reply
                            && !self.session.quit
                        {
                            let _ = reply.send(());
                        }
                    }
                    Some(Input::Typing(active)) => {
                        if matches!(link, Link::Up(_)) {
                            self.session.typing(active);
                        }
                    }
                    Some(Input::Eof) | None => {
                        eof = true;
                        self.session.quit |= !self.script;
                        // The wait for replies starts now.
                        last_frame = Instant::now();
                    }
                },
                _ = async { sleep_until(wake.unwrap_or_else(Instant::now).into()).await }, if wake.is_some() => {}
                _ = async { sleep_until(first_prompt_by.unwrap_or_else(Instant::now).into()).await }, if first_prompt_by.is_some() => {
                    first_prompt_by = None;
                    self.output.ready();
                }
                _ = sleep_until(reply_deadline.into()), if eof && !self.session.settled() && matches!(link, Link::Up(_)) => {
                    lines.push(error(None, format!("no reply from the server for {} s", REPLY_WAIT.as_secs())));
                    self.session.abandon(&mut lines);
                    self.output.lines(std::mem::take(&mut lines));
                    return self.finish(link).await;
                }
            }
        }
    }

    fn reopen(&self) -> Opening {
        Box::pin(open(self.url.clone(), self.login.clone(), self.session.nick.clone()))
    }

    /// A connection is up: resume, and say so.
    fn welcomed(&mut self, opened: Opened, how: Welcomed, lines: &mut Vec<Line>) -> Link {
        let Opened { ws, welcome, raw } = opened;
        self.output.frame(&raw);
        let frames = self.session.welcomed(&welcome);
        let server = &welcome.server;
        let about =
            if server.name.is_empty() { String::new() } else { format!(" ({} {})", server.name, server.version) };
        match how {
            Welcomed::First => {
                lines.push(info(format!("connected to {}{about} as {}", self.url, self.session.nick)));
                if !self.script {
                    lines.push(info("/help lists the commands; Ctrl-D quits".into()));
                }
            }
            Welcomed::Again => lines.push(info(format!("reconnected as {}", self.session.nick))),
            Welcomed::Renamed => lines.push(info(format!("you are now {}", self.session.nick))),
        }
        // Resume frames go out first, before anything queued.
        self.urgent = frames;
        Link::Up(Box::new(ws))
    }

    /// The connection ended: say so, and plan the next attempt.
    fn lost(&mut self, why: &str, graceful: bool, attempt: &mut u32, lines: &mut Vec<Line>) -> Link {
        self.session.disconnected(graceful, lines);
        self.plan_retry(why, attempt, lines)
    }

    fn plan_retry(&mut self, why: &str, attempt: &mut u32, lines: &mut Vec<Line>) -> Link {
        if self.script && *attempt >= SCRIPT_RECONNECTS {
            lines.push(error(None, format!("{why}; giving up after {attempt} attempts to reconnect")));
            return Link::Offline;
        }
        let delay = backoff(*attempt);
        *attempt += 1;
        lines.push(info(format!("{why}; reconnecting in {:.1} s", delay.as_secs_f64())));
        Link::Waiting(Instant::now() + delay)
    }

    fn reopen_failed(&mut self, e: OpenError, attempt: &mut u32, lines: &mut Vec<Line>) -> Link {
        match e {
            // Our previous session may linger until the server notices it is gone.
            OpenError::Refused { code, .. } if code == "nick_taken" => {
                let why = format!("{} is still taken (by our previous session?)", self.session.nick);
                self.plan_retry(&why, attempt, lines)
            }
            OpenError::Refused { code, message } => {
                let message = if message.is_empty() { code } else { message };
                lines.push(error(Some("the server refused to let you back in".into()), message));
                if !self.script {
                    lines.push(info("offline: /quit to leave".into()));
                }
                Link::Offline
            }
            OpenError::Failed(e) => self.plan_retry(&format!("cannot reconnect: {e:#}"), attempt, lines),
        }
    }

    /// Closes the connection politely and returns the exit status.
    async fn finish(mut self, link: Link) -> ExitCode {
        if let Link::Up(mut ws) = link {
            let _ = ws.as_mut().close(None).await;
            // Wait (briefly) for the server's close, so it has seen ours.
            let _ = tokio::time::timeout(Duration::from_secs(2), async { while let Some(Ok(_)) = ws.next().await {} })
                .await;
        }
        self.output.finish();
        match (self.script, self.session.usage_errors, self.session.failures) {
            (false, ..) => ExitCode::SUCCESS,
            (true, 0, 0) => ExitCode::SUCCESS,
            (true, 0, _) => ExitCode::FAILURE,
            (true, _, _) => ExitCode::from(2),
        }
    }
}
