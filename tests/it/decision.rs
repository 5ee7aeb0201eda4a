//! The decision endpoints, spoken to exactly as each peer speaks: Envoy's HTTP
//! ext_authz (path prefix + original path and query, the original method, the
//! Authorization header) and the forward-auth header families of nginx and
//! Traefik/Caddy, over plain HTTP. The same contracts through the real peers are in
//! `peers.rs`.

use std::time::Duration;

use crate::common::*;
use http::HeaderMap;

async fn decision_gate(authz_extra: &str) -> (Gate, JwksServer) {
    let jwks = JwksServer::start(&[key_a()]).await;
    let gate = Gate::start(&authz_config(&jwks.url(), authz_extra), &shipped_policy()).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    (gate, jwks)
}

fn h(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|v| v.to_str().unwrap().to_owned())
}

fn removal_list(headers: &HeaderMap) -> Vec<String> {
    let mut names: Vec<String> = h(headers, "x-envoy-auth-headers-to-remove")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn envoy_allows_with_identity_headers_for_the_original_path() {
    let (gate, _jwks) = decision_gate("").await;
    let url = format!("http://{}/envoy/admin/reports?year=2024", gate.authz);
    let auth = bearer(key_a(), "alice", &["admins", "a,b"]);
    let (status, headers, body) = get(&url, &[("authorization", &auth)]).await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(h(&headers, "x-user-sub").as_deref(), Some("alice"));
    assert_eq!(
        h(&headers, "x-user-groups").as_deref(),
        Some("admins,a%2Cb")
    );
    assert_eq!(removal_list(&headers), with_alb_headers(&[]), "{headers:?}");

    // The same user on a path the rule refuses, and with no token.
    let denied = get(
        &format!("http://{}/envoy/admin/reports", gate.authz),
        &[("authorization", &bearer(key_a(), "bob", &[]))],
    )
    .await;
    assert_eq!(denied.0, 403);
    assert_eq!(
        h(&denied.1, "www-authenticate").as_deref(),
        Some(r#"Bearer realm="cognito-gate", error="insufficient_scope""#)
    );
    assert!(denied.2.contains("insufficient_scope"));
    let anonymous = get(&format!("http://{}/envoy/admin/reports", gate.authz), &[]).await;
    assert_eq!(anonymous.0, 401);
    assert_eq!(
        h(&anonymous.1, "www-authenticate").as_deref(),
        Some(r#"Bearer realm="cognito-gate""#)
    );
}

#[tokio::test]
async fn envoy_decides_on_the_original_method() {
    let (gate, _jwks) = decision_gate("").await;
    let url = format!("http://{}/envoy/reports/q1", gate.authz);
    let reader = bearer(key_a(), "reader", &["finance"]);
    let writer = bearer(key_a(), "writer", &["finance", "editors"]);
    let empty = || http_body_util::BodyExt::boxed(http_body_util::Empty::new());
    assert_eq!(
        send("POST", &url, &[("authorization", &reader)], empty())
            .await
            .0,
        403
    );
    assert_eq!(
        send("DELETE", &url, &[("authorization", &reader)], empty())
            .await
            .0,
        403
    );
    assert_eq!(
        send("POST", &url, &[("authorization", &writer)], empty())
            .await
            .0,
        200
    );
    assert_eq!(
        send("GET", &url, &[("authorization", &reader)], empty())
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn envoy_is_told_to_remove_forged_identity_headers() {
    let (gate, _jwks) = decision_gate("").await;
    let forged = [
        ("x-user-sub", "forged"),
        ("x.user.groups", "forged"),
        ("x_user_sub", "forged"),
    ];

    // Public rule: every identity header goes, the canonical names included.
    let (status, headers, _) =
        get(&format!("http://{}/envoy/public/page", gate.authz), &forged).await;
    assert_eq!(status, 200);
    assert_eq!(
        removal_list(&headers),
        with_alb_headers(&["x-user-groups", "x-user-sub", "x.user.groups", "x_user_sub"])
    );
    assert_eq!(h(&headers, "x-user-sub"), None);

    // Authenticated: the canonical names are overwritten, the other spellings removed.
    let auth = bearer(key_a(), "alice", &["admins"]);
    let mut with_token = forged.to_vec();
    with_token.push(("authorization", &auth));
    let (status, headers, _) =
        get(&format!("http://{}/envoy/admin/x", gate.authz), &with_token).await;
    assert_eq!(status, 200);
    assert_eq!(h(&headers, "x-user-sub").as_deref(), Some("alice"));
    assert_eq!(
        removal_list(&headers),
        with_alb_headers(&["x.user.groups", "x_user_sub"])
    );
}

#[tokio::test]
async fn envoy_paths_follow_the_proxy_path_rules() {
    let (gate, _jwks) = decision_gate("").await;
    let user = bearer(key_a(), "u", &["users"]);
    for path in [
        "/envoy/public/../admin",
        "/envoy//admin",
        "/envoy/admin%2Fx",
        "/envoy/public/%2e%2e/admin",
    ] {
        assert_eq!(raw_get(gate.authz, path, Some(&user)).await, 400, "{path}");
    }
    assert_eq!(
        raw_get(gate.authz, "/envoy/%61dmin/x", Some(&user)).await,
        403
    );
    assert_eq!(raw_get(gate.authz, "/envoy/%61dmin/x", None).await, 401);
    assert_eq!(raw_get(gate.authz, "/envoyx/admin", None).await, 404);
    assert_eq!(raw_get(gate.authz, "/elsewhere", None).await, 404);
}

#[tokio::test]
async fn forward_auth_reads_the_nginx_headers() {
    let (gate, _jwks) = decision_gate("").await;
    let url = format!("http://{}/auth", gate.authz);
    let auth = bearer(key_a(), "alice", &["admins"]);
    let (status, headers, body) = get(
        &url,
        &[
            ("x-original-method", "GET"),
            ("x-original-uri", "/admin/reports?x=1"),
            ("authorization", &auth),
        ],
    )
    .await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(h(&headers, "x-user-sub").as_deref(), Some("alice"));
    assert_eq!(h(&headers, "x-user-groups").as_deref(), Some("admins"));
    assert_eq!(h(&headers, "x-envoy-auth-headers-to-remove"), None);

    // A public rule answers with both identity headers present and empty.
    let (status, headers, _) = get(
        &url,
        &[
            ("x-original-method", "GET"),
            ("x-original-uri", "/public/x"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(h(&headers, "x-user-sub").as_deref(), Some(""));
    assert_eq!(h(&headers, "x-user-groups").as_deref(), Some(""));

    let (status, headers, _) = get(
        &url,
        &[
            ("x-original-method", "GET"),
            ("x-original-uri", "/admin/reports"),
        ],
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        h(&headers, "www-authenticate").as_deref(),
        Some(r#"Bearer realm="cognito-gate""#)
    );
    let tricks = [
        "/public/../admin",
        "//admin",
        "/admin%2Fx",
        "/public/%2E%2E/admin",
    ];
    for uri in tricks {
        let (status, _, body) = get(
            &url,
            &[
                ("x-original-method", "GET"),
                ("x-original-uri", uri),
                ("authorization", &auth),
            ],
        )
        .await;
        assert_eq!(status, 400, "{uri}: {body}");
    }
}

#[tokio::test]
async fn forward_auth_reads_the_traefik_and_caddy_headers() {
    let (gate, _jwks) = decision_gate("").await;
    let url = format!("http://{}/auth", gate.authz);
    let reader = bearer(key_a(), "reader", &["finance"]);
    let ask = |method: &'static str, uri: &'static str| {
        let (url, reader) = (url.clone(), reader.clone());
        async move {
            get(
                &url,
                &[
                    ("x-forwarded-method", method),
                    ("x-forwarded-uri", uri),
                    ("x-forwarded-host", "app.example"),
                    ("authorization", &reader),
                ],
            )
            .await
            .0
        }
    };
    assert_eq!(ask("POST", "/reports/q1").await, 403);
    assert_eq!(ask("GET", "/reports/q1").await, 200);
    assert_eq!(ask("GET", "/%61dmin/x").await, 403);
    // HEAD is accepted as the decision request's own method, too.
    let head = send(
        "HEAD",
        &url,
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/public/x"),
        ],
        http_body_util::BodyExt::boxed(http_body_util::Empty::new()),
    )
    .await;
    assert_eq!(head.0, 200);
}

#[tokio::test]
async fn forward_auth_without_a_clear_original_request_is_a_bad_request() {
    let (gate, _jwks) = decision_gate("").await;
    let url = format!("http://{}/auth", gate.authz);
    let (status, _, body) = get(&url, &[]).await;
    assert_eq!(status, 400);
    for expected in [
        "X-Original-Method",
        "X-Original-URI",
        "X-Forwarded-Method",
        "X-Forwarded-Uri",
    ] {
        assert!(body.contains(expected), "{body}");
    }
    let both = [
        ("x-original-method", "GET"),
        ("x-original-uri", "/public/x"),
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/admin"),
    ];
    let (status, _, body) = get(&url, &both).await;
    assert_eq!(status, 400);
    assert!(body.contains("ambiguous_original_request"), "{body}");
    // One family, with a header given twice: which one the peer meant is unknown.
    for twice in [
        [
            ("x-original-method", "GET"),
            ("x-original-uri", "/public/x"),
            ("x-original-uri", "/admin"),
        ],
        [
            ("x-original-method", "GET"),
            ("x-original-method", "DELETE"),
            ("x-original-uri", "/public/x"),
        ],
        [
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/public/x"),
            ("x-forwarded-uri", "/admin"),
        ],
    ] {
        let (status, _, body) = get(&url, &twice).await;
        assert_eq!(status, 400, "{twice:?}");
        assert!(body.contains("ambiguous_original_request"), "{body}");
    }
    assert_eq!(get(&url, &[("x-original-uri", "/public/x")]).await.0, 400);
    assert_eq!(
        get(
            &url,
            &[
                ("x-original-method", "G T"),
                ("x-original-uri", "/public/x")
            ]
        )
        .await
        .0,
        400
    );
}

#[tokio::test]
async fn untrusted_peers_get_403() {
    let (gate, _jwks) = decision_gate(r#"trusted_peers = ["10.0.0.0/8"]"#).await;
    let auth = bearer(key_a(), "alice", &["admins"]);
    let (status, headers, body) = get(
        &format!("http://{}/auth", gate.authz),
        &[
            ("x-original-method", "GET"),
            ("x-original-uri", "/public/x"),
            ("authorization", &auth),
        ],
    )
    .await;
    assert_eq!(status, 403);
    assert!(body.contains("untrusted_peer"), "{body}");
    assert_eq!(h(&headers, "x-user-sub"), None);
    let (status, _, _) = get(
        &format!("http://{}/envoy/admin/x", gate.authz),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn decisions_need_keys_and_say_503_without_them() {
    let port = reserve_port().await;
    let url = format!("http://{}/{POOL}/.well-known/jwks.json", port.addr);
    let gate = Gate::start(&authz_config(&url, ""), &shipped_policy()).await;
    let auth = bearer(key_a(), "alice", &["admins"]);
    let (status, _, body) = get(
        &format!("http://{}/envoy/admin/x", gate.authz),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(status, 503, "{body}");
    let (status, _, _) = get(&format!("http://{}/envoy/public/x", gate.authz), &[]).await;
    assert_eq!(status, 200, "public rules need no keys");
}

#[tokio::test]
async fn the_proxy_and_the_endpoints_decide_alike() {
    // One gate serving both: the same token and path get the same status both ways.
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let text = config(&upstream.url(), &jwks.url(), "").replace(
        "[upstream]",
        "[authz]\nlisten = \"127.0.0.1:9191\"\n[upstream]",
    );
    let gate = Gate::start(&text, &shipped_policy()).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let tokens = equivalence_tokens();
    for path in EQUIVALENCE_PATHS {
        for token in &tokens {
            let headers: Vec<(&str, &str)> = token
                .iter()
                .map(|t| ("authorization", t.as_str()))
                .collect();
            let proxied = raw_get(gate.addr, path, token.as_deref()).await;
            let envoy = raw_get(gate.authz, &format!("/envoy{path}"), token.as_deref()).await;
            let mut fa = headers.clone();
            fa.extend([("x-original-method", "GET"), ("x-original-uri", path)]);
            let forward = get(&format!("http://{}/auth", gate.authz), &fa).await.0;
            assert_eq!((envoy, forward), (proxied, proxied), "{path} {token:?}");
        }
    }
}

/// `Cache-Control` and `X-Accel-Expires` of a `/auth` answer for `uri`.
async fn cache_headers(
    gate: &Gate,
    uri: &str,
    extra: &[(&str, &str)],
) -> (u16, Option<String>, Option<String>) {
    let mut headers = vec![("x-original-method", "GET"), ("x-original-uri", uri)];
    headers.extend_from_slice(extra);
    let (status, h_, _) = get(&format!("http://{}/auth", gate.authz), &headers).await;
    (status, h(&h_, "cache-control"), h(&h_, "x-accel-expires"))
}

#[tokio::test]
async fn cache_max_age_lets_the_peer_keep_an_allow_until_the_limit_or_exp_and_nothing_else() {
    let (gate, _jwks) = decision_gate("cache_max_age = \"30s\"").await;
    let alice = bearer(key_a(), "alice", &["admins"]);
    let keep = |n: u64| {
        (
            200,
            Some(format!("private, max-age={n}")),
            Some(n.to_string()),
        )
    };
    let never = |status| (status, Some("no-store".to_owned()), Some("0".to_owned()));
    let auth = [("authorization", alice.as_str())];
    assert_eq!(cache_headers(&gate, "/admin/x", &auth).await, keep(30));

    // A token with five seconds left is kept no longer than that.
    let mut claims = access_claims("carol", &["admins"]);
    claims["exp"] = (now() + 5).into();
    let short = format!("Bearer {}", token(key_a(), &claims));
    let (status, control, expires) =
        cache_headers(&gate, "/admin/x", &[("authorization", &short)]).await;
    let seconds: u64 = expires.as_deref().unwrap_or_default().parse().unwrap();
    assert!((3..=5).contains(&seconds), "{expires:?}");
    assert_eq!(
        (status, control),
        (200, Some(format!("private, max-age={seconds}")))
    );

    // Refusals, bad requests and an allow without a token are never kept.
    let bob = bearer(key_a(), "bob", &[]);
    assert_eq!(
        cache_headers(&gate, "/admin/x", &[("authorization", &bob)]).await,
        never(403)
    );
    assert_eq!(cache_headers(&gate, "/admin/x", &[]).await, never(401));
    assert_eq!(cache_headers(&gate, "/public/x", &[]).await, never(200));
    assert_eq!(
        cache_headers(&gate, "/public/../admin", &auth).await,
        never(400)
    );
    let (status, headers, _) = get(&format!("http://{}/auth", gate.authz), &auth).await;
    assert_eq!(
        (status, h(&headers, "cache-control").as_deref()),
        (400, Some("no-store"))
    );

    // Envoy's HTTP ext_authz gets Cache-Control alone (X-Accel-Expires is nginx's).
    let envoy = |token: String| async move {
        let (status, headers, _) = get(
            &format!("http://{}/envoy/admin/x", gate.authz),
            &[("authorization", &token)],
        )
        .await;
        (
            status,
            h(&headers, "cache-control"),
            h(&headers, "x-accel-expires"),
        )
    };
    assert_eq!(
        envoy(alice.clone()).await,
        (200, Some("private, max-age=30".to_owned()), None)
    );
    assert_eq!(
        envoy(bob.clone()).await,
        (403, Some("no-store".to_owned()), None)
    );
}

#[tokio::test]
async fn without_cache_max_age_and_with_cookies_no_allow_is_kept() {
    let (gate, _jwks) = decision_gate("").await;
    let alice = bearer(key_a(), "alice", &["admins"]);
    let auth = [("authorization", alice.as_str())];
    assert_eq!(
        cache_headers(&gate, "/admin/x", &auth).await,
        (200, None, None)
    );
    assert_eq!(
        cache_headers(&gate, "/admin/x", &[]).await,
        (401, None, None)
    );

    // A decision that read the cookies depends on a header the peer's key does not
    // hold: even the Authorization header's token is not kept.
    let jwks = JwksServer::start(&[key_a()]).await;
    let text = format!(
        "token_sources = [\"header\", \"cookie:id_token\"]\n{}",
        authz_config(&jwks.url(), "cache_max_age = \"30s\"")
    );
    let gate = Gate::start(&text, &shipped_policy()).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let no_store = (200, Some("no-store".to_owned()), Some("0".to_owned()));
    assert_eq!(cache_headers(&gate, "/admin/x", &auth).await, no_store);
    let raw_token = alice.trim_start_matches("Bearer ");
    let cookie = format!("id_token={raw_token}");
    assert_eq!(
        cache_headers(&gate, "/admin/x", &[("cookie", &cookie)]).await,
        no_store
    );
    // Cookies are read for GET, HEAD and OPTIONS only: a DELETE reads the header alone.
    let (status, headers, _) = get(
        &format!("http://{}/auth", gate.authz),
        &[
            ("x-original-method", "DELETE"),
            ("x-original-uri", "/admin/x"),
            ("authorization", &alice),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        h(&headers, "cache-control").as_deref(),
        Some("private, max-age=30")
    );
}
