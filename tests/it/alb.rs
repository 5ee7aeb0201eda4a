//! ALB mode: `x-amzn-oidc-data` headers built byte for byte in the load balancer's
//! format (ES256, JOSE R‖S, padded base64url), verified against a local key server
//! that serves PEM keys by `kid` as `public-keys.auth.elb.{region}.amazonaws.com`
//! does, through the proxy and `/auth`, with a real upstream.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::common::*;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use cognito_gate_dev_issuer::AlbSigner;
use http::{Response, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpListener;

const ARN: &str =
    "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188";
const OTHER_ARN: &str =
    "arn:aws:elasticloadbalancing:eu-west-1:210987654321:loadbalancer/app/web/0123456789abcdef";
const KID: &str = "4f1c2a3b-5d6e-4f70-8a91-b2c3d4e5f607";
const ISSUER: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AlbPool1";
const ALB_CLIENT: &str = "alb-client";

fn signer() -> &'static AlbSigner {
    static S: OnceLock<AlbSigner> = OnceLock::new();
    S.get_or_init(|| AlbSigner::generate().unwrap())
}

fn other_signer() -> &'static AlbSigner {
    static S: OnceLock<AlbSigner> = OnceLock::new();
    S.get_or_init(|| AlbSigner::generate().unwrap())
}

