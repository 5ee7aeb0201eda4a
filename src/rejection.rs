//! Every way a request can be refused, and the one place that maps each to what it
//! means: the HTTP status, the RFC 6750 challenge, the error code, the gRPC status
//! code, and whose fault it is. Below the listeners, so that the policy's own tests
//! judge statuses the way a request is answered without importing the web layer.
//! May import `authorize` and `token`.

use http::StatusCode;

use crate::authorize::AuthError;
use crate::token::TokenError;

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
            Rejection::Auth(AuthError::RevocationUnavailable) => (
                S::SERVICE_UNAVAILABLE,
                "revocation_unavailable",
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
                | TokenError::ClientNotAllowed
                | TokenError::Revoked => (
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

    /// The gRPC status code of this refusal, for Envoy's `CheckResponse` and for gRPC
    /// apps behind the proxy (gRPC's `http-grpc-status-mapping`, refined where the gate
    /// knows more). An answered preflight is still a denial: Envoy answers it.
    pub fn grpc_code(&self) -> tonic::Code {
        use tonic::Code as C;
        match self {
            Rejection::Auth(e) => match e {
                AuthError::BadMethod
                | AuthError::MethodNotAllowed
                | AuthError::UpgradeNotAllowed
                | AuthError::BadPath(_)
                | AuthError::AmbiguousCredentials
                | AuthError::BadHost
                | AuthError::MethodOverride => C::InvalidArgument,
                AuthError::MissingToken | AuthError::InvalidToken(_) => C::Unauthenticated,
                AuthError::KeysUnavailable
                | AuthError::ClockUnavailable
                | AuthError::RevocationUnavailable => C::Unavailable,
                AuthError::NotGranted
                | AuthError::NoMatchingRule
                | AuthError::Denied
                | AuthError::PreflightAnswered
                | AuthError::CorsRefused(_) => C::PermissionDenied,
            },
            Rejection::BadRequestBody
            | Rejection::MissingOriginalRequest
            | Rejection::AmbiguousOriginalRequest
            | Rejection::InvalidOriginalRequest
            | Rejection::OddHeaderSpelling => C::InvalidArgument,
            Rejection::UntrustedPeer => C::PermissionDenied,
            Rejection::UpstreamUnreachable => C::Unavailable,
            Rejection::UpstreamTimeout => C::DeadlineExceeded,
            Rejection::Internal => C::Internal,
            Rejection::NotFound => C::Unimplemented,
        }
    }
}

#[cfg(test)]
impl Rejection {
    /// One of every kind of refusal (each token error once), derived from exhaustive
    /// matches: a new variant does not compile until it is given a successor here, and
    /// so joins the list the reference tables are checked against.
    pub(crate) fn every() -> Vec<Rejection> {
        use AuthError as A;
        use Rejection as R;
        let mut all = Vec::new();
        let mut next = Some(R::Auth(A::BadMethod));
        while let Some(r) = next {
            assert!(!all.contains(&r), "{r:?} twice: the chain loops");
            all.push(r.clone());
            next = match r {
                R::Auth(e) => match e {
                    A::BadMethod => Some(A::MethodNotAllowed),
                    A::MethodNotAllowed => Some(A::UpgradeNotAllowed),
                    A::UpgradeNotAllowed => Some(A::BadPath(crate::path::PathError::DotSegment)),
                    A::BadPath(_) => Some(A::AmbiguousCredentials),
                    A::AmbiguousCredentials => Some(A::MissingToken),
                    A::MissingToken => Some(A::InvalidToken(TokenError::TooLarge)),
                    A::InvalidToken(t) => {
                        let errors = TokenError::every();
                        let after = errors.iter().skip_while(|e| **e != t).nth(1);
                        Some(after.map_or(A::KeysUnavailable, |t| A::InvalidToken(*t)))
                    }
                    A::KeysUnavailable => Some(A::ClockUnavailable),
                    A::ClockUnavailable => Some(A::RevocationUnavailable),
                    A::RevocationUnavailable => Some(A::NotGranted),
                    A::NotGranted => Some(A::Denied),
                    A::Denied => Some(A::NoMatchingRule),
                    A::NoMatchingRule => Some(A::BadHost),
                    A::BadHost => Some(A::MethodOverride),
                    A::MethodOverride => Some(A::PreflightAnswered),
                    A::PreflightAnswered => Some(A::CorsRefused(crate::cors::Refusal::Method)),
                    A::CorsRefused(_) => None,
                }
                .map(R::Auth)
                .or(Some(R::BadRequestBody)),
                R::BadRequestBody => Some(R::UpstreamUnreachable),
                R::UpstreamUnreachable => Some(R::UpstreamTimeout),
                R::UpstreamTimeout => Some(R::Internal),
                R::Internal => Some(R::UntrustedPeer),
                R::UntrustedPeer => Some(R::MissingOriginalRequest),
                R::MissingOriginalRequest => Some(R::AmbiguousOriginalRequest),
                R::AmbiguousOriginalRequest => Some(R::InvalidOriginalRequest),
                R::InvalidOriginalRequest => Some(R::OddHeaderSpelling),
                R::OddHeaderSpelling => Some(R::NotFound),
                R::NotFound => None,
            };
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::PathError;

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
    fn every_refusal_has_a_grpc_code_that_agrees_with_its_status() {
        use tonic::Code as C;
        for rejection in Rejection::every() {
            let status = rejection.answer().status.as_u16();
            let code = rejection.grpc_code();
            let agrees = match status {
                400 | 405 => code == C::InvalidArgument,
                401 => code == C::Unauthenticated,
                // An answered preflight is a denial to Envoy: it answers it itself.
                204 | 403 => code == C::PermissionDenied,
                404 => code == C::Unimplemented,
                500 => code == C::Internal,
                502 | 503 => code == C::Unavailable,
                504 => code == C::DeadlineExceeded,
                _ => false,
            };
            assert!(agrees, "{rejection:?}: {status} and {code:?}");
        }
    }

    #[test]
    fn every_error_description_is_a_valid_quoted_string() {
        // RFC 6750 §3: error_description must not contain '"' or '\'.
        for e in TokenError::every() {
            let text = e.to_string();
            assert!(!text.contains(['"', '\\']), "{text}");
        }
    }

    #[test]
    fn the_status_code_reference_lists_every_refusal_and_nothing_else() {
        let mut documented: Vec<(String, String)> =
            crate::manual::rows("reference/status-codes.md", "status")
                .into_iter()
                .map(|row| (row[0].clone(), row[1].clone()))
                .collect();
        documented.sort();
        let before = documented.len();
        documented.dedup();
        assert_eq!(
            documented.len(),
            before,
            "a status and error are listed twice"
        );
        let mut answered: Vec<(String, String)> = Rejection::every()
            .iter()
            .map(|r| {
                let answer = r.answer();
                let error = match answer.status {
                    // An answered preflight has no body, and so no `error`.
                    StatusCode::NO_CONTENT => "(none)".to_owned(),
                    _ => format!("`{}`", answer.error),
                };
                (answer.status.as_u16().to_string(), error)
            })
            .collect();
        // hyper's own answer to a request head over `max_header_bytes`, before the gate
        // sees a request (tests/it/proxy.rs holds it).
        answered.push(("431".to_owned(), "—".to_owned()));
        answered.sort();
        answered.dedup();
        assert_eq!(documented, answered, "docs/reference/status-codes.md");
    }

    #[test]
    fn the_status_code_reference_names_every_error_description_and_nothing_else() {
        let mut documented: Vec<String> =
            crate::manual::rows("reference/status-codes.md", "`error_description`")
                .into_iter()
                .map(|row| row[0].trim_matches('`').to_owned())
                .collect();
        documented.sort();
        let mut described: Vec<String> =
            TokenError::every().iter().map(|e| e.to_string()).collect();
        described.sort();
        assert_eq!(documented, described, "docs/reference/status-codes.md");
    }
}
