//! Envoy's gRPC external authorization (`envoy.service.auth.v3.Authorization/Check`)
//! and the standard `grpc.health.v1` health service, on `authz.grpc_listen`, over h2c.
//!
//! A `Check` is decided by the same [`DecisionService`] as the HTTP endpoints, which
//! answers in HTTP; that answer is then written as the `CheckResponse`, so a client
//! behind Envoy gets the same status, challenge and JSON body either way.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, DeniedHttpResponse,
    HeaderAppendAction, HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::envoy::config::core::v3::{HeaderMap as PbHeaderMap, HeaderValue as PbValue};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::watch;
use tonic::codegen::Service;
use tonic::Code;
use tonic_health::server::{health_reporter, HealthReporter};
use tonic_health::ServingStatus;

use super::answer::{BoxError, GateBody};
use super::decision::{DecisionService, Endpoint, OriginalRequest, Verdict, Via};
use crate::authorize::Authorizer;
use crate::rejection::Rejection;
use crate::trace::RequestSpan;

const AUTHORIZATION: &str = "/envoy.service.auth.v3.Authorization/";
const HEALTH: &str = "/grpc.health.v1.Health/";
/// The service names the health service reports on (besides "", the whole server).
const AUTHORIZATION_SERVICE: &str = "envoy.service.auth.v3.Authorization";

/// The gRPC listener's services, cheap to clone per request.
#[derive(Clone)]
pub(crate) struct GrpcServices<H> {
    decisions: Arc<DecisionService>,
    authz: AuthorizationServer<ExtAuthz>,
    health: H,
}

/// Builds the services, and a task that keeps the health status in step with the
/// keys: SERVING once every pool has keys, as `/readyz`.
pub(crate) fn services(
    decisions: Arc<DecisionService>,
    authz: Arc<Authorizer>,
    stopped: watch::Receiver<bool>,
) -> (
    GrpcServices<
        impl Service<
                Request<Incoming>,
                Response = Response<tonic::body::Body>,
                Error = Infallible,
                Future: Send,
            > + Clone
            + Send
            + 'static,
    >,
    tokio::task::JoinHandle<()>,
) {
    let (reporter, health) = health_reporter();
    let updater = tokio::spawn(report_readiness(reporter, authz, stopped));
    let authz = AuthorizationServer::new(ExtAuthz {
        decisions: decisions.clone(),
    });
    (
        GrpcServices {
            decisions,
            authz,
            health,
        },
        updater,
    )
}

/// Keeps the health status in step with the keys and the revocation list, and turns
/// it to NOT_SERVING for good when the drain begins, so that a client watching it
/// moves its calls before the connection goes.
async fn report_readiness(
    reporter: HealthReporter,
    authz: Arc<Authorizer>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut last = None;
    loop {
        // The stop signal set, or its sender gone with the gate.
        let draining = *stopped.borrow() || stopped.has_changed().is_err();
        // The keys of the current state: a reload may bring other pools.
        let status = if !draining && authz.state().keys.is_ready() && authz.revocation_ready() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        if last != Some(status) {
            reporter.set_service_status("", status).await;
            reporter
                .set_service_status(AUTHORIZATION_SERVICE, status)
                .await;
            last = Some(status);
        }
        if draining {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stopped.changed() => {}
        }
    }
}

impl<H> GrpcServices<H>
where
    H: Service<Request<Incoming>, Response = Response<tonic::body::Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    H::Future: Send,
{
    /// Routes one gRPC call by its path, after checking `authz.trusted_peers`.
    pub(crate) async fn handle(
        self,
        mut req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<GateBody> {
        if !self.decisions.trusts(peer) {
            return grpc_error(
                Code::PermissionDenied,
                "this peer may not ask for decisions",
            );
        }
        req.extensions_mut().insert(Peer(peer.ip()));
        let path = req.uri().path();
        let answered = if path.starts_with(AUTHORIZATION) {
            let mut authz = self.authz;
            authz.call(req).await
        } else if path.starts_with(HEALTH) {
            let mut health = self.health;
            health.call(req).await
        } else {
            return grpc_error(Code::Unimplemented, "no such service");
        };
        match answered {
            Ok(response) => response.map(|body| body.map_err(BoxError::from).boxed_unsync()),
            Err(never) => match never {},
        }
    }
}

/// A trailers-only gRPC error answer.
fn grpc_error(code: Code, message: &str) -> Response<GateBody> {
    tonic::Status::new(code, message)
        .into_http::<tonic::body::Body>()
        .map(|body| body.map_err(BoxError::from).boxed_unsync())
}

/// The connection's peer, handed to the `Check` service in the request's extensions.
#[derive(Debug, Clone, Copy)]
struct Peer(IpAddr);

/// The `Authorization` service: one `Check` per request Envoy forwards.
#[derive(Clone)]
pub(crate) struct ExtAuthz {
    decisions: Arc<DecisionService>,
}

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let started = Instant::now();
        let _in_flight = self.decisions.metrics().in_flight();
        let attributes = request.get_ref().attributes.as_ref();
        let http = attributes
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref());
        // The downstream client as Envoy saw it; without it, Envoy itself relayed.
        let downstream = attributes
            .and_then(|a| a.source.as_ref())
            .and_then(|s| s.address.as_ref())
            .and_then(|a| match &a.address {
                Some(
                    envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(s),
                ) => s.address.parse::<IpAddr>().ok(),
                _ => None,
            });
        let peer = request
            .extensions()
            .get::<Peer>()
            .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |p| p.0);
        let via = match downstream {
            Some(client) => Via::Downstream(client),
            None => Via::Peer(peer),
        };
        // Envoy's own trace (the call's metadata, not the client's headers) is
        // continued: the peer is one of `authz.trusted_peers`.
        let tracing = self.decisions.tracing();
        let span = match tracing.is_on() {
            true => {
                let (method, path) = http
                    .map(|h| (h.method.as_str(), h.path.as_str()))
                    .unwrap_or(("-", "-"));
                let metadata = request.metadata().clone().into_headers();
                tracing.server(Endpoint::EnvoyGrpc.name(), method, path, &metadata, true)
            }
            false => RequestSpan::NONE,
        };
        let verdict = match http.map(original_request) {
            Some(Ok((original, headers))) => {
                self.decisions
                    .decide(
                        Endpoint::EnvoyGrpc,
                        &original,
                        &headers,
                        via,
                        started,
                        &span,
                    )
                    .await
            }
            Some(Err(rejection)) => {
                let (method, path) = http
                    .map(|h| (h.method.as_str(), h.path.as_str()))
                    .unwrap_or_default();
                self.decisions
                    .refuse(Endpoint::EnvoyGrpc, method, path, rejection, started, &span)
            }
            None => self.decisions.refuse(
                Endpoint::EnvoyGrpc,
                "-",
                "-",
                Rejection::MissingOriginalRequest,
                started,
                &span,
            ),
        };
        Ok(tonic::Response::new(check_response(verdict)))
    }
}

