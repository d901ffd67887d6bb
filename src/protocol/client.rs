//! Client frames: one JSON parse per text frame into a [`ClientFrame`], with
//! an error that names the offending field. Limits that depend on the
//! configuration (text length, history size) are checked by the caller;
//! this module checks shape and syntax only.

use serde_json::{Map, Value};
use ulid::Ulid;

use super::{ErrorCode, FrameId, Name, ProtoError};

/// One parsed client frame: its optional `id` and what it asks for.
#[derive(Debug)]
pub struct ClientFrame {
    pub id: Option<FrameId>,
    pub request: Request,
}

/// Where a `say`, `typing` or `event` goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Room(Name),
    User(Name),
    Everyone,
}

/// A change of a room's settings (`mode` `set`); `None` (or empty)
/// leaves a setting as it is.
#[derive(Clone, Debug, Default)]
pub struct ModeSet {
    pub moderated: Option<bool>,
    pub topic_lock: Option<bool>,
    pub invite_only: Option<bool>,
    pub secret: Option<bool>,
    /// `Some(None)`: remove the key.
    pub key: Option<Option<String>>,
    /// `Some(None)`: no limit.
    pub limit: Option<Option<u32>>,
    /// Masks to ban (true) or unban (false), in order.
    pub bans: Vec<(bool, String)>,
    /// Members to make (true) or unmake (false) moderators or voiced.
    pub roles: Vec<(RoleMode, bool, Name)>,
}

/// The two roles a `mode` change gives or takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleMode {
    Op,
    Voice,
}

impl ModeSet {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.moderated.is_none()
            && self.topic_lock.is_none()
            && self.invite_only.is_none()
            && self.secret.is_none()
            && self.key.is_none()
            && self.limit.is_none()
            && self.bans.is_empty()
            && self.roles.is_empty()
    }

    /// `set` of a `mode` frame: `moderated`, `topic_lock`, `invite_only`,
    /// `secret` (booleans), `key` (a string, or null to remove), `limit` (a
    /// positive integer, or null to remove), and lists `ban`, `unban`
    /// (masks), `op`, `deop`, `voice`, `devoice` (nicks).
    pub fn parse(set: &Map<String, Value>) -> Result<ModeSet, ProtoError> {
        const KNOWN: [&str; 12] = [
            "moderated",
            "topic_lock",
            "invite_only",
            "secret",
            "key",
            "limit",
            "ban",
            "unban",
            "op",
            "deop",
            "voice",
            "devoice",
        ];
        if let Some(k) = set.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            let shown: String = k.chars().take(64).collect();
            return Err(ProtoError::invalid(format!("`set` has no setting `{shown}`")));
        }
        let flag = |name: &str| match set.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ProtoError::invalid(format!("`set.{name}` must be true or false"))),
        };
        let list = |name: &str| -> Result<Vec<String>, ProtoError> {
            match set.get(name) {
                None => Ok(Vec::new()),
                Some(Value::Array(items)) if items.len() <= 64 => items
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| ProtoError::invalid(format!("`set.{name}` must be a list of strings"))),
                Some(_) => Err(ProtoError::invalid(format!("`set.{name}` must be a list of at most 64 strings"))),
            }
        };
        let mut m = ModeSet {
            moderated: flag("moderated")?,
            topic_lock: flag("topic_lock")?,
            invite_only: flag("invite_only")?,
            secret: flag("secret")?,
            ..ModeSet::default()
        };
        m.key = match set.get("key") {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(k)) => Some(Some(k.clone())),
            Some(_) => return Err(ProtoError::invalid("`set.key` must be a string or null")),
        };
        m.limit = match set.get("limit") {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::Number(n)) if n.as_u64().is_some_and(|n| (1..=u32::MAX as u64).contains(&n)) => {
                Some(n.as_u64().map(|n| n as u32))
            }
            Some(_) => return Err(ProtoError::invalid("`set.limit` must be a positive integer or null")),
        };
        for (name, on) in [("ban", true), ("unban", false)] {
            m.bans.extend(list(name)?.into_iter().map(|mask| (on, mask)));
        }
        for (name, mode, on) in [
            ("op", RoleMode::Op, true),
            ("deop", RoleMode::Op, false),
            ("voice", RoleMode::Voice, true),
            ("devoice", RoleMode::Voice, false),
        ] {
            for nick in list(name)? {
                m.roles.push((mode, on, nick_in(name, &nick)?));
            }
        }
        Ok(m)
    }
}

