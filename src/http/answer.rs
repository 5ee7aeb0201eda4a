//! Every way a request can be refused, and the one place that maps each to its answer:
//! status, RFC 6750 challenge, JSON body, and whose fault it is.

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::authorize::AuthError;
use crate::token::TokenError;

/// An error from any body the gate relays: the app's (hyper) or a gRPC service's.
pub use crate::client::BoxError;

/// The body type of every response the gate writes or relays.
pub type GateBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// A complete in-memory body, boxed to the type every response shares.
pub fn full_body(bytes: impl Into<Bytes>) -> GateBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The standard methods the gate forwards, for the `Allow` header of a 405. Extension
/// methods in upper case are forwarded too; `CONNECT` and `TRACE` never are.
pub const FORWARDED_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS";

/// The realm of every `WWW-Authenticate` challenge.
pub const REALM: &str = "cognito-gate";

/// Anything that ends a request with an error answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("the request body is malformed or was cut off")]
    BadRequestBody,
    #[error("the upstream could not be reached")]
    UpstreamUnreachable,
    #[error("the upstream did not answer in time")]
    UpstreamTimeout,
    #[error("internal error")]
    Internal,
    #[error("this peer may not ask for decisions (see authz.trusted_peers)")]
    UntrustedPeer,
    #[error("send X-Original-Method and X-Original-URI (nginx auth_request) or X-Forwarded-Method and X-Forwarded-Uri (Traefik, Caddy)")]
    MissingOriginalRequest,
    #[error(
        "both X-Original-* and X-Forwarded-* describe the original request; send one family only"
    )]
    AmbiguousOriginalRequest,
    #[error("the original method or URI header is not valid")]
    InvalidOriginalRequest,
    #[error("a header spells an identity or method/path override header with '_' or '.'; the proxy in front cannot remove it")]
    OddHeaderSpelling,
    #[error("no such endpoint")]
    NotFound,
}

/// Whose fault a rejection is, which sets its log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Client,
    Upstream,
    Ours,
}

/// What the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    pub error: &'static str,
    /// The RFC 6750 challenge, for 400/401/403 answers about the bearer token.
    pub challenge: Option<String>,
    pub fault: Fault,
}

fn bearer(error: Option<&str>, description: Option<&str>) -> Option<String> {
    let mut c = format!("Bearer realm=\"{REALM}\"");
    if let Some(e) = error {
        c.push_str(&format!(", error=\"{e}\""));
    }
    if let Some(d) = description {
        c.push_str(&format!(", error_description=\"{d}\""));
    }
    Some(c)
}

