//! Serving HTTP: the accept loop, the reverse proxy, the decision endpoints, the admin
//! listener, header hygiene, the answers and the access log. May import every floor
//! below (`authorize`, `policy`, `token`, `client`, `config`, `path`, `wire`).

pub(crate) mod access_log;
pub(crate) mod admin;
pub(crate) mod answer;
pub(crate) mod connection;
pub(crate) mod decision;
pub(crate) mod forwarded;
pub(crate) mod grpc;
pub(crate) mod headers;
pub(crate) mod proxy;
pub(crate) mod server;
pub(crate) mod socket;
pub(crate) mod workers;
