//! An app behind TLS with a private CA that requires client certificates: the gate
//! reaches it with `upstream.ca_file`, `client_cert`/`client_key` and `server_name`,
//! over HTTP/1.1 and over HTTP/2 (`protocol = "h2"`, ALPN, a tonic gRPC app), and
//! answers 502 with a log line that says why when any of them is missing. The same
//! for a key server: a JWKS behind the same private CA, asking for the same client
//! certificate, reached with the pool's own `ca_file`, `client_cert` and `client_key`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::common::pki::{ca, leaf};
use crate::common::process::*;
use crate::common::*;
use bytes::Bytes;
use http_body_util::Full;
use rcgen::{ExtendedKeyUsagePurpose, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A private CA, a server certificate for `app.internal` and two client certificates:
/// one the app's CA signed, one from a CA it does not know.
struct Pki {
    ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    stranger_cert: PathBuf,
    stranger_key: PathBuf,
    /// The app's: a certificate for `app.internal`.
    server: Arc<rustls::ServerConfig>,
    /// The key server's: a certificate for `127.0.0.1`.
    key_server: Arc<rustls::ServerConfig>,
}

impl Pki {
    fn new(tag: &str, alpn: &[&[u8]]) -> Pki {
        let authority = ca("cognito-gate test CA");
        let server = leaf(
            &["app.internal"],
            ExtendedKeyUsagePurpose::ServerAuth,
            &authority,
        );
        let key_server = leaf(
            &["127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
            &authority,
        );
        let client = leaf(&["gate"], ExtendedKeyUsagePurpose::ClientAuth, &authority);
        let other = ca("someone else's CA");
        let stranger = leaf(&["gate"], ExtendedKeyUsagePurpose::ClientAuth, &other);
        // A server that presents `leaf` and requires a client certificate of the CA.
        let serving = |leaf: &(rcgen::Certificate, KeyPair)| {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(authority.0.der().clone()).unwrap();
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .unwrap();
            let mut config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_single_cert(
                    vec![leaf.0.der().clone(), authority.0.der().clone()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.1.serialize_der())),
                )
                .unwrap();
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Arc::new(config)
        };
        Pki {
            ca: temp_file(&format!("{tag}-ca.pem"), &authority.0.pem()),
            client_cert: temp_file(&format!("{tag}-client.pem"), &client.0.pem()),
            client_key: temp_file(&format!("{tag}-client.key"), &client.1.serialize_pem()),
            stranger_cert: temp_file(&format!("{tag}-stranger.pem"), &stranger.0.pem()),
            stranger_key: temp_file(&format!("{tag}-stranger.key"), &stranger.1.serialize_pem()),
            server: serving(&server),
            key_server: serving(&key_server),
        }
    }
}

/// An app behind TLS that answers every request with the HTTP version it got, the
/// `x-user-sub` it saw, and whether the client presented a certificate.
async fn tls_app(pki: &Pki) -> SocketAddr {
    tls_server(pki.server.clone(), None).await
}

/// `tls_app`, or with `body` a server that answers every request with it (a JWKS).
async fn tls_server(config: Arc<rustls::ServerConfig>, body: Option<String>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let fixed = body.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let presented = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .is_some_and(|c| !c.is_empty());
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let sub = req
                            .headers()
                            .get("x-user-sub")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-")
                            .to_owned();
                        let body = fixed.clone().unwrap_or_else(|| {
                            format!("{:?} sub={sub} client_cert={presented}", req.version())
                        });
                        async move {
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from(body),
                            )))
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    addr
}

/// `cognito-gate run` in front of `app` with the `[upstream]` lines `upstream`.
async fn gate_before(tag: &str, app: &str, upstream: &str) -> (Running, SocketAddr, PathBuf) {
    let jwks = JwksServer::start(&[key_a()]).await;
    let (listen, admin) = (reserve_port().await.addr, reserve_port().await.addr);
    let policy = temp_file(&format!("{tag}-policy.toml"), POLICY);
    let text =
        config(app, &jwks.url(), "").replace("[upstream]", &format!("[upstream]\n{upstream}"));
    let file = temp_file(
        &format!("{tag}.toml"),
        &format!(
            "listen = \"{listen}\"\nadmin_listen = \"{admin}\"\npolicy_file = {:?}\n{text}\n",
            policy.display().to_string()
        ),
    );
    let (running, log) = spawn_gate(&file, admin).await;
    std::mem::forget(jwks);
    (running, listen, log)
}

