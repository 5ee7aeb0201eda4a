//! Decision endpoints for proxies that keep forwarding themselves: nginx `auth_request`,
//! Traefik ForwardAuth and Caddy `forward_auth` (on `authz.path`), and Envoy's HTTP
//! `ext_authz` (under `authz.envoy_prefix`). They read the original method and path
//! the way each peer sends them, then ask the same [`Authorizer`] the proxy uses.
//! Envoy's gRPC `ext_authz` (`grpc.rs`) decides through [`DecisionService::decide`] too.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode};

use super::access_log::{record, Served};
use super::answer::{full_body, GateBody};
use super::forwarded::{Client, Forwarding};
use super::headers::{has_odd_spelling, verified_alb_data, IdentityHeaders, ROUTING_OVERRIDES};
use super::socket::Peer;
use crate::authorize::{AuthError, Authorizer, RequestFacts};
use crate::config::AuthzConfig;
use crate::cors;
use crate::path::PathError;
use crate::rejection::Rejection;
use crate::token::{Identity, ALB_DATA};
use crate::trace::{RequestSpan, Tracing};

/// Envoy removes the request headers this response header names (comma-separated).
const ENVOY_HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";

/// nginx's own cache lifetime header, read before `Cache-Control`; `0` caches nothing.
const X_ACCEL_EXPIRES: HeaderName = HeaderName::from_static("x-accel-expires");

/// Which peer's contract a request follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// nginx, Traefik, Caddy: the original request is described in headers.
    ForwardAuth,
    /// Envoy over HTTP: the original method is the request's own, the original path
    /// follows the prefix.
    Envoy,
    /// Envoy over gRPC: method, path and headers come in the `CheckRequest`.
    EnvoyGrpc,
}

impl Endpoint {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Endpoint::ForwardAuth => "forward_auth",
            Endpoint::Envoy => "ext_authz",
            Endpoint::EnvoyGrpc => "ext_authz_grpc",
        }
    }
}

/// Who relayed a decision request (see [`DecisionService::decide`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Via {
    Peer(IpAddr),
    Downstream(IpAddr),
}

/// What a decision endpoint decided, before any protocol writes it: the HTTP
/// endpoints render it as a response ([`DecisionService::handle`]), Envoy's gRPC
/// `Check` as a `CheckResponse` (`grpc.rs`). Nothing is parsed back from one to the
/// other: a refusal's status, challenge, error code, gRPC code and fault are its
/// [`Rejection`]'s.
pub(crate) struct Verdict {
    pub endpoint: Endpoint,
    /// What the peer hands the app, or why the request is refused.
    pub outcome: Result<Granted, Rejection>,
    /// The CORS headers of the client's response (Envoy's endpoints, `[cors]`).
    pub client_headers: HeaderMap,
    /// How long the peer may reuse an allow (see
    /// [`crate::authorize::Decision::reusable_for`]).
    pub reusable_for: Option<Duration>,
    /// The request id a refusal's body names.
    pub request_id: Option<HeaderValue>,
}

/// What an allow hands the peer.
pub(crate) struct Granted {
    /// The identity headers, to be written over the client's.
    pub headers: HeaderMap,
    /// The request headers the peer must remove (Envoy's endpoints).
    pub remove: Vec<HeaderName>,
}

/// The original request, as reported by the peer.
pub(crate) struct OriginalRequest {
    method: Method,
    /// The request target as the client sent it: the path (what the policy judges,
    /// after the same canonicalization as the proxy's) and the query.
    target: String,
    /// The host the client asked for, when the peer says: the header value itself,
    /// shared with the request (no copy per decision).
    host: Option<HeaderValue>,
}