/// Serves the PEM of `signer()` at `/{KID}`, 404 for any other kid, and counts every
/// request; 500 for everything while `broken`.
struct KeyServer {
    addr: std::net::SocketAddr,
    fetches: Arc<AtomicUsize>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl KeyServer {
    async fn start(broken: bool) -> KeyServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fetches = Arc::new(AtomicUsize::new(0));
        let count = fetches.clone();
        let stop = spawn_server(listener, move |req| {
            count.fetch_add(1, Ordering::SeqCst);
            let path = req.uri().path().to_owned();
            async move {
                // Slow enough that concurrent misses overlap.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let (status, body) = match (broken, path.strip_prefix('/')) {
                    (true, _) => (StatusCode::INTERNAL_SERVER_ERROR, String::new()),
                    (false, Some(KID)) => (StatusCode::OK, signer().pem()),
                    _ => (StatusCode::NOT_FOUND, String::new()),
                };
                let mut response = Response::new(full(body));
                *response.status_mut() = status;
                response
            }
        });
        KeyServer {
            addr,
            fetches,
            _stop: stop,
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn header() -> Value {
    json!({
        "alg": "ES256", "kid": KID, "signer": ARN, "iss": ISSUER,
        "client": ALB_CLIENT, "exp": now() + 120, "typ": "JWT",
    })
}

fn payload(sub: &str, groups: &[&str]) -> Value {
    json!({
        "sub": sub, "email": format!("{sub}@example.com"), "email_verified": "true",
        "username": sub, "cognito:groups": groups, "exp": now() + 120, "iss": ISSUER,
    })
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn data(header: &Value, payload: &Value) -> String {
    signer().sign(header, payload).unwrap()
}

/// A gate with a Cognito pool and one `[[alb]]`, in front of an upstream, serving the
/// decision endpoints too.
async fn alb_gate(keys: &KeyServer, policy: &str) -> (Gate, Upstream) {
    alb_gate_with(keys, policy, "").await
}

/// The same, with `extra` at the configuration's top level.
async fn alb_gate_with(keys: &KeyServer, policy: &str, extra: &str) -> (Gate, Upstream) {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let text = format!(
        "{}\n[[alb]]\nregion = \"eu-west-1\"\nsigners = [\"{ARN}\"]\nkey_url = \"http://{}/{{kid}}\"\nclient_ids = [\"{ALB_CLIENT}\"]\nissuer = \"{ISSUER}\"\n",
        config(&upstream.url(), &jwks.url(), extra),
        keys.addr
    )
    .replace(
        "[upstream]",
        "[authz]\nlisten = \"127.0.0.1:9191\"\n[upstream]",
    );
    let gate = Gate::start(&text, policy).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    std::mem::forget(jwks);
    (gate, upstream)
}

async fn status(gate: &Gate, path: &str, headers: &[(&str, &str)]) -> u16 {
    get(&gate.url(path), headers).await.0
}

#[tokio::test]
async fn a_load_balancer_header_is_an_identity_and_its_unsigned_neighbours_are_not() {
    let keys = KeyServer::start(false).await;
    let (gate, upstream) = alb_gate(&keys, POLICY).await;
    let alice = data(&header(), &payload("alice", &["admins"]));
    let (status, _, _) = get(
        &gate.url("/admin/reports"),
        &[
            ("x-amzn-oidc-data", &alice),
            ("x-amzn-oidc-identity", "mallory"),
            ("x_amzn_oidc_identity", "mallory"),
            ("x-amzn-oidc-accesstoken", "forged"),
            ("x-user-sub", "mallory"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let seen = upstream.last();
    assert_eq!(seen.header("x-user-sub").as_deref(), Some("alice"));
    assert_eq!(seen.header("x-user-groups").as_deref(), Some("admins"));
    assert!(
        seen.identity_like("x-amzn-oidc-identity").is_empty(),
        "{seen:?}"
    );
    assert!(
        seen.identity_like("x-amzn-oidc-accesstoken").is_empty(),
        "{seen:?}"
    );
    assert_eq!(seen.identity_like("x-user-sub").len(), 1);
    // The signed header itself reaches the app, as the load balancer sent it.
    assert_eq!(
        seen.header("x-amzn-oidc-data").as_deref(),
        Some(alice.as_str())
    );
    assert_eq!(keys.fetches(), 1);

    // The same policy decides: bob is in no group.
    let bob = data(&header(), &payload("bob", &[]));
    assert_eq!(status_of(&gate, "/admin/reports", &bob).await, 403);
    assert_eq!(status_of(&gate, "/app", &bob).await, 200);
    // Without the header, the unsigned identity alone is nobody.
    assert_eq!(
        get(&gate.url("/app"), &[("x-amzn-oidc-identity", "alice")])
            .await
            .0,
        401
    );
    // The key was fetched once and remembered.
    assert_eq!(keys.fetches(), 1);

    // Through /auth, as nginx asks.
    let auth = format!("http://{}/auth", gate.authz);
    let decide = |value: String, uri: &'static str| {
        let auth = auth.clone();
        async move {
            let headers = [
                ("x-original-method", "GET"),
                ("x-original-uri", uri),
                ("x-amzn-oidc-data", value.as_str()),
            ];
            get(&auth, &headers).await
        }
    };
    let (status, headers, _) = decide(alice.clone(), "/admin/x").await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-user-sub"], "alice");
    assert_eq!(decide(bob.clone(), "/admin/x").await.0, 403);
    let stranger = with(header(), "signer", json!(OTHER_ARN));
    assert_eq!(
        decide(data(&stranger, &payload("alice", &["admins"])), "/admin/x")
            .await
            .0,
        401
    );
    // A spelling nginx would pass on and the gate cannot strip from its request.
    let odd = get(
        &auth,
        &[
            ("x-original-method", "GET"),
            ("x-original-uri", "/app"),
            ("x-amzn-oidc-data", alice.as_str()),
            ("x_amzn_oidc_identity", "mallory"),
        ],
    )
    .await;
    assert_eq!(odd.0, 400);
}

async fn status_of(gate: &Gate, path: &str, data: &str) -> u16 {
    status(gate, path, &[("x-amzn-oidc-data", data)]).await
}

/// `signature` (64 bytes R‖S) as DER, as most ECDSA libraries write it.
fn der(signature: &[u8]) -> Vec<u8> {
    let integer = |bytes: &[u8]| {
        let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
        let mut out = vec![0x02];
        let pad = trimmed.first().is_some_and(|b| b & 0x80 != 0);
        out.push((trimmed.len() + usize::from(pad)) as u8);
        if pad {
            out.push(0);
        }
        out.extend(trimmed);
        out
    };
    let body = [integer(&signature[..32]), integer(&signature[32..])].concat();
    [vec![0x30, body.len() as u8], body].concat()
}

/// The same signature with S replaced by n − S: just as valid, and what an ALB may
/// send, since it does not normalise S.
fn high_s(signature: &[u8]) -> Vec<u8> {
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    let s = &signature[32..];
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = d as u8;
    }
    [&signature[..32], &out[..]].concat()
}

#[tokio::test]
async fn every_way_a_load_balancer_header_can_be_wrong_is_refused() {
    let keys = KeyServer::start(false).await;
    let (gate, upstream) = alb_gate(&keys, POLICY).await;
    let good_payload = payload("alice", &[]);
    let good = data(&header(), &good_payload);
    assert_eq!(status_of(&gate, "/app", &good).await, 200);

    let parts: Vec<&str> = good.split('.').collect();
    let input = format!("{}.{}", parts[0], parts[1]);
    let signature = URL_SAFE.decode(parts[2]).unwrap();
    let resigned = |signature: &[u8]| format!("{input}.{}", URL_SAFE.encode(signature));
    let unpadded = {
        // Header and payload without padding, signed over the unpadded text: a valid
        // JWS, but not what an ALB sends.
        let h = URL_SAFE_NO_PAD.encode(header().to_string());
        let p = URL_SAFE_NO_PAD.encode(good_payload.to_string());
        let input = format!("{h}.{p}");
        let s = signer().signature(&input).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(s))
    };
    assert!(
        unpadded != good,
        "the payload must need padding for this case"
    );
    let expired_header = with(header(), "exp", json!(now() - 5));
    let expired_payload = with(good_payload.clone(), "exp", json!(now() - 5));
    let future_payload = with(good_payload.clone(), "nbf", json!(now() + 600));
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "a signer that is not configured",
            data(&with(header(), "signer", json!(OTHER_ARN)), &good_payload),
            401,
        ),
        (
            "an expired header exp (payload still valid)",
            data(&expired_header, &good_payload),
            401,
        ),
        (
            "no header exp",
            data(&with(header(), "exp", Value::Null), &good_payload),
            401,
        ),
        (
            "an expired payload exp",
            data(&header(), &expired_payload),
            401,
        ),
        (
            "a payload not valid yet",
            data(&header(), &future_payload),
            401,
        ),
        (
            "another issuer in the header",
            data(
                &with(header(), "iss", json!("https://evil.example")),
                &good_payload,
            ),
            401,
        ),
        (
            "another issuer in the payload",
            data(
                &header(),
                &with(good_payload.clone(), "iss", json!("https://evil.example")),
            ),
            401,
        ),
        (
            "another client",
            data(
                &with(header(), "client", json!("other-client")),
                &good_payload,
            ),
            401,
        ),
        (
            "RS256",
            data(&with(header(), "alg", json!("RS256")), &good_payload),
            401,
        ),
        (
            "none",
            data(&with(header(), "alg", json!("none")), &good_payload),
            401,
        ),
        (
            "crit",
            data(&with(header(), "crit", json!(["exp"])), &good_payload),
            401,
        ),
        ("an unpadded token", unpadded, 401),
        ("a DER signature", resigned(&der(&signature)), 401),
        (
            "another key's signature",
            other_signer().sign(&header(), &good_payload).unwrap(),
            401,
        ),
        (
            "a payload changed after signing",
            format!(
                "{}.{}.{}",
                parts[0],
                URL_SAFE.encode(payload("root", &["admins"]).to_string()),
                parts[2]
            ),
            401,
        ),
        (
            "no sub",
            data(&header(), &with(good_payload.clone(), "sub", Value::Null)),
            401,
        ),
        ("two parts", input.clone(), 401),
    ];
    for (what, value, want) in &cases {
        let (status, headers, _) = get(&gate.url("/app"), &[("x-amzn-oidc-data", value)]).await;
        assert_eq!(status, *want, "{what}");
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token"),
            "{what}: {headers:?}"
        );
    }
    // A DER signature is refused for its shape, before any curve arithmetic.
    let (_, headers, _) = get(
        &gate.url("/app"),
        &[("x-amzn-oidc-data", &resigned(&der(&signature)))],
    )
    .await;
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("64-byte JOSE R||S"), "{challenge}");
    // High S is as valid as low S: ALB does not normalise it.
    assert_eq!(
        status_of(&gate, "/app", &resigned(&high_s(&signature))).await,
        200
    );
    // A bearer token beside the header is two credentials: 400, whichever is valid.
    let both = status(
        &gate,
        "/app",
        &[
            ("x-amzn-oidc-data", good.as_str()),
            ("authorization", &bearer(key_a(), "bob", &[])),
        ],
    )
    .await;
    assert_eq!(both, 400);
    // Cognito tokens keep working beside ALB mode.
    assert_eq!(
        status(
            &gate,
            "/app",
            &[("authorization", &bearer(key_a(), "bob", &[]))]
        )
        .await,
        200
    );
    // Only the good requests reached the app.
    assert_eq!(upstream.count(), 3);
    assert_eq!(keys.fetches(), 1);
}

