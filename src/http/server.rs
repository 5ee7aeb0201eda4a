//! The accept loop shared by every listener: HTTP/1.1 and h2c on one port, a header
//! size limit (431 beyond it), a connection limit, an idle watchdog, HTTP/2 keep-alive
//! pings, and graceful shutdown that stops accepting at once and drains open
//! connections up to a deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{watch, Semaphore};

use super::answer::GateBody;
use super::connection::{self, Activity, PeerName, Protocols};
use super::socket::{Peer, Socket};
use super::workers::Workers;
use crate::config::ConnectionAge;
use crate::tls::ServerTls;

/// TLS on one listener: the pair it serves now, and where its failed handshakes are
/// counted.
#[derive(Clone)]
pub struct ListenerTls {
    pub tls: Arc<ServerTls>,
    pub handshake_errors: prometheus_client::metrics::counter::Counter,
}

/// Connections the admin listener accepts on its own budget, so that `/healthz` and
/// `/readyz` still answer when the proxy and decision listeners are full.
pub const ADMIN_CONNECTIONS: usize = 32;

/// File descriptors kept for everything but client connections: the listeners, the
/// key fetches, the log, the runtime, and the admin listener's connections.
const RESERVED_FDS: u64 = 64 + ADMIN_CONNECTIONS as u64;

/// The most client connections a default limit allows, whatever the fd limit.
const MAX_DEFAULT_CONNECTIONS: u64 = 1 << 20;

/// The default `max_connections` for a soft file-descriptor limit of `fd_limit`: what
/// is left after [`RESERVED_FDS`], halved when proxying, because each client
/// connection may hold one connection to the app as well.
pub fn default_max_connections(fd_limit: u64, proxying: bool) -> usize {
    let spare = fd_limit.saturating_sub(RESERVED_FDS);
    let per_connection = if proxying { 2 } else { 1 };
    let n = (spare / per_connection).clamp(16, MAX_DEFAULT_CONNECTIONS);
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The process's soft limit on open files, if it can be read.
pub fn fd_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own and reads nothing else.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    ok.then_some(limit.rlim_cur)
}

/// Raises the soft limit on open files to the hard limit, as Go and nginx
/// (`worker_rlimit_nofile`) do: a server's connections should be bounded by
/// `max_connections`, not by a shell's default of 1024. Returns the new soft limit.
pub fn raise_fd_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as above; setrlimit only reads the struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    Some(limit.rlim_cur)
}

/// A bound socket the accept loop takes connections from: TCP, or the proxy's Unix
/// socket.
pub(crate) trait Listen: Send + 'static {
    /// What a handler is told of the other end.
    type Peer: PeerName;
    /// An accepted connection on its way to a worker's runtime.
    type Accepted: Send + 'static;
    fn accept(&self) -> impl Future<Output = std::io::Result<(Self::Accepted, Self::Peer)>> + Send;
    /// The connection, on the worker's runtime.
    fn adopt(accepted: Self::Accepted) -> std::io::Result<Socket>;
    /// The listener, as the log names it.
    fn name(&self) -> String;
}

impl Listen for TcpListener {
    type Peer = SocketAddr;
    type Accepted = std::net::TcpStream;

    async fn accept(&self) -> std::io::Result<(std::net::TcpStream, SocketAddr)> {
        let (stream, peer) = TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        // The socket leaves this runtime's reactor here and joins the worker's there.
        Ok((stream.into_std()?, peer))
    }

    fn adopt(accepted: std::net::TcpStream) -> std::io::Result<Socket> {
        TcpStream::from_std(accepted).map(Socket::Tcp)
    }

    fn name(&self) -> String {
        self.local_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string())
    }
}

/// `listen = "unix:/path"`: the proxy's Unix socket, whose peers are named by its path.
pub struct UnixSocketListener {
    pub listener: UnixListener,
    pub path: Arc<str>,
}

impl Listen for UnixSocketListener {
    type Peer = Peer;
    type Accepted = std::os::unix::net::UnixStream;

    async fn accept(&self) -> std::io::Result<(Self::Accepted, Peer)> {
        let (stream, _) = self.listener.accept().await?;
        Ok((stream.into_std()?, Peer::Unix(self.path.clone())))
    }

    fn adopt(accepted: Self::Accepted) -> std::io::Result<Socket> {
        UnixStream::from_std(accepted).map(Socket::Unix)
    }

    fn name(&self) -> String {
        format!("unix:{}", self.path)
    }
}

/// Per-listener connection settings.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub shutdown_timeout: Duration,
    pub http2_keep_alive_interval: Duration,
    pub http2_keep_alive_timeout: Duration,
    /// The gRPC listener's `authz.grpc_max_connection_age`; `None` elsewhere.
    pub http2_connection_age: Option<ConnectionAge>,
}

/// Connections each development server (the demo's app and issuer, `dev-issuer`)
/// accepts: enough for the keep-alive pools of the gates, nginx and Envoy that a load
/// test puts in front of the demo's app.
#[cfg(feature = "dev")]
pub const DEVELOPMENT_CONNECTIONS: usize = 4096;

