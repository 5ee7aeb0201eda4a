//! Header hygiene on the request path: strip forged identity headers, inject ours, and
//! drop hop-by-hop headers.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::HeadersConfig;
use crate::token::{Identity, Source, ALB_DATA, ALB_HEADERS};
use crate::wire::{same_folded_name, upgrade_protocols, HOP_BY_HOP};

/// Headers a client may not remove by naming them in `Connection`: without `Host` the
/// app would see the upstream's own address instead of the name the client asked for.
const END_TO_END: [HeaderName; 1] = [header::HOST];

/// Removes hop-by-hop headers and every header named in `Connection`. When
/// `keep_upgrade` is set (an authorised upgrade such as WebSocket), `Upgrade` and a
/// `Connection: upgrade` survive, because the next hop must see the upgrade request.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        let kept = END_TO_END.contains(&name) || (keep_upgrade && name == header::UPGRADE);
        if !kept {
            headers.remove(name);
        }
    }
    let upgrade = if keep_upgrade {
        headers.remove(header::UPGRADE)
    } else {
        None
    };
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if let Some(protocol) = upgrade {
        headers.insert(header::UPGRADE, protocol);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Whether a client's request asks for a protocol upgrade (RFC 9110 §7.8).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes an h2c upgrade offer (`Upgrade: h2c` and `HTTP2-Settings`), which a proxy
/// may ignore and then answer in HTTP/1.1 (RFC 9110 §7.8), as nginx and Envoy do.
/// An `Upgrade` header that also names other protocols is left for
/// [`upgrade_allowed`] to judge.
pub fn drop_h2c_offer(headers: &mut HeaderMap) {
    let only_h2c = {
        let mut protocols = upgrade_protocols(headers).peekable();
        protocols.peek().is_some() && protocols.all(|p| p.eq_ignore_ascii_case("h2c"))
    };
    if only_h2c {
        headers.remove(header::UPGRADE);
        headers.remove("http2-settings");
    }
}

/// Headers with which common frameworks let a client change the method or path they
/// route by: Rack, Express, Spring and ASP.NET honour method overrides, Symfony,
/// Laravel and IIS `X-Original-URL`/`X-Rewrite-URL`, Spring `X-Forwarded-Prefix`.
/// The policy judged the request's own method and path, so none may reach the app.
pub const ROUTING_OVERRIDES: [&str; 8] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-forwarded-uri",
    "x-forwarded-prefix",
];

/// Whether `headers` has a header that folds to one of `names` without being spelled
/// exactly as it (header names are lower case here): `x_user_sub`, `x.http-method-override`.
/// A forward-auth peer removes or overwrites only the exact spelling, and the gate
/// cannot remove headers from a peer's request, so it refuses these instead.
pub fn has_odd_spelling(headers: &HeaderMap, names: &[impl AsRef<str>]) -> bool {
    headers.keys().any(|k| {
        names.iter().any(|n| {
            let n = n.as_ref();
            same_folded_name(k.as_str(), n) && !k.as_str().eq_ignore_ascii_case(n)
        })
    })
}

/// Removes every header that folds (see `wire::same_folded_name`) to one of `names`.
pub fn strip_folded(headers: &mut HeaderMap, names: &[&str]) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| names.iter().any(|n| same_folded_name(k.as_str(), n)))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// Removes the cookies named in `names` from every `Cookie` header (RFC 6265 §5.4),
/// keeping the others in order; a header left with no cookie goes.
pub fn strip_cookies(headers: &mut HeaderMap, names: &[Box<str>]) {
    if names.is_empty() || !headers.contains_key(header::COOKIE) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| {
            let Ok(text) = value.to_str() else {
                // Not text: nothing can be parsed out of it, so none of it is kept.
                return None;
            };
            let pairs: Vec<&str> = text
                .split(';')
                .map(str::trim)
                .filter(|pair| {
                    let name = pair.split_once('=').map_or(*pair, |(n, _)| n).trim();
                    !pair.is_empty() && !names.iter().any(|n| n.as_ref() == name)
                })
                .collect();
            (!pairs.is_empty()).then(|| HeaderValue::from_str(&pairs.join("; ")).ok())?
        })
        .collect();
    headers.remove(header::COOKIE);
    for value in kept {
        headers.append(header::COOKIE, value);
    }
}

