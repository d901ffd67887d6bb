//! What each client frame does, for one identified session. Handlers check
//! the limits the parser cannot (rates, sizes, membership), call the hub or
//! hand a message to the bus, and reply. A handler's `Err` becomes an
//! `error` frame echoing the request's `id`; the connection stays usable.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::Value;
use tokio::sync::mpsc;
use ulid::Ulid;

use crate::app::App;
use crate::app::UserRef;
use crate::auth::{self, Identity, IdentityKind};
use crate::cluster::Except;
use crate::hub::{Route, SessionHandle, status_code};
use crate::protocol::server::{Conv, Frame, Origin, Place, ServerInfo, StoredMessage, UserView};
use crate::protocol::{
    ClientFrame, ErrorCode, FrameId, Name, ProtoError, Request, ServerFrame, Target, encode, now_ms,
};
use crate::store::{HistoryQuery, NewMessage, Page, ProfileUpdate, Role};

/// Receivers treat `typing: true` as lapsed after this long without a repeat.
const TYPING_LAPSE: Duration = Duration::from_secs(6);

/// How long a connected guest's token stays valid if nothing ends it (the
/// server died): its last session's end shortens it to `auth.guest_grace`.
const GUEST_TOKEN_MAX: Duration = Duration::from_secs(86_400);

/// One identified connection's state, owned by its reader task.
pub struct Conn {
    pub app: Arc<App>,
    pub session: Arc<SessionHandle>,
    /// Who this is, as `hello` established it.
    identity: Identity,
    /// `say`, `event`, `typing`.
    say_bucket: DefaultDirectRateLimiter,
    /// Every other frame.
    request_bucket: DefaultDirectRateLimiter,
    /// Where this session last said it was typing, and when.
    typing: Vec<(Conv, Instant)>,
    /// `welcome.token`: a session token for this user's HTTP calls, and for
    /// a guest the way back to the same identity (another tab, a reload).
    token: Option<String>,
}

fn bucket(rate: u32, burst: u32) -> DefaultDirectRateLimiter {
    let nz = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::per_second(nz(rate)).allow_burst(nz(burst)))
}

fn unavailable<E: std::fmt::Display>(e: E) -> ProtoError {
    tracing::warn!(error = %e, "storage error");
    ProtoError::unavailable()
}

fn not_in_room(room: &Name) -> ProtoError {
    ProtoError::new(ErrorCode::NotInRoom, format!("you are not in `{room}`: join it first"))
}

impl Conn {
    /// Handles `hello`: registers the session with the hub.
    pub async fn connect(
        app: &Arc<App>,
        nick: Option<Name>,
        password: Option<String>,
        token: Option<String>,
        ip: IpAddr,
    ) -> Result<(Conn, mpsc::Receiver<Frame>), ProtoError> {
        let auth = &app.config.auth;
        // The token to hand back in `welcome`: the one given, or a new one.
        let (identity, token) = match (nick, password, token) {
            (_, _, Some(token)) => (auth::from_token(&app.store, auth, &token).await?, Some(token)),
            (Some(nick), Some(password), None) => {
                (auth::login(&app.store, &app.login_throttle, &nick, &password, Some(ip)).await?, None)
            }
            (Some(nick), None, None) => {
                if !auth.guests {
                    return Err(ProtoError::new(
                        ErrorCode::Unauthorized,
                        "guests are not allowed here: log in with `password`, or bring a `token`",
                    ));
                }
                auth::check_not_reserved(&nick, auth)?;
                auth::check_free_for_guest(&app.store, &nick).await?;
                (Identity::guest(nick, crate::ids::new_guest()), None)
            }
            (None, _, None) => return Err(ProtoError::invalid("`nick` is missing")),
        };
        auth::check_not_reserved(&identity.nick, auth)?;
        let (session, rx) = app.bus.connect(&identity, app.close_all.child_token()).await?;
        // Storage that refuses writes (read-only, down) does not keep anyone
        // out: the session then has no new token (`welcome` without one).
        let token = match token {
            Some(t) => {
                if identity.is_guest() {
                    // Back within the grace period: the token lives on.
                    let until = now_ms() + GUEST_TOKEN_MAX.as_millis() as i64;
                    if let Err(e) = app.store.expire_sessions(&identity.id, until).await {
                        tracing::warn!(error = %e, "could not renew a guest's token");
                    }
                }
                Some(t)
            }
            None => new_session_token(app, &identity).await.ok(),
        };
        let l = &app.config.limits;
        let conn = Conn {
            app: app.clone(),
            session,
            identity,
            say_bucket: bucket(l.rate_per_sec, l.burst),
            request_bucket: bucket(l.requests_per_sec, l.requests_burst),
            typing: Vec::new(),
            token,
        };
        Ok((conn, rx))
    }

