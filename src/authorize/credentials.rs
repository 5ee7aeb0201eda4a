//! Where a request's credential is read: the `Authorization: Bearer` header, a
//! cookie, or the load balancer's `x-amzn-oidc-data`, one per request.

use http::header::AUTHORIZATION;
use http::{HeaderMap, Method};
use std::sync::Arc;

use super::AuthError;
use crate::config::{CorsConfig, CorsPreflight, TokenSource};
use crate::token::{TokenError, ALB_DATA};

/// What the decision reads from the configuration besides the policy.
#[derive(Debug, Clone)]
pub struct Admission {
    /// `allowed_upgrades`, lower case; never `h2c`.
    pub upgrades: Vec<String>,
    pub cors_preflight: CorsPreflight,
    /// Where the token is read, in order.
    pub token_sources: Vec<TokenSource>,
    /// The methods for which a cookie counts as a token.
    pub cookie_methods: Vec<Method>,
    /// `[cors]`, with `cors_preflight = "answer"`.
    pub cors: Option<Arc<CorsConfig>>,
}

impl Default for Admission {
    /// What `check` and `explain` decide with: the token in the header, no upgrades.
    fn default() -> Self {
        Admission {
            upgrades: Vec::new(),
            cors_preflight: CorsPreflight::Policy,
            token_sources: vec![TokenSource::Header],
            cookie_methods: vec![Method::GET, Method::HEAD, Method::OPTIONS],
            cors: None,
        }
    }
}

impl Admission {
    /// Whether a decision on `method` reads the `Cookie` header for a token.
    pub fn reads_cookies(&self, method: &Method) -> bool {
        self.cookie_methods.contains(method)
            && self
                .token_sources
                .iter()
                .any(|s| matches!(s, TokenSource::Cookie(_)))
    }

    /// The request's token, from the first of `token_sources` that has one. Two
    /// different tokens (in two sources, or twice in one) are ambiguous: 400.
    pub fn token<'h>(
        &self,
        method: &Method,
        headers: &'h HeaderMap,
    ) -> Result<Token<'h>, AuthError> {
        let mut found: Option<&'h str> = None;
        let mut carrier = Carrier::AuthorizationHeader;
        for source in &self.token_sources {
            let token = match source {
                TokenSource::Header => match bearer_token(headers) {
                    Ok(token) => Some(token),
                    Err(AuthError::MissingToken) => None,
                    Err(e) => return Err(e),
                },
                // A cross-site form can make a browser send cookies with any method;
                // for the unsafe ones only the header counts (CSRF).
                TokenSource::Cookie(name) if self.cookie_methods.contains(method) => {
                    let token = cookie_token(headers, name)?;
                    if token.is_some() {
                        carrier = Carrier::Cookie;
                    }
                    token
                }
                TokenSource::Cookie(_) => None,
            };
            match (found, token) {
                (None, Some(token)) => found = Some(token),
                (Some(first), Some(other)) if first != other => {
                    return Err(AuthError::AmbiguousCredentials)
                }
                _ => {}
            }
        }
        found
            .map(|text| Token { text, carrier })
            .ok_or(AuthError::MissingToken)
    }
}

/// A request's token, and where it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'h> {
    pub text: &'h str,
    pub carrier: Carrier,
}

/// Where a request's credential was read. A token that was also in a cookie counts as
/// read from the cookie: the decision then depended on the `Cookie` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    AuthorizationHeader,
    Cookie,
    /// `x-amzn-oidc-data`, signed by a load balancer.
    LoadBalancer,
}

/// The value of the cookie `name` in the request's `Cookie` headers (RFC 6265 §5.4),
/// without surrounding quotes. The same cookie twice with two values is ambiguous.
pub(super) fn cookie_token<'h>(
    headers: &'h HeaderMap,
    name: &str,
) -> Result<Option<&'h str>, AuthError> {
    let mut found: Option<&'h str> = None;
    let pairs = headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'));
    for pair in pairs {
        let Some((n, value)) = pair.split_once('=') else {
            continue;
        };
        if n.trim() != name {
            continue;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        if value.is_empty() {
            return Err(AuthError::InvalidToken(TokenError::Malformed(
                "empty token cookie",
            )));
        }
        match found {
            Some(first) if first != value => return Err(AuthError::AmbiguousCredentials),
            _ => found = Some(value),
        }
    }
    Ok(found)
}

/// The request's single `x-amzn-oidc-data` header, if it has one.
pub(super) fn alb_data(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let mut values = headers.get_all(ALB_DATA).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::AmbiguousCredentials);
    }
    value.to_str().map(Some).map_err(|_| {
        AuthError::InvalidToken(TokenError::Malformed("x-amzn-oidc-data is not ASCII"))
    })
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
    fn tokens_come_from_the_configured_sources_and_two_different_ones_are_refused() {
        let admission = Admission {
            token_sources: vec![TokenSource::Header, TokenSource::Cookie("t".into())],
            ..Admission::default()
        };
        let token = |method: Method, headers: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in headers {
                h.append(*k, HeaderValue::from_static(v));
            }
            admission
                .token(&method, &h)
                .map(|t| (t.text.to_owned(), t.carrier))
        };
        let (header, cookie) = (Carrier::AuthorizationHeader, Carrier::Cookie);
        assert_eq!(
            token(Method::GET, &[("cookie", "a=1; t=abc")]),
            Ok(("abc".into(), cookie))
        );
        assert_eq!(
            token(Method::GET, &[("cookie", "t=\"abc\"")]),
            Ok(("abc".into(), cookie))
        );
        assert_eq!(
            token(Method::GET, &[("authorization", "Bearer abc")]),
            Ok(("abc".into(), header))
        );
        // The same token in both: the answer read the cookie too.
        assert_eq!(
            token(
                Method::GET,
                &[("cookie", "t=abc"), ("authorization", "Bearer abc")]
            ),
            Ok(("abc".into(), cookie))
        );
        // A cookie that does not count (POST) was not read.
        assert_eq!(
            token(
                Method::POST,
                &[("cookie", "t=abc"), ("authorization", "Bearer abc")]
            ),
            Ok(("abc".into(), header))
        );
        assert_eq!(
            token(
                Method::GET,
                &[("cookie", "t=abc"), ("authorization", "Bearer xyz")]
            ),
            Err(AuthError::AmbiguousCredentials)
        );
        assert_eq!(
            token(Method::GET, &[("cookie", "t=abc"), ("cookie", "t=xyz")]),
            Err(AuthError::AmbiguousCredentials)
        );
        // A cookie counts only for the cookie methods (GET, HEAD, OPTIONS by default).
        assert_eq!(
            token(Method::POST, &[("cookie", "t=abc")]),
            Err(AuthError::MissingToken)
        );
        assert_eq!(
            token(Method::GET, &[("cookie", "tt=abc; xt=1")]),
            Err(AuthError::MissingToken)
        );
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