/// The identity header names in use, and how to write them.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub sub: HeaderName,
    pub groups: HeaderName,
    /// `headers.preset`'s other names for `sub` and for the groups.
    pub also_sub: Vec<HeaderName>,
    pub also_groups: Vec<HeaderName>,
    /// `[headers.claims]`: headers that carry a claim of the caller's token.
    pub claims: Vec<(HeaderName, Box<str>)>,
    /// Other headers that an app would read as an identity and that the gate never
    /// writes: the load balancer's `x-amzn-oidc-identity`, `x-amzn-oidc-accesstoken`
    /// and `x-amzn-oidc-data`, in or out of ALB mode. Only a `x-amzn-oidc-data` that
    /// this gate verified on the request is kept (see [`verified_alb_data`]).
    pub unverified: Vec<HeaderName>,
}

impl IdentityHeaders {
    /// The names from `[headers]`, and the load balancer's.
    pub fn new(config: &HeadersConfig) -> Self {
        IdentityHeaders {
            sub: config.user_sub.clone(),
            groups: config.user_groups.clone(),
            also_sub: config.also_sub.clone(),
            also_groups: config.also_groups.clone(),
            claims: config.claims.clone(),
            unverified: ALB_HEADERS
                .iter()
                .map(|n| HeaderName::from_static(n))
                .collect(),
        }
    }

    /// The headers the gate writes for an identity: sub, groups, the preset's, then
    /// the claims'.
    pub fn written(&self) -> impl Iterator<Item = &HeaderName> {
        [&self.sub, &self.groups]
            .into_iter()
            .chain(&self.also_sub)
            .chain(&self.also_groups)
            .chain(self.claims.iter().map(|(h, _)| h))
    }

    /// Every name whose spellings are stripped: the written ones, then the unverified.
    pub fn names(&self) -> impl Iterator<Item = &HeaderName> {
        self.written().chain(&self.unverified)
    }

    /// Every header name in `headers` that is, or would be read as, an identity header.
    pub fn forged_names(&self, headers: &HeaderMap) -> Vec<HeaderName> {
        headers
            .keys()
            .filter(|k| {
                self.names()
                    .any(|n| same_folded_name(k.as_str(), n.as_str()))
            })
            .cloned()
            .collect()
    }

    /// Removes every client-sent identity header, in any spelling.
    pub fn strip(&self, headers: &mut HeaderMap) {
        let names: Vec<&str> = self.names().map(HeaderName::as_str).collect();
        strip_folded(headers, &names);
    }

    /// Writes the identity headers. Call [`IdentityHeaders::strip`] first.
    pub fn inject(&self, headers: &mut HeaderMap, identity: &Identity) {
        let sub = encode_value(std::iter::once(&identity.sub));
        for name in &self.also_sub {
            headers.insert(name.clone(), sub.clone());
        }
        headers.insert(self.sub.clone(), sub);
        let groups = encode_value(identity.groups.iter());
        for name in &self.also_groups {
            headers.insert(name.clone(), groups.clone());
        }
        headers.insert(self.groups.clone(), groups);
        for (header, claim) in &self.claims {
            let items = claim_items(identity.claims.get(claim));
            headers.insert(header.clone(), encode_value(items.iter()));
        }
    }
}

/// The request's `x-amzn-oidc-data`, when this gate verified it for `identity` on this
/// request: the only case in which it may reach the app. The decision refuses a request
/// with two of them, so the one there is the one that was verified.
pub fn verified_alb_data(headers: &HeaderMap, identity: Option<&Identity>) -> Option<HeaderValue> {
    identity
        .filter(|i| matches!(i.source, Source::Alb(_)))
        .and_then(|_| headers.get(ALB_DATA))
        .cloned()
}

/// A claim as the items of a header value: a string is itself, an array its items,
/// anything else its JSON text; a missing claim (or `null`) is no items, an empty value.
fn claim_items(claim: Option<&serde_json::Value>) -> Vec<String> {
    use serde_json::Value;
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match claim {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().map(text).collect(),
        Some(other) => vec![text(other)],
    }
}

