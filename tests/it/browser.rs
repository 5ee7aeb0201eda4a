//! What browser apps need: CORS preflights that pass without a token when asked to,
//! carrying nothing else and still canonicalized, or that the gate answers itself,
//! through the proxy and the decision endpoints, in front of a real Express app too.

use std::time::Duration;

use crate::common::*;

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

    // The app gets only what a preflight carries.
    assert!(seen.header("cookie").is_none() && seen.header("authorization").is_none());

    // A preflight that carries anything a handler could act on (a cookie, a body, a
    // header of the app's own, a forged identity) is judged like any request, and
    // never reaches the app without a token.
    let before = upstream.count();
    for (extra, answers) in [
        (("cookie", "session=admin"), [401; 3]),
        (("x-api-key", "k"), [401; 3]),
        (("x-user-sub", "admin"), [401; 3]),
        // `/auth` refuses an odd spelling its peer could not remove.
        (("X_User_Groups", "admins"), [401, 400, 401]),
    ] {
        let mut with = PREFLIGHT.to_vec();
        with.push(extra);
        assert_eq!(
            options_three_ways(&gate, "/admin/x", &with).await,
            answers,
            "{extra:?}"
        );
    }
    let (status, _, _) = send("OPTIONS", &gate.url("/admin/x"), &PREFLIGHT, full("{}")).await;
    assert_eq!(status, 401, "a preflight has no body");
    assert_eq!(upstream.count(), before);

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

const ANSWER: &str = r#"
cors_preflight = "answer"
[cors]
allowed_origins = ["https://app.example.com"]
allowed_methods = ["GET", "POST", "DELETE"]
allowed_headers = ["authorization", "content-type"]
expose_headers = ["x-request-id"]
allow_credentials = true
max_age = "10m"
"#;

#[tokio::test]
async fn with_answer_the_gate_answers_preflights_and_no_preflight_reaches_the_app() {
    let (gate, upstream, _jwks) = browser_gate(ANSWER).await;
    let proxied = send("OPTIONS", &gate.url("/admin/x"), &PREFLIGHT, full("")).await;
    let envoy = send(
        "OPTIONS",
        &format!("http://{}/envoy/admin/x", gate.authz),
        &PREFLIGHT,
        full(""),
    )
    .await;
    for (status, headers, body) in [&proxied, &envoy] {
        assert_eq!((*status, body.as_str()), (204, ""));
        let h = |name: &str| headers[name].to_str().unwrap().to_owned();
        assert_eq!(h("access-control-allow-origin"), "https://app.example.com");
        assert_eq!(h("access-control-allow-methods"), "GET, POST, DELETE");
        assert_eq!(
            h("access-control-allow-headers"),
            "authorization, content-type"
        );
        assert_eq!(h("access-control-allow-credentials"), "true");
        assert_eq!(h("access-control-max-age"), "600");
        assert!(h("vary").contains("origin"), "{headers:?}");
    }
    // Whatever else it carries, a preflight is answered, never forwarded.
    let mut loaded = PREFLIGHT.to_vec();
    loaded.push(("cookie", "session=admin"));
    let (status, _, _) = send("OPTIONS", &gate.url("/admin/x"), &loaded, full("{}")).await;
    assert_eq!(status, 204);
    // Refused: another origin, a method or a header not configured; no CORS headers
    // for an origin that is not allowed.
    let evil = [("origin", "https://evil.example"), PREFLIGHT[1]];
    let put = [PREFLIGHT[0], ("access-control-request-method", "PUT")];
    let custom = [
        PREFLIGHT[0],
        PREFLIGHT[1],
        ("access-control-request-headers", "x-api-key"),
    ];
    for (headers, expect_acao) in [(&evil[..], false), (&put[..], true), (&custom[..], true)] {
        for url in [
            gate.url("/admin/x"),
            format!("http://{}/envoy/admin/x", gate.authz),
        ] {
            let (status, answer, body) = send("OPTIONS", &url, headers, full("")).await;
            assert_eq!(status, 403, "{url} {headers:?}");
            assert!(body.contains("cors_not_allowed"), "{body}");
            assert!(!answer.contains_key("access-control-allow-methods"));
            assert_eq!(
                answer.contains_key("access-control-allow-origin"),
                expect_acao
            );
        }
    }
    // `/auth` cannot answer (its peers forward on any 2xx): the policy decides.
    let mut forward = vec![
        ("x-original-method", "OPTIONS"),
        ("x-original-uri", "/admin/x"),
    ];
    forward.extend_from_slice(&PREFLIGHT);
    let (status, _, _) = get(&format!("http://{}/auth", gate.authz), &forward).await;
    assert_eq!(status, 401);
    assert_eq!(upstream.count(), 0, "no preflight reached the app");

    // The real request: the app's answer, and the gate's own refusals, carry the
    // CORS headers for an allowed origin, so that the page can read them.
    let admin = bearer(key_a(), "alice", &["admins"]);
    let origin = PREFLIGHT[0];
    let (status, headers, _) =
        get(&gate.url("/admin/x"), &[origin, ("authorization", &admin)]).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert_eq!(headers["access-control-expose-headers"], "x-request-id");
    assert_eq!(upstream.count(), 1);
    let (status, headers, _) = get(&gate.url("/admin/x"), &[origin]).await;
    assert_eq!(status, 401);
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    let (_, headers, _) = get(
        &gate.url("/public/x"),
        &[("origin", "https://evil.example")],
    )
    .await;
    assert!(!headers.contains_key("access-control-allow-origin"));
    // Through Envoy, the allow carries them for the client's response.
    let (status, headers, _) = get(
        &format!("http://{}/envoy/admin/x", gate.authz),
        &[origin, ("authorization", &admin)],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example.com"
    );
}

