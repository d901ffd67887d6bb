//! What the user types: one line into one [`Command`], or a [`UsageError`]
//! that says what was wrong and how the command is used. Pure: no state, no
//! I/O, so every rule here is unit-tested below.

use std::fmt;

/// One line of input, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// A plain line: to the current room. `//text` sends `/text`.
    Say(String),
    Join(String),
    Leave(Option<String>),
    Switch(String),
    Msg {
        to: String,
        text: String,
    },
    All(String),
    Rooms,
    Who(Option<String>),
    History(Option<u32>),
    Me(String),
    /// A file to the current room (or to `to`, a DM), with an optional text.
    Upload {
        to: Option<String>,
        path: String,
        text: String,
    },
    Away,
    Nick(String),
    Quit,
    Help,
}

/// A line that is not a valid command; nothing is sent for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UsageError {
    pub(crate) problem: String,
    /// The command's synopsis, e.g. `/join ROOM`, or a pointer to `/help`.
    pub(crate) usage: &'static str,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (usage: {})", self.problem, self.usage)
    }
}

/// The most a `history` request may ask for (the protocol's cap).
pub(crate) const MAX_HISTORY: u32 = 200;

/// Every command: synopsis and what it does. `/help` prints this table and
/// tab completion offers the names.
pub(crate) const COMMANDS: &[(&str, &str)] = &[
    ("/join ROOM", "join a room (created if new) and talk there"),
    ("/leave [ROOM]", "leave the current room, or ROOM"),
    ("/switch ROOM", "talk in another room you have joined"),
    ("/msg NICK TEXT", "send a direct message"),
    ("/all TEXT", "send a message to everyone connected"),
    ("/me ACTION", "say an action in the current room (\"* alice waves\")"),
    ("/upload [@NICK] PATH [TEXT]", "send a file to the current room (or to NICK), with an optional text"),
    ("/rooms", "list the rooms"),
    ("/who [ROOM]", "list who is in the current room, or ROOM"),
    ("/history [N]", "show the last N messages of the current room (default 20)"),
    ("/away", "mark yourself away, or back"),
    ("/nick NEW", "reconnect under another nick"),
    ("/quit", "leave (Ctrl-D does too)"),
    ("/help", "show this list"),
];

const USAGE_HELP: &str = "/help lists the commands";

/// Parses one line. `Ok(None)` for a blank line (nothing to do).
pub(crate) fn parse(line: &str) -> Result<Option<Command>, UsageError> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Ok(None);
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Ok(Some(Command::Say(line.to_owned())));
    };
    if rest.starts_with('/') {
        return Ok(Some(Command::Say(rest.to_owned())));
    }
    let (name, args) = match rest.split_once(char::is_whitespace) {
        Some((name, args)) => (name, args.trim()),
        None => (rest, ""),
    };
    let cmd = match name.to_ascii_lowercase().as_str() {
        "join" | "j" => Command::Join(room_arg(args, "/join ROOM")?),
        "leave" | "part" => Command::Leave(optional(args).map(|r| room(r, "/leave [ROOM]")).transpose()?),
        "switch" => Command::Switch(room_arg(args, "/switch ROOM")?),
        "msg" => {
            const USAGE: &str = "/msg NICK TEXT";
            let (to, text) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
            if to.is_empty() {
                return Err(usage("/msg needs a nick and a message", USAGE));
            }
            let to = nick(to, USAGE)?;
            let text = text.trim();
            if text.is_empty() {
                return Err(usage(format!("/msg {to} needs a message"), USAGE));
            }
            Command::Msg { to, text: text.to_owned() }
        }
        "all" => Command::All(text_arg(args, "/all needs a message", "/all TEXT")?),
        "me" => Command::Me(text_arg(args, "/me needs an action", "/me ACTION")?),
        "upload" => {
            const USAGE: &str = "/upload [@NICK] PATH [TEXT]";
            let (to, args) = match args.strip_prefix('@') {
                Some(rest) => {
                    let (to, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                    (Some(nick(to, USAGE)?), rest.trim_start())
                }
                None => (None, args),
            };
            let (path, text) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
            if path.is_empty() {
                return Err(usage("/upload needs the path of a file", USAGE));
            }
            Command::Upload { to, path: path.to_owned(), text: text.trim().to_owned() }
        }
        "rooms" => no_args(args, Command::Rooms, "/rooms")?,
        "who" => Command::Who(optional(args).map(|r| room(r, "/who [ROOM]")).transpose()?),
        "history" => {
            const USAGE: &str = "/history [N]";
            let n = match optional(args) {
                None => None,
                Some(n) => match n.parse::<u32>() {
                    Ok(n) if (1..=MAX_HISTORY).contains(&n) => Some(n),
                    _ => return Err(usage(format!("`{n}` is not a number from 1 to {MAX_HISTORY}"), USAGE)),
                },
            };
            Command::History(n)
        }
        "away" => no_args(args, Command::Away, "/away")?,
        "nick" => {
            const USAGE: &str = "/nick NEW";
            if args.is_empty() {
                return Err(usage("/nick needs the new nick", USAGE));
            }
            Command::Nick(nick(args, USAGE)?)
        }
        "quit" | "exit" => Command::Quit,
        "help" => Command::Help,
        _ => return Err(usage(format!("unknown command /{name}"), USAGE_HELP)),
    };
    Ok(Some(cmd))
}

