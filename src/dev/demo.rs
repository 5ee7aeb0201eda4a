//! `cognito-gate demo`: the whole product on loopback in one process — a local issuer
//! with a fresh RSA key and a Cognito-shaped JWKS path, an echo upstream, and the gate
//! running the real verifier and the real policy between them.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::issuer::{DevAuth, DevIssuer, IssuerError};
use crate::authorize::Clock;
use crate::config::Config;
use crate::gate::{self, Listeners, StartError};
use crate::http::answer::full_body;
use crate::http::server::{self, ServerOptions};
use crate::http::workers::{self, Workers};
use crate::policy::Policy;

/// The policy the demo uses when `config/policy.toml` is not in the working directory.
pub const EMBEDDED_POLICY: &str = include_str!("../../config/policy.toml");
const POOL_ID: &str = "us-east-1_DemoPool1";
const CLIENT_ID: &str = "demo-client";

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub policy: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error(transparent)]
    Issuer(#[from] IssuerError),
    /// The configuration or the policy.
    #[error(transparent)]
    Invalid(#[from] crate::config::ProblemList),
    #[error(transparent)]
    Start(#[from] StartError),
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, DemoError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| DemoError::Bind(addr, e))
}

fn json_response(status: StatusCode, body: &Value) -> Response<crate::http::answer::GateBody> {
    let mut response = Response::new(full_body(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Runs the demo until `shutdown` completes. What to try is printed on stdout.
pub async fn run(
    options: DemoOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DemoError> {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let issuer = Arc::new(DevIssuer::new(POOL_ID, CLIENT_ID)?);
    let (policy, policy_source) = match &options.policy {
        Some(file) => (Policy::load(file)?, file.display().to_string()),
        None if std::path::Path::new("config/policy.toml").is_file() => (
            Policy::load(std::path::Path::new("config/policy.toml"))?,
            "config/policy.toml".to_owned(),
        ),
        None => (
            Policy::from_toml(EMBEDDED_POLICY)?,
            "embedded copy of config/policy.toml".to_owned(),
        ),
    };

    let options_small = ServerOptions::development();
    let limit = || Arc::new(Semaphore::new(server::DEVELOPMENT_CONNECTIONS));
    let (stop, stopped) = watch::channel(false);

    let jwks_listener = bind(loopback).await?;
    let jwks_addr = jwks_listener
        .local_addr()
        .map_err(|e| DemoError::Bind(loopback, e))?;
    // With a redis-server on PATH, the demo also shows a revocation: a local Redis holds
    // the list, the issuer's /oauth2/revoke writes to it, and the gate follows it.
    let redis = LocalRedis::start().await;
    let revocation = redis
        .as_ref()
        .map(|r| {
            format!(
                "[revocation]\nredis_url = \"redis://127.0.0.1:{}\"\n",
                r.port
            )
        })
        .unwrap_or_default();
    // The issuer and the app have a worker per CPU, as real ones would, so that a load
    // test through the gate measures the gate and not their single thread (minting
    // 10,000 tokens would hold up a key fetch).
    let app_workers =
        Arc::new(Workers::start(workers::default_count()).map_err(StartError::Workers)?);
    let echo_listener = bind(loopback).await?;
    let echo_addr = echo_listener
        .local_addr()
        .map_err(|e| DemoError::Bind(loopback, e))?;
    let echo_task = tokio::spawn(server::serve(
        echo_listener,
        None,
        options_small,
        limit(),
        app_workers.clone(),
        app_workers.each(move |req: http::Request<hyper::body::Incoming>, _| {
            let mut headers = Map::new();
            for (name, value) in req.headers() {
                headers.insert(
                    name.as_str().to_owned(),
                    Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()),
                );
            }
            let body = json!({
                "echo": "this is what the upstream app received",
                "method": req.method().as_str(),
                "uri": req.uri().to_string(),
                "headers": headers,
            });
            async move { json_response(StatusCode::OK, &body) }
        }),
        stopped.clone(),
    ));

    let config = Config::from_toml(&format!(
        r#"
        listen = "{listen}"
        admin_listen = "{admin}"
        shutdown_timeout = "2s"
        [upstream]
        url = "http://{echo_addr}"
        [[pools]]
        user_pool_id = "{POOL_ID}"
        client_ids = ["{CLIENT_ID}"]
        token_use = "any"
        jwks_url = "http://{jwks_addr}{path}"
        {revocation}
        "#,
        listen = options.listen,
        admin = options.admin_listen,
        path = issuer.jwks_path(),
    ))?;
    let auth = Arc::new(DevAuth::new(issuer.clone(), config.revocation.clone()));
    let auth_for_demo = auth.clone();
    let jwks_task = tokio::spawn(server::serve(
        jwks_listener,
        None,
        options_small,
        limit(),
        app_workers.clone(),
        app_workers.each(move |req, _| {
            let auth = auth.clone();
            async move { auth.answer(req).await }
        }),
        stopped,
    ));
    let proxy_listener = bind(config.listen).await?;
    let admin_listener = bind(config.admin_listen).await?;
    let gate = proxy_listener
        .local_addr()
        .map_err(|e| DemoError::Bind(config.listen, e))?;
    let admin = admin_listener
        .local_addr()
        .map_err(|e| DemoError::Bind(config.admin_listen, e))?;

    let admin_token = issuer.mint("alice", &["admins"], 3600)?;
    let plain_token = issuer.mint("bob", &[], 3600)?;
    let expired_token = issuer.mint("carol", &["admins"], -600)?;
    let tenant = [("custom:tenant".to_owned(), Value::from("acme"))];
    let tenant_token = issuer.mint_with("dave", &[], &tenant, 3600)?;
    let base = format!("http://{gate}");
    let erin = auth_for_demo.sign_in("erin", &["admins"])?;
    let revocation_demo = match &redis {
        Some(_) => format!(
            r#"
# 200: erin signed in; her app holds an access token and a refresh token
curl -i -H 'Authorization: Bearer {access}' {base}/admin/reports
# 200: she signs out: the app revokes her refresh token at the issuer (Cognito's /oauth2/revoke), which writes its origin_jti to the revocation list in Redis
curl -i -X POST -d token={refresh} http://{jwks_addr}/oauth2/revoke
# 401: the gate follows that list: her access token is refused at once (error_description="token has been revoked")
curl -i -H 'Authorization: Bearer {access}' {base}/admin/reports"#,
            access = erin.access_token,
            refresh = erin.refresh_token,
        ),
        None => "\n(Revocation is shown too when redis-server is installed: apt-get install redis-server.)".to_owned(),
    };
    println!(
        r#"cognito-gate demo: everything below runs in this process, on loopback.

  gate (reverse proxy)  {base}
  admin                 http://{admin}/healthz  http://{admin}/readyz
  echo upstream         http://{echo_addr}
  local issuer (JWKS)   http://{jwks_addr}{jwks_path}
  issuer (iss)          {iss}
  policy                {policy_source}

The local issuer exists only in demo mode. Try these (tokens are valid for 1 hour):

# 200: alice is in group admins, and the app sees X-User-Sub and X-User-Groups
curl -i -H 'Authorization: Bearer {admin_token}' {base}/admin/reports
# 403: bob has a valid token but is in no group
curl -i -H 'Authorization: Bearer {plain_token}' {base}/admin/reports
# 401: carol's token has expired
curl -i -H 'Authorization: Bearer {expired_token}' {base}/admin/reports
# 401: no token at all
curl -i {base}/admin/reports
# 200: public paths need no token, and a forged identity header is removed
curl -i -H 'X-User-Sub: forged' {base}/public/hello
# 400: path tricks are refused before any rule is read
curl -i --path-as-is {base}/public/../admin/reports
# 200: dave's custom:tenant claim is acme, and the rule for /tenants/{{tenant}} wants exactly that
curl -i -H 'Authorization: Bearer {tenant_token}' {base}/tenants/acme/invoices
# 403: the same token is refused for another tenant's pages
curl -i -H 'Authorization: Bearer {tenant_token}' {base}/tenants/globex/invoices{revocation_demo}

Press Ctrl-C to stop."#,
        jwks_path = issuer.jwks_path(),
        iss = issuer.issuer(),
    );

    let listeners = Listeners {
        proxy_socket: None,
        proxy: Some(proxy_listener),
        admin: admin_listener,
        authz: None,
        grpc: None,
    };
    let result = gate::run(config, policy, listeners, Clock::System, shutdown).await;
    let _ = stop.send(true);
    let _ = tokio::join!(jwks_task, echo_task);
    drop(redis);
    Ok(result?)
}

/// A `redis-server` the demo starts on a loopback port when one is installed, and
/// stops (by PID) when it ends.
struct LocalRedis {
    child: std::process::Child,
    port: u16,
}

impl LocalRedis {
    async fn start() -> Option<LocalRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .ok()?
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let redis = LocalRedis { child, port };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Some(redis);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
