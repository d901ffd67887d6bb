//! Where lines go: above the prompt on a terminal ([`super::tty`]), or as
//! plain lines on standard output and standard error for scripts (or the
//! frames themselves as JSON lines with `--json`).

use std::io::Write;

use super::render::{Line, Painter, Stream};
use super::session::Session;
use super::tty::Screen;

pub(crate) enum Output {
    Script { painter: Painter, json: bool },
    Tty(Screen),
}

impl Output {
    pub(crate) fn lines(&mut self, lines: Vec<Line>) {
        if lines.is_empty() {
            return;
        }
        match self {
            Output::Tty(screen) => screen.lines(lines),
            Output::Script { painter, json } => {
                // Write errors (a closed pipe) are ignored: the chat goes on.
                let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
                for line in &lines {
                    match (line.body.stream(), *json) {
                        (Stream::Event, true) => {}
                        (Stream::Event | Stream::Local, false) => {
                            let _ = writeln!(out, "{}", painter.render(line, true));
                        }
                        (Stream::Local | Stream::Diag, _) => {
                            let _ = writeln!(err, "{}", painter.render(line, false));
                        }
                    }
                }
                let _ = out.flush();
            }
        }
    }

    /// A frame as received: printed as one JSON line with `--json`.
    pub(crate) fn frame(&mut self, raw: &str) {
        if let Output::Script { json: true, .. } = self {
            let mut out = std::io::stdout().lock();
            // The server sends compact JSON, one object per frame.
            let _ = writeln!(out, "{}", raw.trim_end());
            let _ = out.flush();
        }
    }

    /// The session changed: the prompt and completions follow it.
    pub(crate) fn update(&mut self, session: &Session) {
        if let Output::Tty(screen) = self {
            screen.update(session);
        }
    }

    /// The first prompt may be shown.
    pub(crate) fn ready(&mut self) {
        if let Output::Tty(screen) = self {
            screen.ready();
        }
    }

    /// Prints what is still queued.
    pub(crate) fn finish(&mut self) {
        if let Output::Tty(screen) = self {
            screen.finish();
        }
    }
}
