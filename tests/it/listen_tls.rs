//! TLS on the gate's own listeners, with the real binary, curl and a rustls client: h2
//! and http/1.1 by ALPN, a certificate renewed on disk (a Kubernetes Secret's symlink
//! swap) served to the next connections, a broken renewal refused while the old pair
//! keeps serving, client certificates required on the decision listener, and `check`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::common::pki::{ca, leaf, leaf_until};
use crate::common::process::*;
use crate::common::*;
use rcgen::{ExtendedKeyUsagePurpose, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};

type Pair = (rcgen::Certificate, KeyPair);

const BOTH: &[&[u8]] = &[b"h2", b"http/1.1"];
const HTTP1: &[&[u8]] = &[b"http/1.1"];

/// A folder shaped like a mounted Kubernetes Secret: `current` is a symlink to the
/// version in effect, and the gate is given `current/tls.crt` and `current/tls.key`.
struct SecretDir {
    root: PathBuf,
    versions: u32,
}

impl SecretDir {
    fn new(tag: &str) -> SecretDir {
        let root = std::env::temp_dir().join(format!(
            "cognito-gate-{tag}-{}-{}",
            std::process::id(),
            now()
        ));
        std::fs::create_dir_all(&root).unwrap();
        SecretDir { root, versions: 0 }
    }

    fn cert(&self) -> PathBuf {
        self.root.join("current/tls.crt")
    }

    fn key(&self) -> PathBuf {
        self.root.join("current/tls.key")
    }

    /// Publishes `cert` with `key` as the new version, in one rename.
    fn publish(&mut self, cert: &rcgen::Certificate, key: &KeyPair) {
        self.versions += 1;
        let version = self.root.join(format!("v{}", self.versions));
        std::fs::create_dir_all(&version).unwrap();
        std::fs::write(version.join("tls.crt"), cert.pem()).unwrap();
        std::fs::write(version.join("tls.key"), key.serialize_pem()).unwrap();
        let link = self.root.join("current.new");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&version, &link).unwrap();
        std::fs::rename(&link, self.root.join("current")).unwrap();
    }
}

impl Drop for SecretDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn toml_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// The certificate a TLS client trusting `ca` is served at `addr` (and the protocol
/// agreed), or the handshake's error.
async fn served(
    addr: SocketAddr,
    ca: &rcgen::Certificate,
    client: Option<&Pair>,
    alpn: &[&[u8]],
) -> Result<(CertificateDer<'static>, Option<Vec<u8>>), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector
        .connect(name, stream)
        .await
        .map_err(|e| e.to_string())?;
    // TLS 1.3: a refused client certificate is told after the client's Finished, in
    // the server's first record; an HTTP/1.1 request reads it.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        let (_, session) = tls.get_ref();
        let leaf = session.peer_certificates().unwrap()[0].clone().into_owned();
        return Ok((leaf, Some(b"h2".to_vec())));
    }
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    let (_, session) = tls.get_ref();
    let leaf = session.peer_certificates().unwrap()[0].clone().into_owned();
    Ok((leaf, session.alpn_protocol().map(<[u8]>::to_vec)))
}

