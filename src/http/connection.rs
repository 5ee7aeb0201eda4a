//! One accepted connection, from its first byte to its close: HTTP/1.1 or h2c (told
//! apart by the HTTP/2 preface), the idle watchdog's bookkeeping, upgrades, and the
//! drain.
//!
//! hyper parses and frames every message. What this module adds is how an idle
//! HTTP/1 connection is held: hyper keeps an 8 KiB read buffer and an 8 KiB write
//! buffer for the whole life of a connection, and has no setting to release them. So
//! an HTTP/1 connection is served in *passes*: one hyper connection serves requests
//! until it is idle at a message boundary (a response finished and flushed, the next
//! read would block), then it is closed gracefully in hyper's own idle state and taken
//! apart, and the socket waits for its next bytes holding no buffer at all, as nginx
//! frees a keep-alive connection's request buffers. The bytes hyper had already read
//! past the message go to the next pass first, so pipelined requests are answered in
//! order; anything but that clean idle close ends the connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::{header, Request, Response, StatusCode};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{oneshot, watch};

use super::answer::{BoxError, GateBody};
use super::socket::Socket;
use crate::backoff::spread;
use crate::config::ConnectionAge;

/// The connection preface every HTTP/2 client with prior knowledge (h2c) sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How a listener's connections are served (built once per listener).
pub(super) struct Protocols {
    pub(super) http1: http1::Builder,
    pub(super) http2: http2::Builder<TokioExecutor>,
    /// How long an HTTP/2 connection is served before its GOAWAY (the gRPC listener's
    /// `authz.grpc_max_connection_age`).
    pub(super) http2_age: Option<ConnectionAge>,
}

/// The client side of an upgraded HTTP/1.1 connection (WebSocket and the like): the
/// socket, with any bytes the client sent after its request first.
pub type ClientTunnel = Prefixed<Socket>;

/// Put in the extensions of an HTTP/1.1 request that asks for an upgrade: resolves to
/// the client's side once the response `101 Switching Protocols` has been sent.
/// (Extensions must be `Clone`; the receiver is taken once.)
#[derive(Clone)]
pub struct ClientUpgrade(Arc<Mutex<Option<oneshot::Receiver<ClientTunnel>>>>);

impl ClientUpgrade {
    /// Takes the request's upgrade, if its connection is served here.
    pub fn take<B>(req: &mut Request<B>) -> Option<ClientUpgrade> {
        req.extensions_mut().remove::<ClientUpgrade>()
    }

    /// The client's side of the connection, or `None` if no `101` was sent.
    pub async fn socket(self) -> Option<ClientTunnel> {
        let receive = self.0.lock().ok()?.take()?;
        receive.await.ok()
    }
}

/// Completes, with the grace period, once a connection has been served for its
/// maximum age (spread by ±10 %, so that connections opened together do not all go
/// together); never without one.
async fn aged(age: Option<ConnectionAge>) -> Duration {
    match age {
        Some(ConnectionAge { age, grace }) => {
            tokio::time::sleep(spread(age, 0.1)).await;
            grace
        }
        None => std::future::pending().await,
    }
}

/// Completes once the drain has begun.
async fn drained(drain: &mut watch::Receiver<bool>) {
    let _ = drain.wait_for(|d| *d).await;
}

