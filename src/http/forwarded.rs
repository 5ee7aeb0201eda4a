//! Who the client is and how it reached the gate: `X-Forwarded-*`, `Forwarded`,
//! `X-Real-IP` and `X-Request-Id`. Behind an ALB or CloudFront the peer is the load
//! balancer, and what it says about the client is worth keeping; from anyone else the
//! same headers are forgeries, and are replaced with what the gate saw.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

use super::socket::Peer;
use crate::wire::{folded_starts_with, same_folded_name};

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest `X-Request-Id` kept from a trusted peer; longer ones are replaced.
const MAX_REQUEST_ID: usize = 200;

/// The headers that describe the client or its connection, besides `X-Forwarded-*`.
const CLIENT_HEADERS: [&str; 2] = ["forwarded", "x-real-ip"];

/// `trusted_proxies`, and the source of request ids.
pub struct Forwarding {
    trusted: Vec<IpNet>,
    /// `X-Forwarded-Proto` when no trusted peer said it: how the proxy's own listener
    /// was reached (`https` with `[listen_tls]`).
    proto: HeaderValue,
    /// `"unix"` in `trusted_proxies`: the peers on the proxy's Unix socket.
    trust_unix: bool,
    /// A random prefix per process, so that ids from two gates never collide.
    prefix: u64,
    counter: AtomicU64,
}

/// Where a request came from: an IP address, or a process on the proxy's Unix socket
/// (named by the socket's path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Ip(IpAddr),
    Unix(Arc<str>),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Ip(ip) => ip.fmt(f),
            Address::Unix(path) => write!(f, "unix:{path}"),
        }
    }
}

/// Who sent a request, as far as the gate can tell, and its request id.
#[derive(Debug, Clone)]
pub struct Client {
    /// The first untrusted hop: the peer, or from a trusted peer, the right-most
    /// `X-Forwarded-For` address that is not itself a trusted proxy.
    pub address: Address,
    pub peer_trusted: bool,
    /// The trusted peer's `X-Request-Id`, or one the gate made.
    pub request_id: HeaderValue,
}

impl Client {
    pub fn request_id(&self) -> &str {
        self.request_id.to_str().unwrap_or("-")
    }
}

