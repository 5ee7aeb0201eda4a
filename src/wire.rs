//! Facts about HTTP header names that every floor needs: which are hop-by-hop, when two
//! names reach an app as the same header, and what an `Upgrade` header asks for.
//! Bottom floor: imports nothing of the gate's own.

use http::header::{self, HeaderMap, HeaderName};

/// Hop-by-hop headers (RFC 9110 §7.6.1), plus the non-standard ones proxies also drop,
/// and `HTTP2-Settings`, which belongs to one connection's h2c upgrade (RFC 7540 §3.2.1).
pub(crate) const HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("http2-settings"),
];

/// Whether `name` is hop-by-hop, and so may not be configured as an identity header.
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// Whether two header names may reach an app as the same header: case-insensitive,
/// with `-`, `_` and `.` treated as one character. CGI-style servers (WSGI, Rack,
/// PHP) turn `X_User_Sub` into the same variable as `X-User-Sub` (the root of
/// oauth2-proxy GHSA-vjrc-mh2v-45x6).
pub(crate) fn same_folded_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

fn fold(b: u8) -> u8 {
    match b {
        b'_' | b'.' => b'-',
        other => other.to_ascii_lowercase(),
    }
}

/// The protocols a request's `Upgrade` header names (RFC 9110 §7.8), without versions.
pub(crate) fn upgrade_protocols(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::UPGRADE)
        .iter()
        .map(|v| v.to_str().unwrap_or("\u{0}"))
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .map(|t| t.split_once('/').map_or(t, |(name, _)| name))
}

/// Whether the request's `Upgrade` header, if any, names only `allowed` protocols
/// (lower-case names, compared case-insensitively). A header that is not text names
/// a protocol nobody allowed. A request with no `Upgrade` header passes.
pub(crate) fn upgrade_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    upgrade_protocols(headers).all(|p| allowed.iter().any(|a| a.eq_ignore_ascii_case(p)))
}

/// Whether `name` folds (see [`same_folded_name`]) to a name starting with `prefix`
/// (lower case, `-` for separators): `X_Forwarded_Host` starts with `x-forwarded-`.
pub(crate) fn folded_starts_with(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name
            .bytes()
            .zip(prefix.bytes())
            .all(|(x, y)| fold(x) == fold(y))
}
