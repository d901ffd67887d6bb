//! Socket.IO packets (protocol v5, carried by Engine.IO v4 messages): the
//! only place their text form appears. A packet is
//! `<type>[<attachments>-][/<namespace>,][<ack id>][<JSON>]`.
//!
//! Decoding checks the shape and nothing more; what the JSON means is the
//! namespace's business. Encoding writes the server's packets around frames
//! that are already JSON (a hub frame is embedded as it is, not re-encoded).

use serde_json::Value;

use crate::protocol::ProtoError;

/// Packet types (the first character).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Connect,
    Disconnect,
    Event,
    Ack,
    ConnectError,
    BinaryEvent,
    BinaryAck,
}

/// One decoded client packet, borrowing the message.
#[derive(Debug, PartialEq)]
pub(super) struct Packet<'a> {
    pub(super) kind: Kind,
    /// `/` unless the packet names another.
    pub(super) nsp: &'a str,
    /// Binary attachments that follow (binary packets only).
    pub(super) attachments: usize,
    pub(super) ack: Option<u64>,
    /// The JSON payload, not yet parsed (may be empty).
    pub(super) data: &'a str,
}

/// Why a message is not a Socket.IO packet.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Malformed(pub(super) &'static str);

/// Most digits in an ack id or an attachment count (both fit a u64).
const MAX_DIGITS: usize = 18;

/// Decodes one Engine.IO message as a Socket.IO packet.
pub(super) fn decode(msg: &str) -> Result<Packet<'_>, Malformed> {
    let kind = match msg.as_bytes().first() {
        Some(b'0') => Kind::Connect,
        Some(b'1') => Kind::Disconnect,
        Some(b'2') => Kind::Event,
        Some(b'3') => Kind::Ack,
        Some(b'4') => Kind::ConnectError,
        Some(b'5') => Kind::BinaryEvent,
        Some(b'6') => Kind::BinaryAck,
        _ => return Err(Malformed("unknown packet type")),
    };
    let mut rest = &msg[1..];
    let mut attachments = 0;
    if matches!(kind, Kind::BinaryEvent | Kind::BinaryAck) {
        let (count, after) = rest.split_once('-').ok_or(Malformed("binary packet without an attachment count"))?;
        attachments = digits(count).ok_or(Malformed("bad attachment count"))? as usize;
        rest = after;
    }
    let mut nsp = "/";
    if rest.starts_with('/') {
        let end = rest.find(',').unwrap_or(rest.len());
        nsp = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or("");
    }
    let id_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    let ack = if id_len > 0 {
        let id = digits(&rest[..id_len]).ok_or(Malformed("bad ack id"))?;
        rest = &rest[id_len..];
        Some(id)
    } else {
        None
    };
    Ok(Packet { kind, nsp, attachments, ack, data: rest })
}

fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > MAX_DIGITS || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// An EVENT's payload: its name and its arguments (`["say", {...}]`).
pub(super) fn event_args(data: &str) -> Result<(String, Vec<Value>), ProtoError> {
    let value: Value =
        serde_json::from_str(data).map_err(|e| ProtoError::bad_frame(format!("event payload is not JSON: {e}")))?;
    let Value::Array(mut args) = value else {
        return Err(ProtoError::bad_frame("an event's payload must be an array"));
    };
    if args.is_empty() {
        return Err(ProtoError::bad_frame("an event needs a name"));
    }
    match args.remove(0) {
        Value::String(name) => Ok((name, args)),
        _ => Err(ProtoError::bad_frame("an event's name must be a string")),
    }
}

/// The prefix of a packet of `kind` on `nsp` (`2`, `2/max,`); the
/// Engine.IO transport adds its own message type (`4`) in front.
fn head(out: &mut String, kind: char, nsp: &str) {
    out.push(kind);
    if nsp != "/" {
        out.push_str(nsp);
        out.push(',');
    }
}

/// `CONNECT` accepted, with the namespace socket's id.
pub(super) fn connect(nsp: &str, sid: &str) -> String {
    let mut out = String::with_capacity(16 + nsp.len() + sid.len());
    head(&mut out, '0', nsp);
    out.push_str(&serde_json::json!({ "sid": sid }).to_string());
    out
}

/// `CONNECT_ERROR`: `{message, code, data: {code, message}}`: the JS
/// client's `err.message` and `err.data` (`{code, message}`), and the whole
/// object for clients that hand over the packet's data (python-socketio).
pub(super) fn connect_error(nsp: &str, code: &str, message: &str) -> String {
    let mut out = String::new();
    head(&mut out, '4', nsp);
    let data = serde_json::json!({
        "message": message,
        "code": code,
        "data": { "code": code, "message": message },
    });
    out.push_str(&data.to_string());
    out
}

/// An EVENT named `name` whose one argument is `json` (a JSON value as text).
pub(super) fn event(nsp: &str, name: &str, json: &str) -> String {
    let mut out = String::with_capacity(json.len() + name.len() + nsp.len() + 8);
    head(&mut out, '2', nsp);
    out.push('[');
    if plain(name) {
        out.push('"');
        out.push_str(name);
        out.push('"');
    } else {
        out.push_str(&Value::from(name).to_string());
    }
    out.push(',');
    out.push_str(json);
    out.push(']');
    out
}

