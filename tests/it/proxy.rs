//! The reverse proxy end to end, over real sockets: what the client gets back and
//! exactly what the upstream app received.

use std::time::Duration;

use crate::common::*;
use http_body_util::{BodyExt, Empty};
use serde_json::json;

fn header(h: &http::HeaderMap, name: &str) -> String {
    h.get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn an_allowed_request_reaches_the_app_with_exactly_our_identity_headers() {
    let (gate, upstream, _jwks) = stack().await;
    let auth = bearer(key_a(), "user-123", &["admins", "Team Leads", "a,b"]);
    let (status, _, body) = get(
        &gate.url("/admin/reports?year=2024&q=a%20b"),
        &[("authorization", &auth), ("host", "app.example")],
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "ok"));

    let seen = upstream.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.uri, "/admin/reports?year=2024&q=a%20b");
    assert_eq!(
        seen.identity_like("x-user-sub"),
        [("x-user-sub".to_owned(), "user-123".to_owned())]
    );
    assert_eq!(
        seen.identity_like("x-user-groups"),
        [(
            "x-user-groups".to_owned(),
            "admins,Team%20Leads,a%2Cb".to_owned()
        )]
    );
    assert_eq!(seen.header("authorization").as_deref(), Some(auth.as_str()));
    assert_eq!(seen.header("host").as_deref(), Some("app.example"));
    assert_eq!(
        seen.header("x-forwarded-host").as_deref(),
        Some("app.example")
    );
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
}

#[tokio::test]
async fn a_user_in_no_group_gets_an_empty_groups_header() {
    let (gate, upstream, _jwks) = stack().await;
    let auth = bearer(key_a(), "user-9", &[]);
    let (status, _, _) = get(&gate.url("/app/home"), &[("authorization", &auth)]).await;
    assert_eq!(status, 200);
    let seen = upstream.last();
    assert_eq!(seen.header("x-user-sub").as_deref(), Some("user-9"));
    assert_eq!(seen.header("x-user-groups").as_deref(), Some(""));
}

#[tokio::test]
async fn forged_identity_headers_never_reach_the_app() {
    let (gate, upstream, _jwks) = stack().await;
    let auth = bearer(key_a(), "real-user", &["admins"]);
    let forged: &[(&str, &str)] = &[
        ("X-User-Sub", "forged-1"),
        ("x_user_sub", "forged-2"),
        ("X.User.Groups", "forged-3"),
        ("X-USER_GROUPS", "forged-4"),
    ];
    // A protected path: only the verified identity arrives.
    let mut headers = forged.to_vec();
    headers.push(("authorization", &auth));
    let (status, _, _) = get(&gate.url("/admin/x"), &headers).await;
    assert_eq!(status, 200);
    let seen = upstream.last();
    assert_eq!(
        seen.identity_like("x-user-sub"),
        [("x-user-sub".to_owned(), "real-user".to_owned())]
    );
    assert_eq!(
        seen.identity_like("x-user-groups"),
        [("x-user-groups".to_owned(), "admins".to_owned())]
    );

    // A public path: no identity arrives at all, with or without a token.
    for with_token in [false, true] {
        let mut headers = forged.to_vec();
        if with_token {
            headers.push(("authorization", &auth));
        }
        let (status, _, _) = get(&gate.url("/public/page"), &headers).await;
        assert_eq!(status, 200);
        let seen = upstream.last();
        assert!(seen.identity_like("x-user-sub").is_empty(), "{seen:?}");
        assert!(seen.identity_like("x-user-groups").is_empty(), "{seen:?}");
    }
}

