//! The configuration as written: serde structs that figment fills from the built-in
//! defaults, the TOML file and the environment. Unknown keys are errors.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The raw configuration, as written. Unknown keys are errors.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub listen: String,
    /// `[listen_tls]`: TLS on `listen`.
    pub listen_tls: Option<RawListenerTls>,
    /// With `listen = "unix:/path"`: the socket file's permission bits (octal).
    pub listen_socket_mode: String,
    /// With `listen = "unix:/path"`: `"uid"`, `"uid:gid"` or `":gid"`.
    pub listen_socket_owner: Option<String>,
    pub admin_listen: String,
    /// `[admin_listen_tls]`: TLS on `admin_listen`.
    pub admin_listen_tls: Option<RawListenerTls>,
    pub policy_file: String,
    pub max_header_bytes: usize,
    pub header_read_timeout: RawDuration,
    /// 0 means "size it from the file-descriptor limit".
    pub max_connections: usize,
    /// 0 means "one per CPU".
    pub workers: usize,
    pub http2_keep_alive_interval: RawDuration,
    pub http2_keep_alive_timeout: RawDuration,
    #[serde(deserialize_with = "list")]
    pub allowed_upgrades: Vec<String>,
    pub cors_preflight: String,
    /// `[cors]`: what the gate answers preflights with, for `cors_preflight = "answer"`.
    pub cors: Option<RawCors>,
    #[serde(deserialize_with = "list")]
    pub token_sources: Vec<String>,
    #[serde(deserialize_with = "list")]
    pub cookie_methods: Vec<String>,
    pub forward_token: bool,
    #[serde(deserialize_with = "list")]
    pub trusted_proxies: Vec<String>,
    pub shutdown_timeout: RawDuration,
    pub max_token_bytes: usize,
    pub token_cache: RawTokenCache,
    pub upstream: Option<RawUpstream>,
    pub authz: RawAuthz,
    pub pools: Vec<RawPool>,
    pub issuers: Vec<RawIssuer>,
    pub alb: Vec<RawAlb>,
    pub jwks: RawJwks,
    pub headers: RawHeaders,
    pub log: RawLog,
    pub reload: RawReload,
    /// `[revocation]`: the shared revocation list in Redis.
    pub revocation: Option<RawRevocation>,
    /// `[tracing]`: OpenTelemetry traces, off until a collector is named.
    pub tracing: RawTracing,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            listen: "0.0.0.0:8080".into(),
            listen_tls: None,
            listen_socket_mode: "0660".into(),
            listen_socket_owner: None,
            admin_listen: "127.0.0.1:9090".into(),
            admin_listen_tls: None,
            policy_file: "config/policy.toml".into(),
            max_header_bytes: 16 * 1024,
            header_read_timeout: RawDuration::text("10s"),
            max_connections: 0,
            workers: 0,
            http2_keep_alive_interval: RawDuration::text("20s"),
            http2_keep_alive_timeout: RawDuration::text("20s"),
            allowed_upgrades: vec!["websocket".into()],
            cors_preflight: "policy".into(),
            cors: None,
            token_sources: vec!["header".into()],
            cookie_methods: vec!["GET".into(), "HEAD".into(), "OPTIONS".into()],
            forward_token: false,
            trusted_proxies: Vec::new(),
            shutdown_timeout: RawDuration::text("30s"),
            max_token_bytes: 8 * 1024,
            token_cache: RawTokenCache::default(),
            upstream: None,
            authz: RawAuthz::default(),
            pools: Vec::new(),
            issuers: Vec::new(),
            alb: Vec::new(),
            jwks: RawJwks::default(),
            headers: RawHeaders::default(),
            log: RawLog::default(),
            reload: RawReload::default(),
            revocation: None,
            tracing: RawTracing::default(),
        }
    }
}

/// `[tracing]`: where spans go (OTLP over gRPC), how many are kept, and what they say.
/// Each unset key falls back to its standard `OTEL_*` variable.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTracing {
    /// The collector's OTLP/gRPC endpoint, `http://host:4317` or `https://...`.
    pub otlp_endpoint: Option<String>,
    /// The share of new traces kept, 0.0 to 1.0; a trusted parent's choice is followed.
    pub sampler_ratio: Option<f64>,
    pub service_name: Option<String>,
    /// Whether the server span names the caller (`enduser.id`).
    pub record_subject: bool,
    /// Spans waiting for export; beyond it they are dropped and counted.
    pub queue_size: usize,
    /// The CA bundle (PEM) an `https://` collector's certificate must chain to.
    pub ca_file: Option<String>,
    /// How long one export may take.
    pub export_timeout: Option<RawDuration>,
}

