//! Routing, readings and grants as tables, and every problem a policy file can have.

use super::*;
use crate::token::{Claims, Identity, PoolId, Source, TokenUse};
use serde_json::json;

fn identity(groups: &[&str]) -> Identity {
    Identity {
        sub: "user-1".into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        scopes: vec!["orders/read".into(), "openid".into()],
        token_use: TokenUse::Access,
        client_id: "client".into(),
        source: Source::Pool(PoolId(0)),
        claims: Claims::default(),
        revocable: Default::default(),
    }
}

fn with_claims(claims: serde_json::Value) -> Identity {
    let kept = claims
        .as_object()
        .expect("an object")
        .iter()
        .map(|(n, v)| (n.as_str().into(), v.clone()))
        .collect();
    Identity {
        claims: Claims::new(kept),
        revocable: Default::default(),
        ..identity(&[])
    }
}

const POLICY: &str = r#"
    [[rule]]
    name = "health"
    path = "/healthz"
    methods = ["GET"]
    allow = "anyone"

    [[rule]]
    name = "public"
    path = "/public/**"
    allow = "anyone"

    [[rule]]
    name = "admin"
    path = "/admin/**"
    groups = ["admins"]

    [[rule]]
    path = "/reports/*/export"
    methods = ["post", "PUT"]
    groups_all = ["finance", "auditors"]

    [[rule]]
    name = "root"
    path = "/"
    allow = "anyone"

    [[rule]]
    name = "api"
    path = "/api/**"
    allow = "authenticated"
"#;

#[test]
fn routing_table() {
    let policy = Policy::from_toml(POLICY).expect("valid policy");
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("GET", "/healthz", Some("health")),
        ("HEAD", "/healthz", Some("health")),
        ("POST", "/healthz", None),
        ("GET", "/healthz/", None),
        ("GET", "/public", Some("public")),
        ("GET", "/public/", Some("public")),
        ("DELETE", "/public/a/b/c", Some("public")),
        ("GET", "/publication", None),
        ("GET", "/admin", Some("admin")),
        ("GET", "/admin/x/y", Some("admin")),
        ("GET", "/administrator", None),
        ("GET", "/Admin", None),
        ("POST", "/reports/2024/export", Some("#4")),
        ("PUT", "/reports/q1/export", Some("#4")),
        ("GET", "/reports/2024/export", None),
        ("POST", "/reports/export", None),
        ("POST", "/reports/a/b/export", None),
        ("POST", "/reports//export", None),
        ("GET", "/", Some("root")),
        ("GET", "/api/v1/items", Some("api")),
        ("GET", "/elsewhere", None),
    ];
    for (method, path, want) in cases {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let got = policy.route(&method, path).map(|r| r.id().to_string());
        assert_eq!(got.as_deref(), *want, "{method} {path}");
    }
}

/// The rules that govern each request, by name, for the readings table below.
fn governing(policy: &Policy, method: &str, path: &str) -> Option<Vec<String>> {
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    policy
        .govern(&method, path)
        .map(|g| g.rules().map(|r| r.id().to_string()).collect())
}

const READINGS: &str = include_str!("../../tests/policies/readings.toml");

#[test]
fn every_reading_a_router_makes_is_governed() {
    let policy = Policy::from_toml(READINGS).expect("valid policy");
    let cases: &[(&str, &str, &[&str])] = &[
        // Exactly as sent: one rule.
        ("GET", "/admin/x", &["admin"]),
        ("GET", "/public/x", &["public"]),
        // Express and ASP.NET route /ADMIN/x to the admin pages.
        ("GET", "/ADMIN/x", &["app", "admin"]),
        ("GET", "/Admin", &["app", "admin"]),
        // An escape decodes to a letter first, then folds.
        ("GET", "/Public/secret", &["app", "public"]),
        // Express's non-strict routing serves /export for /export/.
        ("POST", "/invoices/7/export/", &["app", "export"]),
        ("POST", "/INVOICES/7/EXPORT/", &["app", "export"]),
        ("GET", "/invoices/7/export/", &["app"]),
        // The root has no trailing slash to lose.
        ("GET", "/", &["app"]),
        // Escapes keep their (upper-case) hex digits and are not "letters".
        ("GET", "/caf%C3%A9", &["app"]),
    ];
    for (method, path, want) in cases {
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            governing(&policy, method, path),
            Some(want),
            "{method} {path}"
        );
    }
}