/// An ACK of the client's packet `id`, whose one argument is `json`.
pub(super) fn ack(nsp: &str, id: u64, json: &str) -> String {
    let mut out = String::with_capacity(json.len() + nsp.len() + 24);
    head(&mut out, '3', nsp);
    out.push_str(&id.to_string());
    out.push('[');
    out.push_str(json);
    out.push(']');
    out
}

/// A name that needs no escaping inside a JSON string.
fn plain(name: &str) -> bool {
    name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// A server frame's `type` and integer `id`, read from its text: frames are
/// serialised with `type` first and, when they answer a request, `id`
/// right after it. Anything else is parsed (a frame built elsewhere).
pub(super) fn peek(frame: &str) -> (Option<std::borrow::Cow<'_, str>>, Option<i64>) {
    if let Some(rest) = frame.strip_prefix("{\"type\":\"")
        && let Some(end) = rest.find('"')
        && plain(&rest[..end])
    {
        let ty = &rest[..end];
        let after = &rest[end + 1..];
        let id = after.strip_prefix(",\"id\":").and_then(|r| {
            let n = r.bytes().take_while(|b| b.is_ascii_digit() || *b == b'-').count();
            let next = r.as_bytes().get(n);
            if matches!(next, Some(b',') | Some(b'}')) { r[..n].parse().ok() } else { None }
        });
        return (Some(ty.into()), id);
    }
    match serde_json::from_str::<Value>(frame) {
        Ok(Value::Object(map)) => {
            let ty = map.get("type").and_then(Value::as_str).map(|s| s.to_owned().into());
            (ty, map.get("id").and_then(Value::as_i64))
        }
        _ => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_packets() {
        let p = decode("0").unwrap();
        assert_eq!((p.kind, p.nsp, p.ack, p.data), (Kind::Connect, "/", None, ""));
        let p = decode("0/max,{\"token\":\"t\"}").unwrap();
        assert_eq!((p.kind, p.nsp, p.data), (Kind::Connect, "/max", "{\"token\":\"t\"}"));
        let p = decode("2/max,12[\"join\",{}]").unwrap();
        assert_eq!((p.kind, p.nsp, p.ack, p.data), (Kind::Event, "/max", Some(12), "[\"join\",{}]"));
        let p = decode("27[\"say\"]").unwrap();
        assert_eq!((p.ack, p.data), (Some(7), "[\"say\"]"));
        let p = decode("51-[\"x\",{\"_placeholder\":true,\"num\":0}]").unwrap();
        assert_eq!((p.kind, p.attachments), (Kind::BinaryEvent, 1));
        assert_eq!(decode("1/max,").unwrap().nsp, "/max");
        assert_eq!(decode("1/max").unwrap().nsp, "/max");
    }

    #[test]
    fn refuses_malformed_packets() {
        for bad in ["", "9", "x", "5[\"a\"]", "5x-[]", "599999999999999999999-[]", "2999999999999999999999[]"] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        // Multibyte text where digits or a namespace are expected.
        assert!(decode("2é").is_ok());
        assert!(decode("0/é").is_ok());
        assert!(decode("5é-").is_err());
    }

    #[test]
    fn event_arguments() {
        let (name, args) = event_args("[\"say\",{\"text\":\"hi\"}]").unwrap();
        assert_eq!((name.as_str(), args.len()), ("say", 1));
        for bad in ["{}", "[]", "[1]", "not json", ""] {
            assert!(event_args(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn encodes_packets() {
        assert_eq!(event("/", "message", "{\"a\":1}"), "2[\"message\",{\"a\":1}]");
        assert_eq!(event("/max", "update", "{}"), "2/max,[\"update\",{}]");
        assert_eq!(event("/", "we\"ird", "1"), "2[\"we\\\"ird\",1]");
        assert_eq!(ack("/", 5, "{}"), "35[{}]");
        assert_eq!(ack("/max", 0, "{}"), "3/max,0[{}]");
        assert!(connect("/", "abc").starts_with("0{\"sid\":\"abc\"}"));
        let e = connect_error("/max", "nick_taken", "taken");
        let v: Value = serde_json::from_str(e.strip_prefix("4/max,").unwrap()).unwrap();
        assert_eq!(v["data"]["code"], "nick_taken");
        assert_eq!(v["message"], "taken");
    }

    #[test]
    fn peeks_type_and_id() {
        assert_eq!(peek("{\"type\":\"ack\",\"id\":5,\"seq\":1}"), (Some("ack".into()), Some(5)));
        assert_eq!(peek("{\"type\":\"error\",\"id\":\"x\",\"code\":\"invalid\"}"), (Some("error".into()), None));
        assert_eq!(peek("{\"type\":\"message\",\"room\":\"a\"}"), (Some("message".into()), None));
        assert_eq!(peek("{\"seq\":1,\"type\":\"ack\",\"id\":3}"), (Some("ack".into()), Some(3)));
        assert_eq!(peek("nonsense"), (None, None));
    }

    proptest::proptest! {
        /// Any text decodes to a packet or an error, never a panic; so
        /// does any event payload.
        #[test]
        fn decoding_never_panics(msg in "\\PC{0,40}", digits in "[0-9]{0,25}", kind in "[0-9]") {
            let _ = decode(&msg);
            let _ = decode(&format!("{kind}{digits}-/ns,{digits}{msg}"));
            let _ = decode(&format!("{kind}/{msg},{digits}[{msg}]"));
            let _ = event_args(&msg);
            let _ = peek(&msg);
        }
    }
}
