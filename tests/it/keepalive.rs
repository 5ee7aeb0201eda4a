//! Keep-alive connections between requests. An idle HTTP/1 connection gives its
//! buffers back and is served again when its next bytes arrive (`src/http/connection.rs`):
//! each request must still be read whole, in order, and nothing that was part of a
//! message (a refused request's body) may ever be read as a request of its own.

use std::time::Duration;

use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads from `stream` until it closes or two seconds pass.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status codes of every response in `answer`, in order.
fn statuses(answer: &str) -> Vec<u16> {
    answer
        .match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| answer.get(at + 9..at + 12)?.parse().ok())
        .collect()
}

fn uris(upstream: &Upstream) -> Vec<String> {
    upstream.seen().into_iter().map(|s| s.uri).collect()
}

#[tokio::test]
async fn pipelined_requests_in_one_write_are_answered_in_order() {
    let (gate, upstream, _jwks) = stack().await;
    let mut stream = TcpStream::connect(gate.addr).await.unwrap();
    stream
        .write_all(
            b"GET /public/one HTTP/1.1\r\nHost: app.test\r\n\r\n\
              GET /app/two HTTP/1.1\r\nHost: app.test\r\n\r\n\
              GET /public/three HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert_eq!(statuses(&answer), [200, 401, 200], "{answer}");
    assert_eq!(uris(&upstream), ["/public/one", "/public/three"]);
}

#[tokio::test]
async fn a_connection_idle_between_requests_serves_each_of_them() {
    let (gate, upstream, _jwks) = stack().await;
    let alice = bearer(key_a(), "alice", &[]);
    let mut stream = TcpStream::connect(gate.addr).await.unwrap();
    let pause = Duration::from_millis(150);
    stream
        .write_all(b"GET /public/first HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(pause).await;
    // A head that arrives in pieces, the first while the connection is idle.
    stream.write_all(b"GET /app/sec").await.unwrap();
    tokio::time::sleep(pause).await;
    stream
        .write_all(
            format!("ond HTTP/1.1\r\nHost: app.test\r\nAuthorization: {alice}\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    tokio::time::sleep(pause).await;
    stream
        .write_all(b"GET /public/third HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert_eq!(statuses(&answer), [200, 200, 200], "{answer}");
    assert_eq!(
        uris(&upstream),
        ["/public/first", "/app/second", "/public/third"]
    );
    assert_eq!(
        upstream.seen()[1].header("x-user-sub").as_deref(),
        Some("alice")
    );
}

/// A request the gate refuses before reading its body, whose body is a whole request
/// for a path the app must never see.
fn refused_with_a_request_inside(padding: usize) -> (String, String) {
    let inside = "GET /public/smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n";
    let body = format!("{}{inside}", "x".repeat(padding));
    let head = format!(
        "POST /admin/x HTTP/1.1\r\nHost: app.test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    (head, body)
}

#[tokio::test]
async fn a_refused_body_sent_after_the_answer_is_never_read_as_a_request() {
    let (gate, upstream, _jwks) = stack().await;
    for padding in [0, 100_000] {
        let (head, body) = refused_with_a_request_inside(padding);
        let mut stream = TcpStream::connect(gate.addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        // The 401 is sent, and the connection is idle, before the body comes.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = stream.write_all(body.as_bytes()).await;
        let answer = read_until_closed(&mut stream).await;
        assert_eq!(statuses(&answer), [401], "padding {padding}: {answer}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(uris(&upstream).is_empty(), "{:?}", uris(&upstream));
}

#[tokio::test]
async fn a_refused_body_sent_with_its_head_is_skipped_and_the_next_request_served() {
    let (gate, upstream, _jwks) = stack().await;
    let (head, body) = refused_with_a_request_inside(10);
    let mut stream = TcpStream::connect(gate.addr).await.unwrap();
    stream
        .write_all(format!("{head}{body}").as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let _ = stream
        .write_all(b"GET /public/after HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        .await;
    let answer = read_until_closed(&mut stream).await;
    // hyper reads a small unread body to its end and keeps the connection; the next
    // request is then the one after the body, never the one inside it.
    let seen = uris(&upstream);
    assert!(!seen.iter().any(|u| u.contains("smuggled")), "{seen:?}");
    assert_eq!(statuses(&answer), [401, 200], "{answer}");
    assert_eq!(seen, ["/public/after"]);
}

#[tokio::test]
async fn bytes_sent_with_an_upgrade_request_reach_the_app_through_the_tunnel() {
    let (gate, upstream, _jwks) = stack_with(r#"allowed_upgrades = ["websocket", "foo"]"#).await;
    let mut stream = TcpStream::connect(gate.addr).await.unwrap();
    // The client speaks the new protocol before it has seen the 101.
    stream
        .write_all(
            b"GET /public/x HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\n\
              Upgrade: foo\r\n\r\nearly bytes",
        )
        .await
        .unwrap();
    let mut head = vec![0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    stream.write_all(b", later bytes").await.unwrap();
    let mut tunnelled = Vec::new();
    for _ in 0..40 {
        tunnelled = upstream.tunnelled();
        if tunnelled.len() >= b"early bytes, later bytes".len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(tunnelled, b"early bytes, later bytes");
}

#[tokio::test]
async fn the_drain_closes_an_idle_keep_alive_connection_at_once() {
    let (mut gate, _upstream, _jwks) = stack().await;
    let mut stream = TcpStream::connect(gate.addr).await.unwrap();
    stream
        .write_all(b"GET /public/x HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut stream).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let task = gate.shutdown();
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .expect("the drain waited for an idle connection")
        .unwrap();
}
