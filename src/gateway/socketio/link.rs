//! One namespace connection, as its task sees it: packets out (into
//! the connection's bounded buffer), events in (from the door), the acks the
//! client waits for, and the end.

use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::{Engine, Inbound, Ns, codec};
use crate::protocol::server::Frame;
use crate::protocol::{ProtoError, ServerFrame, encode};
use crate::service::{CloseReason, Hello, Outbound, Service, SessionHandle};

/// Most acks one connection may await at once; past it the oldest is
/// forgotten (its reply then arrives as an event).
const MAX_PENDING_ACKS: usize = 64;

pub(super) struct Link {
    pub(super) svc: Arc<Service>,
    pub(super) socket: Arc<Engine>,
    pub(super) ns: Ns,
    pub(super) inbound: mpsc::Receiver<Box<Inbound>>,
    /// Ack ids of client events whose reply frame is still to come.
    pending: Vec<u64>,
}

impl Link {
    pub(super) fn new(svc: Arc<Service>, socket: Arc<Engine>, ns: Ns, inbound: mpsc::Receiver<Box<Inbound>>) -> Link {
        Link { svc, socket, ns, inbound, pending: Vec::new() }
    }

    pub(super) fn path(&self) -> &'static str {
        self.ns.path()
    }

    /// Writes one packet; `false` if the connection's buffer is full (a
    /// slow consumer). A connection that is gone takes nothing, silently:
    /// its end reaches the task through the inbound queue.
    pub(super) fn emit(&self, packet: String) -> bool {
        self.socket.emit(packet).is_ok()
    }

    /// An event with one JSON argument.
    pub(super) fn emit_event(&self, name: &str, json: &str) -> bool {
        self.emit(codec::event(self.path(), name, json))
    }

    /// Accepts the namespace connection (`CONNECT`).
    pub(super) fn accept(&self) {
        let sid = ulid::Ulid::generate().to_string();
        self.emit(codec::connect(self.path(), &sid));
    }

    /// Refuses the namespace connection: `connect_error` `{code, message}`.
    pub(super) fn refuse(&self, e: &ProtoError) {
        self.svc.metrics.error(e.code);
        self.emit(codec::connect_error(self.path(), e.code.as_str(), &e.message));
        self.socket.data.remove(self.ns);
    }

    /// Answers a client event: through its ack callback if it asked for
    /// one, else as an event of the frame's `type`.
    pub(super) fn reply(&self, ack: Option<u64>, frame: &Frame) -> bool {
        match ack {
            Some(id) => self.emit(codec::ack(self.path(), id, frame)),
            None => self.emit_event(&codec::peek(frame).0.unwrap_or_default(), frame),
        }
    }

    /// Notes that the reply to the client's packet `id` is awaited.
    pub(super) fn await_ack(&mut self, id: u64) {
        if self.pending.len() >= MAX_PENDING_ACKS {
            self.pending.remove(0);
        }
        self.pending.push(id);
    }

    /// Whether `id` was awaited (it is not any more).
    fn take_ack(&mut self, id: i64) -> Option<u64> {
        let id = u64::try_from(id).ok()?;
        let i = self.pending.iter().position(|p| *p == id)?;
        self.pending.remove(i);
        Some(id)
    }

    /// Writes a batch of the session's frames, each as `translate` makes
    /// it a packet (or drops it); a frame answering an awaited ack goes to
    /// its callback. Returns `false` if the buffer was full.
    pub(super) fn forward(
        &mut self,
        frames: Vec<Frame>,
        handle: &SessionHandle,
        mut translate: impl FnMut(&str, &str) -> Option<String>,
    ) -> bool {
        let mut bytes = 0;
        let mut ok = true;
        for frame in &frames {
            bytes += frame.len();
            if !ok {
                continue;
            }
            let (ty, id) = codec::peek(frame);
            let Some(ty) = ty else { continue };
            let packet = match id.and_then(|id| self.take_ack(id)) {
                Some(id) => Some(codec::ack(self.path(), id, frame)),
                None => translate(&ty, frame),
            };
            if let Some(packet) = packet {
                ok = self.emit(packet);
            }
        }
        // Handed to the transport: no longer queued in the hub's budget.
        handle.unqueued(bytes);
        ok
    }

    /// After the session ended: keeps delivering until it is closed (at
    /// shutdown, the acks of messages in flight come now), then the
    /// shutdown notice, and the connection's close. A client that left
    /// (`Normal`) is not written to.
    pub(super) async fn finish(
        &mut self,
        mut out: Outbound,
        handle: &SessionHandle,
        reason: CloseReason,
        mut translate: impl FnMut(&str, &str) -> Option<String>,
    ) {
        self.socket.data.remove(self.ns);
        if reason == CloseReason::Normal && handle.close_reason().is_none_or(|r| r == CloseReason::Normal) {
            drop(out.close());
            return;
        }
        let closed = handle.closed().clone();
        loop {
            tokio::select! {
                biased;
                _ = closed.cancelled() => break,
                _ = self.socket.closed() => break,
                batch = out.recv() => {
                    if !self.forward(batch, handle, &mut translate) {
                        break;
                    }
                }
            }
        }
        let reason = handle.close_reason().unwrap_or(CloseReason::Shutdown);
        if reason == CloseReason::Shutdown {
            let rest = out.close();
            self.forward(rest, handle, &mut translate);
            let notice = encode(&ServerFrame::Notice {
                code: "shutdown",
                message: "the server is restarting; reconnect and resume with join … since",
            });
            self.emit_event("notice", &notice);
        } else {
            drop(out.close());
            handle.unqueued(usize::MAX);
        }
        tracing::info!(session = handle.id, nick = %handle.nick(), reason = reason.text(), "socket.io: disconnected");
        // The whole Engine.IO connection closes (its client reconnects),
        // as a WebSocket closes with its code.
        self.socket.close();
    }
}

/// The `hello` fields from a handshake's `auth` object.
pub(super) fn hello(auth: Option<&Value>) -> Result<Hello, ProtoError> {
    let empty = Map::new();
    let auth = match auth {
        Some(Value::Object(m)) => m,
        _ => &empty,
    };
    let text = |key: &str| -> Result<Option<String>, ProtoError> {
        match auth.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ProtoError::invalid(format!("`auth.{key}` must be a string"))),
        }
    };
    let nick = text("nick")?.map(|n| crate::protocol::Name::nick(&n)).transpose()?;
    Ok(Hello { nick, password: text("password")?, token: text("token")? })
}
