//! Pacing: a token bucket mirroring the server's, so the outbox does not
//! run into the rate limit.

use std::time::{Duration, Instant};

/// A token bucket mirroring the server's for `say` and `typing`, so a
/// script that pipes many lines is paced instead of refused; a
/// `rate_limited` reply still pauses everything for its `retry_after_ms`.
pub(super) struct Bucket {
    rate: f64,
    burst: f64,
    pub(super) tokens: f64,
    at: Instant,
    pub(super) paused_until: Option<Instant>,
}

impl Bucket {
    pub(super) fn new(rate: f64, burst: f64, now: Instant) -> Bucket {
        // A little under the server's figures: clocks and rounding differ.
        let rate = (rate * 0.9).max(0.1);
        let burst = (burst - 1.0).max(1.0);
        Bucket { rate, burst, tokens: burst, at: now, paused_until: None }
    }

    /// `None` if a request may go now; else when it may.
    pub(super) fn ready_at(&mut self, now: Instant, costs: bool) -> Option<Instant> {
        if let Some(until) = self.paused_until {
            if until > now {
                return Some(until);
            }
            self.paused_until = None;
        }
        if !costs {
            return None;
        }
        self.tokens = (self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 { None } else { Some(now + Duration::from_secs_f64((1.0 - self.tokens) / self.rate)) }
    }
}
