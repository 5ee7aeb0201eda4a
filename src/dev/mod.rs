//! Development tooling, compiled only with the `dev` feature (on by default, off in the
//! container image): the demo and a token minter. May import everything; nothing imports it.

pub mod demo;
pub mod issuer;
