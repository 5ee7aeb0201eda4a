//! The one outbound HTTP stack: hyper-util's pooled client over hyper-rustls, used both
//! for the upstream app and for JWKS downloads.

use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// HTTP or HTTPS over one hyper-util connector, so upstream and JWKS share a stack.
pub type Connector = HttpsConnector<HttpConnector>;

/// Builds a connector that speaks plain HTTP or HTTPS, trusting the system's CA bundle.
/// Fails only if rustls rejects its own default protocol versions (a build defect).
pub fn connector(connect_timeout: Duration) -> Result<Connector, rustls::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));

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
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// A pooled keep-alive client for bodies of type `B`.
pub fn client<B>(connector: Connector, idle_timeout: Duration) -> Client<Connector, B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(idle_timeout)
        .build(connector)
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
