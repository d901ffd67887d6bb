//! How events look: the [`Line`]s the session produces, and their rendering
//! as text, with colours when the terminal has them.
//!
//! One line per event, each starting with the local time (`HH:MM`, or the
//! date too when it is not today). Rooms are tagged `[room]`, direct
//! messages `*nick*` (received) and `-> *nick*` (sent), messages to everyone
//! `[all]`; errors start with `!`, connection news with `*`.

use std::fmt::Write as _;
use std::io::IsTerminal;

use anstyle::{AnsiColor, Style};
use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::command::COMMANDS;
use crate::protocol::size_text;

/// One thing to show, at a time (epoch milliseconds).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Line {
    pub(crate) at: i64,
    pub(crate) body: Body,
}

/// Where a message was said, as seen by this client.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Place {
    Room(String),
    /// A direct message from this nick.
    DmFrom(String),
    /// A direct message sent (by this user, maybe from another session) to this nick.
    DmTo(String),
    All,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Msg {
    pub(crate) place: Place,
    pub(crate) from: String,
    pub(crate) text: String,
    /// Files, as `(name, size, url)`: shown after the text as `[name, size] URL`.
    pub(crate) files: Vec<(String, u64, String)>,
    pub(crate) mine: bool,
    pub(crate) edited: bool,
    pub(crate) deleted: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Body {
    Msg(Msg),
    Presence {
        room: String,
        nick: String,
        event: String,
    },
    Typing {
        place: Place,
        nick: String,
    },
    Joined {
        room: String,
        topic: String,
        members: Vec<(String, bool)>,
    },
    OlderMessages {
        room: String,
    },
    Left {
        room: String,
        reason: Option<String>,
        by: Option<String>,
    },
    Topic {
        room: String,
        topic: String,
        by: String,
    },
    Rooms(Vec<(String, u64)>),
    Who {
        room: String,
        topic: String,
        members: Vec<(String, bool)>,
    },
    HistoryHead {
        room: String,
        count: usize,
        more: bool,
    },
    Away(bool),
    Status {
        nick: String,
        online: bool,
        away: bool,
    },
    Edited {
        place: Place,
        text: String,
    },
    Deleted {
        place: Place,
    },
    Switched(String),
    Notice(String),
    /// `! context: message`
    Error {
        context: Option<String>,
        message: String,
    },
    /// `! problem (usage: …)`
    Usage {
        problem: String,
        usage: String,
    },
    /// Connection news: `* …`
    Info(String),
    /// Plain local text (help).
    Text(String),
}

/// Which stream a line belongs to when standard input is not a terminal:
/// events and command results on standard output, diagnostics (errors,
/// usage, connection news) on standard error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    /// Caused by a server frame (left out in `--json` mode, where the frame
    /// itself is printed).
    Event,
    /// Output of a local command (`/help`, `/switch`).
    Local,
    Diag,
}

impl Body {
    pub(crate) fn stream(&self) -> Stream {
        match self {
            Body::Error { .. } | Body::Usage { .. } | Body::Info(_) | Body::Notice(_) => Stream::Diag,
            Body::Switched(_) | Body::Text(_) => Stream::Local,
            _ => Stream::Event,
        }
    }
}

/// The `/help` text as lines.
pub(crate) fn help(at: i64) -> Vec<Line> {
    let width = COMMANDS.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
    let mut lines = vec![Line { at, body: Body::Text("commands (a line without / goes to the current room):".into()) }];
    lines.extend(
        COMMANDS.iter().map(|(synopsis, what)| Line { at, body: Body::Text(format!("  {synopsis:width$}  {what}")) }),
    );
    lines
}

/// Whether to colour output: standard output is a terminal, `NO_COLOR` is
/// unset or empty (no-color.org), and `TERM` is not `dumb`.
pub(crate) fn colour_wanted() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
    !no_color && !dumb && std::io::stdout().is_terminal()
}

/// Renders lines, with or without colour and timestamps.
#[derive(Clone, Debug)]
pub(crate) struct Painter {
    colour: bool,
    tz: TimeZone,
}

const DIM: Style = Style::new().dimmed();
const BOLD: Style = Style::new().bold();
const ROOM: Style = AnsiColor::Cyan.on_default();
const DM: Style = AnsiColor::Magenta.on_default().bold();
const ALL: Style = AnsiColor::Yellow.on_default().bold();
const ERROR: Style = AnsiColor::Red.on_default().bold();
const NOTICE: Style = AnsiColor::Yellow.on_default();
const JOIN: Style = AnsiColor::Green.on_default();
const PART: Style = AnsiColor::Red.on_default();
/// Nick colours (not red: that is for errors), picked by a hash of the nick.
const NICKS: [AnsiColor; 6] =
    [AnsiColor::Green, AnsiColor::Yellow, AnsiColor::Blue, AnsiColor::Magenta, AnsiColor::Cyan, AnsiColor::BrightBlue];

