//! The IRC line codec: splitting the input stream into lines (with the
//! length limits), parsing one line into a [`Line`], and formatting replies.

use std::fmt::Write;

/// Most bytes of a line without its tags, CR LF included (RFC 1459).
pub(super) const MAX_BODY: usize = 512;
/// Most bytes of a line's tag section (IRCv3 message-tags), `@` and the
/// space after it included.
pub(super) const MAX_TAGS: usize = 8191;

/// What the input buffer holds next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// A whole line (without its terminator), possibly empty.
    Line(Vec<u8>),
    /// A line longer than the limits: dropped (417).
    TooLong,
    /// No whole line yet.
    Partial,
}

/// Takes the next line out of `buf`. A line ends at LF, CR LF or a lone
/// CR. `discarding` is set while the rest of an overlong line is skipped.
pub(super) fn next_line(buf: &mut Vec<u8>, discarding: &mut bool) -> Next {
    loop {
        let Some(end) = buf.iter().position(|&b| b == b'\n' || b == b'\r') else {
            if buf.len() > MAX_TAGS + MAX_BODY {
                buf.clear();
                if !*discarding {
                    *discarding = true;
                    return Next::TooLong;
                }
            }
            return Next::Partial;
        };
        let line: Vec<u8> = buf[..end].to_vec();
        let mut skip = end + 1;
        if buf[end] == b'\r' && buf.get(end + 1) == Some(&b'\n') {
            skip += 1;
        }
        buf.drain(..skip);
        if std::mem::take(discarding) {
            continue; // the end of the overlong line
        }
        if too_long(&line) {
            return Next::TooLong;
        }
        return Next::Line(line);
    }
}

/// Whether a line (without CR LF) is past the limits: 510 bytes of body,
/// and 8,191 of tags before it.
fn too_long(line: &[u8]) -> bool {
    let body = if line.first() == Some(&b'@') {
        match line.iter().position(|&b| b == b' ') {
            Some(sp) if sp < MAX_TAGS => &line[sp + 1..],
            Some(_) => return true,
            None => return line.len() >= MAX_TAGS,
        }
    } else {
        line
    };
    body.len() > MAX_BODY - 2
}

/// One parsed client line. Tags and the source are read and ignored.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Line {
    /// Upper-cased.
    pub(super) command: String,
    pub(super) params: Vec<String>,
}

impl Line {
    /// Parses a line (valid UTF-8, no NUL). `None` for a line with no
    /// command (blank, or tags/source only).
    pub(super) fn parse(text: &str) -> Option<Line> {
        let mut rest = text.trim_start_matches(' ');
        if rest.starts_with('@') {
            rest = rest.split_once(' ').map_or("", |(_, r)| r).trim_start_matches(' ');
        }
        if rest.starts_with(':') {
            rest = rest.split_once(' ').map_or("", |(_, r)| r).trim_start_matches(' ');
        }
        let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
        if command.is_empty() {
            return None;
        }
        let mut params = Vec::new();
        loop {
            rest = rest.trim_start_matches(' ');
            if rest.is_empty() {
                break;
            }
            if let Some(trailing) = rest.strip_prefix(':') {
                params.push(trailing.to_owned());
                break;
            }
            let (p, r) = rest.split_once(' ').unwrap_or((rest, ""));
            params.push(p.to_owned());
            rest = r;
        }
        Some(Line { command: command.to_ascii_uppercase(), params })
    }

    pub(super) fn param(&self, i: usize) -> Option<&str> {
        self.params.get(i).map(String::as_str)
    }
}

/// What a line costs of the flood budget: the number of targets (at most
/// 4, TARGMAX) of a `PRIVMSG` or `NOTICE`, else 1.
pub(super) fn flood_cost(line: &[u8]) -> u32 {
    let Some(line) = std::str::from_utf8(line).ok().and_then(Line::parse) else { return 1 };
    if !matches!(line.command.as_str(), "PRIVMSG" | "NOTICE") {
        return 1;
    }
    let targets = line.param(0).map_or(0, |t| t.split(',').filter(|t| !t.is_empty()).take(4).count());
    targets.max(1) as u32
}