    /// After the session has left the hub: a guest whose last session this
    /// was keeps its identity (nick and token) for `auth.guest_grace`, then
    /// it ends.
    pub async fn ended(&self) {
        if !self.identity.is_guest() {
            return;
        }
        match self.app.bus.online(self.identity.nick.key()).await {
            Ok(Some(o)) if o.id == self.identity.id => return, // another tab is still here
            Ok(_) => {}
            Err(_) => return, // the cluster cannot tell: the token lives out its time
        }
        let until = now_ms() + self.app.config.auth.guest_grace.as_millis() as i64;
        if let Err(e) = self.app.store.expire_sessions(&self.identity.id, until).await {
            tracing::warn!(error = %e, "could not end a guest's token");
        }
    }

    /// Sends `welcome`, then joins the configured rooms (those the user may
    /// enter).
    pub async fn welcome(&mut self, id: Option<&FrameId>) {
        let app = self.app.clone();
        let rooms: Vec<Name> = app
            .config
            .rooms
            .auto_join
            .iter()
            .filter_map(|r| Name::room(r).ok())
            .filter(|r| self.identity.may_enter(r))
            .collect();
        let shown: Vec<Arc<str>> = rooms.iter().map(|r| r.shown().clone()).collect();
        let nick = self.session.nick();
        let user = &self.session.user;
        self.reply(&ServerFrame::Welcome {
            id,
            session: &format!("s-{}", self.session.id),
            nick: nick.as_str(),
            user: UserView {
                nick: nick.as_str(),
                display_name: &user.display_name,
                avatar: user.avatar.as_deref(),
                guest: user.guest,
                admin: user.admin,
            },
            rooms: &shown,
            token: self.token.as_deref(),
            server: ServerInfo { name: &app.config.server.name, version: env!("CARGO_PKG_VERSION"), node: &app.node },
            limits: &app.limits_view,
        });
        if let Err(e) = app.store.user_seen(nick.as_str(), now_ms()).await {
            tracing::debug!(error = %e, "could not record last_seen");
        }
        if let IdentityKind::Site { .. } = self.identity.kind {
            // The site's word on name and avatar is kept for profile lookups.
            let update = ProfileUpdate {
                display_name: self.identity.display_name.clone(),
                avatar: self.identity.avatar.clone(),
                ..Default::default()
            };
            if let Err(e) = app.store.update_profile(nick.key(), &update).await {
                tracing::debug!(error = %e, "could not record the site's profile");
            }
        }
        for room in &rooms {
            if let Err(e) = self.join(None, room, None, None).await {
                self.reply_error(None, &e);
            }
        }
    }

    /// Joins the rooms the server admitted this session to (the API made
    /// its user a member), as if it had asked.
    pub async fn join_admitted(&mut self, rooms: Vec<Arc<str>>) {
        for room in rooms {
            let Ok(room) = Name::room(&room) else { continue };
            if self.session.joined(room.key()).is_some() {
                continue;
            }
            if let Err(e) = self.join(None, &room, None, None).await {
                self.reply_error(None, &e);
            }
        }
    }

    /// Parses and handles one text frame.
    pub async fn handle(&mut self, text: &str) {
        match ClientFrame::parse(text) {
            Ok(ClientFrame { id, request }) => {
                let bare_ack = request.replies_with_bare_ack();
                // Boxed: the work of one frame (store queries, the hook) is
                // large and short-lived; the connection's own future stays small.
                match Box::pin(self.dispatch(id.as_ref(), request)).await {
                    Ok(()) if bare_ack && id.is_some() => self.reply(&ServerFrame::ack(id.as_ref())),
                    Ok(()) => {}
                    Err(e) => self.reply_error(id.as_ref(), &e),
                }
            }
            Err(e) => self.reply_error(e.id.as_ref(), &e.error),
        }
    }

