//! A connected user: one [`Session`] per connection of any door. It is
//! opened by `hello` (guest, password, or token), registered with the hub
//! and the bus, and ended when the door's connection ends. Frames for the
//! user arrive on the receiver [`Service::open`] returns, as protocol
//! frames; the door encodes them for its wire.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::hub::Outbound;

use super::Service;
use crate::auth;
use crate::hub::{CloseReason, SessionHandle, Shown};
use crate::model::{Identity, IdentityKind, ProfileUpdate};
use crate::protocol::server::Conv;
use crate::protocol::{ErrorCode, Name, ProtoError, now_ms};

/// How long a connected guest's token stays valid if nothing ends it (the
/// server died): its last session's end shortens it to `auth.guest_grace`.
const GUEST_TOKEN_MAX: Duration = Duration::from_secs(86_400);

/// What `hello` carries.
pub(crate) struct Hello {
    pub(crate) nick: Option<Name>,
    pub(crate) password: Option<String>,
    pub(crate) token: Option<String>,
}

/// One identified connection's state, owned by its door's reader.
pub(crate) struct Session {
    pub(super) svc: Arc<Service>,
    pub(super) handle: Arc<SessionHandle>,
    /// Who this is, as `hello` established it.
    pub(super) identity: Identity,
    /// Where this session last said it was typing, and when.
    pub(super) typing: Vec<(Conv, Instant)>,
    /// `welcome.token`: a session token for this user's HTTP calls, and for
    /// a guest the way back to the same identity (another tab, a reload).
    token: Option<String>,
    /// Whether member lists (`joined`, `who`) say who moderates and who is
    /// voiced: for the doors that show it (IRC's `@` and `+`).
    pub(super) member_roles: bool,
}

impl Service {
    /// Handles `hello`: establishes who this is and registers the session
    /// (its nick must be free cluster-wide). `closed` is the session's close
    /// signal (a child of the server's).
    pub(crate) async fn open(self: &Arc<Self>, hello: Hello, ip: IpAddr) -> Result<(Session, Outbound), ProtoError> {
        let auth = &self.config.auth;
        // The token to hand back in `welcome`: the one given, or a new one.
        let (identity, token) = match (hello.nick, hello.password, hello.token) {
            (_, _, Some(token)) => (auth::from_token(&self.store, auth, &token).await?, Some(token)),
            (Some(nick), Some(password), None) => {
                (auth::login(&self.store, &self.login_throttle, &nick, &password, Some(ip)).await?, None)
            }
            (Some(nick), None, None) => {
                if !auth.guests {
                    return Err(ProtoError::new(
                        ErrorCode::Unauthorized,
                        "guests are not allowed here: log in with `password`, or bring a `token`",
                    ));
                }
                auth::check_not_reserved(&nick, auth)?;
                auth::check_free_for_guest(&self.store, &nick).await?;
                (Identity::guest(nick, crate::model::ids::new_guest()), None)
            }
            (None, _, None) => return Err(ProtoError::invalid("`nick` is missing")),
        };
        auth::check_not_reserved(&identity.nick, auth)?;
        let closed = self.lifecycle.close_all.child_token();
        let (handle, rx) = self.bus.connect(&identity, closed).await?;
        // Storage that refuses writes (read-only, down) does not keep anyone
        // out: the session then has no new token (`welcome` without one).
        let token = match token {
            Some(t) => {
                if identity.is_guest() {
                    // Back within the grace period: the token lives on.
                    let until = now_ms() + GUEST_TOKEN_MAX.as_millis() as i64;
                    if let Err(e) = self.store.expire_sessions(&identity.id, until).await {
                        tracing::warn!(error = %e, "could not renew a guest's token");
                    }
                }
                Some(t)
            }
            None => self.new_session_token(&identity).await.ok(),
        };
        let session = Session { svc: self.clone(), handle, identity, typing: Vec::new(), token, member_roles: false };
        Ok((session, rx))
    }

    /// A new session token for `identity`, stored as its hash: an account's
    /// lasts `auth.session_ttl`; a guest's lasts while it is connected (at
    /// most a day, should the server die without ending it) and
    /// `auth.guest_grace` after (see [`Session::end`]). Site users' tokens
    /// are the site's own.
    pub(crate) async fn new_session_token(&self, identity: &Identity) -> Result<String, ProtoError> {
        if matches!(identity.kind, IdentityKind::Site { .. }) {
            return Err(ProtoError::internal()); // site tokens are always given back as they came
        }
        let (token, hash) = auth::new_session_token()?;
        let now = now_ms();
        let ttl = if identity.is_guest() { GUEST_TOKEN_MAX } else { self.config.auth.session_ttl };
        if identity.is_guest() {
            self.store.delete_expired_sessions(now).await?;
        }
        self.store
            .create_session(&hash, &identity.id, identity.nick.as_str(), now, now + ttl.as_millis() as i64)
            .await?;
        Ok(token)
    }
}

/// What `welcome` tells a new session (the door encodes it).
pub(crate) struct Welcome {
    /// The rooms the session is about to be joined to (`rooms.auto_join`
    /// that it may enter).
    pub(crate) rooms: Vec<Name>,
}

impl Session {
    /// Member lists from now on say who moderates and who is voiced.
    pub(crate) fn show_member_roles(&mut self) {
        self.member_roles = true;
    }