#[test]
fn a_reading_no_rule_matches_denies() {
    let policy = Policy::from_toml(
        "[[rule]]\npath = \"/api/**\"\nallow = \"anyone\"\n\
         [[rule]]\npath = \"/Docs\"\nallow = \"anyone\"\n",
    )
    .expect("valid");
    assert_eq!(governing(&policy, "GET", "/api/x"), Some(vec!["#1".into()]));
    // Case-sensitively /API matches nothing, so it is denied whatever /api allows.
    assert_eq!(governing(&policy, "GET", "/API/x"), None);
    // A rule with capitals is compared folded as well.
    assert_eq!(governing(&policy, "GET", "/Docs"), Some(vec!["#2".into()]));
    assert_eq!(governing(&policy, "GET", "/docs"), None);
}

#[test]
fn case_sensitive_policies_judge_the_path_as_sent_only() {
    let text = format!("case_sensitive = true\n{READINGS}");
    let policy = Policy::from_toml(&text).expect("valid policy");
    assert_eq!(
        governing(&policy, "GET", "/ADMIN/x"),
        Some(vec!["app".into()])
    );
    // The trailing slash is still judged both ways.
    assert_eq!(
        governing(&policy, "POST", "/invoices/7/export/"),
        Some(vec!["app".into(), "export".into()])
    );
}

#[test]
fn grant_table() {
    let admins = identity(&["admins"]);
    let auditors = identity(&["finance", "auditors", "x"]);
    let finance = identity(&["finance"]);
    let nobody = identity(&[]);
    let any_admin = Grant::AnyGroup(vec!["admins".into(), "ops".into()]);
    let all_fin = Grant::AllGroups(vec!["finance".into(), "auditors".into()]);
    let cases: &[(&Grant, Option<&Identity>, bool)] = &[
        (&Grant::Anyone, None, true),
        (&Grant::Anyone, Some(&nobody), true),
        (&Grant::Authenticated, None, false),
        (&Grant::Authenticated, Some(&nobody), true),
        (&any_admin, Some(&admins), true),
        (&any_admin, Some(&finance), false),
        (&any_admin, Some(&nobody), false),
        (&any_admin, None, false),
        (&all_fin, Some(&auditors), true),
        (&all_fin, Some(&finance), false),
        (&all_fin, None, false),
        (
            &Grant::AnyScope(vec!["orders/read".into()]),
            Some(&nobody),
            true,
        ),
        (
            &Grant::AnyScope(vec!["orders/write".into(), "openid".into()]),
            Some(&nobody),
            true,
        ),
        (
            &Grant::AnyScope(vec!["orders/write".into()]),
            Some(&nobody),
            false,
        ),
        (&Grant::AnyScope(vec!["orders/read".into()]), None, false),
    ];
    for (i, (grant, id, want)) in cases.iter().enumerate() {
        assert_eq!(grant.admits(*id), *want, "case {i}: {grant:?}");
    }
}

#[test]
fn group_names_compare_exactly() {
    let grant = Grant::AnyGroup(vec!["admins".into()]);
    assert!(!grant.admits(Some(&identity(&["Admins"]))));
    assert!(!grant.admits(Some(&identity(&["admins "]))));
}

#[test]
fn rule_patterns_are_canonicalized() {
    let policy =
        Policy::from_toml("[[rule]]\npath = \"/%61dmin/**\"\nallow = \"anyone\"\n").expect("valid");
    assert!(policy.route(&Method::GET, "/admin/x").is_some());
}

#[test]
fn every_problem_is_reported_with_rule_and_key() {
    let text = r#"
        [[rule]]
        path = "admin"
        allow = "everyone"

        [[rule]]
        name = "two"
        path = "/a/**/b"
        groups = []
        methods = []

        [[rule]]
        path = "/x"
        allow = "anyone"
        groups = ["g"]

        [[rule]]
        path = "/y*"

        [[rule]]
        allow = "authenticated"
        methods = ["GE T"]
    "#;
    let err = Policy::from_toml(text).expect_err("invalid");
    let want = [
        "rule 1: path: \"admin\": the path must start with '/'",
        "rule 1: allow: \"everyone\" must be \"anyone\", \"authenticated\" or \"nobody\"",
        "rule 2 (two): path: \"/a/**/b\": '**' is only allowed as the last segment",
        "rule 2 (two): methods: must not be empty (leave it out to match every method)",
        "rule 2 (two): groups: must name at least one",
        "rule 3: allow: allow, groups, groups_all and scopes are exclusive: give exactly one",
        "rule 4: path: \"/y*\": '*' must be a whole segment (no partial wildcards)",
        "rule 4: allow: a rule needs exactly one of allow, groups, groups_all or scopes",
        "rule 5: path: is required",
        "rule 5: methods: \"GE T\" is not an HTTP method",
    ];
    assert_eq!(err.problems, want);
}