    pub fn reply(&self, frame: &ServerFrame<'_>) {
        self.session.send(&encode(frame));
    }

    pub fn reply_error(&self, id: Option<&FrameId>, e: &ProtoError) {
        tracing::debug!(session = self.session.id, code = ?e.code, message = %e.message, "request refused");
        self.app.metrics.error(e.code);
        self.reply(&ServerFrame::error(id, e));
    }

    async fn dispatch(&mut self, id: Option<&FrameId>, request: Request) -> Result<(), ProtoError> {
        let bucket = match request {
            Request::Say { .. } | Request::Event { .. } | Request::Typing { .. } => &self.say_bucket,
            _ => &self.request_bucket,
        };
        if let Err(not_until) = bucket.check() {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let mut e = ProtoError::new(ErrorCode::RateLimited, "too many frames: slow down");
            e.retry_after_ms = Some(wait.as_millis().max(1) as u64);
            return Err(e);
        }
        match request {
            Request::Hello { .. } => Err(ProtoError::invalid("already identified: `hello` may be sent only once")),
            Request::Join { room, since, history } => self.join(id, &room, since, history).await,
            Request::Leave { room } => self.leave(id, &room).await,
            Request::Rooms => {
                let mut rooms = self.app.bus.room_list().await?;
                // Rooms created through the API exist with no members too.
                let named = self.app.store.list_rooms().await.map_err(unavailable)?;
                for r in named.into_iter().filter(|r| r.managed) {
                    if !rooms.iter().any(|l| l.name.eq_ignore_ascii_case(&r.name)) {
                        let (name, topic, private) = (r.name, r.topic, r.private);
                        rooms.push(crate::protocol::server::RoomSummary { name, topic, members: 0, private });
                    }
                }
                rooms.retain(|r| !r.private);
                self.reply(&ServerFrame::Rooms { id, rooms: &rooms });
                Ok(())
            }
            Request::Who { room } => {
                self.may_look_into(&room).await?;
                let (name, topic, members) = match self.app.bus.who(room.key()).await? {
                    Some(live) => live,
                    // Created through the API, and empty now.
                    None => match self.app.store.room(room.key()).await.map_err(unavailable)? {
                        Some(r) if r.managed => (r.name, r.topic, Vec::new()),
                        _ => return Err(no_such_room(&room)),
                    },
                };
                let count = members.len();
                self.reply(&ServerFrame::RoomStatus { id, room: &name, topic: &topic, count, members: &members });
                Ok(())
            }
            Request::Topic { room, topic } => self.topic(id, &room, topic).await,
            Request::Kick { room, nick } => self.kick(id, &room, &nick).await,
            Request::Say { target, text, attachments } => self.say(id, target, &text, attachments).await,
            Request::History { conv, before, after, limit } => self.history(id, conv, before, after, limit).await,
            Request::Edit { msg_id, text } => self.edit(id, msg_id, &text).await,
            Request::Delete { msg_id } => self.delete(id, msg_id).await,
            Request::Read { conv, seq } => self.read(conv, seq).await,
            Request::Typing { target, active } => self.typing(target, active).await,
            Request::Event { target, name, data } => self.event(target, &name, &data).await,
            Request::Watch { nicks } => self.watch(&nicks).await,
            Request::Unwatch { nicks } => {
                self.app.hub.unwatch(&self.session, &nicks);
                Ok(())
            }
            Request::Away { away } => self.app.bus.set_away(&self.session, away).await,
            Request::Ping => {
                self.reply(&ServerFrame::Pong { id });
                Ok(())
            }
        }
    }

    // ---- rooms ---------------------------------------------------------------

    /// `forbidden` if `room` is private and this user neither is in it, nor
    /// a member, nor a site admin: its topic and members are not for others.
    async fn may_look_into(&self, room: &Name) -> Result<(), ProtoError> {
        if self.session.joined(room.key()).is_some() || self.identity.admin {
            return Ok(());
        }
        let private = self.app.store.room(room.key()).await.map_err(unavailable)?.is_some_and(|r| r.private);
        if private && self.app.store.member_role(room.key(), &self.identity.id).await.map_err(unavailable)?.is_none() {
            return Err(ProtoError::new(ErrorCode::Forbidden, format!("`{room}` is private: members only")));
        }
        Ok(())
    }

