//! Injected faults: a key server and an app that misbehave the ways production ones
//! do, built from raw sockets on loopback, and SIGTERM under load. The gate must keep
//! serving with the keys it has, answer 503 only without keys, bound what it reads,
//! and never turn the app's failure into a silent success.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::process::{run_gate, signal};
use crate::common::*;

/// How the hostile key server answers its next connection.
#[derive(Clone, Copy, Debug, PartialEq)]
enum KeyFault {
    /// The real key set.
    Good,
    /// Headers at once, then the body one byte every 100 ms.
    Drip,
    /// A 50 MB body, as fast as the socket takes it.
    Huge,
    /// A redirect to itself.
    Redirect,
    /// HTML instead of JSON.
    NotJson,
    /// 500.
    ServerError,
    /// The connection closed without a word.
    Hangup,
    /// Good and not-JSON in turn, one each per connection.
    Flapping,
}

/// A key server that answers with `fault`, counting its connections and the body
/// bytes the gate accepted from it.
struct HostileKeys {
    addr: SocketAddr,
    fault: Arc<Mutex<KeyFault>>,
    connections: Arc<AtomicUsize>,
    written: Arc<AtomicUsize>,
}

impl HostileKeys {
    async fn start(good: String) -> HostileKeys {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fault = Arc::new(Mutex::new(KeyFault::Good));
        let connections = Arc::new(AtomicUsize::new(0));
        let written = Arc::new(AtomicUsize::new(0));
        let (f, c, w) = (fault.clone(), connections.clone(), written.clone());
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let n = c.fetch_add(1, Ordering::SeqCst);
                let mut fault = *f.lock().unwrap();
                if fault == KeyFault::Flapping {
                    fault = if n % 2 == 0 {
                        KeyFault::Good
                    } else {
                        KeyFault::NotJson
                    };
                }
                tokio::spawn(answer_keys(conn, fault, good.clone(), addr, w.clone()));
            }
        });
        HostileKeys {
            addr,
            fault,
            connections,
            written,
        }
    }

    fn set(&self, fault: KeyFault) {
        *self.fault.lock().unwrap() = fault;
    }

    fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }
}