/// A conversation named by a `history` or `read` frame: a room, the DM
/// conversation `with` a user, or the everyone stream.
pub type ConvRef = Target;

#[derive(Debug)]
pub enum Request {
    Hello {
        nick: Option<Name>,
        password: Option<String>,
        token: Option<String>,
        /// Member lists say who moderates and who is voiced.
        member_roles: bool,
    },
    Join {
        room: Name,
        since: Option<u64>,
        history: Option<u64>,
        /// The room's key, if it has one (`+k`).
        key: Option<String>,
    },
    /// Reads a room's settings (`set` absent), or changes them.
    Mode {
        room: Name,
        set: Option<ModeSet>,
    },
    Leave {
        room: Name,
        /// What the others see with the user's `leave` (optional).
        reason: Option<String>,
    },
    Rooms,
    Who {
        room: Name,
    },
    Topic {
        room: Name,
        topic: String,
    },
    /// A moderator removes a user from a room.
    Kick {
        room: Name,
        nick: Name,
        /// What the kicked user and the others see with the kick (optional).
        comment: Option<String>,
    },
    Say {
        target: Target,
        text: String,
        attachments: Vec<String>,
        /// The message this one answers (same conversation).
        reply_to: Option<Ulid>,
    },
    History {
        conv: ConvRef,
        before: Option<u64>,
        after: Option<u64>,
        limit: Option<u64>,
    },
    Edit {
        msg_id: Ulid,
        text: String,
    },
    Delete {
        msg_id: Ulid,
    },
    Read {
        conv: ConvRef,
        seq: u64,
    },
    Typing {
        target: Target,
        active: bool,
    },
    Event {
        target: Target,
        name: String,
        data: Value,
    },
    Watch {
        nicks: Vec<Name>,
    },
    Unwatch {
        nicks: Vec<Name>,
    },
    Away {
        away: bool,
    },
    Ping,
    /// Adds (`on`) or takes back a reaction.
    React {
        msg_id: Ulid,
        emoji: String,
        on: bool,
    },
    /// Full-text search: in one conversation, or everything readable.
    Search {
        q: String,
        conv: Option<ConvRef>,
        limit: Option<u64>,
        before: Option<Ulid>,
    },
}

impl Request {
    /// Frames whose reply table names no reply; with an `id` they get a bare `ack`.
    pub fn replies_with_bare_ack(&self) -> bool {
        matches!(
            self,
            Request::Typing { .. }
                | Request::Event { .. }
                | Request::Read { .. }
                | Request::Away { .. }
                | Request::Watch { .. }
                | Request::Unwatch { .. }
        )
    }
}

/// A parse failure: the error, and the frame's `id` when it could be read, so
/// that the error reply can still echo it.
#[derive(Debug)]
pub struct ParseError {
    pub id: Option<FrameId>,
    pub error: ProtoError,
}

const MAX_ID_CHARS: usize = 64;

impl ClientFrame {
    /// Parses one text frame.
    pub fn parse(text: &str) -> Result<ClientFrame, ParseError> {
        let no_id = |error| ParseError { id: None, error };
        let value: Value =
            serde_json::from_str(text).map_err(|e| no_id(ProtoError::bad_frame(format!("not valid JSON: {e}"))))?;
        ClientFrame::from_value(value)
    }

