//! Sessions, nicks and room membership, cluster-wide (claim.lua,
//! release.lua, join.lua, leave.lua, who.lua, away.lua, destroy.lua).

use super::*;
use crate::model::Role;

/// A member as the room's members hash keeps it.
#[derive(Serialize, Deserialize)]
struct MemberRecord {
    nick: Arc<str>,
    display_name: Arc<str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    avatar: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "str::is_empty")]
    status: Arc<str>,
    joined_at: i64,
}

impl RedisBus {
    /// Claims the session's nick cluster-wide; false if another identity
    /// (or another guest) holds it on some node.
    pub async fn claim(&self, session: &SessionHandle) -> Result<bool, ProtoError> {
        let nick = session.nick();
        let user = &session.user;
        let env = self.status_envelope(nick.as_str(), true, user.away.load(Ordering::Relaxed));
        let mut inv = self.scripts.claim.prepare_invoke();
        inv.key(self.key(&format!("os:{}", nick.key())))
            .key(self.key(&format!("on:{}", nick.key())))
            .key(self.node_key(&self.node))
            .key(self.all_chan())
            .arg(self.member(session))
            .arg(&*user.identity)
            .arg(nick.as_str())
            .arg(online_entry(session))
            .arg(env)
            .arg(if user.away.load(Ordering::Relaxed) { "1" } else { "0" });
        let claimed: i64 = self.run(inv).await?;
        Ok(claimed == 1)
    }

    /// Registers a new local session cluster-wide.
    pub async fn connected(&self, session: &Arc<SessionHandle>) -> Result<(), ProtoError> {
        let nick = session.nick();
        self.subscribe(Chan::User(nick.key().clone())).await?;
        if self.claim(session).await? {
            Ok(())
        } else {
            Err(ProtoError::new(crate::protocol::ErrorCode::NickTaken, format!("the nick `{nick}` is taken")))
        }
    }

    /// Unregisters a session that left the hub: its rooms (members see
    /// `quit`), then its nick (watchers see it go offline with its last
    /// session).
    pub async fn disconnected(&self, session: &SessionHandle, rooms: Vec<crate::hub::RoomRef>) {
        if self.hub.hushed() {
            return; // shutting down: `shutdown` unregisters every session at once
        }
        let reason = session.parting();
        let quit = Parting { reason: reason.as_deref(), ..Parting::QUIT };
        for r in rooms {
            if self.unregister_member(session, &r.key, &r.name, Some(quit)).await.is_err() {
                self.dirty.store(true, Ordering::Relaxed);
            }
            self.unsubscribe(Chan::Room(r.key));
        }
        let nick = session.nick();
        let env = self.status_envelope(nick.as_str(), false, false);
        let mut inv = self.scripts.release.prepare_invoke();
        inv.key(self.key(&format!("os:{}", nick.key())))
            .key(self.key(&format!("on:{}", nick.key())))
            .key(self.node_key(&self.node))
            .key(self.all_chan())
            .arg(self.member(session))
            .arg(online_entry(session))
            .arg(env);
        if self.run::<i64>(inv).await.is_err() {
            self.dirty.store(true, Ordering::Relaxed);
        }
        self.unsubscribe(Chan::User(nick.key().clone()));
    }

    /// A `status` envelope for the watchers of `nick` (as shown).
    pub(super) fn status_envelope(&self, nick: &str, online: bool, away: bool) -> String {
        let status = encode(&ServerFrame::Status { nick, online, away, last_seen: Some(now_ms()) });
        let code = crate::protocol::server::status_code(online, away).to_string();
        envelope::envelope(Kind::Status, &self.node, None, &nick.to_ascii_lowercase(), &code, &status)
    }