impl Rejection {
    /// The single mapping from rejection to answer (RFC 6750 §3.1 for the challenges).
    pub fn answer(&self) -> Answer {
        use StatusCode as S;
        let (status, error, challenge, fault) = match self {
            Rejection::Auth(AuthError::BadMethod) => {
                (S::BAD_REQUEST, "invalid_method", None, Fault::Client)
            }
            Rejection::Auth(AuthError::MethodNotAllowed) => (
                S::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                None,
                Fault::Client,
            ),
            Rejection::Auth(AuthError::UpgradeNotAllowed) => {
                (S::BAD_REQUEST, "upgrade_not_allowed", None, Fault::Client)
            }
            Rejection::Auth(AuthError::BadPath(_)) => {
                (S::BAD_REQUEST, "invalid_path", None, Fault::Client)
            }
            Rejection::Auth(AuthError::AmbiguousCredentials) => (
                S::BAD_REQUEST,
                "invalid_request",
                bearer(Some("invalid_request"), None),
                Fault::Client,
            ),
            Rejection::Auth(AuthError::MissingToken) => (
                S::UNAUTHORIZED,
                "unauthorized",
                bearer(None, None),
                Fault::Client,
            ),
            Rejection::Auth(AuthError::KeysUnavailable) => (
                S::SERVICE_UNAVAILABLE,
                "keys_unavailable",
                None,
                Fault::Ours,
            ),
            Rejection::Auth(AuthError::ClockUnavailable) => (
                S::SERVICE_UNAVAILABLE,
                "clock_unavailable",
                None,
                Fault::Ours,
            ),
            Rejection::Auth(AuthError::InvalidToken(e)) => match e {
                TokenError::TooLarge
                | TokenError::Malformed(_)
                | TokenError::UnsupportedAlgorithm
                | TokenError::MissingKeyId
                | TokenError::InvalidKeyId
                | TokenError::SignerNotAllowed
                | TokenError::CriticalHeader
                | TokenError::UnknownIssuer
                | TokenError::UnknownKeyId
                | TokenError::KeyNotUsable
                | TokenError::AlgorithmMismatch
                | TokenError::InvalidSignature
                | TokenError::Expired
                | TokenError::NotYetValid
                | TokenError::MissingClaim(_)
                | TokenError::InvalidClaimType(_)
                | TokenError::InvalidTokenUse
                | TokenError::TokenUseNotAccepted
                | TokenError::ClientNotAllowed => (
                    S::UNAUTHORIZED,
                    "invalid_token",
                    bearer(Some("invalid_token"), Some(&e.to_string())),
                    Fault::Client,
                ),
            },
            Rejection::Auth(AuthError::NotGranted) => (
                S::FORBIDDEN,
                "insufficient_scope",
                bearer(Some("insufficient_scope"), None),
                Fault::Client,
            ),
            Rejection::Auth(AuthError::NoMatchingRule) => {
                (S::FORBIDDEN, "no_matching_rule", None, Fault::Client)
            }
            Rejection::Auth(AuthError::Denied) => (S::FORBIDDEN, "denied", None, Fault::Client),
            Rejection::Auth(AuthError::BadHost) => {
                (S::BAD_REQUEST, "invalid_host", None, Fault::Client)
            }
            Rejection::Auth(AuthError::MethodOverride) => {
                (S::BAD_REQUEST, "method_override", None, Fault::Client)
            }
            Rejection::Auth(AuthError::PreflightAnswered) => {
                (S::NO_CONTENT, "preflight", None, Fault::Client)
            }
            Rejection::Auth(AuthError::CorsRefused(_)) => {
                (S::FORBIDDEN, "cors_not_allowed", None, Fault::Client)
            }
            Rejection::BadRequestBody => (S::BAD_REQUEST, "invalid_body", None, Fault::Client),
            Rejection::UpstreamUnreachable => {
                (S::BAD_GATEWAY, "bad_gateway", None, Fault::Upstream)
            }
            Rejection::UpstreamTimeout => {
                (S::GATEWAY_TIMEOUT, "gateway_timeout", None, Fault::Upstream)
            }
            Rejection::Internal => (
                S::INTERNAL_SERVER_ERROR,
                "internal_error",
                None,
                Fault::Ours,
            ),
            Rejection::UntrustedPeer => (S::FORBIDDEN, "untrusted_peer", None, Fault::Client),
            Rejection::MissingOriginalRequest => (
                S::BAD_REQUEST,
                "missing_original_request",
                None,
                Fault::Client,
            ),
            Rejection::AmbiguousOriginalRequest => (
                S::BAD_REQUEST,
                "ambiguous_original_request",
                None,
                Fault::Client,
            ),
            Rejection::InvalidOriginalRequest => (
                S::BAD_REQUEST,
                "invalid_original_request",
                None,
                Fault::Client,
            ),
            Rejection::OddHeaderSpelling => {
                (S::BAD_REQUEST, "odd_header_spelling", None, Fault::Client)
            }
            Rejection::NotFound => (S::NOT_FOUND, "not_found", None, Fault::Client),
        };
        Answer {
            status,
            error,
            challenge,
            fault,
        }
    }

