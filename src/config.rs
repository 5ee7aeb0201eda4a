//! Configuration in two stages: a raw serde struct that figment fills from built-in
//! defaults, the TOML file and `COGNITO_GATE_*` environment variables (in that order,
//! `__` separating nested keys), then a validated, typed [`Config`]. Validation reports
//! every problem at once, each with the key that caused it.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use http::header::HeaderName;
use http::Uri;
use serde::{Deserialize, Serialize};

/// The environment variable prefix; `COGNITO_GATE_UPSTREAM__URL` sets `upstream.url`.
pub const ENV_PREFIX: &str = "COGNITO_GATE_";

/// The smallest header buffer hyper's HTTP/1 server accepts.
const MIN_HEADER_BYTES: usize = 8192;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub policy_file: PathBuf,
    pub max_header_bytes: usize,
    /// From accept to the first complete request head, and between requests on a
    /// kept-alive connection, whatever the protocol.
    pub header_read_timeout: Duration,
    /// Open client connections on the proxy and decision listeners together; `None`
    /// sizes it from the file-descriptor limit at start-up.
    pub max_connections: Option<usize>,
    pub http2_keep_alive_interval: Duration,
    pub http2_keep_alive_timeout: Duration,
    /// Upgrade protocols (lower case) that may pass once a request is authorized.
    pub allowed_upgrades: Vec<String>,
    pub shutdown_timeout: Duration,
    pub max_token_bytes: usize,
    /// Memory for remembering verified tokens; 0 verifies every signature every time.
    pub token_cache_bytes: u64,
    /// The app behind the reverse proxy; `None` runs the gate in decision-only mode.
    pub upstream: Option<UpstreamConfig>,
    /// The decision endpoints for nginx, Caddy, Traefik and Envoy; `None` serves none.
    pub authz: Option<AuthzConfig>,
    pub pools: Vec<PoolConfig>,
    pub jwks: JwksConfig,
    pub headers: HeadersConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Scheme and authority only: the path the upstream receives is the request's own.
    pub url: Uri,
    pub connect_timeout: Duration,
    /// How long the upstream may take to send its response headers.
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
}

/// The external-authorization listener.
#[derive(Debug, Clone)]
pub struct AuthzConfig {
    pub listen: SocketAddr,
    /// The forward-auth path for nginx `auth_request`, Traefik and Caddy.
    pub path: String,
    /// Envoy `ext_authz` requests arrive as this prefix plus the original path.
    pub envoy_prefix: String,
    /// Only these peers may ask for decisions.
    pub trusted_peers: Vec<ipnet::IpNet>,
}

impl AuthzConfig {
    pub fn trusts(&self, peer: std::net::IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.trusted_peers.iter().any(|net| net.contains(&peer))
    }
}

/// One Cognito user pool whose tokens are accepted.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub user_pool_id: String,
    pub region: String,
    pub client_ids: Vec<String>,
    pub token_use: TokenUsePolicy,
    pub jwks_url: Uri,
    pub leeway: Duration,
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
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration:")?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Loads defaults, then `file`, then the environment. A missing file is an error:
    /// running on defaults alone by accident would hide a typo in `--config`.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        if !file.is_file() {
            return Err(ConfigError {
                problems: vec![format!("config file {} does not exist", file.display())],
            });
        }
        Config::from_figment(
            Figment::from(Serialized::defaults(RawConfig::default()))
                .merge(Toml::file(file))
                .merge(env_provider()),
        )
    }

    /// Defaults, then TOML text; the environment is not read. For tests and the demo.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Config::from_figment(
            Figment::from(Serialized::defaults(RawConfig::default())).merge(Toml::string(text)),
        )
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let raw: RawConfig = figment.extract().map_err(|e| ConfigError {
            problems: e.into_iter().map(|e| e.to_string()).collect(),
        })?;
        Config::try_from(raw)
    }
}

fn env_provider() -> Env {
    // COGNITO_GATE_CONFIG names the file itself (see the CLI), it is not a key.
    Env::prefixed(ENV_PREFIX).ignore(&["config"]).split("__")
}