fn usage(problem: impl Into<String>, usage: &'static str) -> UsageError {
    UsageError { problem: problem.into(), usage }
}

fn optional(args: &str) -> Option<&str> {
    (!args.is_empty()).then_some(args)
}

fn no_args(args: &str, cmd: Command, synopsis: &'static str) -> Result<Command, UsageError> {
    if args.is_empty() { Ok(cmd) } else { Err(usage(format!("{synopsis} takes no arguments"), synopsis)) }
}

fn text_arg(args: &str, missing: &str, synopsis: &'static str) -> Result<String, UsageError> {
    if args.is_empty() { Err(usage(missing, synopsis)) } else { Ok(args.to_owned()) }
}

fn room_arg(args: &str, synopsis: &'static str) -> Result<String, UsageError> {
    if args.is_empty() {
        return Err(usage(format!("{} needs a room", synopsis.split(' ').next().unwrap_or(synopsis)), synopsis));
    }
    room(args, synopsis)
}

/// A room name as the protocol allows it: 1 to 64 ASCII letters, digits,
/// `_`, `-`, `.`, with an optional leading `#` that counts.
fn room(name: &str, synopsis: &'static str) -> Result<String, UsageError> {
    let body = name.strip_prefix('#').unwrap_or(name);
    let ok = !body.is_empty() && name.len() <= 64 && body.chars().all(name_char);
    if ok { Ok(name.to_owned()) } else { Err(usage(format!("`{name}` is not a room name"), synopsis)) }
}

/// A nick as the protocol allows it: 1 to 32 ASCII letters, digits, `_`,
/// `-`, `.`, not starting with a digit or `-`.
pub(crate) fn valid_nick(nick: &str) -> bool {
    let first_ok = nick.chars().next().is_some_and(|c| !c.is_ascii_digit() && c != '-');
    first_ok && nick.len() <= 32 && nick.chars().all(name_char)
}