async fn answer_keys(
    mut conn: TcpStream,
    fault: KeyFault,
    good: String,
    addr: SocketAddr,
    written: Arc<AtomicUsize>,
) {
    if read_head(&mut conn).await.is_none() {
        return;
    }
    let reply = |status: &str, length: usize| {
        format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n")
    };
    match fault {
        KeyFault::Good | KeyFault::Flapping => {
            let _ = conn.write_all(reply("200 OK", good.len()).as_bytes()).await;
            let _ = conn.write_all(good.as_bytes()).await;
        }
        KeyFault::Drip => {
            let _ = conn.write_all(reply("200 OK", good.len()).as_bytes()).await;
            for b in good.as_bytes() {
                if conn.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        KeyFault::Huge => {
            let total = 50 * 1024 * 1024;
            let _ = conn.write_all(reply("200 OK", total).as_bytes()).await;
            let chunk = vec![b' '; 64 * 1024];
            let mut sent = 0;
            while sent < total {
                match conn.write(&chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        sent += n;
                        written.fetch_add(n, Ordering::SeqCst);
                    }
                }
            }
        }
        KeyFault::Redirect => {
            let _ = conn
                .write_all(
                    format!(
                        "HTTP/1.1 302 Found\r\nLocation: http://{addr}/jwks.json\r\nContent-Length: 0\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .await;
        }
        KeyFault::NotJson => {
            let body = "<html><body>Service Unavailable</body></html>";
            let _ = conn.write_all(reply("200 OK", body.len()).as_bytes()).await;
            let _ = conn.write_all(body.as_bytes()).await;
        }
        KeyFault::ServerError => {
            let _ = conn
                .write_all(reply("500 Internal Server Error", 2).as_bytes())
                .await;
            let _ = conn.write_all(b"{}").await;
        }
        KeyFault::Hangup => {}
    }
    // Close after one answer, so each fetch is a new connection the fault applies to.
    let _ = conn.shutdown().await;
}

#[tokio::test]
async fn a_hostile_key_server_never_costs_the_keys_already_held() {
    let keys = HostileKeys::start(jwks_json(&[key_a()])).await;
    let upstream = Upstream::start().await;
    let text = config(&upstream.url(), &keys.url(), "").replace(
        "unknown_kid_cooldown = \"1s\"",
        "unknown_kid_cooldown = \"1s\"\nfetch_timeout = \"500ms\"",
    );
    let gate = Gate::start(&text, POLICY).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let known = bearer(key_a(), "alice", &[]);
    let unknown = bearer(key_b(), "mallory", &[]);
    let ask = |token: String| {
        let url = gate.url("/app/x");
        async move { get(&url, &[("authorization", &token)]).await.0 }
    };
    assert_eq!(ask(known.clone()).await, 200);

    for fault in [
        KeyFault::Drip,
        KeyFault::Huge,
        KeyFault::Redirect,
        KeyFault::NotJson,
        KeyFault::ServerError,
        KeyFault::Hangup,
    ] {
        keys.set(fault);
        // Past the cooldown, so that the unknown kid makes the gate fetch again.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let before = keys.connections.load(Ordering::SeqCst);
        let started = Instant::now();
        // The refetch fails, so the gate cannot tell whether the kid exists: ours.
        assert_eq!(ask(unknown.clone()).await, 503, "{fault:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{fault:?}: the failed fetch took {:?} (fetch_timeout is 500ms)",
            started.elapsed()
        );
        assert_eq!(
            keys.connections.load(Ordering::SeqCst),
            before + 1,
            "{fault:?}: one fetch, and a redirect is not followed"
        );
        // The keys already held keep serving, and the gate stays ready.
        assert_eq!(ask(known.clone()).await, 200, "{fault:?}");
        let ready = get(&format!("http://{}/readyz", gate.admin), &[]).await.0;
        assert_eq!(ready, 200, "{fault:?}");
    }
    // Memory stays bounded: the gate stopped reading the 50 MB body at
    // jwks.max_response_bytes (64 KiB); what was written beyond that sits in the
    // loopback socket buffers, a few MiB at most.
    let written = keys.written.load(Ordering::SeqCst);
    assert!(
        written < 16 * 1024 * 1024,
        "the gate took {written} bytes of the 50 MB body"
    );

    // A flapping key server, good and broken in turn: after a good answer the unknown
    // kid is really unknown (401), after a broken one the gate cannot tell (503), and
    // the held key never stops serving.
    keys.set(KeyFault::Flapping);
    let mut seen = Vec::new();
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        seen.push(ask(unknown.clone()).await);
        assert_eq!(ask(known.clone()).await, 200, "round {round}");
    }
    assert!(seen.contains(&401) && seen.contains(&503), "{seen:?}");
    assert!(seen.iter().all(|s| *s == 401 || *s == 503), "{seen:?}");
}

#[tokio::test]
async fn a_key_server_that_does_not_speak_tls_leaves_the_gate_unready_with_503() {
    // Plain HTTP where the URL says https: the TLS handshake fails.
    let keys = HostileKeys::start(jwks_json(&[key_a()])).await;
    let upstream = Upstream::start().await;
    let url = format!("https://{}/jwks.json", keys.addr);
    let gate = Gate::start(&config(&upstream.url(), &url, ""), POLICY).await;
    let attempted = || keys.connections.load(Ordering::SeqCst) > 0;
    for _ in 0..100 {
        if attempted() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(attempted(), "the gate never tried the key server");
    let ready = get(&format!("http://{}/readyz", gate.admin), &[]).await.0;
    assert_eq!(ready, 503);
    let (status, _, body) = get(
        &gate.url("/app/x"),
        &[("authorization", &bearer(key_a(), "alice", &[]))],
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("keys_unavailable"), "{body}");
}

/// How the hostile app answers.
#[derive(Clone, Copy)]
enum AppFault {
    /// Headers promising 1,000 bytes, 10 of them, then a reset.
    ResetMidBody,
    /// 4 chunks of 5 bytes, 300 ms apart.
    SlowBody,
    /// A close-delimited body, then the app half-closes and keeps reading.
    HalfClose,
    /// A 503 of its own, with its own body.
    Unavailable,
}

async fn hostile_app(fault: AppFault) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                if read_head(&mut conn).await.is_none() {
                    return;
                }
                match fault {
                    AppFault::ResetMidBody => {
                        let _ = conn
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
                            .await;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        // SO_LINGER 0: the close is a reset, as a crashed app's is.
                        // (Deprecated because a non-zero linger blocks on drop; zero
                        // does not.)
                        #[allow(deprecated)]
                        let _ = conn.set_linger(Some(Duration::ZERO));
                        drop(conn);
                    }
                    AppFault::SlowBody => {
                        let _ = conn
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n")
                            .await;
                        for part in ["slow-", "body-", "still", "-done"] {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            let _ = conn.write_all(part.as_bytes()).await;
                        }
                    }
                    AppFault::HalfClose => {
                        let _ = conn
                            .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
                            .await;
                        let _ = conn.shutdown().await;
                        let mut rest = Vec::new();
                        let _ = conn.read_to_end(&mut rest).await;
                    }
                    AppFault::Unavailable => {
                        let body = "the app is down for maintenance";
                        let _ = conn
                            .write_all(
                                format!(
                                    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
                                     Retry-After: 30\r\nContent-Length: {}\r\n\r\n{body}",
                                    body.len()
                                )
                                .as_bytes(),
                            )
                            .await;
                    }
                }
            });
        }
    });
    addr
}

