//! What arrives on the node's subscription: each channel message applied
//! to the local hub (a room message goes to the one delivery sink,
//! [`Hub::deliver`], which then acks a sender waiting here).

use super::*;

impl RedisBus {
    /// Applies what one channel message carries to the local hub: one
    /// envelope, or a batch of room messages one after the other.
    pub(super) fn dispatch(&self, channel: &str, payload: &[u8]) {
        let Ok(text) = std::str::from_utf8(payload) else { return };
        let Some(e) = Envelope::parse(text) else {
            tracing::warn!(channel, "ignoring a malformed envelope");
            return;
        };
        let Some(rest) = channel.strip_prefix(&self.prefix).and_then(|c| c.strip_prefix(':')) else { return };
        for part in e.parts() {
            match part {
                Some(e) => self.apply(channel, rest, &e),
                None => tracing::warn!(channel, "ignoring a malformed envelope in a batch"),
            }
        }
    }

    /// Applies one envelope that arrived on `channel` (`rest`: without the
    /// prefix) to the local hub.
    fn apply(&self, channel: &str, rest: &str, e: &Envelope<'_>) {
        // Shutting down: messages still reach the sessions until they
        // close, the comings and goings of others do not.
        if self.hub.hushed() && matches!(e.kind, Kind::Frame | Kind::Status) {
            return;
        }
        let except = e.except_on(&self.node);
        let (first, main) = e.frames();
        let frame = || Frame::from_json(main.to_owned());
        match (rest.split_once(':'), e.kind) {
            (Some(("r", room)), Kind::RoomMessage) => {
                let Ok(seq) = e.a.parse() else { return };
                let off = first.map(|f| Frame::from_json(f.to_owned()));
                let fanout = Fanout::Room { key: room, seq, typing_off: off.as_ref().map(|f| (f, e.b)) };
                self.hub.deliver(&frame(), fanout, except, self.ours(e, main));
            }
            (Some(("r", room)), Kind::Frame) => {
                self.hub.to_room(room, &frame(), |s| Some(s.id) != except && **s.nick().key() != *e.a);
            }
            // The node that set it applied it at once (see `set_topic`).
            (Some(("r", room)), Kind::Topic) if e.node != self.node => {
                self.hub.set_topic(room, e.payload.into(), e.a);
            }
            (Some(("r", _)), Kind::Topic) => {}
            // Applied at once by the node that set it (see `Bus::set_gate`).
            (Some(("r", room)), Kind::Gate) if e.node != self.node => {
                self.hub.set_gate(room, crate::cluster::gate_from(e.payload));
            }
            (Some(("r", _)), Kind::Gate) => {}
            // Applied at once by the node that set it (see `Bus::set_role`).
            (Some(("u", user)), Kind::Role) if e.node != self.node => {
                self.hub.set_role(e.a, user, e.b, crate::cluster::role_flags(e.payload));
            }
            (Some(("u", _)), Kind::Role) => {}
            (Some(("r", room)), Kind::Destroy) => {
                let sessions = self.hub.destroy(room);
                self.forget_members(room, sessions);
            }
            (Some(("u", user)), Kind::Direct) => {
                let off = first.map(|f| Frame::from_json(f.to_owned()));
                let fanout = Fanout::Users { keys: &[user], typing_off: off.as_ref().map(|f| (f, e.b)) };
                // The sender waits for its own channel, the last one published.
                let ack = if user == e.b { self.ours(e, main) } else { None };
                self.hub.deliver(&frame(), fanout, except, ack);
            }
            (Some(("u", user)), Kind::Frame) => {
                self.hub.to_user(user, &frame(), except);
            }
            (Some(("u", user)), Kind::Kick) => {
                let comment = Some(e.payload).filter(|c| !c.is_empty());
                let sessions = self.hub.kick(e.a, user, e.b, comment);
                self.after_leaving(e.a, sessions, e.b, comment);
            }
            (Some(("u", user)), Kind::Moderator) => {
                self.hub.set_moderator(e.a, user, e.b == "1");
            }
            (Some(("u", user)), Kind::Admit) => {
                self.hub.admit(e.a, e.b, user);
            }
            (None, Kind::Everyone) if rest == "all" => {
                self.hub.deliver(&frame(), Fanout::Everyone, except, self.ours(e, main));
            }
            (None, Kind::Frame) if rest == "all" => self.hub.to_everyone(&frame(), except),
            (None, Kind::Status) if rest == "all" => {
                self.hub.to_watchers(e.a, &frame(), e.b.parse().unwrap_or_default());
            }
            _ => tracing::warn!(channel, kind = ?e.kind, "ignoring an envelope on the wrong channel"),
        }
    }

    /// Sessions this node removed from a room (kicked by `by`): unregister
    /// them, telling the members (with `by` and the comment) when a user's
    /// last session left.
    fn after_leaving(&self, room_key: &str, sessions: Vec<Arc<SessionHandle>>, by: &str, comment: Option<&str>) {
        if sessions.is_empty() {
            return;
        }
        let Some(bus) = self.me() else { return };
        let room_key: Arc<str> = room_key.into();
        let (by, comment) = (by.to_owned(), comment.map(str::to_owned));
        tokio::spawn(async move {
            let name = room_key.clone();
            let how = Parting { reason: comment.as_deref(), by: Some(&by), ..Parting::LEAVE };
            for s in sessions {
                let _ = bus.unregister_member(&s, &room_key, &name, Some(how)).await;
            }
            bus.unsubscribe(Chan::Room(room_key));
        });
    }

    /// Sessions removed from a destroyed room: unregister them silently.
    fn forget_members(&self, room_key: &str, sessions: Vec<Arc<SessionHandle>>) {
        let Some(bus) = self.me() else { return };
        let room_key: Arc<str> = room_key.into();
        tokio::spawn(async move {
            for s in sessions {
                let _ = bus.unregister_member(&s, &room_key, &room_key, None).await;
            }
            bus.unsubscribe(Chan::Room(room_key));
        });
    }
}
