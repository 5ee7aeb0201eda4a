//! Beyond groups: rules with path captures and conditions on the caller's claims, and
//! explicit deny rules, decided alike by the proxy, `/auth` and `/envoy`, with real
//! signed tokens and a real upstream; and a reload that starts reading new claims.

use std::time::Duration;

use crate::common::process::*;
use crate::common::*;
use serde_json::{json, Value};

const TENANTS: &str = r#"
    [[rule]]
    name = "audit"
    path = "/tenants/{tenant}/audit/**"
    allow = "nobody"

    [[rule]]
    name = "tenant"
    path = "/tenants/{tenant}/**"
    allow = "authenticated"
    claims = { "custom:tenant" = "{tenant}", "email_verified" = true }

    [[rule]]
    name = "public"
    path = "/public/**"
    allow = "anyone"

    [[rule]]
    name = "app"
    path = "/**"
    allow = "authenticated"
"#;

/// A user of `tenant` (a string, an array of them, or null for none) whose email is
/// verified or not, as Cognito's ID token has them.
fn user(sub: &str, tenant: Value, email_verified: Value) -> String {
    let mut claims = access_claims(sub, &[]);
    claims["custom:tenant"] = tenant;
    claims["email_verified"] = email_verified;
    if let Some(map) = claims.as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
    format!("Bearer {}", token(key_a(), &claims))
}

/// The status of `path` for `auth` through the proxy, `/auth` and `/envoy`.
async fn three_ways(gate: &Gate, path: &str, auth: Option<&str>) -> [u16; 3] {
    let proxied = raw_get(gate.addr, path, auth).await;
    let envoy = raw_get(gate.authz, &format!("/envoy{path}"), auth).await;
    let mut headers = vec![("x-original-method", "GET"), ("x-original-uri", path)];
    headers.extend(auth.map(|a| ("authorization", a)));
    let forward = get(&format!("http://{}/auth", gate.authz), &headers)
        .await
        .0;
    [proxied, forward, envoy]
}

#[tokio::test]
async fn a_tenant_reaches_only_its_own_tenant_and_the_deny_rule_refuses_everyone() {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let text = config(&upstream.url(), &jwks.url(), "").replace(
        "[upstream]",
        "[authz]\nlisten = \"127.0.0.1:9191\"\n[upstream]",
    );
    let gate = Gate::start(&text, TENANTS).await;
    gate.wait_ready(Duration::from_secs(10)).await;

    let acme = user("alice", json!("acme"), json!(true));
    let unverified = user("ursula", json!("acme"), json!(false));
    let as_text = user("tex", json!("acme"), json!("true"));
    let no_tenant = user("nora", Value::Null, json!(true));
    let two = user("tim", json!(["acme", "globex"]), json!(true));
    let cases: &[(&str, Option<&str>, u16)] = &[
        ("/tenants/acme/invoices", Some(&acme), 200),
        ("/tenants/acme", Some(&acme), 200),
        ("/tenants/globex/invoices", Some(&acme), 403),
        ("/tenants/ACME/invoices", Some(&acme), 403),
        ("/tenants/%61cme/invoices", Some(&acme), 200),
        ("/tenants/acme/invoices", Some(&unverified), 403),
        ("/tenants/acme/invoices", Some(&as_text), 403),
        ("/tenants/acme/invoices", Some(&no_tenant), 403),
        ("/tenants/globex/x", Some(&two), 200),
        ("/tenants/initech/x", Some(&two), 403),
        ("/tenants/acme/invoices", None, 401),
        // The explicit deny: 403 for the tenant's own user, and without a token too.
        ("/tenants/acme/audit/log", Some(&acme), 403),
        ("/tenants/acme/audit/log", None, 403),
        // The path trick still ends at the tenant rule it names.
        ("/tenants/globex/../acme/x", Some(&acme), 400),
        ("/elsewhere", Some(&no_tenant), 200),
        ("/public/x", None, 200),
    ];
    for (path, auth, want) in cases {
        let got = three_ways(&gate, path, *auth).await;
        assert_eq!(got, [*want; 3], "{path} {auth:?}");
    }

    // What the app saw of an allowed tenant request: the path the rule judged, with
    // the identity of the caller.
    let (status, _, _) = get(
        &gate.url("/tenants/acme/invoices?page=2"),
        &[("authorization", &acme)],
    )
    .await;
    assert_eq!(status, 200);
    let seen = upstream.last();
    assert_eq!(seen.uri, "/tenants/acme/invoices?page=2");
    assert_eq!(seen.header("x-user-sub").as_deref(), Some("alice"));

    // How the refusals read: a claim that does not hold is insufficient_scope with
    // the Bearer challenge; the deny rule names no token problem, since none would help.
    let (status, headers, body) =
        get(&gate.url("/tenants/globex/x"), &[("authorization", &acme)]).await;
    assert_eq!(status, 403);
    assert_eq!(
        headers["www-authenticate"],
        r#"Bearer realm="cognito-gate", error="insufficient_scope""#
    );
    assert!(body.contains("insufficient_scope"), "{body}");
    let (status, headers, body) = get(&gate.url("/tenants/acme/audit/x"), &[]).await;
    assert_eq!(status, 403);
    assert!(headers.get("www-authenticate").is_none(), "{headers:?}");
    assert!(body.contains("\"denied\""), "{body}");
    // Nothing refused reached the app: one request for each 200 above, no more.
    let allowed = cases.iter().filter(|c| c.2 == 200).count();
    assert_eq!(upstream.count(), allowed + 1);
}

