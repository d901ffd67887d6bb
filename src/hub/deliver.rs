//! The one delivery sink (DESIGN.md, data flow step 3). A stored message
//! reaches it from the single node's batching writer (after the commit) or
//! from a cluster node's Redis subscriber (after the atomic publish): both
//! call [`Hub::deliver`], which fans the frame out to this node's sessions
//! and then acknowledges the sender, if the sender is here. Serialised
//! once; each recipient gets a shared copy with `try_send`.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::{Hub, SessionHandle, SessionId, lock};
use crate::protocol::server::{Conv, Frame, StoredMessage, typing_off};
use crate::protocol::{FrameId, ProtoError, ServerFrame, encode};

/// Where the outcome of a stored message goes: the sending session (for
/// its `ack` or `error`), whether its typing indicator must be cleared, and
/// for a message published over HTTP, who waits for the outcome.
#[derive(Debug, Default)]
pub(crate) struct Route {
    pub(crate) origin: Option<Arc<SessionHandle>>,
    pub(crate) reply_id: Option<FrameId>,
    pub(crate) clear_typing: bool,
    pub(crate) waiter: Option<oneshot::Sender<Result<StoredMessage, ProtoError>>>,
}

/// Who on this node receives a stored message's frame.
pub(crate) enum Fanout<'a> {
    /// A room's members, in `seq` order (a repeat is dropped); `typing_off`
    /// (with the sender's nick key) clears the sender's indicator first.
    Room { key: &'a str, seq: u64, typing_off: Option<(&'a Frame, &'a str)> },
    /// Every session of these users (a direct message's two parties, or
    /// the one whose channel carried it); `typing_off` goes to all but the
    /// sender's (nick key).
    Users { keys: &'a [&'a str], typing_off: Option<(&'a Frame, &'a str)> },
    /// Every session here.
    Everyone,
}

/// A stored message and the route its sender waits on.
pub(crate) struct Acked {
    pub(crate) message: StoredMessage,
    pub(crate) route: Route,
}

impl Acked {
    /// The message as the local writer committed it, ready to deliver:
    /// its frame (encoded once), who gets it, and the sender's `ack` after.
    pub(crate) fn deliver_on(self, hub: &Hub) {
        let msg = &self.message;
        let frame = encode(&ServerFrame::Message(msg));
        let off = self.route.clear_typing.then(|| typing_off(msg));
        let from_key = msg.from.to_ascii_lowercase();
        let off = off.as_ref().map(|f| (f, &*from_key));
        let except = self.route.origin.as_ref().map(|s| s.id);
        match &msg.conv {
            Conv::Room(key) => {
                let key = key.clone();
                hub.deliver(&frame, Fanout::Room { key: &key, seq: msg.seq, typing_off: off }, except, Some(self))
            }
            Conv::Dm(..) => {
                let to_key = msg.to.as_deref().unwrap_or_default().to_ascii_lowercase();
                let keys = [&*to_key, &*from_key];
                hub.deliver(&frame, Fanout::Users { keys: &keys, typing_off: off }, except, Some(self))
            }
            Conv::Everyone => hub.deliver(&frame, Fanout::Everyone, except, Some(self)),
        }
    }
}

impl Hub {
    /// Delivers a stored message's frame to the sessions `fanout` names
    /// here, but `except` (its sender), then acknowledges the sender (and
    /// an HTTP caller) if `ack` is given: everyone here has it queued
    /// before the sender hears it is stored.
    pub(crate) fn deliver(&self, frame: &Frame, fanout: Fanout<'_>, except: Option<SessionId>, ack: Option<Acked>) {
        self.metrics.delivered(1);
        match fanout {
            Fanout::Room { key, seq, typing_off } => {
                if let Some(room) = self.room(key) {
                    let mut r = lock(&room);
                    // At or below the newest seq handed out: a repeat (a
                    // cluster node catching up after a reconnect).
                    if seq > r.last_seq {
                        r.last_seq = seq;
                        if let Some((off, from_key)) = typing_off {
                            r.send(off, |s| **s.nick().key() != *from_key);
                        }
                        r.send_seq(frame, seq, |s| Some(s.id) != except);
                    }
                }
            }
            Fanout::Users { keys, typing_off } => {
                for key in keys {
                    if let Some((off, from_key)) = typing_off
                        && *key != from_key
                    {
                        self.to_user(key, off, None);
                    }
                    self.to_user(key, frame, except);
                }
            }
            Fanout::Everyone => self.to_everyone(frame, except),
        }
        if let Some(Acked { message, route }) = ack {
            acknowledge(message, route);
        }
    }

    /// Tells the sender its message was not stored; nobody else hears of it.
    pub(crate) fn fail(&self, route: Route, error: &ProtoError) {
        self.metrics.error(error.code);
        if let Some(s) = &route.origin {
            s.send(&encode(&ServerFrame::error(route.reply_id.as_ref(), error)));
        }
        if let Some(waiter) = route.waiter {
            let _ = waiter.send(Err(error.clone()));
        }
    }
}

/// The sender's `ack` (and an HTTP caller's answer): the message is stored
/// and this node has handed it to its recipients.
pub(crate) fn acknowledge(message: StoredMessage, route: Route) {
    if let Some(s) = &route.origin {
        s.send(&encode(&ServerFrame::Ack { id: route.reply_id.as_ref(), message: Some(&message) }));
    }
    if let Some(waiter) = route.waiter {
        let _ = waiter.send(Ok(message));
    }
}
