//! Caps at the door: total open connections and connections per client IP.
//! A permit is taken before the WebSocket upgrade and released by `Drop`,
//! on every exit path.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;

use crate::protocol::server::StoredMessage;
use crate::store::Page;

pub struct ConnLimits {
    total: AtomicUsize,
    per_ip: DashMap<IpAddr, usize>,
    max_total: usize,
    max_per_ip: usize,
}

/// Why a connection was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerIp,
}

pub struct ConnPermit {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
}

impl ConnLimits {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(ConnLimits { total: AtomicUsize::new(0), per_ip: DashMap::new(), max_total, max_per_ip })
    }

    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnPermit, Refused> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Total);
        }
        let mut n = self.per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            drop(n);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::PerIp);
        }
        *n += 1;
        Ok(ConnPermit { limits: self.clone(), ip })
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.limits.per_ip.remove_if_mut(&self.ip, |_, n| {
            *n -= 1;
            *n == 0
        });
        self.limits.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Cuts a history page to at most `max_bytes` of messages as JSON, so that
/// a page of long, heavily escaped texts cannot make one frame of many
/// megabytes. It keeps the end next to where the reader is going: the
/// newest messages of a page that reads backwards (`before`, or the latest
/// page), the oldest of one that reads forwards (`after`), and sets `more`
/// when it cut. At least one message stays, so paging always moves on.
pub fn cap_page(page: &mut Page, forwards: bool, max_bytes: usize) {
    let sizes: Vec<usize> = page.messages.iter().map(json_len).collect();
    let n = sizes.len();
    let keep = if forwards { fitting(sizes.iter(), max_bytes) } else { fitting(sizes.iter().rev(), max_bytes) };
    if keep < n {
        if forwards {
            page.messages.truncate(keep);
        } else {
            page.messages.drain(..n - keep);
        }
        page.more = true;
    }
}

/// How many of `sizes`, in order, fit in `max_bytes` (at least one).
fn fitting<'a>(sizes: impl Iterator<Item = &'a usize>, max_bytes: usize) -> usize {
    let mut total = 0usize;
    sizes
        .take_while(|n| {
            total += **n;
            total <= max_bytes
        })
        .count()
        .max(1)
}

/// The length of a message as JSON, without building the string.
fn json_len(m: &StoredMessage) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, m);
    count.0 + 1 // the comma between entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps() {
        let l = ConnLimits::new(3, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let p1 = l.acquire(a).unwrap();
        let _p2 = l.acquire(a).unwrap();
        assert_eq!(l.acquire(a).err(), Some(Refused::PerIp));
        let _p3 = l.acquire(b).unwrap();
        assert_eq!(l.acquire(b).err(), Some(Refused::Total));
        drop(p1);
        assert_eq!(l.open(), 2);
        assert!(l.acquire(a).is_ok());
    }
}
