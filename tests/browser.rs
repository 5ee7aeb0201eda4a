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