/// Serves one accepted connection to its end: until the client closes it, an error, an
/// upgrade, or the drain (`drain` turning true), with `handler` answering each request.
pub(super) async fn serve<H: Handler<P>, P: PeerName>(
    stream: Socket,
    peer: P,
    protocols: &Protocols,
    handler: H,
    activity: Arc<Activity>,
    mut drain: watch::Receiver<bool>,
) {
    let service = Answering {
        handler: Arc::new(handler),
        peer: peer.clone(),
        activity: activity.clone(),
    };
    // Under TLS the handshake chose the protocol; in the clear, the first bytes tell.
    let (first, h2) = match stream.negotiated_h2() {
        Some(h2) => (Bytes::new(), h2),
        None => match first_bytes(&stream, &mut drain).await {
            Some(told) => told,
            None => return,
        },
    };
    // A TLS stream may hold the client's first request already (sent with its last
    // handshake message): the first pass starts at once, without waiting.
    let mut wait = stream.negotiated_h2().is_none();
    if h2 {
        let io = TokioIo::new(Prefixed::new(first, stream, activity));
        // Boxed, so that an HTTP/1 connection's task is not sized for it.
        let mut conn = Box::pin(protocols.http2.serve_connection(io, service));
        let ended = tokio::select! {
            ended = conn.as_mut() => ended,
            () = drained(&mut drain) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
            grace = aged(protocols.http2_age) => {
                // GOAWAY: the client opens its next calls on a new connection, which
                // may land on another replica; calls in progress get `grace`.
                tracing::debug!(%peer, "connection reached its maximum age; sending GOAWAY");
                conn.as_mut().graceful_shutdown();
                match tokio::time::timeout(grace, conn.as_mut()).await {
                    Ok(ended) => ended,
                    Err(_) => {
                        tracing::debug!(%peer, "calls still open after the connection age's grace; closing");
                        Ok(())
                    }
                }
            }
        };
        if let Err(e) = ended {
            tracing::debug!(%peer, error = %e, "connection closed with an error");
        }
        return;
    }

    let mut stream = stream;
    let mut pending = first;
    loop {
        if pending.is_empty() && wait {
            // Between requests the connection holds no buffer: it waits for bytes.
            tokio::select! {
                biased;
                () = drained(&mut drain) => {
                    let _ = stream.shutdown().await;
                    return;
                }
                ready = stream.readable() => if ready.is_err() { return },
            }
        }
        let io = TokioIo::new(Prefixed::new(pending, stream, activity.clone()));
        let pass = Pass::new(
            protocols.http1.serve_connection(io, service.clone()),
            &activity,
        );
        let mut pass = std::pin::pin!(pass);
        let ended = tokio::select! {
            ended = pass.as_mut() => ended,
            () = drained(&mut drain) => {
                pass.as_mut().drain();
                pass.await
            }
        };
        match ended {
            Ended::Idle(parts) => {
                let (rest, socket) = parts.io.into_inner().into_parts(parts.read_buf);
                pending = rest;
                stream = socket;
                // The pass ended on a read that would block: nothing is held back.
                wait = true;
            }
            Ended::Upgraded(parts) => {
                let (rest, socket) = parts.io.into_inner().into_parts(parts.read_buf);
                let tunnel = Prefixed::new(rest, socket, activity.clone());
                activity.hand_over(tunnel);
                return;
            }
            Ended::Closed(parts) => {
                // What the client sent past the end is dropped with the connection.
                let mut socket = parts.io.into_inner().inner;
                let _ = socket.shutdown().await;
                return;
            }
            Ended::Failed(e) => {
                tracing::debug!(%peer, error = %e, "connection closed with an error");
                return;
            }
        }
    }
}

/// Waits for the connection's first bytes and tells HTTP/2 with prior knowledge from
/// HTTP/1: `None` if the client closed, or the drain began, before it could be told.
async fn first_bytes(stream: &Socket, drain: &mut watch::Receiver<bool>) -> Option<(Bytes, bool)> {
    let mut read = BytesMut::new();
    loop {
        tokio::select! {
            biased;
            () = drained(drain) => return None,
            ready = stream.readable() => ready.ok()?,
        }
        let mut chunk = [0u8; 1024];
        match stream.try_read_plain(&mut chunk)? {
            Ok(0) => return None,
            Ok(n) => read.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => return None,
        }
        let seen = read.len().min(H2_PREFACE.len());
        if read[..seen] != H2_PREFACE[..seen] {
            return Some((read.freeze(), false));
        }
        if seen == H2_PREFACE.len() {
            return Some((read.freeze(), true));
        }
    }
}

/// hyper's HTTP/1 connection over the socket, and what it hands back.
type Http1<H, P> = http1::Connection<TokioIo<Prefixed<Socket>>, Answering<H, P>>;
type Http1Parts<H, P> = http1::Parts<TokioIo<Prefixed<Socket>>, Answering<H, P>>;

/// How one pass of an HTTP/1 connection ended.
enum Ended<H, P> {
    /// Closed by us in hyper's idle state, at a message boundary: the connection goes
    /// on, with `read_buf` as the start of the next request.
    Idle(Http1Parts<H, P>),
    /// A `101` was sent: the socket belongs to the tunnel.
    Upgraded(Http1Parts<H, P>),
    /// hyper closed it (the client asked to, HTTP/1.0, an unread body, the drain).
    Closed(Http1Parts<H, P>),
    Failed(hyper::Error),
}

