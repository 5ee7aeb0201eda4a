//! gRPC apps behind the proxy: a real tonic server (grpc.health.v1) as the app, a real
//! tonic client as the caller, `upstream.protocol = "h2c"` and `"auto"`. Trailers
//! (where gRPC puts its status) pass; refusals reach the client as gRPC statuses.

use std::time::Duration;

use crate::common::*;
use tokio::net::TcpListener;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const GRPC_POLICY: &str = r#"
    [[rule]]
    name = "check"
    path = "/grpc.health.v1.Health/Check"
    methods = ["POST"]
    allow = "authenticated"

    [[rule]]
    name = "watch"
    path = "/grpc.health.v1.Health/Watch"
    methods = ["POST"]
    groups = ["admins"]

    [[rule]]
    name = "rest"
    path = "/**"
    allow = "anyone"
"#;

/// A gRPC app: tonic's health service, over h2c on loopback.
async fn grpc_app() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("orders", tonic_health::ServingStatus::Serving)
        .await;
    tokio::spawn(async move {
        let _keep = reporter;
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream_of(listener))
            .await
            .unwrap();
    });
    addr
}

async fn grpc_gate(upstream: &str, protocol: &str) -> Gate {
    let jwks = JwksServer::start(&[key_a()]).await;
    let text = config(upstream, &jwks.url(), "").replace(
        "[upstream]",
        &format!("[upstream]\nprotocol = \"{protocol}\""),
    );
    let gate = Gate::start(&text, GRPC_POLICY).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    std::mem::forget(jwks);
    gate
}

async fn health(
    gate: &Gate,
    token: Option<String>,
) -> HealthClient<
    tonic::service::interceptor::InterceptedService<
        Channel,
        impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone,
    >,
> {
    let channel = Channel::from_shared(format!("http://{}", gate.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
        if let Some(token) = &token {
            let value: MetadataValue<_> = token.parse().unwrap();
            req.metadata_mut().insert("authorization", value);
        }
        Ok(req)
    })
}

fn check(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.to_owned(),
    }
}

#[tokio::test]
async fn a_grpc_app_gets_allowed_calls_and_clients_understand_refusals() {
    let app = grpc_app().await;
    let gate = grpc_gate(&format!("http://{app}"), "h2c").await;
    let alice = bearer(key_a(), "alice", &["admins"]);
    let bob = bearer(key_a(), "bob", &[]);

    // Allowed: the app's answer, and its grpc-status trailer, reach the client (tonic
    // reports a missing status trailer as an error).
    let mut client = health(&gate, Some(bob.clone())).await;
    let answer = client.check(check("orders")).await.expect("allowed");
    assert_eq!(answer.into_inner().status, ServingStatus::Serving as i32);
    // The app's own error status passes through as it sent it.
    let unknown = client
        .check(check("nope"))
        .await
        .expect_err("unknown service");
    assert_eq!(unknown.code(), Code::NotFound);

    // No token: UNAUTHENTICATED, with the reason, not a protocol error.
    let mut anonymous = health(&gate, None).await;
    let refused = anonymous.check(check("orders")).await.expect_err("refused");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert_eq!(refused.message(), "no bearer token");
    let mut forged = health(&gate, Some("Bearer not.a.token".into())).await;
    let refused = forged.check(check("orders")).await.expect_err("refused");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    // Signed in but not in the group: PERMISSION_DENIED, on a streaming call too.
    let refused = client
        .watch(check("orders"))
        .await
        .expect_err("not an admin");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let mut admin = health(&gate, Some(alice)).await;
    let mut stream = admin
        .watch(check("orders"))
        .await
        .expect("admin")
        .into_inner();
    let first = stream
        .message()
        .await
        .expect("a message")
        .expect("not ended");
    assert_eq!(first.status, ServingStatus::Serving as i32);
}

#[tokio::test]
async fn auto_speaks_the_clients_protocol() {
    // An HTTP/2 gRPC client through "auto" reaches the h2c-only gRPC app...
    let app = grpc_app().await;
    let gate = grpc_gate(&format!("http://{app}"), "auto").await;
    let mut client = health(&gate, Some(bearer(key_a(), "bob", &[]))).await;
    let answer = client.check(check("orders")).await.expect("allowed");
    assert_eq!(answer.into_inner().status, ServingStatus::Serving as i32);

    // ...and an HTTP/1.1 client through "auto" reaches an HTTP/1.1 app as HTTP/1.1.
    let upstream = Upstream::start().await;
    let gate = grpc_gate(&upstream.url(), "auto").await;
    assert_eq!(raw_get(gate.addr, "/x", None).await, 200);
    assert_eq!(upstream.count(), 1);
}
