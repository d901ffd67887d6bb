//! The wire format, and the only place it appears: validated names parsed at
//! the edge ([`Name`]), client frames parsed once into [`Request`]s
//! ([`client`]), and server frames serialised from typed values ([`server`]).
//!
//! Everything past this module works with validated types; it never sees a
//! raw JSON field or an invalid nick.

pub mod client;
pub mod server;
pub mod social;

use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

pub use client::{ClientFrame, ConvRef, Request, Target};
pub use server::{ServerFrame, StoredMessage, encode};

/// Error codes of PROTOCOL.md's "Errors and limits" section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadFrame,
    UnknownType,
    Invalid,
    Unauthorized,
    Forbidden,
    NickTaken,
    NotInRoom,
    NoSuchRoom,
    NoSuchUser,
    NoSuchMessage,
    TooLarge,
    RateLimited,
    Unavailable,
    Internal,
    // Codes the HTTP API alone uses.
    RoomExists,
    NotFound,
    TooManyConnections,
    ShuttingDown,
    Timeout,
    Misdirected,
    MethodNotAllowed,
}

impl ErrorCode {
    /// The code as the wire shows it (`no_such_room`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::Invalid => "invalid",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NickTaken => "nick_taken",
            ErrorCode::NotInRoom => "not_in_room",
            ErrorCode::NoSuchRoom => "no_such_room",
            ErrorCode::NoSuchUser => "no_such_user",
            ErrorCode::NoSuchMessage => "no_such_message",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::RoomExists => "room_exists",
            ErrorCode::NotFound => "not_found",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Misdirected => "misdirected",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
        }
    }
}

/// An error for the client: a code and a human-readable message. Never
/// carries an internal error string (those are logged, not sent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtoError {
    pub code: ErrorCode,
    pub message: String,
    /// Only for `rate_limited`.
    pub retry_after_ms: Option<u64>,
    /// For a `forbidden` by a room setting: which (`banned`, `key`, `full`,
    /// `invite_only`, `moderated`); see docs/protocol.md "mode".
    pub reason: Option<&'static str>,
}

impl ProtoError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtoError { code, message: message.into(), retry_after_ms: None, reason: None }
    }
    /// The same error, saying which room setting refused.
    pub fn because(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Invalid, message)
    }
    pub fn bad_frame(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadFrame, message)
    }
    pub fn unavailable() -> Self {
        Self::new(ErrorCode::Unavailable, "storage is unavailable; nothing was sent, try again")
    }
    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error")
    }
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

/// The `id` a client may attach to any frame; echoed in every reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameId {
    Str(Box<str>),
    Int(i64),
}

impl Serialize for FrameId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FrameId::Str(v) => s.serialize_str(v),
            FrameId::Int(v) => s.serialize_i64(*v),
        }
    }
}

/// What a [`Name`] names: the two kinds differ in their syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    Nick,
    Room,
}

/// A validated nick or room name. `shown` keeps the spelling the user typed;
/// `key` is the ASCII-lowercased form that every comparison and map uses,
/// because both kinds of name are case-insensitive.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Name {
    shown: Arc<str>,
    key: Arc<str>,
}

impl Name {
    /// Nick: 1..=32 of ASCII letters, digits, `_-.`; not starting with a digit or `-`.
    pub fn nick(raw: &str) -> Result<Name, ProtoError> {
        Self::parse(raw, NameKind::Nick)
    }

    /// Room: 1..=64 of ASCII letters, digits, `_-.`, with an optional leading
    /// `#` that counts toward the 64; `#` alone is invalid.
    pub fn room(raw: &str) -> Result<Name, ProtoError> {
        Self::parse(raw, NameKind::Room)
    }

