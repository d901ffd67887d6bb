//! Accounts and profiles: registration, login, the caller's own profile,
//! and another user's public profile.

use std::net::IpAddr;

use super::{Caller, Service};
use crate::auth::{self, MAX_DISPLAY_NAME, MAX_PASSWORD, MAX_SETTINGS_BYTES, MAX_STATUS, MIN_PASSWORD};
use crate::cluster::Except;
use crate::hub::{Online, Shown};
use crate::model::{Account, ProfileUpdate};
use crate::protocol::server::ProfileView;
use crate::protocol::{ErrorCode, Name, ProtoError, ServerFrame, encode, now_ms};

/// A profile change as a client asks for it; `None` leaves a field as it is.
pub(crate) struct ProfilePatch {
    pub(crate) display_name: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) avatar: Option<String>,
    pub(crate) settings: Option<serde_json::Value>,
}

/// Checks a profile change: lengths, no control characters, an http(s)
/// avatar, settings an object of at most 4 KiB.
fn validate(p: ProfilePatch) -> Result<ProfileUpdate, ProtoError> {
    let text = |field: &str, v: Option<String>, max: usize| -> Result<Option<String>, ProtoError> {
        match v {
            None => Ok(None),
            Some(s) => {
                let s = s.trim().to_owned();
                if s.chars().count() > max || s.chars().any(char::is_control) {
                    Err(ProtoError::invalid(format!(
                        "`{field}` must be at most {max} characters, without control characters"
                    )))
                } else {
                    Ok(Some(s))
                }
            }
        }
    };
    let display_name = text("display_name", p.display_name, MAX_DISPLAY_NAME)?;
    let status = text("status", p.status, MAX_STATUS)?;
    if let Some(a) = &p.avatar
        && !a.is_empty()
        && !auth::valid_avatar(a)
    {
        return Err(ProtoError::invalid("`avatar` must be an http(s) URL of at most 512 characters, or empty"));
    }
    if let Some(s) = &p.settings {
        if !s.is_object() || s.to_string().len() > MAX_SETTINGS_BYTES {
            return Err(ProtoError::invalid(format!(
                "`settings` must be a JSON object of at most {MAX_SETTINGS_BYTES} bytes"
            )));
        }
        check_settings(s)?;
    }
    Ok(ProfileUpdate { display_name, status, avatar: p.avatar, settings: p.settings })
}

/// The settings the server and the clients understand: `notify` (`all`,
/// `mentions`, `none`), `muted_rooms` (room names), `theme` (`light`,
/// `dark`, `system`). Other keys are kept as they are, for clients.
fn check_settings(s: &serde_json::Value) -> Result<(), ProtoError> {
    let one_of = |key: &str, allowed: &[&str]| match s.get(key) {
        None => Ok(()),
        Some(v) if v.as_str().is_some_and(|v| allowed.contains(&v)) => Ok(()),
        Some(_) => Err(ProtoError::invalid(format!("`settings.{key}` must be one of {}", allowed.join(", ")))),
    };
    one_of("notify", &["all", "mentions", "none"])?;
    one_of("theme", &["light", "dark", "system"])?;
    if let Some(rooms) = s.get("muted_rooms") {
        let names = rooms.as_array().filter(|a| a.iter().all(|r| r.as_str().is_some_and(|r| Name::room(r).is_ok())));
        if names.is_none() {
            return Err(ProtoError::invalid("`settings.muted_rooms` must be a list of room names"));
        }
    }
    Ok(())
}