    /// The response: the status, the challenge if any, and a small JSON body that
    /// names the problem and the request id without echoing the token or internals.
    pub fn response(&self, request_id: Option<&str>) -> Response<GateBody> {
        let answer = self.answer();
        if answer.status == StatusCode::NO_CONTENT {
            // An answered preflight: its CORS headers are written by the listener.
            let mut response = Response::new(full_body(""));
            *response.status_mut() = answer.status;
            return response;
        }
        let body = match request_id {
            Some(id) => serde_json::json!({
                "error": answer.error, "message": self.to_string(), "request_id": id
            }),
            None => serde_json::json!({ "error": answer.error, "message": self.to_string() }),
        };
        let mut response = Response::new(full_body(body.to_string()));
        *response.status_mut() = answer.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(value) = answer
            .challenge
            .and_then(|c| HeaderValue::from_str(&c).ok())
        {
            headers.insert(WWW_AUTHENTICATE, value);
        }
        if answer.status == StatusCode::METHOD_NOT_ALLOWED {
            // RFC 9110 §15.5.6: a 405 lists the methods that are supported.
            headers.insert(ALLOW, HeaderValue::from_static(FORWARDED_METHODS));
        }
        response
    }

    /// The answer a gRPC client understands: HTTP 200 with no body and the status in
    /// the headers (a "Trailers-Only" response, gRPC over HTTP/2 spec), since a bare
    /// 401 reads to a gRPC client as a protocol error.
    pub fn grpc_response(&self) -> Response<GateBody> {
        let answer = self.answer();
        let mut response = Response::new(full_body(""));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from(grpc_code(answer.status)));
        if let Ok(message) = HeaderValue::from_str(&grpc_message(&self.to_string())) {
            headers.insert("grpc-message", message);
        }
        if let Some(value) = answer
            .challenge
            .and_then(|c| HeaderValue::from_str(&c).ok())
        {
            headers.insert(WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// The gRPC status code for an HTTP status the gate answers with (the mapping gRPC's
/// own `http-grpc-status-mapping` uses, refined where the gate knows more).
pub fn grpc_code(status: StatusCode) -> i32 {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::METHOD_NOT_ALLOWED => 3, // INVALID_ARGUMENT
        StatusCode::UNAUTHORIZED => 16,                                // UNAUTHENTICATED
        StatusCode::FORBIDDEN => 7,                                    // PERMISSION_DENIED
        StatusCode::NOT_FOUND => 12,                                   // UNIMPLEMENTED
        StatusCode::GATEWAY_TIMEOUT => 4,                              // DEADLINE_EXCEEDED
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE => 14, // UNAVAILABLE
        _ => 13,                                                       // INTERNAL
    }
}

/// `grpc-message`: percent-encoded UTF-8, every byte outside visible ASCII and `%`
/// escaped (gRPC over HTTP/2 spec).
fn grpc_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::PathError;

    #[test]
    fn grpc_clients_get_a_status_they_understand() {
        let cases = [
            (Rejection::Auth(AuthError::MissingToken), "16"),
            (Rejection::Auth(AuthError::NotGranted), "7"),
            (Rejection::Auth(AuthError::KeysUnavailable), "14"),
            (Rejection::UpstreamTimeout, "4"),
            (Rejection::Auth(AuthError::BadMethod), "3"),
            (Rejection::Internal, "13"),
        ];
        for (rejection, code) in cases {
            let r = rejection.grpc_response();
            assert_eq!(r.status(), StatusCode::OK, "{rejection:?}");
            assert_eq!(r.headers()["grpc-status"], code, "{rejection:?}");
            assert_eq!(r.headers()[CONTENT_TYPE], "application/grpc");
        }
        assert_eq!(grpc_message("no bearer token"), "no bearer token");
        assert_eq!(grpc_message("100% é"), "100%25 %C3%A9");
    }

    #[test]
    fn each_rejection_maps_to_its_status_and_challenge() {
        let r = |e: AuthError| Rejection::Auth(e);
        let cases = [
            (r(AuthError::BadMethod), 400, None),
            (r(AuthError::MethodNotAllowed), 405, None),
            (r(AuthError::UpgradeNotAllowed), 400, None),
            (r(AuthError::BadPath(PathError::DotSegment)), 400, None),
            (
                r(AuthError::AmbiguousCredentials),
                400,
                Some(r#"Bearer realm="cognito-gate", error="invalid_request""#),
            ),
            (
                r(AuthError::MissingToken),
                401,
                Some(r#"Bearer realm="cognito-gate""#),
            ),
            (
                r(AuthError::InvalidToken(TokenError::Expired)),
                401,
                Some(
                    r#"Bearer realm="cognito-gate", error="invalid_token", error_description="token has expired""#,
                ),
            ),
            (
                r(AuthError::InvalidToken(TokenError::MissingClaim("sub"))),
                401,
                Some(
                    r#"Bearer realm="cognito-gate", error="invalid_token", error_description="token has no sub claim""#,
                ),
            ),
            (r(AuthError::KeysUnavailable), 503, None),
            (r(AuthError::ClockUnavailable), 503, None),
            (
                r(AuthError::NotGranted),
                403,
                Some(r#"Bearer realm="cognito-gate", error="insufficient_scope""#),
            ),
            (r(AuthError::NoMatchingRule), 403, None),
            (r(AuthError::Denied), 403, None),
            (r(AuthError::BadHost), 400, None),
            (r(AuthError::MethodOverride), 400, None),
            (r(AuthError::PreflightAnswered), 204, None),
            (
                r(AuthError::CorsRefused(crate::cors::Refusal::Method)),
                403,
                None,
            ),
            (Rejection::BadRequestBody, 400, None),
            (Rejection::UpstreamUnreachable, 502, None),
            (Rejection::UpstreamTimeout, 504, None),
            (Rejection::Internal, 500, None),
            (Rejection::UntrustedPeer, 403, None),
            (Rejection::MissingOriginalRequest, 400, None),
            (Rejection::AmbiguousOriginalRequest, 400, None),
            (Rejection::InvalidOriginalRequest, 400, None),
            (Rejection::OddHeaderSpelling, 400, None),
            (Rejection::NotFound, 404, None),
        ];
        for (rejection, status, challenge) in cases {
            let a = rejection.answer();
            assert_eq!(a.status.as_u16(), status, "{rejection:?}");
            assert_eq!(a.challenge.as_deref(), challenge, "{rejection:?}");
        }
    }

    #[test]
    fn key_trouble_is_our_fault_and_upstream_trouble_the_upstreams() {
        let keys = Rejection::Auth(AuthError::KeysUnavailable);
        assert_eq!(keys.answer().fault, Fault::Ours);
        assert_eq!(Rejection::UpstreamTimeout.answer().fault, Fault::Upstream);
        assert_eq!(
            Rejection::Auth(AuthError::MissingToken).answer().fault,
            Fault::Client
        );
    }

    #[test]
    fn every_error_description_is_a_valid_quoted_string() {
        // RFC 6750 §3: error_description must not contain '"' or '\'.
        let all = [
            TokenError::TooLarge,
            TokenError::Malformed("x"),
            TokenError::UnsupportedAlgorithm,
            TokenError::MissingKeyId,
            TokenError::CriticalHeader,
            TokenError::UnknownIssuer,
            TokenError::UnknownKeyId,
            TokenError::KeyNotUsable,
            TokenError::AlgorithmMismatch,
            TokenError::InvalidSignature,
            TokenError::Expired,
            TokenError::NotYetValid,
            TokenError::MissingClaim("x"),
            TokenError::InvalidClaimType("x"),
            TokenError::InvalidTokenUse,
            TokenError::TokenUseNotAccepted,
            TokenError::ClientNotAllowed,
        ];
        for e in all {
            let text = e.to_string();
            assert!(!text.contains(['"', '\\']), "{text}");
        }
    }
}
