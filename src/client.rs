//! The one outbound HTTP stack: hyper-util's pooled client over hyper-rustls, used both
//! for the upstream app and for JWKS downloads. Key fetches also honour the egress
//! proxy that `HTTPS_PROXY`/`ALL_PROXY` and `NO_PROXY` name, as curl does.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tower_service::Service;

/// HTTP or HTTPS over one hyper-util connector, straight to the destination: the
/// upstream app (a sidecar's neighbour is never behind an egress proxy).
pub type Connector = HttpsConnector<HttpConnector>;

/// HTTP or HTTPS for key fetches: straight, or through the egress proxy.
pub type JwksConnector = HttpsConnector<ProxyAware>;

/// Builds a connector that speaks plain HTTP or HTTPS, trusting the system's CA bundle.
/// Fails only if rustls rejects its own default protocol versions (a build defect).
pub fn connector(connect_timeout: Duration) -> Result<Connector, rustls::Error> {
    with_tls(tcp(connect_timeout))
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
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth())
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

/// [`client`] speaking HTTP/2 with prior knowledge (h2c), for gRPC apps.
pub fn client_h2c<C, B>(connector: C, idle_timeout: Duration) -> Client<C, B>
where
    C: hyper_util::client::legacy::connect::Connect + Clone,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    builder(idle_timeout).http2_only(true).build(connector)
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
