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
    /// The `seq` of the newest message handed to the members.
    pub last_seq: u64,
    /// Created private through the API: not listed by `rooms`.
    pub private: bool,
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
        Room { name, topic, last_seq, private: false, members: Vec::new(), users: HashMap::new() }
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
                }
            })
            .collect();
        v.sort_by(|a, b| a.joined_at.cmp(&b.joined_at).then_with(|| a.nick.cmp(&b.nick)));
        v
    }
}