/// The answer on a raw connection: the head, and the body bytes that arrived before
/// the gate ended the connection, which it must do within 5 s (an app that failed
/// mid-body must not leave the client waiting for bytes that will never come).
async fn answer_until_closed(gate: &Gate, token: &str) -> (String, Vec<u8>) {
    let mut conn = TcpStream::connect(gate.addr).await.unwrap();
    conn.write_all(
        format!("GET /app/x HTTP/1.1\r\nHost: app.test\r\nAuthorization: {token}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut all = Vec::new();
    // Ok or a reset both mean the gate ended it; only the timeout is a failure.
    let ended = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut all)).await;
    assert!(ended.is_ok(), "the connection was left open: {all:?}");
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    (head, all[split + 4..].to_vec())
}

#[tokio::test]
async fn the_apps_failures_reach_the_client_as_failures() {
    let jwks = JwksServer::start(&[key_a()]).await;
    let alice = bearer(key_a(), "alice", &[]);
    let gate_for = |app: SocketAddr| {
        let text = config(&format!("http://{app}"), &jwks.url(), "");
        async move {
            let gate = Gate::start(&text, POLICY).await;
            gate.wait_ready(Duration::from_secs(10)).await;
            gate
        }
    };

    // Reset mid-body: the client must not receive a complete-looking response.
    let gate = gate_for(hostile_app(AppFault::ResetMidBody).await).await;
    let (head, body) = answer_until_closed(&gate, &alice).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-length: 1000"),
        "{head}"
    );
    assert_eq!(
        body, b"0123456789",
        "the truncated body ends where the app's did"
    );

    // A slow body streams through whole: request_timeout covers the headers only.
    let gate = gate_for(hostile_app(AppFault::SlowBody).await).await;
    let started = Instant::now();
    let (status, _, body) = get(&gate.url("/app/x"), &[("authorization", &alice)]).await;
    assert_eq!((status, body.as_str()), (200, "slow-body-still-done"));
    assert!(started.elapsed() >= Duration::from_millis(900));

    // An app that half-closes after a close-delimited body: all of it arrives (the
    // gate re-frames it, chunked, for a kept-alive client).
    let gate = gate_for(hostile_app(AppFault::HalfClose).await).await;
    let (status, _, body) = get(&gate.url("/app/x"), &[("authorization", &alice)]).await;
    assert_eq!((status, body.as_str()), (200, "until the end"));

    // The app's own 503 is passed on as it is, not replaced by ours.
    let gate = gate_for(hostile_app(AppFault::Unavailable).await).await;
    let (status, headers, body) = get(&gate.url("/app/x"), &[("authorization", &alice)]).await;
    assert_eq!(
        (status, body.as_str()),
        (503, "the app is down for maintenance")
    );
    assert_eq!(headers.get("retry-after").unwrap(), "30");
}

#[tokio::test]
async fn sigterm_under_load_loses_no_request_already_accepted() {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let (gate, listen, _admin) = run_gate("sigterm-load", &upstream, &jwks, "").await;
    let alice = bearer(key_a(), "alice", &[]);
    // 40 requests to an app path that answers after a second, all in flight.
    let requests: Vec<_> = (0..40)
        .map(|_| {
            let token = alice.clone();
            tokio::spawn(async move {
                get(
                    &format!("http://{listen}/slow"),
                    &[("authorization", &token)],
                )
                .await
            })
        })
        .collect();
    for _ in 0..100 {
        if upstream.count() >= 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(upstream.count(), 40, "every request reached the app");
    signal(gate.pid(), "TERM");
    for request in requests {
        let (status, _, body) = request.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let (exit, _) = gate.stop().await;
    assert!(exit.success(), "{exit:?}");
    // And nothing new is accepted once it has gone.
    assert!(TcpStream::connect(listen).await.is_err());
}
