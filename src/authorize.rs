//! The one decision core. The reverse proxy and every decision endpoint hand it the
//! request's method, raw path and headers; it answers with the canonical path to
//! forward, the rule that decided, and either the caller's identity or why not.
//! May import `policy`, `token`, `path`, `config` and `wire`; nothing from `http`.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::AUTHORIZATION;
use http::{HeaderMap, Method};

use crate::path::{self, PathError};
use crate::policy::{Policy, RuleId};
use crate::token::{Identity, KeyStore, TokenError, Verifier, VerifyError};
use crate::wire::upgrade_allowed;

/// Why `authorize` refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the method must be an upper-case token (RFC 9110 §9.1)")]
    BadMethod,
    #[error("this method cannot be forwarded")]
    MethodNotAllowed,
    #[error("this protocol upgrade is not allowed (see allowed_upgrades)")]
    UpgradeNotAllowed,
    #[error("{0}")]
    BadPath(PathError),
    #[error("more than one Authorization header")]
    AmbiguousCredentials,
    #[error("no bearer token")]
    MissingToken,
    #[error("{0}")]
    InvalidToken(TokenError),
    /// Our fault, not the token's: the pool's signing keys could not be fetched.
    #[error("signing keys are unavailable")]
    KeysUnavailable,
    /// The token is valid, but its groups or scopes do not satisfy the rule.
    #[error("the token's groups or scopes are not allowed by the rule")]
    NotGranted,
    #[error("no policy rule matches this request")]
    NoMatchingRule,
}

/// Where "now" comes from. Injected so that tests can verify tokens that Cognito
/// issued years ago, at an instant inside their validity window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Clock {
    System,
    /// A fixed instant, in seconds since the Unix epoch.
    Fixed(f64),
}

impl Clock {
    pub fn now(&self) -> f64 {
        match self {
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default(),
            Clock::Fixed(t) => *t,
        }
    }
}

/// What `authorize` needs to know about a request. The decision borrows only the path
/// (`'p`), so the caller may move the request once it has the answer.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'r, 'p> {
    pub method: &'r Method,
    /// The path as received, without the query.
    pub path: &'p str,
    /// The headers as they will be forwarded, as far as `Upgrade` and `Authorization`
    /// go: the proxy drops an h2c offer before asking; a decision endpoint cannot.
    pub headers: &'r HeaderMap,
}

/// Methods must be upper-case tokens: Werkzeug (Flask) upper-cases `delete` and runs
/// the DELETE view, while a rule for `DELETE` would not match it. `CONNECT` asks for a
/// tunnel and `TRACE` echoes credentials back (cross-site tracing): neither is
/// forwarded, as nginx refuses them too.
pub fn check_method(method: &Method) -> Result<(), AuthError> {
    if method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(AuthError::BadMethod);
    }
    if *method == Method::CONNECT || *method == Method::TRACE {
        return Err(AuthError::MethodNotAllowed);
    }
    Ok(())
}

/// The outcome, with the rule that produced it when one matched, and the verified
/// identity whenever a token was verified (also when the rule then refused it).
#[derive(Debug)]
pub struct Decision<'a> {
    pub rule: Option<RuleId>,
    pub identity: Option<Identity>,
    /// On success, the canonical path: the one the policy judged and the one to forward.
    pub outcome: Result<Cow<'a, str>, AuthError>,
}

impl Decision<'_> {
    fn refused(rule: Option<RuleId>, error: AuthError) -> Self {
        Decision {
            rule,
            identity: None,
            outcome: Err(error),
        }
    }
}

/// The decision core: policy, verifier, keys and clock. Shared by the proxy and the
/// decision endpoints, so that both answer every request the same way.
pub struct Authorizer {
    policy: Policy,
    verifier: Verifier,
    keys: KeyStore,
    clock: Clock,
    /// `allowed_upgrades`, lower case; never `h2c`.
    upgrades: Vec<String>,
}

impl Authorizer {
    pub fn new(
        policy: Policy,
        verifier: Verifier,
        keys: KeyStore,
        clock: Clock,
        upgrades: Vec<String>,
    ) -> Self {
        Authorizer {
            policy,
            verifier,
            keys,
            clock,
            upgrades,
        }
    }

