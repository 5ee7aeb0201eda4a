//! The HTTP face of the development issuer (`crates/dev-issuer`): its key set,
//! discovery document and a token endpoint, and Cognito's refresh and revoke
//! endpoints ([`DevAuth`]), served by `cognito-gate demo` and `dev-issuer`; the `run`
//! command never does.

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
        let param = |name: &str| field(query, name);
        let (sub, groups) = who(query);
        let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
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

/// The value of `name` in a query or form (`a=1&b=2`), decoded.
fn field(pairs: &str, name: &str) -> Option<String> {
    pairs
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| percent_decode(v))
}

/// Who a token is for: `sub` (default `dev-user`) and the comma-separated `groups`.
fn who(query: &str) -> (String, Vec<String>) {
    let sub = field(query, "sub").unwrap_or_else(|| "dev-user".to_owned());
    let groups = field(query, "groups").unwrap_or_default();
    let groups = groups
        .split(',')
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect();
    (sub, groups)
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

/// A signed-in user of the development issuer: who, and the token family their
/// refresh token and every access token issued from it share (`origin_jti`).
#[derive(Debug, Clone)]
struct Session {
    sub: String,
    groups: Vec<String>,
    family: String,
}

/// Tokens from a session: what Cognito's `/oauth2/token` gives after a sign-in.
#[derive(Debug, Clone)]
pub struct SessionTokens {
    pub access_token: String,
    pub refresh_token: String,
}

/// The development issuer with sessions: `GET /session?sub=..&groups=..` signs a user
/// in (an access token and a refresh token), and Cognito's two session endpoints, as
/// `https://<domain>/oauth2/...` serves them:
/// - `POST /oauth2/token` with `grant_type=refresh_token&refresh_token=R` (form): a new
///   access token of R's family;
/// - `POST /oauth2/revoke` with `token=R`: R stops working, and with `[revocation]` the
///   family's `origin_jti` is written to the revocation list, so every gate refuses its
///   access tokens too.
///
/// Everything else is [`answer`].
pub struct DevAuth {
    issuer: std::sync::Arc<DevIssuer>,
    sessions: std::sync::Mutex<std::collections::HashMap<String, Session>>,
    revocation: Option<crate::config::RevocationConfig>,
}

/// 32 random bytes as hex: a refresh token or a family id nobody can guess.
fn random_id() -> String {
    let mut bytes = [0u8; 16];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl DevAuth {
    pub fn new(
        issuer: std::sync::Arc<DevIssuer>,
        revocation: Option<crate::config::RevocationConfig>,
    ) -> Self {
        DevAuth {
            issuer,
            sessions: std::sync::Mutex::default(),
            revocation,
        }
    }

    /// Signs `sub` in: an access token and a refresh token of a new family.
    pub fn sign_in(&self, sub: &str, groups: &[&str]) -> Result<SessionTokens, IssuerError> {
        let session = Session {
            sub: sub.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            family: random_id(),
        };
        let access_token = self.access_token(&session)?;
        let refresh_token = random_id();
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.insert(refresh_token.clone(), session);
        }
        Ok(SessionTokens {
            access_token,
            refresh_token,
        })
    }

    fn access_token(&self, session: &Session) -> Result<String, IssuerError> {
        let groups: Vec<&str> = session.groups.iter().map(String::as_str).collect();
        let family = [("origin_jti".to_owned(), Value::from(session.family.clone()))];
        self.issuer.mint_with(&session.sub, &groups, &family, 3600)
    }

    /// Answers one request; the two session endpoints read their form body.
    pub async fn answer<B>(&self, req: Request<B>) -> Response<GateBody>
    where
        B: hyper::body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        use http_body_util::BodyExt;
        let path = req.uri().path().to_owned();
        if path == "/session" {
            // A sign-in without a login page: `GET /session?sub=erin&groups=admins`.
            let (sub, groups) = who(req.uri().query().unwrap_or_default());
            let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
            return match self.sign_in(&sub, &groups) {
                Ok(tokens) => json_answer(
                    StatusCode::OK,
                    json!({
                        "access_token": tokens.access_token,
                        "refresh_token": tokens.refresh_token,
                        "token_type": "Bearer",
                        "expires_in": 3600,
                    }),
                ),
                Err(_) => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
            };
        }
        if req.method() != http::Method::POST || !path.starts_with("/oauth2/") {
            return answer(&self.issuer, &req);
        }
        let form = match http_body_util::Limited::new(req.into_body(), 16 * 1024)
            .collect()
            .await
        {
            Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
            Err(_) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request"),
        };
        let field = |name: &str| field(&form, name);
        match path.as_str() {
            "/oauth2/token" => {
                if field("grant_type").as_deref() != Some("refresh_token") {
                    return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
                }
                let session = field("refresh_token")
                    .and_then(|r| self.sessions.lock().ok().and_then(|s| s.get(&r).cloned()));
                let Some(session) = session else {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
                };
                match self.access_token(&session) {
                    Ok(token) => json_answer(
                        StatusCode::OK,
                        json!({ "access_token": token, "token_type": "Bearer", "expires_in": 3600 }),
                    ),
                    Err(_) => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
                }
            }
            "/oauth2/revoke" => {
                let session = field("token")
                    .and_then(|r| self.sessions.lock().ok().and_then(|mut s| s.remove(&r)));
                // Cognito answers 200 for a token it does not know, too.
                let (Some(session), Some(settings)) = (session, &self.revocation) else {
                    return json_answer(StatusCode::OK, json!({}));
                };
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                let entry = crate::revocation::Entry {
                    kind: crate::revocation::Kind::Family,
                    value: session.family,
                    at: now,
                };
                match crate::revocation::write(settings, &entry).await {
                    Ok(_) => json_answer(StatusCode::OK, json!({})),
                    Err(e) => {
                        tracing::error!(error = %e, "the revocation could not be written");
                        oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
                    }
                }
            }
            _ => oauth_error(StatusCode::NOT_FOUND, "not_found"),
        }
    }
}

