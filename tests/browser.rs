//! What browser apps need: CORS preflights that pass without a token when asked to,
//! still canonicalized and stripped, through the proxy and the decision endpoints.
// The tests sign their tokens with the development issuer (feature `dev`).
#![cfg(feature = "dev")]

mod common;

use std::time::Duration;

use common::*;

async fn browser_gate(top: &str) -> (Gate, Upstream, JwksServer) {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let text = config(&upstream.url(), &jwks.url(), top).replace(
        "[upstream]",
        "[authz]\nlisten = \"127.0.0.1:9191\"\n[upstream]",
    );
    let gate = Gate::start(&text, POLICY).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    (gate, upstream, jwks)
}

const PREFLIGHT: [(&str, &str); 3] = [
    ("origin", "https://app.example.com"),
    ("access-control-request-method", "DELETE"),
    ("access-control-request-headers", "authorization"),
];

/// The status of an OPTIONS for `path` with `headers` through the proxy, `/auth` and
/// `/envoy`.
async fn options_three_ways(gate: &Gate, path: &str, headers: &[(&str, &str)]) -> [u16; 3] {
    let proxied = send("OPTIONS", &gate.url(path), headers, full("")).await.0;
    let mut forward = vec![("x-original-method", "OPTIONS"), ("x-original-uri", path)];
    forward.extend_from_slice(headers);
    let auth = get(&format!("http://{}/auth", gate.authz), &forward)
        .await
        .0;
    let envoy = send(
        "OPTIONS",
        &format!("http://{}/envoy{path}", gate.authz),
        headers,
        full(""),
    )
    .await
    .0;
    [proxied, auth, envoy]
}