impl OriginalRequest {
    fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(&self.target, |(path, _)| path)
    }

    fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    /// The original request from a method and a request target (path and query) as
    /// text: `X-Original-URI`, `X-Forwarded-Uri`, or a gRPC `CheckRequest`'s path. A
    /// method in the wrong case is kept, for `authorize` to refuse as it does for the
    /// proxy.
    pub(crate) fn from_target(method: &[u8], target: &[u8]) -> Result<OriginalRequest, Rejection> {
        let method = Method::from_bytes(method).map_err(|_| Rejection::InvalidOriginalRequest)?;
        // Origin form only (`http::uri` would read "" or "?q" as "/").
        if !target.starts_with(b"/") {
            return Err(Rejection::Auth(AuthError::BadPath(PathError::NotAbsolute)));
        }
        // nginx passes a raw `#` in `$request_uri`; the app would cut the path there.
        if target.contains(&b'#') {
            return Err(Rejection::Auth(AuthError::BadPath(PathError::Fragment)));
        }
        // The parser hyper uses for the proxy's own request targets, so that both read
        // the same path out of the same text.
        let target =
            PathAndQuery::try_from(target).map_err(|_| Rejection::InvalidOriginalRequest)?;
        Ok(OriginalRequest {
            method,
            target: target.as_str().to_owned(),
            host: None,
        })
    }

    /// The same request, for `host`.
    pub(crate) fn for_host(self, host: Option<HeaderValue>) -> OriginalRequest {
        OriginalRequest { host, ..self }
    }
}

/// The decision endpoints on `authz.listen`: the verdict only, for a proxy that keeps
/// forwarding itself.
pub struct DecisionService {
    authz: Arc<Authorizer>,
    identity: IdentityHeaders,
    settings: AuthzConfig,
    /// The override and identity header names whose other spellings `/auth` refuses.
    exact_names: Vec<String>,
    forwarding: Arc<Forwarding>,
}

impl DecisionService {
    pub fn new(
        authz: Arc<Authorizer>,
        identity: IdentityHeaders,
        settings: AuthzConfig,
        forwarding: Arc<Forwarding>,
    ) -> Self {
        let exact_names = ROUTING_OVERRIDES
            .iter()
            .map(|n| n.to_string())
            .chain(identity.names().map(|n| n.to_string()))
            .collect();
        DecisionService {
            authz,
            identity,
            settings,
            exact_names,
            forwarding,
        }
    }

    /// Answers one decision request and writes its access-log line.
    pub async fn handle<B>(&self, req: Request<B>, peer: SocketAddr) -> Response<GateBody> {
        let started = Instant::now();
        let _in_flight = self.authz.metrics().in_flight();
        // The peer is one of `authz.trusted_peers`: its trace is continued.
        let tracing = self.authz.tracing();
        let (endpoint, original) = match self.original_request(&req, peer) {
            Ok(found) => found,
            Err(rejection) => {
                let client = self.forwarding.client(req.headers(), &Peer::Tcp(peer));
                let span = tracing.server(
                    "authz",
                    req.method().as_str(),
                    req.uri().path(),
                    req.headers(),
                    true,
                );
                let served = self.served(
                    "authz",
                    req.method().as_str(),
                    req.uri().path(),
                    Some(&client),
                    started,
                    &span,
                );
                record(&served, false, Err(&rejection));
                return self.render(Verdict {
                    endpoint: Endpoint::ForwardAuth,
                    outcome: Err(rejection),
                    client_headers: HeaderMap::new(),
                    reusable_for: None,
                    request_id: Some(client.request_id),
                });
            }
        };
        let span = tracing.server(
            endpoint.name(),
            original.method.as_str(),
            original.path(),
            req.headers(),
            true,
        );
        let verdict = self
            .decide(
                endpoint,
                &original,
                req.headers(),
                Via::Peer(peer.ip()),
                started,
                &span,
            )
            .await;
        self.render(verdict)
    }

