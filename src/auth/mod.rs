//! Who a caller is, and what they may do: guests, accounts (argon2
//! passwords, opaque session tokens), site tokens (HS256 JWTs minted by the
//! embedding site), API keys, and the optional authorization hook.
//!
//! Secrets are compared in constant time and never logged. Password hashing
//! runs on the blocking pool, never on the async threads.

mod throttle;

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{AuthConfig, Secret};
use crate::model::{Account, Identity, IdentityKind};
use crate::protocol::{ErrorCode, Name, ProtoError};
use crate::store::Store;
pub(crate) use throttle::LoginThrottle;

fn unauthorized(message: &str) -> ProtoError {
    ProtoError::new(ErrorCode::Unauthorized, message)
}

// ---- reserved nicks ---------------------------------------------------------------

/// Nicks nobody may take: the server speaks as `server`, and the others
/// look like announcements or mention everyone.
pub(crate) const RESERVED_NICKS: [&str; 6] = ["server", "system", "admin", "everyone", "here", "channel"];

/// `nick_taken` if `nick` is reserved (built in, or `auth.reserved_nicks`).
pub(crate) fn check_not_reserved(nick: &Name, config: &AuthConfig) -> Result<(), ProtoError> {
    let key = nick.key();
    let reserved = RESERVED_NICKS.iter().any(|r| r.eq_ignore_ascii_case(key))
        || config.reserved_nicks.iter().any(|r| r.eq_ignore_ascii_case(key));
    if reserved {
        return Err(ProtoError::new(ErrorCode::NickTaken, format!("the nick `{nick}` is reserved: pick another")));
    }
    Ok(())
}

// ---- site tokens ----------------------------------------------------------------

/// The claims of a site token.
#[derive(Debug, Serialize, Deserialize)]
pub struct SiteClaims {
    /// The site's user id; a string or a number.
    #[serde(deserialize_with = "string_or_number")]
    pub sub: String,
    pub nick: String,
    pub exp: u64,
    /// Not valid before (seconds since the epoch), checked with the leeway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at: a token issued in the future (past the leeway) is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Sub {
        S(String),
        N(i64),
    }
    Ok(match Sub::deserialize(d)? {
        Sub::S(s) => s,
        Sub::N(n) => n.to_string(),
    })
}

/// Signs a site token, as `chat token` does for operators and tests.
pub fn mint_site_token(secret: &Secret, claims: &SiteClaims) -> anyhow::Result<String> {
    anyhow::ensure!(!secret.is_empty(), "auth.token_secret is not set");
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.expose().as_bytes()),
    )?)
}

/// The longest `sub` a site token may carry.
pub(crate) const MAX_SUB: usize = 128;

/// Verifies a site token: HS256 only, the signature, `exp`, `nbf` and `iat`
/// (each with `leeway`), and the required claims.
pub(crate) fn verify_site_token(secret: &Secret, leeway: Duration, token: &str) -> Result<Identity, ProtoError> {
    if secret.is_empty() {
        return Err(unauthorized("site tokens are not enabled on this server"));
    }
    let mut v = Validation::new(Algorithm::HS256);
    v.leeway = leeway.as_secs();
    v.validate_nbf = true;
    // `sub` is required by `SiteClaims` itself: jsonwebtoken's own check
    // would accept only a string, and `sub` may be a number.
    v.set_required_spec_claims(&["exp"]);
    let data = jsonwebtoken::decode::<SiteClaims>(token, &DecodingKey::from_secret(secret.expose().as_bytes()), &v)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            unauthorized(match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::ImmatureSignature => "the token is not valid yet (`nbf` is in the future)",
                ErrorKind::InvalidAlgorithm => "only HS256 tokens are accepted",
                ErrorKind::InvalidSignature => "the token's signature is not valid",
                ErrorKind::MissingRequiredClaim(_) | ErrorKind::Json(_) => {
                    "the token lacks a required claim (sub, nick, exp) or has one of the wrong type"
                }
                _ => "the token is not a valid HS256 token",
            })
        })?;
    let c = data.claims;
    if c.sub.is_empty() || c.sub.len() > MAX_SUB {
        return Err(unauthorized("the token's `sub` is empty or longer than 128 bytes"));
    }
    let now = crate::protocol::now_ms().max(0) as u64 / 1000;
    if c.iat.is_some_and(|iat| iat > now + leeway.as_secs()) {
        return Err(unauthorized("the token was issued in the future (`iat`): check the site's clock"));
    }
    let nick = Name::nick(&c.nick).map_err(|_| unauthorized("the token's `nick` is not a valid nick"))?;
    let rooms = match c.rooms {
        None => None,
        Some(list) => Some(
            list.iter()
                .map(|r| Name::room(r))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| unauthorized("the token's `rooms` holds an invalid room name"))?,
        ),
    };
    Ok(Identity {
        id: crate::model::ids::site(&c.sub).into(),
        nick,
        kind: IdentityKind::Site { sub: c.sub },
        display_name: c.name.map(|n| clip(&n, MAX_DISPLAY_NAME)),
        avatar: c.avatar.filter(|a| valid_avatar(a)),
        rooms,
        admin: c.admin,
    })
}