fn lines(pki: &Pki, with: &[&str]) -> String {
    let mut out = String::new();
    for key in with {
        let value = match *key {
            "ca_file" => &pki.ca,
            "client_cert" => &pki.client_cert,
            "client_key" => &pki.client_key,
            "stranger_cert" => &pki.stranger_cert,
            "stranger_key" => &pki.stranger_key,
            "server_name" => {
                out.push_str("server_name = \"app.internal\"\n");
                continue;
            }
            other => panic!("{other}"),
        };
        let key = key.replace("stranger_", "client_");
        out.push_str(&format!("{key} = {:?}\n", value.display().to_string()));
    }
    out
}

async fn through(gate: SocketAddr) -> (u16, String) {
    let alice = bearer(key_a(), "alice", &[]);
    let (status, _, body) = get(
        &format!("http://{gate}/app/x"),
        &[("authorization", &alice)],
    )
    .await;
    (status, body)
}

#[tokio::test]
async fn a_private_ca_and_a_client_certificate_reach_an_app_that_requires_them() {
    let pki = Pki::new("tls-app", &[b"http/1.1"]);
    let app = tls_app(&pki).await;
    let url = format!("https://127.0.0.1:{}", app.port());

    let all = lines(
        &pki,
        &["ca_file", "client_cert", "client_key", "server_name"],
    );
    let (gate, addr, _log) = gate_before("tls-all", &url, &all).await;
    assert_eq!(
        through(addr).await,
        (200, "HTTP/1.1 sub=alice client_cert=true".to_owned())
    );
    gate.stop().await;

    // Each part left out, or wrong, is a 502 and a log line that says which.
    let cases: [(&str, &[&str], &str); 4] = [
        (
            "tls-no-client-cert",
            &["ca_file", "server_name"],
            "CertificateRequired",
        ),
        (
            "tls-stranger-cert",
            &["ca_file", "stranger_cert", "stranger_key", "server_name"],
            "UnknownCA",
        ),
        (
            "tls-no-ca",
            &["client_cert", "client_key", "server_name"],
            "UnknownIssuer",
        ),
        (
            "tls-no-name",
            &["ca_file", "client_cert", "client_key"],
            "not valid for name",
        ),
    ];
    for (tag, keys, says) in cases {
        let (gate, addr, log) = gate_before(tag, &url, &lines(&pki, keys)).await;
        let (status, body) = through(addr).await;
        assert_eq!(status, 502, "{tag}: {body}");
        assert!(body.contains("bad_gateway"), "{tag}: {body}");
        gate.stop().await;
        let logged = std::fs::read_to_string(&log).unwrap();
        let line = logged
            .lines()
            .find(|l| l.contains("upstream request failed"))
            .unwrap_or_else(|| panic!("{tag}: no log line in {logged}"));
        assert!(line.contains(says), "{tag}: {line}");
    }
}