#[tokio::test]
async fn a_reload_that_adds_claim_conditions_does_not_judge_by_remembered_identities() {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let (gate, listen, _admin) = run_gate("claims-reload", &upstream, &jwks, "").await;
    let acme = user("alice", json!("acme"), json!(true));
    // Under the test policy any signed-in user may go anywhere; the token is now
    // remembered, with no claims beyond groups and scopes.
    assert_eq!(raw_get(listen, "/tenants/acme/x", Some(&acme)).await, 200);
    assert_eq!(raw_get(listen, "/tenants/globex/x", Some(&acme)).await, 200);

    let policy = temp_file("claims-reload-policy.toml", TENANTS);
    signal(gate.pid(), "HUP");
    eventually(
        Duration::from_secs(15),
        "the tenant rule applies",
        || async { raw_get(listen, "/tenants/globex/x", Some(&acme)).await == 403 },
    )
    .await;
    // Had the remembered identity (without custom:tenant) been used, this would be 403.
    assert_eq!(raw_get(listen, "/tenants/acme/x", Some(&acme)).await, 200);
    assert_eq!(
        raw_get(listen, "/tenants/acme/audit", Some(&acme)).await,
        403
    );
    std::fs::remove_file(policy).ok();
    let (status, _) = gate.stop().await;
    assert!(status.success());
}