#[cfg(feature = "dev")]
impl ServerOptions {
    /// The settings of the development servers (demo app, demo and dev issuer).
    pub fn development() -> Self {
        ServerOptions {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            shutdown_timeout: Duration::from_secs(1),
            http2_keep_alive_interval: Duration::from_secs(20),
            http2_keep_alive_timeout: Duration::from_secs(20),
            http2_connection_age: None,
        }
    }
}

/// Serves `listener` until `shutdown` changes (or its sender is dropped), then drains.
/// Returns once every connection closed or the deadline passed. A connection is
/// accepted only with a permit from `limit`: at the limit, new connections wait in the
/// kernel's backlog instead of taking file descriptors.
///
/// Each accepted connection goes to one of `workers` in turn and is served there, to
/// the end, by that worker's handler: `handlers[i]` runs on worker `i`, so a handler
/// may hold what only one thread should use (its pool of connections to the app).
pub async fn serve<L, H, F>(
    listener: L,
    tls: Option<ListenerTls>,
    options: ServerOptions,
    limit: Arc<Semaphore>,
    workers: Arc<Workers>,
    handlers: Vec<H>,
    mut shutdown: watch::Receiver<bool>,
) where
    L: Listen,
    H: Fn(Request<Incoming>, L::Peer) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<GateBody>> + Send + 'static,
{
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        // The connection's idle watchdog below enforces `header_read_timeout` for
        // HTTP/1 and HTTP/2 alike; hyper's own would only add a timer per request.
        .header_read_timeout(None)
        .max_buf_size(options.max_header_bytes);
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .keep_alive_interval(options.http2_keep_alive_interval)
        .keep_alive_timeout(options.http2_keep_alive_timeout)
        .max_header_list_size(u32::try_from(options.max_header_bytes).unwrap_or(u32::MAX));
    let protocols = Arc::new(Protocols {
        http1,
        http2,
        http2_age: options.http2_connection_age,
    });
    // Every connection holds a receiver: the drain sets it, and waits for all of them
    // to be dropped.
    let (drain, draining) = watch::channel(false);
    let local = listener.name();
    if handlers.len() != workers.count() {
        // A build defect; serving with another worker's handler would share its pool.
        tracing::error!(listener = %local, handlers = handlers.len(), workers = workers.count(),
            "one handler per worker is needed; not serving this listener");
        return;
    }
    loop {
        let permit = match limit.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                tracing::warn!(
                    listener = %local,
                    "connection limit reached (max_connections); new connections wait"
                );
                tokio::select! {
                    biased;
                    _ = shutdown.changed() => break,
                    permit = limit.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                }
            }
        };
        let (stream, peer) = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE when the limit is above what the process may open: back
                    // off instead of spinning.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let index = workers.next();
        // Checked above: there is one handler per worker.
        let Some(handler) = handlers.get(index).cloned() else {
            break;
        };
        let protocols = protocols.clone();
        let draining = draining.clone();
        let idle_limit = options.header_read_timeout;
        // The configuration of the moment: a renewed certificate serves the
        // connections accepted after its swap.
        let tls = tls
            .as_ref()
            .map(|t| (t.tls.config(), t.handshake_errors.clone()));
        workers.spawn(index, async move {
            let _permit = permit;
            let socket = match L::adopt(stream) {
                Ok(socket) => socket,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "a worker cannot take the connection");
                    return;
                }
            };
            let activity = Arc::new(Activity::new());
            let serving = async {
                let socket = match (tls, socket) {
                    (None, socket) => socket,
                    (Some((config, errors)), Socket::Tcp(stream)) => {
                        match tokio_rustls::TlsAcceptor::from(config).accept(stream).await {
                            Ok(tls) => Socket::Tls(Box::new(tls)),
                            Err(e) => {
                                errors.inc();
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                        }
                    }
                    // `check` refuses TLS on a Unix socket; never serve it in clear.
                    (Some(_), _) => return,
                };
                connection::serve(socket, peer.clone(), &protocols, handler, activity.clone(), draining).await;
            };
            tokio::select! {
                () = serving => {}
                () = activity.idle_for(idle_limit) => {
                    tracing::debug!(%peer, "no complete request head within header_read_timeout; closing");
                }
            }
        });
    }
    drop(listener);
    drop(draining);
    let open = drain.receiver_count();
    if open > 0 {
        tracing::info!(open, deadline = ?options.shutdown_timeout, "draining connections");
    }
    let _ = drain.send(true);
    if tokio::time::timeout(options.shutdown_timeout, drain.closed())
        .await
        .is_err()
    {
        tracing::warn!("drain deadline passed; closing the remaining connections");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limit_leaves_room_for_the_app_and_the_admin_listener() {
        assert_eq!(default_max_connections(256, true), 80);
        assert_eq!(default_max_connections(256, false), 160);
        assert_eq!(default_max_connections(1024, true), 464);
        assert_eq!(default_max_connections(50, true), 16);
        assert_eq!(default_max_connections(u64::MAX, true), 1 << 20);
    }
}