impl Default for RawTracing {
    fn default() -> Self {
        RawTracing {
            otlp_endpoint: None,
            sampler_ratio: None,
            service_name: None,
            record_subject: false,
            queue_size: 2048,
            ca_file: None,
            export_timeout: None,
        }
    }
}

/// `[revocation]`: where the shared revocation list lives, and what to do without it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRevocation {
    pub redis_url: Option<String>,
    pub password_file: Option<String>,
    pub key_prefix: String,
    pub max_token_lifetime: RawDuration,
    pub on_unavailable: String,
    pub max_staleness: RawDuration,
    pub timeout: RawDuration,
}

impl Default for RawRevocation {
    fn default() -> Self {
        RawRevocation {
            redis_url: None,
            password_file: None,
            key_prefix: "cognito-gate:".into(),
            max_token_lifetime: RawDuration::text("1d"),
            on_unavailable: "serve_stale".into(),
            max_staleness: RawDuration::text("5m"),
            timeout: RawDuration::text("2s"),
        }
    }
}

/// `[cors]`: the CORS policy the gate itself answers preflights with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCors {
    #[serde(deserialize_with = "list")]
    pub allowed_origins: Vec<String>,
    #[serde(deserialize_with = "list")]
    pub allowed_methods: Vec<String>,
    #[serde(deserialize_with = "list")]
    pub allowed_headers: Vec<String>,
    #[serde(deserialize_with = "list")]
    pub expose_headers: Vec<String>,
    pub allow_credentials: bool,
    pub max_age: RawDuration,
}

impl Default for RawCors {
    fn default() -> Self {
        RawCors {
            allowed_origins: Vec::new(),
            allowed_methods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
                .map(String::from)
                .to_vec(),
            allowed_headers: vec!["authorization".into(), "content-type".into()],
            expose_headers: Vec::new(),
            allow_credentials: false,
            max_age: RawDuration::text("10m"),
        }
    }
}

/// `[reload]`: when a changed file is read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawReload {
    pub settle: RawDuration,
}