#[tokio::test]
async fn key_ids_are_uuids_fetched_once_and_a_failed_fetch_waits_out_the_cooldown() {
    let keys = KeyServer::start(false).await;
    let (gate, _upstream) = alb_gate(&keys, POLICY).await;
    let body = payload("alice", &[]);
    // Not a UUID: refused before any URL is built.
    for kid in ["../../admin", "4f1c2a3b5d6e4f708a91b2c3d4e5f607", "x?y=1"] {
        let value = data(&with(header(), "kid", json!(kid)), &body);
        assert_eq!(status_of(&gate, "/app", &value).await, 401, "{kid}");
    }
    assert_eq!(keys.fetches(), 0);

    // Twenty concurrent first requests: one fetch.
    let good = data(&header(), &body);
    let all =
        futures_util::future::join_all((0..20).map(|_| status_of(&gate, "/app", &good))).await;
    assert!(all.iter().all(|s| *s == 200), "{all:?}");
    assert_eq!(keys.fetches(), 1);

    // An unknown kid: 401 (the key server says it has no such key), one fetch, and
    // none again within the cooldown (1 s in these tests).
    let unknown = data(
        &with(
            header(),
            "kid",
            json!("00000000-0000-4000-8000-000000000000"),
        ),
        &body,
    );
    for _ in 0..3 {
        assert_eq!(status_of(&gate, "/app", &unknown).await, 401);
    }
    assert_eq!(keys.fetches(), 2);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(status_of(&gate, "/app", &unknown).await, 401);
    assert_eq!(keys.fetches(), 3);
}

