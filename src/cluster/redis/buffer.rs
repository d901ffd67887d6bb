//! The message buffer's entries: a message as its `message` frame shows it
//! (the same bytes the nodes publish), read back for history and the
//! archiver, with the two things the frame does not show beside it: the
//! conversation's key (`c`) and the sender's user id (`u`).

use std::sync::Arc;

use serde::Deserialize;

use crate::protocol::server::{Attachment, Conv, Reactions, ReplyRef, ServerFrame, StoredMessage, encode};
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
    attachments: Vec<Attachment>,
    #[serde(default)]
    mentions: Vec<Arc<str>>,
    sent_at: i64,
    #[serde(default)]
    reply_to: Option<Box<ReplyRef>>,
}

/// What one log entry holds: a batch of messages, in order, each as its
/// frame, conversation key and sender id (fields `m`, `c`, `u` for the
/// first, then `m1`, `c1`, `u1`, `m2`, ...: see publish.lua). An entry
/// deleted from the log holds none.
pub fn log_messages(entry: &redis::streams::StreamId) -> Vec<(String, Option<String>, Option<String>)> {
    let mut out = Vec::new();
    let Some(first) = entry.get::<String>("m") else { return out };
    out.push((first, entry.get("c"), entry.get("u")));
    for i in 1.. {
        let Some(frame) = entry.get::<String>(&format!("m{i}")) else { break };
        out.push((frame, entry.get(&format!("c{i}")), entry.get(&format!("u{i}"))));
    }
    out
}

/// How many messages a log entry holds (as [`log_messages`] would return).
pub fn log_len(entry: &redis::streams::StreamId) -> usize {
    if !entry.map.contains_key("m") {
        return 0;
    }
    1 + (1..).take_while(|i| entry.map.contains_key(&format!("m{i}"))).count()
}

/// A buffer entry back as a message; `None` if it holds none.
pub fn decode_entry(entry: &redis::streams::StreamId) -> Option<StoredMessage> {
    let frame: String = entry.get("m")?;
    decode(&frame, entry.get::<String>("c").as_deref(), entry.get::<String>("u").as_deref())
}

/// A buffered message frame, its conversation's key and its sender's id
/// back as a message; `None` if it is not one. (Entries buffered before
/// ids were kept beside the frame name no conversation: a DM among those
/// cannot be placed and is not one.)
pub fn decode(frame: &str, conv: Option<&str>, sender_id: Option<&str>) -> Option<StoredMessage> {
    let w: Wire = serde_json::from_str(frame).ok()?;
    let from_key = w.from.to_ascii_lowercase();
    let conv = match (conv.and_then(Conv::from_storage_key), &w.room, &w.to, w.everyone) {
        (Some(conv), ..) => conv,
        (None, Some(room), None, false) => Conv::Room(room.to_ascii_lowercase().into()),
        (None, None, None, true) => Conv::Everyone,
        _ => return None,
    };
    let sender_id = sender_id.map_or_else(|| format!("l-{from_key}").into(), Into::into);
    Some(StoredMessage {
        msg_id: w.msg_id,
        conv,
        room: w.room,
        to: w.to,
        seq: w.seq,
        from: w.from,
        sender_id,
        text: w.text,
        attachments: w.attachments,
        mentions: w.mentions,
        sent_at: w.sent_at,
        edited_at: None,
        deleted: false,
        reply_to: w.reply_to,
        reactions: Reactions::default(),
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

/// The `msg_id` of a `message` frame (it comes right after `type`).
pub(super) fn msg_id_of(frame: &str) -> Option<ulid::Ulid> {
    const MARK: &str = "\"msg_id\":\"";
    let at = frame.find(MARK)? + MARK.len();
    frame.get(at..at + 26)?.parse().ok()
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
            sender_id: "a-alice".into(),
            text: "say \"seq\":0, hi".into(),
            attachments: vec![],
            mentions: vec!["Bob".into()],
            sent_at: 1_700_000_000_000,
            reply_to: Some(Box::new(ReplyRef::quote(ulid::Ulid::nil(), "Bob".into(), "\"seq\":0, first", false))),
        }
    }

    #[test]
    fn split_then_decode_is_the_message() {
        for m in [
            new(Conv::Room("lobby".into()), Some("Lobby"), None),
            new(Conv::dm(&"a-alice".into(), &"g-bob".into()), None, Some("Bob")),
            new(Conv::Everyone, None, None),
        ] {
            let (before, after) = split_frame(&m).unwrap();
            let frame = format!("{before}{}{after}", 17);
            let stored = m.clone().stored(17);
            assert_eq!(frame, &*encode(&ServerFrame::Message(&stored)));
            let conv = stored.conv.storage_key();
            assert_eq!(decode(&frame, Some(&conv), Some("a-alice")), Some(stored));
        }
    }

    #[test]
    fn a_log_entry_holds_its_batch_in_order() {
        let field = |k: &str, v: &str| (k.to_owned(), redis::Value::BulkString(v.as_bytes().to_vec()));
        let mut entry = redis::streams::StreamId { id: "1-0".into(), ..Default::default() };
        entry.map = [
            field("m", "f0"),
            field("c", "r:a"),
            field("u", "a-x"),
            field("m1", "f1"),
            field("c1", "r:b"),
            field("m2", "f2"),
            field("c2", "r:a"),
            field("u2", "a-z"),
        ]
        .into_iter()
        .collect();
        let got = log_messages(&entry);
        let want = [("f0", Some("r:a"), Some("a-x")), ("f1", Some("r:b"), None), ("f2", Some("r:a"), Some("a-z"))];
        assert_eq!(got.len(), want.len());
        assert_eq!(log_len(&entry), want.len());
        for ((f, c, u), (wf, wc, wu)) in got.iter().zip(want) {
            assert_eq!((f.as_str(), c.as_deref(), u.as_deref()), (wf, wc, wu));
        }
        entry.map.clear();
        assert!(log_messages(&entry).is_empty(), "an entry deleted from the log holds nothing");
        assert_eq!(log_len(&entry), 0);
    }

    #[test]
    fn other_frames_are_not_messages() {
        assert_eq!(decode(r#"{"type":"pong"}"#, Some("e"), None), None);
        assert_eq!(decode("not json", Some("e"), None), None);
    }
}
