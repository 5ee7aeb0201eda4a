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