    /// Decides on `original`, with the peer's copy of the request `headers`, and
    /// writes the access-log line; the verdict is rendered by the endpoint's protocol.
    /// `via` is who relayed the client's request: the peer, whose copy of the
    /// client's headers (`X-Forwarded-For`, appended by the shipped peer configs) is
    /// believed; or Envoy's downstream address from a `CheckRequest`, which is the
    /// client unless it is one of `trusted_proxies`.
    pub(crate) async fn decide(
        &self,
        endpoint: Endpoint,
        original: &OriginalRequest,
        headers: &HeaderMap,
        via: Via,
        started: Instant,
        span: &RequestSpan,
    ) -> Verdict {
        let client = match via {
            Via::Peer(peer) => self.forwarding.client_via(headers, peer, true),
            Via::Downstream(client) => self
                .forwarding
                .client(headers, &Peer::Tcp(SocketAddr::new(client, 0))),
        };
        let authorizing = self.authz.authorize(RequestFacts {
            method: &original.method,
            path: original.path(),
            query: original.query(),
            host: original.host.as_ref().and_then(|h| h.to_str().ok()),
            headers,
            // `/auth` judges X-Forwarded-Host itself; the peer decides what the
            // app gets.
            forwarded_host_reaches_app: false,
            // The peer passes the client's `Forwarded` on to the app.
            forwarded_reaches_app: true,
            answers_preflight: endpoint != Endpoint::ForwardAuth,
        });
        let decision = span.scope(authorizing).await;
        let identity = decision.identity.as_deref();
        if let Some(identity) = identity.filter(|_| span.is_recording()) {
            let (kind, name) = self.authz.source_of(identity);
            span.identity(kind, &name, &identity.sub);
        }
        let preflight = matches!(decision.outcome, Err(AuthError::PreflightAnswered));
        let outcome = match decision.outcome {
            Ok(_) => Ok(self.grant(endpoint, identity, headers)),
            Err(e) => Err(Rejection::Auth(e)),
        };
        let served = Served {
            rule: decision.rule.as_ref(),
            sub: identity.map(|i| i.sub.as_str()),
            ..self.served(
                endpoint.name(),
                original.method.as_str(),
                original.path(),
                Some(&client),
                started,
                span,
            )
        };
        record(
            &served,
            outcome.is_ok(),
            outcome.as_ref().map(|_| StatusCode::OK),
        );
        // Envoy relays a denial (the answered preflight's 204 among them) to the
        // client as it is, and an allow's CORS headers through
        // `allowed_client_headers_on_success`. The peers of `/auth` write their own.
        let mut client_headers = HeaderMap::new();
        let cors = match endpoint {
            Endpoint::ForwardAuth => None,
            Endpoint::Envoy | Endpoint::EnvoyGrpc => self.authz.cors(),
        };
        if let Some(cors) = cors.and_then(|c| cors::allowed_origin(c, headers)) {
            cors.write(preflight, &mut client_headers);
        }
        Verdict {
            endpoint,
            outcome,
            client_headers,
            reusable_for: decision.reusable_for,
            request_id: Some(client.request_id),
        }
    }

    /// Refuses a request before a decision (its shape is wrong), and logs it.
    pub(crate) fn refuse(
        &self,
        endpoint: Endpoint,
        method: &str,
        path: &str,
        rejection: Rejection,
        started: Instant,
        span: &RequestSpan,
    ) -> Verdict {
        let served = self.served(endpoint.name(), method, path, None, started, span);
        record(&served, false, Err(&rejection));
        Verdict {
            endpoint,
            outcome: Err(rejection),
            client_headers: HeaderMap::new(),
            reusable_for: None,
            request_id: None,
        }
    }

