//! Caps at the door: total open connections and connections per client IP.
//! The accept loop takes a permit for every TCP connection (HTTP or a
//! WebSocket to be), before a byte is read; an upgrade takes it over for the
//! life of the WebSocket. `Drop` releases it, on every exit path.
//!
//! A connection from a trusted proxy counts only towards the total: the
//! proxy carries many clients. Its WebSocket upgrade then counts towards
//! the forwarded client's address ([`ConnPermit::add_ip`]).

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;

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
    ip: Option<IpAddr>,
}

impl ConnLimits {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(ConnLimits { total: AtomicUsize::new(0), per_ip: DashMap::new(), max_total, max_per_ip })
    }

    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// A connection from `ip`: counts towards the total and the address.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnPermit, Refused> {
        let mut permit = self.acquire_total()?;
        permit.add_ip(ip)?;
        Ok(permit)
    }

    /// A connection counted towards the total only (from a trusted proxy).
    pub fn acquire_total(self: &Arc<Self>) -> Result<ConnPermit, Refused> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Total);
        }
        Ok(ConnPermit { limits: self.clone(), ip: None })
    }

    fn take_ip(&self, ip: IpAddr) -> Result<(), Refused> {
        let mut n = self.per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(Refused::PerIp);
        }
        *n += 1;
        Ok(())
    }
}

impl ConnPermit {
    /// Counts this connection towards `ip` as well, unless it already
    /// counts towards an address. On refusal the permit is unchanged.
    pub fn add_ip(&mut self, ip: IpAddr) -> Result<(), Refused> {
        if self.ip.is_none() {
            self.limits.take_ip(ip)?;
            self.ip = Some(ip);
        }
        Ok(())
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            self.limits.per_ip.remove_if_mut(&ip, |_, n| {
                *n -= 1;
                *n == 0
            });
        }
        self.limits.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A TCP connection's permit, in each of its requests' extensions: the
/// accept loop holds it while the connection serves HTTP; a WebSocket
/// upgrade takes it, so the connection still counts after hyper lets go of
/// it. Whatever is left is released when the connection ends.
#[derive(Clone)]
pub struct PermitSlot(Arc<Mutex<Option<ConnPermit>>>);

impl PermitSlot {
    pub fn new(permit: ConnPermit) -> PermitSlot {
        PermitSlot(Arc::new(Mutex::new(Some(permit))))
    }

    pub fn take(&self) -> Option<ConnPermit> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Gives a permit back (an upgrade that was refused after all).
    pub fn put_back(&self, permit: ConnPermit) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(permit);
    }
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

    #[test]
    fn proxied_connections_count_towards_the_client() {
        let l = ConnLimits::new(10, 1);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mut p1 = l.acquire_total().unwrap();
        let mut p2 = l.acquire_total().unwrap();
        p1.add_ip(a).unwrap();
        assert_eq!(p2.add_ip(a), Err(Refused::PerIp));
        assert_eq!(l.open(), 2, "a refused add_ip keeps the permit");
        drop(p1);
        p2.add_ip(a).unwrap();
        drop(p2);
        assert_eq!(l.open(), 0);
        assert!(l.per_ip.is_empty());
    }
}
