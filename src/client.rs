//! The one outbound HTTP stack: hyper-util's pooled client over hyper-rustls, used both
//! for the upstream app and for JWKS downloads. Key fetches also honour the egress
//! proxy that `HTTPS_PROXY`/`ALL_PROXY` and `NO_PROXY` name, as curl does.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tower_service::Service;

use crate::config::{TlsClientFiles, UpstreamConfig};

/// HTTP or HTTPS over one hyper-util connector, straight to the destination: the
/// upstream app (a sidecar's neighbour is never behind an egress proxy).
pub type Connector = HttpsConnector<HttpConnector>;

/// HTTP or HTTPS for key fetches: straight, or through the egress proxy.
pub type JwksConnector = HttpsConnector<ProxyAware>;

/// How long a key-fetch client keeps idle connections to a key server.
pub const JWKS_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The key-fetch client shared by every key server that needs no TLS files of its own.
pub type JwksClient = Client<JwksConnector, http_body_util::Empty<bytes::Bytes>>;

/// A key-fetch client of its own, for a key server with a private CA (`ca_file`) or that
/// asks for a client certificate; `None` when `files` are the defaults and the shared
/// client serves. The error names the file, and every fetch then fails with it (the
/// pool's tokens get 503: the keys cannot be had).
pub fn own_jwks_client(
    files: &TlsClientFiles,
    fetch_timeout: Duration,
) -> Option<Result<JwksClient, String>> {
    if *files == TlsClientFiles::default() {
        return None;
    }
    Some(
        tls_config_for(files)
            .map(|tls| {
                let connector = HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(ProxyAware::from_env(fetch_timeout));
                client(connector, JWKS_IDLE_TIMEOUT)
            })
            .map_err(|e| e.to_string()),
    )
}

/// Builds a connector that speaks plain HTTP or HTTPS, trusting the system's CA bundle.
/// Fails only if rustls rejects its own default protocol versions (a build defect).
pub fn connector(connect_timeout: Duration) -> Result<Connector, rustls::Error> {
    with_tls(tcp(connect_timeout))
}

/// Why an outbound TLS client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
    /// A PEM file that cannot be read or holds no certificate or key.
    #[error("{0}")]
    File(String),
}

/// The connectors to the app: HTTP/1.1, and HTTP/2 (ALPN `h2` over TLS; prior knowledge
/// in cleartext), each trusting `upstream.ca_file` (or the system's CA bundle),
/// presenting `upstream.client_cert`, and checking the certificate for
/// `upstream.server_name` when it is set; or the app's Unix socket.
pub enum UpstreamConnectors {
    Tcp { http1: Connector, http2: Connector },
    Unix(UnixConnector),
}

/// A pooled client to the app, over TCP (and TLS) or over its Unix socket.
pub enum AppClient<B> {
    Tcp(Client<Connector, B>),
    Unix(Client<UnixConnector, B>),
}

impl<B> AppClient<B>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// An HTTP/1.1 client (`http2 = false`) or an HTTP/2 one over `connectors`.
    pub fn new(connectors: &UpstreamConnectors, http2: bool, idle_timeout: Duration) -> Self {
        let mut builder = builder(idle_timeout);
        if http2 {
            builder.http2_only(true);
        }
        match connectors {
            UpstreamConnectors::Tcp { http1, http2: h2 } => {
                AppClient::Tcp(builder.build(if http2 { h2.clone() } else { http1.clone() }))
            }
            UpstreamConnectors::Unix(unix) => AppClient::Unix(builder.build(unix.clone())),
        }
    }

    pub fn request(&self, req: http::Request<B>) -> hyper_util::client::legacy::ResponseFuture {
        match self {
            AppClient::Tcp(client) => client.request(req),
            AppClient::Unix(client) => client.request(req),
        }
    }
}

/// Connects every request to the app's Unix domain socket (`upstream.url =
/// "unix:/run/app.sock"`), whatever its URI says, within the connect timeout.
#[derive(Clone)]
pub struct UnixConnector {
    path: Arc<std::path::Path>,
    timeout: Duration,
}

impl Service<Uri> for UnixConnector {
    type Response = TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let (path, timeout) = (self.path.clone(), self.timeout);
        Box::pin(async move {
            let connecting = tokio::net::UnixStream::connect(&*path);
            match tokio::time::timeout(timeout, connecting).await {
                Ok(stream) => stream
                    .map(TokioIo::new)
                    .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("{}: no connection within {timeout:?}", path.display()),
                )),
            }
        })
    }
}

pub fn upstream_connectors(upstream: &UpstreamConfig) -> Result<UpstreamConnectors, TlsSetupError> {
    if let Some(path) = &upstream.socket {
        return Ok(UpstreamConnectors::Unix(UnixConnector {
            path: Arc::from(path.as_path()),
            timeout: upstream.connect_timeout,
        }));
    }
    let tls = tls_config_for(&upstream.tls)?;
    // Checked when the config was loaded.
    let server_name = upstream
        .server_name
        .as_deref()
        .and_then(|name| ServerName::try_from(name.to_owned()).ok());
    let builder = || {
        let builder = HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http();
        match &server_name {
            Some(name) => {
                builder.with_server_name_resolver(FixedServerNameResolver::new(name.clone()))
            }
            None => builder,
        }
    };
    Ok(UpstreamConnectors::Tcp {
        http1: builder()
            .enable_http1()
            .wrap_connector(tcp(upstream.connect_timeout)),
        http2: builder()
            .enable_http2()
            .wrap_connector(tcp(upstream.connect_timeout)),
    })
}

