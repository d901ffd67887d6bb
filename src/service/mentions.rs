//! Mentions: `@nick` in a message's text names a user. Scanned only when
//! the text holds an `@` (the hot path of every other message is
//! untouched); each distinct nick (at most `notify.max_mentions`) is kept
//! if a user holds or owns it, spelled as that user's nick.

use std::sync::Arc;

use super::Service;
use crate::protocol::{Name, ProtoError};

/// A nick's characters (see [`Name::nick`]).
fn nick_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')
}

/// The distinct (case-insensitively) valid nicks written as `@nick`, in
/// order of first appearance, at most `max`. Word-bounded: the `@` starts
/// the text or follows a character that cannot be part of a nick or an
/// address (`bob@example.org` mentions nobody), and the nick runs to the
/// first character that cannot be in one; a trailing `.` or `-` is
/// punctuation (`thanks @bob.`).
pub(crate) fn candidates(text: &str, max: usize) -> Vec<Name> {
    let bytes = text.as_bytes();
    let mut found: Vec<Name> = Vec::new();
    let mut i = 0;
    while let Some(at) = text[i..].find('@').map(|p| p + i) {
        i = at + 1;
        if at > 0 && (nick_char(bytes[at - 1]) || bytes[at - 1] == b'@') {
            continue;
        }
        let mut end = i;
        while end < bytes.len() && nick_char(bytes[end]) {
            end += 1;
        }
        let mut nick = &text[i..end];
        nick = nick.trim_end_matches(['.', '-']);
        i = end;
        let Ok(name) = Name::nick(nick) else { continue };
        if !found.iter().any(|n| n.key() == name.key()) {
            found.push(name);
            if found.len() >= max {
                break;
            }
        }
    }
    found
}

impl Service {
    /// The users `text` mentions, as their nicks are shown; empty (without
    /// a lookup) when the text holds no `@`.
    pub(crate) async fn mentions(&self, text: &str) -> Result<Vec<Arc<str>>, ProtoError> {
        if !text.contains('@') {
            return Ok(Vec::new());
        }
        let mut mentions = Vec::new();
        for name in candidates(text, self.config.notify.max_mentions) {
            if let Some(user) = self.user_of(&name).await? {
                mentions.push(user.nick);
            }
        }
        Ok(mentions)
    }
}

#[cfg(test)]
mod tests {
    use super::candidates;

    fn keys(text: &str) -> Vec<String> {
        candidates(text, 20).iter().map(|n| n.key().to_string()).collect()
    }

    #[test]
    fn word_bounded_and_case_insensitive() {
        assert_eq!(keys("@Bob hi"), ["bob"]);
        assert_eq!(keys("hi @bob, and @CAROL: @bob"), ["bob", "carol"]);
        assert_eq!(keys("thanks @bob."), ["bob"]);
        assert_eq!(keys("(@bob)"), ["bob"]);
        assert_eq!(keys("mail bob@example.org"), Vec::<String>::new());
        assert_eq!(keys("@@bob @ bob @1abc"), Vec::<String>::new());
        assert_eq!(keys("é@bob"), ["bob"]);
        assert_eq!(keys("@a.b-c_d!"), ["a.b-c_d"]);
        assert_eq!(keys(&"@x ".repeat(5)), ["x"]);
        assert_eq!(candidates("@a @b @c @d", 2).len(), 2);
        assert_eq!(keys(&format!("@{}", "a".repeat(40))), Vec::<String>::new());
    }
}
