//! Assembles the gate from a configuration and a policy, and runs it: the key store,
//! the decision core, and a server per listener. May import every floor below `dev`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::authorize::{Admission, Authorizer, Clock, JwksClient, State};
use crate::client;
use crate::config::{Config, ConnectionAge, UpstreamConfig};
use crate::http::admin;
use crate::http::answer::GateBody;
use crate::http::decision::DecisionService;
use crate::http::forwarded::Forwarding;
use crate::http::grpc;
use crate::http::headers::IdentityHeaders;
use crate::http::proxy::{Credentials, Proxy};
use crate::http::server::{self, Listen, ListenerTls, ServerOptions, UnixSocketListener};
use crate::http::socket::Peer;
use crate::http::workers::{self, Workers};
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::reload;
use crate::revocation::{self, RevocationList};
use crate::tls::{Alpn, ListenerTlsFiles, ServerTls};
use crate::trace::Tracing;

/// The sockets the gate serves on, bound by the caller (port 0 in tests). `proxy` is
/// used when `upstream` is configured, `authz` when `authz.listen` is, and `grpc` when
/// `authz.grpc_listen` is.
pub struct Listeners {
    pub proxy: Option<TcpListener>,
    /// The proxy's Unix socket, for `listen = "unix:/path"` (bound, with its mode and
    /// owner set, by the caller), in place of `proxy`.
    pub proxy_socket: Option<tokio::net::UnixListener>,
    pub admin: TcpListener,
    pub authz: Option<TcpListener>,
    pub grpc: Option<TcpListener>,
}

