//! The HTTP face of the development issuer (`crates/dev-issuer`): its key set,
//! discovery document and a token endpoint, served by `cognito-gate demo` and
//! `dev-issuer`; the `run` command never does.

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};

use serde_json::{json, Value};

pub use cognito_gate_dev_issuer::{AlbSigner, DevIssuer, IssuerError, SigningKey};

use crate::http::answer::{full_body, GateBody};

/// The HTTP face of a [`DevIssuer`], shared by `demo` and `dev-issuer`:
/// - `GET /{pool}/.well-known/jwks.json`: the key set, where Cognito serves it;
/// - `GET /{pool}/.well-known/openid-configuration`: the discovery document;
/// - `GET /token?sub=alice&groups=admins,ops&ttl=3600`: a freshly minted access token
///   (`ttl` in seconds, negative for an expired one; `groups` comma-separated); each
///   `claim.NAME=VALUE` adds a claim, JSON when VALUE parses as JSON, else a string
///   (`claim.custom:tenant=acme`, `claim.email_verified=true`);
/// - `GET /healthz`: 200.
pub fn answer<B>(issuer: &DevIssuer, req: &Request<B>) -> Response<GateBody> {
    let path = req.uri().path();
    let (status, content_type, body) = if path == issuer.jwks_path() {
        (StatusCode::OK, "application/json", issuer.jwks_json())
    } else if path == issuer.discovery_path() {
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        let body = issuer.discovery_json(&format!("http://{host}"));
        (StatusCode::OK, "application/json", body)
    } else if path == "/token" {
        let query = req.uri().query().unwrap_or_default();
        let param = |name: &str| {
            query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| *k == name)
                .and_then(|(_, v)| percent_decode(v))
        };
        let sub = param("sub").unwrap_or_else(|| "dev-user".to_owned());
        let groups = param("groups").unwrap_or_default();
        let groups: Vec<&str> = groups.split(',').filter(|g| !g.is_empty()).collect();
        let extra: Vec<(String, Value)> = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .filter_map(|(k, v)| {
                Some((
                    percent_decode(k.strip_prefix("claim.")?)?,
                    percent_decode(v)?,
                ))
            })
            .map(|(k, v)| {
                let value = serde_json::from_str(&v).unwrap_or(Value::String(v));
                (k, value)
            })
            .collect();
        match param("ttl")
            .unwrap_or_else(|| "3600".to_owned())
            .parse::<i64>()
        {
            Ok(ttl) => match issuer.mint_with(&sub, &groups, &extra, ttl) {
                Ok(token) => (StatusCode::OK, "text/plain", token),
                Err(e) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    e.to_string(),
                ),
            },
            Err(_) => (
                StatusCode::BAD_REQUEST,
                "text/plain",
                "ttl must be a whole number of seconds".to_owned(),
            ),
        }
    } else if path == "/healthz" {
        (
            StatusCode::OK,
            "application/json",
            json!({ "status": "ok" }).to_string(),
        )
    } else {
        (
            StatusCode::NOT_FOUND,
            "application/json",
            json!({ "error": "not_found" }).to_string(),
        )
    };
    let mut response = Response::new(full_body(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Decodes `%XX` escapes and `+` (as space) in a query value; `None` if malformed.
fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = value.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Serves `issuer` (see [`answer`]) on `listener` until `shutdown` completes.
pub async fn serve(
    issuer: std::sync::Arc<DevIssuer>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let here = std::sync::Arc::new(crate::http::workers::Workers::here());
    let task = tokio::spawn(crate::http::server::serve(
        listener,
        crate::http::server::ServerOptions::development(),
        std::sync::Arc::new(tokio::sync::Semaphore::new(
            crate::http::server::DEVELOPMENT_CONNECTIONS,
        )),
        here.clone(),
        here.each(move |req, _| {
            let response = answer(&issuer, &req);
            async move { response }
        }),
        stopped,
    ));
    shutdown.await;
    let _ = stop.send(true);
    let _ = task.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(percent_decode("Team+Leads").as_deref(), Some("Team Leads"));
        assert_eq!(percent_decode("a%2Cb%20c").as_deref(), Some("a,b c"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
    }

    #[tokio::test]
    async fn the_token_endpoint_adds_the_claims_it_is_given() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine as _;
        use http_body_util::BodyExt;
        let issuer = DevIssuer::new("eu-west-1_Dev", "client").expect("issuer");
        let req = Request::get(
            "/token?sub=alice&claim.custom:tenant=acme&claim.email_verified=true&claim.sub=mallory&claim.level=%223%22",
        )
        .body(())
        .expect("request");
        let response = answer(&issuer, &req);
        assert_eq!(response.status(), StatusCode::OK);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let token = String::from_utf8(body.to_vec()).expect("text");
        let payload = token.split('.').nth(1).expect("payload");
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64"))
                .expect("json");
        assert_eq!(claims["custom:tenant"], json!("acme"));
        assert_eq!(claims["email_verified"], json!(true));
        assert_eq!(claims["level"], json!("3"));
        // The issuer's own claims are not replaced.
        assert_eq!(claims["sub"], json!("alice"));
    }
}
