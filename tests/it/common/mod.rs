//! Real parts for integration tests: a JWKS server with real RSA keys that counts its
//! fetches, an upstream that records exactly what it received, the gate on port 0,
//! and small HTTP clients (one of them raw TCP, for paths no client library sends).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod pki;
pub mod process;

use cognito_gate::{Clock, Config, Listeners, Policy};
use cognito_gate_dev_issuer::SigningKey;

pub type Body = BoxBody<Bytes, Infallible>;

pub const POOL: &str = "eu-central-1_GateTest1";
pub const ISS: &str = "https://cognito-idp.eu-central-1.amazonaws.com/eu-central-1_GateTest1";
pub const CLIENT: &str = "test-client";

/// An Envoy removal list, sorted: `names` plus the load balancer's three headers,
/// which a gate not in ALB mode never verified and so always names for removal.
pub fn with_alb_headers(names: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = [
        "x-amzn-oidc-accesstoken",
        "x-amzn-oidc-data",
        "x-amzn-oidc-identity",
    ]
    .iter()
    .chain(names)
    .map(|s| s.to_string())
    .collect();
    all.sort();
    all
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Two RSA keys shared by all tests of a binary (key generation is the slow part).
pub fn key_a() -> &'static SigningKey {
    static K: OnceLock<SigningKey> = OnceLock::new();
    K.get_or_init(|| SigningKey::generate("key-a").unwrap())
}

pub fn key_b() -> &'static SigningKey {
    static K: OnceLock<SigningKey> = OnceLock::new();
    K.get_or_init(|| SigningKey::generate("key-b").unwrap())
}

/// Claims of a valid access token for `sub` in `groups`.
pub fn access_claims(sub: &str, groups: &[&str]) -> Value {
    json!({
        "sub": sub, "iss": ISS, "token_use": "access", "client_id": CLIENT,
        "exp": now() + 600, "iat": now() - 5, "cognito:groups": groups, "username": sub,
    })
}

pub fn token(key: &SigningKey, claims: &Value) -> String {
    key.sign(&json!({ "kid": key.kid(), "alg": "RS256" }), claims)
        .unwrap()
}

pub fn bearer(key: &SigningKey, sub: &str, groups: &[&str]) -> String {
    format!("Bearer {}", token(key, &access_claims(sub, groups)))
}

pub fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

/// Serves `handler` with hyper's HTTP/1 server until the returned sender is dropped.
pub fn spawn_server<H, F>(listener: TcpListener, handler: H) -> oneshot::Sender<()>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let (stop, mut stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req| {
                            let answer = handler(req);
                            async move { Ok::<_, Infallible>(answer.await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .with_upgrades()
                            .await;
                    });
                }
            }
        }
    });
    stop
}

/// A JWKS endpoint: serves whatever key set it holds, or 500 when set to fail.
pub struct JwksServer {
    pub addr: SocketAddr,
    fetches: Arc<AtomicUsize>,
    body: Arc<Mutex<String>>,
    /// Milliseconds each answer waits before it is sent.
    delay_ms: Arc<AtomicUsize>,
    _stop: oneshot::Sender<()>,
}

impl JwksServer {
    pub async fn start(keys: &[&SigningKey]) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        JwksServer::serve(listener, jwks_json(keys))
    }

    /// Starts listening on a port reserved earlier (see [`reserve_port`]).
    pub async fn start_on(port: Reserved, body: String) -> JwksServer {
        JwksServer::serve(port.socket.listen(64).unwrap(), body)
    }

    fn serve(listener: TcpListener, body: String) -> JwksServer {
        let addr = listener.local_addr().unwrap();
        let fetches = Arc::new(AtomicUsize::new(0));
        let body = Arc::new(Mutex::new(body));
        let delay_ms = Arc::new(AtomicUsize::new(0));
        let (f, b, d) = (fetches.clone(), body.clone(), delay_ms.clone());
        let stop = spawn_server(listener, move |req: Request<Incoming>| {
            let (f, b, d) = (f.clone(), b.clone(), d.clone());
            async move {
                if req.uri().path() != format!("/{POOL}/.well-known/jwks.json") {
                    return Response::builder().status(404).body(full("")).unwrap();
                }
                f.fetch_add(1, Ordering::SeqCst);
                let wait = d.load(Ordering::SeqCst) as u64;
                tokio::time::sleep(Duration::from_millis(wait)).await;
                let text = b.lock().unwrap().clone();
                Response::builder()
                    .header("content-type", "application/json")
                    .body(full(text))
                    .unwrap()
            }
        });
        JwksServer {
            addr,
            fetches,
            body,
            delay_ms,
            _stop: stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/{POOL}/.well-known/jwks.json", self.addr)
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    pub fn set_keys(&self, keys: &[&SigningKey]) {
        *self.body.lock().unwrap() = jwks_json(keys);
    }

    /// Makes every later answer wait `delay` before it is sent.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as usize, Ordering::SeqCst);
    }

    pub fn set_body(&self, body: &str) {
        *self.body.lock().unwrap() = body.to_owned();
    }
}

