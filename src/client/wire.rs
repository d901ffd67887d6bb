//! The client's view of server frames (PROTOCOL.md), parsed with serde.
//!
//! Lenient on purpose, so the client works with any server that speaks the
//! contract: unknown frame types become [`Incoming::Other`], unknown fields
//! are ignored, and fields the client can do without default when missing.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Incoming {
    Welcome(Welcome),
    Joined(Joined),
    Left(Left),
    Rooms(RoomsReply),
    RoomStatus(RoomStatus),
    Topic(Topic),
    Message(Message),
    Ack(Ack),
    History(History),
    Edited(Edited),
    Deleted(Deleted),
    Typing(Typing),
    Presence(Presence),
    Status(Status),
    Error(ErrorFrame),
    Notice(Notice),
    /// `pong`, `read`, `event`, and any type a newer server may send.
    #[serde(other)]
    Other,
}

impl Incoming {
    /// Parses one text frame; `None` if it is not a frame this client can
    /// read (not JSON, or a known type with fields of the wrong shape).
    pub(crate) fn parse(text: &str) -> Option<Incoming> {
        serde_json::from_str(text).ok()
    }
}

/// A request id as the server echoes it. The client sends integers.
pub(crate) fn request_id(id: &Option<Value>) -> Option<u64> {
    id.as_ref().and_then(Value::as_u64)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Welcome {
    pub(crate) id: Option<Value>,
    pub(crate) nick: String,
    /// The session token, for HTTP calls (uploads).
    pub(crate) token: Option<String>,
    pub(crate) rooms: Vec<String>,
    pub(crate) server: ServerInfo,
    pub(crate) limits: Limits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ServerInfo {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) node: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Limits {
    pub(crate) rate_per_sec: Option<f64>,
    pub(crate) burst: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Member {
    pub(crate) nick: String,
    pub(crate) away: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Joined {
    pub(crate) id: Option<Value>,
    pub(crate) room: String,
    pub(crate) topic: String,
    pub(crate) members: Vec<Member>,
    pub(crate) seq: u64,
    pub(crate) history: Vec<Message>,
    pub(crate) more: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Left {
    pub(crate) id: Option<Value>,
    pub(crate) room: String,
    pub(crate) reason: Option<String>,
    pub(crate) by: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RoomsReply {
    pub(crate) id: Option<Value>,
    pub(crate) rooms: Vec<RoomSummary>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RoomSummary {
    pub(crate) name: String,
    pub(crate) topic: String,
    pub(crate) members: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RoomStatus {
    pub(crate) id: Option<Value>,
    pub(crate) room: String,
    pub(crate) topic: String,
    pub(crate) members: Vec<Member>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Topic {
    pub(crate) room: String,
    pub(crate) topic: String,
    pub(crate) by: String,
}

/// A message as `message` frames, `ack`s and history carry it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Message {
    pub(crate) room: Option<String>,
    pub(crate) to: Option<String>,
    pub(crate) everyone: bool,
    pub(crate) seq: u64,
    pub(crate) from: String,
    pub(crate) text: String,
    pub(crate) attachments: Vec<Attachment>,
    pub(crate) sent_at: i64,
    pub(crate) edited_at: Option<i64>,
    pub(crate) deleted: bool,
}

/// A file a message carries (what the console shows of it).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Attachment {
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) url: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Ack {
    pub(crate) id: Option<Value>,
    pub(crate) message: Option<Message>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct History {
    pub(crate) id: Option<Value>,
    pub(crate) messages: Vec<Message>,
    pub(crate) more: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Edited {
    pub(crate) room: Option<String>,
    pub(crate) with: Option<String>,
    pub(crate) everyone: bool,
    pub(crate) text: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Deleted {
    pub(crate) room: Option<String>,
    pub(crate) with: Option<String>,
    pub(crate) everyone: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Typing {
    pub(crate) room: Option<String>,
    pub(crate) from: Option<String>,
    pub(crate) nick: String,
    pub(crate) active: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Presence {
    pub(crate) room: String,
    pub(crate) nick: String,
    pub(crate) event: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Status {
    pub(crate) nick: String,
    pub(crate) online: bool,
    pub(crate) away: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ErrorFrame {
    pub(crate) id: Option<Value>,
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) retry_after_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Notice {
    pub(crate) code: String,
    pub(crate) message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_types_and_fields_are_tolerated() {
        assert!(matches!(Incoming::parse(r#"{"type":"pong","id":3}"#), Some(Incoming::Other)));
        assert!(matches!(Incoming::parse(r#"{"type":"sparkle","x":1}"#), Some(Incoming::Other)));
        let m = Incoming::parse(r#"{"type":"message","room":"dev","seq":4,"from":"bob","text":"hi","mood":"x"}"#);
        let Some(Incoming::Message(m)) = m else { panic!("{m:?}") };
        assert_eq!((m.room.as_deref(), m.seq, m.from.as_str(), m.text.as_str()), (Some("dev"), 4, "bob", "hi"));
        assert!(Incoming::parse("not json").is_none());
        assert!(Incoming::parse(r#"{"no":"type"}"#).is_none());
    }

    #[test]
    fn ids() {
        let Some(Incoming::Ack(a)) = Incoming::parse(r#"{"type":"ack","id":7}"#) else { panic!() };
        assert_eq!(request_id(&a.id), Some(7));
        let Some(Incoming::Ack(a)) = Incoming::parse(r#"{"type":"ack","id":"x"}"#) else { panic!() };
        assert_eq!(request_id(&a.id), None);
    }
}
