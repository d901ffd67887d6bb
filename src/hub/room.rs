//! One room's live state: its member sessions and the users they belong to.
//! Guarded by one mutex per room (rooms never contend with each other); held
//! only for synchronous work — fan-out is `try_send`, never an await.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::session::{SessionHandle, SessionId, UserState};
use crate::protocol::server::{Frame, MemberView};

pub struct Room {
    pub name: Arc<str>,
    pub topic: Arc<str>,
    /// Who set the topic and when (ms), if it was set while the room was
    /// live here ("" and 0 otherwise).
    pub topic_by: Arc<str>,
    pub topic_at: i64,
    /// The `seq` of the newest message handed to the members.
    pub last_seq: u64,
    /// Created private through the API: not listed by `rooms`.
    pub private: bool,
    /// What `say` checks without the database (kept in step on every node,
    /// see [`super::Hub::set_gate`]).
    pub gate: Gate,
    /// How many times `gate` was replaced (see [`super::Hub::set_gate_if`]).
    pub gate_gen: u64,
    members: Vec<Member>,
    users: HashMap<Arc<str>, RoomUser>,
}

struct Member {
    session: Arc<SessionHandle>,
    /// While a `join` reads history, frames for this member wait here, so
    /// that `joined` comes first and nothing is lost or doubled. Each with
    /// its message's `seq` (0 for other frames).
    pending: Option<Vec<(Frame, u64)>>,
    /// The newest `seq` its `joined` history held: it never gets a message
    /// at or below it (a cluster node catching up after a reconnect may
    /// hand the room messages a newer member already has).
    floor: u64,
}

struct RoomUser {
    user: Arc<UserState>,
    joined_at: i64,
    sessions: u32,
    /// Its roles here, as its sessions' [`super::RoomRef`]s hold them (any
    /// session moderating or voiced), kept in step by the hub so that
    /// listing the members locks no session.
    moderator: bool,
    voiced: bool,
}

/// The room settings every node keeps live: moderated (`+m`) and the ban
/// masks (`+b`, case-folded), which `say` checks; secret (`+s`), which
/// `joined` shows.
#[derive(Clone, Debug, Default)]
pub struct Gate {
    pub moderated: bool,
    pub secret: bool,
    pub bans: Arc<[Arc<str>]>,
}

impl Gate {
    /// Whether `nick!user@host` (any case) matches a ban.
    pub fn banned(&self, source: &str) -> bool {
        if self.bans.is_empty() {
            return false;
        }
        let source = source.to_ascii_lowercase();
        self.bans.iter().any(|m| wildcard(m.as_bytes(), source.as_bytes()))
    }
}

/// Whether `text` matches `pattern`, where `*` is any run of characters
/// and `?` any one (iterative, linear in practice: no backtracking blow-up).
pub fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// What [`Room::add`] did.
pub enum Added {
    /// A new member; `first_of_user` when no other session of its user is in.
    New { first_of_user: bool },
    /// The session was already a member.
    Already,
}