    /// The HTTP endpoints' rendering of a verdict: 200 with the identity headers (on
    /// Envoy's, the request headers to remove in `x-envoy-auth-headers-to-remove`), or
    /// the refusal; then the cache headers for the peer and the client's CORS headers.
    fn render(&self, verdict: Verdict) -> Response<GateBody> {
        let request_id = verdict.request_id.as_ref().and_then(|v| v.to_str().ok());
        let mut response = match verdict.outcome {
            Ok(granted) => {
                let mut response = Response::new(full_body(""));
                let headers = response.headers_mut();
                *headers = granted.headers;
                let list = granted
                    .remove
                    .iter()
                    .map(HeaderName::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                if let (false, Ok(value)) = (list.is_empty(), HeaderValue::from_str(&list)) {
                    headers.insert(ENVOY_HEADERS_TO_REMOVE, value);
                }
                response
            }
            Err(rejection) => rejection.response(request_id),
        };
        let headers = response.headers_mut();
        self.write_cache_headers(verdict.endpoint, verdict.reusable_for, headers);
        for (name, value) in &verdict.client_headers {
            headers.append(name, value.clone());
        }
        response
    }

    /// With `authz.cache_max_age`, how long the peer may keep this answer: an allow
    /// that can be reused (see [`crate::authorize::Decision::reusable_for`]) for the
    /// limit or until the token expires, whichever is sooner; anything else not at
    /// all. nginx caches nothing marked `private`, so on `/auth` `X-Accel-Expires`,
    /// which it reads first, says the same to it. Without the key nothing is written.
    fn write_cache_headers(
        &self,
        endpoint: Endpoint,
        reusable_for: Option<Duration>,
        headers: &mut HeaderMap,
    ) {
        let Some(limit) = self.settings.cache_max_age else {
            return;
        };
        let seconds = reusable_for.map_or(0, |left| left.min(limit).as_secs());
        let (control, expires) = match HeaderValue::try_from(format!("private, max-age={seconds}"))
        {
            Ok(keep) if seconds > 0 => (keep, HeaderValue::from(seconds)),
            _ => (
                HeaderValue::from_static("no-store"),
                HeaderValue::from_static("0"),
            ),
        };
        headers.insert(CACHE_CONTROL, control);
        if endpoint == Endpoint::ForwardAuth {
            headers.insert(X_ACCEL_EXPIRES, expires);
        }
    }

    /// What the access log knows of a decision request before a rule or an identity
    /// decided it.
    fn served<'a>(
        &'a self,
        endpoint: &'static str,
        method: &'a str,
        path: &'a str,
        client: Option<&'a Client>,
        started: Instant,
        span: &'a RequestSpan,
    ) -> Served<'a> {
        Served {
            endpoint,
            method,
            path,
            rule: None,
            sub: None,
            started,
            upstream: Duration::ZERO,
            client,
            metrics: self.authz.metrics(),
            grpc: false,
            span,
        }
    }

    pub(crate) fn tracing(&self) -> &Tracing {
        self.authz.tracing()
    }

    pub(crate) fn metrics(&self) -> &crate::metrics::Metrics {
        self.authz.metrics()
    }

    /// Whether `peer` may ask for decisions; logs a refusal.
    pub(crate) fn trusts(&self, peer: SocketAddr) -> bool {
        let trusted = self.settings.trusts(peer.ip());
        if !trusted {
            tracing::warn!(%peer, "decision request from an untrusted peer refused");
        }
        trusted
    }

    /// Checks the peer, then finds the original method and URI for this endpoint.
    fn original_request<B>(
        &self,
        req: &Request<B>,
        peer: SocketAddr,
    ) -> Result<(Endpoint, OriginalRequest), Rejection> {
        if !self.trusts(peer) {
            return Err(Rejection::UntrustedPeer);
        }
        let path = req.uri().path();
        if path == self.settings.path {
            if has_odd_spelling(req.headers(), &self.exact_names) {
                return Err(Rejection::OddHeaderSpelling);
            }
            // nginx (as configured in the example), Traefik and Caddy name the
            // client's host in X-Forwarded-Host.
            let mut hosts = req.headers().get_all("x-forwarded-host").iter();
            let host = hosts.next().cloned();
            if hosts.next().is_some() {
                return Err(Rejection::Auth(AuthError::BadHost));
            }
            return original_from_headers(req.headers())
                .map(|o| (Endpoint::ForwardAuth, o.for_host(host)));
        }
        // The path and query after the prefix are the client's request target.
        let target = req.uri().path_and_query().map_or(path, |pq| pq.as_str());
        match target.strip_prefix(self.settings.envoy_prefix.as_str()) {
            Some(rest) if rest.starts_with('/') => {
                // Envoy's check request keeps the client's Host.
                let host = req.headers().get(http::header::HOST).cloned();
                Ok((
                    Endpoint::Envoy,
                    OriginalRequest {
                        method: req.method().clone(),
                        target: rest.to_owned(),
                        host,
                    },
                ))
            }
            _ => Err(Rejection::NotFound),
        }
    }

    /// What an allow hands the peer: the identity headers, written so that the peer
    /// also drops forgeries, and for Envoy the request headers to remove.
    fn grant(
        &self,
        endpoint: Endpoint,
        identity: Option<&Identity>,
        request_headers: &HeaderMap,
    ) -> Granted {
        let mut headers = HeaderMap::new();
        let alb_data = verified_alb_data(request_headers, identity);
        let mut remove = Vec::new();
        match endpoint {
            Endpoint::ForwardAuth => {
                match identity {
                    Some(identity) => self.identity.inject(&mut headers, identity),
                    // Caddy 2.6 copies a placeholder's literal text when a named header
                    // is missing, and nginx needs a value to overwrite with: send them
                    // empty.
                    None => {
                        for name in self.identity.written() {
                            headers.insert(name.clone(), HeaderValue::from_static(""));
                        }
                    }
                }
                // The peer copies this over the client's: the verified claims, or
                // nothing on a path where the gate verified none.
                headers.insert(
                    ALB_DATA,
                    alb_data.unwrap_or_else(|| HeaderValue::from_static("")),
                );
            }
            Endpoint::Envoy | Endpoint::EnvoyGrpc => {
                if let Some(identity) = identity {
                    self.identity.inject(&mut headers, identity);
                }
                remove =
                    self.envoy_removals(identity.is_some(), alb_data.is_some(), request_headers);
            }
        }
        Granted { headers, remove }
    }

    /// The request headers Envoy must remove on an allow. It overwrites the canonical
    /// identity names with `allowed_upstream_headers` when we send them; everything
    /// else that reads as an identity must go: every spelling the gate saw, and the
    /// load balancer's exact names (which Envoy may not have shown the gate), except a
    /// `x-amzn-oidc-data` this gate verified.
    fn envoy_removals(
        &self,
        identified: bool,
        alb_verified: bool,
        request_headers: &HeaderMap,
    ) -> Vec<HeaderName> {
        let mut remove: Vec<HeaderName> = self.identity.forged_names(request_headers);
        if identified {
            remove.retain(|n| !self.identity.written().any(|w| w == n));
        } else {
            for name in self.identity.written() {
                if !remove.contains(name) {
                    remove.push(name.clone());
                }
            }
        }
        for name in &self.identity.unverified {
            if !remove.contains(name) {
                remove.push(name.clone());
            }
        }
        if alb_verified {
            remove.retain(|n| n.as_str() != ALB_DATA);
        }
        remove
    }
}

