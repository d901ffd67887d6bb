//! Latency histogram and the one-line JSON report.

use std::fmt::Write as _;

/// Values below 2^EXACT_BITS µs get their own bucket; above, each power of
/// two is split into 2^(EXACT_BITS-1) buckets, so the relative error is
/// below 1/128 (0.8 %).
const EXACT_BITS: u32 = 8;
const SUB: u64 = 1 << (EXACT_BITS - 1);
/// Values are clamped to 2^32 µs (71 minutes).
const MAX_BITS: u32 = 32;
const BUCKETS: usize = (1 << EXACT_BITS) + ((MAX_BITS - EXACT_BITS) as usize) * SUB as usize;

/// Log-linear histogram of microsecond values. One per receiver task (no
/// sharing on the hot path); [`Histogram::merge`] them at the end.
#[derive(Clone)]
pub(crate) struct Histogram {
    counts: Box<[u32]>,
    total: u64,
    max: u64,
    sum: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Self { counts: vec![0; BUCKETS].into_boxed_slice(), total: 0, max: 0, sum: 0 }
    }

    #[inline]
    fn index(v: u64) -> usize {
        let v = v.min((1 << MAX_BITS) - 1);
        if v < (1 << EXACT_BITS) {
            return v as usize;
        }
        let e = 63 - v.leading_zeros(); // >= EXACT_BITS
        let sub = (v >> (e - (EXACT_BITS - 1))) & (SUB - 1);
        (1 << EXACT_BITS) + ((e - EXACT_BITS) as usize) * SUB as usize + sub as usize
    }

    /// Middle of bucket `i`'s value range.
    fn value(i: usize) -> f64 {
        if i < (1 << EXACT_BITS) {
            return i as f64;
        }
        let j = i - (1 << EXACT_BITS);
        let e = (j / SUB as usize) as u32 + EXACT_BITS;
        let sub = (j % SUB as usize) as u64;
        let width = 1u64 << (e - (EXACT_BITS - 1));
        let low = (1u64 << e) + sub * width;
        low as f64 + (width as f64 - 1.0) / 2.0
    }

    #[inline]
    pub(crate) fn record(&mut self, micros: u64) {
        let c = &mut self.counts[Self::index(micros)];
        *c = c.saturating_add(1);
        self.total += 1;
        self.sum += micros;
        self.max = self.max.max(micros);
    }

    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.saturating_add(*b);
        }
        self.total += other.total;
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }

    pub(crate) fn count(&self) -> u64 {
        self.total
    }

    pub(crate) fn max_ms(&self) -> f64 {
        self.max as f64 / 1000.0
    }

    pub(crate) fn mean_ms(&self) -> f64 {
        if self.total == 0 { 0.0 } else { self.sum as f64 / self.total as f64 / 1000.0 }
    }

    /// Quantile `q` (0..=1) in milliseconds; 0 when empty.
    pub(crate) fn quantile_ms(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                // Never report more than the exact maximum.
                return Self::value(i).min(self.max as f64) / 1000.0;
            }
        }
        self.max_ms()
    }
}

/// Builder for the final machine-readable line: `{"bench":"…","k":num,…}`.
pub(crate) struct JsonLine(String);

impl JsonLine {
    pub(crate) fn new(bench: &str) -> Self {
        Self(format!(r#"{{"bench":"{bench}""#))
    }

    pub(crate) fn int(mut self, key: &str, v: impl Into<u64>) -> Self {
        let _ = write!(self.0, r#","{key}":{}"#, v.into());
        self
    }

    /// Floats are rounded to 3 decimals; non-finite values become 0 so the
    /// line stays valid JSON made only of numbers.
    pub(crate) fn float(mut self, key: &str, v: f64) -> Self {
        let v = if v.is_finite() { v } else { 0.0 };
        let _ = write!(self.0, r#","{key}":{}"#, (v * 1000.0).round() / 1000.0);
        self
    }

    pub(crate) fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }

    /// Prints the line (stdout, last), and appends it to `keep` if given
    /// (`--json-out`: one JSON object per line, a record of runs), with the
    /// time of the run.
    pub(crate) fn emit(self, keep: Option<&std::path::Path>) {
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let line = self.int("unix_time", at).finish();
        if let Some(path) = keep {
            use std::io::Write;
            let kept = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| writeln!(f, "{line}"));
            if let Err(e) = kept {
                eprintln!("warning: could not append to {}: {e}", path.display());
            }
        }
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for v in [0u64, 1, 255, 256, 257, 1000, 65_535, 1 << 20, u64::MAX] {
            let i = Histogram::index(v);
            assert!(i >= last && i < BUCKETS, "{v}");
            last = i;
            let mid = Histogram::value(i);
            let v = v.min((1 << MAX_BITS) - 1) as f64;
            assert!((mid - v).abs() <= v / 128.0 + 1.0, "{v} -> {mid}");
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::new();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let mut g = Histogram::new();
        g.merge(&h);
        assert_eq!(g.count(), 1000);
        assert!((g.quantile_ms(0.5) - 500.0).abs() < 5.0);
        assert!((g.quantile_ms(0.99) - 990.0).abs() < 10.0);
        assert_eq!(g.max_ms(), 1000.0);
        assert!(g.quantile_ms(1.0) <= 1000.0);
    }

    #[test]
    fn json_line() {
        let s = JsonLine::new("x").int("a", 1u32).float("b", 0.12345).finish();
        assert_eq!(s, r#"{"bench":"x","a":1,"b":0.123}"#);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["a"], 1);
    }
}
