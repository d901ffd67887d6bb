//! The server's frame parser on any bytes a client may send as text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = chat::protocol::ClientFrame::parse(text) {
            assert!(!e.error.message.is_empty());
        }
    }
});
