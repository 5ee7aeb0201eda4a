//! Real nginx and real Caddy in front of a recording app, asking a real cognito-gate,
//! started from the example files in `config/` with only the ports replaced.
//!
//! With CI=true a missing binary fails these tests; elsewhere they are skipped with a
//! message naming the Debian package to install.
// The tests sign their tokens with the development issuer (feature `dev`).
#![cfg(feature = "dev")]

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// Finds `name` on PATH or in the sbin directories Debian installs servers into.
fn find_binary(name: &str, package: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"])
        .map(|dir| PathBuf::from(dir).join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{name} is not installed, and CI must run the real-{name} tests: apt-get install -y {package}");
        }
        eprintln!("SKIPPED: {name} is not installed; `apt-get install -y {package}` to run the real-{name} tests");
    }
    found
}

/// A peer process, killed when the test ends.
struct Peer {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "cognito-gate-{tag}-{}-{}",
            std::process::id(),
            now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The shipped example with its documented ports replaced: `listen` for the peer,
/// 3000 for the app, 9191 for the gate, and any `extra` pairs.
fn templated(
    file: &str,
    listen: (&str, String),
    app: SocketAddr,
    gate: SocketAddr,
    extra: &[(&str, String)],
) -> String {
    let text =
        std::fs::read_to_string(format!("{}/config/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    for port in [listen.0, "127.0.0.1:3000", "127.0.0.1:9191"] {
        assert!(
            text.contains(port),
            "config/{file} no longer mentions {port}"
        );
    }
    let mut text = text
        .replace(listen.0, &listen.1)
        .replace("127.0.0.1:3000", &app.to_string())
        .replace("127.0.0.1:9191", &gate.to_string());
    for (from, to) in extra {
        text = text.replace(from, to);
    }
    text
}

async fn wait_for_port(addr: SocketAddr, child: &mut Child, name: &str) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{name} exited with {status} before listening on {addr}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{name} never listened on {addr}");
}

async fn start_nginx(app: SocketAddr, gate: SocketAddr) -> Option<Peer> {
    let nginx = find_binary("nginx", "nginx")?;
    let dir = TempDir::new("nginx");
    let addr = reserve_port().await.addr;
    let conf = templated(
        "nginx.conf",
        ("127.0.0.1:8000", addr.to_string()),
        app,
        gate,
        &[],
    );
    std::fs::write(dir.0.join("nginx.conf"), conf).unwrap();
    let mut child = Command::new(nginx)
        .arg("-p")
        .arg(&dir.0)
        .arg("-c")
        .arg(dir.0.join("nginx.conf"))
        .arg("-g")
        .arg(format!(
            "daemon off; pid {};",
            dir.0.join("nginx.pid").display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(addr, &mut child, "nginx").await;
    Some(Peer {
        child,
        addr,
        _dir: dir,
    })
}

async fn start_caddy(app: SocketAddr, gate: SocketAddr) -> Option<Peer> {
    let caddy = find_binary("caddy", "caddy")?;
    let dir = TempDir::new("caddy");
    let addr = reserve_port().await.addr;
    let admin = reserve_port().await.addr;
    let conf = templated(
        "Caddyfile",
        ("http://:8001", format!("http://:{}", addr.port())),
        app,
        gate,
        &[("127.0.0.1:2019", admin.to_string())],
    );
    std::fs::write(dir.0.join("Caddyfile"), conf).unwrap();
    let mut child = Command::new(caddy)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(dir.0.join("Caddyfile"))
        .env("HOME", &dir.0)
        .env("XDG_CONFIG_HOME", dir.0.join("config"))
        .env("XDG_DATA_HOME", dir.0.join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(addr, &mut child, "caddy").await;
    Some(Peer {
        child,
        addr,
        _dir: dir,
    })
}

/// The app, a decision-only gate with the shipped policy, and its JWKS.
async fn backends() -> (Upstream, Gate, JwksServer) {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let gate = Gate::start(&authz_config(&jwks.url(), ""), &shipped_policy()).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    (upstream, gate, jwks)
}

fn header(h: &http::HeaderMap, name: &str) -> String {
    h.get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// How a peer differs where the contract lets it.
struct Quirks {
    /// nginx passes `WWW-Authenticate` to the client on 401 only.
    challenge_on_403: bool,
    /// nginx's `proxy_set_header` with an empty value removes the header.
    drops_empty_headers: bool,
    /// Caddy (Go) escapes a raw `#` in the request target as `%23`.
    escapes_fragments: bool,
}

/// What every peer must guarantee, checked through `peer`.
async fn exercise(name: &str, peer: &Peer, upstream: &Upstream, quirks: Quirks) {
    let url = |path: &str| format!("http://{}{path}", peer.addr);
    let alice = bearer(key_a(), "alice", &["admins", "Team Leads"]);
    let bob = bearer(key_a(), "bob", &[]);

    // Allowed: the app sees exactly the verified identity.
    let (status, _, body) = get(&url("/admin/reports?q=1"), &[("authorization", &alice)]).await;
    assert_eq!((status, body.as_str()), (200, "ok"), "{name}");
    let seen = upstream.last();
    assert_eq!(seen.uri, "/admin/reports?q=1", "{name}");
    assert_eq!(
        seen.identity_like("x-user-sub"),
        [("x-user-sub".to_owned(), "alice".to_owned())],
        "{name}"
    );
    assert_eq!(
        seen.identity_like("x-user-groups"),
        [("x-user-groups".to_owned(), "admins,Team%20Leads".to_owned())],
        "{name}"
    );
    let (status, _, _) = get(&url("/app/home"), &[("authorization", &bob)]).await;
    assert_eq!(status, 200, "{name}");
    let groups = upstream.last().identity_like("x-user-groups");
    if quirks.drops_empty_headers {
        assert!(groups.is_empty(), "{name}: {groups:?}");
    } else {
        assert_eq!(
            groups,
            [("x-user-groups".to_owned(), String::new())],
            "{name}"
        );
    }

    // The original method is what the policy judges.
    let reader = bearer(key_a(), "reader", &["finance"]);
    let empty = || http_body_util::BodyExt::boxed(http_body_util::Empty::new());
    assert_eq!(
        send(
            "POST",
            &url("/reports/q1"),
            &[("authorization", &reader)],
            empty()
        )
        .await
        .0,
        403,
        "{name}"
    );
    assert_eq!(
        send(
            "GET",
            &url("/reports/q1"),
            &[("authorization", &reader)],
            empty()
        )
        .await
        .0,
        200,
        "{name}"
    );

    // 401 and 403 reach the client, with the challenge.
    let before = upstream.count();
    let (status, h, _) = get(&url("/admin/reports"), &[]).await;
    assert_eq!(status, 401, "{name}");
    assert_eq!(
        header(&h, "www-authenticate"),
        r#"Bearer realm="cognito-gate""#,
        "{name}"
    );
    let (status, h, _) = get(
        &url("/admin/reports"),
        &[("authorization", "Bearer not.a.token")],
    )
    .await;
    assert_eq!(status, 401, "{name}");
    assert!(
        header(&h, "www-authenticate").contains(r#"error="invalid_token""#),
        "{name}: {h:?}"
    );
    let (status, h, _) = get(&url("/admin/reports"), &[("authorization", &bob)]).await;
    assert_eq!(status, 403, "{name}");
    if quirks.challenge_on_403 {
        assert_eq!(
            header(&h, "www-authenticate"),
            r#"Bearer realm="cognito-gate", error="insufficient_scope""#,
            "{name}"
        );
    }
    assert_eq!(
        upstream.count(),
        before,
        "{name}: a denied request reached the app"
    );

    // Forged identity headers, in any spelling, never reach the app.
    let forged: &[(&str, &str)] = &[
        ("X-User-Sub", "forged"),
        ("x_user_sub", "forged"),
        ("X.User.Groups", "forged"),
        ("X-USER-GROUPS", "forged"),
        ("x_user_groups", "forged"),
        ("X.User.Sub", "forged"),
    ];
    let mut protected = forged.to_vec();
    protected.push(("authorization", &alice));
    assert_eq!(get(&url("/admin/x"), &protected).await.0, 200, "{name}");
    let seen = upstream.last();
    assert_eq!(
        seen.identity_like("x-user-sub"),
        [("x-user-sub".to_owned(), "alice".to_owned())],
        "{name}"
    );
    assert_eq!(
        seen.identity_like("x-user-groups"),
        [("x-user-groups".to_owned(), "admins,Team%20Leads".to_owned())],
        "{name}"
    );
    for public in ["/public/page", "/public/"] {
        assert_eq!(get(&url(public), forged).await.0, 200, "{name} {public}");
        let seen = upstream.last();
        for identity in ["x-user-sub", "x-user-groups"] {
            let values = seen.identity_like(identity);
            assert!(
                values.iter().all(|(_, v)| v.is_empty()),
                "{name} {public}: {values:?} reached the app"
            );
        }
    }

    // Nor do headers with which frameworks let a client override the method or path.
    let overrides: &[(&str, &str)] = &[
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-HTTP-Method", "DELETE"),
        ("X-Method-Override", "DELETE"),
        ("X-Original-URL", "/admin/x"),
        ("X-Rewrite-URL", "/admin/x"),
        ("X-Forwarded-Prefix", "/admin"),
        ("X_HTTP_Method_Override", "DELETE"),
    ];
    assert_eq!(get(&url("/public/page"), overrides).await.0, 200, "{name}");
    let seen = upstream.last();
    for header in cognito_gate::internals::ROUTING_OVERRIDES {
        assert_eq!(
            seen.identity_like(header),
            [],
            "{name}: {header} reached the app"
        );
    }

    // Path tricks sent through the peer never get around a rule.
    let before = upstream.count();
    for path in [
        "/public/../admin/x",
        "/public/%2e%2e/admin/x",
        "//admin/x",
        "/%61dmin/x",
        "/public/..%2Fadmin/x",
    ] {
        let status = raw_get(peer.addr, path, Some(&bob)).await;
        assert!(
            !(200..300).contains(&status),
            "{name}: {path} was allowed ({status})"
        );
    }
    assert_eq!(
        upstream.count(),
        before,
        "{name}: a path trick reached the app"
    );

    // Methods that are not upper case, and methods that cannot be forwarded.
    let before = upstream.count();
    for method in ["delete", "Delete", "DeLeTe", "post", "CONNECT", "TRACE"] {
        let (status, answer) = raw(
            peer.addr,
            &format!(
                "{method} /reports/1 HTTP/1.1\r\nHost: app.test\r\nAuthorization: {reader}\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert!(
            !(200..300).contains(&status),
            "{name}: {method} was allowed: {answer}"
        );
    }
    assert_eq!(
        upstream.count(),
        before,
        "{name}: a bad method reached the app"
    );

    // A `#` in the request target. nginx passes it raw in $request_uri, and the gate
    // refuses it; Caddy (Go) escapes it to %23 for the gate and the app alike, so the
    // app receives exactly the segment that was judged, never a delimiter.
    // (With Caddy, /admin%23x is the app rule's, and POST /reports/7%23 still needs
    // finance and editors.)
    let fragments = [
        ("GET", "/admin#x", 200),
        ("POST", "/reports/7#", 403),
        ("GET", "/admin#/x", 200),
    ];
    for (method, path, escaped_status) in fragments {
        let before = upstream.count();
        let (status, answer) = raw(
            peer.addr,
            &format!(
                "{method} {path} HTTP/1.1\r\nHost: app.test\r\nAuthorization: {reader}\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        if quirks.escapes_fragments && escaped_status == 200 {
            assert_eq!(status, 200, "{name}: {method} {path}: {answer}");
            assert_eq!(upstream.last().uri, path.replace('#', "%23"), "{name}");
        } else if quirks.escapes_fragments {
            assert_eq!(status, escaped_status, "{name}: {method} {path}: {answer}");
            assert_eq!(upstream.count(), before, "{name}: {path} reached the app");
        } else {
            assert!(
                !(200..300).contains(&status),
                "{name}: {method} {path} was allowed: {answer}"
            );
            assert_eq!(
                upstream.count(),
                before,
                "{name}: a fragment reached the app"
            );
        }
    }
    let before = upstream.count();

    // Case-insensitive routers would serve these as the admin pages.
    for path in ["/ADMIN/x", "/Admin", "/aDmIn/reports/", "/%41dmin/x"] {
        assert_eq!(
            raw_get(peer.addr, path, Some(&bob)).await,
            403,
            "{name}: {path}"
        );
    }
    assert_eq!(upstream.count(), before, "{name}: /ADMIN reached the app");

    // An h2c upgrade offer is never tunnelled: the streams after it would be unjudged.
    for upgrade in ["h2c", "H2C"] {
        let mut stream = tokio::net::TcpStream::connect(peer.addr).await.unwrap();
        let request = format!(
            "GET /public/x HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade, HTTP2-Settings\r\n\
             Upgrade: {upgrade}\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        );
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream.write_all(request.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await;
        let mut answer = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut answer))
            .await
            .unwrap()
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
        assert!(!answer.contains(" 101 "), "{name} {upgrade}: {answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for seen in upstream.seen() {
        assert_eq!(
            seen.header("upgrade"),
            None,
            "{name}: an upgrade reached the app"
        );
    }
    assert!(
        upstream.tunnelled().is_empty(),
        "{name}: bytes were tunnelled"
    );

    // A client naming the identity headers in Connection cannot make them vanish.
    let (status, _) = raw(
        peer.addr,
        &format!(
            "GET /admin/x HTTP/1.1\r\nHost: app.test\r\nAuthorization: {alice}\r\n\
             Connection: X-User-Sub, X-User-Groups, close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status, 200, "{name}");
    let seen = upstream.last();
    assert_eq!(
        seen.identity_like("x-user-sub"),
        [("x-user-sub".to_owned(), "alice".to_owned())],
        "{name}: Connection removed the identity"
    );
    assert_eq!(
        seen.header("x-user-groups").as_deref(),
        Some("admins,Team%20Leads"),
        "{name}"
    );
}

#[tokio::test]
async fn nginx_auth_request_with_the_shipped_config() {
    let (upstream, gate, _jwks) = backends().await;
    let Some(nginx) = start_nginx(upstream.addr, gate.authz).await else {
        return;
    };
    let quirks = Quirks {
        challenge_on_403: false,
        drops_empty_headers: true,
        escapes_fragments: false,
    };
    exercise("nginx", &nginx, &upstream, quirks).await;
    // nginx drops the empty header rather than sending it: the app sees none at all.
    get(
        &format!("http://{}/public/x", nginx.addr),
        &[("X-User-Sub", "forged")],
    )
    .await;
    assert!(upstream.last().identity_like("x-user-sub").is_empty());
}

#[tokio::test]
async fn caddy_forward_auth_with_the_shipped_caddyfile() {
    let (upstream, gate, _jwks) = backends().await;
    let Some(caddy) = start_caddy(upstream.addr, gate.authz).await else {
        return;
    };
    let quirks = Quirks {
        challenge_on_403: true,
        drops_empty_headers: false,
        escapes_fragments: true,
    };
    // The request_header deletions run before forward_auth: a client's own
    // X-Original-* never reaches the gate (which would refuse two families with 400).
    let (status, _, body) = get(
        &format!("http://{}/public/page", caddy.addr),
        &[
            ("X-Original-URI", "/admin/x"),
            ("X-Original-Method", "DELETE"),
        ],
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_eq!(upstream.last().uri, "/public/page");

    exercise("caddy", &caddy, &upstream, quirks).await;
}
