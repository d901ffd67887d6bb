//! The login throttle: password attempts per nick and client address.

use std::collections::HashSet;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::protocol::{ErrorCode, Name, ProtoError};

/// Throttles password attempts so that an attacker slows down only
/// itself: every attempt counts per (nick, client address) and per client
/// address; failures also count per nick, from all addresses together, and
/// past that ceiling only the addresses that failed on the nick are
/// refused — the owner, from an address that has not failed, still logs in.
pub(crate) struct LoginThrottle {
    per_nick_ip: DefaultKeyedRateLimiter<(String, IpAddr)>,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    failures: DashMap<String, Failures>,
    max_failures: u32,
    /// When the maps were last cleared of stale entries.
    swept: Mutex<Instant>,
}

/// A nick's failed attempts in the current window.
struct Failures {
    since: Instant,
    count: u32,
    from: HashSet<IpAddr>,
}

/// The window of the per-nick failure count.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Most addresses remembered as having failed on one nick (bounds memory;
/// past it, further addresses are limited by their own buckets only).
const MAX_FAILED_ADDRESSES: usize = 10_000;

impl LoginThrottle {
    pub(crate) fn new(
        per_nick_per_minute: u32,
        per_ip_per_minute: u32,
        failures_per_nick_per_minute: u32,
    ) -> LoginThrottle {
        let q = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        LoginThrottle {
            per_nick_ip: RateLimiter::keyed(q(per_nick_per_minute)),
            per_ip: RateLimiter::keyed(q(per_ip_per_minute)),
            failures: DashMap::new(),
            max_failures: failures_per_nick_per_minute.max(1),
            swept: Mutex::new(Instant::now()),
        }
    }

    /// Takes one attempt on `nick` from `ip`; `rate_limited` when the
    /// address's bucket or its bucket for this nick is empty, or when the
    /// nick is past its failure ceiling and this address has failed on it.
    pub(crate) fn attempt(&self, nick: &Name, ip: Option<IpAddr>) -> Result<(), ProtoError> {
        self.sweep();
        let nick = nick.key().to_string();
        let refused = self.locked_out(&nick, ip)
            || ip.is_some_and(|ip| {
                self.per_ip.check_key(&ip).is_err() || self.per_nick_ip.check_key(&(nick, ip)).is_err()
            });
        if refused {
            let mut e = ProtoError::new(ErrorCode::RateLimited, "too many login attempts: wait a minute");
            e.retry_after_ms = Some(60_000);
            return Err(e);
        }
        Ok(())
    }

    /// Records a wrong password (or an unknown nick) from `ip`.
    pub(crate) fn failed(&self, nick: &Name, ip: Option<IpAddr>) {
        let now = Instant::now();
        let fresh = || Failures { since: now, count: 0, from: HashSet::new() };
        let mut f = self.failures.entry(nick.key().to_string()).or_insert_with(fresh);
        if now.duration_since(f.since) >= FAILURE_WINDOW {
            *f = fresh();
        }
        f.count = f.count.saturating_add(1);
        if let Some(ip) = ip
            && f.from.len() < MAX_FAILED_ADDRESSES
        {
            f.from.insert(ip);
        }
    }

    /// Past the nick's failure ceiling, an address that failed on it (or an
    /// unknown address) may not try again within the window.
    fn locked_out(&self, nick: &str, ip: Option<IpAddr>) -> bool {
        self.failures.get(nick).is_some_and(|f| {
            f.since.elapsed() < FAILURE_WINDOW
                && f.count >= self.max_failures
                && ip.is_none_or(|ip| f.from.contains(&ip))
        })
    }

    /// Once a window: drops the state of nicks and addresses that are
    /// quiet again, so the maps do not grow without bound.
    fn sweep(&self) {
        {
            let mut swept = self.swept.lock().unwrap_or_else(|e| e.into_inner());
            if swept.elapsed() < FAILURE_WINDOW {
                return;
            }
            *swept = Instant::now();
        }
        self.failures.retain(|_, f| f.since.elapsed() < FAILURE_WINDOW);
        self.per_ip.retain_recent();
        self.per_nick_ip.retain_recent();
    }
}