fn json_answer(status: StatusCode, body: Value) -> Response<GateBody> {
    let mut response = Response::new(full_body(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn oauth_error(status: StatusCode, error: &str) -> Response<GateBody> {
    json_answer(status, json!({ "error": error }))
}

/// Serves `issuer` (see [`DevAuth`]) on `listener` until `shutdown` completes.
pub async fn serve(
    issuer: std::sync::Arc<DevIssuer>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let here = std::sync::Arc::new(crate::http::workers::Workers::here());
    let auth = std::sync::Arc::new(DevAuth::new(issuer, None));
    let task = tokio::spawn(crate::http::server::serve(
        listener,
        None,
        crate::http::server::ServerOptions::development(),
        std::sync::Arc::new(tokio::sync::Semaphore::new(
            crate::http::server::DEVELOPMENT_CONNECTIONS,
        )),
        here.clone(),
        here.each(move |req, _| {
            let auth = auth.clone();
            async move { auth.answer(req).await }
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

    /// The whole body of one of the issuer's answers.
    async fn body_of<B>(response: Response<B>) -> bytes::Bytes
    where
        B: hyper::body::Body,
        B::Error: std::fmt::Debug,
    {
        use http_body_util::BodyExt;
        response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
    }

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
        let issuer = DevIssuer::new("eu-west-1_Dev", "client").expect("issuer");
        let req = Request::get(
            "/token?sub=alice&claim.custom:tenant=acme&claim.email_verified=true&claim.sub=mallory&claim.level=%223%22",
        )
        .body(())
        .expect("request");
        let response = answer(&issuer, &req);
        assert_eq!(response.status(), StatusCode::OK);
        let body = body_of(response).await;
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

    #[tokio::test]
    async fn a_refresh_token_gives_tokens_of_its_family_until_it_is_revoked() {
        use http_body_util::Full;
        let issuer =
            std::sync::Arc::new(DevIssuer::new("eu-west-1_Dev", "client").expect("issuer"));
        let auth = DevAuth::new(issuer, None);
        let session = auth.sign_in("erin", &["admins"]).expect("sign in");
        let family = |token: &str| {
            use base64::engine::general_purpose::URL_SAFE_NO_PAD;
            use base64::Engine as _;
            let payload = token.split('.').nth(1).expect("payload");
            let claims: Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64"))
                    .expect("json");
            (claims["origin_jti"].clone(), claims["sub"].clone())
        };
        let post = |path: &str, form: String| {
            Request::post(path)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(bytes::Bytes::from(form)))
                .expect("request")
        };
        let refresh = format!(
            "grant_type=refresh_token&refresh_token={}",
            session.refresh_token
        );
        let response = auth.answer(post("/oauth2/token", refresh.clone())).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = serde_json::from_slice(&body_of(response).await).expect("json");
        let renewed = body["access_token"].as_str().expect("access_token");
        assert_eq!(family(renewed), family(&session.access_token));
        assert_eq!(family(renewed).1, json!("erin"));
        for (form, status, error) in [
            (
                "grant_type=password".to_owned(),
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
            ),
            (
                "grant_type=refresh_token&refresh_token=nope".to_owned(),
                StatusCode::BAD_REQUEST,
                "invalid_grant",
            ),
        ] {
            let response = auth.answer(post("/oauth2/token", form)).await;
            assert_eq!(response.status(), status);
            let body = body_of(response).await;
            assert!(String::from_utf8_lossy(&body).contains(error));
        }
        let revoke = format!("token={}", session.refresh_token);
        assert_eq!(
            auth.answer(post("/oauth2/revoke", revoke)).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            auth.answer(post("/oauth2/token", refresh)).await.status(),
            StatusCode::BAD_REQUEST
        );
    }
}
