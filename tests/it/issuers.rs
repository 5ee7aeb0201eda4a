//! Any OpenID Connect issuer beside Cognito: keys found through discovery, ES256,
//! RS256 and PS256 as configured, `aud` against the audiences, groups from a dotted
//! claim path. One gate holds a Cognito pool, the development issuer (through its
//! discovery document) and a second, non-Cognito ES256 issuer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::common::*;
use cognito_gate_dev_issuer::{AlbSigner, DevIssuer};
use http::Response;
use serde_json::{json, Value};
use tokio::net::TcpListener;

fn ec_key() -> &'static AlbSigner {
    static K: OnceLock<AlbSigner> = OnceLock::new();
    K.get_or_init(|| AlbSigner::generate().unwrap())
}

/// A non-Cognito issuer on loopback: its discovery document at
/// `/.well-known/openid-configuration`, its keys (an ES256 key and an RSA key) at
/// `/keys`. While `lying`, the document names another issuer.
struct Keycloakish {
    issuer: String,
    lying: Arc<AtomicBool>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Keycloakish {
    async fn start() -> Keycloakish {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}/realms/main", listener.local_addr().unwrap());
        let lying = Arc::new(AtomicBool::new(false));
        let (iss, lie) = (issuer.clone(), lying.clone());
        let stop = spawn_server(listener, move |req| {
            let (iss, lie) = (iss.clone(), lie.clone());
            async move {
                let body = match req.uri().path() {
                    "/realms/main/.well-known/openid-configuration" => json!({
                        "issuer": if lie.load(Ordering::SeqCst) { "https://evil.example" } else { iss.as_str() },
                        "jwks_uri": format!("{iss}/keys"),
                    }),
                    "/realms/main/keys" => {
                        let mut rsa = key_b().jwk();
                        rsa["kid"] = json!("rsa-1");
                        json!({ "keys": [ec_key().jwk("ec-1"), rsa] })
                    }
                    _ => json!({}),
                };
                Response::new(full(body.to_string()))
            }
        });
        Keycloakish {
            issuer,
            lying,
            _stop: stop,
        }
    }

    fn claims(&self, sub: &str, aud: Value, roles: &[&str]) -> Value {
        json!({
            "iss": self.issuer, "sub": sub, "aud": aud, "azp": "web",
            "exp": now() + 300, "iat": now() - 5,
            "realm_access": { "roles": roles }, "scope": "openid profile",
        })
    }

    fn es256(&self, claims: &Value) -> String {
        let header = json!({ "alg": "ES256", "kid": "ec-1", "typ": "JWT" });
        format!("Bearer {}", ec_key().sign_jws(&header, claims).unwrap())
    }
}

