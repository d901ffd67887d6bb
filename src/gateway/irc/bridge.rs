//! What the hub queues for a session (protocol frames, as JSON) shown as
//! IRC lines: room messages, DMs and messages to everyone as PRIVMSG (with
//! `server-time` and `msgid` tags when negotiated), joins, leaves, quits,
//! kicks and topics as the IRC commands, edits and deletions as NOTICEs.
//! Typing, events, read marks and profiles have no IRC form and are skipped.
//!
//! The frames are shared JSON (serialised once for every recipient); this
//! door parses each one it receives: a cost the WebSocket door does not pay,
//! paid only by IRC connections.

use std::sync::Arc;

use serde_json::Value;

use super::conn::{Chan, Irc, chan_of};
use super::line::{pieces, push};
use crate::protocol::server::Frame;

/// Bytes of text in one PRIVMSG line (the rest of the 512 is the source,
/// command and target).
const TEXT_BYTES: usize = 350;

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// `2026-12-04T23:21:23.123Z`.
fn irc_time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()).unwrap_or_default()
}

impl Irc {
    /// Translates a batch of queued frames.
    pub(super) fn frames(&mut self, batch: Vec<Frame>) {
        for frame in batch {
            if let Some(handle) = self.session.as_ref().map(|s| s.handle().clone()) {
                handle.unqueued(frame.len());
            }
            let Ok(v) = serde_json::from_str::<Value>(&frame) else { continue };
            self.frame(&v);
        }
    }

    fn frame(&mut self, v: &Value) {
        let me = self.me();
        match s(v, "type") {
            "joined" => self.joined(v),
            "left" => {
                let room = s(v, "room");
                self.chans.remove(room.to_ascii_lowercase().as_str());
                let chan = chan_of(room);
                match v.get("by").and_then(Value::as_str) {
                    Some(by) => {
                        // A kick's comment is the kicker's nick by default (RFC 2812).
                        let source = self.source(by);
                        let comment = v.get("comment").and_then(Value::as_str).unwrap_or(by);
                        push(&mut self.out, None, &source, "KICK", &[&chan, &me, comment]);
                    }
                    None => {
                        let source = self.source(&me);
                        let reason = s(v, "reason");
                        push(&mut self.out, None, &source, "PART", &[&chan, reason]);
                    }
                }
            }
            "presence" => self.presence(v),
            "invited" => {
                let source = self.source(s(v, "by"));
                push(&mut self.out, None, &source, "INVITE", &[&me, &chan_of(s(v, "room"))]);
            }
            "mode" => self.mode_frame(v),
            "topic" => {
                let source = self.source(s(v, "by"));
                push(&mut self.out, None, &source, "TOPIC", &[&chan_of(s(v, "room")), s(v, "topic")]);
            }
            "message" => self.message(v),
            "ack" => {
                self.acked();
                if self.caps.echo_message
                    && let Some(m) = v.get("message")
                {
                    self.message(m);
                }
            }
            "edited" | "deleted" => {
                let target = match (v.get("room").and_then(Value::as_str), v.get("with").and_then(Value::as_str)) {
                    (Some(room), _) => chan_of(room),
                    (None, Some(_)) => me.clone(),
                    _ => "$*".to_owned(),
                };
                let text = if s(v, "type") == "edited" {
                    format!("[a message was edited] {}", s(v, "text"))
                } else {
                    "[a message was deleted]".to_owned()
                };
                let host = self.host.clone();
                for piece in pieces(&text, TEXT_BYTES) {
                    push(&mut self.out, None, &host, "NOTICE", &[&target, piece]);
                }
            }
            // The watched members' state (see `to_watch`): AWAY lines on a change.
            "status" if self.caps.away_notify => {
                let nick = s(v, "nick");
                let away = v.get("away").and_then(Value::as_bool) == Some(true);
                let key: Arc<str> = nick.to_ascii_lowercase().into();
                let was = self.away.insert(key, away).unwrap_or(false);
                if away != was && v.get("online").and_then(Value::as_bool) == Some(true) {
                    let source = self.source(nick);
                    let params: &[&str] = if away { &["Away"] } else { &[] };
                    push(&mut self.out, None, &source, "AWAY", params);
                }
            }
            "error" | "notice" => {
                if s(v, "type") == "error" {
                    self.acked(); // a message that could not be stored
                }
                let host = self.host.clone();
                let text = format!("{}: {}", s(v, "code"), s(v, "message"));
                push(&mut self.out, None, &host, "NOTICE", &[&me, &text]);
            }
            _ => {}
        }
    }