/// One hyper HTTP/1 connection over the socket, polled until it ends or is idle.
struct Pass<H: Handler<P>, P: PeerName> {
    conn: Option<Box<Http1<H, P>>>,
    activity: Arc<Activity>,
    /// Requests finished on the connection before this pass began.
    finished_before: u64,
    /// Whether the idle close was tried (it is tried once).
    tried: bool,
    draining: bool,
}

impl<H: Handler<P>, P: PeerName> Pass<H, P> {
    fn new(conn: Http1<H, P>, activity: &Arc<Activity>) -> Self {
        activity.passes.fetch_add(1, Ordering::Relaxed);
        Pass {
            conn: Some(Box::new(conn)),
            activity: activity.clone(),
            finished_before: activity.finished.load(Ordering::Relaxed),
            tried: false,
            draining: false,
        }
    }

    /// The drain began: hyper closes the connection once it is idle, and the response
    /// in progress, if any, says `Connection: close`.
    fn drain(self: Pin<&mut Self>) {
        let this = self.get_mut();
        this.draining = true;
        if let Some(conn) = this.conn.as_mut() {
            Pin::new(&mut **conn).graceful_shutdown();
        }
    }

    fn end(&mut self, result: hyper::Result<()>, idle: bool) -> Poll<Ended<H, P>> {
        let Some(conn) = self.conn.take() else {
            return Poll::Pending;
        };
        if let Err(e) = result {
            return Poll::Ready(Ended::Failed(e));
        }
        let parts = conn.into_parts();
        Poll::Ready(if self.activity.upgraded.load(Ordering::Relaxed) {
            Ended::Upgraded(parts)
        } else if idle {
            Ended::Idle(parts)
        } else {
            Ended::Closed(parts)
        })
    }
}

impl<H: Handler<P>, P: PeerName> Future for Pass<H, P> {
    type Output = Ended<H, P>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Ended<H, P>> {
        let this = self.get_mut();
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Pending;
        };
        if let Poll::Ready(result) = conn.poll_without_shutdown(cx) {
            return this.end(result, false);
        }
        if this.tried || this.draining || !this.activity.may_release(this.finished_before) {
            return Poll::Pending;
        }
        // Everything answered and flushed, and the next read would block. hyper closes
        // a connection on a graceful shutdown only in its idle state (between
        // messages); anywhere else it merely stops keeping it alive. An idle close
        // ends the connection in this very poll, reading nothing: only then is what
        // hyper buffered the start of the next request.
        this.tried = true;
        this.activity.reads.store(0, Ordering::Relaxed);
        Pin::new(&mut **conn).graceful_shutdown();
        match conn.poll_without_shutdown(cx) {
            Poll::Ready(result) => {
                let idle = this.activity.reads.load(Ordering::Relaxed) == 0;
                this.end(result, idle)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Who is at the other end of a connection, as handlers get it and logs name it.
pub(crate) trait PeerName:
    Clone + std::fmt::Display + Send + Sync + Unpin + 'static
{
}

impl<P: Clone + std::fmt::Display + Send + Sync + Unpin + 'static> PeerName for P {}

/// What answers a connection's requests.
pub(super) trait Handler<P>:
    Fn(Request<Incoming>, P) -> <Self as Handler<P>>::Answer + Send + Sync + 'static
{
    type Answer: Future<Output = Response<GateBody>> + Send + 'static;
}

impl<H, F, P> Handler<P> for H
where
    H: Fn(Request<Incoming>, P) -> F + Send + Sync + 'static,
    F: Future<Output = Response<GateBody>> + Send + 'static,
{
    type Answer = F;
}

/// The hyper service of one connection: counts each request in flight, gives an
/// upgrade request its [`ClientUpgrade`], and notes a `101`.
pub(super) struct Answering<H, P> {
    handler: Arc<H>,
    peer: P,
    activity: Arc<Activity>,
}

impl<H, P: Clone> Clone for Answering<H, P> {
    fn clone(&self) -> Self {
        Answering {
            handler: self.handler.clone(),
            peer: self.peer.clone(),
            activity: self.activity.clone(),
        }
    }
}

impl<H: Handler<P>, P: PeerName> Service<Request<Incoming>> for Answering<H, P> {
    type Response = Response<Tracked>;
    type Error = std::convert::Infallible;
    type Future = Answer<H::Answer>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let busy = Busy::start(self.activity.clone());
        if req.version() == http::Version::HTTP_11 && req.headers().contains_key(header::UPGRADE) {
            let (send, receive) = oneshot::channel();
            self.activity.await_upgrade(send);
            req.extensions_mut()
                .insert(ClientUpgrade(Arc::new(Mutex::new(Some(receive)))));
        }
        Answer {
            // hyper keeps the slot for a request's future for the connection's whole
            // life: boxed, the slot is a pointer, freed when the answer is done.
            answer: Box::pin((self.handler)(req, self.peer.clone())),
            busy: Some(busy),
        }
    }
}

/// A request's answer in progress.
pub(super) struct Answer<F> {
    answer: Pin<Box<F>>,
    busy: Option<Busy>,
}

impl<F: Future<Output = Response<GateBody>>> Future for Answer<F> {
    type Output = Result<Response<Tracked>, std::convert::Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = std::task::ready!(self.answer.as_mut().poll(cx));
        let Some(busy) = self.busy.take() else {
            return Poll::Pending;
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            busy.0.upgraded.store(true, Ordering::Relaxed);
        }
        Poll::Ready(Ok(response.map(|inner| Tracked { inner, _busy: busy })))
    }
}

/// What a connection is doing: how many requests are between a complete head and the
/// end of their response, when that last changed, and what its socket last did.
pub(super) struct Activity {
    origin: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `origin` to the last request start or finish.
    last_change_ms: AtomicU64,
    /// Requests whose response is done.
    finished: AtomicU64,
    /// hyper connections the socket has been served by (one per idle period, for
    /// HTTP/1).
    passes: AtomicU64,
    /// Whether the socket's last read would block, and its last write.
    read_blocked: AtomicBool,
    write_blocked: AtomicBool,
    /// Reads since the idle close was tried.
    reads: AtomicU64,
    /// A `101` was answered; the upgrade request's side of the tunnel waits here.
    upgraded: AtomicBool,
    upgrade: Mutex<Option<oneshot::Sender<ClientTunnel>>>,
}

impl Activity {
    pub(super) fn new() -> Self {
        Activity {
            origin: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_change_ms: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            passes: AtomicU64::new(0),
            read_blocked: AtomicBool::new(false),
            write_blocked: AtomicBool::new(false),
            reads: AtomicU64::new(0),
            upgraded: AtomicBool::new(false),
            upgrade: Mutex::new(None),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_change_ms.store(ms, Ordering::Relaxed);
    }

    /// Whether an HTTP/1 pass may be closed as idle: a request finished in it, none is
    /// in flight, the last write completed and the last read would block.
    fn may_release(&self, finished_before: u64) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
            && self.finished.load(Ordering::Relaxed) > finished_before
            && self.read_blocked.load(Ordering::Relaxed)
            && !self.write_blocked.load(Ordering::Relaxed)
    }