/// The development issuer behind a real discovery endpoint: its discovery document
/// (naming the key set on this server) and its key set, where an OIDC issuer serves
/// them. The server lives as long as the returned stop handle.
async fn dev_issuer() -> (
    Arc<DevIssuer>,
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
) {
    let issuer = Arc::new(DevIssuer::new("eu-west-1_DevIssuer", "dev-client").unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = issuer.clone();
    let stop = spawn_server(listener, move |req| {
        let issuer = serving.clone();
        async move {
            let path = req.uri().path();
            let body = if path == issuer.discovery_path() {
                issuer.discovery_json(&format!("http://{addr}"))
            } else if path == issuer.jwks_path() {
                issuer.jwks_json()
            } else {
                return Response::builder().status(404).body(full("")).unwrap();
            };
            Response::builder()
                .header("content-type", "application/json")
                .body(full(body))
                .unwrap()
        }
    });
    (issuer, addr, stop)
}

async fn mixed_gate(
    kc: &Keycloakish,
    dev: &DevIssuer,
    dev_addr: std::net::SocketAddr,
) -> (Gate, Upstream) {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let text = format!(
        "{}\n\
         [[issuers]]\nissuer = \"{}\"\ndiscovery_url = \"http://{dev_addr}{}\"\naudiences = [\"dev-api\"]\ngroups_claim = \"cognito:groups\"\n\
         [[issuers]]\nissuer = \"{}\"\naudiences = [\"api\"]\nalgorithms = [\"ES256\", \"RS256\"]\ngroups_claim = \"realm_access.roles\"\n",
        config(&upstream.url(), &jwks.url(), "").replace(
            "[upstream]",
            "[authz]\nlisten = \"127.0.0.1:9191\"\n[upstream]"
        ),
        dev.issuer(),
        dev.discovery_path(),
        kc.issuer,
    );
    let gate = Gate::start(&text, POLICY).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    std::mem::forget(jwks);
    (gate, upstream)
}

#[tokio::test]
async fn a_cognito_pool_the_dev_issuer_and_a_keycloak_like_issuer_share_one_gate() {
    let kc = Keycloakish::start().await;
    let (dev, dev_addr, _serving) = dev_issuer().await;
    let (gate, upstream) = mixed_gate(&kc, &dev, dev_addr).await;
    let status = |auth: String, path: &'static str| {
        let url = gate.url(path);
        async move { get(&url, &[("authorization", auth.as_str())]).await.0 }
    };

    // The second issuer: ES256, groups from realm_access.roles.
    let admin = kc.es256(&kc.claims("kc-admin", json!("api"), &["admins"]));
    assert_eq!(status(admin.clone(), "/admin/x").await, 200);
    let seen = upstream.last();
    assert_eq!(seen.header("x-user-sub").as_deref(), Some("kc-admin"));
    assert_eq!(seen.header("x-user-groups").as_deref(), Some("admins"));
    // /auth decides the same token alike, for nginx.
    let (code, headers, _) = get(
        &format!("http://{}/auth", gate.authz),
        &[
            ("x-original-method", "GET"),
            ("x-original-uri", "/admin/x"),
            ("authorization", admin.as_str()),
        ],
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(headers["x-user-groups"], "admins");
    let user = kc.es256(&kc.claims("kc-user", json!(["other", "api"]), &["staff"]));
    assert_eq!(status(user.clone(), "/admin/x").await, 403);
    assert_eq!(status(user, "/app").await, 200);

    // The development issuer, found through its discovery document (RS256).
    let dev_token = dev
        .mint_with(
            "dev-user",
            &["admins"],
            &[("aud".into(), json!("dev-api"))],
            300,
        )
        .unwrap();
    assert_eq!(status(format!("Bearer {dev_token}"), "/admin/x").await, 200);
    assert_eq!(
        upstream.last().header("x-user-sub").as_deref(),
        Some("dev-user")
    );
    // The Cognito pool keeps working beside them.
    assert_eq!(
        status(bearer(key_a(), "alice", &["admins"]), "/admin/x").await,
        200
    );

    // What each issuer refuses.
    let ps_header = json!({ "alg": "PS256", "kid": "rsa-1" });
    let good = kc.claims("kc-user", json!("api"), &[]);
    let mut expired = good.clone();
    expired["exp"] = json!(now() - 10);
    let mut no_aud = good.clone();
    no_aud.as_object_mut().unwrap().remove("aud");
    let mut no_sub = good.clone();
    no_sub.as_object_mut().unwrap().remove("sub");
    let mut bad_roles = good.clone();
    bad_roles["realm_access"] = json!({ "roles": "admins,ops" });
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "another audience",
            kc.es256(&kc.claims("u", json!("other"), &[])),
            401,
        ),
        ("no aud", kc.es256(&no_aud), 401),
        ("expired", kc.es256(&expired), 401),
        ("no sub", kc.es256(&no_sub), 401),
        // RS256 is listed for this issuer, and its RSA key verifies it.
        (
            "RS256 with the RSA key",
            format!(
                "Bearer {}",
                key_b()
                    .sign(&json!({"alg": "RS256", "kid": "rsa-1"}), &good)
                    .unwrap()
            ),
            200,
        ),
        // PS256 is not listed; HS256 and none never are.
        (
            "PS256",
            format!("Bearer {}", key_b().sign(&ps_header, &good).unwrap()),
            401,
        ),
        (
            "HS256",
            kc.es256(&good)
                .replacen("eyJhbGciOiJFUzI1NiI", "eyJhbGciOiJIUzI1NiI", 1),
            401,
        ),
        // An ES256 token naming the RSA key: the key type must be the algorithm's.
        (
            "ES256 on an RSA key",
            format!(
                "Bearer {}",
                ec_key()
                    .sign_jws(&json!({"alg": "ES256", "kid": "rsa-1"}), &good)
                    .unwrap()
            ),
            401,
        ),
        // An RS256 token naming the EC key.
        (
            "RS256 on the EC key",
            format!(
                "Bearer {}",
                key_b()
                    .sign(&json!({"alg": "RS256", "kid": "ec-1"}), &good)
                    .unwrap()
            ),
            401,
        ),
        // A token signed by a key the issuer does not publish.
        (
            "another key",
            format!(
                "Bearer {}",
                AlbSigner::generate()
                    .unwrap()
                    .sign_jws(&json!({"alg": "ES256", "kid": "ec-1"}), &good)
                    .unwrap()
            ),
            401,
        ),
        // The Cognito pool's rules stay its own: ES256 is not accepted for it.
        (
            "ES256 for the Cognito pool",
            format!(
                "Bearer {}",
                ec_key()
                    .sign_jws(
                        &json!({"alg": "ES256", "kid": "key-a"}),
                        &access_claims("x", &[])
                    )
                    .unwrap()
            ),
            401,
        ),
        (
            "a groups claim that is not a list",
            kc.es256(&bad_roles),
            200,
        ),
    ];
    for (what, auth, want) in &cases {
        assert_eq!(status(auth.clone(), "/app").await, *want, "{what}");
    }
    // A single string is one group, never split: "admins,ops" is not admins.
    assert_eq!(status(kc.es256(&bad_roles), "/admin/x").await, 403);
    // Groups of another type make a bad token.
    let mut numeric = good.clone();
    numeric["realm_access"] = json!({ "roles": [1, 2] });
    assert_eq!(status(kc.es256(&numeric), "/app").await, 401);
}