impl Forwarding {
    pub fn new(trusted: Vec<IpNet>, tls: bool, trust_unix: bool) -> Self {
        let mut seed = [0u8; 8];
        // A failed RNG leaves a zero prefix: ids stay unique within the process.
        let _ = aws_lc_rs::rand::fill(&mut seed);
        Forwarding {
            trusted,
            proto: HeaderValue::from_static(if tls { "https" } else { "http" }),
            trust_unix,
            prefix: u64::from_be_bytes(seed),
            counter: AtomicU64::new(0),
        }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client and the request id of a request from `peer`.
    pub fn client(&self, headers: &HeaderMap, peer: &Peer) -> Client {
        match peer {
            Peer::Tcp(addr) => {
                let ip = addr.ip().to_canonical();
                self.client_of(headers, Address::Ip(ip), self.trusts(ip))
            }
            Peer::Unix(path) => {
                self.client_of(headers, Address::Unix(path.clone()), self.trust_unix)
            }
        }
    }

    /// The client and the request id of a request that `peer_ip` relayed, which is
    /// trusted (`peer_trusted`) or not. A decision endpoint's peer is trusted by
    /// `authz.trusted_peers`; its copy of the client's headers says who the client is.
    pub fn client_via(&self, headers: &HeaderMap, peer_ip: IpAddr, peer_trusted: bool) -> Client {
        self.client_of(headers, Address::Ip(peer_ip.to_canonical()), peer_trusted)
    }

    fn client_of(&self, headers: &HeaderMap, peer: Address, peer_trusted: bool) -> Client {
        let client = if peer_trusted {
            self.client_behind(headers, peer)
        } else {
            peer
        };
        let kept = peer_trusted
            .then(|| single(headers, &X_REQUEST_ID))
            .flatten()
            .filter(|v| is_sane_id(v.as_bytes()))
            .cloned();
        let request_id = kept.unwrap_or_else(|| self.new_id());
        Client {
            address: client,
            peer_trusted,
            request_id,
        }
    }

    /// Walks `X-Forwarded-For` from the right, past trusted proxies, to the client.
    /// An entry that is not an address stops the walk at the hop after it.
    fn client_behind(&self, headers: &HeaderMap, peer: Address) -> Address {
        let mut client = peer;
        let hops: Vec<&str> = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>() else {
                break;
            };
            let ip = ip.to_canonical();
            client = Address::Ip(ip);
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }

    /// 32 hex digits: the process's random prefix, then a counter.
    fn new_id(&self) -> HeaderValue {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let id = (u128::from(self.prefix) << 64) | u128::from(n);
        let mut text = [0u8; 32];
        for (i, digit) in text.iter_mut().enumerate() {
            *digit = HEX[((id >> (124 - 4 * i)) & 0xf) as usize];
        }
        HeaderValue::from_bytes(&text).unwrap_or(HeaderValue::from_static("-"))
    }

    /// Rewrites the forwarding headers the app will read. From a trusted peer,
    /// `X-Forwarded-For` is appended to and `X-Forwarded-Proto`/`-Host` are kept
    /// (written from what the gate saw when absent); from anyone else every spelling of
    /// `X-Forwarded-*`, `Forwarded` and `X-Real-IP` goes, and the gate writes its own.
    /// Other spellings than the exact ones never pass. `X-Request-Id` is the client's.
    /// A Unix socket's peer has no address: `X-Forwarded-For` then holds only what a
    /// trusted peer sent, and is absent from an untrusted one.
    pub fn rewrite(&self, headers: &mut HeaderMap, peer: &Peer, client: &Client) {
        // Header names are lower case here, so this is the exact spelling only.
        let exact = |name: &str| name.starts_with("x-forwarded-") || CLIENT_HEADERS.contains(&name);
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|k| {
                let k = k.as_str();
                let family = folded_starts_with(k, "x-forwarded-")
                    || CLIENT_HEADERS.iter().any(|n| same_folded_name(k, n));
                let request_id = same_folded_name(k, X_REQUEST_ID.as_str());
                request_id || (family && !(client.peer_trusted && exact(k)))
            })
            .cloned()
            .collect();
        for name in doomed {
            headers.remove(name);
        }

        let prior: Vec<&str> = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let mut hops = prior.join(", ");
        if let Peer::Tcp(addr) = peer {
            let peer_ip = addr.ip().to_canonical().to_string();
            hops = if hops.is_empty() {
                peer_ip
            } else {
                format!("{hops}, {peer_ip}")
            };
        }
        match HeaderValue::from_str(&hops) {
            // `insert` replaces every line of the header with the one value.
            Ok(v) if !hops.is_empty() => {
                headers.insert(X_FORWARDED_FOR, v);
            }
            _ => {
                headers.remove(X_FORWARDED_FOR);
            }
        }
        if !headers.contains_key(X_FORWARDED_PROTO) {
            headers.insert(X_FORWARDED_PROTO, self.proto.clone());
        }
        if !headers.contains_key(X_FORWARDED_HOST) {
            if let Some(host) = headers.get(header::HOST).cloned() {
                headers.insert(X_FORWARDED_HOST, host);
            }
        }
        headers.insert(X_REQUEST_ID, client.request_id.clone());
    }
}

/// The header's value if it appears exactly once.
fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