#[tokio::test]
async fn invalid_tokens_get_401_with_a_bearer_challenge_and_never_reach_the_app() {
    let (gate, upstream, _jwks) = stack().await;
    let good = access_claims("u", &["admins"]);
    let with = |key: &str, value: serde_json::Value| {
        let mut c = good.clone();
        c[key] = value;
        format!("Bearer {}", token(key_a(), &c))
    };
    let other_key = cognito_gate_dev_issuer::SigningKey::generate("key-a").unwrap();
    let cases: Vec<(&str, Option<String>, Option<&str>)> = vec![
        ("missing", None, None),
        (
            "garbage",
            Some("Bearer not.a.jwt".into()),
            Some("malformed token"),
        ),
        (
            "expired",
            Some(with("exp", json!(now() - 10))),
            Some("token has expired"),
        ),
        (
            "wrong pool",
            Some(with(
                "iss",
                json!("https://cognito-idp.eu-central-1.amazonaws.com/eu-central-1_Other"),
            )),
            Some("token issuer is not an accepted user pool"),
        ),
        (
            "wrong client",
            Some(with("client_id", json!("someone-else"))),
            Some("token was issued to another client"),
        ),
        (
            "id token",
            Some(with("token_use", json!("id"))),
            Some("this kind of token is not accepted here"),
        ),
        (
            "forged signature",
            Some(format!("Bearer {}", token(&other_key, &good))),
            Some("token signature is invalid"),
        ),
    ];
    for (name, auth, description) in cases {
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let (status, h, body) = get(&gate.url("/admin/x"), &headers).await;
        assert_eq!(status, 401, "{name}: {body}");
        let challenge = header(&h, "www-authenticate");
        match description {
            None => assert_eq!(challenge, r#"Bearer realm="cognito-gate""#, "{name}"),
            Some(d) => {
                assert!(
                    challenge.starts_with(
                        r#"Bearer realm="cognito-gate", error="invalid_token", error_description=""#
                    ),
                    "{name}: {challenge}"
                );
                assert!(challenge.contains(d), "{name}: {challenge}");
            }
        }
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            body["error"].is_string() && body["message"].is_string(),
            "{name}: {body}"
        );
        assert!(
            !body.to_string().contains("eyJ"),
            "{name}: the body echoes the token"
        );
    }
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn a_valid_token_in_the_wrong_group_gets_403() {
    let (gate, upstream, _jwks) = stack().await;
    let auth = bearer(key_a(), "u", &["users", "admins-not"]);
    let (status, h, body) = get(&gate.url("/admin/x"), &[("authorization", &auth)]).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        header(&h, "www-authenticate"),
        r#"Bearer realm="cognito-gate", error="insufficient_scope""#
    );
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn path_tricks_never_get_around_a_rule() {
    let (gate, upstream, _jwks) = stack().await;
    let user = bearer(key_a(), "u", &["users"]);
    // Refused before any rule is read.
    for path in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin/x",
        "/admin%2Fx",
        "/public%2F..%2Fadmin",
        "//admin",
        "/public//../admin",
        "/public/./x",
        "/public\\..\\admin",
        "/public;/../admin",
        "/public/%zz",
    ] {
        assert_eq!(raw_get(gate.addr, path, Some(&user)).await, 400, "{path}");
    }
    // Decoded before matching, so the admin rule still applies.
    assert_eq!(raw_get(gate.addr, "/%61dmin/x", None).await, 401);
    assert_eq!(raw_get(gate.addr, "/%61dmin/x", Some(&user)).await, 403);
    assert_eq!(
        raw_get(gate.addr, "/%61%64%6D%69%6E", Some(&user)).await,
        403
    );
    assert_eq!(upstream.count(), 0);

    // And the app receives exactly the path that was judged.
    let admin = bearer(key_a(), "boss", &["admins"]);
    assert_eq!(
        raw_get(gate.addr, "/%61dmin/x%3f?y=%2F", Some(&admin)).await,
        200
    );
    assert_eq!(upstream.last().uri, "/admin/x%3F?y=%2F");
}

