//! The doors that hold connections open: [`ws`], the JSON-over-WebSocket
//! protocol (reader and writer tasks, frame dispatch), and [`irc`], IRC
//! over TCP or TLS. A door parses its
//! wire into typed requests, calls [`crate::service`], and encodes what
//! comes back; it has no rules of its own.

pub(crate) mod irc;
pub(crate) mod socketio;
pub(crate) mod ws;