#[test]
fn unknown_keys_and_empty_policies_are_refused() {
    let err = Policy::from_toml("[[rule]]\npath = \"/\"\nallow = \"anyone\"\ngroup = [\"a\"]\n")
        .expect_err("unknown key");
    assert!(err.problems[0].contains("unknown field `group`"), "{err}");
    assert!(err.problems[0].contains("line 4"), "{err}");
    let err = Policy::from_toml("").expect_err("empty");
    assert!(err.problems[0].contains("no [[rule]]"), "{err}");
}

#[test]
fn bad_path_patterns() {
    for p in ["/a//b", "/a/../b", "/a%2Fb", "/a;b", "/a/b\\c"] {
        let text = format!("[[rule]]\npath = {p:?}\nallow = \"anyone\"\n");
        assert!(Policy::from_toml(&text).is_err(), "{p}");
    }
}

#[test]
fn a_rule_is_unreachable_only_when_an_earlier_one_covers_all_of_it() {
    let pair = |first: &str, later: &str| {
        Policy::from_toml(&format!(
            "[[rule]]\n{first}\nallow = \"anyone\"\n[[rule]]\n{later}\nallow = \"anyone\"\n"
        ))
    };
    let shadowed = [
        ("path = \"/**\"", "path = \"/admin/**\""),
        ("path = \"/a/*\"", "path = \"/a/b\""),
        ("path = \"/a/*/c\"", "path = \"/a/*/c\""),
        ("path = \"/a/**\"", "path = \"/a\""),
        (
            "path = \"/a/**\"\nmethods = [\"GET\"]",
            "path = \"/a/b\"\nmethods = [\"HEAD\"]",
        ),
        (
            "path = \"/**\"",
            "path = \"/x\"\nmethods = [\"POST\", \"PUT\"]",
        ),
    ];
    for (first, later) in shadowed {
        let err = pair(first, later).expect_err(later);
        assert!(
            err.problems[0].starts_with("rule 2 (")
                && err.problems[0].contains("can never match: rule 1 ("),
            "{first} / {later}: {err}"
        );
    }
    let reachable = [
        ("path = \"/admin/**\"", "path = \"/**\""),
        ("path = \"/a/*\"", "path = \"/a/**\""),
        ("path = \"/a/*\"", "path = \"/a/b/c\""),
        ("path = \"/a/b\"", "path = \"/a/*\""),
        ("path = \"/a/*\"", "path = \"/a/\""),
        ("path = \"/**\"\nmethods = [\"GET\"]", "path = \"/x\""),
        (
            "path = \"/**\"\nmethods = [\"GET\"]",
            "path = \"/x\"\nmethods = [\"GET\", \"POST\"]",
        ),
        (
            "path = \"/a/**\"\nmethods = [\"HEAD\"]",
            "path = \"/a/b\"\nmethods = [\"GET\"]",
        ),
    ];
    for (first, later) in reachable {
        assert!(pair(first, later).is_ok(), "{first} / {later}");
    }
}

#[test]
fn policy_tests_are_checked_as_written() {
    let base = "[[rule]]\npath = \"/**\"\nallow = \"anyone\"\n";
    let ok = Policy::from_toml(&format!(
        "{base}[[test]]\npath = \"/x\"\nexpect = \"allow\"\n[[test]]\nmethod = \"POST\"\npath = \"/y\"\nanonymous = true\nexpect = 401\n[[test]]\npath = \"/z\"\nscopes = [\"orders/read\"]\nexpect = \"deny\"\n"
    ))
    .expect("valid");
    let tests = ok.tests();
    assert_eq!(tests.len(), 3);
    assert_eq!(
        (tests[0].method.as_str(), tests[0].expect),
        ("GET", Expect::Allow)
    );
    assert_eq!(
        (tests[1].anonymous, tests[1].expect),
        (true, Expect::Status(401))
    );
    assert_eq!(tests[2].scopes, ["orders/read"]);

    let err = Policy::from_toml(&format!(
        "{base}[[test]]\npath = \"x\"\nexpect = \"maybe\"\n[[test]]\npath = \"/x\"\nanonymous = true\ngroups = [\"a\"]\nexpect = 403\n[[test]]\npath = \"/x\"\nexpect = 302\n"
    ))
    .expect_err("invalid tests");
    assert_eq!(
        err.problems,
        [
            "test 1: path: is required and must start with '/'",
            "test 1: expect: must be \"allow\", \"deny\" or a status such as 401, 403 or 400",
            "test 2: anonymous = true sends no token, so it cannot have groups, scopes or claims",
            "test 3: expect: must be \"allow\", \"deny\" or a status such as 401, 403 or 400",
        ]
    );
}

