//! Host rules: one gate in front of several names. The host is read as the app will
//! read it (Host, `:authority`, an absolute-form target), normalized, and judged alike
//! by the proxy, `/auth` (X-Forwarded-Host) and `/envoy` (Host); a request that names
//! no host cannot slip past a host rule.

use std::time::Duration;

use crate::common::*;

const HOSTS: &str = r#"
    [[rule]]
    name = "admin-site"
    host = "admin.example.com"
    path = "/**"
    groups = ["admins"]

    [[rule]]
    name = "internal"
    host = "*.internal.example.com"
    path = "/**"
    allow = "nobody"

    [[rule]]
    name = "rest"
    path = "/**"
    allow = "anyone"
"#;

/// A gate with `policy`, proxying to a recording app and answering `/auth` and `/envoy`.
async fn host_gate(policy: &str) -> (Gate, Upstream, JwksServer) {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let text = config(&upstream.url(), &jwks.url(), "").replace(
        "[upstream]",
        "[authz]\nlisten = \"127.0.0.1:9191\"\n[upstream]",
    );
    let gate = Gate::start(&text, policy).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    (gate, upstream, jwks)
}

/// The status of `GET /x` for `host` (None: no host at all) through the proxy,
/// `/auth` and `/envoy`, with `auth` when given.
async fn three_ways(gate: &Gate, host: Option<&str>, auth: Option<&str>) -> [u16; 3] {
    let auth_line = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let host_line = host.map_or(String::new(), |h| format!("Host: {h}\r\n"));
    // HTTP/1.0 may leave Host out; HTTP/1.1 may not.
    let version = if host.is_some() { "1.1" } else { "1.0" };
    let request = |target: &str, extra: &str| {
        format!(
            "GET {target} HTTP/{version}\r\n{host_line}{auth_line}{extra}Connection: close\r\n\r\n"
        )
    };
    let proxied = raw(gate.addr, &request("/x", "")).await.0;
    let forwarded = host.map_or(String::new(), |h| format!("X-Forwarded-Host: {h}\r\n"));
    let auth_request = format!(
        "GET /auth HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Original-Method: GET\r\nX-Original-URI: /x\r\n{forwarded}{auth_line}Connection: close\r\n\r\n"
    );
    let forward = raw(gate.authz, &auth_request).await.0;
    let envoy = raw(gate.authz, &request("/envoy/x", "")).await.0;
    [proxied, forward, envoy]
}