    /// Whether this user may enter `room` (token `rooms` claim, private
    /// room membership, the authorization hook); if so, whether it
    /// moderates the room.
    async fn access(&self, room: &Name, record: Option<&crate::store::RoomRecord>) -> Result<bool, ProtoError> {
        let forbidden = |why: String| ProtoError::new(ErrorCode::Forbidden, why);
        if !self.identity.may_enter(room) {
            return Err(forbidden(format!("your token does not allow the room `{room}`")));
        }
        // Memberships and roles belong to nicks; a guest proves no claim to
        // its nick, so it holds none (else a guest could take an offline
        // site user's nick and enter its private rooms, or moderate).
        let role = if self.identity.is_guest() {
            None
        } else {
            self.app.store.member_role(room.key(), &self.identity.id).await.map_err(unavailable)?
        };
        if record.is_some_and(|r| r.private) && role.is_none() && !self.identity.admin {
            return Err(forbidden(format!("`{room}` is private: members only")));
        }
        if let Some(hook) = &self.app.hook
            && !hook.allows(&self.identity, room, "join").await
        {
            return Err(forbidden(format!("you may not join `{room}`")));
        }
        Ok(self.identity.admin || role == Some(Role::Moderator))
    }

    async fn join(
        &mut self,
        id: Option<&FrameId>,
        room: &Name,
        since: Option<u64>,
        history: Option<u64>,
    ) -> Result<(), ProtoError> {
        let app = self.app.clone();
        let (key, limits) = (room.key(), &app.config.limits);
        let already = self.session.joined_room(key).is_some();
        if !already && self.session.rooms().len() >= limits.max_rooms_per_session {
            return Err(ProtoError::new(
                ErrorCode::Forbidden,
                format!("a session may be in at most {} rooms: leave one first", limits.max_rooms_per_session),
            ));
        }
        let record = app.store.room(key).await.map_err(unavailable)?;
        // Rooms named in `rooms.auto_join` exist by configuration.
        let configured = app.config.rooms.auto_join.iter().any(|r| r.eq_ignore_ascii_case(key));
        if record.is_none()
            && !app.config.rooms.create_on_join
            && !configured
            && app.bus.room_name(key).await?.is_none()
        {
            return Err(no_such_room(room));
        }
        let moderator = self.access(room, record.as_ref()).await?;
        let start = app.bus.join_begin(&self.session, room, record, moderator).await?;
        let query = match since {
            Some(since) => HistoryQuery {
                after: Some(since),
                upto: Some(start.seq),
                limit: limits.history_max,
                ..Default::default()
            },
            None => HistoryQuery {
                upto: Some(start.seq),
                limit: history.map_or(limits.history_default, |h| (h as usize).min(limits.history_max)),
                ..Default::default()
            },
        };
        let forwards = query.after.is_some();
        let page = if query.limit == 0 {
            Page::default()
        } else {
            match app.bus.history(&Conv::Room(key.clone()), query).await {
                Ok(mut page) => {
                    super::limits::cap_page(&mut page, forwards, limits.history_max_bytes);
                    page
                }
                Err(e) => {
                    if !start.already {
                        app.bus.leave(&self.session, key, "leave").await;
                    }
                    return Err(unavailable(e));
                }
            }
        };
        let joined = encode(&ServerFrame::Joined {
            id,
            room: &start.name,
            topic: &start.topic,
            members: &start.members,
            seq: start.seq,
            history: &page.messages,
            more: page.more,
        });
        app.hub.join_finish(&self.session, key, &joined, start.seq);
        Ok(())
    }

    async fn leave(&mut self, id: Option<&FrameId>, room: &Name) -> Result<(), ProtoError> {
        let name = self.app.bus.leave(&self.session, room.key(), "leave").await.ok_or_else(|| not_in_room(room))?;
        self.typing.retain(|(c, _)| *c != Conv::Room(room.key().clone()));
        self.reply(&ServerFrame::Left { id, room: &name, reason: None, by: None });
        Ok(())
    }