/// Visible ASCII, no spaces or quotes, at most [`MAX_REQUEST_ID`] bytes: safe to log
/// and to put in a JSON body.
fn is_sane_id(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= MAX_REQUEST_ID
        && value
            .iter()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn forwarding() -> Forwarding {
        Forwarding::new(
            vec![
                "10.0.0.0/8".parse().unwrap(),
                "192.168.1.1/32".parse().unwrap(),
            ],
            false,
            false,
        )
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        h
    }

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 5000)
    }

    #[test]
    fn the_client_is_the_first_untrusted_hop_from_the_right() {
        let f = forwarding();
        let xff = |v: &str| headers(&[("x-forwarded-for", v)]);
        let cases = [
            ("10.0.0.5", "203.0.113.7, 10.0.0.9", "203.0.113.7"),
            ("10.0.0.5", "198.51.100.1, 203.0.113.7", "203.0.113.7"),
            ("10.0.0.5", "10.1.1.1, 192.168.1.1", "10.1.1.1"),
            ("10.0.0.5", "garbage, 10.0.0.9", "10.0.0.9"),
            // An untrusted peer's header is not believed.
            ("203.0.113.50", "1.2.3.4", "203.0.113.50"),
            ("::ffff:203.0.113.50", "1.2.3.4", "203.0.113.50"),
        ];
        for (from, chain, want) in cases {
            let client = f.client(&xff(chain), &Peer::Tcp(peer(from)));
            assert_eq!(client.address.to_string(), want, "{from} {chain}");
        }
    }

    #[test]
    fn request_ids_are_kept_from_trusted_peers_only_and_otherwise_made() {
        let f = forwarding();
        let h = headers(&[("x-request-id", "abc-123")]);
        assert_eq!(
            f.client(&h, &Peer::Tcp(peer("10.0.0.5"))).request_id(),
            "abc-123"
        );
        let made = f.client(&h, &Peer::Tcp(peer("203.0.113.50")));
        assert_ne!(made.request_id(), "abc-123");
        assert_eq!(made.request_id().len(), 32);
        assert!(made.request_id().bytes().all(|b| b.is_ascii_hexdigit()));
        let first: u128 = u128::from_str_radix(made.request_id(), 16).unwrap();
        let next = f.client(&h, &Peer::Tcp(peer("203.0.113.50")));
        let second: u128 = u128::from_str_radix(next.request_id(), 16).unwrap();
        // Same process prefix, next counter value.
        assert_eq!(second, first + 1);
        let bad = headers(&[("x-request-id", "has \"quotes\"")]);
        assert_ne!(
            f.client(&bad, &Peer::Tcp(peer("10.0.0.5"))).request_id(),
            "has \"quotes\""
        );
    }

    #[test]
    fn untrusted_peers_lose_every_spelling_and_trusted_ones_keep_the_exact_names() {
        let f = forwarding();
        let sent = [
            ("host", "app.example.com"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-port", "443"),
            ("X_Forwarded_For", "5.6.7.8"),
            ("x.forwarded.proto", "https"),
            ("forwarded", "for=1.2.3.4;proto=https"),
            ("x-real-ip", "1.2.3.4"),
            ("x_real_ip", "1.2.3.4"),
            ("x-request-id", "client-chosen"),
            ("x_request_id", "client-chosen"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ];
        let names = |h: &HeaderMap| {
            let mut v: Vec<String> = h
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
                .collect();
            v.sort();
            v
        };

        let mut h = headers(&sent);
        let client = f.client(&h, &Peer::Tcp(peer("203.0.113.50")));
        f.rewrite(&mut h, &Peer::Tcp(peer("203.0.113.50")), &client);
        let id = client.request_id().to_owned();
        assert_eq!(
            names(&h),
            [
                "host: app.example.com".to_owned(),
                "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
                "x-forwarded-for: 203.0.113.50".into(),
                "x-forwarded-host: app.example.com".into(),
                "x-forwarded-proto: http".into(),
                format!("x-request-id: {id}"),
            ]
        );

        let mut h = headers(&sent);
        let client = f.client(&h, &Peer::Tcp(peer("10.0.0.5")));
        f.rewrite(&mut h, &Peer::Tcp(peer("10.0.0.5")), &client);
        assert_eq!(
            names(&h),
            [
                "forwarded: for=1.2.3.4;proto=https",
                "host: app.example.com",
                "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "x-forwarded-for: 1.2.3.4, 10.0.0.5",
                "x-forwarded-host: evil.example",
                "x-forwarded-port: 443",
                "x-forwarded-proto: https",
                "x-real-ip: 1.2.3.4",
                "x-request-id: client-chosen",
            ]
        );
    }

    #[test]
    fn a_unix_socket_peer_has_no_address_and_is_believed_only_when_trusted() {
        let socket = Peer::Unix(Arc::from("/run/cognito-gate/gate.sock"));
        let sent = [
            ("x-forwarded-for", "198.51.100.7, 10.0.0.5"),
            ("x-forwarded-proto", "https"),
        ];
        // Untrusted: nothing it says about the client is kept, and no address is made up.
        let f = forwarding();
        let mut h = headers(&sent);
        let client = f.client(&h, &socket);
        assert_eq!(
            client.address.to_string(),
            "unix:/run/cognito-gate/gate.sock"
        );
        f.rewrite(&mut h, &socket, &client);
        assert_eq!(h.get("x-forwarded-for"), None);
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
        // Trusted (`trusted_proxies = ["unix"]`): its chain is walked and kept as sent.
        let f = Forwarding::new(vec!["10.0.0.0/8".parse().unwrap()], false, true);
        let mut h = headers(&sent);
        let client = f.client(&h, &socket);
        assert_eq!(client.address.to_string(), "198.51.100.7");
        f.rewrite(&mut h, &socket, &client);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "198.51.100.7, 10.0.0.5");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
    }
}
