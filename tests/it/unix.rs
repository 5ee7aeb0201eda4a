//! An app that listens only on a Unix domain socket (`upstream.url = "unix:/..."`):
//! the common sidecar shape where the app must not listen on TCP at all.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use bytes::Bytes;
use http_body_util::Full;
use tokio::net::UnixListener;

/// What the app saw of one request: the method and path, `Host` and `X-User-Sub`.
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// An app on a fresh Unix socket that records each request and answers with the
/// HTTP version it got.
fn unix_app(tag: &str) -> (PathBuf, Seen) {
    let path = std::env::temp_dir().join(format!("cognito-gate-{}-{tag}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let header = |name: &str| {
                            req.headers()
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_owned()
                        };
                        record.lock().unwrap().push((
                            format!("{} {}", req.method(), req.uri()),
                            header("host"),
                            header("x-user-sub"),
                        ));
                        let body = format!("{:?}", req.version());
                        async move {
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from(body),
                            )))
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            });
        }
    });
    (path, seen)
}

#[tokio::test]
async fn an_app_on_a_unix_socket_gets_the_request_the_policy_judged() {
    let (socket, seen) = unix_app("app");
    let jwks = JwksServer::start(&[key_a()]).await;
    let url = format!("unix:{}", socket.display());
    let gate = Gate::start(&config(&url, &jwks.url(), ""), POLICY).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let alice = bearer(key_a(), "alice", &[]);

    let (status, _, body) = get(
        &gate.url("/app/orders?id=7"),
        &[
            ("authorization", &alice),
            ("host", "shop.example"),
            ("x-user-sub", "forged"),
        ],
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "HTTP/1.1"));
    assert_eq!(
        seen.lock().unwrap().clone(),
        [(
            "GET /app/orders?id=7".to_owned(),
            "shop.example".to_owned(),
            "alice".to_owned()
        )]
    );
    // Refused requests never reach the socket.
    let (status, _, _) = get(&gate.url("/app/orders"), &[]).await;
    assert_eq!(status, 401);
    assert_eq!(seen.lock().unwrap().len(), 1);

    // With h2c the app gets HTTP/2 on the same socket.
    let h2c = config(&url, &jwks.url(), "").replace("[upstream]", "[upstream]\nprotocol = \"h2c\"");
    let gate = Gate::start(&h2c, POLICY).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let (status, _, body) = get(&gate.url("/app/x"), &[("authorization", &alice)]).await;
    assert_eq!((status, body.as_str()), (200, "HTTP/2.0"));
}

#[tokio::test]
async fn a_missing_socket_is_a_502() {
    let jwks = JwksServer::start(&[key_a()]).await;
    let missing =
        std::env::temp_dir().join(format!("cognito-gate-{}-none.sock", std::process::id()));
    let url = format!("unix:{}", missing.display());
    let gate = Gate::start(&config(&url, &jwks.url(), ""), POLICY).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let alice = bearer(key_a(), "alice", &[]);
    let (status, _, body) = get(&gate.url("/app/x"), &[("authorization", &alice)]).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("bad_gateway"), "{body}");
}

/// `curl --unix-socket path` with `args`: what `-D -` and the body printed.
async fn curl_socket(path: &std::path::Path, args: &[&str]) -> String {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "-D", "-", "--unix-socket"])
        .arg(path)
        .args(args)
        .output()
        .await
        .expect("curl is needed: apt-get install -y curl");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// `listen = "unix:/path"`: the gate itself listens only on a Unix socket, with the