// ---- profiles -------------------------------------------------------------------

pub(crate) const MAX_DISPLAY_NAME: usize = 64;
pub(crate) const MAX_STATUS: usize = 140;
pub(crate) const MAX_AVATAR: usize = 512;
pub(crate) const MAX_SETTINGS_BYTES: usize = 4096;

fn clip(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// An avatar is an http(s) URL without spaces or quotes.
pub(crate) fn valid_avatar(url: &str) -> bool {
    url.len() <= MAX_AVATAR
        && (url.starts_with("https://") || url.starts_with("http://"))
        && !url.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '<' | '>'))
}

// ---- accounts -------------------------------------------------------------------

pub(crate) const MIN_PASSWORD: usize = 8;
pub(crate) const MAX_PASSWORD: usize = 256;

/// Hashes a password (argon2id, random salt) on the blocking pool.
pub(crate) async fn hash_password(password: String) -> Result<String, ProtoError> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|_| ProtoError::internal())?;
        Argon2::default()
            .hash_password_with_salt(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|_| ProtoError::internal())
    })
    .await
    .map_err(|_| ProtoError::internal())?
}

/// Checks a password against a stored hash on the blocking pool. With no
/// hash (unknown user), a dummy hash is checked instead, so the answer
/// takes as long either way.
pub(crate) async fn verify_password(password: String, hash: Option<String>) -> bool {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| {
            DUMMY
                .get_or_init(|| {
                    Argon2::default()
                        .hash_password_with_salt(b"dummy password", b"dummysaltdummysa")
                        .map(|h| h.to_string())
                        .unwrap_or_default()
                })
                .clone()
        });
        let ok = Argon2::default().verify_password(password.as_bytes(), hash.as_str()).is_ok();
        known && ok
    })
    .await
    .unwrap_or(false)
}

/// A new session token (256 random bits, hex) and the hash that is stored.
pub(crate) fn new_session_token() -> Result<(String, String), ProtoError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| ProtoError::internal())?;
    let token = hex(&bytes);
    let hash = token_hash(&token);
    Ok((token, hash))
}