impl Default for RawReload {
    fn default() -> Self {
        RawReload {
            settle: RawDuration::text("2s"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    pub url: Option<String>,
    pub protocol: String,
    pub ca_file: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub server_name: Option<String>,
    pub connect_timeout: RawDuration,
    pub request_timeout: RawDuration,
    pub idle_timeout: RawDuration,
}

impl Default for RawUpstream {
    fn default() -> Self {
        RawUpstream {
            url: None,
            protocol: "http1".into(),
            ca_file: None,
            client_cert: None,
            client_key: None,
            server_name: None,
            connect_timeout: RawDuration::text("5s"),
            request_timeout: RawDuration::text("30s"),
            idle_timeout: RawDuration::text("90s"),
        }
    }
}

/// TLS on one listener: its certificate chain and key (PEM), and the CA whose client
/// certificates it requires, if any.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawListenerTls {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub client_ca: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTokenCache {
    pub max_bytes: u64,
}

impl Default for RawTokenCache {
    fn default() -> Self {
        RawTokenCache {
            max_bytes: 40 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuthz {
    pub listen: Option<String>,
    /// `[authz.listen_tls]`: TLS on `authz.listen`.
    pub listen_tls: Option<RawListenerTls>,
    pub grpc_listen: Option<String>,
    /// `[authz.grpc_listen_tls]`: TLS on `authz.grpc_listen`.
    pub grpc_listen_tls: Option<RawListenerTls>,
    pub path: String,
    pub envoy_prefix: String,
    #[serde(deserialize_with = "list")]
    pub trusted_peers: Vec<String>,
    /// Off (none, or 0) by default.
    pub cache_max_age: Option<RawDuration>,
    /// "0s" turns it off.
    pub grpc_max_connection_age: RawDuration,
    pub grpc_max_connection_age_grace: RawDuration,
}

impl Default for RawAuthz {
    fn default() -> Self {
        RawAuthz {
            listen: None,
            listen_tls: None,
            grpc_listen: None,
            grpc_listen_tls: None,
            path: "/auth".into(),
            envoy_prefix: "/envoy".into(),
            trusted_peers: vec!["127.0.0.0/8".into(), "::1/128".into()],
            cache_max_age: None,
            grpc_max_connection_age: RawDuration::text("5m"),
            grpc_max_connection_age_grace: RawDuration::text("30s"),
        }
    }
}

/// One `[[issuers]]` table: any OpenID Connect issuer, found by discovery.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawIssuer {
    pub issuer: Option<String>,
    pub discovery_url: Option<String>,
    #[serde(deserialize_with = "list")]
    pub audiences: Vec<String>,
    #[serde(deserialize_with = "list")]
    pub algorithms: Vec<String>,
    pub groups_claim: String,
    pub scopes_claim: String,
    pub subject_claim: String,
    /// Allows plain-HTTP discovery and key URLs on a host other than loopback.
    pub allow_insecure_urls: bool,
    pub leeway: RawDuration,
    pub ca_file: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
}

impl Default for RawIssuer {
    fn default() -> Self {
        RawIssuer {
            issuer: None,
            discovery_url: None,
            audiences: Vec::new(),
            algorithms: vec!["RS256".into()],
            groups_claim: "groups".into(),
            scopes_claim: "scope".into(),
            subject_claim: "sub".into(),
            allow_insecure_urls: false,
            leeway: RawDuration::Seconds(0),
            ca_file: None,
            client_cert: None,
            client_key: None,
        }
    }
}

/// One `[[alb]]` table: an Application Load Balancer whose `x-amzn-oidc-data` the
/// gate verifies.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAlb {
    pub region: Option<String>,
    #[serde(deserialize_with = "list")]
    pub signers: Vec<String>,
    pub key_url: Option<String>,
    #[serde(deserialize_with = "list")]
    pub client_ids: Vec<String>,
    pub issuer: Option<String>,
    /// Allows a plain-HTTP `key_url` on a host other than loopback.
    pub allow_insecure_key_url: bool,
    pub leeway: RawDuration,
    pub ca_file: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
}

impl Default for RawAlb {
    fn default() -> Self {
        RawAlb {
            region: None,
            signers: Vec::new(),
            key_url: None,
            client_ids: Vec::new(),
            issuer: None,
            allow_insecure_key_url: false,
            leeway: RawDuration::Seconds(0),
            ca_file: None,
            client_cert: None,
            client_key: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPool {
    pub user_pool_id: Option<String>,
    #[serde(deserialize_with = "list")]
    pub client_ids: Vec<String>,
    pub token_use: String,
    pub jwks_url: Option<String>,
    /// Allows a plain-HTTP `jwks_url` on a host other than loopback.
    pub allow_insecure_jwks_url: bool,
    pub leeway: RawDuration,
    pub ca_file: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
}

impl Default for RawPool {
    fn default() -> Self {
        RawPool {
            user_pool_id: None,
            client_ids: Vec::new(),
            token_use: "access".into(),
            jwks_url: None,
            allow_insecure_jwks_url: false,
            leeway: RawDuration::Seconds(0),
            ca_file: None,
            client_cert: None,
            client_key: None,
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
    /// `[headers.claims]`: header name to claim name.
    pub claims: std::collections::BTreeMap<String, String>,
    /// Another proxy's header names written as well: `"oauth2-proxy"`.
    pub preset: Option<String>,
}

impl Default for RawHeaders {
    fn default() -> Self {
        RawHeaders {
            user_sub: "X-User-Sub".into(),
            user_groups: "X-User-Groups".into(),
            forward_authorization: true,
            claims: std::collections::BTreeMap::new(),
            preset: None,
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
            format: "auto".into(),
        }
    }
}

/// A list of strings: a TOML array, or (from an environment variable) a JSON array or
/// a comma-separated list, so that `COGNITO_GATE_TRUSTED_PROXIES=10.0.0.0/8,192.168.0.0/16`
/// works as well as `'["10.0.0.0/8"]'`.
fn list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        List(Vec<String>),
        Text(String),
    }
    match Written::deserialize(d)? {
        Written::List(items) => Ok(items),
        Written::Text(text) if text.trim_start().starts_with('[') => serde_json::from_str(&text)
            .map_err(|e| {
                serde::de::Error::custom(format!("{text:?} is not a JSON array of strings: {e}"))
            }),
        Written::Text(text) => Ok(text
            .split(',')
            .map(|item| item.trim().to_owned())
            .filter(|item| !item.is_empty())
            .collect()),
    }
}

/// Every key a configuration may have: the defaults, with each optional table filled
/// in and one `[[pools]]` and one `[[alb]]` entry, as figment sees them.
pub(crate) fn schema() -> figment::value::Dict {
    let full = RawConfig {
        upstream: Some(RawUpstream {
            url: Some(String::new()),
            ..RawUpstream::default()
        }),
        cors: Some(RawCors::default()),
        revocation: Some(RawRevocation {
            redis_url: Some(String::new()),
            password_file: Some(String::new()),
            ..RawRevocation::default()
        }),
        headers: RawHeaders {
            preset: Some(String::new()),
            ..RawHeaders::default()
        },
        tracing: RawTracing {
            otlp_endpoint: Some(String::new()),
            sampler_ratio: Some(1.0),
            service_name: Some(String::new()),
            ca_file: Some(String::new()),
            export_timeout: Some(RawDuration::text("")),
            ..RawTracing::default()
        },
        listen_tls: Some(RawListenerTls::default()),
        admin_listen_tls: Some(RawListenerTls::default()),
        authz: RawAuthz {
            listen: Some(String::new()),
            listen_tls: Some(RawListenerTls::default()),
            grpc_listen: Some(String::new()),
            grpc_listen_tls: Some(RawListenerTls::default()),
            ..RawAuthz::default()
        },
        pools: vec![RawPool {
            user_pool_id: Some(String::new()),
            jwks_url: Some(String::new()),
            ..RawPool::default()
        }],
        issuers: vec![RawIssuer {
            issuer: Some(String::new()),
            discovery_url: Some(String::new()),
            ..RawIssuer::default()
        }],
        alb: vec![RawAlb {
            region: Some(String::new()),
            key_url: Some(String::new()),
            issuer: Some(String::new()),
            ..RawAlb::default()
        }],
        ..RawConfig::default()
    };
    match figment::value::Value::serialize(full) {
        Ok(figment::value::Value::Dict(_, dict)) => dict,
        _ => figment::value::Dict::new(),
    }
}

/// A duration as written: whole seconds (`30`) or a number with a unit (`250ms`,
/// `10s`, `5m`, `1h`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum RawDuration {
    Seconds(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawDuration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration such as \"10s\", \"250ms\" or \"1m30s\", or whole seconds")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawDuration, E> {
                Ok(RawDuration::Seconds(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawDuration, E> {
                u64::try_from(v)
                    .map(RawDuration::Seconds)
                    .map_err(|_| E::custom(format!("{v} is negative; a duration is at least 0")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawDuration, E> {
                Ok(RawDuration::Text(v.to_owned()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl RawDuration {
    pub(crate) fn text(s: &str) -> Self {
        RawDuration::Text(s.to_owned())
    }

    /// Whole seconds, or one or more number-unit pairs: `250ms`, `10s`, `5m`, `1h`,
    /// `1d`, `1m30s`, `1h30m`.
    pub(crate) fn parse(&self) -> Result<Duration, String> {
        let text = match self {
            RawDuration::Seconds(s) => return Ok(Duration::from_secs(*s)),
            RawDuration::Text(t) => t.trim(),
        };
        let bad = || {
            format!("{text:?} is not a duration: write a number and a unit (ms, s, m, h, d), such as \"10s\", \"250ms\" or \"1m30s\"")
        };
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            let n: u64 = text.parse().map_err(|_| format!("{text:?} is too long"))?;
            return Ok(Duration::from_secs(n));
        }
        let mut total: u64 = 0;
        let mut rest = text;
        if rest.is_empty() {
            return Err(bad());
        }
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            if digits == 0 {
                return Err(bad());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let per_unit: u64 = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(bad()),
            };
            rest = &rest[unit_len..];
            total = n
                .checked_mul(per_unit)
                .and_then(|ms| total.checked_add(ms))
                .ok_or_else(|| format!("{text:?} is too long"))?;
        }
        Ok(Duration::from_millis(total))
    }
}
