//! Configuration in two stages: a raw serde struct that figment fills from built-in
//! defaults, the TOML file and `COGNITO_GATE_*` environment variables (in that order,
//! `__` separating nested keys), then a validated, typed [`Config`]. Validation reports
//! every problem at once, each with the key that caused it.
//! Bottom floor: imports only `path`, `wire`, `pem` and `tls` of the gate's own.

mod load;
mod otel;
mod problems;
mod raw;
mod redis_url;
#[cfg(test)]
mod tests;
mod validate;

pub use crate::tls::ListenerTlsFiles;
pub use otel::TracingConfig;
pub use problems::{ConfigError, ProblemList};
pub use raw::*;
pub use redis_url::RedisUrl;
pub use validate::leaves_the_host_in_clear;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::header::HeaderName;
use http::Uri;

/// The environment variable prefix; `COGNITO_GATE_UPSTREAM__URL` sets `upstream.url`.
pub const ENV_PREFIX: &str = "COGNITO_GATE_";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `[listen_tls]`: `listen` serves HTTPS (h2 and http/1.1 by ALPN).
    pub listen_tls: Option<ListenerTlsFiles>,
    /// `listen = "unix:/path"`: the proxy listens on this Unix domain socket instead
    /// (and `listen` is unused).
    pub listen_socket: Option<UnixSocketListen>,
    pub admin_listen: SocketAddr,
    /// `[admin_listen_tls]`.
    pub admin_listen_tls: Option<ListenerTlsFiles>,
    pub policy_file: PathBuf,
    pub max_header_bytes: usize,
    /// From accept to the first complete request head, and between requests on a
    /// kept-alive connection, whatever the protocol.
    pub header_read_timeout: Duration,
    /// Open client connections on the proxy and decision listeners together; `None`
    /// sizes it from the file-descriptor limit at start-up.
    pub max_connections: Option<usize>,
    /// Threads serving client connections; `None` is one per CPU the process may use.
    pub workers: Option<usize>,
    pub http2_keep_alive_interval: Duration,
    pub http2_keep_alive_timeout: Duration,
    /// Upgrade protocols (lower case) that may pass once a request is authorized.
    pub allowed_upgrades: Vec<String>,
    /// How CORS preflights are decided.
    pub cors_preflight: CorsPreflight,
    /// `[cors]`: what the gate answers preflights with (`cors_preflight = "answer"`).
    pub cors: Option<CorsConfig>,
    /// Where a request's token is read, in order (`token_sources`).
    pub token_sources: Vec<TokenSource>,
    /// The methods for which a cookie counts as a token; for the others only the
    /// `Authorization` header does.
    pub cookie_methods: Vec<http::Method>,
    /// Whether the app receives the token cookies (`forward_token`).
    pub forward_token: bool,
    /// Peers (load balancers, CDNs) whose `X-Forwarded-*` and `X-Request-Id` are kept.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `"unix"` in `trusted_proxies`: the peers on `listen`'s Unix socket are trusted.
    pub trust_unix_peers: bool,
    pub shutdown_timeout: Duration,
    pub max_token_bytes: usize,
    /// Memory for remembering verified tokens; 0 verifies every signature every time.
    pub token_cache_bytes: u64,
    /// The app behind the reverse proxy; `None` runs the gate in decision-only mode.
    pub upstream: Option<UpstreamConfig>,
    /// The decision endpoints for nginx, Caddy, Traefik and Envoy; `None` serves none.
    pub authz: Option<AuthzConfig>,
    pub pools: Vec<PoolConfig>,
    /// OpenID Connect issuers other than Cognito (`[[issuers]]`).
    pub issuers: Vec<IssuerConfig>,
    /// Application Load Balancers whose `x-amzn-oidc-data` is verified (`[[alb]]`).
    pub albs: Vec<AlbConfig>,
    pub jwks: JwksConfig,
    pub headers: HeadersConfig,
    pub log: LogConfig,
    pub reload: ReloadConfig,
    /// `[revocation]`: the shared revocation list; `None` when revocation is off.
    pub revocation: Option<RevocationConfig>,
    /// `[tracing]`: OpenTelemetry traces; `None` when tracing is off.
    pub tracing: Option<TracingConfig>,
    /// The file this configuration was loaded from; `None` for TOML text. A gate
    /// whose configuration has a file reloads it on SIGHUP and on change.
    pub source: Option<PathBuf>,
}

