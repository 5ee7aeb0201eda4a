//! Assembles the gate from a configuration and a policy, and runs it: the key store,
//! the decision core, and a server per listener. May import every floor below `dev`.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::authorize::{Admission, Authorizer, Clock, State};
use crate::client;
use crate::config::Config;
use crate::http::admin;
use crate::http::decision::DecisionService;
use crate::http::forwarded::Forwarding;
use crate::http::grpc;
use crate::http::headers::IdentityHeaders;
use crate::http::proxy::{Credentials, Proxy};
use crate::http::server::{self, ServerOptions};
use crate::http::workers::{self, Workers};
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::reload;

/// The sockets the gate serves on, bound by the caller (port 0 in tests). `proxy` is
/// used when `upstream` is configured, `authz` when `authz.listen` is, and `grpc` when
/// `authz.grpc_listen` is.
pub struct Listeners {
    pub proxy: Option<TcpListener>,
    pub admin: TcpListener,
    pub authz: Option<TcpListener>,
    pub grpc: Option<TcpListener>,
}

/// Why the gate could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("TLS set-up failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{0} is configured but no listener was given for it")]
    MissingListener(&'static str),
    #[error("cannot start the worker threads: {0}")]
    Workers(std::io::Error),
}

/// How long the JWKS client keeps idle connections to a key server.
const JWKS_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);

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
    let jwks_client = client::client(client::jwks_connector(route)?, JWKS_IDLE_TIMEOUT);
    let state = State::build(&config, policy, jwks_client.clone(), metrics.clone(), None).await;
    let authz = Arc::new(Authorizer::new(
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
    ));
    let _reloader = config
        .source
        .as_ref()
        .map(|file| reload::start(file.clone(), config.clone(), authz.clone(), jwks_client));
    let forwarding = Arc::new(Forwarding::new(config.trusted_proxies.clone()));
    let identity = IdentityHeaders::new(&config.headers);
    let options = ServerOptions {
        header_read_timeout: config.header_read_timeout,
        max_header_bytes: config.max_header_bytes,
        shutdown_timeout: config.shutdown_timeout,
        http2_keep_alive_interval: config.http2_keep_alive_interval,
        http2_keep_alive_timeout: config.http2_keep_alive_timeout,
    };
    // One budget for the proxy and decision listeners, and a separate one for the
    // admin listener, so that probes still answer when the others are full.
    let max_connections = config.max_connections.unwrap_or_else(|| {
        let fds = server::fd_limit().unwrap_or(1024);
        server::default_max_connections(fds, config.upstream.is_some())
    });
    tracing::info!(max_connections, "connection limit");
    let connections = Arc::new(Semaphore::new(max_connections));
    let admin_connections = Arc::new(Semaphore::new(server::ADMIN_CONNECTIONS));
    let workers = Arc::new(
        Workers::start(config.workers.unwrap_or_else(workers::default_count))
            .map_err(StartError::Workers)?,
    );
    tracing::info!(workers = workers.count(), "worker threads");
    let (stop, stopped) = watch::channel(false);
    let mut servers = Vec::new();

    let admin_authz = authz.clone();
    let here = Arc::new(Workers::here());
    servers.push(tokio::spawn(server::serve(
        listeners.admin,
        options,
        admin_connections,
        here.clone(),
        here.each(move |req, _peer| {
            let authz = admin_authz.clone();
            async move { admin::answer(&req, &authz).await }
        }),
        stopped.clone(),
    )));

    if let Some(upstream) = config.upstream {
        let listener = listeners
            .proxy
            .ok_or(StartError::MissingListener("upstream"))?;
        let connector = client::connector(upstream.connect_timeout)?;
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
        // A proxy per worker, each with its own pool of connections to the app: a
        // request and the upstream connection it uses are polled on one thread.
        let handlers = workers.each_with(|| {
            let proxy = Arc::new(Proxy::new(
                authz.clone(),
                connector.clone(),
                upstream.clone(),
                identity.clone(),
                forwarding.clone(),
                credentials.clone(),
            ));
            move |req, peer| {
                let proxy = proxy.clone();
                async move { proxy.handle(req, peer).await }
            }
        });
        servers.push(tokio::spawn(server::serve(
            listener,
            options,
            connections.clone(),
            workers.clone(),
            handlers,
            stopped.clone(),
        )));
    }

    let mut health_updater = None;
    if let Some(settings) = config.authz {
        let (http_listen, grpc_listen) = (settings.listen, settings.grpc_listen);
        let decisions = Arc::new(DecisionService::new(
            authz.clone(),
            identity,
            settings,
            forwarding,
        ));
        if http_listen.is_some() {
            let listener = listeners
                .authz
                .ok_or(StartError::MissingListener("authz.listen"))?;
            let decisions = decisions.clone();
            servers.push(tokio::spawn(server::serve(
                listener,
                options,
                connections.clone(),
                workers.clone(),
                workers.each(move |req, peer| {
                    let decisions = decisions.clone();
                    async move { decisions.handle(req, peer).await }
                }),
                stopped.clone(),
            )));
        }
        if grpc_listen.is_some() {
            let listener = listeners
                .grpc
                .ok_or(StartError::MissingListener("authz.grpc_listen"))?;
            let (services, updater) = grpc::services(decisions, authz.clone());
            health_updater = Some(updater);
            servers.push(tokio::spawn(server::serve(
                listener,
                options,
                connections,
                workers.clone(),
                workers.each(move |req, peer| services.clone().handle(req, peer)),
                stopped,
            )));
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
    // Every connection has drained or been cut off at the deadline; the threads end.
    drop(workers);
    Ok(())
}