#[test]
fn the_rule_index_decides_exactly_as_a_scan_of_every_rule() {
    // Deterministic pseudo-random policies and paths over a small alphabet, so that
    // first segments collide, differ only in case, and meet `*` and `**` rules.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) % n
    };
    let words = ["a", "A", "b", "admin", "Admin", "x%3F"];
    let mut checked = 0;
    for _ in 0..200 {
        let mut text = String::new();
        for _ in 0..(1 + next(12)) {
            let depth = next(4);
            let mut path = String::new();
            for d in 0..depth {
                let pick = next(8);
                let seg = match pick {
                    6 => "*",
                    7 if d + 1 == depth => "**",
                    _ => words[(pick % 6) as usize],
                };
                path.push('/');
                path.push_str(seg);
            }
            if path.is_empty() {
                path.push('/');
            }
            let methods = if next(3) == 0 {
                "methods = [\"POST\"]\n"
            } else {
                ""
            };
            text.push_str(&format!(
                "[[rule]]\npath = {path:?}\n{methods}allow = \"anyone\"\n"
            ));
        }
        // Shadowed rules are a lint error; keep only policies that load.
        let Ok(policy) = Policy::from_toml(&text) else {
            continue;
        };
        checked += 1;
        for _ in 0..40 {
            let mut path = String::new();
            for _ in 0..next(4) {
                path.push('/');
                path.push_str(words[next(6) as usize]);
            }
            if path.is_empty() || next(5) == 0 {
                path.push('/');
            }
            for method in [Method::GET, Method::POST] {
                let scanned = policy
                    .rules()
                    .iter()
                    .find(|r| r.matches_as(&method, None, &path, Case::Sensitive));
                let routed = policy.route(&method, &path);
                assert_eq!(
                    routed.map(|r| r.id().number),
                    scanned.map(|r| r.id().number),
                    "{method} {path} in\n{text}"
                );
                let folded = policy
                    .rules()
                    .iter()
                    .find(|r| r.matches_as(&method, None, &path, Case::Insensitive));
                let indexed = policy.first_match(&method, None, &path, Case::Insensitive);
                assert_eq!(
                    indexed.map(|r| r.id().number),
                    folded.map(|r| r.id().number),
                    "{method} {path} (case-insensitive) in\n{text}"
                );
            }
        }
    }
    assert!(checked >= 50, "only {checked} generated policies loaded");
}

const TENANTS: &str = r#"
    [[rule]]
    name = "acme-audit"
    path = "/tenants/acme/audit/**"
    allow = "nobody"

    [[rule]]
    name = "tenant"
    path = "/tenants/{tenant}/**"
    allow = "authenticated"
    claims = { "custom:tenant" = "{tenant}", "email_verified" = true }

    [[rule]]
    name = "org"
    path = "/orgs/{org}/teams/{team}"
    groups = ["staff"]
    claims = { "org" = "org-{org}", "teams" = "{team}", "level" = 3 }

    [[rule]]
    name = "rest"
    path = "/**"
    allow = "authenticated"
"#;

/// The decision for `identity` (`None`: no token) on `path`, through every governing
/// rule, as `authorize::conclude` makes it.
fn allowed(policy: &Policy, path: &str, identity: Option<&Identity>) -> bool {
    let Some(governing) = policy.govern(&Method::GET, path) else {
        return false;
    };
    let rules: Vec<&Rule> = governing.rules().collect();
    rules.iter().all(|r| r.admits(identity, path))
}