    /// Is the user online anywhere, and how.
    pub async fn online(&self, nick_key: &str) -> Result<Option<Online>, ProtoError> {
        let mut conn = self.conn()?;
        let (name, id, away): (Option<String>, Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.key(&format!("on:{nick_key}")))
            .arg("name")
            .arg("id")
            .arg("away")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(&e))?;
        Ok(name.map(|n| Online {
            nick: n.into(),
            id: id.unwrap_or_default().into(),
            away: away.as_deref() == Some("1"),
        }))
    }

    pub async fn set_away(&self, session: &SessionHandle, away: bool) -> Result<(), ProtoError> {
        let nick = session.nick();
        let env = self.status_envelope(nick.as_str(), true, away);
        let mut inv = self.scripts.away.prepare_invoke();
        inv.key(self.key(&format!("on:{}", nick.key())))
            .key(self.all_chan())
            .arg(if away { "1" } else { "0" })
            .arg(env);
        let _: i64 = self.run(inv).await?;
        Ok(())
    }

    // ---- rooms -------------------------------------------------------------------

    /// Registers a session as a member of a room cluster-wide; the members
    /// hear of the user's first session there. Returns the room's seq
    /// counter and its members.
    pub(super) async fn register_member(
        &self,
        session: &SessionHandle,
        room_key: &str,
        room_name: &str,
    ) -> Result<(u64, Vec<MemberView>), ProtoError> {
        let nick = session.nick();
        let shown = session.user.shown();
        let view = serde_json::to_string(&MemberRecord {
            nick: nick.shown().clone(),
            display_name: shown.display_name,
            avatar: shown.avatar,
            status: shown.status,
            joined_at: now_ms(),
        })
        .unwrap_or_default();
        let presence = encode(&ServerFrame::Presence {
            room: room_name,
            nick: nick.as_str(),
            event: "join",
            reason: None,
            by: None,
        });
        let env = envelope::envelope(Kind::Frame, &self.node, None, nick.key(), "", &presence);
        let mut inv = self.scripts.join.prepare_invoke();
        inv.key(self.key(&format!("rs:{room_key}:{}", nick.key())))
            .key(self.key(&format!("rm:{room_key}")))
            .key(self.key("rooms"))
            .key(self.node_key(&self.node))
            .key(self.key(&format!("seq:{}", Conv::Room(room_key.into()).storage_key())))
            .key(self.chan_name(&Chan::Room(room_key.into())))
            .arg(self.member(session))
            .arg(nick.key().as_ref())
            .arg(view)
            .arg(room_key)
            .arg(room_name)
            .arg(member_entry(room_key, session))
            .arg(env)
            .arg(&self.prefix);
        let (_first, seq, members, away): (i64, u64, Vec<String>, Vec<String>) = self.run(inv).await?;
        Ok((seq, member_views(&members, &away)))
    }

    /// Unregisters a session from a room; with `event`, the members hear of
    /// the user's last session leaving.
    pub(super) async fn unregister_member(
        &self,
        session: &SessionHandle,
        room_key: &str,
        room_name: &str,
        how: Option<Parting<'_>>,
    ) -> Result<(), ProtoError> {
        let nick = session.nick();
        let env = match how {
            Some(Parting { event, reason, by }) => {
                // Not to the user itself: it may be back in the room by the
                // time this arrives.
                let presence =
                    encode(&ServerFrame::Presence { room: room_name, nick: nick.as_str(), event, reason, by });
                envelope::envelope(Kind::Frame, &self.node, None, nick.key(), "", &presence)
            }
            None => String::new(),
        };
        let mut inv = self.scripts.leave.prepare_invoke();
        inv.key(self.key(&format!("rs:{room_key}:{}", nick.key())))
            .key(self.key(&format!("rm:{room_key}")))
            .key(self.key("rooms"))
            .key(self.node_key(&self.node))
            .key(self.chan_name(&Chan::Room(room_key.into())))
            .arg(self.member(session))
            .arg(nick.key().as_ref())
            .arg(room_key)
            .arg(member_entry(room_key, session))
            .arg(env);
        let _: i64 = self.run(inv).await?;
        Ok(())
    }

    /// A `join`, cluster-wide: enters the local room (holding the session's
    /// frames back), makes sure the node hears the room, and registers the
    /// membership. On failure the session is not in the room.
    pub async fn join_begin(
        &self,
        session: &Arc<SessionHandle>,
        room: &Name,
        record: Option<RoomRecord>,
        role: Option<Role>,
    ) -> Result<JoinStart, ProtoError> {
        let mut start = self.hub.join_begin(session, room, record, role);
        let key = room.key();
        let registered = async {
            self.subscribe(Chan::Room(key.clone())).await?;
            self.register_member(session, key, &start.name).await
        };
        match registered.await {
            Ok((seq, members)) => {
                start.seq = start.seq.max(seq);
                start.members = members;
                if start.created {
                    self.refresh_gate(key).await;
                }
                Ok(start)
            }
            Err(e) => {
                if !start.already {
                    // The script may have run (a timeout): undo it, or
                    // leave it to the next reconciliation.
                    self.hub.leave(session, key, Parting::LEAVE);
                    if self.unregister_member(session, key, &start.name, None).await.is_err() {
                        self.dirty.store(true, Ordering::Relaxed);
                    }
                    self.unsubscribe(Chan::Room(key.clone()));
                }
                Err(e)
            }
        }
    }

    /// A room made live here read its settings before this node heard the
    /// room's changes: one made in between (on another node) would be lost.
    /// Read again now that the node hears them; a change heard meanwhile
    /// is newer and stays.
    async fn refresh_gate(&self, room_key: &str) {
        let Some(seen) = self.hub.gate_gen(room_key) else { return };
        let read = async {
            let record = self.store.room(room_key).await?;
            let bans = self.store.room_bans(room_key).await?;
            Ok::<_, crate::store::StoreError>((record, bans))
        };
        match read.await {
            Ok((record, bans)) => {
                let modes = record.map(|r| r.modes).unwrap_or_default();
                let gate = crate::hub::Gate {
                    moderated: modes.moderated,
                    secret: modes.secret,
                    bans: bans.iter().map(|b| b.mask.as_str().into()).collect(),
                };
                self.hub.set_gate_if(room_key, gate, seen);
            }
            Err(e) => tracing::warn!(room = room_key, error = %e, "could not read a room's settings again"),
        }
    }

    pub async fn leave(&self, session: &Arc<SessionHandle>, room_key: &str, how: Parting<'_>) -> Option<Arc<str>> {
        let name = self.hub.leave(session, room_key, how)?;
        if self.unregister_member(session, room_key, &name, Some(how)).await.is_err() {
            self.dirty.store(true, Ordering::Relaxed);
        }
        self.unsubscribe(Chan::Room(room_key.into()));
        Some(name)
    }

    /// `who`, cluster-wide: the room's name and members, if it is live.
    pub async fn who(&self, room_key: &str) -> Result<Option<(Arc<str>, Vec<MemberView>)>, ProtoError> {
        let mut inv = self.scripts.who.prepare_invoke();
        inv.key(self.key(&format!("rm:{room_key}"))).key(self.key("rooms")).arg(room_key).arg(&self.prefix);
        let found: Option<(String, Vec<String>, Vec<String>)> = self.run(inv).await?;
        Ok(found.map(|(name, members, away)| (name.into(), member_views(&members, &away))))
    }

    /// The live rooms cluster-wide: key → (name, number of users).
    pub async fn live_rooms(&self) -> Result<BTreeMap<String, (String, usize)>, ProtoError> {
        let mut conn = self.conn()?;
        let rooms: BTreeMap<String, String> = conn.hgetall(self.key("rooms")).await.map_err(|e| self.failed(&e))?;
        if rooms.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut pipe = redis::pipe();
        for key in rooms.keys() {
            pipe.hlen(self.key(&format!("rm:{key}")));
        }
        let counts: Vec<usize> = pipe.query_async(&mut conn).await.map_err(|e| self.failed(&e))?;
        Ok(rooms.into_iter().zip(counts).map(|((k, name), n)| (k, (name, n))).collect())
    }

    pub async fn room_name(&self, room_key: &str) -> Result<Option<Arc<str>>, ProtoError> {
        let mut conn = self.conn()?;
        let name: Option<String> = conn.hget(self.key("rooms"), room_key).await.map_err(|e| self.failed(&e))?;
        Ok(name.map(Into::into))
    }

    /// Sessions of the user in the room, cluster-wide.
    pub async fn sessions_in(&self, room_key: &str, nick_key: &str) -> Result<usize, ProtoError> {
        let mut conn = self.conn()?;
        conn.scard(self.key(&format!("rs:{room_key}:{nick_key}"))).await.map_err(|e| self.failed(&e))
    }

    /// Sends an envelope to a room's nodes, a user's nodes, or every node.
    pub async fn send(&self, to: Option<Chan>, env: String) -> Result<(), ProtoError> {
        let channel = match &to {
            Some(chan) => self.chan_name(chan),
            None => self.all_chan(),
        };
        self.publish_raw(&channel, &env).await
    }

    /// Destroys a room everywhere: every node removes its members, and the
    /// room's buffer and seq counter go (the caller archived the buffer
    /// first). Returns how many users were in it.
    pub async fn destroy(&self, room_key: &str) -> Result<usize, ProtoError> {
        let users = self.who(room_key).await?.map_or(0, |(_, m)| m.len());
        let conv = Conv::Room(room_key.into()).storage_key();
        let mut inv = self.scripts.destroy.prepare_invoke();
        inv.key(self.key(&format!("seq:{conv}")))
            .key(self.key(&format!("h:{conv}")))
            .key(self.key(&format!("gone:{conv}")));
        let _: i64 = self.run(inv).await?;
        let env = envelope::envelope(Kind::Destroy, &self.node, None, "", "", "");
        self.send(Some(Chan::Room(room_key.into())), env).await?;
        Ok(users)
    }
}

/// Member views from a members hash (nick, record, ...) and away flags.
fn member_views(flat: &[String], away: &[String]) -> Vec<MemberView> {
    let mut v: Vec<MemberView> = flat
        .chunks_exact(2)
        .zip(away.iter().map(|a| a == "1").chain(std::iter::repeat(false)))
        .filter_map(|(kv, away)| {
            let r: MemberRecord = serde_json::from_str(&kv[1]).ok()?;
            Some(MemberView {
                nick: r.nick,
                display_name: r.display_name,
                avatar: r.avatar,
                status: r.status,
                joined_at: r.joined_at,
                away,
                // Roles live in each node's sessions: not in the cluster's
                // member lists.
                moderator: false,
                voiced: false,
            })
        })
        .collect();
    v.sort_by(|a, b| a.joined_at.cmp(&b.joined_at).then_with(|| a.nick.cmp(&b.nick)));
    v
}