#[tokio::test]
async fn preflights_pass_without_a_token_when_asked_to_and_nothing_else_does() {
    let (gate, upstream, _jwks) = browser_gate("cors_preflight = \"pass\"").await;
    assert_eq!(
        options_three_ways(&gate, "/admin/x", &PREFLIGHT).await,
        [200; 3]
    );
    let seen = upstream.last();
    assert_eq!(
        (seen.method.as_str(), seen.uri.as_str()),
        ("OPTIONS", "/admin/x")
    );

    // Forged identity headers on a preflight are stripped like on any request.
    let mut forged = PREFLIGHT.to_vec();
    forged.push(("x-user-sub", "admin"));
    forged.push(("X_User_Groups", "admins"));
    let (status, _, _) = send("OPTIONS", &gate.url("/%61dmin/x"), &forged, full("")).await;
    assert_eq!(status, 200);
    let seen = upstream.last();
    assert_eq!(seen.uri, "/admin/x", "the canonical path is forwarded");
    assert!(seen.identity_like("x-user-sub").is_empty(), "{seen:?}");
    assert!(seen.identity_like("x-user-groups").is_empty(), "{seen:?}");

    // The path is still canonicalized: a trick is 400, preflight or not.
    assert_eq!(
        options_three_ways(&gate, "/public/../admin", &PREFLIGHT).await,
        [400; 3]
    );
    // Not a preflight: an OPTIONS without Origin, or without the requested method,
    // and every other method, need what the policy asks.
    let no_origin = [PREFLIGHT[1]];
    let no_method = [PREFLIGHT[0]];
    assert_eq!(
        options_three_ways(&gate, "/admin/x", &no_origin).await,
        [401; 3]
    );
    assert_eq!(
        options_three_ways(&gate, "/admin/x", &no_method).await,
        [401; 3]
    );
    let (status, _, _) = send("DELETE", &gate.url("/admin/x"), &PREFLIGHT, full("")).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn by_default_a_preflight_is_judged_like_any_request() {
    let (gate, upstream, _jwks) = browser_gate("").await;
    assert_eq!(
        options_three_ways(&gate, "/admin/x", &PREFLIGHT).await,
        [401; 3]
    );
    assert_eq!(
        options_three_ways(&gate, "/public/x", &PREFLIGHT).await,
        [200; 3]
    );
    let admin = bearer(key_a(), "alice", &["admins"]);
    let mut with_token = PREFLIGHT.to_vec();
    with_token.push(("authorization", &admin));
    assert_eq!(
        options_three_ways(&gate, "/admin/x", &with_token).await,
        [200; 3]
    );
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn a_token_cookie_is_read_for_safe_methods_and_removed_before_the_app() {
    let (gate, upstream, _jwks) =
        browser_gate("token_sources = [\"header\", \"cookie:id_token\"]").await;
    let admin = bearer(key_a(), "alice", &["admins"]);
    let admin_token = admin.trim_start_matches("Bearer ");
    let bob = bearer(key_a(), "bob", &[]);
    let cookie = format!("theme=dark; id_token={admin_token}; lang=en");

    let (status, _, _) = get(&gate.url("/admin/x"), &[("cookie", &cookie)]).await;
    assert_eq!(status, 200);
    let seen = upstream.last();
    assert_eq!(seen.header("x-user-sub").as_deref(), Some("alice"));
    assert_eq!(
        seen.header("cookie").as_deref(),
        Some("theme=dark; lang=en")
    );

    // Unsafe methods are header-only: a cross-site form cannot ride on the cookie.
    let (status, _, _) = send("POST", &gate.url("/app"), &[("cookie", &cookie)], full("x")).await;
    assert_eq!(status, 401);
    let (status, _, _) = send(
        "POST",
        &gate.url("/app"),
        &[("cookie", &cookie), ("authorization", &bob)],
        full("x"),
    )
    .await;
    // For POST the cookie is not a source at all, so the header alone decides.
    assert_eq!(status, 200);
    assert_eq!(upstream.last().header("x-user-sub").as_deref(), Some("bob"));

    // The same token in both places is one credential; two different ones are not.
    let same = [
        ("cookie", cookie.as_str()),
        ("authorization", admin.as_str()),
    ];
    assert_eq!(get(&gate.url("/admin/x"), &same).await.0, 200);
    let two = [("cookie", cookie.as_str()), ("authorization", bob.as_str())];
    assert_eq!(get(&gate.url("/app"), &two).await.0, 400);
    let twice = format!("id_token={admin_token}; id_token=other");
    assert_eq!(get(&gate.url("/app"), &[("cookie", &twice)]).await.0, 400);
    // A bad cookie token is a bad token: 401, never a pass.
    assert_eq!(
        get(&gate.url("/app"), &[("cookie", "id_token=not.a.token")])
            .await
            .0,
        401
    );

    // A public path keeps the other cookies and loses the token cookie too.
    let (status, _, _) = get(&gate.url("/public/x"), &[("cookie", &cookie)]).await;
    assert_eq!(status, 200);
    assert_eq!(
        upstream.last().header("cookie").as_deref(),
        Some("theme=dark; lang=en")
    );

    // The decision endpoints read the cookie as the proxy does.
    let forward = [
        ("x-original-method", "GET"),
        ("x-original-uri", "/admin/x"),
        ("cookie", cookie.as_str()),
    ];
    let (status, headers, _) = get(&format!("http://{}/auth", gate.authz), &forward).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-user-sub"], "alice");
    let envoy = get(
        &format!("http://{}/envoy/admin/x", gate.authz),
        &[("cookie", &cookie)],
    )
    .await;
    assert_eq!(envoy.0, 200);
}

#[tokio::test]
async fn forward_token_keeps_the_cookie_for_the_app() {
    let (gate, upstream, _jwks) = browser_gate(
        "token_sources = [\"cookie:id_token\"]\ncookie_methods = [\"GET\", \"POST\"]\nforward_token = true",
    )
    .await;
    let admin = bearer(key_a(), "alice", &["admins"]);
    let cookie = format!("id_token={}", admin.trim_start_matches("Bearer "));
    assert_eq!(
        get(&gate.url("/admin/x"), &[("cookie", &cookie)]).await.0,
        200
    );
    assert_eq!(
        upstream.last().header("cookie").as_deref(),
        Some(cookie.as_str())
    );
    // POST is listed here, so the cookie counts for it.
    let (status, _, _) = send("POST", &gate.url("/app"), &[("cookie", &cookie)], full("x")).await;
    assert_eq!(status, 200);
    // The header is not a source here: a bearer token alone is no token.
    assert_eq!(
        get(&gate.url("/app"), &[("authorization", &admin)]).await.0,
        401
    );
}