    fn await_upgrade(&self, send: oneshot::Sender<ClientTunnel>) {
        if let Ok(mut slot) = self.upgrade.lock() {
            *slot = Some(send);
        }
    }

    fn hand_over(&self, tunnel: ClientTunnel) {
        let send = self.upgrade.lock().ok().and_then(|mut slot| slot.take());
        if let Some(send) = send {
            let _ = send.send(tunnel);
        }
    }

    /// Completes once the connection has had no request in flight for `limit`: from
    /// accept until the first complete request head, and between requests. This holds
    /// for HTTP/1 and HTTP/2 alike, so a client that sends nothing, a byte, half a
    /// preface, or only SETTINGS cannot hold a connection.
    pub(super) async fn idle_for(&self, limit: Duration) {
        let mut wait = limit;
        loop {
            tokio::time::sleep(wait).await;
            if self.in_flight.load(Ordering::Relaxed) > 0 {
                wait = limit;
                continue;
            }
            let since = Duration::from_millis(self.last_change_ms.load(Ordering::Relaxed));
            let idle = self.origin.elapsed().saturating_sub(since);
            if idle >= limit {
                return;
            }
            wait = limit - idle;
        }
    }
}

/// One request in flight on a connection, from its complete head until its response
/// body is finished or dropped.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.touch();
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.finished.fetch_add(1, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted as in flight until it is done.
pub struct Tracked {
    inner: GateBody,
    _busy: Busy,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A socket with bytes already read from it in front, which notes for the idle close
/// whether its last read would block and its last write completed.
pub struct Prefixed<T> {
    prefix: Bytes,
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Prefixed<T> {
    fn new(prefix: Bytes, inner: T, activity: Arc<Activity>) -> Self {
        Prefixed {
            prefix,
            inner,
            activity,
        }
    }

    /// The unread bytes (`read`, which hyper read first, then the rest of the prefix)
    /// and the socket. The bytes are copied out: `read` is a view of hyper's whole
    /// read buffer, which would otherwise stay allocated while the connection idles.
    fn into_parts(self, read: Bytes) -> (Bytes, T) {
        let rest = if read.is_empty() && self.prefix.is_empty() {
            Bytes::new()
        } else {
            let mut both = BytesMut::with_capacity(read.len() + self.prefix.len());
            both.extend_from_slice(&read);
            both.extend_from_slice(&self.prefix);
            both.freeze()
        };
        (rest, self.inner)
    }

    fn wrote<R>(&self, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        self.activity
            .write_blocked
            .store(poll.is_pending(), Ordering::Relaxed);
        poll
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.activity.reads.fetch_add(1, Ordering::Relaxed);
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            this.activity.read_blocked.store(false, Ordering::Relaxed);
            return Poll::Ready(Ok(()));
        }
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.activity
            .read_blocked
            .store(poll.is_pending(), Ordering::Relaxed);
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.wrote(poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::answer::full_body;
    use hyper_util::rt::TokioTimer;
    use std::net::SocketAddr;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    fn protocols() -> Protocols {
        let mut http1 = http1::Builder::new();
        http1.timer(TokioTimer::new());
        Protocols {
            http1,
            http2: http2::Builder::new(TokioExecutor::new()),
            http2_age: None,
        }
    }

    async fn path_app(req: Request<Incoming>, _peer: SocketAddr) -> Response<GateBody> {
        Response::new(full_body(req.uri().path().to_owned()))
    }

    async fn version_app(req: Request<Incoming>, _peer: SocketAddr) -> Response<GateBody> {
        Response::new(full_body(format!("{:?}", req.version())))
    }

    /// Serves one connection with an app that answers each request with its path,
    /// sends `writes` with a pause after each, and returns what came back and the
    /// connection's activity once it ended.
    async fn exchange(writes: &[&[u8]]) -> (String, Arc<Activity>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let activity = Arc::new(Activity::new());
        let watched = activity.clone();
        let server = tokio::spawn(async move {
            let (stream, peer) = listener.accept().await.unwrap();
            let (_drain, draining) = watch::channel(false);
            let stream = Socket::Tcp(stream);
            serve(stream, peer, &protocols(), path_app, watched, draining).await;
        });
        let mut client = TcpStream::connect(addr).await.unwrap();
        for write in writes {
            client.write_all(write).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        server.await.unwrap();
        (String::from_utf8_lossy(&answer).into_owned(), activity)
    }

    #[tokio::test]
    async fn an_idle_connection_is_served_by_a_new_pass_for_each_request() {
        let (answer, activity) = exchange(&[
            b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET /two HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET /thr",
            b"ee HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ])
        .await;
        let bodies: Vec<&str> = answer.split("\r\n\r\n").skip(1).collect();
        assert_eq!(answer.matches("HTTP/1.1 200").count(), 3, "{answer}");
        assert!(bodies[0].starts_with("/oneHTTP/1.1"), "{answer}");
        assert!(bodies[1].starts_with("/twoHTTP/1.1"), "{answer}");
        assert_eq!(bodies[2], "/three", "{answer}");
        // Each request found the connection idle, holding no hyper connection.
        assert_eq!(activity.passes.load(Ordering::Relaxed), 3);
        assert_eq!(activity.finished.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn pipelined_requests_stay_in_one_pass() {
        let (answer, activity) = exchange(&[b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"])
        .await;
        assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{answer}");
        assert!(answer.ends_with("/b"), "{answer}");
        assert_eq!(activity.passes.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn http2_with_prior_knowledge_is_told_from_http1() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, peer) = listener.accept().await.unwrap();
            let (_drain, draining) = watch::channel(false);
            let activity = Arc::new(Activity::new());
            let stream = Socket::Tcp(stream);
            serve(stream, peer, &protocols(), version_app, activity, draining).await;
        });
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http2::handshake::<
            _,
            _,
            http_body_util::Empty<Bytes>,
        >(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = Request::get(format!("http://{addr}/x"))
            .body(http_body_util::Empty::new())
            .unwrap();
        let response = send.send_request(req).await.unwrap();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(body, "HTTP/2.0");
    }
}