    /// The same, from JSON already parsed (a Socket.IO event's argument,
    /// with `type` set to the event's name).
    pub fn from_value(value: Value) -> Result<ClientFrame, ParseError> {
        let no_id = |error| ParseError { id: None, error };
        let Value::Object(map) = value else {
            return Err(no_id(ProtoError::bad_frame("a frame must be a JSON object")));
        };
        let fields = Fields(map);
        let id = fields.id().map_err(no_id)?;
        let with_id = |error| ParseError { id: id.clone(), error };
        let kind = match fields.0.get("type") {
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(with_id(ProtoError::invalid("`type` must be a string"))),
            None => return Err(with_id(ProtoError::invalid("`type` is missing"))),
        };
        let request = fields.request(kind).map_err(with_id)?;
        Ok(ClientFrame { id, request })
    }
}

/// The object's fields, with typed accessors whose errors name the field.
struct Fields(Map<String, Value>);

impl Fields {
    fn id(&self) -> Result<Option<FrameId>, ProtoError> {
        match self.0.get("id") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.chars().count() <= MAX_ID_CHARS => Ok(Some(FrameId::Str(s.as_str().into()))),
            Some(Value::Number(n)) if n.is_i64() => Ok(Some(FrameId::Int(n.as_i64().unwrap_or(0)))),
            Some(_) => Err(ProtoError::invalid("`id` must be a string of at most 64 characters or an integer")),
        }
    }

    fn request(&self, kind: &str) -> Result<Request, ProtoError> {
        Ok(match kind {
            "hello" => Request::Hello {
                nick: self.opt_str("nick")?.map(Name::nick).transpose()?,
                password: self.opt_str("password")?.map(str::to_owned),
                token: self.opt_str("token")?.map(str::to_owned),
                member_roles: self.opt_bool("member_roles")?.unwrap_or(false),
            },
            "join" => Request::Join {
                room: self.room("room")?,
                since: self.opt_u64("since")?,
                history: self.opt_u64("history")?,
                key: self.opt_str("key")?.map(str::to_owned),
            },
            "mode" => Request::Mode {
                room: self.room("room")?,
                set: match self.0.get("set") {
                    None | Some(Value::Null) => None,
                    Some(Value::Object(set)) => Some(ModeSet::parse(set)?),
                    Some(_) => return Err(ProtoError::invalid("`set` must be an object")),
                },
            },
            "leave" => Request::Leave { room: self.room("room")?, reason: self.opt_str("reason")?.map(str::to_owned) },
            "rooms" => Request::Rooms,
            "who" => Request::Who { room: self.room("room")? },
            "topic" => Request::Topic { room: self.room("room")?, topic: self.req_str("topic")?.to_owned() },
            "kick" => Request::Kick {
                room: self.room("room")?,
                nick: nick_in("nick", self.req_str("nick")?)?,
                comment: self.opt_str("comment")?.map(str::to_owned),
            },
            "say" => Request::Say {
                target: self.target("to", true)?,
                text: self.opt_str("text")?.unwrap_or("").to_owned(),
                attachments: self.opt_str_list("attachments")?,
                reply_to: self.opt_msg_id("reply_to")?,
            },
            "history" => {
                let (before, after) = (self.opt_u64("before")?, self.opt_u64("after")?);
                if before.is_some() && after.is_some() {
                    return Err(ProtoError::invalid("give `before` or `after`, not both"));
                }
                Request::History { conv: self.target("with", true)?, before, after, limit: self.opt_u64("limit")? }
            }
            "edit" => Request::Edit { msg_id: self.msg_id()?, text: self.req_str("text")?.to_owned() },
            "delete" => Request::Delete { msg_id: self.msg_id()? },
            "read" => Request::Read {
                conv: self.target("with", true)?,
                seq: self.opt_u64("seq")?.ok_or_else(|| missing("seq"))?,
            },
            "typing" => Request::Typing {
                target: self.target("to", false)?,
                active: self.opt_bool("active")?.ok_or_else(|| missing("active"))?,
            },
            "event" => {
                let name = self.req_str("name")?;
                if name.is_empty() || name.chars().count() > 64 {
                    return Err(ProtoError::invalid("`name` must be 1 to 64 characters"));
                }
                Request::Event {
                    target: self.target("to", false)?,
                    name: name.to_owned(),
                    data: self.0.get("data").cloned().unwrap_or(Value::Null),
                }
            }
            "watch" => Request::Watch { nicks: self.nick_list("nicks")? },
            "unwatch" => Request::Unwatch { nicks: self.nick_list("nicks")? },
            "away" => Request::Away { away: self.opt_bool("away")?.ok_or_else(|| missing("away"))? },
            "ping" => Request::Ping,
            "react" => Request::React {
                msg_id: self.msg_id()?,
                emoji: self.req_str("emoji")?.to_owned(),
                on: self.opt_bool("on")?.ok_or_else(|| missing("on"))?,
            },
            "search" => {
                let any =
                    ["room", "with", "everyone"].iter().any(|f| !matches!(self.0.get(*f), None | Some(Value::Null)));
                Request::Search {
                    q: self.req_str("q")?.to_owned(),
                    conv: if any { Some(self.target("with", true)?) } else { None },
                    limit: self.opt_u64("limit")?,
                    before: self.opt_msg_id("before")?,
                }
            }
            other => {
                let shown: String = other.chars().take(64).collect();
                return Err(ProtoError::new(ErrorCode::UnknownType, format!("unknown frame type `{shown}`")));
            }
        })
    }

    fn opt_str(&self, name: &str) -> Result<Option<&str>, ProtoError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ProtoError::invalid(format!("`{name}` must be a string"))),
        }
    }

    fn req_str(&self, name: &str) -> Result<&str, ProtoError> {
        self.opt_str(name)?.ok_or_else(|| missing(name))
    }

    fn opt_u64(&self, name: &str) -> Result<Option<u64>, ProtoError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) if n.is_u64() => Ok(n.as_u64()),
            Some(_) => Err(ProtoError::invalid(format!("`{name}` must be a non-negative integer"))),
        }
    }

    fn opt_bool(&self, name: &str) -> Result<Option<bool>, ProtoError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ProtoError::invalid(format!("`{name}` must be true or false"))),
        }
    }

    fn room(&self, name: &str) -> Result<Name, ProtoError> {
        Name::room(self.req_str(name)?)
    }

    fn msg_id(&self) -> Result<Ulid, ProtoError> {
        Ulid::from_string(self.req_str("msg_id")?)
            .map_err(|_| ProtoError::invalid("`msg_id` must be a message id (a ULID)"))
    }

    fn opt_msg_id(&self, name: &str) -> Result<Option<Ulid>, ProtoError> {
        self.opt_str(name)?
            .map(|s| {
                Ulid::from_string(s).map_err(|_| ProtoError::invalid(format!("`{name}` must be a message id (a ULID)")))
            })
            .transpose()
    }

    fn opt_str_list(&self, name: &str) -> Result<Vec<String>, ProtoError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| ProtoError::invalid(format!("`{name}` must be a list of strings"))),
            Some(_) => Err(ProtoError::invalid(format!("`{name}` must be a list of strings"))),
        }
    }

    fn nick_list(&self, name: &str) -> Result<Vec<Name>, ProtoError> {
        match self.0.get(name) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => nick_in(name, s),
                    _ => Err(ProtoError::invalid(format!("`{name}` must be a list of nicks"))),
                })
                .collect(),
            None | Some(Value::Null) => Err(missing(name)),
            Some(_) => Err(ProtoError::invalid(format!("`{name}` must be a list of nicks"))),
        }
    }

    /// Exactly one of `room`, `<user_field>` (`to` or `with`) or, where
    /// `everyone_ok`, `"everyone": true`.
    fn target(&self, user_field: &str, everyone_ok: bool) -> Result<Target, ProtoError> {
        let room = self.opt_str("room")?.map(Name::room).transpose()?;
        let user = self.opt_str(user_field)?.map(|s| nick_in(user_field, s)).transpose()?;
        let everyone = everyone_ok && self.opt_bool("everyone")?.unwrap_or(false);
        match (room, user, everyone) {
            (Some(r), None, false) => Ok(Target::Room(r)),
            (None, Some(u), false) => Ok(Target::User(u)),
            (None, None, true) => Ok(Target::Everyone),
            (None, None, false) => Err(ProtoError::invalid(if everyone_ok {
                format!("one of `room`, `{user_field}` or `everyone` is required")
            } else {
                format!("one of `room` or `{user_field}` is required")
            })),
            _ => Err(ProtoError::invalid(format!(
                "give only one of `room`, `{user_field}`{}",
                if everyone_ok { " or `everyone`" } else { "" }
            ))),
        }
    }
}

