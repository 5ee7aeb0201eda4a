//! Signing keys over real HTTP: rotation, the unknown-kid cooldown, a JWKS server that
//! is down and comes back, refreshes that fail, and tokens Amazon Cognito really issued.

use std::time::Duration;

use crate::common::process::{eventually, temp_file, Running, BIN};
use crate::common::*;
use cognito_gate::Clock;
use cognito_gate_dev_issuer::SigningKey;

#[tokio::test]
async fn unknown_kids_cause_at_most_one_fetch_and_rotated_keys_are_picked_up() {
    let (gate, upstream, jwks) = stack().await;
    assert_eq!(jwks.fetches(), 1, "start-up fetches the key set once");

    // 100 concurrent requests signed by a key the JWKS does not have: one refetch.
    let stranger = cognito_gate_dev_issuer::SigningKey::generate("key-unknown").unwrap();
    let auth = bearer(&stranger, "u", &[]);
    let requests = (0..100).map(|_| {
        let (url, auth) = (gate.url("/app"), auth.clone());
        tokio::spawn(async move { get(&url, &[("authorization", &auth)]).await.0 })
    });
    for r in requests {
        assert_eq!(r.await.unwrap(), 401);
    }
    assert_eq!(jwks.fetches(), 2, "100 misses share one refetch");

    // Within the cooldown, another unknown kid does not fetch again.
    let (status, h, _) = get(
        &gate.url("/app"),
        &[("authorization", &bearer(key_b(), "u", &[]))],
    )
    .await;
    assert_eq!(status, 401);
    assert!(h["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("no signing key matches"));
    assert_eq!(jwks.fetches(), 2);

    // Rotation: key B is published; after the cooldown its first use fetches once.
    jwks.set_keys(&[key_a(), key_b()]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..3 {
        let (status, _, _) = get(
            &gate.url("/app"),
            &[("authorization", &bearer(key_b(), "rotated", &[]))],
        )
        .await;
        assert_eq!(status, 200);
    }
    assert_eq!(
        jwks.fetches(),
        3,
        "the new kid is fetched once, then served from the cache"
    );
    assert_eq!(
        upstream.last().header("x-user-sub").as_deref(),
        Some("rotated")
    );
}

#[tokio::test]
async fn a_jwks_server_down_from_the_start_gives_503_then_recovers_without_restart() {
    let upstream = Upstream::start().await;
    let port = reserve_port().await;
    let url = format!("http://{}/{POOL}/.well-known/jwks.json", port.addr);
    let gate = Gate::start(&config(&upstream.url(), &url, ""), POLICY).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (status, _, body) = get(&format!("http://{}/readyz", gate.admin), &[]).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""keys":false"#), "{body}");
    let (status, _, _) = get(&format!("http://{}/healthz", gate.admin), &[]).await;
    assert_eq!(status, 200, "alive even without keys");

    let auth = bearer(key_a(), "u", &[]);
    let (status, h, body) = get(&gate.url("/app"), &[("authorization", &auth)]).await;
    assert_eq!(
        status, 503,
        "key trouble is our fault, not the client's: {body}"
    );
    assert!(h.get("www-authenticate").is_none());
    assert!(body.contains("keys_unavailable"), "{body}");
    // Public paths need no keys.
    assert_eq!(get(&gate.url("/public/x"), &[]).await.0, 200);

    let jwks = JwksServer::start_on(port, jwks_json(&[key_a()])).await;
    gate.wait_ready(Duration::from_secs(20)).await;
    let (status, _, _) = get(&gate.url("/app"), &[("authorization", &auth)]).await;
    assert_eq!(status, 200);
    assert!(jwks.fetches() >= 1);
}

#[tokio::test]
async fn a_bad_refresh_keeps_the_last_good_keys() {
    let (gate, _upstream, jwks) = stack().await;
    jwks.set_body(r#"{"keys": "not a list"}"#);
    // An unknown kid forces a refetch, which fails to parse and must not be applied.
    let (status, _, _) = get(
        &gate.url("/app"),
        &[("authorization", &bearer(key_b(), "u", &[]))],
    )
    .await;
    assert_eq!(
        status, 503,
        "the refetch failed, so we cannot tell whether the kid exists"
    );
    assert_eq!(jwks.fetches(), 2);
    let (status, _, _) = get(
        &gate.url("/app"),
        &[("authorization", &bearer(key_a(), "u", &[]))],
    )
    .await;
    assert_eq!(status, 200, "key A still serves");
    let (status, _, _) = get(&format!("http://{}/readyz", gate.admin), &[]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_oversized_jwks_is_refused() {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let padding = " ".repeat(70 * 1024);
    jwks.set_body(&format!("{}{padding}", jwks_json(&[key_a()])));
    let gate = Gate::start(&config(&upstream.url(), &jwks.url(), ""), POLICY).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(jwks.fetches() >= 1);
    assert_eq!(
        get(&format!("http://{}/readyz", gate.admin), &[]).await.0,
        503
    );
}

const REAL_POOL: &str = "us-east-1_iWcTPhZBA";
const REAL_CLIENT: &str = "6i0o6sela15jdctgeflkmj4gjo";
const INSIDE_WINDOW: f64 = 1_617_955_200.0;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/real-cognito/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .trim()
    .to_owned()
}

async fn real_pool_gate(
    upstream: &Upstream,
    clock: Clock,
) -> (Gate, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = fixture("jwks.json");
    let stop = spawn_server(listener, move |_req| {
        let body = body.clone();
        async move {
            http::Response::new(http_body_util::BodyExt::boxed(http_body_util::Full::new(
                bytes::Bytes::from(body),
            )))
        }
    });
    let config = format!(
        r#"
        [upstream]
        url = "{}"
        [[pools]]
        user_pool_id = "{REAL_POOL}"
        client_ids = ["{REAL_CLIENT}"]
        token_use = "any"
        jwks_url = "http://{addr}/{REAL_POOL}/.well-known/jwks.json"
        "#,
        upstream.url()
    );
    let gate = Gate::start_with_clock(
        &config,
        "[[rule]]\npath = \"/**\"\ngroups = [\"us-east-1_iWcTPhZBA_adfs\"]\n",
        clock,
    )
    .await;
    gate.wait_ready(Duration::from_secs(10)).await;
    (gate, stop)
}

#[tokio::test]
async fn real_cognito_tokens_are_accepted_inside_their_window() {
    let upstream = Upstream::start().await;
    let (gate, _jwks) = real_pool_gate(&upstream, Clock::Fixed(INSIDE_WINDOW)).await;
    for file in ["access-token.jwt", "id-token.jwt"] {
        let auth = format!("Bearer {}", fixture(file));
        let (status, _, body) = get(&gate.url("/orders"), &[("authorization", &auth)]).await;
        assert_eq!(status, 200, "{file}: {body}");
        let seen = upstream.last();
        assert_eq!(
            seen.header("x-user-sub").as_deref(),
            Some("1bc2a8fb-fc0a-440f-93ae-576e0879d180"),
            "{file}"
        );
        assert_eq!(
            seen.header("x-user-groups").as_deref(),
            Some("us-east-1_iWcTPhZBA_adfs"),
            "{file}"
        );
    }
}

#[tokio::test]
async fn real_cognito_tokens_are_expired_today() {
    let upstream = Upstream::start().await;
    let (gate, _jwks) = real_pool_gate(&upstream, Clock::System).await;
    for file in ["access-token.jwt", "id-token.jwt"] {
        let auth = format!("Bearer {}", fixture(file));
        let (status, h, _) = get(&gate.url("/orders"), &[("authorization", &auth)]).await;
        assert_eq!(status, 401, "{file}");
        assert!(
            h["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("token has expired"),
            "{file}"
        );
    }
    assert_eq!(upstream.count(), 0);
}

/// A gate whose JWKS serves `keys`, and a token signed by key A that it has verified
/// and remembered.
async fn remembering(keys: &[&SigningKey]) -> (Gate, Upstream, JwksServer, String) {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(keys).await;
    let gate = Gate::start(&config(&upstream.url(), &jwks.url(), ""), POLICY).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let signed_by_a = bearer(key_a(), "alice", &[]);
    for _ in 0..2 {
        assert_eq!(
            get(&gate.url("/app"), &[("authorization", &signed_by_a)])
                .await
                .0,
            200
        );
    }
    (gate, upstream, jwks, signed_by_a)
}

/// Publishes `keys`, then makes the gate refetch them: an unknown kid after the
/// cooldown (1 s in the test config) causes exactly one fetch.
async fn republish(gate: &Gate, jwks: &JwksServer, keys: &[&SigningKey]) {
    jwks.set_keys(keys);
    let fetches = jwks.fetches();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stranger = SigningKey::generate("key-c").unwrap();
    assert_eq!(
        get(
            &gate.url("/app"),
            &[("authorization", &bearer(&stranger, "x", &[]))]
        )
        .await
        .0,
        401
    );
    assert_eq!(
        jwks.fetches(),
        fetches + 1,
        "the unknown kid caused a refetch"
    );
}

#[tokio::test]
async fn a_remembered_token_is_refused_once_its_key_leaves_the_key_set() {
    let (gate, _upstream, jwks, signed_by_a) = remembering(&[key_a(), key_b()]).await;
    // Key A is withdrawn.
    republish(&gate, &jwks, &[key_b()]).await;

    let (status, h, _) = get(&gate.url("/app"), &[("authorization", &signed_by_a)]).await;
    assert_eq!(
        status, 401,
        "a token whose key was withdrawn must not be served from memory"
    );
    assert!(h["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("no signing key matches"));
    assert_eq!(
        get(
            &gate.url("/app"),
            &[("authorization", &bearer(key_b(), "bob", &[]))]
        )
        .await
        .0,
        200
    );
}

#[tokio::test]
async fn a_remembered_token_still_expires_on_time() {
    let (gate, _upstream, _jwks) = stack().await;
    let mut claims = access_claims("brief", &[]);
    claims["exp"] = serde_json::json!(now() + 2);
    let auth = format!("Bearer {}", token(key_a(), &claims));
    assert_eq!(
        get(&gate.url("/app"), &[("authorization", &auth)]).await.0,
        200
    );
    assert_eq!(
        get(&gate.url("/app"), &[("authorization", &auth)]).await.0,
        200
    );
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let (status, h, _) = get(&gate.url("/app"), &[("authorization", &auth)]).await;
    assert_eq!(status, 401);
    assert!(h["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("token has expired"));
}

#[tokio::test]
async fn a_remembered_token_is_refused_once_its_kid_names_another_key() {
    let (gate, _upstream, jwks, signed_by_a) = remembering(&[key_a()]).await;
    // The key set is republished with the same kid and new key material.
    let successor = SigningKey::generate(key_a().kid()).unwrap();
    republish(&gate, &jwks, &[&successor]).await;

    let (status, h, _) = get(&gate.url("/app"), &[("authorization", &signed_by_a)]).await;
    assert_eq!(
        status, 401,
        "a token whose kid now names another key must not be served from memory"
    );
    assert!(h["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("signature is invalid"));
    assert_eq!(
        get(
            &gate.url("/app"),
            &[("authorization", &bearer(&successor, "bob", &[]))]
        )
        .await
        .0,
        200
    );
}

/// A loopback egress proxy that records each CONNECT request head, then tunnels to the
/// destination as squid does.
struct ConnectProxy {
    addr: std::net::SocketAddr,
    heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ConnectProxy {
    async fn start() -> ConnectProxy {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = heads.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let Some(head) = read_head(&mut client).await else {
                        return;
                    };
                    let target = head.split(' ').nth(1).unwrap_or_default().to_owned();
                    seen.lock().unwrap().push(head);
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else {
                        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                        return;
                    };
                    let _ = client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
        });
        ConnectProxy { addr, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// A TCP listener that records the first byte of each connection: 0x16 is a TLS
/// handshake, so the key fetch's TLS ran end to end to it.
async fn first_bytes() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let firsts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = firsts.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut byte = [0u8; 1];
            if conn.read(&mut byte).await.unwrap_or(0) == 1 {
                seen.lock().unwrap().push(byte[0]);
            }
        }
    });
    (addr, firsts)
}

#[tokio::test]
async fn key_fetches_go_through_the_egress_proxy_unless_no_proxy_exempts_them() {
    let proxy = ConnectProxy::start().await;
    let (keys, firsts) = first_bytes().await;
    let upstream = Upstream::start().await;
    let admin = reserve_port().await.addr;
    let config = temp_file(
        "egress.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\nadmin_listen = \"{admin}\"\npolicy_file = {:?}\n{}",
            temp_file("egress-policy.toml", POLICY)
                .display()
                .to_string(),
            config(&upstream.url(), &format!("https://{keys}/jwks.json"), "")
        ),
    );
    let start = |no_proxy: &str| {
        let mut command = std::process::Command::new(BIN);
        for name in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
            "NO_PROXY",
            "no_proxy",
        ] {
            command.env_remove(name);
        }
        command
            .env("HTTPS_PROXY", format!("http://gate:s3cret@{}", proxy.addr))
            .env("NO_PROXY", no_proxy)
            .args(["run", "--config"])
            .arg(&config)
            .stderr(std::process::Stdio::piped());
        Running(Some(command.spawn().unwrap()))
    };

    // Through the proxy: one CONNECT to the key server, with the proxy's credentials,
    // and TLS inside the tunnel.
    let gate = start("");
    eventually(
        Duration::from_secs(10),
        "a CONNECT through the proxy",
        || async { !proxy.heads().is_empty() && firsts.lock().unwrap().contains(&0x16) },
    )
    .await;
    let head = proxy.heads()[0].clone();
    assert!(
        head.starts_with(&format!("CONNECT {keys} HTTP/1.1\r\n")),
        "{head}"
    );
    // base64("gate:s3cret")
    assert!(
        head.contains("Proxy-Authorization: Basic Z2F0ZTpzM2NyZXQ=\r\n"),
        "{head}"
    );
    // The key server's certificate is not one the system trusts, so there are no keys.
    assert_eq!(get(&format!("http://{admin}/readyz"), &[]).await.0, 503);
    let (_, log) = gate.stop().await;
    assert!(
        log.contains("keys are fetched through the egress proxy"),
        "{log}"
    );
    assert!(log.contains(&proxy.addr.to_string()), "{log}");
    assert!(
        !log.contains("s3cret"),
        "the proxy's password was logged: {log}"
    );

    // NO_PROXY exempts the key server: a direct connection, nothing through the proxy.
    let through_proxy = proxy.heads().len();
    let direct_before = firsts.lock().unwrap().len();
    let gate = start("127.0.0.1");
    eventually(Duration::from_secs(10), "a direct key fetch", || async {
        firsts.lock().unwrap().len() > direct_before
    })
    .await;
    assert_eq!(proxy.heads().len(), through_proxy, "NO_PROXY was ignored");
    let (_, log) = gate.stop().await;
    assert!(!log.contains("egress proxy"), "{log}");
}