impl Room {
    pub fn new(name: Arc<str>, topic: Arc<str>, last_seq: u64) -> Room {
        Room {
            name,
            topic,
            topic_by: "".into(),
            topic_at: 0,
            last_seq,
            private: false,
            gate: Gate::default(),
            gate_gen: 0,
            members: Vec::new(),
            users: HashMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Number of distinct users in the room.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Adds a session whose frames are held back until [`Room::open`].
    pub fn add(&mut self, session: &Arc<SessionHandle>, now: i64) -> Added {
        if self.members.iter().any(|m| m.session.id == session.id) {
            return Added::Already;
        }
        self.members.push(Member { session: session.clone(), pending: Some(Vec::new()), floor: 0 });
        let key = session.nick().key().clone();
        let entry = self.users.entry(key).or_insert_with(|| RoomUser {
            user: session.user.clone(),
            joined_at: now,
            sessions: 0,
            moderator: false,
            voiced: false,
        });
        entry.sessions += 1;
        Added::New { first_of_user: entry.sessions == 1 }
    }

    /// Queues `first`, then every frame held back since [`Room::add`] but
    /// messages up to `upto` (the history in `first` has them), and lets
    /// later frames through directly.
    pub fn open(&mut self, session: SessionId, first: &Frame, upto: u64) {
        if let Some(m) = self.members.iter_mut().find(|m| m.session.id == session) {
            m.floor = m.floor.max(upto);
            m.session.send(first);
            for (frame, seq) in m.pending.take().unwrap_or_default() {
                if seq == 0 || seq > upto {
                    m.session.send(&frame);
                }
            }
        }
    }

    /// Removes a session. Returns whether it was the last of its user here.
    pub fn remove(&mut self, session: SessionId) -> Option<bool> {
        let i = self.members.iter().position(|m| m.session.id == session)?;
        let m = self.members.swap_remove(i);
        let key = m.session.nick().key();
        let last = match self.users.get_mut(key) {
            Some(u) if u.sessions > 1 => {
                u.sessions -= 1;
                false
            }
            _ => {
                self.users.remove(key);
                true
            }
        };
        Some(last)
    }

    /// Hands a frame to every member session for which `to` is true.
    pub fn send(&mut self, frame: &Frame, to: impl FnMut(&SessionHandle) -> bool) {
        self.send_seq(frame, 0, to);
    }

    /// [`Room::send`] for a message frame with its `seq`.
    pub fn send_seq(&mut self, frame: &Frame, seq: u64, mut to: impl FnMut(&SessionHandle) -> bool) {
        for m in &mut self.members {
            if (seq != 0 && seq <= m.floor) || !to(&m.session) {
                continue;
            }
            match &mut m.pending {
                Some(held) => held.push((frame.clone(), seq)),
                None => {
                    m.session.send(frame);
                }
            }
        }
    }

    /// Empties the room, returning the member sessions.
    pub fn drain(&mut self) -> Vec<Arc<SessionHandle>> {
        self.users.clear();
        self.members.drain(..).map(|m| m.session).collect()
    }

    /// Sets a user's roles as listed (see [`RoomUser`]).
    pub fn show_roles(&mut self, nick_key: &str, moderator: bool, voiced: bool) {
        if let Some(u) = self.users.get_mut(nick_key) {
            (u.moderator, u.voiced) = (moderator, voiced);
        }
    }

    /// Recomputes a user's listed roles from its sessions still here (one
    /// of them left). Locks only that user's sessions (lock order: the
    /// room, then a session's rooms).
    pub fn recount_roles(&mut self, room_key: &str, nick_key: &str) {
        let (mut moderator, mut voiced) = (false, false);
        for m in self.members.iter().filter(|m| &**m.session.nick().key() == nick_key) {
            if let Some(r) = m.session.rooms().iter().find(|r| &*r.key == room_key) {
                moderator |= r.moderator;
                voiced |= r.voiced;
            }
        }
        self.show_roles(nick_key, moderator, voiced);
    }

    /// The members as `joined` and `room_status` list them, one per user.
    pub fn member_views(&self) -> Vec<MemberView> {
        let mut v: Vec<MemberView> = self
            .users
            .values()
            .map(|u| {
                let shown = u.user.shown();
                MemberView {
                    nick: u.user.nick.shown().clone(),
                    display_name: shown.display_name,
                    avatar: shown.avatar,
                    status: shown.status,
                    joined_at: u.joined_at,
                    away: u.user.away.load(Ordering::Relaxed),
                    moderator: u.moderator,
                    voiced: u.voiced,
                }
            })
            .collect();
        v.sort_by(|a, b| a.joined_at.cmp(&b.joined_at).then_with(|| a.nick.cmp(&b.nick)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::wildcard;

    #[test]
    fn masks_match_with_wildcards() {
        let m = |p: &str, t: &str| wildcard(p.as_bytes(), t.as_bytes());
        assert!(m("bar!*@*", "bar!bar@chat"));
        assert!(m("*!*@*", "x!y@z"));
        assert!(m("b?r!*", "bar!bar@chat"));
        assert!(!m("bar!*@*", "barbar!barbar@chat"));
        assert!(!m("bar", "bar!bar@chat"));
        assert!(m("*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaab"));
        assert!(!m("*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
    }
}