/// The raw configuration, as written. Unknown keys are errors.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub listen: String,
    pub admin_listen: String,
    pub policy_file: String,
    pub max_header_bytes: usize,
    pub header_read_timeout: RawDuration,
    /// 0 means "size it from the file-descriptor limit".
    pub max_connections: usize,
    pub http2_keep_alive_interval: RawDuration,
    pub http2_keep_alive_timeout: RawDuration,
    pub allowed_upgrades: Vec<String>,
    pub shutdown_timeout: RawDuration,
    pub max_token_bytes: usize,
    pub token_cache: RawTokenCache,
    pub upstream: Option<RawUpstream>,
    pub authz: RawAuthz,
    pub pools: Vec<RawPool>,
    pub jwks: RawJwks,
    pub headers: RawHeaders,
    pub log: RawLog,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            listen: "0.0.0.0:8080".into(),
            admin_listen: "127.0.0.1:9090".into(),
            policy_file: "config/policy.toml".into(),
            max_header_bytes: 16 * 1024,
            header_read_timeout: RawDuration::text("10s"),
            max_connections: 0,
            http2_keep_alive_interval: RawDuration::text("20s"),
            http2_keep_alive_timeout: RawDuration::text("20s"),
            allowed_upgrades: vec!["websocket".into()],
            shutdown_timeout: RawDuration::text("30s"),
            max_token_bytes: 8 * 1024,
            token_cache: RawTokenCache::default(),
            upstream: None,
            authz: RawAuthz::default(),
            pools: Vec::new(),
            jwks: RawJwks::default(),
            headers: RawHeaders::default(),
            log: RawLog::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    pub url: Option<String>,
    pub connect_timeout: RawDuration,
    pub request_timeout: RawDuration,
    pub idle_timeout: RawDuration,
}