/// mode and owner asked for, replacing a socket file left by an earlier run; its peers
/// have no address (forwarding headers are replaced, the log names the socket) unless
/// `trusted_proxies` has `"unix"`; the file is removed when the gate stops.
#[tokio::test]
async fn the_gate_listens_on_a_unix_socket_with_its_mode_and_owner() {
    use crate::common::process::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let socket =
        std::env::temp_dir().join(format!("cognito-gate-{}-listen.sock", std::process::id()));
    // A socket file nobody accepts on, as a killed gate leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    // SAFETY: geteuid reads the process's effective user id and nothing else.
    let root = unsafe { libc::geteuid() } == 0;
    let owner = if root {
        "\nlisten_socket_owner = \"65534:65534\""
    } else {
        ""
    };
    let admin = reserve_port().await.addr;
    let policy = temp_file("unix-listen-policy.toml", POLICY);
    let start = |trusted: &str| {
        format!(
            "listen = \"unix:{}\"\nlisten_socket_mode = \"0600\"{owner}\nadmin_listen = \"{admin}\"\n\
             policy_file = {:?}\ntrusted_proxies = [{trusted}]\n{}",
            socket.display(),
            policy.display().to_string(),
            config(&upstream.url(), &jwks.url(), "")
        )
    };
    let file = temp_file("unix-listen.toml", &start(""));
    let (gate, log) = spawn_gate(&file, admin).await;
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    if root {
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    }
    let auth = format!("authorization: {}", bearer(key_a(), "socket-user", &[]));
    let said = curl_socket(
        &socket,
        &[
            "-H",
            &auth,
            "-H",
            "x-forwarded-for: 203.0.113.9",
            "-H",
            "x-user-sub: forged",
            "http://app.internal/orders/3?x=1",
        ],
    )
    .await;
    assert!(said.starts_with("HTTP/1.1 200"), "{said}");
    let seen = upstream.seen();
    let last = seen.last().unwrap();
    assert_eq!(last.uri, "/orders/3?x=1");
    assert_eq!(last.header("x-user-sub").as_deref(), Some("socket-user"));
    assert_eq!(last.header("host").as_deref(), Some("app.internal"));
    // An untrusted Unix peer: what it says of the client goes, and no address is made up.
    assert_eq!(last.header("x-forwarded-for"), None);
    assert_eq!(last.header("x-forwarded-proto").as_deref(), Some("http"));
    let said = curl_socket(&socket, &["http://app.internal/orders/3"]).await;
    assert!(said.starts_with("HTTP/1.1 401"), "{said}");
    let said = curl_socket(
        &socket,
        &[
            "--http2-prior-knowledge",
            "-H",
            &auth,
            "http://app.internal/orders/4",
        ],
    )
    .await;
    assert!(said.starts_with("HTTP/2 200"), "h2c on the socket: {said}");
    let (status, stderr) = gate.stop().await;
    assert!(status.success(), "{stderr}");
    assert!(!socket.exists(), "the socket file is removed at exit");
    let log = std::fs::read_to_string(log).unwrap();
    assert!(
        log.contains(&format!("\"client\":\"unix:{}\"", socket.display())),
        "the log names the socket as the client: {log}"
    );

    // Trusted (`trusted_proxies = ["unix"]`): the peer's chain is kept and believed.
    let file = temp_file("unix-listen-trusted.toml", &start("\"unix\""));
    let (gate, log) = spawn_gate(&file, admin).await;
    let said = curl_socket(
        &socket,
        &[
            "-H",
            &auth,
            "-H",
            "x-forwarded-for: 203.0.113.9",
            "http://app.internal/orders/5",
        ],
    )
    .await;
    assert!(said.starts_with("HTTP/1.1 200"), "{said}");
    let last = upstream.seen().pop().unwrap();
    assert_eq!(
        last.header("x-forwarded-for").as_deref(),
        Some("203.0.113.9")
    );
    let (status, stderr) = gate.stop().await;
    assert!(status.success(), "{stderr}");
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("\"client\":\"203.0.113.9\""), "{log}");

    // A live socket is never taken over, nor a file that is not a socket.
    std::fs::write(&socket, "not a socket").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the file exists and is not a socket"),
        "{stderr}"
    );
    std::fs::remove_file(&socket).unwrap();
}