pub fn jwks_json(keys: &[&SigningKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() }).to_string()
}

/// Reads one request head from a raw connection, byte by byte so that nothing after
/// it is consumed; `None` when the peer closes first.
pub async fn read_head(conn: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).await.unwrap_or(0) == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// A loopback port that is bound but not listening: connections to it are refused,
/// and no other test can take it until it is dropped or starts listening.
pub struct Reserved {
    pub addr: SocketAddr,
    socket: tokio::net::TcpSocket,
}

pub async fn reserve_port() -> Reserved {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    Reserved {
        addr: socket.local_addr().unwrap(),
        socket,
    }
}

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// Every header name that folds to `name` (case, `-`, `_`, `.`), with its values.
    pub fn identity_like(&self, name: &str) -> Vec<(String, String)> {
        let fold = |s: &str| s.to_ascii_lowercase().replace(['_', '.'], "-");
        self.headers
            .iter()
            .filter(|(k, _)| fold(k.as_str()) == fold(name))
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect()
    }
}

/// An app that records every request. Routes: `/ws` (WebSocket echo), `/upload`
/// (answers the byte count of the streamed body), `/download?bytes=N` (streams N
/// bytes), `/slow` (answers after one second), `/missing` (404), anything else: 200 "ok".
/// Like Hypercorn, it accepts any other upgrade it is offered (`h2c` included) on any
/// path, answers 101, and records every byte that then arrives on the tunnel.
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    tunnelled: Arc<Mutex<Vec<u8>>>,
    _stop: oneshot::Sender<()>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let tunnelled = Arc::new(Mutex::new(Vec::new()));
        let (s, t) = (seen.clone(), tunnelled.clone());
        let stop = spawn_server(listener, move |req| {
            upstream_handler(req, s.clone(), t.clone())
        });
        Upstream {
            addr,
            seen,
            tunnelled,
            _stop: stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the upstream saw no request")
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Every byte that reached the app on a non-WebSocket upgraded connection.
    pub fn tunnelled(&self) -> Vec<u8> {
        self.tunnelled.lock().unwrap().clone()
    }
}

async fn upstream_handler(
    mut req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    tunnelled: Arc<Mutex<Vec<u8>>>,
) -> Response<Body> {
    seen.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        uri: req.uri().to_string(),
        headers: req.headers().clone(),
    });
    let offered = req
        .headers()
        .get("upgrade")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    if let Some(protocol) = offered.filter(|_| req.uri().path() != "/ws") {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut io = TokioIo::new(upgraded);
            let mut buf = [0u8; 4096];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                tunnelled.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", protocol)
            .header("connection", "upgrade")
            .body(full(""))
            .unwrap();
    }
    match req.uri().path() {
        "/ws" => {
            let key = req
                .headers()
                .get("sec-websocket-key")
                .map(|k| k.as_bytes().to_vec())
                .unwrap_or_default();
            let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(upgraded) = upgrade.await else { return };
                let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    tokio_tungstenite::tungstenite::protocol::Role::Server,
                    None,
                )
                .await;
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("upgrade", "websocket")
                .header("connection", "upgrade")
                .header("sec-websocket-accept", accept)
                .body(full(""))
                .unwrap()
        }
        "/upload" => {
            let mut body = req.into_body();
            let mut total: u64 = 0;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.unwrap().into_data() {
                    total += data.len() as u64;
                }
            }
            Response::new(full(total.to_string()))
        }
        "/download" => {
            let n: usize = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("bytes="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let frames = futures_util::stream::iter((0..n.div_ceil(chunk.len())).map(move |i| {
                let len = chunk.len().min(n - i * chunk.len());
                Ok::<_, Infallible>(Frame::data(chunk.slice(..len)))
            }));
            Response::new(BodyExt::boxed(StreamBody::new(frames)))
        }
        "/missing" => Response::builder()
            .status(404)
            .body(full("no such page"))
            .unwrap(),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Response::new(full("slow done"))
        }
        _ => Response::new(full("ok")),
    }
}