impl Default for RawUpstream {
    fn default() -> Self {
        RawUpstream {
            url: None,
            connect_timeout: RawDuration::text("5s"),
            request_timeout: RawDuration::text("30s"),
            idle_timeout: RawDuration::text("90s"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTokenCache {
    pub max_bytes: u64,
}

impl Default for RawTokenCache {
    fn default() -> Self {
        RawTokenCache {
            max_bytes: 4 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuthz {
    pub listen: Option<String>,
    pub path: String,
    pub envoy_prefix: String,
    pub trusted_peers: Vec<String>,
}

impl Default for RawAuthz {
    fn default() -> Self {
        RawAuthz {
            listen: None,
            path: "/auth".into(),
            envoy_prefix: "/envoy".into(),
            trusted_peers: vec!["127.0.0.0/8".into(), "::1/128".into()],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPool {
    pub user_pool_id: Option<String>,
    pub client_ids: Vec<String>,
    pub token_use: String,
    pub jwks_url: Option<String>,
    pub leeway: RawDuration,
}

impl Default for RawPool {
    fn default() -> Self {
        RawPool {
            user_pool_id: None,
            client_ids: Vec::new(),
            token_use: "access".into(),
            jwks_url: None,
            leeway: RawDuration::Seconds(0),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawJwks {
    pub refresh_interval: RawDuration,
    pub unknown_kid_cooldown: RawDuration,
    pub fetch_timeout: RawDuration,
    pub max_response_bytes: usize,
}

impl Default for RawJwks {
    fn default() -> Self {
        RawJwks {
            refresh_interval: RawDuration::text("10m"),
            unknown_kid_cooldown: RawDuration::text("10s"),
            fetch_timeout: RawDuration::text("5s"),
            max_response_bytes: 64 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHeaders {
    pub user_sub: String,
    pub user_groups: String,
    pub forward_authorization: bool,
}

impl Default for RawHeaders {
    fn default() -> Self {
        RawHeaders {
            user_sub: "X-User-Sub".into(),
            user_groups: "X-User-Groups".into(),
            forward_authorization: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub level: String,
    pub format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            level: "info".into(),
            format: "pretty".into(),
        }
    }
}

/// A duration as written: whole seconds (`30`) or a number with a unit (`250ms`,
/// `10s`, `5m`, `1h`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawDuration {
    Seconds(u64),
    Text(String),
}

impl RawDuration {
    fn text(s: &str) -> Self {
        RawDuration::Text(s.to_owned())
    }

    fn parse(&self) -> Result<Duration, String> {
        let text = match self {
            RawDuration::Seconds(s) => return Ok(Duration::from_secs(*s)),
            RawDuration::Text(t) => t.trim(),
        };
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{text:?} is not a duration (try \"10s\", \"250ms\", \"5m\")"))?;
        let per_unit = match unit.trim() {
            "" | "s" => 1000,
            "ms" => 1,
            "m" => 60_000,
            "h" => 3_600_000,
            other => {
                return Err(format!(
                    "{text:?} has an unknown unit {other:?} (ms, s, m, h)"
                ))
            }
        };
        n.checked_mul(per_unit)
            .map(Duration::from_millis)
            .ok_or_else(|| format!("{text:?} is too long"))
    }
}

/// Collects problems while converting, so that one run reports all of them.
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, key: &str, msg: impl fmt::Display) {
        self.0.push(format!("{key}: {msg}"));
    }

    fn duration(&mut self, key: &str, raw: &RawDuration, min: Duration) -> Duration {
        match raw.parse() {
            Ok(d) if d < min => {
                self.add(key, format!("must be at least {min:?}"));
                d
            }
            Ok(d) => d,
            Err(e) => {
                self.add(key, e);
                Duration::ZERO
            }
        }
    }

    fn addr(&mut self, key: &str, raw: &str) -> SocketAddr {
        raw.parse().unwrap_or_else(|_| {
            self.add(key, format!("{raw:?} is not an IP:port address"));
            SocketAddr::from(([0, 0, 0, 0], 0))
        })
    }

    fn url(&mut self, key: &str, raw: &str) -> Option<Uri> {
        match raw.parse::<Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.authority().is_some() =>
            {
                Some(uri)
            }
            _ => {
                self.add(key, format!("{raw:?} is not an absolute http(s) URL"));
                None
            }
        }
    }
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Config, ConfigError> {
        let mut p = Problems(Vec::new());
        let listen = p.addr("listen", &raw.listen);
        let admin_listen = p.addr("admin_listen", &raw.admin_listen);
        if listen == admin_listen && listen.port() != 0 {
            p.add("admin_listen", "must differ from listen");
        }
        if raw.policy_file.is_empty() {
            p.add("policy_file", "must not be empty");
        }
        if !(MIN_HEADER_BYTES..=1024 * 1024).contains(&raw.max_header_bytes) {
            p.add(
                "max_header_bytes",
                format!("must be between {MIN_HEADER_BYTES} and 1048576"),
            );
        }
        if raw.max_token_bytes == 0 || raw.max_token_bytes > raw.max_header_bytes {
            p.add(
                "max_token_bytes",
                "must be at least 1 and at most max_header_bytes",
            );
        }
        let second = Duration::from_secs(1);
        let header_read_timeout =
            p.duration("header_read_timeout", &raw.header_read_timeout, second);
        let shutdown_timeout =
            p.duration("shutdown_timeout", &raw.shutdown_timeout, Duration::ZERO);
        let http2_keep_alive_interval = p.duration(
            "http2_keep_alive_interval",
            &raw.http2_keep_alive_interval,
            second,
        );
        let http2_keep_alive_timeout = p.duration(
            "http2_keep_alive_timeout",
            &raw.http2_keep_alive_timeout,
            second,
        );
        let allowed_upgrades = convert_upgrades(&mut p, raw.allowed_upgrades);

        let authz = convert_authz(&mut p, raw.authz);
        if let Some(a) = &authz {
            if a.listen == listen || a.listen == admin_listen {
                p.add("authz.listen", "must differ from listen and admin_listen");
            }
        }
        let upstream = convert_upstream(&mut p, raw.upstream, authz.is_some());
        let pools = convert_pools(&mut p, raw.pools);

        let jwks = JwksConfig {
            refresh_interval: p.duration(
                "jwks.refresh_interval",
                &raw.jwks.refresh_interval,
                second,
            ),
            unknown_kid_cooldown: p.duration(
                "jwks.unknown_kid_cooldown",
                &raw.jwks.unknown_kid_cooldown,
                Duration::from_millis(100),
            ),
            fetch_timeout: p.duration(
                "jwks.fetch_timeout",
                &raw.jwks.fetch_timeout,
                Duration::from_millis(100),
            ),
            max_response_bytes: raw.jwks.max_response_bytes,
        };
        if !(1024..=16 * 1024 * 1024).contains(&jwks.max_response_bytes) {
            p.add(
                "jwks.max_response_bytes",
                "must be between 1024 and 16777216",
            );
        }

        let headers = convert_headers(&mut p, raw.headers);
        let log = LogConfig {
            format: match raw.log.format.as_str() {
                "pretty" => LogFormat::Pretty,
                "json" => LogFormat::Json,
                other => {
                    p.add(
                        "log.format",
                        format!("{other:?} must be \"pretty\" or \"json\""),
                    );
                    LogFormat::Pretty
                }
            },
            level: raw.log.level,
        };
        if tracing_subscriber::EnvFilter::try_new(&log.level).is_err() {
            p.add(
                "log.level",
                format!(
                    "{:?} is not a level (error, warn, info, debug, trace) or filter",
                    log.level
                ),
            );
        }

        match p.0.is_empty() {
            true => Ok(Config {
                listen,
                admin_listen,
                policy_file: PathBuf::from(raw.policy_file),
                max_header_bytes: raw.max_header_bytes,
                header_read_timeout,
                max_connections: (raw.max_connections > 0).then_some(raw.max_connections),
                http2_keep_alive_interval,
                http2_keep_alive_timeout,
                allowed_upgrades,
                shutdown_timeout,
                max_token_bytes: raw.max_token_bytes,
                token_cache_bytes: raw.token_cache.max_bytes,
                upstream,
                authz,
                pools,
                jwks,
                headers,
                log,
            }),
            false => Err(ConfigError { problems: p.0 }),
        }
    }
}

/// Upgrade protocol names, lower-cased. `h2c` can never be allowed: an app that
/// accepts it would take HTTP/2 streams on the tunnel that the gate never judged.
fn convert_upgrades(p: &mut Problems, raw: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(raw.len());
    for name in raw {
        let lower = name.to_ascii_lowercase();
        let is_token = !lower.is_empty()
            && lower
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if lower == "h2c" {
            p.add(
                "allowed_upgrades",
                "\"h2c\" cannot be allowed: HTTP/2 streams on the upgraded connection would bypass the policy",
            );
        } else if !is_token {
            p.add(
                "allowed_upgrades",
                format!("{name:?} is not a protocol name"),
            );
        } else {
            out.push(lower);
        }
    }
    out
}

const UPSTREAM_REQUIRED: &str = "is required, unless authz.listen is set (decision-only mode)";

fn convert_upstream(
    p: &mut Problems,
    raw: Option<RawUpstream>,
    has_authz: bool,
) -> Option<UpstreamConfig> {
    let Some(raw) = raw else {
        if !has_authz {
            p.add("upstream.url", UPSTREAM_REQUIRED);
        }
        return None;
    };
    let second = Duration::from_millis(1);
    let connect_timeout = p.duration("upstream.connect_timeout", &raw.connect_timeout, second);
    let request_timeout = p.duration("upstream.request_timeout", &raw.request_timeout, second);
    let idle_timeout = p.duration("upstream.idle_timeout", &raw.idle_timeout, Duration::ZERO);
    let Some(text) = raw.url else {
        p.add("upstream.url", UPSTREAM_REQUIRED);
        return None;
    };
    let url = p.url("upstream.url", &text)?;
    let has_path = !matches!(url.path(), "" | "/") || url.query().is_some();
    let has_userinfo = url.authority().is_some_and(|a| a.as_str().contains('@'));
    if has_path || has_userinfo {
        p.add(
            "upstream.url",
            "must be scheme://host:port only: requests keep their own path, so the policy judges what the app receives",
        );
        return None;
    }
    Some(UpstreamConfig {
        url,
        connect_timeout,
        request_timeout,
        idle_timeout,
    })
}

fn convert_authz(p: &mut Problems, raw: RawAuthz) -> Option<AuthzConfig> {
    let listen = p.addr("authz.listen", raw.listen.as_deref()?);
    let mut endpoint = |key: &str, value: &str| {
        let canonical = crate::path::canonicalize(value).map(|c| c == value);
        if canonical != Ok(true) || value.len() < 2 || value.ends_with('/') {
            p.add(
                key,
                format!(
                    "{value:?} must be a canonical path like \"/auth\", without a trailing '/'"
                ),
            );
        }
    };
    endpoint("authz.path", &raw.path);
    endpoint("authz.envoy_prefix", &raw.envoy_prefix);
    let overlap = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/"));
    if overlap(&raw.path, &raw.envoy_prefix) || overlap(&raw.envoy_prefix, &raw.path) {
        p.add("authz.path", "must not overlap authz.envoy_prefix");
    }
    let mut trusted_peers = Vec::with_capacity(raw.trusted_peers.len());
    for peer in &raw.trusted_peers {
        let net = peer
            .parse::<ipnet::IpNet>()
            .or_else(|_| peer.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match net {
            Ok(net) => trusted_peers.push(net),
            Err(_) => p.add(
                "authz.trusted_peers",
                format!("{peer:?} is not an IP address or CIDR range"),
            ),
        }
    }
    Some(AuthzConfig {
        listen,
        path: raw.path,
        envoy_prefix: raw.envoy_prefix,
        trusted_peers,
    })
}

fn convert_pools(p: &mut Problems, raw: Vec<RawPool>) -> Vec<PoolConfig> {
    if raw.is_empty() {
        p.add("pools", "at least one [[pools]] entry is required");
    }
    let mut pools: Vec<PoolConfig> = Vec::with_capacity(raw.len());
    for (i, rp) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("pools[{i}].{k}");
        let leeway = p.duration(&key("leeway"), &rp.leeway, Duration::ZERO);
        if leeway > Duration::from_secs(300) {
            p.add(&key("leeway"), "must be at most 5m");
        }
        let token_use = match rp.token_use.as_str() {
            "access" => TokenUsePolicy::Access,
            "id" => TokenUsePolicy::Id,
            "any" => TokenUsePolicy::Any,
            other => {
                p.add(
                    &key("token_use"),
                    format!("{other:?} must be \"access\", \"id\" or \"any\""),
                );
                TokenUsePolicy::Access
            }
        };
        if rp.client_ids.is_empty() {
            p.add(&key("client_ids"), "at least one client id is required");
        }
        if rp.client_ids.iter().any(|c| c.is_empty()) {
            p.add(&key("client_ids"), "client ids must not be empty");
        }
        let Some(id) = rp.user_pool_id else {
            p.add(&key("user_pool_id"), "is required");
            continue;
        };
        let Some(region) = region_of(&id) else {
            p.add(
                &key("user_pool_id"),
                format!("{id:?} is not a user pool id like \"us-east-1_AbCdEf123\""),
            );
            continue;
        };
        if pools.iter().any(|other| other.user_pool_id == id) {
            p.add(&key("user_pool_id"), format!("{id:?} is configured twice"));
        }
        let default_jwks =
            format!("https://cognito-idp.{region}.amazonaws.com/{id}/.well-known/jwks.json");
        let jwks_text = rp.jwks_url.unwrap_or(default_jwks);
        let Some(jwks_url) = p.url(&key("jwks_url"), &jwks_text) else {
            continue;
        };
        pools.push(PoolConfig {
            region: region.to_owned(),
            user_pool_id: id,
            client_ids: rp.client_ids,
            token_use,
            jwks_url,
            leeway,
        });
    }
    pools
}

/// The region part of a user pool id (`us-east-1` of `us-east-1_AbCdEf123`).
fn region_of(pool_id: &str) -> Option<&str> {
    let (region, rest) = pool_id.split_once('_')?;
    let region_ok = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && region.contains('-');
    let rest_ok = !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric());
    (region_ok && rest_ok).then_some(region)
}

fn convert_headers(p: &mut Problems, raw: RawHeaders) -> HeadersConfig {
    let mut name = |key: &str, value: &str| match HeaderName::from_bytes(value.as_bytes()) {
        Ok(h) if is_reserved_header(&h) => {
            p.add(
                key,
                format!("{value:?} is a header the gate manages itself"),
            );
            h
        }
        Ok(h) => h,
        Err(_) => {
            p.add(key, format!("{value:?} is not a valid header name"));
            HeaderName::from_static("x-invalid")
        }
    };
    let user_sub = name("headers.user_sub", &raw.user_sub);
    let user_groups = name("headers.user_groups", &raw.user_groups);
    if crate::headers::same_folded_name(user_sub.as_str(), user_groups.as_str()) {
        p.add("headers.user_groups", "must differ from headers.user_sub");
    }
    HeadersConfig {
        user_sub,
        user_groups,
        forward_authorization: raw.forward_authorization,
    }
}

fn is_reserved_header(h: &HeaderName) -> bool {
    use http::header::*;
    crate::headers::is_hop_by_hop(h)
        || [HOST, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE].contains(h)
        || h.as_str().starts_with("x-forwarded-")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [upstream]
        url = "http://127.0.0.1:3000"

        [[pools]]
        user_pool_id = "us-east-1_AbC123"
        client_ids = ["client-a"]
    "#;

    #[test]
    fn minimal_config_gets_the_documented_defaults() {
        let c = Config::from_toml(MINIMAL).expect("valid");
        assert_eq!(c.listen, "0.0.0.0:8080".parse().expect("addr"));
        assert_eq!(c.admin_listen, "127.0.0.1:9090".parse().expect("addr"));
        assert_eq!(c.policy_file, PathBuf::from("config/policy.toml"));
        assert_eq!(c.max_header_bytes, 16384);
        assert_eq!(c.max_token_bytes, 8192);
        assert_eq!(c.token_cache_bytes, 4 * 1024 * 1024);
        assert_eq!(c.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(c.max_connections, None, "sized from the fd limit");
        assert_eq!(c.http2_keep_alive_interval, Duration::from_secs(20));
        assert_eq!(c.http2_keep_alive_timeout, Duration::from_secs(20));
        assert_eq!(c.allowed_upgrades, ["websocket"]);
        let upstream = c.upstream.as_ref().expect("upstream");
        assert_eq!(upstream.connect_timeout, Duration::from_secs(5));
        assert_eq!(upstream.request_timeout, Duration::from_secs(30));
        assert!(
            c.authz.is_none(),
            "no decision endpoints unless authz.listen is set"
        );
        let pool = &c.pools[0];
        assert_eq!(pool.region, "us-east-1");
        assert_eq!(pool.token_use, TokenUsePolicy::Access);
        assert_eq!(pool.leeway, Duration::ZERO);
        assert_eq!(
            pool.jwks_url.to_string(),
            "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbC123/.well-known/jwks.json"
        );
        assert_eq!(
            pool.issuer(),
            "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbC123"
        );
        assert_eq!(c.jwks.refresh_interval, Duration::from_secs(600));
        assert_eq!(c.jwks.unknown_kid_cooldown, Duration::from_secs(10));
        assert_eq!(c.jwks.fetch_timeout, Duration::from_secs(5));
        assert_eq!(c.jwks.max_response_bytes, 65536);
        assert_eq!(c.headers.user_sub, "x-user-sub");
        assert_eq!(c.headers.user_groups, "x-user-groups");
        assert!(c.headers.forward_authorization);
        assert_eq!(c.log.format, LogFormat::Pretty);
    }

    #[test]
    fn durations_accept_seconds_and_units() {
        let cases = [
            (RawDuration::Seconds(7), Ok(Duration::from_secs(7))),
            (RawDuration::text("250ms"), Ok(Duration::from_millis(250))),
            (RawDuration::text("10s"), Ok(Duration::from_secs(10))),
            (RawDuration::text("5m"), Ok(Duration::from_secs(300))),
            (RawDuration::text("1h"), Ok(Duration::from_secs(3600))),
            (RawDuration::text("12"), Ok(Duration::from_secs(12))),
        ];
        for (raw, want) in cases {
            assert_eq!(raw.parse(), want, "{raw:?}");
        }
        assert!(RawDuration::text("ten").parse().is_err());
        assert!(RawDuration::text("5d").parse().is_err());
        assert!(RawDuration::text("-1s").parse().is_err());
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let text = r#"
            listen = "nowhere"
            max_header_bytes = 100
            header_read_timeout = "soon"

            [upstream]
            url = "http://app:3000/base"

            [[pools]]
            user_pool_id = "nope"
            client_ids = []
            token_use = "refresh"

            [[pools]]
            client_ids = ["x"]
            jwks_url = "ftp://x"

            [jwks]
            fetch_timeout = "1ms"

            [headers]
            user_sub = "bad header"
            user_groups = "Authorization"

            [log]
            format = "xml"
        "#;
        let err = Config::from_toml(text).expect_err("invalid");
        let want = [
            "listen: \"nowhere\" is not an IP:port address",
            "max_header_bytes: must be between 8192 and 1048576",
            "max_token_bytes: must be at least 1 and at most max_header_bytes",
            "header_read_timeout: \"soon\" is not a duration (try \"10s\", \"250ms\", \"5m\")",
            "upstream.url: must be scheme://host:port only: requests keep their own path, so the policy judges what the app receives",
            "pools[0].token_use: \"refresh\" must be \"access\", \"id\" or \"any\"",
            "pools[0].client_ids: at least one client id is required",
            "pools[0].user_pool_id: \"nope\" is not a user pool id like \"us-east-1_AbCdEf123\"",
            "pools[1].user_pool_id: is required",
            "jwks.fetch_timeout: must be at least 100ms",
            "headers.user_sub: \"bad header\" is not a valid header name",
            "headers.user_groups: \"Authorization\" is a header the gate manages itself",
            "log.format: \"xml\" must be \"pretty\" or \"json\"",
        ];
        assert_eq!(err.problems, want);
    }

    #[test]
    fn upgrades_are_protocol_names_and_never_h2c() {
        let with = |list: &str| Config::from_toml(&format!("allowed_upgrades = {list}\n{MINIMAL}"));
        let c = with(r#"["WebSocket", "foo"]"#).expect("valid");
        assert_eq!(c.allowed_upgrades, ["websocket", "foo"]);
        assert_eq!(
            with("[]").expect("valid").allowed_upgrades,
            Vec::<String>::new()
        );
        let err = with(r#"["websocket", "H2C", "a b", ""]"#).expect_err("h2c");
        assert_eq!(
            err.problems,
            [
                "allowed_upgrades: \"h2c\" cannot be allowed: HTTP/2 streams on the upgraded connection would bypass the policy",
                "allowed_upgrades: \"a b\" is not a protocol name",
                "allowed_upgrades: \"\" is not a protocol name",
            ]
        );
        let c = Config::from_toml(&format!("max_connections = 500\n{MINIMAL}")).expect("valid");
        assert_eq!(c.max_connections, Some(500));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::from_toml(&format!("{MINIMAL}\n[jwks]\nrefresh = \"1m\"\n"))
            .expect_err("unknown key");
        assert!(
            err.problems[0].contains("unknown field: found `refresh`"),
            "{err}"
        );
    }

    #[test]
    fn missing_upstream_and_pools_are_reported_together() {
        let err = Config::from_toml("").expect_err("empty");
        assert_eq!(
            err.problems,
            [
                "upstream.url: is required, unless authz.listen is set (decision-only mode)",
                "pools: at least one [[pools]] entry is required"
            ]
        );
    }

    #[test]
    fn identity_header_names_must_differ_in_normalized_form() {
        let text = format!("{MINIMAL}\n[headers]\nuser_sub = \"X-Who\"\nuser_groups = \"x_who\"\n");
        let err = Config::from_toml(&text).expect_err("same name");
        assert_eq!(
            err.problems,
            ["headers.user_groups: must differ from headers.user_sub"]
        );
    }

    #[test]
    fn decision_only_mode_needs_no_upstream() {
        let text = r#"
            [authz]
            listen = "127.0.0.1:9191"
            [[pools]]
            user_pool_id = "us-east-1_AbC123"
            client_ids = ["client-a"]
        "#;
        let c = Config::from_toml(text).expect("valid");
        assert!(c.upstream.is_none());
        let authz = c.authz.expect("authz");
        assert_eq!(
            (authz.path.as_str(), authz.envoy_prefix.as_str()),
            ("/auth", "/envoy")
        );
        assert!(authz.trusts("127.0.0.1".parse().expect("ip")));
        assert!(authz.trusts("::1".parse().expect("ip")));
        assert!(authz.trusts("::ffff:127.0.0.9".parse().expect("ip")));
        assert!(!authz.trusts("10.1.2.3".parse().expect("ip")));
    }

    #[test]
    fn authz_settings_are_validated() {
        let text = format!(
            "{MINIMAL}\n[authz]\nlisten = \"127.0.0.1:9090\"\npath = \"/check\"\nenvoy_prefix = \"/check/envoy/\"\ntrusted_peers = [\"10.0.0.0/8\", \"10.0.0.1\", \"nope\"]\n"
        );
        let err = Config::from_toml(&text).expect_err("invalid");
        assert_eq!(
            err.problems,
            [
                "authz.envoy_prefix: \"/check/envoy/\" must be a canonical path like \"/auth\", without a trailing '/'",
                "authz.path: must not overlap authz.envoy_prefix",
                "authz.trusted_peers: \"nope\" is not an IP address or CIDR range",
                "authz.listen: must differ from listen and admin_listen",
            ]
        );
    }

    #[test]
    fn region_is_derived_from_the_pool_id() {
        assert_eq!(region_of("eu-west-3_Xy7"), Some("eu-west-3"));
        assert_eq!(region_of("us-gov-west-1_abc"), Some("us-gov-west-1"));
        assert_eq!(region_of("useast1_abc"), None);
        assert_eq!(region_of("us-east-1_"), None);
        assert_eq!(region_of("us-east-1_a/b"), None);
        assert_eq!(region_of("US-EAST-1_abc"), None);
    }
}
