//! Who a verified token says the caller is. Kept apart from the verifier so that the
//! policy engine and the header writer can name an identity without importing it.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

/// A configured user pool: its position in `Config::pools`. Verification, the key
/// store and readiness reporting all speak of pools by this id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolId(pub usize);

impl PoolId {
    /// Every pool of a configuration with `count` pools, in order.
    pub fn all(count: usize) -> impl Iterator<Item = PoolId> {
        (0..count).map(PoolId)
    }
}

impl fmt::Display for PoolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The Cognito `token_use` claim. The user claims an Application Load Balancer signs
/// (`x-amzn-oidc-data`) describe the user like an ID token, and count as `Id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    Access,
    Id,
}

/// Who vouched for an identity: a configured user pool, or a configured load balancer
/// (its position among the `[[alb]]` tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Pool(PoolId),
    Alb(usize),
}

/// Who a verified token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub sub: String,
    /// `cognito:groups`, in token order; empty when the claim is absent.
    pub groups: Vec<String>,
    /// The access token's space-separated `scope` (RFC 6749 §3.3), e.g. `openid` or a
    /// resource server's `orders/read`; empty for ID tokens and without the claim.
    pub scopes: Vec<String>,
    pub token_use: TokenUse,
    /// `client_id` of an access token, `aud` of an ID token, the header's `client` of
    /// ALB user claims.
    pub client_id: String,
    /// The pool whose issuer signed the token, or the load balancer that did.
    pub source: Source,
    /// The other claims the policy reads (its `claims` conditions), as the token had
    /// them; empty when the policy reads none.
    pub claims: Claims,
    /// What the revocation list checks, on every request and cache hit alike.
    pub revocable: Revocable,
}

/// What a token is checked against the revocation list with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocable {
    /// The token family: `origin_jti` of a Cognito token (shared by a refresh token and
    /// every token issued from it), `jti` of another issuer's.
    pub family: Option<Box<str>>,
    /// When it was issued: the later of `iat` and `auth_time`, in whole seconds.
    pub issued_at: Option<u64>,
}

/// Named claims, kept as the token had them. Shared, so that a cache hit does not
/// copy them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims(Option<Arc<[Claim]>>);

/// A claim's name and its value as the token has it.
pub type Claim = (Box<str>, Value);

impl Claims {
    pub fn new(claims: Vec<Claim>) -> Self {
        match claims.is_empty() {
            true => Claims(None),
            false => Claims(Some(claims.into())),
        }
    }

    /// The claim `name`, if the token has it and it was kept.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.iter()
            .find_map(|(n, v)| (n.as_ref() == name).then_some(v))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Claim> {
        self.0.iter().flat_map(|c| c.iter())
    }

    /// The bytes the kept claims take, for the token cache's weigher.
    pub fn weight(&self) -> usize {
        fn value(v: &Value) -> usize {
            match v {
                Value::String(s) => s.len() + 24,
                Value::Array(items) => items.iter().map(value).sum::<usize>() + 24,
                Value::Object(map) => map.iter().map(|(k, v)| k.len() + value(v) + 48).sum(),
                _ => 16,
            }
        }
        self.iter().map(|(n, v)| n.len() + value(v) + 16).sum()
    }
}

/// A fully verified token: who it names, and the times that bound its validity.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// Shared with the verified-token cache: a hit clones a pointer, not the claims.
    pub identity: Arc<Identity>,
    pub exp: f64,
    pub nbf: Option<f64>,
}