#[tokio::test]
async fn rules_for_a_host_apply_to_that_host_in_every_spelling_and_every_way_in() {
    let (gate, upstream, _jwks) = host_gate(HOSTS).await;
    let admin = bearer(key_a(), "alice", &["admins"]);
    let bob = bearer(key_a(), "bob", &[]);
    let cases: &[(Option<&str>, Option<&str>, u16)] = &[
        (Some("admin.example.com"), None, 401),
        (Some("admin.example.com"), Some(&bob), 403),
        (Some("admin.example.com"), Some(&admin), 200),
        // One host, however it is spelled.
        (Some("ADMIN.Example.com"), None, 401),
        (Some("admin.example.com."), None, 401),
        (Some("admin.example.com:8080"), None, 401),
        // Names below the wildcard are denied to everyone; the name itself is not below.
        (Some("db.internal.example.com"), Some(&admin), 403),
        (Some("a.b.internal.example.com"), None, 403),
        (Some("internal.example.com"), None, 200),
        (Some("www.example.com"), None, 200),
        // A host that is no host name, or none at all: 400, never the catch-all rule.
        (Some("admin.example.com:http"), None, 400),
        (Some("bad host"), None, 400),
        (None, None, 400),
    ];
    for (host, auth, want) in cases {
        assert_eq!(
            three_ways(&gate, *host, *auth).await,
            [*want; 3],
            "{host:?} {auth:?}"
        );
    }
    // An absolute-form target names the host, whatever Host says (RFC 9112 §3.2.2),
    // and the app receives the host the policy judged.
    let smuggled = "GET http://admin.example.com/x HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n";
    assert_eq!(raw(gate.addr, smuggled).await.0, 401);
    let (status, _) = raw(
        gate.addr,
        &format!(
            "GET http://admin.example.com/x HTTP/1.1\r\nHost: www.example.com\r\nAuthorization: {admin}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        upstream.last().header("host").as_deref(),
        Some("admin.example.com")
    );
}

#[tokio::test]
async fn a_host_with_userinfo_is_refused_even_without_host_rules() {
    let (gate, upstream, _jwks) = host_gate("[[rule]]\npath = \"/**\"\nallow = \"anyone\"\n").await;
    assert_eq!(
        three_ways(&gate, Some("www.example.com"), None).await,
        [200; 3]
    );
    let before = upstream.count();
    // Forwarded as it came, `user@host` would reach the app as its Host header.
    assert_eq!(
        three_ways(&gate, Some("admin.example.com@evil.example"), None).await,
        [400; 3]
    );
    let absolute = "GET http://admin.example.com@evil.example/x HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n";
    let (status, body) = raw(gate.addr, absolute).await;
    assert_eq!(status, 400);
    assert!(body.contains("invalid_host"), "{body}");
    assert_eq!(
        upstream.count(),
        before,
        "the app saw a request with userinfo"
    );
}

#[tokio::test]
async fn two_host_headers_are_refused() {
    let (gate, upstream, _jwks) = host_gate(HOSTS).await;
    // The policy would judge one host and the app might route by the other.
    for hosts in [
        "Host: www.example.com\r\nHost: admin.example.com\r\n",
        "Host: admin.example.com\r\nHost: www.example.com\r\n",
        "Host: www.example.com\r\nHost: www.example.com\r\n",
    ] {
        let request = format!("GET /x HTTP/1.1\r\n{hosts}Connection: close\r\n\r\n");
        let (status, answer) = raw(gate.addr, &request).await;
        assert_eq!(status, 400, "{hosts}");
        assert!(answer.contains("invalid_host"), "{answer}");
        let envoy = format!("GET /envoy/x HTTP/1.1\r\n{hosts}Connection: close\r\n\r\n");
        assert_eq!(raw(gate.authz, &envoy).await.0, 400, "{hosts}");
        let forwarded = hosts.replace("Host:", "X-Forwarded-Host:");
        let auth = format!("GET /auth HTTP/1.1\r\nHost: gate\r\nX-Original-Method: GET\r\nX-Original-URI: /x\r\n{forwarded}Connection: close\r\n\r\n");
        assert_eq!(raw(gate.authz, &auth).await.0, 400, "{forwarded}");
    }
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn a_trusted_x_forwarded_host_must_name_the_judged_host() {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let trusted = config(
        &upstream.url(),
        &jwks.url(),
        "trusted_proxies = [\"127.0.0.1/32\"]",
    );
    let gate = Gate::start(&trusted, HOSTS).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let send = |host: &str, forwarded: &[&str]| {
        let lines: String = forwarded
            .iter()
            .map(|f| format!("X-Forwarded-Host: {f}\r\n"))
            .collect();
        format!("GET /x HTTP/1.1\r\nHost: {host}\r\n{lines}Connection: close\r\n\r\n")
    };
    // The app keeps a trusted proxy's X-Forwarded-Host, and may route by it: it must
    // name the host the policy judged.
    for (host, forwarded, want) in [
        ("www.example.com", &["admin.example.com"][..], 400),
        (
            "www.example.com",
            &["www.example.com, admin.example.com"][..],
            400,
        ),
        (
            "www.example.com",
            &["www.example.com", "admin.example.com"][..],
            400,
        ),
        ("www.example.com", &["bad host"][..], 400),
        ("admin.example.com", &["ADMIN.example.com:443"][..], 401),
        ("www.example.com", &["www.example.com"][..], 200),
        ("www.example.com", &[][..], 200),
    ] {
        let (status, answer) = raw(gate.addr, &send(host, forwarded)).await;
        assert_eq!(status, want, "{host} {forwarded:?}: {answer}");
    }
    assert_eq!(
        upstream.last().header("x-forwarded-host").as_deref(),
        Some("www.example.com")
    );
    drop(gate);

    // From an untrusted client the header is replaced by the judged host, so it
    // cannot disagree.
    let gate = Gate::start(&config(&upstream.url(), &jwks.url(), ""), HOSTS).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let (status, _) = raw(gate.addr, &send("www.example.com", &["admin.example.com"])).await;
    assert_eq!(status, 200);
    assert_eq!(
        upstream.last().header("x-forwarded-host").as_deref(),
        Some("www.example.com")
    );
}

#[tokio::test]
async fn every_host_in_a_forwarded_header_must_name_the_judged_host() {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let trusted = config(
        &upstream.url(),
        &jwks.url(),
        "trusted_proxies = [\"127.0.0.1/32\"]",
    )
    .replace(
        "[upstream]",
        "[authz]\nlisten = \"127.0.0.1:9191\"\n[upstream]",
    );
    let gate = Gate::start(&trusted, HOSTS).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let lines = |forwarded: &[&str]| -> String {
        forwarded
            .iter()
            .map(|f| format!("Forwarded: {f}\r\n"))
            .collect()
    };
    // Spring's ForwardedHeaderFilter, Quarkus and Micronaut route by `host=`; a
    // lax reader also finds one inside a quoted value or a repeated parameter.
    let refused: &[&[&str]] = &[
        &["host=admin.example.com"],
        &["for=192.0.2.1;host=admin.example.com;proto=https"],
        &["HOST=\"admin.example.com\""],
        &["host=www.example.com, host=admin.example.com"],
        &[
            "host=www.example.com",
            "for=192.0.2.1;host=admin.example.com",
        ],
        &["for=\"x;host=admin.example.com\""],
        &["host=www.example.com;host=admin.example.com"],
        &["host=\"www.example.com"],
        &["host=bad host"],
        &["host"],
    ];
    let allowed: &[&[&str]] = &[
        &["host=www.example.com"],
        &["for=192.0.2.60;proto=https;by=203.0.113.43"],
        &["for=\"[2001:db8:cafe::17]:4711\";host=\"WWW.Example.com:443\""],
        &["for=192.0.2.43, for=198.51.100.17;host=www.example.com"],
    ];
    for forwarded in refused {
        let request = format!(
            "GET /x HTTP/1.1\r\nHost: www.example.com\r\n{}Connection: close\r\n\r\n",
            lines(forwarded)
        );
        let (status, answer) = raw(gate.addr, &request).await;
        assert_eq!(status, 400, "{forwarded:?}: {answer}");
        assert!(answer.contains("invalid_host"), "{answer}");
        // Through the decision endpoints: the peer passes the client's header on.
        let auth = format!("GET /auth HTTP/1.1\r\nHost: gate\r\nX-Original-Method: GET\r\nX-Original-URI: /x\r\nX-Forwarded-Host: www.example.com\r\n{}Connection: close\r\n\r\n", lines(forwarded));
        assert_eq!(raw(gate.authz, &auth).await.0, 400, "/auth {forwarded:?}");
        let envoy = format!(
            "GET /envoy/x HTTP/1.1\r\nHost: www.example.com\r\n{}Connection: close\r\n\r\n",
            lines(forwarded)
        );
        assert_eq!(raw(gate.authz, &envoy).await.0, 400, "/envoy {forwarded:?}");
    }
    assert_eq!(upstream.count(), 0);
    for forwarded in allowed {
        let request = format!(
            "GET /x HTTP/1.1\r\nHost: www.example.com\r\n{}Connection: close\r\n\r\n",
            lines(forwarded)
        );
        let (status, answer) = raw(gate.addr, &request).await;
        assert_eq!(status, 200, "{forwarded:?}: {answer}");
        // A trusted proxy's header reaches the app as it sent it: for= and by= too.
        let seen: Vec<String> = upstream
            .last()
            .headers
            .get_all("forwarded")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(seen, *forwarded);
    }
    drop(gate);

    // From an untrusted client the header never reaches the app, whatever it says.
    let gate = Gate::start(&config(&upstream.url(), &jwks.url(), ""), HOSTS).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let request = "GET /x HTTP/1.1\r\nHost: www.example.com\r\nForwarded: host=admin.example.com\r\nConnection: close\r\n\r\n";
    assert_eq!(raw(gate.addr, request).await.0, 200);
    assert_eq!(upstream.last().header("forwarded"), None);
}