#[tokio::test]
async fn a_discovery_document_for_another_issuer_gives_no_keys() {
    let kc = Keycloakish::start().await;
    kc.lying.store(true, Ordering::SeqCst);
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let text = format!(
        "{}\n[[issuers]]\nissuer = \"{}\"\naudiences = [\"api\"]\nalgorithms = [\"ES256\"]\n",
        config(&upstream.url(), &jwks.url(), ""),
        kc.issuer,
    );
    let gate = Gate::start(&text, POLICY).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ready, _, _) = get(&format!("http://{}/readyz", gate.admin), &[]).await;
    assert_eq!(ready, 503, "an issuer without keys is not ready");
    let token = kc.es256(&kc.claims("u", json!("api"), &[]));
    let (status, _, body) = get(&gate.url("/app"), &[("authorization", &token)]).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("keys_unavailable"), "{body}");
    // The Cognito pool is unaffected.
    assert_eq!(
        get(
            &gate.url("/app"),
            &[("authorization", &bearer(key_a(), "a", &[]))]
        )
        .await
        .0,
        200
    );
    // Once the same server's document names the right issuer, the next refetch (at
    // most one per cooldown, 1 s here) brings the keys: only the issuer was wrong.
    kc.lying.store(false, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, _) = get(&gate.url("/app"), &[("authorization", &token)]).await;
        if status == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ready, _, _) = get(&format!("http://{}/readyz", gate.admin), &[]).await;
    assert_eq!(ready, 200);
}
