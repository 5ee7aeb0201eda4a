//! Envoy's gRPC ext_authz, spoken to by a real tonic client exactly as Envoy speaks
//! it: `CheckRequest` with the original method, path and headers (as `headers`, or as
//! `header_map` when Envoy sends raw values), over h2c; and `grpc.health.v1`.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::*;
use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

pub(crate) async fn channel(gate: &Gate) -> Channel {
    Channel::from_shared(format!("http://{}", gate.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

pub(crate) fn check_request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    raw: bool,
) -> CheckRequest {
    let mut http = HttpRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        ..Default::default()
    };
    let mut all: Vec<(String, String)> = vec![
        (":path".into(), path.into()),
        (":method".into(), method.into()),
        (":authority".into(), "app.test".into()),
    ];
    all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    if raw {
        http.header_map = Some(HeaderMap {
            headers: all
                .into_iter()
                .map(|(key, value)| HeaderValue {
                    key,
                    raw_value: value.into_bytes(),
                    ..Default::default()
                })
                .collect(),
        });
    } else {
        http.headers = all.into_iter().collect::<HashMap<_, _>>();
    }
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(http),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// The HTTP status Envoy would give the client, and the answer's headers as a map.
fn outcome(response: &CheckResponse) -> (u16, HashMap<String, String>, Vec<String>, String) {
    match &response.http_response {
        Some(HttpResponse::OkResponse(ok)) => {
            assert_eq!(response.status.as_ref().map(|s| s.code), Some(0));
            let headers = ok
                .headers
                .iter()
                .filter_map(|h| h.header.as_ref())
                .map(|h| (h.key.clone(), h.value.clone()))
                .collect();
            (200, headers, ok.headers_to_remove.clone(), String::new())
        }
        Some(HttpResponse::DeniedResponse(denied)) => {
            assert_ne!(response.status.as_ref().map(|s| s.code), Some(0));
            let headers = denied
                .headers
                .iter()
                .filter_map(|h| h.header.as_ref())
                .map(|h| (h.key.clone(), h.value.clone()))
                .collect();
            let status = denied.status.as_ref().map(|s| s.code).unwrap_or_default();
            (
                u16::try_from(status).unwrap(),
                headers,
                Vec::new(),
                denied.body.clone(),
            )
        }
        other => panic!("no http_response: {other:?}"),
    }
}

pub(crate) async fn check(
    client: &mut AuthorizationClient<Channel>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, HashMap<String, String>, Vec<String>, String) {
    let response = client
        .check(check_request(method, path, headers, false))
        .await
        .unwrap()
        .into_inner();
    outcome(&response)
}

/// A gate with the proxy, the HTTP decision endpoints and the gRPC service, and the
/// app it proxies to.
pub(crate) async fn grpc_gate(jwks: &str) -> (Gate, Upstream) {
    grpc_gate_with(jwks, "").await
}

/// The same, with `extra` at the configuration's top level.
pub(crate) async fn grpc_gate_with(jwks: &str, extra: &str) -> (Gate, Upstream) {
    let upstream = Upstream::start().await;
    let text = config(&upstream.url(), jwks, extra).replace(
        "[upstream]",
        "[authz]\nlisten = \"127.0.0.1:9191\"\ngrpc_listen = \"127.0.0.1:9192\"\n[upstream]",
    );
    (Gate::start(&text, &shipped_policy()).await, upstream)
}

#[tokio::test]
async fn grpc_decides_like_the_proxy_and_the_http_endpoints() {
    let jwks = JwksServer::start(&[key_a()]).await;
    let (gate, _upstream) = grpc_gate(&jwks.url()).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let mut client = AuthorizationClient::new(channel(&gate).await);
    let tokens = equivalence_tokens();
    for path in EQUIVALENCE_PATHS {
        for token in &tokens {
            let headers: Vec<(&str, &str)> = token
                .iter()
                .map(|t| ("authorization", t.as_str()))
                .collect();
            let proxied = raw_get(gate.addr, path, token.as_deref()).await;
            let envoy_http = get(&format!("http://{}/envoy{path}", gate.authz), &headers).await;
            let (grpc, grpc_headers, _, grpc_body) =
                check(&mut client, "GET", path, &headers).await;
            assert_eq!((grpc, envoy_http.0), (proxied, proxied), "{path} {token:?}");
            // The same challenge and JSON body as the HTTP endpoint.
            assert_eq!(
                grpc_headers.get("www-authenticate").map(String::as_str),
                envoy_http
                    .1
                    .get("www-authenticate")
                    .map(|v| v.to_str().unwrap()),
                "{path} {token:?}"
            );
            if grpc != 200 {
                // The same JSON body, each with its own request id.
                let mut bodies = [&grpc_body, &envoy_http.2]
                    .map(|b| serde_json::from_str::<serde_json::Value>(b).unwrap());
                for body in &mut bodies {
                    let id = body.as_object_mut().unwrap().remove("request_id");
                    assert!(id.is_some_and(|id| id.as_str().is_some_and(|s| s.len() == 32)));
                }
                assert_eq!(bodies[0], bodies[1], "{path} {token:?}");
            }
        }
    }
}

#[tokio::test]
async fn grpc_allows_with_identity_headers_and_names_forgeries_to_remove() {
    let jwks = JwksServer::start(&[key_a()]).await;
    let (gate, _upstream) = grpc_gate(&jwks.url()).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let mut client = AuthorizationClient::new(channel(&gate).await);
    let alice = bearer(key_a(), "alice", &["admins", "a,b"]);
    for raw in [false, true] {
        let request = check_request(
            "GET",
            "/admin/reports?year=2024",
            &[
                ("authorization", &alice),
                ("x.user.sub", "forged"),
                ("x-user-sub", "forged"),
            ],
            raw,
        );
        let response = client.check(request).await.unwrap().into_inner();
        let (status, headers, mut remove, _) = outcome(&response);
        assert_eq!(status, 200, "raw={raw}");
        assert_eq!(headers.get("x-user-sub").map(String::as_str), Some("alice"));
        assert_eq!(
            headers.get("x-user-groups").map(String::as_str),
            Some("admins,a%2Cb")
        );
        remove.sort();
        // x-user-sub itself is overwritten; the other spelling must go.
        assert_eq!(remove, with_alb_headers(&["x.user.sub"]), "raw={raw}");
        let Some(HttpResponse::OkResponse(ok)) = &response.http_response else {
            unreachable!()
        };
        assert!(
            ok.headers.iter().all(|h| h.append_action == 2),
            "overwrite, never append"
        );
    }
    // Anonymous on a public rule: no identity headers, and the canonical names removed.
    let (status, headers, mut remove, _) =
        check(&mut client, "GET", "/public/x", &[("x-user-sub", "forged")]).await;
    assert_eq!(status, 200);
    assert!(headers.is_empty(), "{headers:?}");
    remove.sort();
    assert_eq!(remove, with_alb_headers(&["x-user-groups", "x-user-sub"]));
}

#[tokio::test]
async fn grpc_refuses_what_the_http_endpoints_refuse() {
    let jwks = JwksServer::start(&[key_a()]).await;
    let (gate, _upstream) = grpc_gate(&jwks.url()).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let mut client = AuthorizationClient::new(channel(&gate).await);
    let reader = bearer(key_a(), "reader", &["finance"]);
    let auth = [("authorization", reader.as_str())];
    let cases: &[(&str, &str, u16)] = &[
        ("delete", "/reports/1", 400),
        ("DELETE", "/reports/1", 403),
        ("CONNECT", "/public/x", 405),
        ("GET", "/admin#x", 400),
        ("GET", "/ADMIN/x", 403),
        ("GET", "public/x", 400),
        ("POST", "/public/x?_method=DELETE", 400),
    ];
    for (method, path, want) in cases {
        let (status, headers, _, body) = check(&mut client, method, path, &auth).await;
        assert_eq!(status, *want, "{method} {path}: {body}");
        if path.contains("_method") {
            assert!(body.contains("method_override"), "{body}");
        }
        assert_eq!(
            headers.get("content-type").map(String::as_str),
            Some("application/json")
        );
    }
    let (status, _, _, _) = check(
        &mut client,
        "GET",
        "/public/x",
        &[("upgrade", "h2c"), ("connection", "upgrade")],
    )
    .await;
    assert_eq!(status, 400);
    // No request attributes at all.
    let empty = client
        .check(CheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcome(&empty).0, 400);
}

#[tokio::test]
async fn grpc_says_503_and_not_serving_without_keys() {
    let down = reserve_port().await;
    let (gate, _upstream) = grpc_gate(&format!(
        "http://{}/{POOL}/.well-known/jwks.json",
        down.addr
    ))
    .await;
    let ch = channel(&gate).await;
    let mut client = AuthorizationClient::new(ch.clone());
    let auth = bearer(key_a(), "a", &[]);
    let (status, _, _, body) =
        check(&mut client, "GET", "/app/x", &[("authorization", &auth)]).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("keys_unavailable"), "{body}");
    // Public rules need no keys.
    assert_eq!(check(&mut client, "GET", "/public/x", &[]).await.0, 200);

    let mut health = HealthClient::new(ch);
    for service in ["", "envoy.service.auth.v3.Authorization"] {
        let answer = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.status(), ServingStatus::NotServing, "{service:?}");
    }
}

