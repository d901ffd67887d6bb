//! Who the client is, through trusted reverse proxies
//! (`server.trusted_proxies` and `X-Forwarded-For`).

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

use crate::config::parse_net;

/// `server.trusted_proxies`, parsed.
#[derive(Clone, Debug, Default)]
pub(crate) struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Entries that do not parse are skipped (`Config::validate` refuses them).
    pub(crate) fn new(list: &[String]) -> TrustedProxies {
        TrustedProxies(list.iter().filter_map(|s| parse_net(s)).collect())
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client behind a request from `peer`: the peer itself unless it
    /// is a trusted proxy; then the right-most `X-Forwarded-For` address
    /// that is not itself trusted (a malformed entry ends the walk: the
    /// hop to its right is the client).
    pub(crate) fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> ClientAddr {
        let mut ip = peer.ip().to_canonical();
        let via_proxy = self.contains(ip);
        if via_proxy {
            let hops = headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .collect::<Vec<_>>();
            for hop in hops.into_iter().rev() {
                let Some(hop) = parse_hop(hop) else { break };
                ip = hop;
                if !self.contains(hop) {
                    break;
                }
            }
        }
        ClientAddr { ip, peer, via_proxy }
    }
}

/// One `X-Forwarded-For` entry: an address, perhaps with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let ip = hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))?;
    Some(ip.to_canonical())
}

/// Who sent a request: the client's address (through trusted proxies),
/// and the TCP peer it came from. Caps, login throttling and logs use `ip`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientAddr {
    pub(crate) ip: IpAddr,
    pub(crate) peer: SocketAddr,
    /// The peer is a trusted proxy: the accept loop did not count this
    /// connection against a per-address cap (the proxy carries many clients).
    pub(crate) via_proxy: bool,
}

impl ClientAddr {
    /// For logs: the client's address, with the peer's port when the
    /// client is the peer (port 0 behind a proxy).
    pub(crate) fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, if self.via_proxy { 0 } else { self.peer.port() })
    }
}
