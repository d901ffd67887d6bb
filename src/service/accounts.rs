//! Accounts and profiles: registration, login, the caller's own profile,
//! and another user's public profile.

use std::net::IpAddr;

use super::{Caller, Service};
use crate::auth::{self, MAX_DISPLAY_NAME, MAX_PASSWORD, MAX_SETTINGS_BYTES, MAX_STATUS, MIN_PASSWORD};
use crate::hub::Online;
use crate::model::{Account, ProfileUpdate};
use crate::protocol::{ErrorCode, Name, ProtoError, now_ms};

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
    if let Some(s) = &p.settings
        && (!s.is_object() || s.to_string().len() > MAX_SETTINGS_BYTES)
    {
        return Err(ProtoError::invalid(format!(
            "`settings` must be a JSON object of at most {MAX_SETTINGS_BYTES} bytes"
        )));
    }
    Ok(ProfileUpdate { display_name, status, avatar: p.avatar, settings: p.settings })
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
    /// it); returns it as it now is. Live sessions show a new display name
    /// from their next connection on.
    pub(crate) async fn update_profile(&self, me: &Account, patch: ProfilePatch) -> Result<Account, ProtoError> {
        let update = validate(patch)?;
        let key = me.nick.to_ascii_lowercase();
        self.store.update_profile(&key, &update).await?;
        self.store.account(&key).await?.ok_or_else(ProtoError::unavailable)
    }

    /// A user's stored profile and whether it is online now.
    pub(crate) async fn user_profile(&self, nick: &Name) -> Result<(Account, Option<Online>), ProtoError> {
        let account = self.store.account(nick.key()).await?;
        let online = self.bus.online(nick.key()).await?;
        let account = account.ok_or_else(|| ProtoError::new(ErrorCode::NoSuchUser, "no such user"))?;
        Ok((account, online))
    }
}