#[test]
fn claim_conditions_hold_only_with_the_captured_value() {
    let policy = Policy::from_toml(TENANTS).expect("valid policy");
    let acme = with_claims(json!({ "custom:tenant": "acme", "email_verified": true }));
    let unverified = with_claims(json!({ "custom:tenant": "acme", "email_verified": false }));
    let as_text = with_claims(json!({ "custom:tenant": "acme", "email_verified": "true" }));
    let no_tenant = with_claims(json!({ "email_verified": true }));
    let listed =
        with_claims(json!({ "custom:tenant": ["globex", "acme"], "email_verified": true }));
    let spaced = with_claims(json!({ "custom:tenant": "acme corp", "email_verified": true }));
    let cases: &[(&str, &Identity, bool)] = &[
        ("/tenants/acme/invoices", &acme, true),
        ("/tenants/acme", &acme, true),
        ("/tenants/acme/", &acme, true),
        ("/tenants/globex/invoices", &acme, false),
        // Another case is another tenant: the app may read /tenants/ACME as "ACME".
        ("/tenants/ACME/invoices", &acme, false),
        ("/tenants/acme/invoices", &unverified, false),
        // A type mismatch does not hold: "true" is not true.
        ("/tenants/acme/invoices", &as_text, false),
        ("/tenants/acme/invoices", &no_tenant, false),
        // An array claim holds when it contains the value.
        ("/tenants/acme/x", &listed, true),
        ("/tenants/globex/x", &listed, true),
        ("/tenants/initech/x", &listed, false),
        // The capture is the segment as the app decodes it.
        ("/tenants/acme%20corp/x", &spaced, true),
        ("/tenants/acme/x", &spaced, false),
        // The explicit deny comes first and refuses everyone.
        ("/tenants/acme/audit/log", &acme, false),
        ("/elsewhere", &acme, true),
    ];
    for (path, who, want) in cases {
        assert_eq!(allowed(&policy, path, Some(who)), *want, "{path} {who:?}");
    }
    // No token: conditions never hold.
    assert!(!allowed(&policy, "/tenants/acme/x", None));
}

#[test]
fn templates_integers_and_grants_combine() {
    let policy = Policy::from_toml(TENANTS).expect("valid policy");
    let staff = |claims: serde_json::Value| Identity {
        groups: vec!["staff".into()],
        ..with_claims(claims)
    };
    let good = staff(json!({ "org": "org-7", "teams": ["red", "blue"], "level": 3 }));
    assert!(allowed(&policy, "/orgs/7/teams/blue", Some(&good)));
    assert!(!allowed(&policy, "/orgs/8/teams/blue", Some(&good)));
    assert!(!allowed(&policy, "/orgs/7/teams/green", Some(&good)));
    // 3.0 is the number 3; "3" is not.
    let float = staff(json!({ "org": "org-7", "teams": "blue", "level": 3.0 }));
    assert!(allowed(&policy, "/orgs/7/teams/blue", Some(&float)));
    let text = staff(json!({ "org": "org-7", "teams": "blue", "level": "3" }));
    assert!(!allowed(&policy, "/orgs/7/teams/blue", Some(&text)));
    // The grant still applies: the claims alone do not let a non-member in.
    let outsider = with_claims(json!({ "org": "org-7", "teams": "blue", "level": 3 }));
    assert!(!allowed(&policy, "/orgs/7/teams/blue", Some(&outsider)));
    assert_eq!(
        policy.claim_names(),
        ["custom:tenant", "email_verified", "level", "org", "teams"]
            .map(Box::<str>::from)
            .to_vec()
    );
}

#[test]
fn nobody_refuses_even_without_a_token_and_shadows_like_any_rule() {
    let policy = Policy::from_toml(TENANTS).expect("valid policy");
    let rule = policy
        .route(&Method::GET, "/tenants/acme/audit/x")
        .expect("a rule");
    assert!(rule.denies_everyone());
    assert!(!rule.grant().needs_token());
    assert!(!rule.admits(None, "/tenants/acme/audit/x"));
    // A rule after a wider nobody can never match, and check says so.
    let err = Policy::from_toml(
        "[[rule]]\npath = \"/x/**\"\nallow = \"nobody\"\n[[rule]]\npath = \"/x/y\"\nallow = \"anyone\"\n",
    )
    .expect_err("shadowed");
    assert!(err.to_string().contains("rule 2"), "{err}");
}