impl Service {
    /// Registers an account; returns a session token for it and the account.
    pub(crate) async fn register(
        &self,
        nick: &str,
        password: String,
        ip: IpAddr,
    ) -> Result<(String, Account), ProtoError> {
        if !self.config.auth.registration_open() {
            return Err(ProtoError::new(ErrorCode::Forbidden, "registration is closed on this server"));
        }
        let nick = &Name::nick(nick)?;
        auth::check_not_reserved(nick, &self.config.auth)?;
        let len = password.chars().count();
        if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&len) {
            return Err(ProtoError::invalid(format!("`password` must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")));
        }
        self.login_throttle.attempt(nick, Some(ip))?;
        let hash = auth::hash_password(password).await?;
        // A nick the site granted memberships to, before its user came, is
        // kept for that user (see `auth::check_free_for_guest`).
        if self.store.has_memberships(&crate::model::ids::pending_grant(nick.key())).await? {
            return Err(ProtoError::new(ErrorCode::NickTaken, "this nick is reserved for a user of the site"));
        }
        let id = crate::model::ids::new_account();
        if !self.store.create_account(nick.as_str(), &hash, &id, now_ms()).await? {
            return Err(ProtoError::new(ErrorCode::NickTaken, "this nick is registered already"));
        }
        tracing::info!(nick = %nick, "account registered");
        self.account_session(&id, nick).await
    }

    /// Logs in with nick and password; returns a new session token and the
    /// account (`unauthorized` alike for a wrong password and an unknown nick).
    pub(crate) async fn login(&self, nick: &str, password: &str, ip: IpAddr) -> Result<(String, Account), ProtoError> {
        let wrong = || ProtoError::new(ErrorCode::Unauthorized, "wrong nick or password");
        let nick = Name::nick(nick).map_err(|_| wrong())?;
        let identity = auth::login(&self.store, &self.login_throttle, &nick, password, Some(ip)).await?;
        self.account_session(&identity.id, &identity.nick).await
    }

    /// A new session token for the account `id`, and the account.
    async fn account_session(&self, id: &str, nick: &Name) -> Result<(String, Account), ProtoError> {
        let (token, hash) = auth::new_session_token()?;
        let now = now_ms();
        let expires = now + self.config.auth.session_ttl.as_millis() as i64;
        self.store.create_session(&hash, id, nick.as_str(), now, expires).await?;
        let account = self.store.account(nick.key()).await?.ok_or_else(ProtoError::unavailable)?;
        Ok((token, account))
    }

    /// The calling user's stored profile (not an API key's, not a guest's).
    pub(crate) async fn my_account(&self, caller: &Caller) -> Result<Account, ProtoError> {
        match caller {
            Caller::ApiKey => Err(ProtoError::new(ErrorCode::Forbidden, "an API key has no profile")),
            // A guest's nick is not its own: a profile stored under it would
            // be the next guest's.
            Caller::User(user) if user.is_guest() => {
                Err(ProtoError::new(ErrorCode::Forbidden, "guests have no stored profile"))
            }
            Caller::User(user) => self
                .store
                .account(user.nick.key())
                .await?
                .ok_or_else(|| ProtoError::new(ErrorCode::NoSuchUser, "connect once to create the profile")),
        }
    }

    /// Changes a user's profile (`me`, as [`Service::my_account`] found
    /// it); returns it as it now is. A change others see (name, status,
    /// avatar) goes out live (see [`Service::profile_changed`]).
    pub(crate) async fn update_profile(&self, me: &Account, patch: ProfilePatch) -> Result<Account, ProtoError> {
        let update = validate(patch)?;
        let shown_changed = update.display_name.is_some() || update.status.is_some() || update.avatar.is_some();
        let key = me.nick.to_ascii_lowercase();
        self.store.update_profile(&key, &update).await?;
        let account = self.store.account(&key).await?.ok_or_else(ProtoError::unavailable)?;
        if shown_changed {
            self.profile_changed(&account).await;
        }
        Ok(account)
    }

    /// `POST /api/me/password`: the old password, then the new one. Every
    /// session token of the account ends (other devices log in again); the
    /// caller gets a new one. Connected sessions stay connected.
    pub(crate) async fn change_password(
        &self,
        me: &Account,
        old: &str,
        new: String,
        ip: IpAddr,
    ) -> Result<(String, Account), ProtoError> {
        let nick = Name::nick(&me.nick).map_err(|_| ProtoError::internal())?;
        let len = new.chars().count();
        if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&len) {
            return Err(ProtoError::invalid(format!("`new` must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")));
        }
        if !me.registered() {
            return Err(ProtoError::new(ErrorCode::Forbidden, "this user has no password (the site logs it in)"));
        }
        // The same throttle as a login: `old` is a password guess.
        let identity =
            auth::login(&self.store, &self.login_throttle, &nick, old, Some(ip)).await.map_err(|e| match e.code {
                ErrorCode::Unauthorized => {
                    ProtoError::new(ErrorCode::Unauthorized, "`old` is not the current password")
                }
                _ => e,
            })?;
        let hash = auth::hash_password(new).await?;
        if !self.store.set_password(nick.key(), &hash).await? {
            return Err(ProtoError::unavailable());
        }
        self.store.expire_sessions(&identity.id, now_ms()).await?;
        tracing::info!(nick = %nick, "password changed; the account's session tokens ended");
        self.account_session(&identity.id, &nick).await
    }

    /// Tells those who see `account` that its shown profile changed: a
    /// `profile` frame to each of its sessions, and to each room its
    /// sessions on this node are in (so a member sharing two rooms with it
    /// gets one per room, like `presence`). Member lists on this node show
    /// the change from now on; another node's show it once the user
    /// connects there again (its live frames carry the change meanwhile).
    pub(crate) async fn profile_changed(&self, account: &Account) {
        let display_name = if account.display_name.is_empty() { &account.nick } else { &account.display_name };
        let avatar = Some(account.avatar.as_str()).filter(|a| !a.is_empty());
        let Ok(nick) = Name::nick(&account.nick) else { return };
        let key = nick.key();
        let shown = Shown {
            display_name: display_name.as_str().into(),
            avatar: avatar.map(Into::into),
            status: account.status.as_str().into(),
        };
        let rooms = self.hub.profile_changed(key, shown);
        let user = ProfileView { nick: &account.nick, display_name, avatar, status: &account.status };
        for (room_key, name) in &rooms {
            let frame = encode(&ServerFrame::Profile { room: Some(name), user });
            if let Err(e) = self.bus.to_room(room_key, &frame, Except::Nobody).await {
                tracing::debug!(error = %e.message, "could not announce a profile change to a room");
            }
        }
        let frame = encode(&ServerFrame::Profile { room: None, user });
        if let Err(e) = self.bus.to_user(key, &frame, None).await {
            tracing::debug!(error = %e.message, "could not announce a profile change to its user");
        }
    }

    /// A user's stored profile and whether it is online now.
    pub(crate) async fn user_profile(&self, nick: &Name) -> Result<(Account, Option<Online>), ProtoError> {
        let account = self.store.account(nick.key()).await?;
        let online = self.bus.online(nick.key()).await?;
        let account = account.ok_or_else(|| ProtoError::new(ErrorCode::NoSuchUser, "no such user"))?;
        Ok((account, online))
    }
}
