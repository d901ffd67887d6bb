//! The interactive terminal: rustyline reads lines (editing, history, tab
//! completion) on a thread of its own, and incoming lines are printed above
//! the prompt through its `ExternalPrinter`, so what is being typed stays
//! intact.
//!
//! Three parties share the terminal:
//! - the editor thread, blocked in `readline`;
//! - the printer thread, handing batches of lines to the `ExternalPrinter`;
//! - the driver (async), which renders lines and sets the next prompt.
//!
//! After Enter the editor erases the echoed input line, so the scrollback
//! holds only rendered lines (as in an IRC client: your own message appears
//! once, with its time, when the server has it), then waits until the
//! driver has handled the line before showing the next prompt (which names
//! the current room). Meanwhile the printer holds its lines back, so they
//! do not land between the echo and its erasure.

use std::cell::Cell;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, mpsc as std_mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Config, Editor, ExternalPrinter, Helper};
use tokio::sync::{mpsc, oneshot};
use unicode_width::UnicodeWidthStr;

use super::command::COMMANDS;
use super::input::Input;
use super::render::{Body, Line, Painter, Place};
use super::session::Session;

/// How often a `typing` hint is repeated while typing goes on (receivers
/// let it lapse after 6 s).
const TYPING_REPEAT: Duration = Duration::from_secs(3);

/// What the editor thread reads from the driver.
#[derive(Default)]
struct Shared {
    /// (plain, styled) prompt.
    prompt: (String, String),
    nicks: Vec<String>,
    rooms: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The editor shows the prompt: print through the `ExternalPrinter`.
    Editing,
    /// Between Enter and the next prompt: hold lines back.
    Busy,
    /// The editor is gone: print directly.
    Closed,
}

struct Gate {
    phase: Mutex<Phase>,
    changed: Condvar,
}

impl Gate {
    fn set(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase;
        self.changed.notify_all();
    }

    fn wait_not_busy(&self) {
        let guard = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        let _guard = self.changed.wait_while(guard, |p| *p == Phase::Busy).unwrap_or_else(|e| e.into_inner());
    }
}

/// The terminal side of the output.
pub(crate) struct Screen {
    painter: Painter,
    lines: Option<std_mpsc::Sender<String>>,
    shared: Arc<Mutex<Shared>>,
    gate: Arc<Gate>,
    printer: Option<JoinHandle<()>>,
    /// Lets the editor show its first prompt.
    go: Option<std_mpsc::Sender<()>>,
    /// The last line printed was this typing indication (place, nick).
    last_typing: Option<(Place, String)>,
}

impl Screen {
    /// Starts the editor and printer threads. Typed lines arrive on `input`.
    pub(crate) fn start(painter: Painter, input: mpsc::Sender<Input>) -> anyhow::Result<Screen> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let gate = Arc::new(Gate { phase: Mutex::new(Phase::Busy), changed: Condvar::new() });
        let (printer_tx, printer_rx) = std_mpsc::channel();
        let (go, go_rx) = std_mpsc::channel();
        let editor_shared = shared.clone();
        let editor_gate = gate.clone();
        std::thread::Builder::new()
            .name("chat-editor".into())
            .spawn(move || editor_thread(editor_shared, editor_gate, input, printer_tx, go_rx))
            .context("cannot start the line editor")?;
        let printer: Box<dyn ExternalPrinter + Send> = printer_rx
            .recv()
            .context("the line editor stopped")?
            .map_err(|e| anyhow::anyhow!("the terminal does not support the line editor: {e}"))?;
        let (lines_tx, lines_rx) = std_mpsc::channel::<String>();
        let printer_gate = gate.clone();
        let printer = std::thread::Builder::new()
            .name("chat-printer".into())
            .spawn(move || printer_thread(printer, lines_rx, printer_gate))
            .context("cannot start the printer")?;
        Ok(Screen {
            painter,
            lines: Some(lines_tx),
            shared,
            gate,
            printer: Some(printer),
            go: Some(go),
            last_typing: None,
        })
    }

    pub(crate) fn lines(&mut self, lines: Vec<Line>) {
        let mut text = String::new();
        for line in &lines {
            if !text.is_empty() {
                text.push('\n');
            }
            // A message right after its author's typing indication takes
            // that line's place (up one line, clear it).
            if let (Body::Msg(m), Some((place, nick))) = (&line.body, &self.last_typing)
                && &m.place == place
                && &m.from == nick
            {
                text.push_str("\x1b[1A\x1b[2K");
            }
            self.last_typing = match &line.body {
                Body::Typing { place, nick } => Some((place.clone(), nick.clone())),
                _ => None,
            };
            text.push_str(&self.painter.render(line, true));
        }
        if let Some(tx) = &self.lines {
            let _ = tx.send(text);
        }
    }

    pub(crate) fn update(&mut self, session: &Session) {
        let raw = match session.current_room() {
            Some(room) => format!("[{room}] "),
            None => "> ".to_owned(),
        };
        let styled = if self.painter.colour() {
            let style = anstyle::AnsiColor::Cyan.on_default().bold();
            format!("{style}{}{style:#} ", raw.trim_end())
        } else {
            raw.clone()
        };
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        shared.prompt = (raw, styled);
        shared.rooms = session.room_names();
        shared.nicks = session.known_nicks();
    }

    /// Shows the first prompt (once the prompt can name the room).
    pub(crate) fn ready(&mut self) {
        if let Some(go) = self.go.take() {
            let _ = go.send(());
        }
    }

    /// Prints what is queued, directly (the editor is not reading any more).
    pub(crate) fn finish(&mut self) {
        self.go = None;
        self.gate.set(Phase::Closed);
        self.lines = None;
        if let Some(printer) = self.printer.take() {
            let _ = printer.join();
        }
    }
}