#[test]
fn captures_route_like_a_star() {
    let policy = Policy::from_toml(TENANTS).expect("valid policy");
    let route = |p: &str| policy.route(&Method::GET, p).map(|r| r.id().to_string());
    assert_eq!(route("/tenants/acme/x").as_deref(), Some("tenant"));
    assert_eq!(route("/tenants//x").as_deref(), Some("rest"));
    assert_eq!(route("/orgs/7/teams/x").as_deref(), Some("org"));
    assert_eq!(route("/orgs/7/teams/x/y").as_deref(), Some("rest"));
    // A capture as the first segment goes through the index like `*`.
    let first = Policy::from_toml(
        "[[rule]]\npath = \"/{tenant}/app\"\nallow = \"authenticated\"\nclaims = { t = \"{tenant}\" }\n",
    )
    .expect("valid");
    assert_eq!(
        first
            .route(&Method::GET, "/acme/app")
            .map(|r| r.id().to_string())
            .as_deref(),
        Some("#1")
    );
    // A capture shadows what a `*` would.
    let err = Policy::from_toml(
        "[[rule]]\npath = \"/t/{id}\"\nallow = \"authenticated\"\nclaims = { t = \"{id}\" }\n\
         [[rule]]\npath = \"/t/me\"\nallow = \"anyone\"\n",
    )
    .expect_err("shadowed");
    assert!(err.to_string().contains("rule 2"), "{err}");
}

#[test]
fn bad_captures_and_conditions_are_check_errors_naming_the_rule() {
    let cases: &[(&str, &str)] = &[
        (
            "[[rule]]\nname = \"twice\"\npath = \"/t/{id}/{id}\"\nallow = \"authenticated\"\n",
            "rule 1 (twice): path: \"/t/{id}/{id}\": the capture {id} is used twice",
        ),
        (
            "[[rule]]\nname = \"ghost\"\npath = \"/t/{tenant}\"\nallow = \"authenticated\"\nclaims = { \"custom:tenant\" = \"{tenat}\" }\n",
            "rule 1 (ghost): claims: \"custom:tenant\" = \"{tenat}\": the path has no capture {tenat}",
        ),
        (
            "[[rule]]\npath = \"/t/x-{id}\"\nallow = \"authenticated\"\n",
            "a capture must be a whole segment",
        ),
        (
            "[[rule]]\npath = \"/t/{1d}\"\nallow = \"authenticated\"\n",
            "a capture is a name of letters, digits and '_'",
        ),
        (
            "[[rule]]\npath = \"/t/{id}\"\nallow = \"anyone\"\nclaims = { t = \"{id}\" }\n",
            "rule 1: claims: conditions on claims need a signed-in caller",
        ),
        (
            "[[rule]]\npath = \"/t\"\nallow = \"nobody\"\nclaims = { t = \"x\" }\n",
            "rule 1: claims: conditions on claims need a signed-in caller",
        ),
        (
            "[[rule]]\npath = \"/t\"\nallow = \"authenticated\"\nclaims = {}\n",
            "rule 1: claims: must name at least one claim",
        ),
        (
            "[[rule]]\npath = \"/t\"\nallow = \"authenticated\"\nclaims = { level = 1.5 }\n",
            "rule 1: claims: \"level\" must be a string, boolean or integer",
        ),
        (
            "[[rule]]\npath = \"/t\"\nallow = \"authenticated\"\nclaims = { t = \"{\" }\n",
            "may only enclose a capture name",
        ),
        (
            "[[rule]]\npath = \"/t\"\nallow = \"everyone\"\n",
            "must be \"anyone\", \"authenticated\" or \"nobody\"",
        ),
    ];
    for (text, want) in cases {
        let err = Policy::from_toml(text).expect_err(text).to_string();
        assert!(err.contains(want), "{text}\n{err}");
    }
}

#[test]
fn policy_tests_can_give_the_caller_claims() {
    let text = format!(
        "{TENANTS}\n[[test]]\npath = \"/tenants/acme/x\"\nclaims = {{ \"custom:tenant\" = \"acme\", \"email_verified\" = true, roles = [\"a\", 2] }}\nexpect = \"allow\"\n"
    );
    let policy = Policy::from_toml(&text).expect("valid");
    let test = &policy.tests()[0];
    assert_eq!(
        test.claims,
        vec![
            ("custom:tenant".into(), json!("acme")),
            ("email_verified".into(), json!(true)),
            ("roles".into(), json!(["a", 2])),
        ]
    );
    let err = Policy::from_toml(&format!(
        "{TENANTS}\n[[test]]\npath = \"/x\"\nanonymous = true\nclaims = {{ a = \"b\" }}\nexpect = 401\n"
    ))
    .expect_err("anonymous with claims");
    assert!(
        err.to_string()
            .contains("cannot have groups, scopes or claims"),
        "{err}"
    );
}

