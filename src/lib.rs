//! cognito-gate: an authorization sidecar that verifies Amazon Cognito tokens and
//! enforces a path policy in front of an unmodified HTTP app.
//!
//! The public API is [`run`] with its [`Listeners`], [`Config`], [`Policy`], [`Clock`]
//! and [`StartError`]. The module map, floor by floor (each imports only its own floor
//! and below; `tests/it/layout.rs` checks it):
//!
//! - `config`, `path`, `wire`, `metrics`: settings, canonical paths, header-name
//!   facts, the Prometheus metrics.
//! - `client`: the outbound HTTP client (key fetches, the upstream); `trace`: the
//!   OpenTelemetry spans and their export.
//! - `token`: identity, verification, signing keys, the verified-token cache.
//! - `policy`: rules, routing and grants (pure).
//! - `authorize`: the one decision core.
//! - `http`: accept loop, proxy, decision endpoints, admin, headers, answers, log;
//!   `logging`: the subscriber.
//! - `gate`: assembles and runs it; `reload`: SIGHUP and file watching; `check`: the
//!   policy's own tests and `explain`.
//! - `dev` (feature `dev`): the demo and the development issuer.

#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod authorize;
mod backoff;
mod client;
mod config;
mod cors;
#[cfg(feature = "dev")]
mod dev;
mod dry_run;
mod gate;
mod http;
mod logging;
#[cfg(test)]
mod manual;
mod metrics;
mod path;
mod pem;
mod policy;
mod rejection;
mod reload;
mod revocation;
mod tls;
mod token;
mod trace;
mod wire;

pub use authorize::Clock;
pub use config::Config;
pub use gate::{run, Listeners, StartError};
pub use policy::Policy;

/// For the binary, the integration tests and the benchmarks: not a stable API.
#[doc(hidden)]
pub mod internals {
    pub use crate::config::{LogConfig, LogFormat, UnixSocketListen};
    #[cfg(feature = "dev")]
    pub use crate::dev::{demo, issuer};
    pub use crate::dry_run::{
        discover_issuers, explain, explain_token, grant_text, load_policy, rule_text, Caller,
    };
    pub use crate::http::admin::probe;
    pub use crate::http::headers::{strip_folded, ROUTING_OVERRIDES};
    pub use crate::http::server::raise_fd_limit;
    pub use crate::logging::init as init_logging;
    pub use crate::metrics::{Metrics, RequestLabels, COMMIT, VERSION};
    pub use crate::path::canonicalize;
    pub use crate::policy::Grant;
    pub use crate::revocation::{
        write as write_revocation, Entry as RevocationEntry, Kind as RevocationKind, RevocationList,
    };
    pub use crate::tls::{days_from_civil, describe as describe_tls, Alpn, ListenerTlsFiles};
    pub use crate::token::{digest, parse_key_set, KeySet, Remembered, TokenCache, Verifier};
}