#[tokio::test]
async fn machine_to_machine_tokens_are_gated_by_scope() {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let policy = r#"
        [[rule]]
        path = "/orders/**"
        methods = ["GET"]
        scopes = ["orders/read", "orders/admin"]

        [[rule]]
        path = "/orders/**"
        scopes = ["orders/write"]
    "#;
    let gate = Gate::start(&config(&upstream.url(), &jwks.url(), ""), policy).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    // A client-credentials token: sub is the client, no groups, no username.
    let m2m = |scope: &str| {
        let claims = json!({
            "sub": CLIENT, "iss": ISS, "token_use": "access", "client_id": CLIENT,
            "scope": scope, "exp": now() + 600, "iat": now() - 5, "version": 2,
        });
        format!("Bearer {}", token(key_a(), &claims))
    };
    let empty = || http_body_util::BodyExt::boxed(Empty::new());
    let reader = m2m("orders/read");
    assert_eq!(
        get(&gate.url("/orders/1"), &[("authorization", &reader)])
            .await
            .0,
        200
    );
    let seen = upstream.last();
    assert_eq!(seen.header("x-user-sub").as_deref(), Some(CLIENT));
    assert_eq!(seen.header("x-user-groups").as_deref(), Some(""));
    let (status, h, _) = send(
        "POST",
        &gate.url("/orders/1"),
        &[("authorization", &reader)],
        empty(),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        header(&h, "www-authenticate"),
        r#"Bearer realm="cognito-gate", error="insufficient_scope""#
    );
    let writer = m2m("orders/write orders/read");
    assert_eq!(
        send(
            "POST",
            &gate.url("/orders/1"),
            &[("authorization", &writer)],
            empty()
        )
        .await
        .0,
        200
    );
    assert_eq!(
        get(
            &gate.url("/orders/1"),
            &[("authorization", &m2m("profile"))]
        )
        .await
        .0,
        403
    );
}