    /// Leaves the roles out of a member list unless this session shows them.
    pub(super) fn member_list(&self, members: &mut [crate::protocol::server::MemberView]) {
        if !self.member_roles {
            for m in members {
                (m.moderator, m.voiced) = (false, false);
            }
        }
    }

    pub(crate) fn handle(&self) -> &Arc<SessionHandle> {
        &self.handle
    }

    /// The token for `welcome` (taken: nothing needs it after, and an idle
    /// session should not keep it).
    pub(crate) fn take_token(&mut self) -> Option<String> {
        self.token.take()
    }

    pub(crate) fn service(&self) -> &Arc<Service> {
        &self.svc
    }

    /// What `welcome` says; records that the user was seen, and a site
    /// user's profile as its token tells it.
    pub(crate) async fn welcome(&self) -> Welcome {
        let svc = &self.svc;
        let rooms = self.welcome_rooms();
        let nick = self.handle.nick();
        if let Err(e) = svc.store.user_seen(nick.as_str(), now_ms()).await {
            tracing::debug!(error = %e, "could not record last_seen");
        }
        // Member lists show the stored status line (a guest has none).
        if !self.identity.is_guest() {
            match svc.store.account(nick.key()).await {
                Ok(Some(a)) if !a.status.is_empty() => {
                    let shown = Shown { status: a.status.into(), ..self.handle.user.shown() };
                    self.handle.user.set_shown(shown);
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "could not read the status line"),
            }
        }
        if let IdentityKind::Site { .. } = self.identity.kind {
            // The site's word on name and avatar is kept for profile lookups.
            let update = ProfileUpdate {
                display_name: self.identity.display_name.clone(),
                avatar: self.identity.avatar.clone(),
                ..Default::default()
            };
            if let Err(e) = svc.store.update_profile(nick.key(), &update).await {
                tracing::debug!(error = %e, "could not record the site's profile");
            }
        }
        Welcome { rooms }
    }

    /// Joins the rooms `welcome` named, or the ones the server admitted
    /// this session to (the API made its user a member), as if it had
    /// asked (`skip_joined`: those it is in already are left alone); each
    /// refusal is returned for the door to report.
    pub(crate) async fn join_all(&mut self, rooms: &[Name], skip_joined: bool) -> Vec<ProtoError> {
        let mut refused = Vec::new();
        for room in rooms {
            if skip_joined && self.handle.joined(room.key()).is_some() {
                continue;
            }
            if let Err(e) = self.join(None, room, None, None).await {
                refused.push(e);
            }
        }
        refused
    }

    /// The session's connection is over (`reason`, unless the server is
    /// shutting down: then the writer closes once in-flight acks are out).
    /// Removes it from everything (members see `quit`, watchers see the
    /// user go offline with its last session); a guest whose last session
    /// this was keeps its identity (nick and token) for `auth.guest_grace`.
    pub(crate) async fn end(self, reason: CloseReason) {
        let svc = &self.svc;
        let handle = &self.handle;
        // Counted before the others see it go.
        if handle.close_reason() == Some(CloseReason::SlowConsumer) {
            svc.metrics.slow_consumer_closed();
        }
        Box::pin(svc.bus.disconnect(handle)).await;
        if self.identity.is_guest() {
            Box::pin(self.guest_grace()).await;
        }
        if reason != CloseReason::Shutdown {
            handle.close(reason);
        }
        if let Err(e) = Box::pin(svc.store.user_seen(handle.nick().as_str(), now_ms())).await {
            tracing::debug!(error = %e, "could not record last_seen");
        }
    }

    async fn guest_grace(&self) {
        let svc = &self.svc;
        match svc.bus.online(self.identity.nick.key()).await {
            Ok(Some(o)) if o.id == self.identity.id => return, // another tab is still here
            Ok(_) => {}
            Err(_) => return, // the cluster cannot tell: the token lives out its time
        }
        let until = now_ms() + svc.config.auth.guest_grace.as_millis() as i64;
        if let Err(e) = svc.store.expire_sessions(&self.identity.id, until).await {
            tracing::warn!(error = %e, "could not end a guest's token");
        }
    }
}

impl Session {
    /// The rooms this user belongs to: those its site token names, those
    /// it was made a member of (the API), and the auto-join rooms it may
    /// enter (cMaxtalk's `join` listens to all of them).
    pub(crate) async fn own_rooms(&self) -> Result<Vec<Name>, ProtoError> {
        let mut rooms: Vec<Name> = Vec::new();
        let mut add = |room: Name| {
            if !rooms.iter().any(|r| r.key() == room.key()) {
                rooms.push(room);
            }
        };
        for room in self.identity.rooms.iter().flatten() {
            add(room.clone());
        }
        for key in self.svc.store.member_rooms(&self.identity.id).await? {
            if let Ok(room) = Name::room(&key) {
                add(room);
            }
        }
        for room in self.welcome_rooms() {
            add(room);
        }
        Ok(rooms)
    }

    /// `rooms.auto_join`, the rooms of it this user may enter.
    fn welcome_rooms(&self) -> Vec<Name> {
        (self.svc.config.rooms.auto_join.iter())
            .filter_map(|r| Name::room(r).ok())
            .filter(|r| self.identity.may_enter(r))
            .collect()
    }
}