#[tokio::test]
async fn a_key_server_in_trouble_is_our_fault() {
    let keys = KeyServer::start(true).await;
    let (gate, upstream) = alb_gate(&keys, POLICY).await;
    let good = data(&header(), &payload("alice", &[]));
    let (status, _, body) = get(&gate.url("/app"), &[("x-amzn-oidc-data", &good)]).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("keys_unavailable"), "{body}");
    assert_eq!(status_of(&gate, "/app", &good).await, 503);
    // One fetch, then the cooldown.
    assert_eq!(keys.fetches(), 1);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn claim_conditions_read_the_load_balancer_claims() {
    let keys = KeyServer::start(false).await;
    let policy = r#"
        [[rule]]
        path = "/tenants/{tenant}/**"
        allow = "authenticated"
        claims = { "custom:tenant" = "{tenant}" }
    "#;
    let (gate, _upstream) = alb_gate(&keys, policy).await;
    let acme = data(
        &header(),
        &with(payload("alice", &[]), "custom:tenant", json!("acme")),
    );
    assert_eq!(status_of(&gate, "/tenants/acme/x", &acme).await, 200);
    assert_eq!(status_of(&gate, "/tenants/globex/x", &acme).await, 403);
}

#[tokio::test]
async fn a_remembered_header_skips_the_signature_but_never_a_time_check() {
    let keys = KeyServer::start(false).await;
    let (gate, _upstream) = alb_gate(&keys, POLICY).await;
    let hits = || crate::common::process::metric(gate.admin, "cognito_gate_token_cache_hits_total");
    let alice = data(&header(), &payload("alice", &["admins"]));
    // The header's own exp ends soon, the payload's later; and the other way round.
    let short_header = data(
        &with(header(), "exp", json!(now() + 2)),
        &payload("alice", &["admins"]),
    );
    let short_payload = data(
        &header(),
        &with(payload("alice", &["admins"]), "exp", json!(now() + 2)),
    );
    for d in [&alice, &short_header, &short_payload] {
        assert_eq!(status_of(&gate, "/admin/x", d).await, 200);
    }
    let before = hits().await.unwrap_or(0.0);
    assert_eq!(status_of(&gate, "/admin/x", &alice).await, 200);
    assert_eq!(hits().await, Some(before + 1.0), "a repeat is remembered");

    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(status_of(&gate, "/admin/x", &short_header).await, 401);
    assert_eq!(status_of(&gate, "/admin/x", &short_payload).await, 401);
    // The payload's exp was checked on a hit; the header's before the cache was asked.
    assert_eq!(hits().await, Some(before + 2.0));
    assert_eq!(status_of(&gate, "/admin/x", &alice).await, 200);
    assert_eq!(keys.fetches(), 1);
    let entries =
        crate::common::process::metric(gate.admin, "cognito_gate_token_cache_entries").await;
    // alice and both short-lived headers; no bearer token was used.
    assert_eq!(entries, Some(3.0));
}

