//! Token revocation. Cognito keeps honouring a signed-out user's tokens until `exp`;
//! the gate refuses them as soon as a revocation is written to Redis (or Valkey): a
//! token family by its `origin_jti` (`RevokeToken`; `jti` for other issuers), or a user
//! signed out at an instant (`GlobalSignOut`), whose tokens issued before it are
//! refused. Every replica holds the whole list in memory (`list.rs`), checked on every
//! request without I/O; `stream.rs` loads it from a Redis stream and follows it, and
//! writes entries (`cognito-gate revoke`); `redis.rs` speaks the protocol.
//! May import `config`, `metrics` and `client`.

mod entry;
mod list;
mod redis;
mod stream;

pub use entry::{Entry, Kind};
pub use list::{Denial, RevocationList};
pub use stream::{follow, write};