#[tokio::test]
async fn requests_no_rule_matches_are_denied() {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let policy = "[[rule]]\npath = \"/public/**\"\nallow = \"anyone\"\n";
    let gate = Gate::start(&config(&upstream.url(), &jwks.url(), ""), policy).await;
    let auth = bearer(key_a(), "u", &["admins"]);
    let (status, _, body) = get(&gate.url("/elsewhere"), &[("authorization", &auth)]).await;
    assert_eq!(status, 403);
    assert!(body.contains("no_matching_rule"), "{body}");
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn hop_by_hop_headers_are_dropped_and_authorization_can_be_withheld() {
    let (gate, upstream, _jwks) = stack_with("[headers]\nforward_authorization = false").await;
    let auth = bearer(key_a(), "u", &[]);
    let (status, _, _) = get(
        &gate.url("/app"),
        &[
            ("authorization", &auth),
            ("connection", "x-private"),
            ("x-private", "secret"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-host", "spoofed.example"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let seen = upstream.last();
    for gone in [
        "x-private",
        "te",
        "proxy-authorization",
        "authorization",
        "connection",
    ] {
        assert_eq!(seen.header(gone), None, "{gone} reached the app");
    }
    // Without trusted_proxies the client's forwarding headers are replaced.
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-host"), Some(gate.addr.to_string()));
    assert_eq!(seen.header("x-user-sub").as_deref(), Some("u"));
}

#[tokio::test]
async fn method_and_path_override_headers_never_reach_the_app() {
    let (gate, upstream, _jwks) = stack().await;
    let overrides: &[(&str, &str)] = &[
        ("X-HTTP-Method-Override", "DELETE"),
        ("X_HTTP_Method_Override", "DELETE"),
        ("x-http-method", "DELETE"),
        ("x-method-override", "DELETE"),
        ("X-Original-URL", "/admin/x"),
        ("x.rewrite.url", "/admin/x"),
        ("X-Original-URI", "/admin/x"),
        ("X-Forwarded-Uri", "/admin/x"),
        ("X-Forwarded-Prefix", "/admin"),
    ];
    let (status, _, _) = get(&gate.url("/public/page"), overrides).await;
    assert_eq!(status, 200);
    let seen = upstream.last();
    assert_eq!(
        (seen.method.as_str(), seen.uri.as_str()),
        ("GET", "/public/page")
    );
    for name in cognito_gate::internals::ROUTING_OVERRIDES {
        assert_eq!(seen.identity_like(name), [], "{name} reached the app");
    }
}

#[tokio::test]
async fn oversized_headers_get_431_and_oversized_tokens_401() {
    let (gate, upstream, _jwks) = stack().await;
    let big = "x".repeat(20 * 1024);
    let (status, _) = raw(
        gate.addr,
        &format!("GET /public/a HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 431);

    let huge_token = format!("Bearer {}", "a".repeat(9 * 1024));
    let (status, h, _) = get(&gate.url("/app"), &[("authorization", &huge_token)]).await;
    assert_eq!(status, 401);
    assert!(header(&h, "www-authenticate").contains("token is too large"));
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn two_authorization_headers_are_a_bad_request() {
    let (gate, upstream, _jwks) = stack().await;
    let auth = bearer(key_a(), "u", &["admins"]);
    let (status, _) = raw(
        gate.addr,
        &format!("GET /app HTTP/1.1\r\nHost: t\r\nAuthorization: {auth}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn a_down_upstream_gets_502_and_a_slow_one_504() {
    let jwks = JwksServer::start(&[key_a()]).await;
    let closed = reserve_port().await;
    let gate = Gate::start(
        &config(&format!("http://{}", closed.addr), &jwks.url(), ""),
        POLICY,
    )
    .await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let auth = bearer(key_a(), "u", &[]);
    let (status, _, body) = get(&gate.url("/app"), &[("authorization", &auth)]).await;
    assert_eq!(status, 502, "{body}");

    let upstream = Upstream::start().await;
    let text = config(&upstream.url(), &jwks.url(), "")
        .replace("request_timeout = \"5s\"", "request_timeout = \"300ms\"");
    let gate = Gate::start(&text, POLICY).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let (status, _, body) = get(&gate.url("/slow"), &[("authorization", &auth)]).await;
    assert_eq!(status, 504, "{body}");
}

#[tokio::test]
async fn large_bodies_stream_through_in_both_directions() {
    let (gate, _upstream, _jwks) = stack().await;
    let auth = bearer(key_a(), "u", &[]);
    const SIZE: usize = 64 * 1024 * 1024;
    let chunk = bytes::Bytes::from(vec![7u8; 1024 * 1024]);
    let frames =
        futures_util::stream::iter((0..SIZE / chunk.len()).map(move |_| {
            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(chunk.clone()))
        }));
    let (status, _, body) = send(
        "POST",
        &gate.url("/upload"),
        &[("authorization", &auth)],
        http_body_util::StreamBody::new(frames).boxed(),
    )
    .await;
    assert_eq!((status, body), (200, SIZE.to_string()));

    let (status, _, body) = get(
        &gate.url(&format!("/download?bytes={SIZE}")),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!((status, body.len()), (200, SIZE));
}

#[tokio::test]
async fn websocket_upgrades_are_proxied_once_authorized() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
    let (gate, upstream, _jwks) = stack().await;

    let mut request = format!("ws://{}/ws", gate.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        bearer(key_a(), "ws-user", &[]).parse().unwrap(),
    );
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), 101);
    ws.send(Message::text("hello through the gate"))
        .await
        .unwrap();
    let echoed = ws.next().await.unwrap().unwrap();
    assert_eq!(echoed, Message::text("hello through the gate"));
    assert_eq!(
        upstream.last().header("x-user-sub").as_deref(),
        Some("ws-user")
    );

    let refused = tokio_tungstenite::connect_async(format!("ws://{}/ws", gate.addr)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected a 401, got {other:?}"),
    }
}

#[tokio::test]
async fn h2c_clients_are_served() {
    let (gate, upstream, _jwks) = stack().await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Empty<bytes::Bytes>>();
    let req = http::Request::get(gate.url("/app/h2"))
        .header("authorization", bearer(key_a(), "h2-user", &["g"]))
        .body(Empty::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(
        (resp.version(), resp.status().as_u16()),
        (http::Version::HTTP_2, 200)
    );
    let seen = upstream.last();
    assert_eq!(seen.header("x-user-sub").as_deref(), Some("h2-user"));
    assert_eq!(seen.header("host"), Some(gate.addr.to_string()));
}

#[tokio::test]
async fn graceful_shutdown_lets_an_in_flight_request_finish() {
    let (mut gate, _upstream, _jwks) = stack().await;
    let auth = bearer(key_a(), "u", &[]);
    let url = gate.url("/slow");
    let in_flight = tokio::spawn(async move { get(&url, &[("authorization", &auth)]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let addr = gate.addr;
    let task = gate.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
    let (status, _, body) = in_flight.await.unwrap();
    assert_eq!((status, body.as_str()), (200, "slow done"));
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the gate did not stop after draining")
        .unwrap();
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (gate, upstream, _jwks) = stack_with("header_read_timeout = \"1s\"").await;
    let mut stream = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    stream
        .write_all(b"GET /public/x HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the connection stayed open");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(upstream.count(), 0);
}