/// Why the gate could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("TLS set-up failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error("TLS on {0} cannot start: {1}")]
    ListenerTls(&'static str, String),
    #[error("TLS set-up for the app failed: {0}")]
    UpstreamTls(#[from] crate::client::TlsSetupError),
    #[error("{0} is configured but no listener was given for it")]
    MissingListener(&'static str),
    #[error("cannot start the worker threads: {0}")]
    Workers(std::io::Error),
    #[error("tracing cannot start: {0}")]
    Tracing(#[from] crate::trace::ExportError),
}

/// Runs the gate until `shutdown` completes, then drains in-flight requests for at
/// most `config.shutdown_timeout` and returns. A configuration loaded from a file
/// ([`Config::load`]) is reloaded on SIGHUP and when its files change (see `reload`).
pub async fn run(
    config: Config,
    policy: Policy,
    listeners: Listeners,
    clock: Clock,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let metrics = Arc::new(Metrics::new());
    let tracing = Tracing::start(config.tracing.as_ref(), metrics.clone())?;
    let jwks_client = jwks_client(&config)?;
    // The revocation list is loaded and followed in the background; until the first
    // load, `/readyz` is 503 and tokens get 503 `revocation_unavailable`.
    let revocation = config.revocation.clone().map(|settings| {
        let list = Arc::new(RevocationList::new(&settings, metrics.clone()));
        let follower = tokio::spawn(revocation::follow(settings, list.clone(), metrics.clone()));
        (list, follower)
    });
    if let (Some((list, _)), Some(settings)) = (&revocation, &config.revocation) {
        // A reachable Redis is read before the first request is served; one that is
        // not delays start-up by `revocation.timeout` at most.
        let deadline = tokio::time::Instant::now() + settings.timeout;
        while !list.status(0.0).loaded && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    let authz = decision_core(
        &config,
        policy,
        clock,
        jwks_client.clone(),
        metrics,
        revocation.as_ref().map(|(list, _)| list.clone()),
        tracing.clone(),
    )
    .await;
    let _reloader = config
        .source
        .as_ref()
        .map(|file| reload::start(file.clone(), config.clone(), authz.clone(), jwks_client));
    let (stop, stopped) = watch::channel(false);
    let mut tls = TlsListeners::default();
    let admin_tls = tls.add(
        "admin",
        config.admin_listen_tls.as_ref(),
        Alpn::Http,
        &authz,
    )?;
    let proxy_tls = match &config.upstream {
        Some(_) => tls.add("proxy", config.listen_tls.as_ref(), Alpn::Http, &authz)?,
        None => None,
    };
    let authz_tls = match &config.authz {
        Some(a) => (
            tls.add("authz", a.listen_tls.as_ref(), Alpn::Http, &authz)?,
            tls.add("grpc", a.grpc_listen_tls.as_ref(), Alpn::H2, &authz)?,
        ),
        None => (None, None),
    };
    let _tls_reloader = tls.watch(authz.metrics().clone());
    let serving = Serving::new(&config, authz, stopped)?;

    let mut servers = vec![admin_server(listeners.admin, admin_tls, &serving)];
    if let Some(upstream) = &config.upstream {
        let server = match (
            &config.listen_socket,
            listeners.proxy_socket,
            listeners.proxy,
        ) {
            (Some(socket), Some(listener), _) => {
                let listener = UnixSocketListener {
                    listener,
                    path: Arc::from(socket.path.display().to_string()),
                };
                proxy_server(listener, None, Peer::clone, upstream, &config, &serving)?
            }
            (None, _, Some(listener)) => {
                let tcp = |addr: &SocketAddr| Peer::Tcp(*addr);
                proxy_server(listener, proxy_tls, tcp, upstream, &config, &serving)?
            }
            _ => return Err(StartError::MissingListener("upstream")),
        };
        servers.push(server);
    }
    let mut health_updater = None;
    if let Some(settings) = config.authz {
        let decisions = Arc::new(DecisionService::new(
            serving.authz.clone(),
            serving.identity.clone(),
            settings.clone(),
            serving.forwarding.clone(),
        ));
        if settings.listen.is_some() {
            let listener = listeners
                .authz
                .ok_or(StartError::MissingListener("authz.listen"))?;
            servers.push(decision_server(
                listener,
                authz_tls.0,
                decisions.clone(),
                &serving,
            ));
        }
        if settings.grpc_listen.is_some() {
            let listener = listeners
                .grpc
                .ok_or(StartError::MissingListener("authz.grpc_listen"))?;
            let (server, updater) = grpc_server(
                listener,
                authz_tls.1,
                decisions,
                settings.grpc_connection_age,
                &serving,
            );
            servers.push(server);
            health_updater = Some(updater);
        }
    }

    shutdown.await;
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    let _ = stop.send(true);
    for server in servers {
        let _ = server.await;
    }
    if let Some(updater) = health_updater {
        updater.abort();
    }
    if let Some((_, follower)) = revocation {
        follower.abort();
    }
    // The last requests' spans go out, if the collector takes them soon.
    tracing.shutdown(Duration::from_secs(5)).await;
    // Every connection has drained or been cut off at the deadline; the threads end.
    drop(serving);
    Ok(())
}

/// The client key fetches use: direct, or through the egress proxy the environment
/// names for each pool's JWKS URL (said in the log, once per pool).
fn jwks_client(config: &Config) -> Result<JwksClient, StartError> {
    let route = client::ProxyAware::from_env(config.jwks.fetch_timeout);
    for pool in &config.pools {
        match route.proxy_for(&pool.jwks_url) {
            // The proxy is spoken to in plain HTTP (CONNECT); TLS to it is not
            // supported, so say so now rather than fail every fetch in silence.
            Some(proxy) if proxy.starts_with("https://") => tracing::warn!(
                pool = %pool.user_pool_id, %proxy,
                "the egress proxy is an https:// URL, which is not supported: key fetches through it will fail; give it as http://"
            ),
            Some(proxy) => tracing::info!(
                pool = %pool.user_pool_id, %proxy,
                "keys are fetched through the egress proxy (HTTPS_PROXY/ALL_PROXY)"
            ),
            None => {}
        }
    }
    Ok(client::client(
        client::jwks_connector(route)?,
        client::JWKS_IDLE_TIMEOUT,
    ))
}

/// The one decision core every listener asks: the first state (keys fetched) and
/// what the configuration says about admission.
async fn decision_core(
    config: &Config,
    policy: Policy,
    clock: Clock,
    jwks_client: JwksClient,
    metrics: Arc<Metrics>,
    revocation: Option<Arc<RevocationList>>,
    tracing: Tracing,
) -> Arc<Authorizer> {
    let state = State::build(config, policy, jwks_client, metrics.clone(), &tracing, None).await;
    Arc::new(Authorizer::new(
        state,
        clock,
        Admission {
            upgrades: config.allowed_upgrades.clone(),
            cors_preflight: config.cors_preflight,
            token_sources: config.token_sources.clone(),
            cookie_methods: config.cookie_methods.clone(),
            cors: config.cors.clone().map(Arc::new),
        },
        metrics,
        revocation,
        tracing,
    ))
}

/// What every listener's server shares: the decision core, the connection budgets,
/// the worker threads and the stop signal.
struct Serving {
    authz: Arc<Authorizer>,
    forwarding: Arc<Forwarding>,
    identity: IdentityHeaders,
    options: ServerOptions,
    /// One budget for the proxy and decision listeners.
    connections: Arc<Semaphore>,
    /// The admin listener's own, so that probes still answer when the others are full.
    admin_connections: Arc<Semaphore>,
    workers: Arc<Workers>,
    stopped: watch::Receiver<bool>,
}

impl Serving {
    fn new(
        config: &Config,
        authz: Arc<Authorizer>,
        stopped: watch::Receiver<bool>,
    ) -> Result<Serving, StartError> {
        let max_connections = config.max_connections.unwrap_or_else(|| {
            let fds = server::fd_limit().unwrap_or(1024);
            server::default_max_connections(fds, config.upstream.is_some())
        });
        tracing::info!(max_connections, "connection limit");
        let workers = Workers::start(config.workers.unwrap_or_else(workers::default_count))
            .map_err(StartError::Workers)?;
        tracing::info!(workers = workers.count(), "worker threads");
        Ok(Serving {
            authz,
            forwarding: Arc::new(Forwarding::new(
                config.trusted_proxies.clone(),
                config.listen_tls.is_some(),
                config.trust_unix_peers,
            )),
            identity: IdentityHeaders::new(&config.headers),
            options: ServerOptions {
                header_read_timeout: config.header_read_timeout,
                max_header_bytes: config.max_header_bytes,
                shutdown_timeout: config.shutdown_timeout,
                http2_keep_alive_interval: config.http2_keep_alive_interval,
                http2_keep_alive_timeout: config.http2_keep_alive_timeout,
                http2_connection_age: None,
            },
            connections: Arc::new(Semaphore::new(max_connections)),
            admin_connections: Arc::new(Semaphore::new(server::ADMIN_CONNECTIONS)),
            workers: Arc::new(workers),
            stopped,
        })
    }
}

impl Serving {
    /// Serves `listener` on the worker threads, with one handler per worker, in the
    /// budget the proxy and decision listeners share.
    fn spawn<L: Listen, H, F>(
        &self,
        listener: L,
        tls: Option<ListenerTls>,
        handlers: Vec<H>,
    ) -> JoinHandle<()>
    where
        H: Fn(Request<Incoming>, L::Peer) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response<GateBody>> + Send + 'static,
    {
        self.spawn_with(listener, tls, self.options, handlers)
    }

    fn spawn_with<L: Listen, H, F>(
        &self,
        listener: L,
        tls: Option<ListenerTls>,
        options: ServerOptions,
        handlers: Vec<H>,
    ) -> JoinHandle<()>
    where
        H: Fn(Request<Incoming>, L::Peer) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response<GateBody>> + Send + 'static,
    {
        tokio::spawn(server::serve(
            listener,
            tls,
            options,
            self.connections.clone(),
            self.workers.clone(),
            handlers,
            self.stopped.clone(),
        ))
    }
}

/// `/healthz`, `/readyz` and `/metrics`, served on the runtime that runs the gate.
fn admin_server(
    listener: TcpListener,
    tls: Option<ListenerTls>,
    serving: &Serving,
) -> JoinHandle<()> {
    let authz = serving.authz.clone();
    let here = Arc::new(Workers::here());
    let handlers = here.each(move |req, _peer| {
        let authz = authz.clone();
        async move { admin::answer(&req, &authz).await }
    });
    tokio::spawn(server::serve(
        listener,
        tls,
        serving.options,
        serving.admin_connections.clone(),
        here,
        handlers,
        serving.stopped.clone(),
    ))
}

/// The reverse proxy: a proxy per worker, each with its own pool of connections to
/// the app, so that a request and the upstream connection it uses are polled on one
/// thread.
fn proxy_server<L: Listen>(
    listener: L,
    tls: Option<ListenerTls>,
    peer: fn(&L::Peer) -> Peer,
    upstream: &UpstreamConfig,
    config: &Config,
    serving: &Serving,
) -> Result<JoinHandle<()>, StartError> {
    let connectors = client::upstream_connectors(upstream)?;
    let credentials = Credentials {
        forward_authorization: config.headers.forward_authorization,
        strip_cookies: match config.forward_token {
            true => Vec::new(),
            false => config
                .token_sources
                .iter()
                .filter_map(|s| s.cookie().map(Box::from))
                .collect(),
        },
    };
    let handlers = serving.workers.each_with(|| {
        let proxy = Arc::new(Proxy::new(
            serving.authz.clone(),
            &connectors,
            upstream.clone(),
            serving.identity.clone(),
            serving.forwarding.clone(),
            credentials.clone(),
        ));
        move |req, from: L::Peer| {
            let proxy = proxy.clone();
            let from = peer(&from);
            async move { proxy.handle(req, from).await }
        }
    });
    Ok(serving.spawn(listener, tls, handlers))
}

/// `authz.listen`: `/auth` for nginx, Traefik and Caddy, and Envoy's HTTP `ext_authz`.
fn decision_server(
    listener: TcpListener,
    tls: Option<ListenerTls>,
    decisions: Arc<DecisionService>,
    serving: &Serving,
) -> JoinHandle<()> {
    let handlers = serving.workers.each(move |req, peer| {
        let decisions = decisions.clone();
        async move { decisions.handle(req, peer).await }
    });
    serving.spawn(listener, tls, handlers)
}

/// `authz.grpc_listen`: Envoy's gRPC `ext_authz` and the gRPC health service, with
/// the task that keeps the health status in step with the keys.
fn grpc_server(
    listener: TcpListener,
    tls: Option<ListenerTls>,
    decisions: Arc<DecisionService>,
    connection_age: Option<ConnectionAge>,
    serving: &Serving,
) -> (JoinHandle<()>, JoinHandle<()>) {
    let (services, updater) =
        grpc::services(decisions, serving.authz.clone(), serving.stopped.clone());
    let handlers = serving
        .workers
        .each(move |req, peer| services.clone().handle(req, peer));
    let options = ServerOptions {
        http2_connection_age: connection_age,
        ..serving.options
    };
    let server = serving.spawn_with(listener, tls, options, handlers);
    (server, updater)
}

/// The TLS listeners of one gate, and the task that swaps in their renewed pairs.
#[derive(Default)]
struct TlsListeners(Vec<(&'static str, Arc<ServerTls>)>);

impl TlsListeners {
    /// Loads `files` for `listener` (checked by `check`, but read again here: the files
    /// may have changed since) and sets its expiry metric.
    fn add(
        &mut self,
        listener: &'static str,
        files: Option<&ListenerTlsFiles>,
        alpn: Alpn,
        authz: &Authorizer,
    ) -> Result<Option<ListenerTls>, StartError> {
        let Some(files) = files else {
            return Ok(None);
        };
        let loaded =
            crate::tls::load(files, alpn).map_err(|e| StartError::ListenerTls(listener, e))?;
        let metrics = authz.metrics();
        metrics.set_tls_expiry(listener, loaded.not_after);
        tracing::info!(listener, expires = %crate::tls::format_date(loaded.not_after), "TLS on");
        let tls = Arc::new(ServerTls::new(files.clone(), alpn, loaded));
        self.0.push((listener, tls.clone()));
        let handshake_errors = metrics
            .tls_handshake_errors
            .get_or_create(&crate::metrics::ListenerLabels { listener })
            .clone();
        Ok(Some(ListenerTls {
            tls,
            handshake_errors,
        }))
    }

    /// Looks at every listener's files each [`crate::tls::POLL`] and on SIGHUP; a
    /// changed set is loaded, and swapped in only if it loads: a bad pair keeps the old
    /// one serving, logged and counted (`cognito_gate_tls_reloads_total`).
    fn watch(self, metrics: Arc<Metrics>) -> Option<AbortOnDrop> {
        if self.0.is_empty() {
            return None;
        }
        // Installed before the gate serves, so that a SIGHUP is never the default
        // action (which ends the process).
        #[cfg(unix)]
        let mut hangups =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let task = tokio::spawn(async move {
            let mut seen: Vec<_> = self
                .0
                .iter()
                .map(|(_, tls)| crate::tls::Stamp::of(tls.files()))
                .collect();
            loop {
                #[cfg(unix)]
                let signalled = async {
                    match hangups.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let signalled = std::future::pending::<Option<()>>();
                let forced = tokio::select! {
                    _ = tokio::time::sleep(crate::tls::POLL) => Some(false),
                    got = signalled => got.map(|()| true),
                };
                // The signal stream ended (the runtime is stopping): poll the files only,
                // rather than wake on its end at once, again and again.
                #[cfg(unix)]
                if forced.is_none() {
                    hangups = None;
                }
                let forced = forced.unwrap_or(false);
                for ((listener, tls), seen) in self.0.iter().zip(seen.iter_mut()) {
                    let now = crate::tls::Stamp::of(tls.files());
                    if now == *seen && !forced {
                        continue;
                    }
                    *seen = now;
                    match tls.reload() {
                        Ok(not_after) => {
                            tracing::info!(listener, expires = %crate::tls::format_date(not_after), "TLS certificate reloaded");
                            metrics.record_tls_reload(listener, Ok(not_after));
                        }
                        Err(error) => {
                            tracing::error!(listener, %error, "TLS certificate reload failed; the old certificate keeps serving");
                            metrics.record_tls_reload(listener, Err(()));
                        }
                    }
                }
            }
        });
        Some(AbortOnDrop(task))
    }
}

/// Ends a background task when the gate ends.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