/// The original method, path and headers of a `CheckRequest`: `headers` (lower-case
/// names, values merged), or `header_map` when Envoy sends raw values. Pseudo-headers
/// (`:path`, `:method`, ...) are left out; a header that is not valid HTTP refuses the
/// request rather than being dropped.
fn original_request(http: &HttpRequest) -> Result<(OriginalRequest, HeaderMap), Rejection> {
    let original = OriginalRequest::from_target(http.method.as_bytes(), http.path.as_bytes())?
        .for_host(
            Some(http.host.as_str())
                .filter(|h| !h.is_empty())
                .map(HeaderValue::from_str)
                .transpose()
                .map_err(|_| Rejection::InvalidOriginalRequest)?,
        );
    let mut headers = HeaderMap::new();
    let mut add = |name: &str, value: &[u8]| -> Result<(), Rejection> {
        if name.starts_with(':') {
            return Ok(());
        }
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Rejection::InvalidOriginalRequest)?;
        let value =
            HeaderValue::from_bytes(value).map_err(|_| Rejection::InvalidOriginalRequest)?;
        headers.append(name, value);
        Ok(())
    };
    match &http.header_map {
        Some(PbHeaderMap { headers: raw }) if !raw.is_empty() => {
            for PbValue {
                key,
                value,
                raw_value,
            } in raw
            {
                let bytes = if raw_value.is_empty() {
                    value.as_bytes()
                } else {
                    raw_value.as_slice()
                };
                add(key, bytes)?;
            }
        }
        _ => {
            for (name, value) in &http.headers {
                add(name, value.as_bytes())?;
            }
        }
    }
    Ok((original, headers))
}

/// A verdict as Envoy's `CheckResponse`. Allowed: `OkHttpResponse` with the identity
/// headers (overwriting the client's), the headers to remove, and the client's CORS
/// headers. Refused: `DeniedHttpResponse` with the status, headers and body the HTTP
/// endpoints would answer, which Envoy returns to the client as they are, and the
/// refusal's own gRPC code.
fn check_response(verdict: Verdict) -> CheckResponse {
    let option = |(name, value): (&HeaderName, &HeaderValue)| HeaderValueOption {
        header: Some(PbValue {
            key: name.as_str().to_owned(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ..Default::default()
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    };
    let rejection = match verdict.outcome {
        Ok(granted) => {
            return CheckResponse {
                status: Some(RpcStatus {
                    code: Code::Ok as i32,
                    ..Default::default()
                }),
                http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                    headers: granted.headers.iter().map(option).collect(),
                    headers_to_remove: granted
                        .remove
                        .iter()
                        .map(|n| n.as_str().to_owned())
                        .collect(),
                    response_headers_to_add: verdict.client_headers.iter().map(option).collect(),
                    ..Default::default()
                })),
                ..Default::default()
            }
        }
        Err(rejection) => rejection,
    };
    let request_id = verdict.request_id.as_ref().and_then(|v| v.to_str().ok());
    let written = rejection.written(request_id);
    CheckResponse {
        status: Some(RpcStatus {
            code: rejection.grpc_code() as i32,
            message: written.status.to_string(),
            ..Default::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(written.status.as_u16()),
            }),
            headers: written
                .headers
                .iter()
                .chain(verdict.client_headers.iter())
                .map(option)
                .collect(),
            body: written.body,
        })),
        ..Default::default()
    }
}