/// A running gate.
pub struct Gate {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The decision listener (used when the config sets `authz.listen`).
    pub authz: SocketAddr,
    /// The gRPC decision listener (used when the config sets `authz.grpc_listen`).
    pub grpc: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Gate {
    /// Starts the gate with `config` (TOML) and `policy` (TOML), at `clock`.
    pub async fn start_with_clock(config: &str, policy: &str, clock: Clock) -> Gate {
        let config = Config::from_toml(config).unwrap_or_else(|e| panic!("{e}"));
        let policy = Policy::from_toml(policy).unwrap_or_else(|e| panic!("{e}"));
        let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authz = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, admin_addr) = (proxy.local_addr().unwrap(), admin.local_addr().unwrap());
        let authz_addr = authz.local_addr().unwrap();
        let grpc_addr = grpc.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let listeners = Listeners {
                proxy_socket: None,
                proxy: Some(proxy),
                admin,
                authz: Some(authz),
                grpc: Some(grpc),
            };
            cognito_gate::run(config, policy, listeners, clock, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Gate {
            addr,
            admin: admin_addr,
            authz: authz_addr,
            grpc: grpc_addr,
            stop: Some(stop),
            task,
        }
    }

    pub async fn start(config: &str, policy: &str) -> Gate {
        Gate::start_with_clock(config, policy, Clock::System).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Polls `/readyz` until it answers 200, for at most `limit`.
    pub async fn wait_ready(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let (status, _, _) = get(&format!("http://{}/readyz", self.admin), &[]).await;
            if status == 200 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the gate never became ready"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Signals shutdown and returns the task, which ends once draining is done.
    pub fn shutdown(&mut self) -> &mut JoinHandle<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        &mut self.task
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The config of a gate in front of `upstream`, trusting the pool whose JWKS is at `jwks`.
pub fn config(upstream: &str, jwks: &str, extra: &str) -> String {
    format!(
        r#"
        shutdown_timeout = "5s"
        {extra}
        [upstream]
        url = "{upstream}"
        request_timeout = "5s"
        [[pools]]
        user_pool_id = "{POOL}"
        client_ids = ["{CLIENT}"]
        jwks_url = "{jwks}"
        [jwks]
        unknown_kid_cooldown = "1s"
        "#
    )
}

/// A decision-only gate: no upstream, decisions for the pool whose JWKS is at `jwks`.
pub fn authz_config(jwks: &str, authz_extra: &str) -> String {
    format!(
        r#"
        [authz]
        listen = "127.0.0.1:9191"
        {authz_extra}
        [[pools]]
        user_pool_id = "{POOL}"
        client_ids = ["{CLIENT}"]
        jwks_url = "{jwks}"
        [jwks]
        unknown_kid_cooldown = "1s"
        "#
    )
}

/// The policy shipped in `config/policy.toml`.
pub fn shipped_policy() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/policy.toml")).unwrap()
}

pub const POLICY: &str = r#"
    [[rule]]
    name = "public"
    path = "/public/**"
    allow = "anyone"

    [[rule]]
    name = "admin"
    path = "/admin/**"
    groups = ["admins"]

    [[rule]]
    name = "app"
    path = "/**"
    allow = "authenticated"
"#;

/// An upstream, a JWKS server with key A, and a ready gate using [`POLICY`].
pub async fn stack() -> (Gate, Upstream, JwksServer) {
    stack_with("").await
}

pub async fn stack_with(extra: &str) -> (Gate, Upstream, JwksServer) {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let gate = Gate::start(&config(&upstream.url(), &jwks.url(), extra), POLICY).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    (gate, upstream, jwks)
}

fn client() -> Client<HttpConnector, Body> {
    static C: OnceLock<Client<HttpConnector, Body>> = OnceLock::new();
    C.get_or_init(|| Client::builder(TokioExecutor::new()).build_http())
        .clone()
}

/// Sends a request with `headers` and `body`; returns status, headers and the body.
pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> (u16, HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client().request(req.body(body).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap, String) {
    send("GET", url, headers, Empty::new().boxed()).await
}

/// Sends `request` as raw bytes and returns the status code and the whole answer.
pub async fn raw(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, text)
}

/// A raw `GET path` with an optional Authorization header, on a closing connection.
pub async fn raw_get(addr: SocketAddr, path: &str, authorization: Option<&str>) -> u16 {
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n{auth}Connection: close\r\n\r\n"),
    )
    .await
    .0
}

/// The paths of the equivalence checks: every way in must answer these alike.
pub const EQUIVALENCE_PATHS: [&str; 5] = [
    "/admin/x",
    "/public/x",
    "/reports/1",
    "/%61dmin/x",
    "/public/../admin",
];

/// The `Authorization` values of the equivalence checks: none, an admin, a user in no
/// group, and a malformed token.
pub fn equivalence_tokens() -> [Option<String>; 4] {
    [
        None,
        Some(bearer(key_a(), "a", &["admins"])),
        Some(bearer(key_a(), "b", &[])),
        Some("Bearer x.y.z".to_owned()),
    ]
}

/// A listener as the stream of connections tonic's server takes.
pub fn tokio_stream_of(
    listener: TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(s, _)| s);
        Some((accepted, listener))
    })
}
