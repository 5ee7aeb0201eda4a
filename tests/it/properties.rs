//! Property tests: generated inputs, a bounded number of cases each so that CI stays
//! fast (`PROPTEST_CASES` raises it for a longer local run). Each property is one a
//! user relies on: the path the policy judges is the path every app reads, no token
//! text verifies unless it was signed, no policy text panics the loader, and no
//! spelling of an identity header survives stripping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use proptest::prelude::*;
use serde_json::json;

use cognito_gate::internals::{canonicalize, parse_key_set, strip_folded, Verifier};
use cognito_gate::{Config, Policy};
use cognito_gate_dev_issuer::SigningKey;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(cases),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------
// Paths

/// Path text as an attacker writes it: separators, dots, escapes of everything that
/// matters (slashes, dots, `@`, `;`, `#`, `?`, `%`, NUL, non-ASCII), letters of both
/// cases, and the characters a URI may not hold raw.
fn path_text() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        4 => Just("/".to_owned()),
        2 => Just(".".to_owned()),
        1 => Just("..".to_owned()),
        4 => "[a-cA-C0-9]{1,3}",
        2 => (0u8..=255).prop_map(|b| format!("%{b:02x}")),
        2 => (0u8..=255).prop_map(|b| format!("%{b:02X}")),
        1 => prop::sample::select(vec![
            "%2e", "%2E", "%2f", "%2F", "%5c", "%40", "%3b", "%23", "%3f", "%25", "%00",
            "%", "%4", "%zz",
        ])
        .prop_map(str::to_owned),
        2 => prop::sample::select(vec![
            "@", ":", "!", "$", "&", "'", "(", ")", "*", "+", ",", "=", "-", "_", "~",
            ";", "#", "\\", "{", "}", "|", "^", "\"", "<", ">", "`", "[", "]", " ", "é",
        ])
        .prop_map(str::to_owned),
    ];
    (any::<bool>(), prop::collection::vec(atom, 0..16)).prop_map(|(absolute, atoms)| {
        let body = atoms.concat();
        if absolute {
            format!("/{body}")
        } else {
            body
        }
    })
}

/// A strict reference reading, as an app that decodes before it routes (Werkzeug,
/// Go's `net/http`): every escape decoded, then split on `/`, then RFC 3986 dot
/// segments resolved. `None` for an invalid escape.
fn decode_then_split(path: &str) -> Option<Vec<Vec<u8>>> {
    let decoded = percent_decode(path)?;
    let mut out: Vec<Vec<u8>> = Vec::new();
    let rest = decoded.strip_prefix(b"/")?;
    for segment in rest.split(|b| *b == b'/') {
        match segment {
            b"." => {}
            b".." => {
                out.pop();
            }
            s => out.push(s.to_vec()),
        }
    }
    Some(out)
}