    async fn topic(&mut self, id: Option<&FrameId>, room: &Name, topic: String) -> Result<(), ProtoError> {
        let joined = self.session.joined(room.key()).ok_or_else(|| not_in_room(room))?;
        let name = joined.name;
        let record = self.app.store.room(room.key()).await.map_err(unavailable)?;
        if record.is_some_and(|r| r.managed || r.private) && !joined.moderator {
            return Err(ProtoError::new(ErrorCode::Forbidden, format!("only moderators set the topic of `{name}`")));
        }
        let max = self.app.config.limits.max_topic;
        let chars = topic.chars().count();
        if chars > max {
            return Err(ProtoError::new(
                ErrorCode::TooLarge,
                format!("`topic` is {chars} characters; the limit is {max}"),
            ));
        }
        let topic: Arc<str> = topic.trim().into();
        self.app.store.set_topic(room.key(), &name, &topic).await.map_err(unavailable)?;
        self.app.bus.set_topic(room.key(), topic, self.session.nick().as_str()).await?;
        self.reply(&ServerFrame::ack(id));
        Ok(())
    }

    /// A moderator removes a user's sessions from a room; from a private
    /// room, also from its member list, so that it cannot come back.
    async fn kick(&mut self, id: Option<&FrameId>, room: &Name, nick: &Name) -> Result<(), ProtoError> {
        let joined = self.session.joined(room.key()).ok_or_else(|| not_in_room(room))?;
        if !joined.moderator {
            return Err(ProtoError::new(ErrorCode::Forbidden, format!("only moderators kick from `{}`", joined.name)));
        }
        let record = self.app.store.room(room.key()).await.map_err(unavailable)?;
        let removed = match self.app.user_of(nick).await? {
            Some(user) if record.is_some_and(|r| r.private) => {
                self.app.store.remove_member(room.key(), &user.id).await.map_err(unavailable)?
            }
            _ => false,
        };
        let kicked = self.app.bus.kick(room.key(), nick.key(), self.session.nick().as_str()).await?;
        if kicked == 0 && !removed {
            return Err(ProtoError::new(ErrorCode::NotInRoom, format!("`{nick}` is not in `{}`", joined.name)));
        }
        self.reply(&ServerFrame::ack(id));
        Ok(())
    }

    // ---- messages ------------------------------------------------------------

    fn check_text(&self, text: &str, has_attachments: bool) -> Result<String, ProtoError> {
        crate::protocol::check_text(text, self.app.config.limits.max_text, has_attachments)
    }

    /// The other party of a DM: the user who holds the nick now (online),
    /// or the account or site user who owns it.
    async fn peer(&self, user: &Name) -> Result<UserRef, ProtoError> {
        if user.key() == self.session.nick().key() {
            return Err(ProtoError::invalid("`to`: you cannot send a direct message to yourself"));
        }
        self.app.user_of(user).await?.ok_or_else(|| {
            ProtoError::new(ErrorCode::NoSuchUser, format!("no user `{user}` is here or has an account"))
        })
    }

    async fn say(
        &mut self,
        id: Option<&FrameId>,
        target: Target,
        text: &str,
        attachments: Vec<String>,
    ) -> Result<(), ProtoError> {
        let text = self.check_text(text, !attachments.is_empty())?;
        // Typing state is kept by where it was shown (room, or nick).
        let typing_key = match &target {
            Target::Room(r) => Conv::Room(r.key().clone()),
            Target::User(u) => Conv::dm(self.session.nick().key(), u.key()),
            Target::Everyone => Conv::Everyone,
        };
        if let Some(first) = attachments.first() {
            // Uploads are not implemented yet: no id can name one.
            return Err(ProtoError::invalid(format!("`attachments`: no upload with id `{first}`")));
        }
        let me = self.session.nick().clone();
        let (conv, room, to) = match target {
            Target::Room(r) => {
                let name = self.session.joined_room(r.key()).ok_or_else(|| not_in_room(&r))?;
                if let Some(hook) = &self.app.hook
                    && !hook.allows(&self.identity, &r, "say").await
                {
                    return Err(ProtoError::new(ErrorCode::Forbidden, format!("you may not speak in `{r}`")));
                }
                (Conv::Room(r.key().clone()), Some(name), None)
            }
            Target::User(u) => {
                let peer = self.peer(&u).await?;
                (Conv::dm(&self.identity.id, &peer.id), None, Some(peer.nick))
            }
            Target::Everyone => {
                if !self.app.config.chat.allow_everyone {
                    return Err(ProtoError::new(ErrorCode::Forbidden, "messages to everyone are disabled here"));
                }
                (Conv::Everyone, None, None)
            }
        };
        let clear_typing = self.stop_typing(&typing_key);
        let msg = NewMessage {
            msg_id: Ulid::generate(),
            conv,
            room,
            to,
            from: me.shown().clone(),
            sender_id: self.identity.id.clone(),
            text,
            attachments,
            sent_at: now_ms(),
        };
        let route = Route { origin: Some(self.session.clone()), reply_id: id.cloned(), clear_typing, waiter: None };
        self.app.bus.publish(msg, route).await.map_err(|_| ProtoError::unavailable())
    }

