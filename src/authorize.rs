//! The one decision core. The reverse proxy (and any decision endpoint) hands it the
//! request's method, raw path and headers; it answers with the canonical path to
//! forward, the rule that decided, and either the caller's identity or why not.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::AUTHORIZATION;
use http::{HeaderMap, Method};

use crate::error::AuthError;
use crate::jwks::KeyStore;
use crate::path;
use crate::policy::{Policy, RuleId};
use crate::verify::{Identity, TokenError, Verifier};

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

/// What `authorize` needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a Method,
    /// The path as received, without the query.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
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
}

impl Authorizer {
    pub fn new(policy: Policy, verifier: Verifier, keys: KeyStore, clock: Clock) -> Self {
        Authorizer {
            policy,
            verifier,
            keys,
            clock,
        }
    }

    /// The key store, for readiness reporting.
    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    /// Canonicalizes the path (refusing doubtful ones), finds the first matching rule,
    /// and, if that rule needs a token, verifies it and checks the rule's grant.
    pub async fn authorize<'a>(&self, req: RequestFacts<'a>) -> Decision<'a> {
        let path = match path::canonicalize(req.path) {
            Ok(p) => p,
            Err(e) => return Decision::refused(None, AuthError::BadPath(e)),
        };
        let Some(rule) = self.policy.route(req.method, &path) else {
            return Decision::refused(None, AuthError::NoMatchingRule);
        };
        let rule_id = Some(rule.id().clone());
        if !rule.grant().needs_token() {
            return Decision {
                rule: rule_id,
                identity: None,
                outcome: Ok(path),
            };
        }
        let identity = match self.identify(req.headers).await {
            Ok(identity) => identity,
            Err(e) => return Decision::refused(rule_id, e),
        };
        let outcome = if rule.grant().admits(Some(&identity)) {
            Ok(path)
        } else {
            Err(AuthError::GroupNotAllowed)
        };
        Decision {
            rule: rule_id,
            identity: Some(identity),
            outcome,
        }
    }

    async fn identify(&self, headers: &HeaderMap) -> Result<Identity, AuthError> {
        let token = bearer_token(headers)?;
        self.verifier
            .verify(token, &self.keys, self.clock.now())
            .await
            .map_err(AuthError::InvalidToken)
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
