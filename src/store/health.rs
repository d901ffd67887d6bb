//! Storage health as the pool sees it: when a write last failed, so that
//! every pool connection opened before that moment is dropped and reopened
//! on its next use (a connection may stay broken after its cause is gone:
//! SQLite opens a file it cannot write read-only and stays so; a server
//! may have killed the session).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Health {
    start: Instant,
    /// When a write last failed, in µs since `start` plus one (0: never).
    failed_at: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Health { start: Instant::now(), failed_at: AtomicU64::new(0) }
    }
}

impl Health {
    fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64 + 1
    }

    /// A write failed: the connections open now are suspect.
    pub fn failed(&self) {
        self.failed_at.fetch_max(self.now(), Ordering::AcqRel);
    }

    /// Whether a connection `age` old was opened before the last failure
    /// (then it is closed instead of used: a fresh one takes its place).
    pub fn stale(&self, age: Duration) -> bool {
        let failed_at = self.failed_at.load(Ordering::Acquire);
        failed_at != 0 && self.now().saturating_sub(age.as_micros() as u64) <= failed_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_older_than_a_failure_are_stale() {
        let h = Health::default();
        assert!(!h.stale(Duration::from_secs(3600)));
        std::thread::sleep(Duration::from_millis(2));
        h.failed();
        // Opened a second before the failure: stale.
        assert!(h.stale(Duration::from_secs(1)));
        std::thread::sleep(Duration::from_millis(2));
        // Opened just now, after it: fine.
        assert!(!h.stale(Duration::ZERO));
    }
}