/// `listen = "unix:/path"`, with `listen_socket_mode` and `listen_socket_owner`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixSocketListen {
    /// Absolute.
    pub path: PathBuf,
    /// Permission bits, at most `0o777`.
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl Config {
    /// Where the proxy listens, as the log and `check` say it.
    pub fn listen_text(&self) -> String {
        match &self.listen_socket {
            Some(socket) => format!("unix:{}", socket.path.display()),
            None => self.listen.to_string(),
        }
    }
}

/// `cors_preflight`: whether a browser's CORS preflight needs what the policy asks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CorsPreflight {
    /// `"policy"`: an `OPTIONS` request is judged like any other.
    #[default]
    Policy,
    /// `"pass"`: a preflight (see `authorize::is_preflight`) reaches the app without a
    /// token (browsers never send one on a preflight), carrying nothing but what a
    /// preflight is: no body, no credentials, only the CORS and content-negotiation
    /// headers.
    Pass,
    /// `"answer"`: the gate answers preflights itself from `[cors]`, so the app never
    /// sees an anonymous request to a protected path; on the proxy it also adds the
    /// CORS response headers to the answers to allowed origins.
    Answer,
}

/// `[cors]`, validated: what the gate answers a preflight with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    /// Exact origins (`scheme://host[:port]`, lower case), or `*` for any.
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<http::Method>,
    /// Lower case.
    pub allowed_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub allow_credentials: bool,
    pub max_age: Duration,
}

impl CorsConfig {
    /// Whether `origin` (the request's `Origin` header) may read the answers.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }
}

/// `[reload]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadConfig {
    /// How long a file written in place must stay unchanged (size, modification time
    /// and bytes) before a reload reads it. A file renamed into place, and SIGHUP, are
    /// read at once.
    pub settle: Duration,
}

/// `[revocation]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationConfig {
    /// `redis://` or `rediss://`, with the user, password and database.
    pub redis_url: RedisUrl,
    /// A file holding the password, which wins over the URL's.
    pub password_file: Option<PathBuf>,
    /// Prepended to the stream's name (`{key_prefix}revocations`).
    pub key_prefix: String,
    /// The longest a token lives: how long an entry is kept.
    pub max_token_lifetime: Duration,
    pub on_unavailable: OnUnavailable,
    /// With `serve_stale`, how long the last list is trusted while Redis is away.
    pub max_staleness: Duration,
    /// Connecting, and a reply's wait beyond a stream read's own.
    pub timeout: Duration,
}

impl RevocationConfig {
    /// Defaults with a loopback URL, for unit tests.
    #[cfg(test)]
    pub fn for_tests() -> Self {
        RevocationConfig {
            redis_url: RedisUrl {
                tls: false,
                host: "127.0.0.1".into(),
                port: 6379,
                user: None,
                password: None,
                db: 0,
            },
            password_file: None,
            key_prefix: "cognito-gate:".into(),
            max_token_lifetime: Duration::from_secs(86_400),
            on_unavailable: OnUnavailable::ServeStale,
            max_staleness: Duration::from_secs(300),
            timeout: Duration::from_secs(2),
        }
    }
}

/// What requests get while the revocation list cannot be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnavailable {
    /// Keep deciding with the last list, for at most `max_staleness`; then 503.
    ServeStale,
    /// 503 `revocation_unavailable` as soon as Redis is away.
    Refuse,
}

/// One place a request's token may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `"header"`: `Authorization: Bearer <token>`.
    Header,
    /// `"cookie:NAME"`: the cookie NAME.
    Cookie(Box<str>),
}

