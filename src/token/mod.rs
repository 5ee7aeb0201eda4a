//! Tokens: who a verified token names, verification, the pools' signing keys and the
//! cache of verified tokens. May import `config`, `metrics`, `client` and `wire`; nothing above.

mod alb;
mod cache;
mod identity;
mod keys;
mod verify;

#[cfg(test)]
mod tests;

pub use alb::{AlbVerifier, ALB_DATA, ALB_HEADERS};
pub use cache::{digest, Remembered, TokenCache};
pub use identity::{Claim, Claims, Identity, PoolId, Source, TokenUse, Verified};
pub use keys::{check_discovery, parse_key_set, KeyLookupError, KeySet, KeyStore, Refreshers};
pub use verify::{TokenError, Verifier, VerifyError};