/// `curl` over TLS trusting `ca`, with `args`: (exit code, what `-w` printed and the
/// body).
/// Run as a child the test's runtime does not wait on: the app it reaches through the
/// gate is served by that runtime.
async fn curl(ca: &Path, args: &[&str]) -> (i32, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(args)
        .output()
        .await
        .expect("curl is needed for the TLS listener tests: apt-get install -y curl");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// 2031-11-15T00:00:00Z and 2032-01-20T00:00:00Z, the test certificates' `notAfter`.
const FIRST_EXPIRY: f64 = 1_952_467_200.0;
const RENEWED_EXPIRY: f64 = 1_958_169_600.0;

#[tokio::test]
async fn alpn_picks_h2_or_http1_and_a_renewed_certificate_is_served_while_a_broken_one_is_not() {
    let authority = ca("gate listener CA");
    let first = leaf_until(
        &["127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
        &authority,
        Some((2031, 11, 15)),
    );
    let mut secret = SecretDir::new("listen-tls");
    secret.publish(&first.0, &first.1);
    let ca_file = temp_file("listen-tls-ca.pem", &authority.0.pem());
    let (upstream, jwks) = (Upstream::start().await, JwksServer::start(&[key_a()]).await);
    let (listen, admin) = (reserve_port().await.addr, reserve_port().await.addr);
    let policy = temp_file("listen-tls-policy.toml", POLICY);
    let file = temp_file(
        "listen-tls.toml",
        &format!(
            "listen = \"{listen}\"\nadmin_listen = \"{admin}\"\npolicy_file = {}\n{}\n\
             [listen_tls]\ncert_file = {}\nkey_file = {}\n",
            toml_path(&policy),
            config(&upstream.url(), &jwks.url(), ""),
            toml_path(&secret.cert()),
            toml_path(&secret.key()),
        ),
    );
    let (gate, log) = spawn_gate(&file, admin).await;
    let auth = format!("authorization: {}", bearer(key_a(), "tls-user", &[]));
    let url = format!("https://127.0.0.1:{}/orders/7", listen.port());
    let format = "\n%{http_code} %{http_version}";
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let (code, out) = curl(&ca_file, &[flag, "-H", &auth, "-w", format, &url]).await;
        assert_eq!(code, 0, "{out}");
        assert!(out.ends_with(&format!("\n200 {version}")), "{flag}: {out}");
        let seen = upstream.seen();
        let last = seen.last().unwrap();
        assert_eq!(last.uri, "/orders/7");
        assert_eq!(last.header("x-user-sub").as_deref(), Some("tls-user"));
        // The app builds its links from how the client reached the gate.
        assert_eq!(last.header("x-forwarded-proto").as_deref(), Some("https"));
    }
    let (code, out) = curl(&ca_file, &["--http2", "-w", format, &url]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.ends_with("\n401 2"), "no token is still 401: {out}");
    let hits = upstream.seen().len();

    // A client that speaks plain HTTP to the TLS port gets no answer, and is counted.
    let plain = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .arg(format!("http://{listen}/orders/7"))
        .output()
        .await
        .unwrap();
    assert!(!plain.status.success());
    assert_eq!(
        upstream.seen().len(),
        hits,
        "nothing reached the app in clear"
    );
    let name = |listener: &str, result: &str| {
        format!("cognito_gate_tls_reloads_total{{listener=\"{listener}\",result=\"{result}\"}}")
    };
    let expiry_metric = "cognito_gate_tls_certificate_expiry_timestamp_seconds{listener=\"proxy\"}";
    eventually(
        Duration::from_secs(5),
        "the plaintext client is a failed handshake",
        || async {
            metric(
                admin,
                "cognito_gate_tls_handshake_errors_total{listener=\"proxy\"}",
            )
            .await
                == Some(1.0)
        },
    )
    .await;
    assert_eq!(metric(admin, expiry_metric).await, Some(FIRST_EXPIRY));
    let (leaf_der, alpn) = served(listen, &authority.0, None, BOTH).await.unwrap();
    assert_eq!(&leaf_der, first.0.der());
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));

    // Renewal: the Secret's symlink swapped to a new pair.
    let renewed = leaf_until(
        &["127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
        &authority,
        Some((2032, 1, 20)),
    );
    secret.publish(&renewed.0, &renewed.1);
    eventually(
        Duration::from_secs(10),
        "the renewed pair is loaded",
        || async { metric(admin, &name("proxy", "success")).await == Some(1.0) },
    )
    .await;
    assert_eq!(
        &served(listen, &authority.0, None, BOTH).await.unwrap().0,
        renewed.0.der()
    );
    assert_eq!(metric(admin, expiry_metric).await, Some(RENEWED_EXPIRY));

    // A broken renewal: a certificate published with another pair's key.
    let other = leaf(
        &["127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
        &authority,
    );
    secret.publish(&other.0, &first.1);
    eventually(
        Duration::from_secs(10),
        "the broken pair is refused",
        || async { metric(admin, &name("proxy", "error")).await == Some(1.0) },
    )
    .await;
    assert_eq!(
        &served(listen, &authority.0, None, BOTH).await.unwrap().0,
        renewed.0.der(),
        "the last good pair keeps serving"
    );
    assert_eq!(metric(admin, expiry_metric).await, Some(RENEWED_EXPIRY));
    let (code, out) = curl(&ca_file, &["--http2", "-H", &auth, "-w", format, &url]).await;
    assert_eq!((code, out.ends_with("\n200 2")), (0, true), "{out}");
    let (status, stderr) = gate.stop().await;
    assert!(status.success(), "{stderr}");
    let log = std::fs::read_to_string(log).unwrap();
    assert!(
        log.contains("TLS certificate reload failed; the old certificate keeps serving"),
        "{log}"
    );
}

#[tokio::test]
async fn the_decision_listener_requires_its_peers_client_certificates() {
    let authority = ca("gate listener CA");
    let server = leaf(
        &["127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
        &authority,
    );
    let peer = leaf(&["nginx"], ExtendedKeyUsagePurpose::ClientAuth, &authority);
    let stranger_ca = ca("someone else's CA");
    let stranger = leaf(
        &["nginx"],
        ExtendedKeyUsagePurpose::ClientAuth,
        &stranger_ca,
    );
    let write = |name: &str, text: String| temp_file(&format!("authz-mtls-{name}"), &text);
    let (ca_file, cert, key) = (
        write("ca.pem", authority.0.pem()),
        write("server.pem", server.0.pem()),
        write("server.key", server.1.serialize_pem()),
    );
    let (peer_cert, peer_key) = (
        write("peer.pem", peer.0.pem()),
        write("peer.key", peer.1.serialize_pem()),
    );
    let (stranger_cert, stranger_key) = (
        write("stranger.pem", stranger.0.pem()),
        write("stranger.key", stranger.1.serialize_pem()),
    );
    let jwks = JwksServer::start(&[key_a()]).await;
    let (decisions, admin) = (reserve_port().await.addr, reserve_port().await.addr);
    let policy = temp_file("authz-mtls-policy.toml", POLICY);
    let tls = format!(
        "cert_file = {}\nkey_file = {}\n",
        toml_path(&cert),
        toml_path(&key)
    );
    let file = temp_file(
        "authz-mtls.toml",
        &format!(
            "admin_listen = \"{admin}\"\npolicy_file = {}\n[admin_listen_tls]\n{tls}\n{}",
            toml_path(&policy),
            authz_config(&jwks.url(), "").replace(
                "listen = \"127.0.0.1:9191\"",
                &format!(
                    "listen = \"{decisions}\"\n[authz.listen_tls]\n{tls}client_ca = {}",
                    toml_path(&ca_file)
                )
            )
        ),
    );
    let checked = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&file)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&checked.stdout).into_owned();
    assert!(
        checked.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        said.contains(&format!(
            "client certificates required, from the CA in {}",
            ca_file.display()
        )),
        "{said}"
    );
    let gate = spawn_run(&file);
    let readyz = format!("https://127.0.0.1:{}/readyz", admin.port());
    eventually(
        Duration::from_secs(10),
        "the admin listener answers over TLS",
        || async {
            curl(&ca_file, &["-w", "\n%{http_code}", &readyz])
                .await
                .1
                .ends_with("\n200")
        },
    )
    .await;
    let auth_url = format!("https://127.0.0.1:{}/auth", decisions.port());
    let auth = format!("authorization: {}", bearer(key_a(), "peer-user", &[]));
    let (code, out) = with_cert(&ca_file, &auth_url, &peer_cert, &peer_key, &["-H", &auth]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("HTTP/2 200"), "{out}");
    assert!(
        out.to_lowercase().contains("x-user-sub: peer-user"),
        "{out}"
    );
    let (code, out) = with_cert(&ca_file, &auth_url, &peer_cert, &peer_key, &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("HTTP/2 401"),
        "a peer's request without a token: {out}"
    );

    // No certificate, or one of another CA: no decision at all.
    let (code, out) = curl(&ca_file, &["-H", &auth, "-w", "\n%{http_code}", &auth_url]).await;
    assert_ne!(
        code, 0,
        "no client certificate must fail the handshake: {out}"
    );
    let (code, out) = with_cert(
        &ca_file,
        &auth_url,
        &stranger_cert,
        &stranger_key,
        &["-H", &auth],
    )
    .await;
    assert_ne!(
        code, 0,
        "a stranger's certificate must fail the handshake: {out}"
    );
    assert!(served(decisions, &authority.0, Some(&stranger), HTTP1)
        .await
        .is_err());
    let (_, alpn) = served(decisions, &authority.0, Some(&peer), BOTH)
        .await
        .unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let metrics = curl(
        &ca_file,
        &[&format!("https://127.0.0.1:{}/metrics", admin.port())],
    )
    .await
    .1;
    let refused = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("cognito_gate_tls_handshake_errors_total{listener=\"authz\"} ")
        })
        .and_then(|v| v.parse::<f64>().ok());
    assert_eq!(refused, Some(3.0), "{metrics}");
    let (status, stderr) = gate.stop().await;
    assert!(status.success(), "{stderr}");
}