impl TokenSource {
    /// The cookie's name, for a cookie source.
    pub fn cookie(&self) -> Option<&str> {
        match self {
            TokenSource::Cookie(name) => Some(name),
            TokenSource::Header => None,
        }
    }
}

/// One `[[issuers]]` table, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuerConfig {
    /// The exact `iss` of its tokens, and of its discovery document.
    pub issuer: String,
    /// Where the discovery document is: `{issuer}/.well-known/openid-configuration`.
    pub discovery_url: Uri,
    /// The token's `aud` must name one of these.
    pub audiences: Vec<String>,
    /// The `alg`s accepted: RS256, ES256, PS256.
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// The path of the groups claim (`realm_access.roles` for Keycloak).
    pub groups_claim: Vec<String>,
    pub scopes_claim: String,
    pub subject_claim: String,
    /// Whether discovery may name a plain-HTTP `jwks_uri` off loopback.
    pub allow_insecure_urls: bool,
    pub leeway: Duration,
    /// The key server's CA bundle and the client certificate the gate presents to it.
    pub tls: TlsClientFiles,
}

/// One `[[alb]]` table, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlbConfig {
    pub region: String,
    /// The load balancer ARNs whose headers are accepted: the token's `signer`.
    pub signers: Vec<String>,
    /// Where the public key of a `kid` is: `{kid}` is replaced by the token's kid.
    pub key_url: String,
    /// When not empty, the header's `client` must be one of these.
    pub client_ids: Vec<String>,
    /// When set, the header's `iss` (and the payload's, when present) must equal it.
    pub issuer: Option<String>,
    pub leeway: Duration,
    /// The key server's CA bundle and the client certificate the gate presents to it.
    pub tls: TlsClientFiles,
}

impl AlbConfig {
    /// The key URL for `kid`, which must already be known to be a UUID.
    pub fn key_url_for(&self, kid: &str) -> String {
        self.key_url.replace("{kid}", kid)
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Scheme and authority only: the path the upstream receives is the request's own.
    /// For a Unix socket, `http://localhost`: requests keep the client's `Host`.
    pub url: Uri,
    /// The app's Unix domain socket (`url = "unix:/run/app.sock"`), which every request
    /// is sent to instead of `url`'s host.
    pub socket: Option<PathBuf>,
    /// What the gate speaks to the app.
    pub protocol: UpstreamProtocol,
    /// An `https://` app's CA bundle and the client certificate the gate presents.
    pub tls: TlsClientFiles,
    /// The name the app's certificate is checked for (and sent as SNI), when it is not
    /// the URL's host.
    pub server_name: Option<String>,
    pub connect_timeout: Duration,
    /// How long the upstream may take to send its response headers.
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
}

impl UpstreamConfig {
    /// Where the app is, as configured: the URL, or `unix:` and the socket's path.
    pub fn address(&self) -> String {
        match &self.socket {
            Some(path) => format!("unix:{}", path.display()),
            None => self.url.to_string(),
        }
    }
}

/// What an outbound TLS connection trusts and presents beyond the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsClientFiles {
    /// PEM CA bundle trusted instead of the system's (a private CA).
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain and key presented to servers that ask (mTLS).
    pub client_cert: Option<ClientIdentity>,
}

/// A client certificate chain and its private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `upstream.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1, whatever the client spoke.
    Http1,
    /// HTTP/2 over cleartext with prior knowledge (gRPC servers), except for upgrades.
    H2c,
    /// HTTP/2 over TLS, negotiated by ALPN (gRPC servers behind TLS), except for
    /// upgrades.
    H2,
    /// The client's own: HTTP/2 clients (gRPC) get h2c, HTTP/1 clients HTTP/1.1.
    Auto,
}