/// A real Express app (`tests/express/app.js`), killed when the test ends.
struct Express {
    child: std::process::Child,
    port: u16,
}

impl Drop for Express {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Express {
    /// Starts the app, or `None` (skipped with a message, except in CI) when Node.js
    /// or its packages are not installed.
    fn start() -> Option<Express> {
        use std::io::BufRead;
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/express");
        let install = "npm ci --prefix tests/express";
        if !std::path::Path::new(dir)
            .join("node_modules/express")
            .is_dir()
        {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("Express is not installed, and CI must run the Express test: {install}");
            }
            eprintln!("SKIPPED: Express is not installed; `{install}` to run the Express test");
            return None;
        }
        let mut child = std::process::Command::new("node")
            .args(["app.js", "0"])
            .current_dir(dir)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("node runs (Debian's nodejs)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the Express app printed {line:?}"));
        Some(Express { child, port })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The calls its protected `app.all('/admin/*')` handler ran for.
    async fn calls(&self) -> Vec<serde_json::Value> {
        let (status, _, body) = get(&format!("{}/calls", self.url()), &[]).await;
        assert_eq!(status, 200);
        serde_json::from_str(&body).unwrap()
    }
}

async fn gate_before(app: &Express, top: &str) -> (Gate, JwksServer) {
    let jwks = JwksServer::start(&[key_a()]).await;
    let gate = Gate::start(&config(&app.url(), &jwks.url(), top), POLICY).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    (gate, jwks)
}

/// An anonymous "preflight" that is really an attack on a handler written with
/// `app.all`, which Express runs for OPTIONS: the session cookie, a body, the app's
/// own API key.
const LOADED_PREFLIGHT: [(&str, &str); 5] = [
    ("origin", "https://app.example.com"),
    ("access-control-request-method", "DELETE"),
    ("cookie", "session=admin"),
    ("x-api-key", "k-123"),
    ("content-type", "application/json"),
];

#[tokio::test]
async fn an_express_app_all_handler_never_runs_for_an_anonymous_request_it_could_act_on() {
    let Some(app) = Express::start() else { return };

    // "pass": only a bare preflight reaches the handler, and it carries nothing.
    let (gate, _jwks) = gate_before(&app, "cors_preflight = \"pass\"").await;
    let (status, _, _) = send(
        "OPTIONS",
        &gate.url("/admin/users"),
        &LOADED_PREFLIGHT,
        full(r#"{"user":"bob"}"#),
    )
    .await;
    assert_eq!(status, 401);
    assert!(app.calls().await.is_empty(), "the handler ran");
    let (status, _, body) = send(
        "OPTIONS",
        &gate.url("/admin/users"),
        &LOADED_PREFLIGHT[..2],
        full(""),
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"deleted":"/admin/users"}"#)
    );
    let calls = app.calls().await;
    assert_eq!(calls.len(), 1);
    let seen = &calls[0];
    assert_eq!(seen["method"], "OPTIONS");
    assert_eq!(seen["body_length"], 0);
    let names: Vec<&str> = seen["headers"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for name in &names {
        assert!(
            [
                "host",
                "origin",
                "access-control-request-method",
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-forwarded-host",
                "x-request-id",
                "content-length",
            ]
            .contains(name),
            "the app got {name}: {names:?}"
        );
    }
    drop(gate);

    // "answer": the gate answers; the handler never runs for a preflight.
    let (gate, _jwks) = gate_before(&app, ANSWER).await;
    for (headers, body, status) in [
        (&LOADED_PREFLIGHT[..], r#"{"user":"bob"}"#, 204),
        (&LOADED_PREFLIGHT[..2], "", 204),
        (
            &[("origin", "https://evil.example"), LOADED_PREFLIGHT[1]][..],
            "",
            403,
        ),
    ] {
        let answer = send("OPTIONS", &gate.url("/admin/users"), headers, full(body)).await;
        assert_eq!(answer.0, status, "{headers:?}");
    }
    assert_eq!(
        app.calls().await.len(),
        1,
        "the handler ran for a preflight"
    );
}