#[tokio::test]
async fn claims_reach_the_app_as_headers_and_forged_ones_never_do() {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let text = format!(
        "{}\n[headers.claims]\n\"X-User-Email\" = \"email\"\n\"X-User-Tenant\" = \"custom:tenant\"\n",
        config(&upstream.url(), &jwks.url(), "").replace(
            "[upstream]",
            "[authz]\nlisten = \"127.0.0.1:9191\"\n[upstream]",
        )
    );
    let gate = Gate::start(&text, TENANTS).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let mut claims = access_claims("alice", &["ops"]);
    claims["email"] = json!("alice@example.com");
    claims["custom:tenant"] = json!(["acme", "glo,bex"]);
    claims["email_verified"] = json!(true);
    let alice = format!("Bearer {}", token(key_a(), &claims));
    let forged = [
        ("x-user-email", "ceo@example.com"),
        ("X_User_Email", "ceo@example.com"),
        ("x.user.tenant", "initech"),
    ];

    let mut headers = vec![("authorization", alice.as_str())];
    headers.extend(forged);
    let (status, _, _) = get(&gate.url("/tenants/acme/x"), &headers).await;
    assert_eq!(status, 200);
    let seen = upstream.last();
    assert_eq!(
        seen.identity_like("x-user-email"),
        [("x-user-email".to_owned(), "alice@example.com".to_owned())]
    );
    // An array claim is a list, encoded like the groups.
    assert_eq!(
        seen.identity_like("x-user-tenant"),
        [("x-user-tenant".to_owned(), "acme,glo%2Cbex".to_owned())]
    );

    // A public path: the forged claim headers are gone and none is written.
    let (status, _, _) = get(&gate.url("/public/x"), &forged).await;
    assert_eq!(status, 200);
    let seen = upstream.last();
    assert!(seen.identity_like("x-user-email").is_empty(), "{seen:?}");
    assert!(seen.identity_like("x-user-tenant").is_empty(), "{seen:?}");

    // A token without the claim: the header is written empty, never left to a client.
    let mut plain = access_claims("bob", &[]);
    plain["custom:tenant"] = json!("acme");
    plain["email_verified"] = json!(true);
    let bob = format!("Bearer {}", token(key_a(), &plain));
    let (status, _, _) = get(
        &gate.url("/elsewhere"),
        &[("authorization", &bob), ("x-user-email", "ceo@example.com")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(upstream.last().header("x-user-email").as_deref(), Some(""));

    // /auth answers with them for nginx to copy; Envoy is told to drop the forgeries.
    let (status, answer, _) = get(
        &format!("http://{}/auth", gate.authz),
        &[
            ("x-original-method", "GET"),
            ("x-original-uri", "/tenants/acme/x"),
            ("authorization", &alice),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["x-user-email"], "alice@example.com");
    assert_eq!(answer["x-user-tenant"], "acme,glo%2Cbex");
    let mut headers = vec![("authorization", alice.as_str())];
    headers.extend(forged);
    let (status, answer, _) = get(
        &format!("http://{}/envoy/tenants/acme/x", gate.authz),
        &headers,
    )
    .await;
    assert_eq!(status, 200);
    let mut removed: Vec<&str> = answer["x-envoy-auth-headers-to-remove"]
        .to_str()
        .unwrap()
        .split(", ")
        .collect();
    removed.sort();
    assert_eq!(
        removed,
        with_alb_headers(&["x.user.tenant", "x_user_email"])
    );
    assert_eq!(answer["x-user-email"], "alice@example.com");
}

#[tokio::test]
async fn the_oauth2_proxy_preset_writes_its_headers_and_strips_every_spelling_of_them() {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let text = format!(
        "{}\n[headers]\npreset = \"oauth2-proxy\"\n",
        config(&upstream.url(), &jwks.url(), "").replace(
            "[upstream]",
            "[authz]\nlisten = \"127.0.0.1:9191\"\n[upstream]",
        )
    );
    let gate = Gate::start(&text, POLICY).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let mut claims = access_claims("alice", &["admins", "ops"]);
    claims["email"] = json!("alice@example.com");
    let alice = format!("Bearer {}", token(key_a(), &claims));
    let forged = [
        ("x-auth-request-user", "mallory"),
        ("X_Auth_Request_User", "mallory"),
        ("x-forwarded-user", "mallory"),
        ("x.forwarded.user", "mallory"),
        ("X-Auth-Request-Groups", "admins"),
        ("x_forwarded_groups", "admins"),
        ("X-AUTH-REQUEST-EMAIL", "ceo@example.com"),
    ];
    let names = [
        "x-auth-request-user",
        "x-forwarded-user",
        "x-auth-request-groups",
        "x-forwarded-groups",
        "x-auth-request-email",
    ];

    // Every forged spelling is replaced by the verified values.
    let mut headers = vec![("authorization", alice.as_str())];
    headers.extend(forged);
    let (status, _, _) = get(&gate.url("/admin/x"), &headers).await;
    assert_eq!(status, 200);
    let seen = upstream.last();
    let expected = [
        ("x-auth-request-user", "alice"),
        ("x-forwarded-user", "alice"),
        ("x-auth-request-groups", "admins,ops"),
        ("x-forwarded-groups", "admins,ops"),
        ("x-auth-request-email", "alice@example.com"),
    ];
    for (name, value) in expected {
        assert_eq!(
            seen.identity_like(name),
            [(name.to_owned(), value.to_owned())],
            "{name}"
        );
    }
    // The gate's own headers are still written.
    assert_eq!(seen.header("x-user-sub").as_deref(), Some("alice"));

    // A public path: every forged spelling is gone and nothing is written.
    let (status, _, _) = get(&gate.url("/public/x"), &forged).await;
    assert_eq!(status, 200);
    let seen = upstream.last();
    for name in names {
        assert!(seen.identity_like(name).is_empty(), "{name}: {seen:?}");
    }
    // A forged one without a token on a protected path: refused, as always.
    let (status, _, _) = get(&gate.url("/admin/x"), &forged).await;
    assert_eq!(status, 401);

    // nginx auth_request gets them on /auth, as from oauth2-proxy's /oauth2/auth.
    let (status, answer, _) = get(
        &format!("http://{}/auth", gate.authz),
        &[
            ("x-original-method", "GET"),
            ("x-original-uri", "/admin/x"),
            ("authorization", &alice),
        ],
    )
    .await;
    assert_eq!(status, 200);
    for (name, value) in expected {
        assert_eq!(answer[name], value, "{name}");
    }
    // Envoy is told to remove each forged spelling the client sent.
    let mut headers = vec![("authorization", alice.as_str())];
    headers.extend(forged);
    let (status, answer, _) = get(&format!("http://{}/envoy/admin/x", gate.authz), &headers).await;
    assert_eq!(status, 200);
    let removed: Vec<String> = answer["x-envoy-auth-headers-to-remove"]
        .to_str()
        .unwrap()
        .split(", ")
        .map(str::to_owned)
        .collect();
    for spelling in [
        "x_auth_request_user",
        "x.forwarded.user",
        "x_forwarded_groups",
    ] {
        assert!(
            removed.iter().any(|r| r == spelling),
            "{spelling} not in {removed:?}"
        );
    }
}