impl Painter {
    pub(crate) fn new(colour: bool) -> Painter {
        Painter { colour, tz: TimeZone::try_system().unwrap_or(TimeZone::UTC) }
    }

    pub(crate) fn colour(&self) -> bool {
        self.colour
    }

    fn paint(&self, style: Style, text: &str) -> String {
        if self.colour { format!("{style}{text}{style:#}") } else { text.to_owned() }
    }

    fn nick(&self, nick: &str, mine: bool) -> String {
        let style = if mine {
            BOLD
        } else {
            let hash = nick.bytes().fold(5381u32, |h, b| h.wrapping_mul(33) ^ u32::from(b.to_ascii_lowercase()));
            NICKS[hash as usize % NICKS.len()].on_default().bold()
        };
        self.paint(style, nick)
    }

    fn room(&self, room: &str) -> String {
        self.paint(ROOM, &format!("[{room}]"))
    }

    /// `HH:MM`, or `YYYY-MM-DD HH:MM` when `at` is not today.
    pub(crate) fn time(&self, at: i64) -> String {
        let Ok(ts) = Timestamp::from_millisecond(at) else { return "--:--".into() };
        let zoned = ts.to_zoned(self.tz.clone());
        let today = Timestamp::now().to_zoned(self.tz.clone()).date();
        if zoned.date() == today {
            zoned.strftime("%H:%M").to_string()
        } else {
            zoned.strftime("%Y-%m-%d %H:%M").to_string()
        }
    }

    /// One line of text (no newline), with the time first if `with_time`.
    pub(crate) fn render(&self, line: &Line, with_time: bool) -> String {
        let mut s = String::new();
        if with_time {
            s.push_str(&self.paint(DIM, &self.time(line.at)));
            s.push(' ');
        }
        s.push_str(&self.body(&line.body));
        s
    }

    fn names(&self, members: &[(String, bool)]) -> String {
        let mut sorted: Vec<&(String, bool)> = members.iter().collect();
        sorted.sort_by_key(|(n, _)| n.to_ascii_lowercase());
        let names: Vec<String> =
            sorted.iter().map(|(n, away)| if *away { format!("{n} (away)") } else { n.clone() }).collect();
        names.join(", ")
    }

    fn place(&self, place: &Place) -> String {
        match place {
            Place::Room(r) => self.room(r),
            Place::DmFrom(n) => self.paint(DM, &format!("*{n}*")),
            Place::DmTo(n) => self.paint(DM, &format!("-> *{n}*")),
            Place::All => self.paint(ALL, "[all]"),
        }
    }

    fn body(&self, body: &Body) -> String {
        match body {
            Body::Msg(m) => self.msg(m),
            Body::Presence { room, nick, event } => {
                let (arrow, style, verb) = match event.as_str() {
                    "join" => ("-->", JOIN, "joined"),
                    "leave" => ("<--", PART, "left"),
                    "quit" => ("<--", PART, "quit"),
                    other => ("---", DIM, other),
                };
                format!(
                    "{} {} {} {}",
                    self.room(room),
                    self.paint(style, arrow),
                    self.nick(nick, false),
                    self.paint(DIM, verb)
                )
            }
            Body::Typing { place, nick } => {
                let what = self.paint(DIM.italic(), "is typing…");
                match place {
                    Place::Room(r) => format!("{} {} {what}", self.room(r), self.nick(nick, false)),
                    _ => format!("{} {what}", self.place(place)),
                }
            }
            Body::Joined { room, topic, members } => {
                let topic = if topic.is_empty() { String::new() } else { format!("; topic: {topic}") };
                format!("{} you joined{topic}; members: {}", self.room(room), self.names(members))
            }
            Body::OlderMessages { room } => {
                format!("{} {}", self.room(room), self.paint(DIM, "(older messages: /history N)"))
            }
            Body::Left { room, reason, by } => {
                let what = match (reason.as_deref(), by) {
                    (Some("kicked"), Some(by)) => format!("you were removed by {by}"),
                    (Some("kicked"), None) => "you were removed".into(),
                    (Some("destroyed"), _) => "the room was closed".into(),
                    _ => "you left".into(),
                };
                format!("{} {what}", self.room(room))
            }
            Body::Topic { room, topic, by } => {
                if topic.is_empty() {
                    format!("{} {} cleared the topic", self.room(room), self.nick(by, false))
                } else {
                    format!("{} {} set the topic: {topic}", self.room(room), self.nick(by, false))
                }
            }
            Body::Rooms(rooms) if rooms.is_empty() => "no rooms".into(),
            Body::Rooms(rooms) => {
                let mut s = String::from("rooms:");
                for (i, (name, n)) in rooms.iter().enumerate() {
                    let _ = write!(s, "{} {} ({n})", if i == 0 { "" } else { "," }, self.paint(ROOM, name));
                }
                s
            }
            Body::Who { room, topic, members } => {
                let topic = if topic.is_empty() { String::new() } else { format!("topic: {topic}; ") };
                format!("{} {topic}{} here: {}", self.room(room), members.len(), self.names(members))
            }
            Body::HistoryHead { room, count: 0, .. } => format!("{} no messages yet", self.room(room)),
            Body::HistoryHead { room, count, more } => {
                let more = if *more { " (older ones exist: /history N)" } else { "" };
                let s = if *count == 1 { "" } else { "s" };
                format!("{} last {count} message{s}{more}:", self.room(room))
            }
            Body::Away(true) => "you are marked away".into(),
            Body::Away(false) => "you are back".into(),
            Body::Status { nick, online, away } => {
                let what = match (online, away) {
                    (false, _) => "is offline",
                    (true, true) => "is away",
                    (true, false) => "is online",
                };
                format!("{} {}", self.nick(nick, false), self.paint(DIM, what))
            }
            Body::Edited { place, text } => format!("{} {} {text}", self.place(place), self.paint(DIM, "(edited)")),
            Body::Deleted { place } => format!("{} {}", self.place(place), self.paint(DIM, "(a message was deleted)")),
            Body::Switched(room) => format!("now talking in {}", self.room(room)),
            Body::Notice(message) => format!("{} {}", self.paint(NOTICE, "! server:"), message),
            Body::Error { context: Some(c), message } => format!("{} {message}", self.paint(ERROR, &format!("! {c}:"))),
            Body::Error { context: None, message } => format!("{} {message}", self.paint(ERROR, "!")),
            Body::Usage { problem, usage } => format!("{} {problem} (usage: {usage})", self.paint(ERROR, "!")),
            Body::Info(text) => self.paint(DIM, &format!("* {text}")),
            Body::Text(text) => text.clone(),
        }
    }

