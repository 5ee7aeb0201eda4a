//! The reverse proxy: authorize, rewrite headers, stream to the upstream and back.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::access_log::{respond, Served};
use super::answer::{BoxError, GateBody};
use super::connection::ClientUpgrade;
use super::forwarded::{Client, Forwarding};
use super::headers::{
    drop_h2c_offer, remove_hop_by_hop, strip_cookies, strip_folded, verified_alb_data,
    wants_upgrade, IdentityHeaders, ROUTING_OVERRIDES,
};
use super::socket::Peer;
use crate::authorize::{AuthError, Authorizer, RequestFacts};
use crate::client::{error_chain, AppClient, UpstreamConnectors};
use crate::config::{UpstreamConfig, UpstreamProtocol};
use crate::cors;
use crate::metrics::KindLabels;
use crate::policy::RuleId;
use crate::rejection::Rejection;
use crate::token::{Identity, ALB_DATA};
use crate::trace::RequestSpan;

/// The reverse proxy in front of the app. Holds the pooled client to the upstream.
pub struct Proxy {
    authz: Arc<Authorizer>,
    client: AppClient<ClientBody>,
    /// HTTP/2 (prior knowledge in cleartext, ALPN `h2` over TLS), for
    /// `upstream.protocol` `h2`, `h2c` and `auto`.
    h2c: AppClient<ClientBody>,
    upstream: UpstreamConfig,
    identity: IdentityHeaders,
    forwarding: Arc<Forwarding>,
    credentials: Credentials,
}

/// What the app receives of the caller's credentials.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// `headers.forward_authorization`.
    pub forward_authorization: bool,
    /// The token cookies to remove (none with `forward_token = true`).
    pub strip_cookies: Vec<Box<str>>,
}

impl Proxy {
    pub fn new(
        authz: Arc<Authorizer>,
        connectors: &UpstreamConnectors,
        upstream: UpstreamConfig,
        identity: IdentityHeaders,
        forwarding: Arc<Forwarding>,
        credentials: Credentials,
    ) -> Self {
        Proxy {
            authz,
            client: AppClient::new(connectors, false, upstream.idle_timeout),
            h2c: AppClient::new(connectors, true, upstream.idle_timeout),
            upstream,
            identity,
            forwarding,
            credentials,
        }
    }

    /// Handles one request end to end: authorize, forward, answer and log.
    pub async fn handle(&self, mut req: Request<Incoming>, peer: Peer) -> Response<GateBody> {
        let started = Instant::now();
        let metrics = self.authz.metrics();
        let _in_flight = metrics.in_flight();
        let client = self.forwarding.client(req.headers(), &peer);
        let grpc = is_grpc(req.headers());
        // With `cors_preflight = "answer"`, an allowed origin's answer gets the CORS
        // headers, whoever wrote it.
        let cors = self
            .authz
            .cors()
            .and_then(|config| cors::allowed_origin(config, req.headers()));
        // An h2c offer is ignored, never forwarded: an app that accepted it would take
        // HTTP/2 streams on the tunnel that no rule judged.
        drop_h2c_offer(req.headers_mut());
        let method = req.method().clone();
        // A Uri clone shares its bytes: no copy of the path just for the log line.
        let uri = req.uri().clone();
        // A trusted proxy's trace is continued; anyone else's `traceparent` is not.
        let span = self.authz.tracing().server(
            "proxy",
            method.as_str(),
            uri.path(),
            req.headers(),
            client.peer_trusted,
        );
        let authorizing = self.authz.authorize(RequestFacts {
            method: &method,
            path: uri.path(),
            query: uri.query(),
            host: uri.authority().map(|a| a.as_str()).or_else(|| {
                req.headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
            }),
            headers: req.headers(),
            forwarded_host_reaches_app: client.peer_trusted,
            forwarded_reaches_app: client.peer_trusted,
            answers_preflight: true,
        });
        let decision = span.scope(authorizing).await;
        let rule = decision.rule.as_ref();
        let identity = decision.identity.as_deref();
        if let Some(identity) = identity.filter(|_| span.is_recording()) {
            let (kind, name) = self.authz.source_of(identity);
            span.identity(kind, &name, &identity.sub);
        }
        let allowed = decision.outcome.is_ok();
        let preflight = matches!(decision.outcome, Err(AuthError::PreflightAnswered));
        let mut waited = Duration::ZERO;
        let outcome = match &decision.outcome {
            Ok(path) => {
                let target = Target {
                    peer: &peer,
                    path,
                    identity,
                    rule,
                    client: &client,
                    span: &span,
                };
                self.forward(req, target, &mut waited).await
            }
            Err(e) => Err(Rejection::Auth(e.clone())),
        };
        let served = Served {
            endpoint: "proxy",
            method: method.as_str(),
            path: uri.path(),
            rule,
            sub: identity.map(|i| i.sub.as_str()),
            started,
            upstream: waited,
            client: Some(&client),
            metrics,
            grpc,
            span: &span,
        };
        let mut response = respond(served, allowed, outcome);
        if let Some(cors) = &cors {
            cors.write(preflight, response.headers_mut());
        }
        response
    }