/// The other reading, as an app that routes on the raw path and decodes each segment
/// (Express's parameters, Spring): split on `/`, then decode each segment.
fn split_then_decode(path: &str) -> Option<Vec<Vec<u8>>> {
    path.strip_prefix('/')?
        .split('/')
        .map(percent_decode)
        .collect()
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// How an administrator writes a rule for a decoded path: raw where a policy file can
/// hold the character, escaped only where it cannot (delimiters, `%`, `#`, `;`, `?`,
/// and bytes that are not visible ASCII).
fn written_as_an_admin_would(segments: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for segment in segments {
        out.push('/');
        for &b in segment {
            if (0x21..0x7f).contains(&b) && !b"/\\%#;?\"".contains(&b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(config(4096))]

    #[test]
    fn a_canonical_path_is_its_own_canonical_form_and_holds_nothing_doubtful(raw in path_text()) {
        if let Ok(canonical) = canonicalize(&raw) {
            let again = canonicalize(&canonical);
            prop_assert_eq!(again.as_deref(), Ok(&*canonical));
            prop_assert!(canonical.starts_with('/'));
            prop_assert!(canonical.bytes().all(|b| (0x21..0x7f).contains(&b)), "{}", canonical);
            for bad in ["//", "#", ";", "\\"] {
                prop_assert!(!canonical.contains(bad), "{} holds {}", canonical, bad);
            }
            let upper = canonical.to_ascii_uppercase();
            for escape in ["%2F", "%5C", "%2E", "%00"] {
                prop_assert!(!upper.contains(escape), "{} holds {}", canonical, escape);
            }
            let body = &canonical[1..];
            prop_assert!(body.split('/').all(|s| s != "." && s != ".."), "{}", canonical);
        }
    }

    #[test]
    fn every_reading_an_app_makes_is_the_path_the_policy_judged(raw in path_text()) {
        if let Ok(canonical) = canonicalize(&raw) {
            let ours = split_then_decode(&canonical).expect("canonical escapes are valid");
            // Whether the app decodes first or splits first, it reads what we judged.
            prop_assert_eq!(decode_then_split(&raw), Some(ours.clone()), "{}", raw);
            prop_assert_eq!(split_then_decode(&raw), Some(ours.clone()), "{}", raw);
            prop_assert_eq!(decode_then_split(&canonical), Some(ours));
        }
    }

    #[test]
    fn a_rule_written_for_what_the_app_reads_matches_every_spelling_of_it(raw in path_text()) {
        let Ok(canonical) = canonicalize(&raw) else { return Ok(()) };
        let segments = decode_then_split(&raw).expect("accepted paths decode");
        // A rule cannot name an empty or dot segment, a literal `*` (wildcards are whole
        // segments) or `{`/`}` (captures are written `{name}`); skip those.
        let unnameable = |s: &Vec<u8>| {
            s.is_empty() || s == b"." || s == b".." || s.iter().any(|b| b"*{}".contains(b))
        };
        if segments.iter().any(unnameable) {
            return Ok(());
        }
        let written = written_as_an_admin_would(&segments);
        let text = format!(
            "[[rule]]\npath = {written:?}\nmethods = [\"GET\"]\ngroups = [\"admins\"]\n\n\
             [[rule]]\npath = \"/**\"\nallow = \"anyone\"\n"
        );
        let policy = Policy::from_toml(&text).expect("a rule for a decoded path loads");
        let rule = policy.route(&Method::GET, &canonical).expect("some rule");
        prop_assert_eq!(
            rule.path(), policy.rules()[0].path(),
            "{} (canonical {}) escaped the rule written {}", raw, canonical, written
        );
    }
}

// ---------------------------------------------------------------------------------
// Tokens

const POOL: &str = "us-east-1_Prop12345";
const ISS: &str = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Prop12345";
const NOW: f64 = 1_800_000_000.0;

struct Signed {
    verifier: Verifier,
    keys: cognito_gate::internals::KeySet,
    token: String,
}

fn signed() -> &'static Signed {
    static SIGNED: OnceLock<Signed> = OnceLock::new();
    SIGNED.get_or_init(|| {
        let config = Config::from_toml(&format!(
            "[upstream]\nurl = \"http://127.0.0.1:3000\"\n[[pools]]\nuser_pool_id = \"{POOL}\"\n\
             client_ids = [\"prop-client\"]\n"
        ))
        .unwrap();
        let key = SigningKey::generate("prop-key").unwrap();
        let keys = parse_key_set(json!({ "keys": [key.jwk()] }).to_string().as_bytes()).unwrap();
        let token = key
            .sign(
                &json!({ "kid": "prop-key", "alg": "RS256" }),
                &json!({ "sub": "alice", "iss": ISS, "token_use": "access",
                         "client_id": "prop-client", "exp": NOW + 3600.0 }),
            )
            .unwrap();
        Signed {
            verifier: Verifier::new(&config.pools, 8192, 0),
            keys,
            token,
        }
    })
}

/// Whether `text` verifies with the pool's key, without panicking on the way.
fn verifies(text: &str) -> bool {
    let s = signed();
    let Ok(t) = s.verifier.parse(text) else {
        return false;
    };
    let Some(key) = s.keys.get(&t.kid) else {
        return false;
    };
    s.verifier.finish(t, &key, NOW).is_ok()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_text_never_verifies(text in ".{0,600}") {
        prop_assert!(!verifies(&text));
    }

    #[test]
    fn well_formed_but_unsigned_tokens_never_verify(
        header in prop::sample::select(vec![
            r#"{"alg":"RS256","kid":"prop-key"}"#, r#"{"alg":"none","kid":"prop-key"}"#,
            r#"{"alg":"HS256","kid":"prop-key"}"#, r#"{"alg":"RS256"}"#,
            r#"{"alg":"RS256","kid":"prop-key","crit":["x"]}"#,
        ]),
        claims in prop::sample::select(vec![
            json!({"sub":"a","iss":ISS,"token_use":"access","client_id":"prop-client","exp":NOW+60.0}),
            json!({"sub":"a","iss":ISS,"token_use":"id","aud":"prop-client","exp":NOW+60.0}),
            json!({"iss":ISS}),
            json!([]),
        ]),
        signature in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let text = format!("{}.{}.{}", b64(header.as_bytes()), b64(claims.to_string().as_bytes()), b64(&signature));
        prop_assert!(!verifies(&text));
    }

    #[test]
    fn a_signed_token_changed_anywhere_never_verifies(
        at in any::<prop::sample::Index>(),
        with in prop::sample::select(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ".to_vec()
        ),
    ) {
        let s = signed();
        prop_assert!(verifies(&s.token), "the untouched token verifies");
        let mut bytes = s.token.clone().into_bytes();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != with);
        bytes[i] = with;
        let changed = String::from_utf8(bytes).unwrap();
        prop_assert!(!verifies(&changed), "changed at {}", i);
    }
}

// ---------------------------------------------------------------------------------
// Policy files

/// A value of any TOML shape, from small vocabularies.
fn toml_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        prop::sample::select(vec![
            "\"/admin/**\"",
            "\"/*\"",
            "\"/a/**/b\"",
            "\"**\"",
            "\"\"",
            "\"/%2e%2e\"",
            "\"GET\"",
            "\"get\"",
            "\"admins\"",
            "\"anonymous\"",
            "\"authenticated\"",
            "\"/a#b\"",
            "\"/a;b\"",
            "\"\\u0000\"",
            "\"/é\"",
        ])
        .prop_map(str::to_owned),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        Just("1979-05-27T07:32:00Z".to_owned()),
        Just("{}".to_owned()),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop::collection::vec(inner, 0..4).prop_map(|items| format!("[{}]", items.join(", ")))
    })
}