/// The decision endpoints: HTTP (`listen`), Envoy gRPC (`grpc_listen`), or both.
#[derive(Debug, Clone)]
pub struct AuthzConfig {
    /// The HTTP decision endpoints (forward auth and Envoy's HTTP ext_authz).
    pub listen: Option<SocketAddr>,
    /// `[authz.listen_tls]`.
    pub listen_tls: Option<ListenerTlsFiles>,
    /// Envoy's gRPC ext_authz service and the gRPC health service, over h2c (or h2
    /// over TLS with `grpc_listen_tls`).
    pub grpc_listen: Option<SocketAddr>,
    /// `[authz.grpc_listen_tls]`.
    pub grpc_listen_tls: Option<ListenerTlsFiles>,
    /// The forward-auth path for nginx `auth_request`, Traefik and Caddy.
    pub path: String,
    /// Envoy `ext_authz` requests arrive as this prefix plus the original path.
    pub envoy_prefix: String,
    /// Only these peers may ask for decisions.
    pub trusted_peers: Vec<ipnet::IpNet>,
    /// How long a peer may reuse an allow (`Cache-Control: private, max-age`), in
    /// whole seconds, 1 to [`MAX_DECISION_CACHE`]; `None` (the default) forbids none
    /// and permits none: the answers carry no cache headers.
    pub cache_max_age: Option<Duration>,
    /// `authz.grpc_max_connection_age` and its grace; `None` when set to `0s`.
    pub grpc_connection_age: Option<ConnectionAge>,
}

/// How long a connection is served before it is asked to go (HTTP/2 GOAWAY), so that
/// a client's long-lived connections spread over replicas started since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionAge {
    /// The age, before a jitter of up to ±10 % (as gRPC's `MAX_CONNECTION_AGE`).
    pub age: Duration,
    /// How long calls in progress then have to finish before the connection is closed.
    pub grace: Duration,
}

/// The longest `authz.cache_max_age`: a policy tightening or a revoked token must be
/// seen within a minute.
pub const MAX_DECISION_CACHE: Duration = Duration::from_secs(60);

impl AuthzConfig {
    pub fn trusts(&self, peer: std::net::IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.trusted_peers.iter().any(|net| net.contains(&peer))
    }
}

/// One Cognito user pool whose tokens are accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub user_pool_id: String,
    pub region: String,
    pub client_ids: Vec<String>,
    pub token_use: TokenUsePolicy,
    pub jwks_url: Uri,
    pub leeway: Duration,
    /// The key server's CA bundle and the client certificate the gate presents to it.
    pub tls: TlsClientFiles,
}

impl PoolConfig {
    /// The `iss` Cognito writes into this pool's tokens.
    pub fn issuer(&self) -> String {
        format!(
            "https://cognito-idp.{}.amazonaws.com/{}",
            self.region, self.user_pool_id
        )
    }

    /// The multi-region issuer form, accepted by aws-jwt-verify since 5.2.0.
    pub fn multi_region_issuer(&self) -> String {
        format!(
            "https://issuer-cognito-idp.{}.amazonaws.com/{}",
            self.region, self.user_pool_id
        )
    }
}

/// Which kind of Cognito token a pool accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUsePolicy {
    Access,
    Id,
    Any,
}

#[derive(Debug, Clone)]
pub struct JwksConfig {
    pub refresh_interval: Duration,
    pub unknown_kid_cooldown: Duration,
    pub fetch_timeout: Duration,
    pub max_response_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct HeadersConfig {
    pub user_sub: HeaderName,
    pub user_groups: HeaderName,
    pub forward_authorization: bool,
    /// `[headers.claims]`: each header carries the named claim of the caller's token.
    /// With `preset = "oauth2-proxy"`, also `X-Auth-Request-Email` (claim `email`).
    pub claims: Vec<(HeaderName, Box<str>)>,
    /// More headers carrying `sub` (`headers.preset`: `X-Auth-Request-User`,
    /// `X-Forwarded-User`).
    pub also_sub: Vec<HeaderName>,
    /// More headers carrying the groups (`X-Auth-Request-Groups`, `X-Forwarded-Groups`).
    pub also_groups: Vec<HeaderName>,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// JSON when stderr is not a terminal, pretty with colour when it is.
    Auto,
    Pretty,
    Json,
}

/// The words `log.level` accepts on its own; anything else must be a full filter
/// (with `,` or `=`, such as `info,cognito_gate=debug`).
pub const LOG_LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