/// Reads the original request from the nginx (`X-Original-*`) or the Traefik/Caddy
/// (`X-Forwarded-*`) family of headers. Both families at once is refused: a client
/// could have sent the family its proxy does not overwrite.
fn original_from_headers(headers: &HeaderMap) -> Result<OriginalRequest, Rejection> {
    let nginx = family(headers, "x-original-method", "x-original-uri");
    let forwarded = family(headers, "x-forwarded-method", "x-forwarded-uri");
    // A header of the family given twice is as ambiguous as both families.
    let twice = [
        "x-original-method",
        "x-original-uri",
        "x-forwarded-method",
        "x-forwarded-uri",
    ]
    .iter()
    .any(|name| headers.get_all(*name).iter().nth(1).is_some());
    let (method, uri) = match (nginx, forwarded) {
        _ if twice => return Err(Rejection::AmbiguousOriginalRequest),
        (Some(_), Some(_)) => return Err(Rejection::AmbiguousOriginalRequest),
        (Some(pair), None) | (None, Some(pair)) => pair,
        (None, None) => return Err(Rejection::MissingOriginalRequest),
    };
    let (Some(method), Some(uri)) = (method, uri) else {
        return Err(Rejection::MissingOriginalRequest);
    };
    OriginalRequest::from_target(method.as_bytes(), uri.as_bytes())
}

type Pair<'h> = (Option<&'h HeaderValue>, Option<&'h HeaderValue>);

fn family<'h>(headers: &'h HeaderMap, method: &str, uri: &str) -> Option<Pair<'h>> {
    let pair = (headers.get(method), headers.get(uri));
    (pair.0.is_some() || pair.1.is_some()).then_some(pair)
}
