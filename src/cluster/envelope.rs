//! What travels on a Redis channel between nodes: a one-line header that
//! says what to do with the frame, then the frame's JSON exactly as the
//! sessions receive it. The publishing node serialises a frame once; every
//! receiving node parses only the short header and shares the frame's bytes
//! among its local recipients.
//!
//! ```text
//! kind US node US session US a US b LF payload
//! ```
//!
//! (US is the unit separator, 0x1F: names, nicks and node ids cannot hold
//! it.) `node` and `session` name the session that caused the frame, so
//! that its own node can leave it out; `a` and `b` depend on the kind.
//!
//! Several room messages published to one channel in one batch travel in
//! one envelope of kind `b`: its payload is their envelopes, in `seq`
//! order, separated by GS (0x1D, which neither a header nor JSON text can
//! hold). A batch of one is sent as that message's envelope alone.
//!
//! ```text
//! b US node US US US LF envelope GS envelope GS ...
//! ```

use crate::hub::SessionId;

const US: char = '\u{1f}';
/// Separates two frames in one payload (a typing indicator to clear, then
/// the message). JSON text never holds a raw control character.
pub const RS: char = '\u{1e}';
/// Separates the envelopes inside a batch envelope (publish.lua joins them).
pub const GS: char = '\u{1d}';

/// What a node does with an envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A room message: `a` = seq, `b` = the sender's nick key.
    RoomMessage,
    /// A direct message: `a` = seq, `b` = the sender's nick key.
    Direct,
    /// A message to everyone: `a` = seq.
    Everyone,
    /// A frame for the channel's room, user or everyone; `a` = a nick key
    /// whose sessions are left out (or empty).
    Frame,
    /// A `status` frame for the watchers of nick key `a`; `b` = its state
    /// (see `hub::status_code`).
    Status,
    /// A room's new topic (the payload), set by nick `a`.
    Topic,
    /// Kick the channel's user from room key `a`, by nick `b`.
    Kick,
    /// The channel's room is destroyed.
    Destroy,
    /// The channel's user's moderator role in room key `a`: `b` = 1 or 0.
    Moderator,
    /// The channel's user, if its id is `b`, joins room key `a` (the API
    /// made it a member).
    Admit,
    /// The channel's room's live settings changed: the payload is two
    /// characters `1` or `0` (moderated, secret), then a line per ban mask.
    Gate,
    /// The channel's user's roles in room key `a`, if its id is `b`: the
    /// payload is two characters, moderator then voiced, each `1`, `0` or
    /// `-` (unchanged).
    Role,
    /// Several room messages for the channel, in `seq` order (the payload:
    /// their envelopes, separated by [`GS`]); `a` and `b` are empty.
    Batch,
}

impl Kind {
    fn code(self) -> char {
        match self {
            Kind::RoomMessage => 'm',
            Kind::Direct => 'd',
            Kind::Everyone => 'e',
            Kind::Frame => 'f',
            Kind::Status => 'w',
            Kind::Topic => 't',
            Kind::Kick => 'k',
            Kind::Destroy => 'x',
            Kind::Moderator => 'o',
            Kind::Admit => 'j',
            Kind::Gate => 'g',
            Kind::Role => 'v',
            Kind::Batch => 'b',
        }
    }

    fn from_code(c: &str) -> Option<Kind> {
        Some(match c {
            "m" => Kind::RoomMessage,
            "d" => Kind::Direct,
            "e" => Kind::Everyone,
            "f" => Kind::Frame,
            "w" => Kind::Status,
            "t" => Kind::Topic,
            "k" => Kind::Kick,
            "x" => Kind::Destroy,
            "o" => Kind::Moderator,
            "j" => Kind::Admit,
            "g" => Kind::Gate,
            "v" => Kind::Role,
            "b" => Kind::Batch,
            _ => return None,
        })
    }
}

/// The header up to (not including) field `a`; a message's envelope is
/// finished inside Redis, once its seq is known.
pub fn head(kind: Kind, node: &str, session: Option<SessionId>) -> String {
    let sid = session.map(|s| s.to_string()).unwrap_or_default();
    format!("{}{US}{node}{US}{sid}{US}", kind.code())
}

/// A whole envelope.
pub fn envelope(kind: Kind, node: &str, session: Option<SessionId>, a: &str, b: &str, payload: &str) -> String {
    let mut s = head(kind, node, session);
    s.reserve(a.len() + b.len() + payload.len() + 2);
    s.push_str(a);
    s.push(US);
    s.push_str(b);
    s.push('\n');
    s.push_str(payload);
    s
}

/// The header of a batch envelope from `node`: publish.lua appends the
/// messages' envelopes, separated by [`GS`].
pub fn batch_head(node: &str) -> String {
    envelope(Kind::Batch, node, None, "", "", "")
}

/// A parsed envelope, borrowing from the received bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Envelope<'a> {
    pub kind: Kind,
    pub node: &'a str,
    pub session: Option<SessionId>,
    pub a: &'a str,
    pub b: &'a str,
    pub payload: &'a str,
}