    async fn history(
        &mut self,
        id: Option<&FrameId>,
        conv: Target,
        before: Option<u64>,
        after: Option<u64>,
        limit: Option<u64>,
    ) -> Result<(), ProtoError> {
        let limits = &self.app.config.limits;
        let limit = match limit {
            Some(0) => return Err(ProtoError::invalid("`limit` must be at least 1")),
            Some(n) => (n as usize).min(limits.history_max),
            None => limits.history_default,
        };
        let name: Arc<str>;
        let (conv, place) = match &conv {
            Target::Room(r) => {
                let record = self.app.store.room(r.key()).await.map_err(unavailable)?;
                if record.as_ref().is_some_and(|rec| rec.private) && self.session.joined(r.key()).is_none() {
                    return Err(ProtoError::new(ErrorCode::Forbidden, format!("`{r}` is private: join it to read it")));
                }
                name = match (self.app.bus.room_name(r.key()).await?, record) {
                    (Some(n), _) => n,
                    (None, Some(rec)) => rec.name,
                    (None, None) => return Err(no_such_room(r)),
                };
                (Conv::Room(r.key().clone()), Place::room(&name))
            }
            Target::User(u) => {
                if u.key() == self.session.nick().key() {
                    return Err(ProtoError::invalid("`with`: name the other party of the conversation"));
                }
                match self.app.user_of(u).await? {
                    Some(peer) => (Conv::dm(&self.identity.id, &peer.id), Place::with(u.as_str())),
                    // Nobody holds or owns the nick: there is no conversation to show.
                    None => {
                        let place = Place::with(u.as_str());
                        self.reply(&ServerFrame::History { id, place, messages: &[], more: false });
                        return Ok(());
                    }
                }
            }
            Target::Everyone => (Conv::Everyone, Place::everyone()),
        };
        let query = HistoryQuery { before, after, upto: None, limit };
        let mut page = self.app.bus.history(&conv, query).await.map_err(unavailable)?;
        super::limits::cap_page(&mut page, after.is_some(), self.app.config.limits.history_max_bytes);
        self.reply(&ServerFrame::History { id, place, messages: &page.messages, more: page.more });
        Ok(())
    }

    /// A message this session may change: its own (or, to delete, one in
    /// a room it moderates), still there.
    async fn changeable_message(&self, msg_id: Ulid, moderators_too: bool) -> Result<StoredMessage, ProtoError> {
        let missing = || ProtoError::new(ErrorCode::NoSuchMessage, format!("no message `{msg_id}`"));
        let msg = match self.app.store.message(msg_id).await.map_err(unavailable)? {
            Some(msg) => msg,
            None if self.app.bus.clustered() => {
                // Sent moments ago, it may still be in the cluster's buffer.
                if !self.app.bus.settle().await {
                    return Err(ProtoError::unavailable());
                }
                self.app.store.message(msg_id).await.map_err(unavailable)?.ok_or_else(missing)?
            }
            None => return Err(missing()),
        };
        let me = &self.identity.id;
        let visible = match &msg.conv {
            Conv::Dm(a, b) => a == me || b == me,
            Conv::Room(_) | Conv::Everyone => true,
        };
        if !visible || msg.deleted {
            return Err(missing());
        }
        let moderates = match &msg.conv {
            Conv::Room(key) => self.session.joined(key).is_some_and(|r| r.moderator) || self.identity.admin,
            Conv::Everyone => self.identity.admin,
            Conv::Dm(..) => false,
        };
        let own = msg.sender_id == *me;
        if !(own || moderators_too && moderates) {
            return Err(ProtoError::new(
                ErrorCode::Forbidden,
                if moderators_too {
                    "you may only delete your own messages, or any in a room you moderate"
                } else {
                    "you may only edit your own messages"
                },
            ));
        }
        Ok(msg)
    }