#[test]
fn hosts_are_compared_in_one_spelling() {
    let cases: &[(&str, Option<&str>)] = &[
        ("api.example.com", Some("api.example.com")),
        ("API.Example.COM", Some("api.example.com")),
        ("api.example.com.", Some("api.example.com")),
        ("api.example.com:8443", Some("api.example.com")),
        ("api.example.com.:80", Some("api.example.com")),
        ("10.0.0.7:8080", Some("10.0.0.7")),
        ("[::1]:8080", Some("[::1]")),
        ("[2001:DB8::1]", Some("[2001:db8::1]")),
        ("", None),
        ("api.example.com:", None),
        ("api.example.com:http", None),
        ("api..example.com", None),
        ("api.example.com/x", None),
        ("user@api.example.com", None),
        ("api example.com", None),
        ("[::1", None),
        ("[::1]x", None),
    ];
    for (raw, want) in cases {
        assert_eq!(normalize_host(raw).as_deref(), *want, "{raw:?}");
    }
}

const HOSTS: &str = r#"
    [[rule]]
    name = "admin-site"
    host = "admin.example.com"
    path = "/**"
    groups = ["admins"]

    [[rule]]
    name = "tenants"
    host = "*.example.com"
    path = "/**"
    allow = "authenticated"

    [[rule]]
    name = "rest"
    path = "/**"
    allow = "anyone"
"#;

#[test]
fn host_rules_match_their_host_and_names_below_a_wildcard() {
    let policy = Policy::from_toml(HOSTS).expect("valid policy");
    assert!(policy.uses_hosts());
    let route = |host: Option<&str>| {
        policy
            .route_on(&Method::GET, host, "/x")
            .map(|r| r.id().to_string())
    };
    assert_eq!(
        route(Some("admin.example.com")).as_deref(),
        Some("admin-site")
    );
    assert_eq!(route(Some("acme.example.com")).as_deref(), Some("tenants"));
    assert_eq!(route(Some("a.b.example.com")).as_deref(), Some("tenants"));
    // The wildcard is for names below it, not the name itself or look-alikes.
    assert_eq!(route(Some("example.com")).as_deref(), Some("rest"));
    assert_eq!(route(Some("evilexample.com")).as_deref(), Some("rest"));
    assert_eq!(route(None).as_deref(), Some("rest"));
    assert!(!Policy::from_toml(POLICY).expect("valid").uses_hosts());
}

#[test]
fn host_rules_shadow_only_what_they_cover() {
    // A wildcard covers its names, so a later rule for one of them is unreachable.
    let err = Policy::from_toml(
        "[[rule]]\nhost = \"*.example.com\"\npath = \"/**\"\nallow = \"anyone\"\n\
         [[rule]]\nhost = \"api.example.com\"\npath = \"/x\"\nallow = \"nobody\"\n",
    )
    .expect_err("shadowed");
    assert!(
        err.to_string().contains(
            "rule 2 (any method /x on api.example.com) can never match: rule 1 (any method /** on *.example.com)"
        ),
        "{err}"
    );
    // A host rule does not cover a rule for every host, nor another host's.
    for later in [
        "",
        "host = \"other.example.org\"\n",
        "host = \"example.com\"\n",
    ] {
        let text = format!(
            "[[rule]]\nhost = \"*.example.com\"\npath = \"/**\"\nallow = \"anyone\"\n\
             [[rule]]\n{later}path = \"/x\"\nallow = \"nobody\"\n"
        );
        assert!(Policy::from_toml(&text).is_ok(), "{later}");
    }
    for (host, want) in [
        ("api.example.com:443", "without a port"),
        ("*example.com", "without a port"),
        ("api.*.com", "without a port"),
        ("", "without a port"),
        ("a b", "without a port"),
    ] {
        let text = format!("[[rule]]\nhost = {host:?}\npath = \"/**\"\nallow = \"anyone\"\n");
        let err = Policy::from_toml(&text).expect_err(host).to_string();
        assert!(
            err.contains("rule 1: host:") && err.contains(want),
            "{host}: {err}"
        );
    }
}
