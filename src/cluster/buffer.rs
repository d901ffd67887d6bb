//! The message buffer's entries: a message as its `message` frame shows it
//! (the same bytes the nodes publish), read back for history and the
//! archiver. A message frame carries everything a stored message holds.

use std::sync::Arc;

use serde::Deserialize;

use crate::protocol::server::{Conv, ServerFrame, StoredMessage, encode};
use crate::store::NewMessage;

#[derive(Deserialize)]
struct Wire {
    msg_id: ulid::Ulid,
    room: Option<Arc<str>>,
    to: Option<Arc<str>>,
    #[serde(default)]
    everyone: bool,
    seq: u64,
    from: Arc<str>,
    text: String,
    #[serde(default)]
    attachments: Vec<String>,
    sent_at: i64,
}

/// A buffered message frame back as a message; `None` if it is not one.
pub fn decode(frame: &str) -> Option<StoredMessage> {
    let w: Wire = serde_json::from_str(frame).ok()?;
    let from_key: Arc<str> = w.from.to_ascii_lowercase().into();
    let conv = match (&w.room, &w.to, w.everyone) {
        (Some(room), None, false) => Conv::Room(room.to_ascii_lowercase().into()),
        (None, Some(to), false) => Conv::dm(&from_key, &to.to_ascii_lowercase().into()),
        (None, None, true) => Conv::Everyone,
        _ => return None,
    };
    Some(StoredMessage {
        msg_id: w.msg_id,
        conv,
        room: w.room,
        to: w.to,
        seq: w.seq,
        from: w.from,
        text: w.text,
        attachments: w.attachments,
        sent_at: w.sent_at,
        edited_at: None,
        deleted: false,
    })
}

/// A new message's `message` frame cut around its `seq`, which only the
/// durable step (in Redis) assigns: `before + seq + after` is the frame.
pub fn split_frame(msg: &NewMessage) -> Option<(String, String)> {
    let frame = encode(&ServerFrame::Message(&msg.clone().stored(0)));
    // `seq` follows msg_id, room/to/everyone, none of which holds a quote
    // of its own, so the first match is the field.
    const MARK: &str = "\"seq\":0,";
    let at = frame.find(MARK)? + MARK.len() - 2; // the `0`
    Some((frame[..at].to_owned(), frame[at + 1..].to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::server::encode;

    fn new(conv: Conv, room: Option<&str>, to: Option<&str>) -> NewMessage {
        NewMessage {
            msg_id: ulid::Ulid::generate(),
            conv,
            room: room.map(Into::into),
            to: to.map(Into::into),
            from: "Alice".into(),
            text: "say \"seq\":0, hi".into(),
            attachments: vec![],
            sent_at: 1_700_000_000_000,
        }
    }

    #[test]
    fn split_then_decode_is_the_message() {
        for m in [
            new(Conv::Room("lobby".into()), Some("Lobby"), None),
            new(Conv::dm(&"alice".into(), &"bob".into()), None, Some("Bob")),
            new(Conv::Everyone, None, None),
        ] {
            let (before, after) = split_frame(&m).unwrap();
            let frame = format!("{before}{}{after}", 17);
            let stored = m.clone().stored(17);
            assert_eq!(frame, &*encode(&ServerFrame::Message(&stored)));
            assert_eq!(decode(&frame), Some(stored));
        }
    }

    #[test]
    fn other_frames_are_not_messages() {
        assert_eq!(decode(r#"{"type":"pong"}"#), None);
        assert_eq!(decode("not json"), None);
    }
}