impl<'a> Envelope<'a> {
    pub fn parse(text: &'a str) -> Option<Envelope<'a>> {
        let (header, payload) = text.split_once('\n')?;
        let mut f = header.split(US);
        let kind = Kind::from_code(f.next()?)?;
        let node = f.next()?;
        let session = match f.next()? {
            "" => None,
            s => Some(s.parse().ok()?),
        };
        let a = f.next()?;
        let b = f.next()?;
        Some(Envelope { kind, node, session, a, b, payload })
    }

    /// The envelopes a batch envelope carries, in order (an envelope that
    /// is not a batch carries itself); `None` for one that is not an
    /// envelope, or a batch inside a batch.
    pub fn parts(self) -> impl Iterator<Item = Option<Envelope<'a>>> {
        let (whole, batch) = match self.kind {
            Kind::Batch => (None, Some(self.payload)),
            _ => (Some(self), None),
        };
        let inner = batch
            .into_iter()
            .flat_map(|p| p.split(GS))
            .map(|part| Envelope::parse(part).filter(|e| e.kind != Kind::Batch));
        whole.map(Some).into_iter().chain(inner)
    }

    /// The session to leave out, if it is on `node`.
    pub fn except_on(&self, node: &str) -> Option<SessionId> {
        if self.node == node { self.session } else { None }
    }

    /// The payload's frames: the last is the main one; an earlier one (a
    /// typing indicator to clear) comes first.
    pub fn frames(&self) -> (Option<&'a str>, &'a str) {
        match self.payload.split_once(RS) {
            Some((first, main)) => (Some(first), main),
            None => (None, self.payload),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let text = envelope(Kind::Frame, "n1", Some(7), "bob", "", r#"{"type":"typing"}"#);
        let e = Envelope::parse(&text).unwrap();
        assert_eq!(
            e,
            Envelope {
                kind: Kind::Frame,
                node: "n1",
                session: Some(7),
                a: "bob",
                b: "",
                payload: r#"{"type":"typing"}"#
            }
        );
        assert_eq!(e.except_on("n1"), Some(7));
        assert_eq!(e.except_on("n2"), None);
        assert_eq!(e.frames(), (None, r#"{"type":"typing"}"#));
    }

    #[test]
    fn message_envelope_is_finished_by_redis() {
        // What publish.lua does: head .. seq .. rest .. frame.
        let text =
            format!("{}{}{}\n{}{RS}{}", head(Kind::RoomMessage, "n2", None), 42, "\u{1f}alice", "{off}", "{msg}");
        let e = Envelope::parse(&text).unwrap();
        assert_eq!((e.kind, e.a, e.b, e.session), (Kind::RoomMessage, "42", "alice", None));
        assert_eq!(e.frames(), (Some("{off}"), "{msg}"));
    }

    #[test]
    fn a_batch_carries_its_messages_in_order() {
        // What publish.lua does with several room messages for one channel.
        let one = |seq: u64, from: &str, off: Option<&str>, msg: &str| {
            let mid = match off {
                Some(off) => format!("\u{1f}{from}\n{off}{RS}"),
                None => format!("\u{1f}{from}\n"),
            };
            format!("{}{seq}{mid}{msg}", head(Kind::RoomMessage, "n1", Some(3)))
        };
        let text = format!(
            "{}{}{GS}{}",
            batch_head("n1"),
            one(7, "alice", Some("{off}"), "{m7}"),
            one(8, "bob", None, "{m8}")
        );
        let e = Envelope::parse(&text).unwrap();
        assert_eq!(e.kind, Kind::Batch);
        let parts: Vec<Envelope<'_>> = e.parts().map(Option::unwrap).collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            (parts[0].kind, parts[0].a, parts[0].b, parts[0].session),
            (Kind::RoomMessage, "7", "alice", Some(3))
        );
        assert_eq!(parts[0].frames(), (Some("{off}"), "{m7}"));
        assert_eq!((parts[1].a, parts[1].b), ("8", "bob"));
        assert_eq!(parts[1].frames(), (None, "{m8}"));
        // Not a batch: the envelope itself.
        let single = one(9, "carol", None, "{m9}");
        let e = Envelope::parse(&single).unwrap();
        assert_eq!(e.parts().map(Option::unwrap).collect::<Vec<_>>(), vec![Envelope::parse(&single).unwrap()]);
        // A broken part, or a batch inside a batch, is no envelope.
        let bad = format!("{}garbage{GS}{}x", batch_head("n1"), batch_head("n1"));
        assert!(Envelope::parse(&bad).unwrap().parts().all(|p| p.is_none()));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(Envelope::parse("no newline"), None);
        assert_eq!(Envelope::parse("z\u{1f}n\u{1f}\u{1f}\u{1f}\n{}"), None);
        assert_eq!(Envelope::parse("f\u{1f}n\u{1f}x\u{1f}\u{1f}\n{}"), None);
    }
}
