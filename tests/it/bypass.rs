//! The bypasses an outside attack found, each replayed at the level it was found
//! (the proxy, `/auth`, the Envoy endpoint), with the variants an attacker would try
//! next. The same classes through real nginx and Caddy are in `peers.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::*;
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The HTTP/2 connection preface and an empty SETTINGS frame (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const H2_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];

/// Sends `request`, then `after` on the same connection, and returns everything the
/// gate wrote until it closed the connection or two seconds passed.
async fn raw_then(addr: SocketAddr, request: &str, after: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = stream.write_all(after).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

fn auth_line(token: Option<&str>) -> String {
    token
        .map(|t| format!("Authorization: {t}\r\n"))
        .unwrap_or_default()
}

/// A gate with both the proxy and the decision endpoints, in front of a recording
/// app, with `policy`.
async fn both_ways(extra: &str, policy: &str) -> (Gate, Upstream, JwksServer) {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let text = config(&upstream.url(), &jwks.url(), extra).replace(
        "[upstream]",
        "[authz]\nlisten = \"127.0.0.1:9191\"\n[upstream]",
    );
    let gate = Gate::start(&text, policy).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    (gate, upstream, jwks)
}

/// The status of `method path` through the proxy, through `/auth` with each header
/// family, and through the Envoy endpoint, in that order.
async fn every_way(gate: &Gate, method: &str, path: &str, token: Option<&str>) -> [u16; 4] {
    let auth = auth_line(token);
    let proxy = raw(
        gate.addr,
        &format!("{method} {path} HTTP/1.1\r\nHost: app.test\r\n{auth}Connection: close\r\n\r\n"),
    )
    .await
    .0;
    let auth_url = format!("http://{}/auth", gate.authz);
    let mut headers: Vec<(&str, &str)> = token.iter().map(|t| ("authorization", *t)).collect();
    let mut nginx = headers.clone();
    nginx.extend([("x-original-method", method), ("x-original-uri", path)]);
    let nginx = get(&auth_url, &nginx).await.0;
    headers.extend([("x-forwarded-method", method), ("x-forwarded-uri", path)]);
    let traefik = get(&auth_url, &headers).await.0;
    let envoy = raw(
        gate.authz,
        &format!("{method} /envoy{path} HTTP/1.1\r\nHost: gate\r\n{auth}Connection: close\r\n\r\n"),
    )
    .await
    .0;
    [proxy, nginx, traefik, envoy]
}

// 1. h2c upgrade smuggling.

#[tokio::test]
async fn an_h2c_upgrade_is_never_forwarded_and_nothing_is_tunnelled() {
    let (gate, upstream, _jwks) = stack().await;
    let bob = bearer(key_a(), "bob", &[]);
    let mut smuggled = H2_PREFACE.to_vec();
    smuggled.extend(H2_SETTINGS);
    smuggled.extend(b"GET /admin/secret HTTP/1.1\r\nHost: x\r\nX-User-Sub: admin-user\r\n\r\n");
    let cases = [
        ("/public/x", None, "h2c"),
        ("/public/x", None, "H2C"),
        ("/public/x", None, " h2c "),
        ("/app/x", Some(bob.as_str()), "h2c"),
    ];
    for (path, token, upgrade) in cases {
        let before = upstream.count();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: app.test\r\n{}Connection: Upgrade, HTTP2-Settings\r\n\
             Upgrade: {upgrade}\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
            auth_line(token)
        );
        let answer = raw_then(gate.addr, &request, &smuggled).await;
        assert_eq!(status_of(&answer), 200, "{path} {upgrade:?}: {answer}");
        assert!(!answer.contains(" 101 "), "{path}: {answer}");
        let seen = upstream.seen();
        assert_eq!(seen.len(), before + 1, "{path}: the app saw {seen:?}");
        let seen = &seen[before];
        assert_eq!(seen.uri, path);
        for name in ["upgrade", "http2-settings", "connection"] {
            assert_eq!(seen.header(name), None, "{path}: {name} reached the app");
        }
    }
    assert!(upstream.tunnelled().is_empty(), "bytes reached the app");
}

