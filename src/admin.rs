//! The admin listener: liveness and readiness for orchestrators. Keep it on loopback
//! or a private port; it tells nothing secret, but nothing else belongs there.

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use serde_json::json;

use crate::config::PoolConfig;
use crate::error::{full_body, GateBody};
use crate::jwks::KeyStore;

/// `/healthz`: the process is up. `/readyz`: every pool has signing keys.
pub fn answer<B>(req: &Request<B>, keys: &KeyStore, pools: &[PoolConfig]) -> Response<GateBody> {
    let (status, body) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, json!({ "status": "ok" })),
        "/readyz" => {
            let states: Vec<_> = pools
                .iter()
                .enumerate()
                .map(|(i, p)| json!({ "user_pool_id": p.user_pool_id, "keys": keys.has_keys(i) }))
                .collect();
            let ready = keys.is_ready();
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, json!({ "ready": ready, "pools": states }))
        }
        _ => (StatusCode::NOT_FOUND, json!({ "error": "not_found" })),
    };
    let mut response = Response::new(full_body(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
