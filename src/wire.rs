//! Facts about HTTP headers that every floor needs: which are hop-by-hop, when two
//! names reach an app as the same header, what an `Upgrade` header asks for, and what
//! an RFC 7239 `Forwarded` header says. Bottom floor: imports nothing of the gate's own.

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

/// The `Forwarded` header (RFC 7239).
pub(crate) const FORWARDED: &str = "forwarded";

/// One parameter of a `Forwarded` element: its name in lower case and its value,
/// unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ForwardedPair {
    pub name: String,
    pub value: String,
}

/// The elements of every `Forwarded` header line (RFC 7239 §4), each a list of its
/// parameters; `None` when any line does not parse, or says what a lax reader would
/// read otherwise.
///
/// Frameworks do not parse this header alike: Spring, Quarkus and Micronaut find
/// `host=` with patterns that also look inside quoted values and do not stop at a
/// repeated parameter. So besides the grammar this refuses what only a strict parser
/// reads one way: a quoted value holding `,` `;` `=` `"` or `\`, a parameter given
/// twice in one element, and a header line that is not text.
pub(crate) fn forwarded_elements(headers: &HeaderMap) -> Option<Vec<Vec<ForwardedPair>>> {
    let mut elements = Vec::new();
    for line in headers.get_all(FORWARDED) {
        let text = line.to_str().ok()?;
        for element in split_outside_quotes(text, b',')? {
            let mut pairs: Vec<ForwardedPair> = Vec::new();
            for pair in split_outside_quotes(element, b';')? {
                let pair = pair.trim_matches([' ', '\t']);
                if pair.is_empty() {
                    continue;
                }
                let (name, value) = pair.split_once('=')?;
                if name.is_empty() || !name.bytes().all(is_tchar) {
                    return None;
                }
                let value = match value.strip_prefix('"') {
                    Some(quoted) => {
                        let inner = quoted.strip_suffix('"')?;
                        if inner.bytes().any(|b| {
                            matches!(b, b',' | b';' | b'=' | b'"' | b'\\') || b.is_ascii_control()
                        }) {
                            return None;
                        }
                        inner
                    }
                    None if !value.is_empty() && value.bytes().all(is_tchar) => value,
                    None => return None,
                };
                let name = name.to_ascii_lowercase();
                if pairs.iter().any(|p| p.name == name) {
                    return None;
                }
                pairs.push(ForwardedPair {
                    name,
                    value: value.to_owned(),
                });
            }
            elements.push(pairs);
        }
    }
    Some(elements)
}

/// `text` split at each `separator` outside a quoted string; `None` for an unclosed
/// quote.
fn split_outside_quotes(text: &str, separator: u8) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b if b == separator && !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return None;
    }
    parts.push(&text[start..]);
    Some(parts)
}

/// A `tchar` of RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn parse(lines: &[&'static str]) -> Option<Vec<Vec<(String, String)>>> {
        let mut h = HeaderMap::new();
        for line in lines {
            h.append(FORWARDED, HeaderValue::from_static(line));
        }
        forwarded_elements(&h).map(|elements| {
            elements
                .into_iter()
                .map(|e| e.into_iter().map(|p| (p.name, p.value)).collect())
                .collect()
        })
    }

    fn pairs(list: &[&[(&str, &str)]]) -> Option<Vec<Vec<(String, String)>>> {
        Some(
            list.iter()
                .map(|e| {
                    e.iter()
                        .map(|(n, v)| (n.to_string(), v.to_string()))
                        .collect()
                })
                .collect(),
        )
    }

    #[test]
    fn forwarded_elements_follow_rfc_7239() {
        assert_eq!(parse(&[]), pairs(&[]));
        assert_eq!(
            parse(&["for=192.0.2.60;proto=http;by=203.0.113.43"]),
            pairs(&[&[
                ("for", "192.0.2.60"),
                ("proto", "http"),
                ("by", "203.0.113.43")
            ]])
        );
        assert_eq!(
            parse(&["for=192.0.2.43, for=\"[2001:db8:cafe::17]:4711\";Host=App.Example"]),
            pairs(&[
                &[("for", "192.0.2.43")],
                &[("for", "[2001:db8:cafe::17]:4711"), ("host", "App.Example")]
            ])
        );
        assert_eq!(
            parse(&["for=a", "host=b.example;proto=https"]),
            pairs(&[
                &[("for", "a")],
                &[("host", "b.example"), ("proto", "https")]
            ])
        );
        assert_eq!(
            parse(&["for=a ; host=b"]),
            pairs(&[&[("for", "a"), ("host", "b")]])
        );
    }

    #[test]
    fn forwarded_headers_a_lax_reader_would_read_otherwise_are_refused() {
        for bad in [
            "for=\"x;host=admin.example.com\"",
            "for=\"x,host=admin.example.com\"",
            "for=\"x=y\"",
            "for=\"x\\\"\"",
            "host=a.example;host=b.example",
            "HOST=a.example;host=b.example",
            "host=\"a.example",
            "host=",
            "host",
            "=a",
            "host=a b",
            "ho st=a",
            "host=a@b",
        ] {
            let mut h = HeaderMap::new();
            h.insert(FORWARDED, HeaderValue::from_static(bad));
            assert_eq!(forwarded_elements(&h), None, "{bad}");
        }
    }
}
