//! What messages carry of reactions and replies, and the search query's
//! words: plain data, shaped as `message`, `history` and `search_results`
//! show it.

use std::sync::Arc;

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

/// How much of the quoted message's text a reply carries.
pub const REPLY_QUOTE_CHARS: usize = 200;

/// The message a reply answers, as the reply shows it: `{msg_id, from,
/// text}` (the text cut to [`REPLY_QUOTE_CHARS`]); `deleted: true` and an
/// empty `text` once that message is deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyRef {
    pub msg_id: Ulid,
    pub from: Arc<str>,
    pub text: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl ReplyRef {
    /// The quote of a message: its text cut to [`REPLY_QUOTE_CHARS`].
    pub fn quote(msg_id: Ulid, from: Arc<str>, text: &str, deleted: bool) -> ReplyRef {
        let text = if deleted { String::new() } else { text.chars().take(REPLY_QUOTE_CHARS).collect() };
        ReplyRef { msg_id, from, text, deleted }
    }
}

/// A message's reactions: each emoji with the nicks that chose it, emoji
/// in the order they were first chosen, nicks in the order they chose it.
/// Serialised as a JSON object `{"👍":["alice","bob"],…}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reactions(pub Vec<(String, Vec<Arc<str>>)>);

impl Reactions {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds one (emoji, nick) pair, in order.
    pub fn push(&mut self, emoji: String, nick: Arc<str>) {
        match self.0.iter_mut().find(|(e, _)| *e == emoji) {
            Some((_, nicks)) => nicks.push(nick),
            None => self.0.push((emoji, vec![nick])),
        }
    }
}

impl Serialize for Reactions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (emoji, nicks) in &self.0 {
            m.serialize_entry(emoji, nicks)?;
        }
        m.end()
    }
}

/// Checks a reaction's emoji: 1 to `max` characters, no white space or
/// control characters (it is shown as one label).
pub fn check_emoji(emoji: &str, max: usize) -> Result<(), super::ProtoError> {
    let n = emoji.chars().count();
    if n == 0 || n > max {
        return Err(super::ProtoError::invalid(format!("`emoji` must be 1 to {max} characters")));
    }
    if emoji.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(super::ProtoError::invalid("`emoji` may not hold white space or control characters"));
    }
    Ok(())
}

/// The words of a search query: runs of letters and digits (everything
/// else separates words), lower-cased, without repeats. Every backend's
/// query is built from these alone, so no input can be read as the
/// engine's own syntax (quotes, `*`, `NEAR`, `-`, parentheses).
pub fn search_words(q: &str, max_words: usize) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for w in q.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let w = w.to_lowercase();
        if !words.contains(&w) {
            words.push(w);
        }
        if words.len() == max_words {
            break;
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reactions_keep_their_order() {
        let mut r = Reactions::default();
        r.push("👍".into(), "bob".into());
        r.push("🎉".into(), "alice".into());
        r.push("👍".into(), "alice".into());
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"👍":["bob","alice"],"🎉":["alice"]}"#);
    }

    #[test]
    fn words_are_letters_and_digits() {
        assert_eq!(search_words(r#"Hello "wor*ld" NEAR(a -b) ((("#, 10), ["hello", "wor", "ld", "near", "a", "b"]);
        assert_eq!(search_words("Café café 'x'", 10), ["café", "x"]);
        assert!(search_words("*** \" ( ) -", 10).is_empty());
        assert_eq!(search_words("a b c d", 2), ["a", "b"]);
    }

    #[test]
    fn emoji_bounds() {
        assert!(check_emoji("👍", 32).is_ok());
        assert!(check_emoji(":party_parrot:", 32).is_ok());
        assert!(check_emoji("", 32).is_err());
        assert!(check_emoji(&"x".repeat(33), 32).is_err());
        assert!(check_emoji("a b", 32).is_err());
        assert!(check_emoji("a\u{0}", 32).is_err());
    }

    #[test]
    fn quotes_are_cut() {
        let q = ReplyRef::quote(Ulid::nil(), "a".into(), &"é".repeat(300), false);
        assert_eq!(q.text.chars().count(), REPLY_QUOTE_CHARS);
        assert_eq!(ReplyRef::quote(Ulid::nil(), "a".into(), "gone", true).text, "");
    }
}