fn nick(nick: &str, synopsis: &'static str) -> Result<String, UsageError> {
    if valid_nick(nick) { Ok(nick.to_owned()) } else { Err(usage(format!("`{nick}` is not a nick"), synopsis)) }
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Command {
        parse(line).unwrap_or_else(|e| panic!("{line:?}: {e}")).unwrap_or_else(|| panic!("{line:?}: blank"))
    }

    fn err(line: &str) -> UsageError {
        parse(line).expect_err(line)
    }

    #[test]
    fn plain_lines_are_said() {
        assert_eq!(ok("hello there"), Command::Say("hello there".into()));
        assert_eq!(ok("  indented  "), Command::Say("  indented  ".into()));
        assert_eq!(ok("hi\n"), Command::Say("hi".into()));
        assert_eq!(ok("//not a command"), Command::Say("/not a command".into()));
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("   \r\n").unwrap(), None);
    }

    #[test]
    fn rooms() {
        assert_eq!(ok("/join dev"), Command::Join("dev".into()));
        assert_eq!(ok("/JOIN #Dev.ops"), Command::Join("#Dev.ops".into()));
        assert_eq!(ok("/j  dev "), Command::Join("dev".into()));
        assert_eq!(ok("/leave"), Command::Leave(None));
        assert_eq!(ok("/part dev"), Command::Leave(Some("dev".into())));
        assert_eq!(ok("/switch lobby"), Command::Switch("lobby".into()));
        assert_eq!(ok("/rooms"), Command::Rooms);
        assert_eq!(ok("/who"), Command::Who(None));
        assert_eq!(ok("/who dev"), Command::Who(Some("dev".into())));
        assert_eq!(ok(&format!("/join {}", "r".repeat(64))), Command::Join("r".repeat(64)));
    }

    #[test]
    fn bad_rooms() {
        assert_eq!(err("/join"), usage("/join needs a room", "/join ROOM"));
        assert_eq!(err("/join #").problem, "`#` is not a room name");
        assert_eq!(err("/join two words").problem, "`two words` is not a room name");
        assert_eq!(err("/join dév").usage, "/join ROOM");
        assert_eq!(err(&format!("/join #{}", "r".repeat(64))).usage, "/join ROOM");
        assert_eq!(err("/switch").usage, "/switch ROOM");
        assert_eq!(err("/who a b").usage, "/who [ROOM]");
        assert_eq!(err("/leave a/b").usage, "/leave [ROOM]");
        assert_eq!(err("/rooms all").problem, "/rooms takes no arguments");
    }

    #[test]
    fn messages() {
        assert_eq!(ok("/msg bob hi there"), Command::Msg { to: "bob".into(), text: "hi there".into() });
        assert_eq!(ok("/msg bob   spaced  "), Command::Msg { to: "bob".into(), text: "spaced".into() });
        assert_eq!(ok("/all hello, everyone"), Command::All("hello, everyone".into()));
        assert_eq!(ok("/me waves"), Command::Me("waves".into()));
        assert_eq!(ok("/upload cat.png"), Command::Upload { to: None, path: "cat.png".into(), text: String::new() });
        assert_eq!(
            ok("/upload @bob cat.png look"),
            Command::Upload { to: Some("bob".into()), path: "cat.png".into(), text: "look".into() }
        );
        assert_eq!(err("/upload @bob"), usage("/upload needs the path of a file", "/upload [@NICK] PATH [TEXT]"));
        assert_eq!(
            ok("/upload a.pdf  the report "),
            Command::Upload { to: None, path: "a.pdf".into(), text: "the report".into() }
        );
        assert_eq!(err("/upload"), usage("/upload needs the path of a file", "/upload [@NICK] PATH [TEXT]"));
        assert_eq!(err("/msg"), usage("/msg needs a nick and a message", "/msg NICK TEXT"));
        assert_eq!(err("/msg bob"), usage("/msg bob needs a message", "/msg NICK TEXT"));
        assert_eq!(err("/msg 9lives hi").problem, "`9lives` is not a nick");
        assert_eq!(err("/all"), usage("/all needs a message", "/all TEXT"));
        assert_eq!(err("/me  "), usage("/me needs an action", "/me ACTION"));
    }

    #[test]
    fn the_rest() {
        assert_eq!(ok("/history"), Command::History(None));
        assert_eq!(ok("/history 5"), Command::History(Some(5)));
        assert_eq!(ok("/history 200"), Command::History(Some(200)));
        assert_eq!(err("/history 0").problem, "`0` is not a number from 1 to 200");
        assert_eq!(err("/history 201").usage, "/history [N]");
        assert_eq!(err("/history lots").usage, "/history [N]");
        assert_eq!(ok("/away"), Command::Away);
        assert_eq!(ok("/nick carol"), Command::Nick("carol".into()));
        assert_eq!(err("/nick"), usage("/nick needs the new nick", "/nick NEW"));
        assert_eq!(err("/nick -x").problem, "`-x` is not a nick");
        assert_eq!(err(&format!("/nick {}", "n".repeat(33))).usage, "/nick NEW");
        assert_eq!(ok("/quit"), Command::Quit);
        assert_eq!(ok("/exit"), Command::Quit);
        assert_eq!(ok("/help"), Command::Help);
    }

    #[test]
    fn unknown_commands() {
        assert_eq!(err("/jion dev"), usage("unknown command /jion", "/help lists the commands"));
        assert_eq!(err("/"), usage("unknown command /", "/help lists the commands"));
        assert_eq!(err("/jion dev").to_string(), "unknown command /jion (usage: /help lists the commands)");
    }

    #[test]
    fn nicks() {
        for good in ["a", "Alice", "_x", ".dot", "a-b_c.d9", &"n".repeat(32)] {
            assert!(valid_nick(good), "{good}");
        }
        for bad in ["", "9a", "-a", "a b", "é", &"n".repeat(33)] {
            assert!(!valid_nick(bad), "{bad}");
        }
    }
}
