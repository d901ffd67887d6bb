//! Watchers: sessions that asked to hear when a nick comes online, goes
//! away or leaves (`watch`). A state is never told twice in a row to one
//! watcher (in a cluster the initial `status` and a change announced
//! meanwhile may cross).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use super::{Hub, SessionHandle, SessionId, UserState};
use crate::protocol::server::{Frame, status_code};
use crate::protocol::{Name, ProtoError, ServerFrame, encode};

/// A session watching a nick, and the state it was last told (see
/// [`status_code`]).
pub(super) struct Watcher {
    session: Arc<SessionHandle>,
    told: AtomicU8,
}

impl Hub {
    /// Sends a `status` frame (state `code`, see [`status_code`]) to every
    /// session watching `nick_key` that was not told that state last.
    pub(crate) fn to_watchers(&self, nick_key: &str, frame: &Frame, code: u8) {
        if let Some(list) = self.watchers.get(nick_key) {
            for w in list.iter() {
                if w.told.swap(code, Ordering::Relaxed) != code {
                    w.session.send(frame);
                }
            }
        }
    }

    /// Answers a `watch` with the state of `nick_key`: a new watcher is not
    /// told what a change announced meanwhile told it already; `again`
    /// (the session watched it before) always is.
    pub(crate) fn status_to(&self, session: &SessionHandle, nick_key: &str, frame: &Frame, code: u8, again: bool) {
        let told = self.watchers.get(nick_key).and_then(|list| {
            list.iter().find(|w| w.session.id == session.id).map(|w| w.told.swap(code, Ordering::Relaxed))
        });
        if again || told != Some(code) {
            session.send(frame);
        }
    }

    /// Adds nicks to the session's watch list (at most `max` in all; all or
    /// nothing). Returns the nicks newly or already watched.
    pub(crate) fn watch(&self, session: &Arc<SessionHandle>, nicks: &[Name], max: usize) -> Result<(), ProtoError> {
        session.rare(|rare| {
            let watching = &mut rare.watching;
            let mut new: Vec<&Arc<str>> = nicks.iter().map(|n| n.key()).filter(|k| !watching.contains(k)).collect();
            new.sort();
            new.dedup();
            if watching.len() + new.len() > max {
                return Err(ProtoError::invalid(format!("`nicks`: a session may watch at most {max} nicks")));
            }
            for key in new {
                watching.push(key.clone());
                self.watchers
                    .entry(key.clone())
                    .or_default()
                    .push(Watcher { session: session.clone(), told: AtomicU8::new(0) });
            }
            Ok(())
        })
    }

    pub(crate) fn unwatch(&self, session: &SessionHandle, nicks: &[Name]) {
        // A session that never watched has no `Rare` to box for this.
        let mut rare = session.rare_lock();
        let Some(rare) = rare.as_mut() else { return };
        for n in nicks {
            if let Some(i) = rare.watching.iter().position(|k| k == n.key()) {
                rare.watching.swap_remove(i);
                self.remove_watcher(n.key(), session.id);
            }
        }
    }

    pub(super) fn remove_watcher(&self, key: &str, id: SessionId) {
        self.watchers.remove_if_mut(key, |_, list| {
            list.retain(|w| w.session.id != id);
            list.is_empty()
        });
    }

    /// Tells the user's watchers its state, online or not.
    pub(super) fn notify_watchers(&self, user: &UserState, online: bool, now: i64) {
        if !self.watchers.contains_key(user.nick.key()) {
            return;
        }
        let away = online && user.away.load(Ordering::Relaxed);
        let frame = encode(&ServerFrame::Status { nick: user.nick.as_str(), online, away, last_seen: Some(now) });
        self.to_watchers(user.nick.key(), &frame, status_code(online, away));
    }
}
