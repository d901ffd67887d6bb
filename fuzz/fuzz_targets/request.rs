//! The request decoder: a JSON object with a known `type` (picked by the
//! first byte) and fields from the rest of the input, so that the fuzzer
//! spends its time past the JSON syntax, in each request's fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

const TYPES: &[&str] = &[
    "hello", "join", "leave", "rooms", "who", "topic", "kick", "say", "history", "edit", "delete", "read", "typing",
    "event", "watch", "unwatch", "away", "ping",
];

fuzz_target!(|data: &[u8]| {
    let Some((first, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let mut fields = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => m,
        Ok(other) => Map::from_iter([("text".to_owned(), other)]),
        Err(_) => return,
    };
    fields.insert("type".into(), Value::from(TYPES[*first as usize % TYPES.len()]));
    let frame = Value::Object(fields).to_string();
    if let Err(e) = chat::protocol::ClientFrame::parse(&frame) {
        assert!(!e.error.message.is_empty());
    }
});