    async fn edit(&mut self, id: Option<&FrameId>, msg_id: Ulid, text: &str) -> Result<(), ProtoError> {
        let text = self.check_text(text, false)?;
        self.changeable_message(msg_id, false).await?;
        let at = now_ms();
        let msg = self.app.store.edit(msg_id, &text, at).await.map_err(unavailable)?;
        let msg = msg.ok_or_else(|| ProtoError::new(ErrorCode::NoSuchMessage, format!("no message `{msg_id}`")))?;
        let msg_id = msg.msg_id.to_string();
        self.app
            .bus
            .about_message(&msg, Some(self.session.id), |place| {
                encode(&ServerFrame::Edited { msg_id: msg_id.clone(), place, text: &msg.text, edited_at: at })
            })
            .await?;
        self.reply(&ServerFrame::ack(id));
        Ok(())
    }

    async fn delete(&mut self, id: Option<&FrameId>, msg_id: Ulid) -> Result<(), ProtoError> {
        self.changeable_message(msg_id, true).await?;
        let msg = self.app.store.delete(msg_id).await.map_err(unavailable)?;
        let msg = msg.ok_or_else(|| ProtoError::new(ErrorCode::NoSuchMessage, format!("no message `{msg_id}`")))?;
        let msg_id = msg.msg_id.to_string();
        self.app
            .bus
            .about_message(&msg, Some(self.session.id), |place| {
                encode(&ServerFrame::Deleted { msg_id: msg_id.clone(), place })
            })
            .await?;
        self.reply(&ServerFrame::ack(id));
        Ok(())
    }

    // ---- ephemeral signals ---------------------------------------------------

    async fn read(&mut self, conv: Target, seq: u64) -> Result<(), ProtoError> {
        let me = self.session.nick().clone();
        match conv {
            Target::Room(r) => {
                let name = self.session.joined_room(r.key()).ok_or_else(|| not_in_room(&r))?;
                let frame = encode(&ServerFrame::Read { place: Place::room(&name), nick: me.as_str(), seq });
                self.app.bus.to_room(r.key(), &frame, Except::Session(self.session.id)).await?;
            }
            Target::User(u) => {
                if u.key() == me.key() {
                    return Err(ProtoError::invalid("`with`: name the other party of the conversation"));
                }
                let theirs = encode(&ServerFrame::Read { place: Place::with(me.as_str()), nick: me.as_str(), seq });
                self.app.bus.to_user(u.key(), &theirs, None).await?;
                let mine = encode(&ServerFrame::Read { place: Place::with(u.as_str()), nick: me.as_str(), seq });
                self.app.bus.to_user(me.key(), &mine, Some(self.session.id)).await?;
            }
            Target::Everyone => {
                return Err(ProtoError::invalid("`everyone`: read receipts are for rooms and direct messages"));
            }
        }
        Ok(())
    }

    async fn typing(&mut self, target: Target, active: bool) -> Result<(), ProtoError> {
        let me = self.session.nick().clone();
        let conv = match &target {
            Target::Room(r) => {
                let name = self.session.joined_room(r.key()).ok_or_else(|| not_in_room(r))?;
                let origin = Origin { room: Some(&name), from: None };
                let frame = encode(&ServerFrame::Typing { origin, nick: me.as_str(), active });
                self.app.bus.to_room(r.key(), &frame, Except::User(me.key())).await?;
                Conv::Room(r.key().clone())
            }
            Target::User(u) => {
                if u.key() == me.key() {
                    return Err(ProtoError::invalid("`to`: you cannot type to yourself"));
                }
                let origin = Origin { room: None, from: Some(me.as_str()) };
                let frame = encode(&ServerFrame::Typing { origin, nick: me.as_str(), active });
                self.app.bus.to_user(u.key(), &frame, None).await?;
                Conv::dm(me.key(), u.key())
            }
            Target::Everyone => {
                return Err(ProtoError::invalid("`typing` goes to a room or a user"));
            }
        };
        self.typing.retain(|(c, _)| *c != conv);
        if active {
            self.typing.push((conv, Instant::now()));
        }
        Ok(())
    }

