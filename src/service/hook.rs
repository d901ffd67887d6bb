//! The authorization hook: the embedding site's word on whether a user may
//! `join` or `say` in a room (`auth.hook_url`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::AuthConfig;
use crate::model::{Identity, IdentityKind};
use crate::protocol::Name;

/// Asks `auth.hook_url` whether a user may `join` or `say` in a room. The
/// answer is cached for `auth.hook_cache`; an unreachable, slow or
/// malformed hook denies (unless `auth.hook_fail_open`).
pub(crate) struct Hook {
    url: String,
    client: reqwest::Client,
    ttl: Duration,
    fail_open: bool,
    cache: Mutex<HookCache>,
}

#[derive(Serialize)]
struct HookRequest<'a> {
    user: HookUser<'a>,
    room: &'a str,
    action: &'a str,
}

#[derive(Serialize)]
struct HookUser<'a> {
    nick: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    guest: bool,
}

#[derive(Deserialize)]
struct HookAnswer {
    allow: bool,
}

/// (user id, room key, action) → (allowed, when asked).
type HookCache = HashMap<(String, String, &'static str), (bool, Instant)>;

/// Entries the hook cache holds before it is cleared (bounds memory).
const HOOK_CACHE_MAX: usize = 100_000;

impl Hook {
    pub(crate) fn new(config: &AuthConfig) -> Option<Hook> {
        if config.hook_url.is_empty() {
            return None;
        }
        // A redirect is a failure, never followed: the hook's answer must
        // come from the configured address.
        let client = reqwest::Client::builder()
            .timeout(config.hook_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .ok()?;
        Some(Hook {
            url: config.hook_url.clone(),
            client,
            ttl: config.hook_cache,
            fail_open: config.hook_fail_open,
            cache: Mutex::default(),
        })
    }

    pub(crate) async fn allows(&self, who: &Identity, room: &Name, action: &'static str) -> bool {
        let key = (who.id.to_string(), room.key().to_string(), action);
        if let Some((allow, at)) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key)
            && at.elapsed() < self.ttl
        {
            return *allow;
        }
        let sub = match &who.kind {
            IdentityKind::Site { sub } => Some(sub.as_str()),
            _ => None,
        };
        let body = HookRequest {
            user: HookUser { nick: who.nick.as_str(), sub, guest: who.is_guest() },
            room: room.as_str(),
            action,
        };
        let answer = async {
            let r = self.client.post(&self.url).json(&body).send().await.map_err(|e| e.to_string())?;
            if !r.status().is_success() {
                return Err(format!("the hook answered {} (redirects are not followed)", r.status()));
            }
            r.json::<HookAnswer>().await.map_err(|e| e.to_string())
        }
        .await;
        let allow = match answer {
            Ok(a) => a.allow,
            Err(e) => {
                tracing::warn!(error = %e, "authorization hook failed; {}", if self.fail_open { "allowing" } else { "denying" });
                return self.fail_open;
            }
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= HOOK_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, (allow, Instant::now()));
        allow
    }
}