    /// Forwards an allowed request to the app, adding the time spent waiting for its
    /// answer to `waited`.
    async fn forward(
        &self,
        mut req: Request<Incoming>,
        target: Target<'_>,
        waited: &mut Duration,
    ) -> Result<Response<GateBody>, Rejection> {
        let Target {
            peer,
            path,
            identity,
            rule,
            client,
            span,
        } = target;
        // Only an HTTP/1.1 connection served here can be upgraded; anywhere else the
        // upgrade headers are dropped as hop-by-hop and the request goes on as is.
        let upgrade = if wants_upgrade(req.headers()) {
            ClientUpgrade::take(&mut req)
        } else {
            None
        };
        // Upgrades exist only in HTTP/1.1, so an upgrade always goes that way.
        let h2 = upgrade.is_none()
            && match self.upstream.protocol {
                UpstreamProtocol::Http1 => false,
                UpstreamProtocol::H2c | UpstreamProtocol::H2 => true,
                UpstreamProtocol::Auto => req.version() == Version::HTTP_2,
            };
        // gRPC asks for trailers with `TE: trailers`, the one TE value HTTP/2 allows.
        let te_trailers = req
            .headers()
            .get_all(header::TE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
        let (mut parts, body) = req.into_parts();
        let Some(uri) = self.upstream_uri(path, parts.uri.query()) else {
            return Err(Rejection::Internal);
        };

        // The host the policy judged is the one the app gets: an HTTP/2 `:authority`
        // (HTTP/2 clients send no Host header), or the authority of an absolute-form
        // HTTP/1.1 target, which replaces any Host header (RFC 9112 §3.2.2).
        if let Some(host) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(header::HOST, host);
        }
        self.rewrite_headers(
            &mut parts.headers,
            peer,
            client,
            identity,
            upgrade.is_some(),
        );
        // The app continues the gate's trace, from the span of this call.
        let call = span.upstream(parts.method.as_str(), || self.upstream.address());
        call.inject(&mut parts.headers);
        let protocol = parts.headers.get(header::UPGRADE).cloned();
        parts.uri = uri;
        parts.version = if h2 {
            if te_trailers {
                parts
                    .headers
                    .insert(header::TE, HeaderValue::from_static("trailers"));
            }
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        let client = if h2 { &self.h2c } else { &self.client };

        let broken = Arc::new(AtomicBool::new(false));
        let body = ClientBody {
            inner: body,
            broken: broken.clone(),
        };
        let asked = Instant::now();
        let sent = tokio::time::timeout(
            self.upstream.request_timeout,
            client.request(Request::from_parts(parts, body)),
        )
        .await;
        *waited += asked.elapsed();
        let metrics = self.authz.metrics();
        let failed = |kind: &'static str| {
            metrics
                .upstream_errors
                .get_or_create(&KindLabels { kind })
                .inc();
        };
        let mut response = match sent {
            Ok(Ok(response)) => {
                metrics.upstream_duration.observe(waited.as_secs_f64());
                call.end_call(Ok(response.status().as_u16()));
                response
            }
            Ok(Err(_)) if broken.load(Ordering::Relaxed) => {
                call.end_call(Err(("client_body", "the client's request body broke")));
                tracing::debug!("the client's request body was malformed or cut off");
                return Err(Rejection::BadRequestBody);
            }
            Ok(Err(e)) => {
                call.end_call(Err(("connect", "the app could not be reached")));
                failed("connect");
                tracing::warn!(error = %error_chain(&e), upstream = %self.upstream.address(), "upstream request failed");
                return Err(Rejection::UpstreamUnreachable);
            }
            Err(_) => {
                call.end_call(Err(("timeout", "the app did not answer in time")));
                failed("timeout");
                tracing::warn!(upstream = %self.upstream.address(), timeout = ?self.upstream.request_timeout, "upstream timed out");
                return Err(Rejection::UpstreamTimeout);
            }
        };

        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_side) = upgrade else {
                failed("protocol");
                tracing::warn!("upstream switched protocols without being asked");
                return Err(Rejection::UpstreamUnreachable);
            };
            let upstream_side = hyper::upgrade::on(&mut response);
            let session = Session {
                path: path.to_owned(),
                protocol: protocol
                    .as_ref()
                    .and_then(|p| p.to_str().ok())
                    .unwrap_or("-")
                    .to_owned(),
                rule: rule.cloned(),
                sub: identity.map(|i| i.sub.clone()),
            };
            tokio::spawn(async move {
                let (client, upstream) = tokio::join!(client_side.socket(), upstream_side);
                match (client, upstream) {
                    (Some(mut client), Ok(upstream)) => {
                        let started = Instant::now();
                        let mut upstream = TokioIo::new(upstream);
                        let copied =
                            tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                        session.log_end(started, copied);
                    }
                    (None, _) => {
                        tracing::debug!("upgrade did not complete: the client's side closed")
                    }
                    (_, Err(e)) => tracing::debug!(error = %e, "upgrade did not complete"),
                }
            });
            return Ok(response.map(relay));
        }
        remove_hop_by_hop(response.headers_mut(), false);
        Ok(response.map(relay))
    }

    /// The upstream URI: the configured scheme and authority, the canonical path the
    /// policy judged, and the query exactly as received.
    fn upstream_uri(&self, path: &str, query: Option<&str>) -> Option<Uri> {
        let pq = match query {
            Some(q) => PathAndQuery::try_from(format!("{path}?{q}")).ok()?,
            None => PathAndQuery::try_from(path).ok()?,
        };
        let mut parts = self.upstream.url.clone().into_parts();
        parts.path_and_query = Some(pq);
        Uri::from_parts(parts).ok()
    }

    /// Strip first, then inject: hop-by-hop headers, method and path overrides, every
    /// spelling of the identity headers, and forwarding headers an untrusted client
    /// sent go; then `X-Forwarded-*`, `X-Request-Id` and our identity headers are
    /// written.
    fn rewrite_headers(
        &self,
        headers: &mut http::HeaderMap,
        peer: &Peer,
        client: &Client,
        identity: Option<&Identity>,
        upgrade: bool,
    ) {
        remove_hop_by_hop(headers, upgrade);
        strip_folded(headers, &ROUTING_OVERRIDES);
        // The load balancer's signed claims reach the app only when this gate verified
        // them on this request; on a public path, or out of ALB mode, they go.
        let alb_data = verified_alb_data(headers, identity);
        self.identity.strip(headers);
        if !self.credentials.forward_authorization {
            headers.remove(header::AUTHORIZATION);
        }
        strip_cookies(headers, &self.credentials.strip_cookies);
        self.forwarding.rewrite(headers, peer, client);
        if let Some(identity) = identity {
            self.identity.inject(headers, identity);
        }
        if let Some(data) = alb_data {
            headers.insert(ALB_DATA, data);
        }
    }
}