/// A nick given in field `field` (`to`, `with`, `nicks`): an error names the field.
fn nick_in(field: &str, raw: &str) -> Result<Name, ProtoError> {
    Name::nick(raw)
        .map_err(|e| ProtoError::invalid(format!("`{field}`: {}", e.message.replacen("`nick`", "a nick", 1))))
}

fn missing(name: &str) -> ProtoError {
    ProtoError::invalid(format!("`{name}` is missing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> (Option<FrameId>, ErrorCode, String) {
        let e = ClientFrame::parse(text).expect_err(text);
        (e.id, e.error.code, e.error.message)
    }

    #[test]
    fn shape_errors() {
        assert_eq!(err("{").1, ErrorCode::BadFrame);
        assert_eq!(err("[1,2]").1, ErrorCode::BadFrame);
        assert_eq!(err("\"hi\"").1, ErrorCode::BadFrame);
        assert_eq!(err(r#"{"id":1}"#), (Some(FrameId::Int(1)), ErrorCode::Invalid, "`type` is missing".into()));
        assert_eq!(err(r#"{"type":5}"#).1, ErrorCode::Invalid);
        assert_eq!(err(r#"{"type":"dance","id":"x"}"#).0, Some(FrameId::Str("x".into())));
        assert_eq!(err(r#"{"type":"dance"}"#).1, ErrorCode::UnknownType);
        assert!(err(r#"{"type":"join"}"#).2.contains("room"));
        assert!(err(r#"{"type":"join","room":7}"#).2.contains("room"));
        assert!(err(r#"{"type":"join","room":"a b"}"#).2.contains("room"));
        assert!(err(r#"{"type":"say","room":"a","to":"b","text":"x"}"#).2.contains("only one"));
        assert!(err(r#"{"type":"ping","id":{"a":1}}"#).2.contains("id"));
        assert!(err(&format!(r#"{{"type":"ping","id":"{}"}}"#, "x".repeat(65))).2.contains("id"));
    }

    #[test]
    fn parses_requests() {
        let f = ClientFrame::parse(r#"{"type":"say","room":"Lobby","text":"hi","id":"a1","extra":1}"#).unwrap();
        assert_eq!(f.id, Some(FrameId::Str("a1".into())));
        match f.request {
            Request::Say { target: Target::Room(r), text, .. } => {
                assert_eq!((r.as_str(), &**r.key(), text.as_str()), ("Lobby", "lobby", "hi"))
            }
            other => panic!("{other:?}"),
        }
        let f = ClientFrame::parse(r#"{"type":"history","everyone":true,"after":3}"#).unwrap();
        assert!(matches!(f.request, Request::History { conv: Target::Everyone, after: Some(3), .. }));
        let f = ClientFrame::parse(r#"{"type":"typing","to":"bob","active":false}"#).unwrap();
        assert!(matches!(f.request, Request::Typing { target: Target::User(_), active: false }));
    }
}
