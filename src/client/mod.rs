//! `chat client`: the console client. It speaks PROTOCOL.md to any server.
//!
//! - [`command`]: typed lines → commands (pure, unit-tested).
//! - [`wire`]: server frames as the client reads them (lenient serde types).
//! - [`session`]: the client's state without I/O: rooms, last `seq` per
//!   conversation, requests in flight, the outbox and its rate pacing.
//! - [`conn`]: opening a connection, and the driver loop: reconnect with
//!   backoff, resume with `join … since`.
//! - [`render`]: how events look (timestamps, colours).
//! - [`input`]: what the user typed, on its way from [`tty`] or standard
//!   input to [`conn`].
//! - [`output`], [`tty`]: where lines go: a terminal with a line editor, or
//!   plain/JSON lines for scripts.
//!
//! With a terminal on standard input and output the client is interactive.
//! Otherwise each input line is a command; at the end of input the client
//! waits for the replies to what it sent and exits 0, 1 if anything was
//! refused or lost, 2 if a line was not a valid command.

mod command;
mod conn;
mod input;
mod output;
mod render;
mod session;
mod tty;
mod upload;
mod wire;

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::bail;
use tokio::sync::mpsc;

use conn::{Driver, Login, OpenError};
use input::Input;
use output::Output;
use render::Painter;
use session::Session;

#[derive(clap::Args, Clone, Debug)]
pub struct ClientArgs {
    /// The server's WebSocket address (`ws://HOST:PORT/ws`; `HOST:PORT` will do).
    #[arg(value_name = "URL", default_value = "ws://127.0.0.1:8080/ws")]
    pub(crate) url: String,
    /// Your nick: a guest nick, or the account name with --password.
    #[arg(long, short = 'n')]
    pub(crate) nick: Option<String>,
    /// A signed token from the embedding site (the nick comes from it).
    #[arg(long, env = "CHAT_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// An account name (with --password).
    #[arg(long, conflicts_with = "nick")]
    pub(crate) user: Option<String>,
    /// The account's password (better given in the environment).
    #[arg(long, env = "CHAT_PASSWORD", hide_env_values = true)]
    pub(crate) password: Option<String>,
    /// Without a terminal: print each received frame as a JSON line
    /// instead of text (diagnostics stay text, on standard error).
    #[arg(long)]
    pub(crate) json: bool,
    /// How many past messages to show when joining a room.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=200))]
    pub(crate) history: u32,
}

/// Runs the client until the user quits or the input ends.
pub async fn run(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let url = normalize_url(&args.url)?;
    let (login, nick) = match (&args.token, &args.password, args.user.as_ref().or(args.nick.as_ref())) {
        (Some(_), _, Some(_)) => bail!("give --token, or --nick/--user, not both (is CHAT_TOKEN set?)"),
        (Some(token), _, None) => (Login::Token(token.clone()), String::new()),
        (None, Some(password), Some(name)) => (Login::Password(password.clone()), name.clone()),
        (None, Some(_), None) => bail!("--password needs --user NAME"),
        (None, None, Some(_)) if args.user.is_some() => bail!("--user needs --password (or CHAT_PASSWORD)"),
        (None, None, Some(nick)) => (Login::Guest, nick.clone()),
        (None, None, None) => bail!("who are you? give --nick NICK (or --token TOKEN, or --user NAME --password …)"),
    };
    if !nick.is_empty() && !command::valid_nick(&nick) {
        bail!("`{nick}` is not a nick: 1 to 32 letters, digits, `_`, `-`, `.`, not starting with a digit or `-`");
    }
    let interactive = !args.json && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let painter = Painter::new(render::colour_wanted());

    if interactive {
        eprintln!("connecting to {url}…");
    }
    let first = match conn::open(url.clone(), login.clone(), nick.clone()).await {
        Ok(opened) => opened,
        Err(OpenError::Refused { code, message }) => {
            let what = match code.as_str() {
                "nick_taken" => format!("the nick {nick} is taken: choose another with --nick"),
                "unauthorized" => format!("the server refused to log you in: {message}"),
                _ => format!("the server refused: {message}"),
            };
            eprintln!("chat client: {what}");
            return Ok(ExitCode::FAILURE);
        }
        Err(e @ OpenError::Failed(_)) => {
            eprintln!("chat client: cannot connect to {url}: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };

    let (input_tx, input_rx) = mpsc::channel(64);
    let output = if interactive {
        Output::Tty(tty::Screen::start(painter, input_tx)?)
    } else {
        spawn_stdin_reader(input_tx)?;
        Output::Script { painter, json: args.json }
    };
    let session = Session::new(nick, matches!(login, Login::Guest), args.history);
    let driver = Driver::new(url, login, session, output, !interactive);
    Ok(driver.run(first, input_rx).await)
}

/// Decodes one server frame as the client does (for the fuzz targets in
/// `fuzz/`); whether it was understood.
#[doc(hidden)]
pub fn decode_server_frame(text: &str) -> bool {
    wire::Incoming::parse(text).is_some()
}

/// Reads standard input on a thread of its own (a blocked read must not
/// hold up the exit), one line per [`Input::Line`], then [`Input::Eof`].
fn spawn_stdin_reader(tx: mpsc::Sender<Input>) -> anyhow::Result<()> {
    std::thread::Builder::new().name("chat-stdin".into()).spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(Input::Line(line, None)).is_err() {
                return;
            }
        }
        let _ = tx.blocking_send(Input::Eof);
    })?;
    Ok(())
}

/// `ws://HOST:PORT/ws` from what the user typed: `HOST:PORT`, `http://…`,
/// or a URL without a path all work.
fn normalize_url(url: &str) -> anyhow::Result<String> {
    let url = url.trim();
    let rest = if let Some(rest) = url.strip_prefix("ws://").or_else(|| url.strip_prefix("http://")) {
        rest
    } else if url.starts_with("wss://") || url.starts_with("https://") {
        bail!("{url}: TLS (wss://) is not built into this client; use ws://, e.g. through an SSH tunnel");
    } else if url.contains("://") {
        bail!("{url}: not a ws:// address");
    } else {
        url
    };
    let (host, path) = match rest.split_once('/') {
        Some((host, "")) => (host, "/ws".to_owned()),
        Some((host, path)) => (host, format!("/{path}")),
        None => (rest, "/ws".to_owned()),
    };
    if host.is_empty() {
        bail!("{url}: no host");
    }
    Ok(format!("ws://{host}{path}"))
}

#[cfg(test)]
mod tests {
    use super::normalize_url;

    #[test]
    fn urls() {
        assert_eq!(normalize_url("ws://h:1/ws").unwrap(), "ws://h:1/ws");
        assert_eq!(normalize_url("h:1").unwrap(), "ws://h:1/ws");
        assert_eq!(normalize_url("http://h:1/").unwrap(), "ws://h:1/ws");
        assert_eq!(normalize_url("ws://h/chat/ws").unwrap(), "ws://h/chat/ws");
        assert!(normalize_url("wss://h/ws").is_err());
        assert!(normalize_url("ftp://h").is_err());
        assert!(normalize_url("ws:///ws").is_err());
    }
}