/// Every spelling of the load balancer's headers that the app saw.
fn alb_like(seen: &Seen) -> Vec<(String, String)> {
    [
        "x-amzn-oidc-identity",
        "x-amzn-oidc-accesstoken",
        "x-amzn-oidc-data",
    ]
    .iter()
    .flat_map(|name| seen.identity_like(name))
    .collect()
}

/// The names in an `/envoy` allow's `x-envoy-auth-headers-to-remove`.
fn envoy_removals(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get("x-envoy-auth-headers-to-remove")
        .map(|v| v.to_str().unwrap())
        .unwrap_or_default()
        .split(", ")
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn without_alb_mode_no_load_balancer_header_reaches_the_app() {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let text = config(&upstream.url(), &jwks.url(), "").replace(
        "[upstream]",
        "[authz]\nlisten = \"127.0.0.1:9191\"\n[upstream]",
    );
    let gate = Gate::start(&text, POLICY).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    // Not a load balancer's at all: anyone can write these, and an app written for an
    // ALB reads x-amzn-oidc-identity as the signed-in user.
    let forged_data = data(&header(), &payload("admin", &["admins"]));
    let forged = [
        ("x-amzn-oidc-identity", "admin"),
        ("X_Amzn_Oidc_Identity", "admin"),
        ("x.amzn.oidc.accesstoken", "forged"),
        ("x-amzn-oidc-accesstoken", "forged"),
        ("x-amzn-oidc-data", forged_data.as_str()),
        ("x_amzn_oidc_data", forged_data.as_str()),
    ];
    let alice = bearer(key_a(), "alice", &[]);
    for (path, token) in [("/public/x", None), ("/app", Some(alice.as_str()))] {
        let mut headers = forged.to_vec();
        headers.extend(token.map(|t| ("authorization", t)));
        let (status, _, _) = get(&gate.url(path), &headers).await;
        assert_eq!(status, 200, "{path}");
        let seen = upstream.last();
        assert_eq!(alb_like(&seen), Vec::new(), "{path}: {seen:?}");
    }

    // /envoy names the exact names and every forged spelling for removal.
    let (status, answer, _) = send(
        "GET",
        &format!("http://{}/envoy/public/x", gate.authz),
        &forged,
        full(""),
    )
    .await;
    assert_eq!(status, 200);
    let removed = envoy_removals(&answer);
    for name in [
        "x-amzn-oidc-identity",
        "x_amzn_oidc_identity",
        "x.amzn.oidc.accesstoken",
        "x-amzn-oidc-accesstoken",
        "x-amzn-oidc-data",
        "x_amzn_oidc_data",
    ] {
        assert!(removed.iter().any(|r| r == name), "{name} in {removed:?}");
    }
    // Envoy may not show the gate these headers at all: the exact names are listed
    // whatever the request had.
    let (_, answer, _) = get(&format!("http://{}/envoy/public/x", gate.authz), &[]).await;
    let removed = envoy_removals(&answer);
    for name in [
        "x-amzn-oidc-identity",
        "x-amzn-oidc-accesstoken",
        "x-amzn-oidc-data",
    ] {
        assert!(removed.iter().any(|r| r == name), "{name} in {removed:?}");
    }

    // /auth refuses the spellings a peer would pass on, and answers an empty
    // x-amzn-oidc-data for the peer to copy over the client's.
    let auth = format!("http://{}/auth", gate.authz);
    let original = [
        ("x-original-method", "GET"),
        ("x-original-uri", "/public/x"),
    ];
    for odd in [
        "x_amzn_oidc_identity",
        "x.amzn.oidc.data",
        "X-Amzn_Oidc-Accesstoken",
    ] {
        let mut headers = original.to_vec();
        headers.push((odd, "admin"));
        assert_eq!(get(&auth, &headers).await.0, 400, "{odd}");
    }
    let mut headers = original.to_vec();
    headers.push(("x-amzn-oidc-data", forged_data.as_str()));
    let (status, answer, _) = get(&auth, &headers).await;
    assert_eq!(status, 200);
    assert_eq!(answer["x-amzn-oidc-data"], "");
}

#[tokio::test]
async fn a_load_balancer_header_reaches_the_app_only_where_the_gate_verified_it() {
    let keys = KeyServer::start(false).await;
    let (gate, upstream) = alb_gate(&keys, POLICY).await;
    let alice = data(&header(), &payload("alice", &["admins"]));
    // Signed by an attacker's key, for the load balancer's signer: nothing checks it
    // on a public path, and many apps read only the payload's base64.
    let forged = other_signer()
        .sign(&header(), &payload("admin", &["admins"]))
        .unwrap();
    for value in [&forged, &alice] {
        let (status, _, _) = get(&gate.url("/public/x"), &[("x-amzn-oidc-data", value)]).await;
        assert_eq!(status, 200);
        let seen = upstream.last();
        assert_eq!(alb_like(&seen), Vec::new(), "{seen:?}");
    }
    // Where the rule needs an identity, the gate verified it: it reaches the app as
    // the load balancer sent it, and only that spelling.
    let (status, _, _) = get(
        &gate.url("/app"),
        &[("x-amzn-oidc-data", &alice), ("x_amzn_oidc_data", &forged)],
    )
    .await;
    assert_eq!(status, 200);
    let seen = upstream.last();
    assert_eq!(
        alb_like(&seen),
        vec![("x-amzn-oidc-data".to_owned(), alice.clone())]
    );
    assert_eq!(seen.header("x-user-sub").as_deref(), Some("alice"));
    // The forged one where a token is needed is refused outright.
    assert_eq!(status_of(&gate, "/app", &forged).await, 401);

    // /envoy: removed on the public path, kept where verified.
    let envoy = |path: &'static str, value: String| {
        let url = format!("http://{}/envoy{path}", gate.authz);
        async move { get(&url, &[("x-amzn-oidc-data", value.as_str())]).await }
    };
    let (status, answer, _) = envoy("/public/x", forged.clone()).await;
    assert_eq!(status, 200);
    assert!(envoy_removals(&answer).contains(&"x-amzn-oidc-data".to_owned()));
    let (status, answer, _) = envoy("/app", alice.clone()).await;
    assert_eq!(status, 200);
    let removed = envoy_removals(&answer);
    assert!(
        !removed.contains(&"x-amzn-oidc-data".to_owned()),
        "{removed:?}"
    );
    assert!(
        removed.contains(&"x-amzn-oidc-identity".to_owned()),
        "{removed:?}"
    );

    // /auth answers the verified header for the peer to copy, or an empty one.
    let auth = format!("http://{}/auth", gate.authz);
    let decide = |uri: &'static str, value: String| {
        let auth = auth.clone();
        async move {
            let headers = [
                ("x-original-method", "GET"),
                ("x-original-uri", uri),
                ("x-amzn-oidc-data", value.as_str()),
            ];
            get(&auth, &headers).await
        }
    };
    let (status, answer, _) = decide("/public/x", forged.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(answer["x-amzn-oidc-data"], "");
    let (status, answer, _) = decide("/app", alice.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(answer["x-amzn-oidc-data"], alice.as_str());
}

#[tokio::test]
async fn a_load_balancers_key_fetch_is_a_span_of_the_request_that_needed_it() {
    let receiver = crate::traces::Receiver::start().await;
    let keys = KeyServer::start(false).await;
    let table = format!("[tracing]\notlp_endpoint = \"{}\"\n", receiver.endpoint());
    let (gate, _upstream) = alb_gate_with(&keys, POLICY, &table).await;
    let alice = data(&header(), &payload("alice", &["admins"]));
    assert_eq!(
        status(&gate, "/admin/reports", &[("x-amzn-oidc-data", &alice)]).await,
        200
    );
    let server = receiver
        .span("the request's span", |s| s.name == "proxy GET")
        .await;
    assert_eq!(server.attr("cognito_gate.alb"), Some("eu-west-1"));
    assert_eq!(server.attr("cognito_gate.decision"), Some("allow"));
    let fetch = receiver
        .span("the key fetch's span", |s| s.name == "alb key fetch")
        .await;
    assert_eq!(fetch.parent_span_id, server.span_id);
    assert_eq!(fetch.trace_id, server.trace_id);
    assert_eq!(fetch.attr("cognito_gate.pool"), Some("alb:eu-west-1"));
    assert_eq!(
        fetch.attr("url.full"),
        Some(format!("http://{}/{KID}", keys.addr).as_str())
    );
    assert_eq!(fetch.attr("http.response.status_code"), Some("200"));
    assert_eq!(keys.fetches(), 1);
}