/// Where an allowed request goes and what the gate knows of it.
struct Target<'a> {
    peer: &'a Peer,
    /// The canonical path the policy judged.
    path: &'a str,
    /// The caller; none on an `anyone` rule.
    identity: Option<&'a Identity>,
    rule: Option<&'a RuleId>,
    client: &'a Client,
    /// The request's server span, parent of the call to the app.
    span: &'a RequestSpan,
}

/// The app's response body, relayed as it streams.
/// Whether a request is a gRPC call: `content-type: application/grpc`, or one of its
/// `+proto`/`+json` variants.
fn is_grpc(headers: &http::HeaderMap) -> bool {
    const GRPC: &str = "application/grpc";
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split_at_checked(GRPC.len()))
        .is_some_and(|(head, rest)| {
            head.eq_ignore_ascii_case(GRPC) && (rest.is_empty() || rest.starts_with(['+', ';']))
        })
}

fn relay(body: Incoming) -> GateBody {
    body.map_err(BoxError::from).boxed_unsync()
}

/// The client's request body, noting whether the client broke it (bad chunked framing,
/// or a connection cut mid-body), so that a failed upstream request is blamed on the
/// right side: 400, not 502.
///
/// Request trailers are dropped, as nginx drops them: they are a header section no
/// rule judged and no stripping touched, and an h2c upstream would pass a forged
/// `X-User-Sub` in them to the app. (HTTP/1.1 upstreams never got them: the `Trailer`
/// header that would declare them is hop-by-hop.)
pub struct ClientBody {
    inner: Incoming,
    broken: Arc<AtomicBool>,
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        loop {
            let polled = Pin::new(&mut self.inner).poll_frame(cx);
            match &polled {
                Poll::Ready(Some(Err(_))) => self.broken.store(true, Ordering::Relaxed),
                Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => continue,
                _ => {}
            }
            return polled;
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An upgraded (WebSocket) connection, logged when it ends: the requests inside it
/// are the app's business, but its length and size are the operator's.
struct Session {
    path: String,
    protocol: String,
    rule: Option<RuleId>,
    sub: Option<String>,
}

impl Session {
    fn log_end(&self, started: Instant, copied: std::io::Result<(u64, u64)>) {
        let rule: &dyn std::fmt::Display = match &self.rule {
            Some(rule) => rule,
            None => &"-",
        };
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        let (from_client, from_upstream, error) = match &copied {
            Ok((c, u)) => (*c, *u, None),
            Err(e) => (0, 0, Some(e.to_string())),
        };
        tracing::info!(
            target: "cognito_gate::access",
            endpoint = "proxy",
            path = %self.path,
            protocol = %self.protocol,
            rule = %rule,
            sub = self.sub.as_deref().unwrap_or("-"),
            duration_ms = format_args!("{duration_ms:.3}"),
            bytes_from_client = from_client,
            bytes_from_upstream = from_upstream,
            error = error.as_deref().unwrap_or("-"),
            "upgraded connection closed"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_calls_are_told_by_their_content_type() {
        let with = |ct: &'static str| {
            let mut h = http::HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            is_grpc(&h)
        };
        for yes in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC+json",
            "application/grpc;charset=utf-8",
        ] {
            assert!(with(yes), "{yes}");
        }
        for no in [
            "application/grpc-web",
            "application/grpcx",
            "application/json",
            "application/grp",
            "",
        ] {
            assert!(!with(no), "{no}");
        }
        assert!(!is_grpc(&http::HeaderMap::new()));
    }
}