    /// One said message is acknowledged (or failed): held PONGs go out
    /// once none is in flight.
    fn acked(&mut self) {
        self.unacked = self.unacked.saturating_sub(1);
        if self.unacked == 0 {
            let host = self.host.clone();
            for token in std::mem::take(&mut self.held_pongs) {
                push(&mut self.out, None, &host, "PONG", &[&host, &token]);
            }
        }
    }

    /// `joined`: JOIN, the topic, NAMES, then the recent history.
    fn joined(&mut self, v: &Value) {
        let me = self.me();
        let room = s(v, "room");
        let chan = chan_of(room);
        let members: Vec<Arc<str>> = v
            .get("members")
            .and_then(Value::as_array)
            .map(|m| m.iter().map(|m| s(m, "nick").to_ascii_lowercase().into()).collect())
            .unwrap_or_default();
        let source = self.source(&me);
        push(&mut self.out, None, &source, "JOIN", &[&chan]);
        let topic = s(v, "topic");
        if !topic.is_empty() {
            self.num("332", &[&chan, topic]);
            let at = v.get("topic_at").and_then(Value::as_i64);
            if let (Some(by), Some(at)) = (v.get("topic_by").and_then(Value::as_str), at) {
                let by = self.source(by);
                self.num("333", &[&chan, &by, &(at / 1000).to_string()]);
            }
        }
        let key = room.to_ascii_lowercase();
        let flag = |m: &Value, k: &str| m.get(k).and_then(Value::as_bool) == Some(true);
        let names: Vec<String> = v
            .get("members")
            .and_then(Value::as_array)
            .map(|m| {
                m.iter()
                    .map(|m| {
                        let nick = s(m, "nick");
                        format!("{}{nick}", self.prefix_of(&key, nick, flag(m, "moderator"), flag(m, "voiced")))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let symbol = if flag(v, "secret") { "@" } else { "=" };
        for chunk in names.chunks(40) {
            self.num("353", &[symbol, &chan, &chunk.join(" ")]);
        }
        self.num("366", &[&chan, "End of /NAMES list"]);
        if self.caps.away_notify {
            self.to_watch.extend(members.iter().filter(|m| !m.eq_ignore_ascii_case(&me)).cloned());
        }
        self.chans.insert(room.to_ascii_lowercase().into(), Chan { name: chan, members });
        if let Some(history) = v.get("history").and_then(Value::as_array) {
            for m in history {
                self.message(m);
            }
        }
    }

    /// A `mode` frame: one MODE line (`+mo-v bob carol`).
    fn mode_frame(&mut self, v: &Value) {
        let (mut flags, mut args) = (String::new(), Vec::new());
        let mut sign = None;
        for c in v.get("changes").and_then(Value::as_array).into_iter().flatten() {
            let on = c.get("on").and_then(Value::as_bool) == Some(true);
            let letter = match s(c, "mode") {
                "moderated" => 'm',
                "topic_lock" => 't',
                "invite_only" => 'i',
                "secret" => 's',
                "key" => 'k',
                "limit" => 'l',
                "ban" => 'b',
                "op" => 'o',
                "voice" => 'v',
                _ => continue,
            };
            if sign != Some(on) {
                flags.push(if on { '+' } else { '-' });
                sign = Some(on);
            }
            flags.push(letter);
            if let Some(arg) = c.get("arg").and_then(Value::as_str) {
                args.push(arg.to_owned());
            }
        }
        if flags.is_empty() {
            return;
        }
        let source = self.source(s(v, "by"));
        let chan = chan_of(s(v, "room"));
        let mut params: Vec<&str> = vec![&chan, &flags];
        params.extend(args.iter().map(String::as_str));
        push(&mut self.out, None, &source, "MODE", &params);
    }

    fn presence(&mut self, v: &Value) {
        let (room, nick) = (s(v, "room"), s(v, "nick"));
        let key: Arc<str> = nick.to_ascii_lowercase().into();
        let source = self.source(nick);
        let chan_key = room.to_ascii_lowercase();
        let reason = v.get("reason").and_then(Value::as_str);
        match s(v, "event") {
            "join" => {
                if let Some(c) = self.chans.get_mut(chan_key.as_str())
                    && !c.members.contains(&key)
                {
                    c.members.push(key.clone());
                }
                if self.caps.away_notify {
                    self.to_watch.push(key);
                }
                push(&mut self.out, None, &source, "JOIN", &[&chan_of(room)]);
            }
            "quit" => {
                // One QUIT however many shared channels it left.
                let mut seen = false;
                for c in self.chans.values_mut() {
                    if let Some(i) = c.members.iter().position(|m| *m == key) {
                        c.members.swap_remove(i);
                        seen = true;
                    }
                }
                if seen {
                    push(&mut self.out, None, &source, "QUIT", &[reason.unwrap_or("Quit")]);
                }
            }
            _ => {
                if let Some(c) = self.chans.get_mut(chan_key.as_str()) {
                    c.members.retain(|m| *m != key);
                }
                let chan = chan_of(room);
                match (v.get("by").and_then(Value::as_str), reason) {
                    // A kick: the comment is the kicker's nick by default.
                    (Some(by), _) => {
                        let kicker = self.source(by);
                        push(&mut self.out, None, &kicker, "KICK", &[&chan, nick, reason.unwrap_or(by)]);
                    }
                    (None, Some(reason)) => push(&mut self.out, None, &source, "PART", &[&chan, reason]),
                    (None, None) => push(&mut self.out, None, &source, "PART", &[&chan]),
                }
            }
        }
    }

    /// A stored message (live, replayed or echoed) as PRIVMSG lines.
    fn message(&mut self, m: &Value) {
        let me = self.me();
        let from = s(m, "from");
        let target = if let Some(room) = m.get("room").and_then(Value::as_str) {
            chan_of(room)
        } else if m.get("everyone").and_then(Value::as_bool) == Some(true) {
            "$*".to_owned()
        } else if from.eq_ignore_ascii_case(&me) {
            s(m, "to").to_owned() // said by this user (another session, or echoed)
        } else {
            me.clone()
        };
        let mut tags = Vec::new();
        if self.caps.server_time
            && let Some(at) = m.get("sent_at").and_then(Value::as_i64)
        {
            tags.push(format!("time={}", irc_time(at)));
        }
        if self.caps.message_tags {
            tags.push(format!("msgid={}", s(m, "msg_id")));
        }
        let tags = tags.join(";");
        let source = self.source(from);
        let deleted = m.get("deleted").and_then(Value::as_bool) == Some(true);
        let text = if deleted { "[deleted]" } else { s(m, "text") };
        for piece in pieces(text, TEXT_BYTES) {
            push(&mut self.out, Some(&tags), &source, "PRIVMSG", &[&target, piece]);
        }
        if let Some(files) = m.get("attachments").and_then(Value::as_array) {
            for f in files {
                let line = format!("[file] {} {}", s(f, "name"), s(f, "url"));
                push(&mut self.out, Some(&tags), &source, "PRIVMSG", &[&target, &line]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_time_format() {
        assert_eq!(super::irc_time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(super::irc_time(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
    }
}