#[tokio::test]
async fn the_decision_endpoints_refuse_an_h2c_upgrade_they_cannot_strip() {
    let (gate, upstream, _jwks) = both_ways("", POLICY).await;
    let h2c = [("upgrade", "h2c"), ("connection", "Upgrade")];
    let mut nginx = h2c.to_vec();
    nginx.extend([
        ("x-original-method", "GET"),
        ("x-original-uri", "/public/x"),
    ]);
    let (status, _, body) = get(&format!("http://{}/auth", gate.authz), &nginx).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("upgrade_not_allowed"), "{body}");
    let (status, _, _) = get(&format!("http://{}/envoy/public/x", gate.authz), &h2c).await;
    assert_eq!(status, 400);
    // A WebSocket upgrade is judged like any request.
    let mut ws = vec![("upgrade", "websocket"), ("connection", "Upgrade")];
    ws.extend([
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/public/x"),
    ]);
    assert_eq!(
        get(&format!("http://{}/auth", gate.authz), &ws).await.0,
        200
    );
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn upgrades_other_than_websocket_are_refused_unless_configured() {
    let (gate, upstream, _jwks) = stack().await;
    for upgrade in [
        "foo",
        "h2c, websocket",
        "websocket, foo",
        "TLS/1.2",
        "HTTP/2.0",
    ] {
        let request = format!(
            "GET /public/x HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\n\
             Upgrade: {upgrade}\r\n\r\n"
        );
        let answer = raw_then(gate.addr, &request, b"tunnelled bytes").await;
        assert_eq!(status_of(&answer), 400, "{upgrade}: {answer}");
        assert!(answer.contains("upgrade_not_allowed"), "{answer}");
    }
    assert_eq!(upstream.count(), 0);
    assert!(upstream.tunnelled().is_empty());

    // Configured, a protocol passes once the request is authorized.
    let (gate, upstream, _jwks) = stack_with(r#"allowed_upgrades = ["websocket", "foo"]"#).await;
    let request = "GET /public/x HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\n\
                   Upgrade: foo\r\n\r\n";
    let answer = raw_then(gate.addr, request, b"tunnelled bytes").await;
    assert_eq!(status_of(&answer), 101, "{answer}");
    assert_eq!(upstream.last().header("upgrade").as_deref(), Some("foo"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(upstream.tunnelled(), b"tunnelled bytes");
    // ... and still needs what the rule asks for.
    let request = "GET /app/x HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\n\
                   Upgrade: foo\r\n\r\n";
    assert_eq!(status_of(&raw_then(gate.addr, request, b"").await), 401);
}

// 2. Method case, and methods that cannot be forwarded.

#[tokio::test]
async fn methods_that_are_not_upper_case_are_refused_everywhere() {
    let (gate, upstream, _jwks) = both_ways("", &shipped_policy()).await;
    let reader = bearer(key_a(), "reader", &["finance"]);
    // The rule for DELETE matches the upper-case spelling only, and refuses this user.
    assert_eq!(
        every_way(&gate, "DELETE", "/reports/1", Some(&reader)).await,
        [403; 4]
    );
    for method in ["delete", "Delete", "DeLeTe", "put", "post", "get", "pAtCh"] {
        assert_eq!(
            every_way(&gate, method, "/reports/1", Some(&reader)).await,
            [400; 4],
            "{method}"
        );
    }
    // HTTP/2 carries the method in :method.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Empty<bytes::Bytes>>();
    let req = http::Request::builder()
        .method(http::Method::from_bytes(b"delete").unwrap())
        .uri(gate.url("/reports/1"))
        .header("authorization", &reader)
        .body(Empty::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(
        (resp.version(), resp.status().as_u16()),
        (http::Version::HTTP_2, 400)
    );
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("invalid_method"));
    assert_eq!(upstream.count(), 0, "a refused method reached the app");
}

#[tokio::test]
async fn a_method_override_in_the_query_is_refused_everywhere() {
    // Laravel, Symfony and Express's method-override would run these as DELETE.
    let policy = r#"
        [[rule]]
        path = "/notes/**"
        methods = ["DELETE"]
        groups = ["admins"]

        [[rule]]
        path = "/notes/**"
        allow = "authenticated"
    "#;
    let (gate, upstream, _jwks) = both_ways("", policy).await;
    let bob = bearer(key_a(), "bob", &[]);
    assert_eq!(
        every_way(&gate, "POST", "/notes/1?x=1", Some(&bob)).await,
        [200; 4]
    );
    assert_eq!(
        every_way(&gate, "DELETE", "/notes/1", Some(&bob)).await,
        [403; 4]
    );
    let before = upstream.count();
    for target in [
        "/notes/1?_method=DELETE",
        "/notes/1?x=1&_method=DELETE",
        "/notes/1?%5Fmethod=DELETE",
        "/notes/1?_METHOD=delete",
        "/notes/1?.method=DELETE",
    ] {
        assert_eq!(
            every_way(&gate, "POST", target, Some(&bob)).await,
            [400; 4],
            "{target}"
        );
    }
    assert_eq!(
        upstream.count(),
        before,
        "an overridden method reached the app"
    );
    let (_, answer) = raw(
        gate.addr,
        &format!("POST /notes/1?_method=DELETE HTTP/1.1\r\nHost: app.test\r\nAuthorization: {bob}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(answer.contains("method_override"), "{answer}");
}

#[tokio::test]
async fn connect_and_trace_are_refused_with_405() {
    let (gate, upstream, _jwks) = both_ways("", POLICY).await;
    for method in ["CONNECT", "TRACE"] {
        assert_eq!(
            every_way(&gate, method, "/public/x", None).await,
            [405; 4],
            "{method}"
        );
    }
    let (status, answer) = raw(
        gate.addr,
        "CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 405);
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nallow: get, head, post"),
        "{answer}"
    );
    assert_eq!(upstream.count(), 0);
}

// 3. A `#` in the original URI.

#[tokio::test]
async fn a_fragment_in_the_original_uri_is_refused() {
    let (gate, upstream, _jwks) = both_ways("", &shipped_policy()).await;
    let bob = bearer(key_a(), "bob", &[]);
    let url = format!("http://{}/auth", gate.authz);
    for (method, uri) in [
        ("GET", "/admin#x"),
        ("GET", "/admin#"),
        ("POST", "/reports/7#"),
        ("GET", "/public#/../admin"),
        ("GET", "/admin/x?q=1#frag"),
    ] {
        for family in [
            ["x-original-method", "x-original-uri"],
            ["x-forwarded-method", "x-forwarded-uri"],
        ] {
            let headers = [
                ("authorization", bob.as_str()),
                (family[0], method),
                (family[1], uri),
            ];
            let (status, _, body) = get(&url, &headers).await;
            assert_eq!(status, 400, "{family:?} {uri}: {body}");
            assert!(body.contains("invalid_path"), "{body}");
        }
    }
    // An escaped `%23` stays escaped: the policy judges the segment `admin%23x`, and the
    // app receives exactly that, never a delimiter.
    let (status, _, _) = get(&gate.url("/admin%23x/y"), &[("authorization", &bob)]).await;
    assert_eq!(status, 200);
    assert_eq!(upstream.last().uri, "/admin%23x/y");
    // A raw `#` sent to the proxy: the request target ends there for hyper, so the
    // policy judges, and the app receives, `/admin`.
    let before = upstream.count();
    assert_eq!(raw_get(gate.addr, "/admin#x", Some(&bob)).await, 403);
    assert_eq!(upstream.count(), before);
}

// 5. The token cache and a key republished under the same kid: see keys.rs.

// 6. Case and trailing slash: the strictest reading wins.

const READINGS: &str = include_str!("../policies/readings.toml");

#[tokio::test]
async fn every_reading_of_the_path_must_be_allowed() {
    let (gate, upstream, _jwks) = both_ways("", READINGS).await;
    let bob = bearer(key_a(), "bob", &[]);
    let alice = bearer(key_a(), "alice", &["admins"]);
    let fin = bearer(key_a(), "fin", &["finance"]);
    let cases: &[(&str, &str, Option<&str>, u16)] = &[
        ("GET", "/admin/x", Some(&bob), 403),
        ("GET", "/ADMIN/x", Some(&bob), 403),
        ("GET", "/Admin", Some(&bob), 403),
        ("GET", "/aDmIn/", Some(&bob), 403),
        ("GET", "/%41dmin/x", Some(&bob), 403),
        ("GET", "/ADMIN/x", Some(&alice), 200),
        ("POST", "/invoices/7/export", Some(&bob), 403),
        ("POST", "/invoices/7/export/", Some(&bob), 403),
        ("POST", "/INVOICES/7/EXPORT/", Some(&bob), 403),
        ("POST", "/invoices/7/export/", Some(&fin), 200),
        ("GET", "/invoices/7/export/", Some(&bob), 200),
        // Folding never widens an allow rule: /Public is not public to a
        // case-sensitive app, so it still needs what /** asks for.
        ("GET", "/Public/secret", None, 401),
        ("GET", "/public/secret", None, 200),
        ("GET", "/ADMIN/x", None, 401),
    ];
    for (method, path, token, want) in cases {
        assert_eq!(
            every_way(&gate, method, path, *token).await,
            [*want; 4],
            "{method} {path} {token:?}"
        );
    }
    // The app receives the path as sent.
    get(&gate.url("/ADMIN/x"), &[("authorization", &alice)]).await;
    assert_eq!(upstream.last().uri, "/ADMIN/x");

    let strict = format!("case_sensitive = true\n{READINGS}");
    let (gate, _upstream, _jwks) = both_ways("", &strict).await;
    assert_eq!(
        every_way(&gate, "GET", "/ADMIN/x", Some(&bob)).await,
        [200; 4]
    );
    assert_eq!(
        every_way(&gate, "POST", "/invoices/7/export/", Some(&bob)).await,
        [403; 4]
    );
}

/// A rule naming a character the app may receive escaped: Werkzeug and Go's
/// `net/http` decode `%40` before they route, so `/users/%40me` is `/users/@me` to them.
const ESCAPES: &str = r#"
[[rule]]
path = "/users/@me/**"
groups = ["admins"]

[[rule]]
path = "/**"
allow = "authenticated"
"#;

#[tokio::test]
async fn an_escaped_character_cannot_skip_the_rule_that_names_it() {
    let (gate, upstream, _jwks) = both_ways("", ESCAPES).await;
    let bob = bearer(key_a(), "bob", &[]);
    let alice = bearer(key_a(), "alice", &["admins"]);
    for path in [
        "/users/%40me/keys",
        "/users/@me/keys",
        "/users/%40me/",
        "/USERS/%40ME/keys",
    ] {
        assert_eq!(
            every_way(&gate, "GET", path, Some(&bob)).await,
            [403; 4],
            "{path}"
        );
    }
    // The app receives the one spelling the policy judged.
    let (status, _, _) = get(&gate.url("/users/%40me/keys"), &[("authorization", &alice)]).await;
    assert_eq!(status, 200);
    assert_eq!(upstream.last().uri, "/users/@me/keys");
    // And a character a URI may not hold raw reaches it escaped, however it arrived.
    let answer = raw(
        gate.addr,
        &format!(
            "GET /files/a{{b}} HTTP/1.1\r\nHost: app.test\r\n{}Connection: close\r\n\r\n",
            auth_line(Some(&alice))
        ),
    )
    .await;
    assert_eq!(answer.0, 200);
    assert_eq!(upstream.last().uri, "/files/a%7Bb%7D");
}

// 7. An ID token's aud must be one string.

#[tokio::test]
async fn an_id_token_whose_aud_is_an_array_is_refused() {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let text = config(&upstream.url(), &jwks.url(), "")
        .replace("client_ids = [", "token_use = \"id\"\nclient_ids = [");
    let gate = Gate::start(&text, POLICY).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let id_token = |aud: serde_json::Value| {
        let claims = serde_json::json!({
            "sub": "idu", "iss": ISS, "token_use": "id", "aud": aud,
            "exp": now() + 600, "iat": now() - 5, "email": "idu@example.com",
        });
        format!("Bearer {}", token(key_a(), &claims))
    };
    let ok = id_token(serde_json::json!(CLIENT));
    assert_eq!(
        get(&gate.url("/app"), &[("authorization", &ok)]).await.0,
        200
    );
    for aud in [
        serde_json::json!([CLIENT]),
        serde_json::json!([CLIENT, "other"]),
    ] {
        let (status, h, _) = get(
            &gate.url("/app"),
            &[("authorization", &id_token(aud.clone()))],
        )
        .await;
        assert_eq!(status, 401, "{aud}");
        assert!(
            h["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("claim aud has the wrong type"),
            "{h:?}"
        );
    }
}

// 8. Smaller things.

#[tokio::test]
async fn a_malformed_chunked_body_is_the_clients_fault() {
    let (gate, upstream, _jwks) = stack().await;
    let bob = bearer(key_a(), "bob", &[]);
    let (status, answer) = raw(
        gate.addr,
        &format!(
            "POST /upload HTTP/1.1\r\nHost: app.test\r\nAuthorization: {bob}\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\nzz\r\n"
        ),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("invalid_body"), "{answer}");
    // A well-formed one still streams through.
    let (status, answer) = raw(
        gate.addr,
        &format!(
            "POST /upload HTTP/1.1\r\nHost: app.test\r\nAuthorization: {bob}\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.ends_with("\r\n\r\n5"), "{answer}");
    assert_eq!(upstream.last().uri, "/upload");
}

#[tokio::test]
async fn host_cannot_be_removed_through_connection() {
    let (gate, upstream, _jwks) = stack().await;
    let (status, _) = raw(
        gate.addr,
        "GET /public/x HTTP/1.1\r\nHost: app.example\r\nConnection: Host, close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        upstream.last().header("host").as_deref(),
        Some("app.example")
    );
}

#[tokio::test]
async fn identity_headers_named_in_connection_are_still_ours() {
    let (gate, upstream, _jwks) = stack().await;
    let alice = bearer(key_a(), "alice", &["admins"]);
    let (status, _) = raw(
        gate.addr,
        &format!(
            "GET /admin/x HTTP/1.1\r\nHost: app.test\r\nAuthorization: {alice}\r\n\
             X-User-Sub: forged\r\nConnection: X-User-Sub, X-User-Groups, close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status, 200);
    let seen = upstream.last();
    assert_eq!(
        seen.identity_like("x-user-sub"),
        [("x-user-sub".to_owned(), "alice".to_owned())]
    );
    assert_eq!(seen.header("x-user-groups").as_deref(), Some("admins"));
}

// 4. Connections that never speak.

/// Whether the gate closes `stream` within `limit` (EOF or reset while reading).
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut buf))
        .await
        .is_ok()
}

#[tokio::test]
async fn silent_connections_are_closed_whatever_the_protocol() {
    let (gate, upstream, _jwks) = stack_with("header_read_timeout = \"1s\"").await;
    let mut openers: Vec<(&str, Vec<u8>)> = vec![
        ("nothing", Vec::new()),
        ("one byte", b"G".to_vec()),
        ("half an h2 preface", H2_PREFACE[..12].to_vec()),
    ];
    let mut settings_only = H2_PREFACE.to_vec();
    settings_only.extend(H2_SETTINGS);
    openers.push(("h2 preface and SETTINGS", settings_only));
    openers.push((
        "a kept-alive HTTP/1.1 connection after one request",
        b"GET /public/x HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
    ));
    let mut streams = Vec::new();
    for (what, bytes) in &openers {
        let mut s = TcpStream::connect(gate.addr).await.unwrap();
        s.write_all(bytes).await.unwrap();
        streams.push((what, s));
    }
    let started = std::time::Instant::now();
    for (what, s) in &mut streams {
        assert!(
            closed_within(s, Duration::from_secs(4)).await,
            "{what}: the connection stayed open"
        );
    }
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(800), "{waited:?}");
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn a_request_in_progress_is_not_an_idle_connection() {
    // The body trickles in for about 2.5 s, well past header_read_timeout (1 s): the
    // head is complete and the request is in flight, so the connection stays open and
    // the app receives every byte.
    let (gate, upstream, _jwks) = stack_with("header_read_timeout = \"1s\"").await;
    let bob = bearer(key_a(), "bob", &[]);
    let mut s = TcpStream::connect(gate.addr).await.unwrap();
    s.write_all(
        format!(
            "POST /upload HTTP/1.1\r\nHost: t\r\nAuthorization: {bob}\r\n\
             Content-Length: 5\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    for byte in b"hello" {
        tokio::time::sleep(Duration::from_millis(500)).await;
        s.write_all(&[*byte]).await.unwrap();
    }
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(started.elapsed() >= Duration::from_millis(2400));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with("\r\n\r\n5"),
        "the app did not get the whole body: {answer}"
    );
    assert_eq!(upstream.last().uri, "/upload");
}

#[tokio::test]
async fn at_the_connection_limit_the_admin_listener_still_answers() {
    let (gate, upstream, _jwks) =
        stack_with("max_connections = 4\nheader_read_timeout = \"2s\"").await;
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(gate.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The fifth waits in the backlog: no answer while the four are held ...
    let waiting = tokio::spawn({
        let addr = gate.addr;
        async move {
            let started = std::time::Instant::now();
            let status = raw_get(addr, "/public/x", None).await;
            (status, started.elapsed())
        }
    });
    // ... while the admin listener answers at once.
    let started = std::time::Instant::now();
    let (status, _, _) = get(&format!("http://{}/readyz", gate.admin), &[]).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(
        get(&format!("http://{}/healthz", gate.admin), &[]).await.0,
        200
    );
    // Once the silent ones are cut off, the waiting request is served.
    let (status, waited) = waiting.await.unwrap();
    assert_eq!(status, 200);
    assert!(waited >= Duration::from_millis(1000), "{waited:?}");
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn an_http2_client_that_stops_answering_pings_is_cut_off() {
    // A download stalled by HTTP/2 flow control keeps the request in flight, so only
    // the keep-alive PING can notice that this client is gone: it never ACKs.
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let text = config(
        &upstream.url(),
        &jwks.url(),
        "http2_keep_alive_interval = \"1s\"\nhttp2_keep_alive_timeout = \"1s\"",
    );
    let gate = Gate::start(&text, "[[rule]]\npath = \"/**\"\nallow = \"anyone\"\n").await;
    let mut stream = TcpStream::connect(gate.addr).await.unwrap();
    // HPACK: :method GET, :scheme http (static 2 and 6), then :path and :authority as
    // literals with indexed names (static 4 and 1), without indexing.
    let path = b"/download?bytes=10000000";
    let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
    block.extend_from_slice(path);
    block.extend_from_slice(&[0x01, 8]);
    block.extend_from_slice(b"app.test");
    let mut frames = H2_PREFACE.to_vec();
    frames.extend(H2_SETTINGS);
    let len = block.len() as u32;
    // HEADERS, END_STREAM | END_HEADERS, stream 1.
    frames.extend_from_slice(&[
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        1,
        5,
        0,
        0,
        0,
        1,
    ]);
    frames.extend(block);
    stream.write_all(&frames).await.unwrap();
    let started = std::time::Instant::now();
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 16384];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(6), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    assert!(closed, "the connection stayed open without PING ACKs");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1500), "{waited:?}");
    // The gate did ask: a PING frame (type 6) is among what it sent.
    let mut at = 0;
    let mut pinged = false;
    while at + 9 <= seen.len() {
        let len = usize::from(seen[at]) << 16
            | usize::from(seen[at + 1]) << 8
            | usize::from(seen[at + 2]);
        pinged |= seen[at + 3] == 6 && seen[at + 4] & 1 == 0;
        at += 9 + len;
    }
    assert!(pinged, "no PING was sent");
    assert_eq!(upstream.last().uri, "/download?bytes=10000000");
}

/// An app over HTTP/1.1 and h2c alike that answers with the request trailers it got,
/// as `name=value` lines.
async fn trailer_reading_app() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = hyper::service::service_fn(
                |req: http::Request<hyper::body::Incoming>| async move {
                    let collected = req.into_body().collect().await?;
                    let seen: String = collected
                        .trailers()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| format!("{k}={}\n", v.to_str().unwrap_or("?")))
                        .collect();
                    Ok::<_, hyper::Error>(http::Response::new(full(seen)))
                },
            );
            tokio::spawn(
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .into_owned(),
            );
        }
    });
    addr
}

#[tokio::test]
async fn identity_headers_in_request_trailers_never_reach_the_app() {
    let app = trailer_reading_app().await;
    for protocol in ["http1", "h2c", "auto"] {
        let jwks = JwksServer::start(&[key_a()]).await;
        let text = config(&format!("http://{app}"), &jwks.url(), "").replace(
            "[upstream]",
            &format!("[upstream]\nprotocol = \"{protocol}\""),
        );
        let gate = Gate::start(&text, POLICY).await;
        gate.wait_ready(Duration::from_secs(10)).await;

        // HTTP/1.1: chunked, with the forged identity in the trailer section.
        let (status, answer) = raw(
            gate.addr,
            "POST /public/upload HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\nTrailer: X-User-Sub, X-User-Groups\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\nX-User-Sub: admin-user\r\nX-User-Groups: admins\r\n\r\n",
        )
        .await;
        assert_eq!(status, 200, "{protocol}: {answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        assert!(!body.contains("x-user"), "{protocol}: the app got {answer}");

        // HTTP/2: a trailing HEADERS frame.
        let stream = TcpStream::connect(gate.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-user-sub", "admin-user".parse().unwrap());
        trailers.insert("x-user-groups", "admins".parse().unwrap());
        let frames = futures_util::stream::iter([
            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(bytes::Bytes::from(
                "hello",
            ))),
            Ok(hyper::body::Frame::trailers(trailers)),
        ]);
        let request = http::Request::post(format!("http://{}/public/upload", gate.addr))
            .body(http_body_util::StreamBody::new(frames))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200, "{protocol}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            String::from_utf8_lossy(&body),
            "",
            "{protocol}: the app got request trailers"
        );
    }
}