    /// Checks the method and any upgrade, canonicalizes the path (refusing doubtful
    /// ones), finds the rule of every reading of the path (see [`Policy::govern`]),
    /// and, if one of them needs a token, verifies it and checks every rule's grant.
    /// The strictest answer wins: a reading no rule matches denies outright, then a
    /// missing or bad token, then the first rule whose grant refuses the identity.
    pub async fn authorize<'p>(&self, req: RequestFacts<'_, 'p>) -> Decision<'p> {
        if let Err(e) = check_method(req.method) {
            return Decision::refused(None, e);
        }
        if !upgrade_allowed(req.headers, &self.upgrades) {
            return Decision::refused(None, AuthError::UpgradeNotAllowed);
        }
        let path = match path::canonicalize(req.path) {
            Ok(p) => p,
            Err(e) => return Decision::refused(None, AuthError::BadPath(e)),
        };
        let Some(governing) = self.policy.govern(req.method, &path) else {
            return Decision::refused(None, AuthError::NoMatchingRule);
        };
        let primary = governing.primary().map(|r| r.id().clone());
        let Some(first_needing) = governing.rules().find(|r| r.grant().needs_token()) else {
            return Decision {
                rule: primary,
                identity: None,
                outcome: Ok(path),
            };
        };
        let identity = match self.identify(req.headers).await {
            Ok(identity) => identity,
            Err(e) => return Decision::refused(Some(first_needing.id().clone()), e),
        };
        let (rule, outcome) = match governing
            .rules()
            .find(|r| !r.grant().admits(Some(&identity)))
        {
            Some(refusing) => (Some(refusing.id().clone()), Err(AuthError::NotGranted)),
            None => (primary, Ok(path)),
        };
        Decision {
            rule,
            identity: Some(identity),
            outcome,
        }
    }

    async fn identify(&self, headers: &HeaderMap) -> Result<Identity, AuthError> {
        let token = bearer_token(headers)?;
        self.verifier
            .verify(token, &self.keys, self.clock.now())
            .await
            .map_err(|e| match e {
                VerifyError::Token(e) => AuthError::InvalidToken(e),
                VerifyError::KeysUnavailable => AuthError::KeysUnavailable,
            })
    }
}

/// The token of the request's single `Authorization: Bearer <token>` header. The
/// scheme is case-insensitive (RFC 9110 §11.1); any other scheme counts as no token.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(AuthError::MissingToken);
    };
    if values.next().is_some() {
        return Err(AuthError::AmbiguousCredentials);
    }
    let Ok(text) = value.to_str() else {
        return Err(AuthError::InvalidToken(TokenError::Malformed(
            "authorization header is not ASCII",
        )));
    };
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MissingToken);
    }
    match rest.trim_matches(' ') {
        "" => Err(AuthError::InvalidToken(TokenError::Malformed(
            "empty bearer token",
        ))),
        token => Ok(token),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn methods_must_be_upper_case_and_forwardable() {
        for ok in [
            "GET",
            "DELETE",
            "PATCH",
            "PROPFIND",
            "M-SEARCH",
            "VERSION-CONTROL",
        ] {
            let m = Method::from_bytes(ok.as_bytes()).expect("method");
            assert_eq!(check_method(&m), Ok(()), "{ok}");
        }
        for bad in [
            "delete", "Delete", "DeLeTe", "get", "put", "post", "connect", "pAtCh",
        ] {
            let m = Method::from_bytes(bad.as_bytes()).expect("method");
            assert_eq!(check_method(&m), Err(AuthError::BadMethod), "{bad}");
        }
        for refused in [Method::CONNECT, Method::TRACE] {
            assert_eq!(
                check_method(&refused),
                Err(AuthError::MethodNotAllowed),
                "{refused}"
            );
        }
    }

    #[test]
    fn bearer_token_extraction() {
        let cases: &[(&[&str], Result<&str, AuthError>)] = &[
            (&[], Err(AuthError::MissingToken)),
            (&["Bearer abc.def.ghi"], Ok("abc.def.ghi")),
            (&["bearer abc"], Ok("abc")),
            (&["BEARER   abc  "], Ok("abc")),
            (&["Basic dXNlcjpwYXNz"], Err(AuthError::MissingToken)),
            (&["Bearerabc"], Err(AuthError::MissingToken)),
            (
                &["Bearer "],
                Err(AuthError::InvalidToken(TokenError::Malformed(
                    "empty bearer token",
                ))),
            ),
            (
                &["Bearer a", "Bearer b"],
                Err(AuthError::AmbiguousCredentials),
            ),
        ];
        for (values, want) in cases {
            let mut h = HeaderMap::new();
            for v in *values {
                h.append(AUTHORIZATION, HeaderValue::from_static(v));
            }
            assert_eq!(bearer_token(&h), *want, "{values:?}");
        }
    }
}
