//! The client's view of server frames (PROTOCOL.md), parsed with serde.
//!
//! Lenient on purpose, so the client works with any server that speaks the
//! contract: unknown frame types become [`Incoming::Other`], unknown fields
//! are ignored, and fields the client can do without default when missing.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Incoming {
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
    pub fn parse(text: &str) -> Option<Incoming> {
        serde_json::from_str(text).ok()
    }
}

/// A request id as the server echoes it. The client sends integers.
pub fn request_id(id: &Option<Value>) -> Option<u64> {
    id.as_ref().and_then(Value::as_u64)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Welcome {
    pub id: Option<Value>,
    pub nick: String,
    pub rooms: Vec<String>,
    pub server: ServerInfo,
    pub limits: Limits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ServerInfo {
    pub name: String,
    pub version: String,
    pub node: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Limits {
    pub rate_per_sec: Option<f64>,
    pub burst: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Member {
    pub nick: String,
    pub away: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Joined {
    pub id: Option<Value>,
    pub room: String,
    pub topic: String,
    pub members: Vec<Member>,
    pub seq: u64,
    pub history: Vec<Message>,
    pub more: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Left {
    pub id: Option<Value>,
    pub room: String,
    pub reason: Option<String>,
    pub by: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RoomsReply {
    pub id: Option<Value>,
    pub rooms: Vec<RoomSummary>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RoomSummary {
    pub name: String,
    pub topic: String,
    pub members: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RoomStatus {
    pub id: Option<Value>,
    pub room: String,
    pub topic: String,
    pub members: Vec<Member>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Topic {
    pub room: String,
    pub topic: String,
    pub by: String,
}

/// A message as `message` frames, `ack`s and history carry it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Message {
    pub room: Option<String>,
    pub to: Option<String>,
    pub everyone: bool,
    pub seq: u64,
    pub from: String,
    pub text: String,
    pub sent_at: i64,
    pub edited_at: Option<i64>,
    pub deleted: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Ack {
    pub id: Option<Value>,
    pub message: Option<Message>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct History {
    pub id: Option<Value>,
    pub messages: Vec<Message>,
    pub more: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Edited {
    pub room: Option<String>,
    pub with: Option<String>,
    pub everyone: bool,
    pub text: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Deleted {
    pub room: Option<String>,
    pub with: Option<String>,
    pub everyone: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Typing {
    pub room: Option<String>,
    pub from: Option<String>,
    pub nick: String,
    pub active: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Presence {
    pub room: String,
    pub nick: String,
    pub event: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Status {
    pub nick: String,
    pub online: bool,
    pub away: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ErrorFrame {
    pub id: Option<Value>,
    pub code: String,
    pub message: String,
    pub retry_after_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Notice {
    pub code: String,
    pub message: String,
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