/// [`connector`] for key fetches: an `https` JWKS URL that `HTTPS_PROXY` (or
/// `ALL_PROXY`) covers, and `NO_PROXY` does not exempt, is reached through a CONNECT
/// tunnel to that proxy, with TLS end to end inside it. Plain-HTTP JWKS URLs (loopback
/// or `allow_insecure_jwks_url`) are always fetched directly.
pub fn jwks_connector(route: ProxyAware) -> Result<JwksConnector, rustls::Error> {
    with_tls(route)
}

fn tcp(connect_timeout: Duration) -> HttpConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http
}

fn with_tls<T>(inner: T) -> Result<HttpsConnector<T>, rustls::Error> {
    let tls = tls_config()?;
    Ok(HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(inner))
}

/// TLS to servers the system CA bundle vouches for, on the aws-lc-rs provider: the
/// key fetches, an `https://` app, and a `rediss://` revocation list.
pub fn tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    Ok(tls_builder()?
        .with_root_certificates(system_roots())
        .with_no_client_auth())
}

/// [`tls_config`] trusting `files.ca_file` instead of the system's CA bundle when it is
/// set (a private CA), and presenting `files.client_cert` to a server that asks.
pub fn tls_config_for(files: &TlsClientFiles) -> Result<rustls::ClientConfig, TlsSetupError> {
    let roots = match &files.ca_file {
        None => system_roots(),
        Some(file) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in crate::pem::certificates(file).map_err(TlsSetupError::File)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsSetupError::File(format!("{}: {e}", file.display())))?;
            }
            roots
        }
    };
    let trusting = tls_builder()?.with_root_certificates(roots);
    Ok(match &files.client_cert {
        None => trusting.with_no_client_auth(),
        Some(identity) => {
            let chain = crate::pem::certificates(&identity.cert).map_err(TlsSetupError::File)?;
            let key = crate::pem::private_key(&identity.key).map_err(TlsSetupError::File)?;
            trusting.with_client_auth_cert(chain, key).map_err(|e| {
                TlsSetupError::File(format!(
                    "{} and {}: {e}",
                    identity.cert.display(),
                    identity.key.display()
                ))
            })?
        }
    })
}

fn tls_builder(
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, rustls::Error> {
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
}

fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A CA that rustls cannot parse is one we would never have trusted anyway.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        // Plain-HTTP upstreams and JWKS mirrors still work; HTTPS fetches fail and
        // are logged, rather than the gate refusing to start.
        tracing::warn!("no system CA certificates found; HTTPS requests will fail");
    }
    roots
}

/// TCP to the destination, or to the egress proxy and through a CONNECT tunnel.
#[derive(Clone)]
pub struct ProxyAware {
    direct: HttpConnector,
    proxies: Arc<Matcher>,
}

type Connecting =
    Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, BoxError>> + Send + 'static>>;

/// Any error, boxed: what hyper's connectors and bodies pass along.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl ProxyAware {
    /// Direct TCP with `connect_timeout`, and the proxies the environment names now.
    pub fn from_env(connect_timeout: Duration) -> Self {
        ProxyAware {
            direct: tcp(connect_timeout),
            proxies: Arc::new(Matcher::from_env()),
        }
    }

    /// The proxy `dst` is fetched through, as `scheme://host:port` (never its
    /// credentials), or `None` when it is fetched directly.
    pub fn proxy_for(&self, dst: &Uri) -> Option<String> {
        let proxy = self.intercept(dst)?;
        let uri = proxy.uri();
        let scheme = uri.scheme_str().unwrap_or("http");
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        Some(format!("{scheme}://{}:{port}", uri.host().unwrap_or("?")))
    }

    fn intercept(&self, dst: &Uri) -> Option<hyper_util::client::proxy::matcher::Intercept> {
        if dst.scheme_str() != Some("https") {
            return None;
        }
        self.proxies.intercept(dst)
    }
}

impl Service<Uri> for ProxyAware {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.direct.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        match self.intercept(&dst) {
            None => {
                let connecting = self.direct.call(dst);
                Box::pin(async move { connecting.await.map_err(Into::into) })
            }
            Some(proxy) => {
                let mut tunnel = Tunnel::new(proxy.uri().clone(), self.direct.clone());
                if let Some(auth) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                let connecting = tunnel.call(dst);
                Box::pin(async move { connecting.await.map_err(Into::into) })
            }
        }
    }
}

/// A pooled keep-alive client for bodies of type `B`, speaking HTTP/1.1.
pub fn client<C, B>(connector: C, idle_timeout: Duration) -> Client<C, B>
where
    C: hyper_util::client::legacy::connect::Connect + Clone,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    builder(idle_timeout).build(connector)
}

fn builder(idle_timeout: Duration) -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(idle_timeout);
    builder
}

/// An error with its sources, since hyper-util's client error alone says only
/// "client error (Connect)".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