fn policy_text() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "path",
        "methods",
        "groups",
        "scopes",
        "allow",
        "name",
        "expect",
        "method",
        "token",
        "sub",
        "case_sensitive",
        "bogus",
    ]);
    let table = prop::sample::select(vec!["[[rule]]", "[[test]]", "[rule]", "", "[x.y]"]);
    let entry = (table, prop::collection::vec((key, toml_value()), 0..6));
    prop::collection::vec(entry, 0..6).prop_map(|tables| {
        let mut text = String::new();
        for (header, pairs) in tables {
            text.push_str(header);
            text.push('\n');
            for (k, v) in pairs {
                text.push_str(&format!("{k} = {v}\n"));
            }
        }
        text
    })
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn no_policy_text_panics_the_loader(text in policy_text()) {
        if let Ok(policy) = Policy::from_toml(&text) {
            // What loads can be asked, for any path, without panicking either.
            for path in ["/", "/admin/x", "/a/x/b", "/%C3%A9"] {
                let _ = policy.route(&Method::GET, path);
            }
        }
    }

    #[test]
    fn no_text_at_all_panics_the_loader(text in ".{0,400}") {
        let _ = Policy::from_toml(&text);
    }
}

// ---------------------------------------------------------------------------------
// Identity headers

/// A spelling of `name` as an attacker writes it: any case, and each `-` as `-`, `_`
/// or `.` (CGI, PHP and Rack read all of them as the same variable).
fn spelling_of(name: &'static str) -> impl Strategy<Value = String> {
    prop::collection::vec((any::<bool>(), 0..3usize), name.len()).prop_map(move |choices| {
        name.bytes()
            .zip(choices)
            .map(|(b, (upper, sep))| match b {
                b'-' => char::from([b'-', b'_', b'.'][sep]),
                b if upper => char::from(b.to_ascii_uppercase()),
                b => char::from(b),
            })
            .collect()
    })
}

fn folds_to(a: &str, b: &str) -> bool {
    let fold = |c: u8| match c {
        b'_' | b'.' => b'-',
        c => c.to_ascii_lowercase(),
    };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn no_spelling_of_an_identity_header_survives_stripping(
        forged in prop::collection::vec(
            prop_oneof![spelling_of("x-user-sub"), spelling_of("x-user-groups")], 1..8),
        others in prop::collection::vec("[a-z][a-z0-9._-]{0,14}", 0..6),
    ) {
        let mut headers = HeaderMap::new();
        for name in forged.iter().chain(&others) {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            headers.append(name, HeaderValue::from_static("admins"));
        }
        strip_folded(&mut headers, &["x-user-sub", "x-user-groups"]);
        for name in headers.keys() {
            prop_assert!(
                !folds_to(name.as_str(), "x-user-sub") && !folds_to(name.as_str(), "x-user-groups"),
                "{} survived", name
            );
        }
        // Nothing else is touched.
        for other in &others {
            let identity = folds_to(other, "x-user-sub") || folds_to(other, "x-user-groups");
            prop_assert_eq!(headers.contains_key(other.as_str()), !identity, "{}", other);
        }
    }
}
