//! Who a verified token says the caller is. Kept apart from the verifier so that the
//! policy engine and the header writer can name an identity without importing it.

use std::fmt;

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

/// The Cognito `token_use` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    Access,
    Id,
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
    /// `client_id` of an access token, `aud` of an ID token.
    pub client_id: String,
    /// The pool whose issuer signed the token.
    pub pool: PoolId,
}

/// A fully verified token: who it names, and the times that bound its validity.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub identity: Identity,
    pub exp: f64,
    pub nbf: Option<f64>,
}