    /// Forgets the typing state for `conv`; true if it was still active,
    /// so that the message's arrival also clears the indicator.
    fn stop_typing(&mut self, conv: &Conv) -> bool {
        match self.typing.iter().position(|(c, _)| c == conv) {
            Some(i) => self.typing.swap_remove(i).1.elapsed() < TYPING_LAPSE,
            None => false,
        }
    }

    async fn event(&mut self, target: Target, name: &str, data: &Value) -> Result<(), ProtoError> {
        let max = self.app.config.limits.max_event_bytes;
        let size = serde_json::to_vec(data).map_or(usize::MAX, |v| v.len());
        if size > max {
            return Err(ProtoError::new(ErrorCode::TooLarge, format!("`data` is {size} bytes; the limit is {max}")));
        }
        let me = self.session.nick().clone();
        match &target {
            Target::Room(r) => {
                let room = self.session.joined_room(r.key()).ok_or_else(|| not_in_room(r))?;
                let origin = Origin { room: Some(&room), from: None };
                let frame = encode(&ServerFrame::Event { origin, nick: me.as_str(), name, data });
                self.app.bus.to_room(r.key(), &frame, Except::Session(self.session.id)).await?;
            }
            Target::User(u) => {
                if u.key() == me.key() {
                    return Err(ProtoError::invalid("`to`: you cannot send an event to yourself"));
                }
                if self.app.bus.online(u.key()).await?.is_none() {
                    return Err(ProtoError::new(ErrorCode::NoSuchUser, format!("`{u}` is not online")));
                }
                let origin = Origin { room: None, from: Some(me.as_str()) };
                let frame = encode(&ServerFrame::Event { origin, nick: me.as_str(), name, data });
                self.app.bus.to_user(u.key(), &frame, None).await?;
            }
            Target::Everyone => {
                return Err(ProtoError::invalid("`event` goes to a room or a user"));
            }
        }
        Ok(())
    }

    async fn watch(&mut self, nicks: &[Name]) -> Result<(), ProtoError> {
        // Asked again about a nick it watches, a session is answered even if
        // nothing changed.
        let before: Vec<Arc<str>> = self.session.watching().clone();
        self.app.hub.watch(&self.session, nicks, self.app.config.limits.max_watch)?;
        let mut seen: Vec<&Arc<str>> = Vec::with_capacity(nicks.len());
        for nick in nicks {
            if seen.contains(&nick.key()) {
                continue;
            }
            seen.push(nick.key());
            let (frame, code) = match self.app.bus.online(nick.key()).await? {
                Some(o) => (
                    encode(&ServerFrame::Status {
                        nick: &o.nick,
                        online: true,
                        away: o.away,
                        last_seen: Some(now_ms()),
                    }),
                    status_code(true, o.away),
                ),
                None => {
                    let last_seen = self.app.store.last_seen(nick.key()).await.map_err(unavailable)?;
                    let frame =
                        encode(&ServerFrame::Status { nick: nick.as_str(), online: false, away: false, last_seen });
                    (frame, status_code(false, false))
                }
            };
            self.app.hub.status_to(&self.session, nick.key(), &frame, code, before.contains(nick.key()));
        }
        Ok(())
    }
}

/// A new session token for `identity`, stored as its hash: an account's
/// lasts `auth.session_ttl`; a guest's lasts while it is connected (at most
/// a day, should the server die without ending it) and `auth.guest_grace`
/// after (see [`Conn::ended`]). Site users' tokens are the site's own.
async fn new_session_token(app: &App, identity: &Identity) -> Result<String, ProtoError> {
    if matches!(identity.kind, IdentityKind::Site { .. }) {
        return Err(ProtoError::internal()); // site tokens are always given back as they came
    }
    let (token, hash) = auth::new_session_token()?;
    let now = now_ms();
    let ttl = &app.config.auth.session_ttl;
    let ttl = if identity.is_guest() { GUEST_TOKEN_MAX } else { *ttl };
    let store = &app.store;
    if identity.is_guest() {
        store.delete_expired_sessions(now).await.map_err(unavailable)?;
    }
    store
        .create_session(&hash, &identity.id, identity.nick.as_str(), now, now + ttl.as_millis() as i64)
        .await
        .map_err(unavailable)?;
    Ok(token)
}

fn no_such_room(room: &Name) -> ProtoError {
    ProtoError::new(ErrorCode::NoSuchRoom, format!("there is no room `{room}`"))
}