/// Appends one line to `out`: `[@tags ]:source command params… :last`,
/// CR LF. The last parameter is written as a trailing one when it is
/// empty, has a space or starts with `:`, and always for the commands
/// whose last parameter is text or a list (clients expect it so).
pub(super) fn push(out: &mut String, tags: Option<&str>, source: &str, command: &str, params: &[&str]) {
    if let Some(t) = tags.filter(|t| !t.is_empty()) {
        out.push('@');
        out.push_str(t);
        out.push(' ');
    }
    let _ = write!(out, ":{source} {command}");
    if let Some((last, middle)) = params.split_last() {
        for p in middle {
            out.push(' ');
            out.push_str(p);
        }
        out.push(' ');
        let numeric = command.len() == 3 && command.bytes().all(|b| b.is_ascii_digit());
        let text = matches!(command, "QUIT" | "ERROR" | "AWAY")
            || (matches!(command, "CAP" | "PRIVMSG" | "NOTICE" | "TOPIC" | "PART" | "KICK") && !middle.is_empty())
            || (numeric && !matches!(command, "004" | "221" | "324" | "341"));
        if text || last.is_empty() || last.contains(' ') || last.starts_with(':') {
            out.push(':');
        }
        out.push_str(&clean(last));
    }
    out.push_str("\r\n");
}

/// A parameter with what would break the line (CR, LF, NUL) replaced.
fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['\r', '\n', '\0']) { s.replace(['\r', '\n', '\0'], " ").into() } else { s.into() }
}

/// Splits message text into pieces that fit a PRIVMSG line: at newlines,
/// and at `max` bytes (on a character boundary). Blank pieces are dropped.
pub(super) fn pieces(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    for line in text.split('\n') {
        let mut line = line.trim_end_matches('\r');
        while !line.is_empty() {
            let mut cut = line.len().min(max);
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            let (head, tail) = line.split_at(cut);
            if !head.trim().is_empty() {
                out.push(head);
            }
            line = tail;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_any_terminator() {
        let mut buf = b"NICK a\r\nUSER b\nPING c\rPART".to_vec();
        let mut d = false;
        assert_eq!(next_line(&mut buf, &mut d), Next::Line(b"NICK a".to_vec()));
        assert_eq!(next_line(&mut buf, &mut d), Next::Line(b"USER b".to_vec()));
        assert_eq!(next_line(&mut buf, &mut d), Next::Line(b"PING c".to_vec()));
        assert_eq!(next_line(&mut buf, &mut d), Next::Partial);
        assert_eq!(buf, b"PART");
    }

    #[test]
    fn overlong_lines_are_dropped_whole() {
        let mut buf = vec![b'x'; 600];
        buf.extend_from_slice(b"\r\nPING ok\r\n");
        let mut d = false;
        assert_eq!(next_line(&mut buf, &mut d), Next::TooLong);
        assert_eq!(next_line(&mut buf, &mut d), Next::Line(b"PING ok".to_vec()));
        // No terminator in sight: dropped as it comes, one 417.
        let mut buf = vec![b'x'; 10_000];
        assert_eq!(next_line(&mut buf, &mut d), Next::TooLong);
        buf.extend_from_slice(b"yyy\nPING ok\n");
        assert_eq!(next_line(&mut buf, &mut d), Next::Line(b"PING ok".to_vec()));
        // Tags have their own allowance.
        let mut tagged = format!("@a={} PRIVMSG #x :hi\n", "v".repeat(4000)).into_bytes();
        assert!(matches!(next_line(&mut tagged, &mut d), Next::Line(_)));
    }

    #[test]
    fn a_message_costs_one_per_target() {
        assert_eq!(flood_cost(b"PRIVMSG #a,#b,bob :hi"), 3);
        assert_eq!(flood_cost(b"@t=1 :me notice #a,#b,#c,#d,#e,#f :hi"), 4);
        assert_eq!(flood_cost(b"PRIVMSG #a :hi"), 1);
        assert_eq!(flood_cost(b"JOIN #a,#b,#c"), 1);
        assert_eq!(flood_cost(b"\xff\xfe"), 1);
    }

    #[test]
    fn parse_and_format() {
        let l = Line::parse("@t=1 :me!u@h privmsg #a,#b :hello : there").unwrap();
        assert_eq!(l.command, "PRIVMSG");
        assert_eq!(l.params, ["#a,#b", "hello : there"]);
        assert!(Line::parse("  ").is_none());
        assert_eq!(Line::parse("JOIN  #a   key").unwrap().params, ["#a", "key"]);
        let mut out = String::new();
        push(&mut out, Some("time=x"), "srv", "001", &["me", "Welcome here"]);
        push(&mut out, None, "srv", "PONG", &["srv", "tok"]);
        assert_eq!(out, "@time=x :srv 001 me :Welcome here\r\n:srv PONG srv tok\r\n");
        assert_eq!(pieces("a\nb\r\n\nccc", 2), ["a", "b", "cc", "c"]);
        assert_eq!(pieces("éé", 3), ["é", "é"]);
    }
}