fn printer_thread(mut printer: Box<dyn ExternalPrinter + Send>, lines: std_mpsc::Receiver<String>, gate: Arc<Gate>) {
    while let Ok(mut batch) = lines.recv() {
        while let Ok(more) = lines.try_recv() {
            batch.push('\n');
            batch.push_str(&more);
        }
        gate.wait_not_busy();
        batch.push('\n');
        if printer.print(batch.clone()).is_err() {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(batch.as_bytes());
            let _ = out.flush();
        }
    }
}

type PrinterResult = Result<Box<dyn ExternalPrinter + Send>, ReadlineError>;

fn editor_thread(
    shared: Arc<Mutex<Shared>>,
    gate: Arc<Gate>,
    input: mpsc::Sender<Input>,
    printer_tx: std_mpsc::Sender<PrinterResult>,
    go: std_mpsc::Receiver<()>,
) {
    let config = Config::builder()
        .max_history_size(1000)
        .and_then(|b| b.history_ignore_dups(true))
        .map(|b| b.auto_add_history(true).build());
    let editor = config.and_then(Editor::<ChatHelper, DefaultHistory>::with_config);
    let mut editor = match editor {
        Ok(editor) => editor,
        Err(e) => {
            let _ = printer_tx.send(Err(e));
            return;
        }
    };
    editor.set_helper(Some(ChatHelper { shared: shared.clone(), input: input.clone(), typing: Cell::new(None) }));
    match editor.create_external_printer() {
        Ok(p) => {
            let _ = printer_tx.send(Ok(Box::new(p)));
        }
        Err(e) => {
            let _ = printer_tx.send(Err(e));
            return;
        }
    }
    if go.recv().is_err() {
        return;
    }
    loop {
        let prompt = shared.lock().unwrap_or_else(|e| e.into_inner()).prompt.clone();
        gate.set(Phase::Editing);
        let read = editor.readline(&prompt);
        gate.set(Phase::Busy);
        match read {
            Ok(line) => {
                if let Some(helper) = editor.helper() {
                    helper.typing.set(None);
                }
                if let Some((cols, _)) = editor.dimensions() {
                    erase_echo(&prompt.0, &line, usize::from(cols));
                }
                let (done_tx, done_rx) = oneshot::channel();
                if input.blocking_send(Input::Line(line, Some(done_tx))).is_err() || done_rx.blocking_recv().is_err() {
                    // The driver is gone (quitting): no more prompts.
                    return;
                }
            }
            // Ctrl-C drops the line being typed.
            Err(ReadlineError::Interrupted) => continue,
            Err(_) => {
                let _ = input.blocking_send(Input::Eof);
                return;
            }
        }
    }
}

/// Erases the prompt and line that the editor left on screen after Enter
/// (the cursor is at the start of the row below them).
fn erase_echo(prompt: &str, line: &str, cols: usize) {
    let cols = cols.max(1);
    let rows: usize = line
        .split('\n')
        .enumerate()
        .map(|(i, part)| {
            let width = part.width() + if i == 0 { prompt.width() } else { 0 };
            width / cols + 1
        })
        .sum();
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "\x1b[{rows}A\r\x1b[J");
    let _ = out.flush();
}

/// Tab completion (commands, rooms, nicks) and the typing hint.
struct ChatHelper {
    shared: Arc<Mutex<Shared>>,
    input: mpsc::Sender<Input>,
    /// When the last `typing: true` went, while typing.
    typing: Cell<Option<Instant>>,
}

impl ChatHelper {
    /// Called on every edit: tell the room when a message is being typed.
    fn note_typing(&self, line: &str) {
        let chat =
            !line.trim().is_empty() && (!line.starts_with('/') || line.starts_with("/me ") || line.starts_with("//"));
        let now = Instant::now();
        match (chat, self.typing.get()) {
            (true, last) if last.is_none_or(|at| now.duration_since(at) >= TYPING_REPEAT) => {
                self.typing.set(Some(now));
                let _ = self.input.try_send(Input::Typing(true));
            }
            (false, Some(_)) => {
                self.typing.set(None);
                let _ = self.input.try_send(Input::Typing(false));
            }
            _ => {}
        }
    }
}

impl Completer for ChatHelper {
    type Candidate = String;

    fn complete(&self, line: &str, pos: usize, _: &rustyline::Context<'_>) -> rustyline::Result<(usize, Vec<String>)> {
        let start = line[..pos].rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let word = &line[start..pos];
        let lower = word.to_ascii_lowercase();
        if start == 0 && word.starts_with('/') {
            let names = COMMANDS.iter().filter_map(|(synopsis, _)| synopsis.split(' ').next());
            return Ok((0, names.filter(|n| n.starts_with(&lower)).map(|n| format!("{n} ")).collect()));
        }
        let shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let previous = line[..start].split_whitespace().last().unwrap_or("");
        let (pool, suffix) = match previous {
            "/join" | "/j" | "/leave" | "/part" | "/switch" | "/who" if start == previous.len() + 1 => {
                (&shared.rooms, " ")
            }
            _ if start == 0 => (&shared.nicks, ": "),
            _ => (&shared.nicks, " "),
        };
        let found = pool.iter().filter(|n| n.to_ascii_lowercase().starts_with(&lower)).map(|n| format!("{n}{suffix}"));
        Ok((start, found.collect()))
    }
}

impl Hinter for ChatHelper {
    type Hint = String;

    fn hint(&self, line: &str, _pos: usize, _: &rustyline::Context<'_>) -> Option<String> {
        self.note_typing(line);
        None
    }
}

impl Highlighter for ChatHelper {}

impl Validator for ChatHelper {}

impl Helper for ChatHelper {}