#[tokio::test]
async fn grpc_health_reports_serving_once_keys_are_loaded() {
    let jwks = JwksServer::start(&[key_a()]).await;
    let (gate, _upstream) = grpc_gate(&jwks.url()).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let mut health = HealthClient::new(channel(&gate).await);
    let mut status = ServingStatus::Unknown;
    for _ in 0..40 {
        status = health
            .check(HealthCheckRequest::default())
            .await
            .unwrap()
            .into_inner()
            .status();
        if status == ServingStatus::Serving {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, ServingStatus::Serving);
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn grpc_refuses_untrusted_peers() {
    let jwks = JwksServer::start(&[key_a()]).await;
    let upstream = Upstream::start().await;
    let text = config(&upstream.url(), &jwks.url(), "").replace(
        "[upstream]",
        "[authz]\nlisten = \"127.0.0.1:9191\"\ngrpc_listen = \"127.0.0.1:9192\"\n\
         trusted_peers = [\"10.0.0.0/8\"]\n[upstream]",
    );
    let gate = Gate::start(&text, &shipped_policy()).await;
    let mut client = AuthorizationClient::new(channel(&gate).await);
    let refused = client
        .check(check_request("GET", "/public/x", &[], false))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
}

#[tokio::test]
async fn grpc_judges_the_host_envoy_names() {
    let jwks = JwksServer::start(&[key_a()]).await;
    let policy = "[[rule]]\nhost = \"admin.example.com\"\npath = \"/**\"\ngroups = [\"admins\"]\n\
                  [[rule]]\npath = \"/**\"\nallow = \"anyone\"\n";
    let text = authz_config(&jwks.url(), "grpc_listen = \"127.0.0.1:9192\"");
    let gate = Gate::start(&text, policy).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let client = AuthorizationClient::new(channel(&gate).await);
    let admin = bearer(key_a(), "alice", &["admins"]);
    let ask = |host: &'static str, auth: Option<String>| {
        let mut request = check_request("GET", "/x", &[], false);
        if let Some(http) = request
            .attributes
            .as_mut()
            .and_then(|a| a.request.as_mut())
            .and_then(|r| r.http.as_mut())
        {
            http.host = host.to_owned();
            if let Some(auth) = auth {
                http.headers.insert("authorization".into(), auth);
            }
        }
        let mut client = client.clone();
        async move { outcome(&client.check(request).await.unwrap().into_inner()).0 }
    };
    assert_eq!(ask("admin.example.com", None).await, 401);
    assert_eq!(ask("Admin.Example.com:443", None).await, 401);
    assert_eq!(ask("admin.example.com", Some(admin)).await, 200);
    assert_eq!(ask("www.example.com", None).await, 200);
    assert_eq!(ask("", None).await, 400);
}

#[tokio::test]
async fn grpc_health_turns_not_serving_when_the_drain_begins() {
    let jwks = JwksServer::start(&[key_a()]).await;
    let (mut gate, _upstream) = grpc_gate(&jwks.url()).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let mut health = HealthClient::new(channel(&gate).await);
    let mut watching = health
        .watch(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut status = ServingStatus::Unknown;
    while status != ServingStatus::Serving {
        status = watching.message().await.unwrap().unwrap().status();
    }
    let _drain = gate.shutdown();
    let next = tokio::time::timeout(Duration::from_secs(3), watching.message())
        .await
        .expect("no health change within 3 s of the drain")
        .unwrap()
        .unwrap();
    assert_eq!(next.status(), ServingStatus::NotServing);
}

/// A gate whose gRPC connections live 1 s (± 10 %), with 1 s of grace.
async fn short_lived_grpc_gate(jwks: &JwksServer) -> (Gate, Upstream) {
    let upstream = Upstream::start().await;
    let text = config(&upstream.url(), &jwks.url(), "").replace(
        "[upstream]",
        "[authz]\nlisten = \"127.0.0.1:9191\"\ngrpc_listen = \"127.0.0.1:9192\"\n\
         grpc_max_connection_age = \"1s\"\ngrpc_max_connection_age_grace = \"1s\"\n[upstream]",
    );
    let gate = Gate::start(&text, &shipped_policy()).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    (gate, upstream)
}

#[tokio::test]
async fn a_grpc_connection_is_sent_goaway_at_its_maximum_age() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let jwks = JwksServer::start(&[key_a()]).await;
    let (gate, _upstream) = short_lived_grpc_gate(&jwks).await;
    let mut stream = tokio::net::TcpStream::connect(gate.grpc).await.unwrap();
    let opened = std::time::Instant::now();
    // The client preface and an empty SETTINGS frame; then read frame by frame.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut goaway = None;
    loop {
        let mut head = [0u8; 9];
        if stream.read_exact(&mut head).await.is_err() {
            break;
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        if stream.read_exact(&mut payload).await.is_err() {
            break;
        }
        // GOAWAY is frame type 7 (RFC 9113 §6.8).
        if head[3] == 7 && goaway.is_none() {
            goaway = Some(opened.elapsed());
        }
    }
    let closed = opened.elapsed();
    let goaway = goaway.expect("the connection closed without a GOAWAY");
    assert!(
        goaway >= Duration::from_millis(850),
        "GOAWAY after {goaway:?}"
    );
    assert!(goaway < Duration::from_secs(4), "GOAWAY after {goaway:?}");
    assert!(closed >= goaway, "closed {closed:?}, GOAWAY {goaway:?}");
}

#[tokio::test]
async fn a_call_open_at_the_connection_age_gets_its_grace() {
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let jwks = JwksServer::start(&[key_a()]).await;
    let (gate, _upstream) = short_lived_grpc_gate(&jwks).await;
    let stream = tokio::net::TcpStream::connect(gate.grpc).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake::<_, _, Full<bytes::Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    let opened = std::time::Instant::now();
    let closed = tokio::spawn(async move {
        let _ = conn.await;
        opened.elapsed()
    });
    // A call that stays open across the age: a health Watch.
    let watch = http::Request::post(format!("http://{}/grpc.health.v1.Health/Watch", gate.grpc))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        // One gRPC message: uncompressed, zero bytes long (service "").
        .body(Full::new(bytes::Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let response = send.send_request(watch).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.data_ref().is_some_and(|d| d.len() > 5), "{first:?}");
    // The connection outlives its age (at most 1.1 s) by the grace, then is closed.
    let lived = tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect("the connection outlived its age and grace")
        .unwrap();
    assert!(
        lived >= Duration::from_millis(1700),
        "closed after {lived:?}"
    );
    drop(body);
}
