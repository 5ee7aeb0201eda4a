//! The integration tests, as one crate: tokio, hyper, tonic and aws-lc-rs are linked
//! once, not once per file. Each module is one topic; `common` holds the real parts
//! they share (a JWKS server with real keys, a recording app, the gate in-process or as
//! the real binary). They sign their tokens with `crates/dev-issuer`, a
//! dev-dependency, so `cargo test --no-default-features` runs all of them against the
//! binary that ships, without the demo (only the demo's own test needs feature `dev`).

mod common;

mod alb;
mod browser;
mod bypass;
mod claims;
mod cli;
mod decision;
mod demo;
mod docs;
mod faults;
mod grpc;
mod grpc_apps;
mod hosts;
mod issuers;
mod keepalive;
mod keys;
mod layout;
mod listen_tls;
mod operations;
mod peers;
mod properties;
mod proxy;
mod release;
mod revocation;
mod traces;
mod unix;
mod upstream_tls;
