//! The admin listener: liveness and readiness for orchestrators. Keep it on loopback
//! or a private port; it tells nothing secret, but nothing else belongs there.

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use serde_json::json;

use super::answer::{full_body, GateBody};
use crate::authorize::Authorizer;
use crate::metrics;
use crate::token::PoolId;

/// `/healthz`: the process is up. `/readyz`: every pool has signing keys, and the
/// revocation list (with `[revocation]`) is loaded and may be trusted.
/// `/metrics`: the Prometheus metrics.
pub async fn answer<B>(req: &Request<B>, authz: &Authorizer) -> Response<GateBody> {
    let state = authz.state();
    let (keys, pools) = (&state.keys, &state.pools);
    let (status, body) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, json!({ "status": "ok" })),
        "/metrics" => {
            let m = authz.metrics();
            let mut entries = state.verifier.cached_tokens().await;
            if let Some(alb) = &state.alb {
                entries += alb.cached_headers().await;
            }
            m.log_lines_dropped.inner().store(
                crate::logging::dropped_lines(),
                std::sync::atomic::Ordering::Relaxed,
            );
            if let (Some(list), Some(now)) = (authz.revocation(), authz.now()) {
                if let Some(age) = list.status(now).age {
                    m.revocation_sync_age.set(age);
                }
            }
            m.token_cache_entries
                .set(i64::try_from(entries).unwrap_or(i64::MAX));
            let mut response = Response::new(full_body(m.render()));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            return response;
        }
        "/readyz" => {
            let states: Vec<_> = pools
                .iter()
                .zip(PoolId::all(pools.len()))
                .map(|(p, id)| json!({ "user_pool_id": p.user_pool_id, "keys": keys.has_keys(id) }))
                .collect();
            let ready = keys.is_ready() && authz.revocation_ready();
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let mut body = json!({ "ready": ready, "pools": states });
            if let (Some(list), Some(now)) = (authz.revocation(), authz.now()) {
                let s = list.status(now);
                body["revocation"] = json!({
                    "loaded": s.loaded,
                    "connected": s.connected,
                    "sync_age_seconds": s.age,
                    "entries": s.entries,
                });
            }
            (status, body)
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

/// `cognito-gate health`: asks `url` (normally the admin `/readyz`) and reports
/// whether it answered 200 within `timeout`. For container healthchecks, where
/// distroless images have no shell or curl.
pub async fn probe(url: &http::Uri, timeout: std::time::Duration) -> Result<(), String> {
    let connector = crate::client::connector(timeout).map_err(|e| e.to_string())?;
    let client =
        crate::client::client::<_, http_body_util::Empty<bytes::Bytes>>(connector, timeout);
    let request = Request::get(url.clone())
        .body(http_body_util::Empty::new())
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(timeout, client.request(request)).await {
        Ok(Ok(response)) if response.status() == StatusCode::OK => Ok(()),
        Ok(Ok(response)) => Err(format!("{url} answered {}", response.status())),
        Ok(Err(e)) => Err(format!("{url}: {}", crate::client::error_chain(&e))),
        Err(_) => Err(format!("{url} did not answer within {timeout:?}")),
    }
}