    pub fn parse(raw: &str, kind: NameKind) -> Result<Name, ProtoError> {
        let (what, max) = match kind {
            NameKind::Nick => ("nick", 32),
            NameKind::Room => ("room", 64),
        };
        let body = match kind {
            NameKind::Room => raw.strip_prefix('#').unwrap_or(raw),
            NameKind::Nick => raw,
        };
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        let first_ok = match (kind, body.chars().next()) {
            (_, None) => false,
            (NameKind::Nick, Some(c)) => !c.is_ascii_digit() && c != '-',
            (NameKind::Room, Some(_)) => true,
        };
        if raw.len() > max || !first_ok || !body.chars().all(ok_char) {
            let rule = match kind {
                NameKind::Nick => "1 to 32 ASCII letters, digits, '_', '-' or '.', not starting with a digit or '-'",
                NameKind::Room => "1 to 64 ASCII letters, digits, '_', '-' or '.', with an optional leading '#'",
            };
            return Err(ProtoError::invalid(format!("`{what}` must be {rule}")));
        }
        // One string for both when the name is lower case already.
        let shown: Arc<str> = raw.into();
        let key =
            if raw.bytes().any(|b| b.is_ascii_uppercase()) { raw.to_ascii_lowercase().into() } else { shown.clone() };
        Ok(Name { shown, key })
    }

    /// The spelling to show.
    pub fn as_str(&self) -> &str {
        &self.shown
    }
    pub fn shown(&self) -> &Arc<str> {
        &self.shown
    }
    /// The case-folded form for comparisons and map keys.
    pub fn key(&self) -> &Arc<str> {
        &self.key
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.shown)
    }
}

/// Trims a message text and checks it holds 1 to `max` characters (or
/// none, with attachments).
pub fn check_text(text: &str, max: usize, has_attachments: bool) -> Result<String, ProtoError> {
    let text = text.trim();
    if text.is_empty() && !has_attachments {
        return Err(ProtoError::invalid("`text` is empty"));
    }
    let chars = text.chars().count();
    if chars > max {
        return Err(ProtoError::new(ErrorCode::TooLarge, format!("`text` is {chars} characters; the limit is {max}")));
    }
    // PostgreSQL cannot store NUL in text; no client means to send one.
    if text.contains('\0') {
        return Err(ProtoError::invalid("`text` holds a NUL character (U+0000)"));
    }
    Ok(text.to_owned())
}

/// A size for people: `512 B`, `12.3 KiB`, `4.0 MiB`.
pub fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Milliseconds since the Unix epoch, the unit of every time on the wire.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::size_text(512), "512 B");
        assert_eq!(super::size_text(12_595), "12.3 KiB");
        assert_eq!(super::size_text(4 << 20), "4.0 MiB");
    }

    use super::*;

    #[test]
    fn error_codes_read_as_serialised() {
        use ErrorCode::*;
        let all = [
            BadFrame,
            UnknownType,
            Invalid,
            Unauthorized,
            Forbidden,
            NickTaken,
            NotInRoom,
            NoSuchRoom,
            NoSuchUser,
            NoSuchMessage,
            TooLarge,
            RateLimited,
            Unavailable,
            Internal,
            RoomExists,
            NotFound,
            TooManyConnections,
            ShuttingDown,
            Timeout,
            Misdirected,
            MethodNotAllowed,
        ];
        for code in all {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }

    #[test]
    fn nick_rules() {
        for ok in ["a", "Alice", "bob_1", "x.y-z", "_x", ".x", &"a".repeat(32)] {
            assert!(Name::nick(ok).is_ok(), "{ok} should be valid");
        }
        for bad in ["", "1abc", "-x", "a b", "é", "a#", &"a".repeat(33), "#room"] {
            assert!(Name::nick(bad).is_err(), "{bad} should be invalid");
        }
        let n = Name::nick("Alice").unwrap();
        assert_eq!((n.as_str(), &**n.key()), ("Alice", "alice"));
    }

    #[test]
    fn room_rules() {
        for ok in ["lobby", "#lobby", "1", "#1-2.3_x", &"a".repeat(64), &format!("#{}", "a".repeat(63))] {
            assert!(Name::room(ok).is_ok(), "{ok} should be valid");
        }
        for bad in ["", "#", "##a", "a b", &"a".repeat(65), &format!("#{}", "a".repeat(64)), "ü"] {
            assert!(Name::room(bad).is_err(), "{bad} should be invalid");
        }
    }
}