/// `curl` to the decision endpoint `url` for `GET /orders/1`, presenting `cert`.
async fn with_cert(ca: &Path, url: &str, cert: &Path, key: &Path, extra: &[&str]) -> (i32, String) {
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let mut args = vec!["--cert", &cert, "--key", &key, "-D", "-", "-o", "/dev/null"];
    args.extend(extra);
    args.extend([
        "-H",
        "x-original-uri: /orders/1",
        "-H",
        "x-original-method: GET",
        url,
    ]);
    curl(ca, &args).await
}

#[test]
fn check_says_when_the_certificate_expires_and_refuses_a_bad_pair() {
    let authority = ca("gate listener CA");
    let good = leaf_until(
        &["gate.example"],
        ExtendedKeyUsagePurpose::ServerAuth,
        &authority,
        Some((2031, 11, 15)),
    );
    let expired = leaf_until(
        &["gate.example"],
        ExtendedKeyUsagePurpose::ServerAuth,
        &authority,
        Some((2021, 6, 1)),
    );
    let write = |name: &str, text: String| temp_file(&format!("check-tls-{name}"), &text);
    let cert = write("good.pem", good.0.pem());
    let key = write("good.key", good.1.serialize_pem());
    let old = write("expired.pem", expired.0.pem());
    let old_key = write("expired.key", expired.1.serialize_pem());
    let policy = temp_file("check-tls-policy.toml", POLICY);
    let check = |name: &str, cert: &Path, key: &Path| {
        let file = temp_file(
            &format!("check-tls-{name}.toml"),
            &format!(
                "policy_file = {}\n{}\n[listen_tls]\ncert_file = {}\nkey_file = {}\n",
                toml_path(&policy),
                config("http://127.0.0.1:3000", "http://127.0.0.1:1/jwks", ""),
                toml_path(cert),
                toml_path(key),
            ),
        );
        let out = Command::new(BIN)
            .args(["check", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, said) = check("good", &cert, &key);
    assert!(ok, "{said}");
    assert!(
        said.contains(&format!(
            "TLS (h2, http/1.1) with {}, expires 2031-11-15T00:00:00Z (in ",
            cert.display()
        )),
        "{said}"
    );
    let (ok, said) = check("mismatch", &cert, &old_key);
    assert!(!ok);
    assert!(
        said.contains("listen_tls") && said.contains(&old_key.display().to_string()),
        "the key that is not the certificate's is named: {said}"
    );
    let (ok, said) = check("expired", &old, &old_key);
    assert!(!ok);
    assert!(
        said.contains("the certificate expired at 2021-06-01T00:00:00Z"),
        "{said}"
    );
    let (ok, said) = check("missing", &cert, Path::new("/nonexistent/tls.key"));
    assert!(!ok);
    assert!(said.contains("/nonexistent/tls.key"), "{said}");
}

/// Under TLS, an HTTP/1.1 connection still gives hyper's buffers back between requests
/// and waits on the TCP socket (`src/http/connection.rs`): requests after pauses, and
/// two pipelined in one write, are all answered in order on one connection.
#[tokio::test]
async fn a_kept_alive_tls_connection_is_served_across_idle_periods_and_pipelining() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = ca("gate listener CA");
    let server = leaf(
        &["127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
        &authority,
    );
    let cert = temp_file("keepalive-tls.pem", &server.0.pem());
    let key = temp_file("keepalive-tls.key", &server.1.serialize_pem());
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let text = format!(
        "{}\n[listen_tls]\ncert_file = {}\nkey_file = {}\n",
        config(&upstream.url(), &jwks.url(), ""),
        toml_path(&cert),
        toml_path(&key)
    );
    let gate = Gate::start(&text, POLICY).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(authority.0.der().clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let stream = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), stream)
        .await
        .unwrap();
    let request = |path: &str, close: bool| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: app\r\n{}\r\n",
            if close { "Connection: close\r\n" } else { "" }
        )
    };
    // Reads one whole answer (this app's are small, with Content-Length).
    async fn answer<S: tokio::io::AsyncRead + Unpin>(s: &mut S, pending: &mut Vec<u8>) -> String {
        loop {
            if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&pending[..end]).into_owned();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if pending.len() >= end + 4 + length {
                    pending.drain(..end + 4 + length);
                    return head;
                }
            }
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the connection closed mid-answer");
            pending.extend_from_slice(&chunk[..n]);
        }
    }
    let mut pending = Vec::new();
    for path in ["/public/one", "/public/two"] {
        tls.write_all(request(path, false).as_bytes())
            .await
            .unwrap();
        let head = answer(&mut tls, &mut pending).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let both = request("/public/three", false) + &request("/public/four", true);
    tls.write_all(both.as_bytes()).await.unwrap();
    for path in ["/public/three", "/public/four"] {
        let head = answer(&mut tls, &mut pending).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    }
    let seen: Vec<String> = upstream.seen().into_iter().map(|s| s.uri).collect();
    assert_eq!(
        seen,
        [
            "/public/one",
            "/public/two",
            "/public/three",
            "/public/four"
        ]
    );
}