/// A tonic gRPC app (grpc.health.v1) behind TLS, speaking only HTTP/2 (ALPN `h2`).
async fn grpc_tls_app(pki: &Pki) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(pki.server.clone());
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("orders", tonic_health::ServingStatus::Serving)
        .await;
    let incoming =
        futures_util::stream::unfold((listener, acceptor), |(listener, acceptor)| async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return None;
                };
                if let Ok(tls) = acceptor.accept(stream).await {
                    return Some((Ok::<_, std::io::Error>(Tls(tls)), (listener, acceptor)));
                }
            }
        });
    tokio::spawn(async move {
        let _keep = reporter;
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    addr
}

/// A server-side TLS stream, as tonic's `serve_with_incoming` takes it.
struct Tls(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl tonic::transport::server::Connected for Tls {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl tokio::io::AsyncRead for Tls {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Tls {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A tonic health client through the gate at `addr`, with bob's token.
async fn bobs_health_client(
    addr: SocketAddr,
) -> tonic_health::pb::health_client::HealthClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone,
    >,
> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let token: tonic::metadata::MetadataValue<_> = bearer(key_a(), "bob", &[]).parse().unwrap();
    tonic_health::pb::health_client::HealthClient::with_interceptor(
        channel,
        move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", token.clone());
            Ok(req)
        },
    )
}

#[tokio::test]
async fn a_grpc_app_behind_tls_is_reached_over_h2_by_alpn() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::HealthCheckRequest;
    let pki = Pki::new("tls-grpc", &[b"h2"]);
    let app = grpc_tls_app(&pki).await;
    let url = format!("https://127.0.0.1:{}", app.port());
    let upstream = format!(
        "protocol = \"h2\"\n{}",
        lines(
            &pki,
            &["ca_file", "client_cert", "client_key", "server_name"]
        )
    );
    let (gate, addr, _log) = gate_before("tls-grpc", &url, &upstream).await;
    let mut client = bobs_health_client(addr).await;
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        client.check(HealthCheckRequest {
            service: "orders".into(),
        }),
    )
    .await
    .unwrap()
    .expect("the call reached the app over TLS");
    assert_eq!(answer.into_inner().status(), ServingStatus::Serving);
    // The app's own status (in the trailers) passes through.
    let unknown = client
        .check(HealthCheckRequest {
            service: "nope".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    gate.stop().await;

    // Without the client certificate the app refuses the handshake: the caller gets
    // UNAVAILABLE, the gRPC form of 502.
    let upstream = format!(
        "protocol = \"h2\"\n{}",
        lines(&pki, &["ca_file", "server_name"])
    );
    let (gate, addr, log) = gate_before("tls-grpc-no-cert", &url, &upstream).await;
    let mut client = bobs_health_client(addr).await;
    let refused = client
        .check(HealthCheckRequest {
            service: "orders".into(),
        })
        .await
        .expect_err("no client certificate");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    gate.stop().await;
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("upstream request failed"), "{logged}");
}

#[test]
fn check_names_the_tls_file_that_is_wrong() {
    let pki = Pki::new("tls-check", &[b"http/1.1"]);
    let not_pem = temp_file("tls-check-not.pem", "hello\n");
    let policy = temp_file("tls-check-policy.toml", POLICY);
    for (upstream, says) in [
        (
            format!("ca_file = {:?}", not_pem.display().to_string()),
            "upstream.ca_file",
        ),
        (
            format!("client_cert = {:?}", pki.client_cert.display().to_string()),
            "client_cert and client_key go together",
        ),
        (
            format!(
                "client_cert = {:?}\nclient_key = {:?}",
                pki.client_cert.display().to_string(),
                not_pem.display().to_string()
            ),
            "upstream.client_key",
        ),
        (
            "server_name = \"not a name\"".to_owned(),
            "upstream.server_name",
        ),
        ("protocol = \"h2\"".to_owned(), "h2 is HTTP/2 over TLS"),
    ] {
        let url = if says.contains("h2 is") {
            "http://127.0.0.1:1"
        } else {
            "https://127.0.0.1:1"
        };
        let text = config(url, "https://keys.example/jwks.json", "")
            .replace("[upstream]", &format!("[upstream]\n{upstream}"));
        let file = temp_file(
            "tls-check.toml",
            &format!("policy_file = {:?}\n{text}", policy.display().to_string()),
        );
        let out = std::process::Command::new(BIN)
            .args(["check", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{upstream}: {text}");
        assert!(text.contains(says), "{upstream}: {text}");
    }
}

#[tokio::test]
async fn a_key_server_behind_a_private_ca_is_reached_with_the_pools_own_files() {
    let pki = Pki::new("tls-jwks", &[b"http/1.1"]);
    let keys = tls_server(pki.key_server.clone(), Some(jwks_json(&[key_a()]))).await;
    let jwks_url = format!("https://127.0.0.1:{}/jwks.json", keys.port());
    let upstream = Upstream::start().await;
    let alice = bearer(key_a(), "alice", &[]);
    let with = |keys: &[&str]| {
        config(&upstream.url(), &jwks_url, "").replace(
            &format!("jwks_url = \"{jwks_url}\""),
            &format!("jwks_url = \"{jwks_url}\"\n{}", lines(&pki, keys)),
        )
    };

    let gate = Gate::start(&with(&["ca_file", "client_cert", "client_key"]), POLICY).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let (status, _, _) = get(&gate.url("/app/x"), &[("authorization", &alice)]).await;
    assert_eq!(status, 200);
    assert_eq!(
        upstream.last().header("x-user-sub").as_deref(),
        Some("alice")
    );

    // Without the CA the key server is not trusted; without the client certificate it
    // refuses the gate: either way the keys cannot be had, which is 503, not 401.
    for keys in [&["client_cert", "client_key"][..], &["ca_file"][..]] {
        let gate = Gate::start(&with(keys), POLICY).await;
        let (status, _, body) = get(&gate.url("/app/x"), &[("authorization", &alice)]).await;
        assert_eq!(status, 503, "{keys:?}: {body}");
        assert!(body.contains("keys_unavailable"), "{keys:?}: {body}");
    }
}