    fn msg(&self, m: &Msg) -> String {
        let mut text = if m.deleted { self.paint(DIM, "(deleted)") } else { m.text.clone() };
        if m.edited && !m.deleted {
            text.push(' ');
            text.push_str(&self.paint(DIM, "(edited)"));
        }
        if !m.deleted {
            for (name, size, url) in &m.files {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(&format!("[{name}, {}] {url}", size_text(*size)));
            }
        }
        // `/me waves` is an action: "* alice waves".
        let action = if m.deleted { None } else { m.text.strip_prefix("/me ") };
        match (&m.place, action) {
            (Place::DmFrom(_) | Place::DmTo(_), None) => format!("{} {text}", self.place(&m.place)),
            (Place::DmFrom(_) | Place::DmTo(_), Some(a)) => {
                format!("{} * {} {a}", self.place(&m.place), self.nick(&m.from, m.mine))
            }
            (place, None) => format!("{} <{}> {text}", self.place(place), self.nick(&m.from, m.mine)),
            (place, Some(a)) => format!("{} * {} {a}", self.place(place), self.nick(&m.from, m.mine)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(body: Body) -> String {
        Painter::new(false).render(&Line { at: 0, body }, false)
    }

    fn msg(place: Place, from: &str, text: &str) -> Body {
        Body::Msg(Msg {
            place,
            from: from.into(),
            text: text.into(),
            files: Vec::new(),
            mine: false,
            edited: false,
            deleted: false,
        })
    }

    #[test]
    fn messages() {
        assert_eq!(plain(msg(Place::Room("dev".into()), "bob", "hi")), "[dev] <bob> hi");
        assert_eq!(plain(msg(Place::Room("dev".into()), "bob", "/me waves")), "[dev] * bob waves");
        assert_eq!(plain(msg(Place::DmFrom("bob".into()), "bob", "psst")), "*bob* psst");
        assert_eq!(plain(msg(Place::DmTo("bob".into()), "alice", "psst")), "-> *bob* psst");
        assert_eq!(plain(msg(Place::All, "bob", "hello")), "[all] <bob> hello");
    }

    #[test]
    fn others() {
        let members = vec![("carol".into(), true), ("Bob".into(), false)];
        assert_eq!(
            plain(Body::Joined { room: "dev".into(), topic: "".into(), members: members.clone() }),
            "[dev] you joined; members: Bob, carol (away)"
        );
        assert_eq!(
            plain(Body::Who { room: "dev".into(), topic: "ship".into(), members }),
            "[dev] topic: ship; 2 here: Bob, carol (away)"
        );
        assert_eq!(
            plain(Body::Presence { room: "dev".into(), nick: "bob".into(), event: "quit".into() }),
            "[dev] <-- bob quit"
        );
        assert_eq!(plain(Body::Rooms(vec![("dev".into(), 2), ("lobby".into(), 1)])), "rooms: dev (2), lobby (1)");
        assert_eq!(
            plain(Body::Usage { problem: "unknown command /x".into(), usage: "/help lists the commands".into() }),
            "! unknown command /x (usage: /help lists the commands)"
        );
    }

    #[test]
    fn colour_only_when_asked() {
        let line = Line { at: 0, body: msg(Place::Room("dev".into()), "bob", "hi") };
        assert!(!Painter::new(false).render(&line, true).contains('\x1b'));
        assert!(Painter::new(true).render(&line, true).contains('\x1b'));
    }
}