/// Joins `items` with `,`, percent-encoding `,`, `%` and every byte outside visible
/// ASCII in each item so that the list splits unambiguously and is a valid header value.
/// No items gives an empty value.
pub fn encode_value<'a>(items: impl Iterator<Item = &'a String>) -> HeaderValue {
    let mut out = String::new();
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        for b in item.bytes() {
            if b == b',' || b == b'%' || !(0x21..0x7f).contains(&b) {
                out.push_str(&format!("%{b:02X}"));
            } else {
                out.push(char::from(b));
            }
        }
    }
    // Only visible ASCII remains, which is always a valid header value.
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::upgrade_allowed;

    fn encode(items: &[&str]) -> String {
        let owned: Vec<String> = items.iter().map(|s| s.to_string()).collect();
        encode_value(owned.iter())
            .to_str()
            .expect("ascii")
            .to_owned()
    }

    #[test]
    fn group_values_are_unambiguous() {
        let cases: &[(&[&str], &str)] = &[
            (&[], ""),
            (&["admins"], "admins"),
            (&["admins", "ops"], "admins,ops"),
            (&["a,b", "c"], "a%2Cb,c"),
            (&["100%"], "100%25"),
            (&["Team Leads"], "Team%20Leads"),
            (&["équipe"], "%C3%A9quipe"),
            (&["tab\there"], "tab%09here"),
            (&["us-east-1_iWcTPhZBA_adfs"], "us-east-1_iWcTPhZBA_adfs"),
        ];
        for (items, want) in cases {
            assert_eq!(encode(items), *want, "{items:?}");
        }
    }

    #[test]
    fn token_cookies_are_removed_and_the_others_kept() {
        let names: Vec<Box<str>> = vec!["id_token".into()];
        let strip = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(header::COOKIE, HeaderValue::from_str(v).expect("value"));
            }
            strip_cookies(&mut h, &names);
            h.get_all(header::COOKIE)
                .iter()
                .map(|v| v.to_str().expect("text").to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&["id_token=abc; theme=dark"]), ["theme=dark"]);
        assert_eq!(strip(&["a=1;id_token=abc;  b=2"]), ["a=1; b=2"]);
        assert_eq!(strip(&["id_token=abc"]), Vec::<String>::new());
        assert_eq!(strip(&["id_token=x", "lang=en"]), ["lang=en"]);
        assert_eq!(
            strip(&["id_token_old=1; xid_token=2"]),
            ["id_token_old=1; xid_token=2"]
        );
        assert_eq!(strip(&[" id_token = abc ; z=1"]), ["z=1"]);
    }

    #[test]
    fn claims_become_header_items() {
        use serde_json::json;
        let cases = [
            (None, vec![]),
            (Some(json!(null)), vec![]),
            (Some(json!("a@example.com")), vec!["a@example.com"]),
            (Some(json!(true)), vec!["true"]),
            (Some(json!(42)), vec!["42"]),
            (Some(json!(["x", "y,z", 3])), vec!["x", "y,z", "3"]),
            (Some(json!({"k": "v"})), vec![r#"{"k":"v"}"#]),
        ];
        for (claim, want) in cases {
            assert_eq!(claim_items(claim.as_ref()), want, "{claim:?}");
        }
        let items = claim_items(Some(&json!(["x", "y,z"])));
        assert_eq!(encode_value(items.iter()), "x,y%2Cz");
    }

    #[test]
    fn identity_names_fold_case_dash_underscore_and_dot() {
        for forged in ["x-user-sub", "X_User_Sub", "x.user.sub", "X-USER_SUB"] {
            assert!(same_folded_name(forged, "x-user-sub"), "{forged}");
        }
        for other in ["x-user-subx", "x-user", "xuser-sub", "x-user-sub2"] {
            assert!(!same_folded_name(other, "x-user-sub"), "{other}");
        }
    }

    #[test]
    fn strip_removes_every_spelling() {
        let ids = IdentityHeaders {
            sub: HeaderName::from_static("x-user-sub"),
            groups: HeaderName::from_static("x-user-groups"),
            also_sub: Vec::new(),
            also_groups: Vec::new(),
            claims: vec![(HeaderName::from_static("x-user-email"), "email".into())],
            unverified: vec![HeaderName::from_static("x-amzn-oidc-identity")],
        };
        let mut h = HeaderMap::new();
        for name in [
            "x-user-sub",
            "x_user_sub",
            "x.user.groups",
            "x-user-groups",
            "X_Amzn_Oidc.Identity",
            "x-amzn-oidc-identity",
            "x.user_email",
            "x-other",
        ] {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_static("forged"),
            );
        }
        ids.strip(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-other"]);
    }

    #[test]
    fn odd_spellings_are_told_from_exact_ones() {
        let names = ["x-user-sub", "x-http-method-override"];
        let with = |name: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static("v"));
            h
        };
        for odd in [
            "x_user_sub",
            "x.user.sub",
            "x-user_sub",
            "x_http_method_override",
        ] {
            assert!(has_odd_spelling(&with(odd), &names), "{odd}");
        }
        for fine in [
            "x-user-sub",
            "x-http-method-override",
            "x-user-subject",
            "x-other",
        ] {
            assert!(!has_odd_spelling(&with(fine), &names), "{fine}");
        }
    }

    #[test]
    fn routing_overrides_are_removed_in_every_spelling() {
        let mut h = HeaderMap::new();
        for name in [
            "x-http-method-override",
            "X_HTTP_Method_Override",
            "x.original.url",
            "x-rewrite-url",
            "x-forwarded-prefix",
            "x-forwarded-for",
        ] {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_static("DELETE"),
            );
        }
        strip_folded(&mut h, &ROUTING_OVERRIDES);
        assert_eq!(
            h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["x-forwarded-for"]
        );
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        let mut plain = h.clone();
        remove_hop_by_hop(&mut plain, false);
        assert_eq!(
            plain.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["x-kept"]
        );

        remove_hop_by_hop(&mut h, true);
        assert_eq!(
            h.get(header::UPGRADE).map(|v| v.as_bytes()),
            Some(&b"websocket"[..])
        );
        assert_eq!(
            h.get(header::CONNECTION).map(|v| v.as_bytes()),
            Some(&b"upgrade"[..])
        );
        assert!(!h.contains_key("x-secret"));
    }

    fn with_upgrade(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::UPGRADE, HeaderValue::from_static(v));
        }
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("Upgrade, HTTP2-Settings"),
        );
        h.insert(
            "http2-settings",
            HeaderValue::from_static("AAMAAABkAARAAAAAAAIAAAAA"),
        );
        h
    }

    #[test]
    fn only_allowed_upgrade_protocols_pass() {
        let allowed = ["websocket".to_owned()];
        let cases: &[(&[&str], bool)] = &[
            (&[], true),
            (&["websocket"], true),
            (&["WebSocket"], true),
            (&["websocket/13"], true),
            (&["h2c"], false),
            (&["H2C"], false),
            (&["websocket, h2c"], false),
            (&["websocket", "h2c"], false),
            (&["TLS/1.2"], false),
            (&["foo"], false),
            (&["HTTP/2.0"], false),
        ];
        for (values, want) in cases {
            assert_eq!(
                upgrade_allowed(&with_upgrade(values), &allowed),
                *want,
                "{values:?}"
            );
        }
        assert!(!upgrade_allowed(&with_upgrade(&["websocket"]), &[]));
    }

    #[test]
    fn an_h2c_offer_alone_is_dropped() {
        for values in [&["h2c"][..], &["H2C"], &["h2c", "h2c"]] {
            let mut h = with_upgrade(values);
            drop_h2c_offer(&mut h);
            assert!(!h.contains_key(header::UPGRADE), "{values:?}");
            assert!(!h.contains_key("http2-settings"), "{values:?}");
        }
        // Mixed with another protocol it stays, for upgrade_allowed to refuse.
        let mut h = with_upgrade(&["h2c, websocket"]);
        drop_h2c_offer(&mut h);
        assert!(h.contains_key(header::UPGRADE));
        assert!(!upgrade_allowed(&h, &["websocket".to_owned()]));
    }

    #[test]
    fn host_survives_being_named_in_connection() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Host, x-a"));
        h.insert(header::HOST, HeaderValue::from_static("app.example"));
        h.insert("x-a", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["host"]);
    }

    #[test]
    fn upgrade_requests_are_recognized() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(!wants_upgrade(&h));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(wants_upgrade(&h));
    }
}