/// How a session token is stored: its SHA-256, so a leaked table holds no
/// usable token.
pub(crate) fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Whether a bearer token looks like a session token (rather than a JWT).
pub(crate) fn is_session_token(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Logs in with nick and password: the account's identity, or
/// `unauthorized` with one message for a wrong password and an unknown nick.
pub(crate) async fn login(
    store: &Store,
    throttle: &LoginThrottle,
    nick: &Name,
    password: &str,
    ip: Option<IpAddr>,
) -> Result<Identity, ProtoError> {
    throttle.attempt(nick, ip)?;
    let account = store.account(nick.key()).await?;
    let hash = account.as_ref().and_then(|a| a.password_hash.clone());
    if !verify_password(password.to_owned(), hash).await {
        throttle.failed(nick, ip);
        return Err(unauthorized("wrong nick or password"));
    }
    let account = account.ok_or_else(|| unauthorized("wrong nick or password"))?;
    account_identity(account)
}

/// The identity of a registered account, with its stored profile.
fn account_identity(account: Account) -> Result<Identity, ProtoError> {
    let nick = Name::nick(&account.nick).map_err(|_| ProtoError::internal())?;
    // Every account owns its nick (migration 0004 gave older ones an id).
    let id = account.owner.ok_or_else(ProtoError::internal)?;
    Ok(Identity {
        id: id.into(),
        nick,
        kind: IdentityKind::Account,
        display_name: Some(account.display_name).filter(|d| !d.is_empty()),
        avatar: Some(account.avatar).filter(|a| !a.is_empty()),
        rooms: None,
        admin: false,
    })
}

/// The identity behind a bearer token: a session token (from login, or a
/// guest's `welcome.token`), or a site token.
pub(crate) async fn from_token(store: &Store, config: &AuthConfig, token: &str) -> Result<Identity, ProtoError> {
    if !is_session_token(token) {
        let identity = verify_site_token(&config.token_secret, config.token_leeway, token)?;
        check_not_reserved(&identity.nick, config)?;
        claim_for_site(store, &identity).await?;
        return Ok(identity);
    }
    let (user_id, nick) = store
        .session_user(&token_hash(token), crate::protocol::now_ms())
        .await?
        .ok_or_else(|| unauthorized("the session token is unknown or expired: log in again"))?;
    if crate::model::ids::is_guest(&user_id) {
        if !config.guests {
            return Err(unauthorized("guests are not allowed here"));
        }
        let nick = Name::nick(&nick).map_err(|_| ProtoError::internal())?;
        return Ok(Identity::guest(nick, user_id));
    }
    let account = store.account_by_id(&user_id).await?.ok_or_else(|| unauthorized("no such account"))?;
    account_identity(account)
}

/// A site user owns its nick from its first visit on: an account of the
/// same nick, or another site user (another `sub`), is refused it, so that
/// nobody inherits another's memberships and roles. Memberships the site
/// granted to the nick before anyone owned it become this user's.
async fn claim_for_site(store: &Store, identity: &Identity) -> Result<(), ProtoError> {
    if !matches!(identity.kind, IdentityKind::Site { .. }) {
        return Ok(());
    }
    let me = &*identity.id;
    let nick = &identity.nick;
    store.user_seen(nick.as_str(), crate::protocol::now_ms()).await?;
    match store.claim_owner(nick.key(), me).await? {
        Some(owner) if owner != me => Err(ProtoError::new(
            ErrorCode::NickTaken,
            format!("the nick `{nick}` belongs to another user: the site must give this user another nick"),
        )),
        _ => Ok(store.claim_grants(&crate::model::ids::pending_grant(nick.key()), me).await?),
    }
}

/// Whether a new guest may take `nick`: not owned by an account or a site
/// user (a guest holding it now is refused by the hub). A nick the site
/// granted memberships to before its user came may be used by a guest
/// meanwhile, but the grants are not the guest's (they wait for the site
/// user: see `claim_for_site`). A guest that left is another identity,
/// even within its grace period: its nick is free, and only its token
/// brings it back (as itself, if the nick is still free).
pub(crate) async fn check_free_for_guest(store: &Store, nick: &Name) -> Result<(), ProtoError> {
    let taken = |why: &str| ProtoError::new(ErrorCode::NickTaken, format!("`{nick}` {why}: pick another nick"));
    let account = store.account(nick.key()).await?;
    if account.is_some_and(|a| a.registered() || a.owner.is_some()) {
        return Err(taken("belongs to a registered user (log in to use it)"));
    }
    Ok(())
}

// ---- API keys ---------------------------------------------------------------------

/// Whether `given` is one of `keys`. Every key is compared in constant
/// time, so timing tells nothing about any of them.
pub(crate) fn is_api_key(keys: &[Secret], given: &str) -> bool {
    let mut ok = subtle::Choice::from(0);
    for key in keys.iter().filter(|k| !k.is_empty()) {
        ok |= key.expose().as_bytes().ct_eq(given.as_bytes());
    }
    ok.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> SiteClaims {
        SiteClaims {
            sub: "42".into(),
            nick: "alice".into(),
            exp,
            nbf: None,
            iat: None,
            name: Some("Alice A.".into()),
            avatar: None,
            rooms: Some(vec!["dev".into()]),
            admin: true,
        }
    }

    fn now() -> u64 {
        crate::protocol::now_ms() as u64 / 1000
    }

    #[test]
    fn site_tokens_round_trip() {
        let secret = Secret::new("s3cret");
        let t = mint_site_token(&secret, &claims(now() + 60)).unwrap();
        let id = verify_site_token(&secret, Duration::from_secs(0), &t).unwrap();
        assert_eq!(id.nick.as_str(), "alice");
        assert_eq!(id.kind, IdentityKind::Site { sub: "42".into() });
        assert!(id.admin && id.may_enter(&Name::room("DEV").unwrap()) && !id.may_enter(&Name::room("ops").unwrap()));
        assert_eq!(id.display_name.as_deref(), Some("Alice A."));
    }

    #[test]
    fn bad_site_tokens() {
        let secret = Secret::new("s3cret");
        let err = |t: &str, leeway| verify_site_token(&secret, Duration::from_secs(leeway), t).unwrap_err().message;
        let expired = mint_site_token(&secret, &claims(now() - 120)).unwrap();
        assert!(err(&expired, 0).contains("expired"));
        assert!(verify_site_token(&secret, Duration::from_secs(300), &expired).is_ok(), "within the leeway");
        let forged = mint_site_token(&Secret::new("other"), &claims(now() + 60)).unwrap();
        assert!(err(&forged, 0).contains("signature"));
        // No `nick` claim.
        let no_nick = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": 1, "exp": now() + 60}),
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        assert!(err(&no_nick, 0).contains("claim"));
        assert!(err("not.a.token", 0).contains("not a valid"));
        assert!(verify_site_token(&Secret::default(), Duration::ZERO, &expired).is_err());
    }

    #[test]
    fn api_keys_and_tokens() {
        let keys = [Secret::new("a-key"), Secret::new(""), Secret::new("b-key")];
        assert!(is_api_key(&keys, "b-key"));
        assert!(!is_api_key(&keys, ""));
        assert!(!is_api_key(&keys, "a-ke"));
        let (token, hash) = new_session_token().unwrap();
        assert!(is_session_token(&token));
        assert_eq!(token_hash(&token), hash);
        assert_ne!(token, hash);
        assert!(valid_avatar("https://x.test/a.png") && !valid_avatar("javascript:alert(1)"));
    }

    #[tokio::test]
    async fn passwords() {
        let h = hash_password("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse".into(), Some(h.clone())).await);
        assert!(!verify_password("wrong".into(), Some(h)).await);
        assert!(!verify_password("anything".into(), None).await);
    }
}
