//! Tokens: who a verified token names, verification, the pools' signing keys and the
//! cache of verified tokens. May import `config`, `client` and `wire`; nothing above.

mod cache;
mod identity;
mod keys;
mod verify;

#[cfg(all(test, feature = "dev"))]
mod tests;

#[cfg(test)]
pub(crate) use identity::TokenUse;
pub use identity::{Identity, PoolId};
pub use keys::{parse_key_set, KeyStore};
pub use verify::{TokenError, Verifier, VerifyError};
