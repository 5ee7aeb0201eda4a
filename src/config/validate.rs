//! Validation: the raw configuration becomes the typed [`Config`], or the list of
//! every problem, each with its key (`TryFrom<RawConfig>` and a `convert_*` per
//! table).

use super::problems::Problems;
use super::*;
use crate::tls::Alpn;

/// The most worker threads `workers` may ask for.
const MAX_WORKERS: usize = 1024;

/// The smallest header buffer hyper's HTTP/1 server accepts.
const MIN_HEADER_BYTES: usize = 8192;

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Config, ConfigError> {
        let mut p = Problems(Vec::new());
        let listen_socket = unix_listen(&mut p, &raw);
        let listen = match listen_socket {
            // Unused: the proxy listens on the socket.
            Some(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
            None => p.addr("listen", &raw.listen),
        };
        let admin_listen = p.addr("admin_listen", &raw.admin_listen);
        if listen == admin_listen && listen.port() != 0 {
            p.add("admin_listen", "must differ from listen");
        }
        if listen_socket.is_some() && raw.listen_tls.is_some() {
            p.add(
                "listen_tls",
                "applies to a TCP listen address; a Unix socket is served in cleartext",
            );
        }
        let listen_tls = listener_tls(&mut p, "listen_tls", raw.listen_tls, Alpn::Http);
        let admin_listen_tls =
            listener_tls(&mut p, "admin_listen_tls", raw.admin_listen_tls, Alpn::Http);
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
        if raw.workers > MAX_WORKERS {
            p.add(
                "workers",
                format!("must be at most {MAX_WORKERS} (0 is one per CPU)"),
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
        let token_sources = convert_token_sources(&mut p, &raw.token_sources);
        let cookie_methods = raw
            .cookie_methods
            .iter()
            .filter_map(|m| match http::Method::from_bytes(m.as_bytes()) {
                Ok(method) if !m.bytes().any(|b| b.is_ascii_lowercase()) => Some(method),
                _ => {
                    p.add(
                        "cookie_methods",
                        format!("{m:?} is not an upper-case HTTP method"),
                    );
                    None
                }
            })
            .collect();
        let cors_preflight = match raw.cors_preflight.as_str() {
            "policy" => CorsPreflight::Policy,
            "pass" => CorsPreflight::Pass,
            "answer" => CorsPreflight::Answer,
            other => {
                p.add(
                    "cors_preflight",
                    format!("{other:?} must be \"policy\", \"pass\" or \"answer\""),
                );
                CorsPreflight::Policy
            }
        };
        let cors = match (cors_preflight, raw.cors) {
            (CorsPreflight::Answer, Some(cors)) => convert_cors(&mut p, cors),
            (CorsPreflight::Answer, None) => {
                p.add(
                    "cors",
                    "cors_preflight = \"answer\" needs a [cors] table with allowed_origins",
                );
                None
            }
            (_, Some(_)) => {
                p.add("cors", "is read only with cors_preflight = \"answer\"");
                None
            }
            (_, None) => None,
        };
        let reload = ReloadConfig {
            settle: p.duration("reload.settle", &raw.reload.settle, Duration::ZERO),
        };
        // `"unix"` names the peers of a Unix socket `listen`, which have no address.
        let (unix, networks): (Vec<String>, Vec<String>) = raw
            .trusted_proxies
            .iter()
            .cloned()
            .partition(|t| t == "unix");
        let trust_unix_peers = !unix.is_empty();
        let trusted_proxies = p.networks("trusted_proxies", &networks);
        let revocation = raw.revocation.and_then(|r| convert_revocation(&mut p, r));
        let tracing =
            super::otel::convert_tracing(&mut p, raw.tracing, &|name| std::env::var(name).ok());

        let authz = convert_authz(&mut p, raw.authz);
        if let Some(a) = &authz {
            if a.listen.is_some_and(|l| l == listen || l == admin_listen) {
                p.add("authz.listen", "must differ from listen and admin_listen");
            }
            if let Some(grpc) = a.grpc_listen {
                if grpc == listen || grpc == admin_listen || Some(grpc) == a.listen {
                    p.add(
                        "authz.grpc_listen",
                        "must differ from listen, admin_listen and authz.listen",
                    );
                }
            }
        }
        let upstream = convert_upstream(&mut p, raw.upstream, authz.is_some());
        let albs = convert_albs(&mut p, raw.alb);
        let (issuers, positions) = convert_issuers(&mut p, raw.issuers);
        let pools = convert_pools(&mut p, raw.pools, !albs.is_empty() || !issuers.is_empty());
        for (i, issuer) in positions.into_iter().zip(&issuers) {
            if pools
                .iter()
                .any(|pool| [pool.issuer(), pool.multi_region_issuer()].contains(&issuer.issuer))
            {
                p.add(
                    &format!("issuers[{i}].issuer"),
                    format!(
                        "{:?} is a configured user pool's issuer; its tokens are verified by the [[pools]] entry",
                        issuer.issuer
                    ),
                );
            }
        }

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
                "auto" => LogFormat::Auto,
                "pretty" => LogFormat::Pretty,
                "json" => LogFormat::Json,
                other => {
                    p.add(
                        "log.format",
                        format!("{other:?} must be \"auto\", \"pretty\" or \"json\""),
                    );
                    LogFormat::Auto
                }
            },
            level: raw.log.level,
        };
        // A bare word that is not a level would parse as a target name and silence
        // everything else ("verbose" shows only the logs of a module named verbose).
        let is_filter = log.level.contains([',', '=']);
        let level_ok = match is_filter {
            true => tracing_subscriber::EnvFilter::try_new(&log.level).is_ok(),
            false => LOG_LEVELS.contains(&log.level.trim().to_ascii_lowercase().as_str()),
        };
        if !level_ok {
            p.add(
                "log.level",
                format!(
                    "{:?} is not a level ({}) or a filter such as \"info,cognito_gate=debug\"",
                    log.level,
                    LOG_LEVELS.join(", ")
                ),
            );
        }

        match p.0.is_empty() {
            true => Ok(Config {
                listen,
                listen_tls,
                listen_socket,
                trust_unix_peers,
                admin_listen,
                admin_listen_tls,
                policy_file: PathBuf::from(raw.policy_file),
                max_header_bytes: raw.max_header_bytes,
                header_read_timeout,
                max_connections: (raw.max_connections > 0).then_some(raw.max_connections),
                workers: (raw.workers > 0).then_some(raw.workers),
                http2_keep_alive_interval,
                http2_keep_alive_timeout,
                allowed_upgrades,
                cors_preflight,
                cors,
                token_sources,
                cookie_methods,
                forward_token: raw.forward_token,
                trusted_proxies,
                shutdown_timeout,
                max_token_bytes: raw.max_token_bytes,
                token_cache_bytes: raw.token_cache.max_bytes,
                upstream,
                authz,
                pools,
                issuers,
                albs,
                jwks,
                headers,
                log,
                reload,
                revocation,
                tracing,
                source: None,
            }),
            false => Err(ConfigError::config(p.0)),
        }
    }
}

/// `[revocation]`: a Redis URL that parses, a password file that can be read, and
/// durations that make sense together.
fn convert_revocation(p: &mut Problems, raw: RawRevocation) -> Option<RevocationConfig> {
    let before = p.0.len();
    let redis_url = match raw.redis_url.as_deref().map(RedisUrl::parse) {
        None => {
            p.add("revocation.redis_url", "is required in [revocation]");
            None
        }
        Some(Err(e)) => {
            p.add("revocation.redis_url", e);
            None
        }
        Some(Ok(url)) => Some(url),
    };
    let password_file = raw.password_file.map(PathBuf::from);
    if let Some(file) = &password_file {
        if let Err(e) = std::fs::read_to_string(file) {
            p.add(
                "revocation.password_file",
                format!("{}: {e}", file.display()),
            );
        }
    }
    let on_unavailable = match raw.on_unavailable.as_str() {
        "serve_stale" => OnUnavailable::ServeStale,
        "refuse" => OnUnavailable::Refuse,
        other => {
            p.add(
                "revocation.on_unavailable",
                format!("{other:?} is not \"serve_stale\" or \"refuse\""),
            );
            OnUnavailable::Refuse
        }
    };
    let max_token_lifetime = p.duration(
        "revocation.max_token_lifetime",
        &raw.max_token_lifetime,
        Duration::from_secs(60),
    );
    let max_staleness = p.duration(
        "revocation.max_staleness",
        &raw.max_staleness,
        Duration::ZERO,
    );
    let timeout = p.duration(
        "revocation.timeout",
        &raw.timeout,
        Duration::from_millis(100),
    );
    let redis_url = redis_url?;
    (p.0.len() == before).then_some(RevocationConfig {
        redis_url,
        password_file,
        key_prefix: raw.key_prefix,
        max_token_lifetime,
        on_unavailable,
        max_staleness,
        timeout,
    })
}

/// `[cors]`: origins as `scheme://host[:port]` (or `*`, never with credentials),
/// upper-case methods, header names as tokens.
fn convert_cors(p: &mut Problems, raw: RawCors) -> Option<CorsConfig> {
    let before = p.0.len();
    if raw.allowed_origins.is_empty() {
        p.add("cors.allowed_origins", "must name at least one origin");
    }
    let mut origins = Vec::with_capacity(raw.allowed_origins.len());
    for origin in &raw.allowed_origins {
        if origin == "*" {
            if raw.allow_credentials {
                p.add(
                    "cors.allowed_origins",
                    "\"*\" cannot be used with allow_credentials = true (Fetch standard)",
                );
            }
            origins.push(origin.clone());
            continue;
        }
        let parsed = origin.parse::<Uri>().ok().filter(|u| {
            matches!(u.scheme_str(), Some("http" | "https"))
                && u.authority().is_some_and(|a| !a.as_str().contains('@'))
                // `http::Uri` reads "https://a" with the path "/": look at the text.
                && origin
                    .split_once("://")
                    .is_some_and(|(_, rest)| !rest.contains(['/', '?', '#']))
        });
        match parsed {
            Some(_) => origins.push(origin.to_ascii_lowercase()),
            None => p.add(
                "cors.allowed_origins",
                format!("{origin:?} is not an origin (scheme://host[:port], no path)"),
            ),
        }
    }
    let mut methods = Vec::with_capacity(raw.allowed_methods.len());
    for m in &raw.allowed_methods {
        match http::Method::from_bytes(m.as_bytes()) {
            Ok(method) if !m.bytes().any(|b| b.is_ascii_lowercase()) => methods.push(method),
            _ => p.add(
                "cors.allowed_methods",
                format!("{m:?} is not an upper-case HTTP method"),
            ),
        }
    }
    let mut names = |key: &str, raw: &[String]| -> Vec<String> {
        raw.iter()
            .filter_map(|h| match HeaderName::from_bytes(h.as_bytes()) {
                Ok(name) => Some(name.as_str().to_owned()),
                Err(_) => {
                    p.add(key, format!("{h:?} is not a header name"));
                    None
                }
            })
            .collect()
    };
    let allowed_headers = names("cors.allowed_headers", &raw.allowed_headers);
    let expose_headers = names("cors.expose_headers", &raw.expose_headers);
    let max_age = p.duration("cors.max_age", &raw.max_age, Duration::ZERO);
    (p.0.len() == before).then_some(CorsConfig {
        allowed_origins: origins,
        allowed_methods: methods,
        allowed_headers,
        expose_headers,
        allow_credentials: raw.allow_credentials,
        max_age,
    })
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

const UPSTREAM_REQUIRED: &str =
    "is required, unless authz.listen or authz.grpc_listen is set (decision-only mode)";

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
    let socket = text.strip_prefix("unix:").map(PathBuf::from);
    if let Some(path) = &socket {
        if !path.is_absolute() {
            p.add(
                "upstream.url",
                format!("{text:?}: a Unix socket is named by its absolute path, as \"unix:/run/app.sock\""),
            );
            return None;
        }
    }
    let url = match socket {
        Some(_) => Uri::from_static("http://localhost"),
        None => p.url("upstream.url", &text)?,
    };
    let has_path = !matches!(url.path(), "" | "/") || url.query().is_some();
    let has_userinfo = url.authority().is_some_and(|a| a.as_str().contains('@'));
    if has_path || has_userinfo {
        p.add(
            "upstream.url",
            "must be scheme://host:port only: requests keep their own path, so the policy judges what the app receives",
        );
        return None;
    }
    let protocol = match raw.protocol.as_str() {
        "http1" => UpstreamProtocol::Http1,
        "h2c" => UpstreamProtocol::H2c,
        "h2" => UpstreamProtocol::H2,
        "auto" => UpstreamProtocol::Auto,
        other => {
            p.add(
                "upstream.protocol",
                format!("{other:?} must be \"http1\", \"h2\", \"h2c\" or \"auto\""),
            );
            UpstreamProtocol::Http1
        }
    };
    let tls = url.scheme_str() == Some("https");
    if socket.is_some() && protocol == UpstreamProtocol::H2 {
        p.add(
            "upstream.protocol",
            "h2 is HTTP/2 over TLS, and a Unix socket is spoken to in cleartext: use \"h2c\"",
        );
    }
    match protocol {
        UpstreamProtocol::H2c | UpstreamProtocol::Auto if tls => p.add(
            "upstream.protocol",
            "h2c and auto are HTTP/2 over cleartext: the upstream.url must be http:// (\"h2\" is HTTP/2 over TLS)",
        ),
        UpstreamProtocol::H2 if !tls && socket.is_none() => p.add(
            "upstream.protocol",
            "h2 is HTTP/2 over TLS: the upstream.url must be https:// (\"h2c\" is HTTP/2 over cleartext)",
        ),
        _ => {}
    }
    let files = tls_client_files(p, "upstream", raw.ca_file, raw.client_cert, raw.client_key);
    let server_name = raw.server_name.filter(|name| {
        let valid = rustls::pki_types::ServerName::try_from(name.as_str()).is_ok();
        if !valid {
            p.add(
                "upstream.server_name",
                format!("{name:?} is not a DNS name or an IP address"),
            );
        }
        valid
    });
    if !tls && (files != TlsClientFiles::default() || server_name.is_some()) {
        p.add(
            "upstream.url",
            "ca_file, client_cert, client_key and server_name apply to TLS: the upstream.url must be https://",
        );
    }
    Some(UpstreamConfig {
        url,
        socket,
        protocol,
        tls: files,
        server_name,
        connect_timeout,
        request_timeout,
        idle_timeout,
    })
}

/// `listen = "unix:/path"` with its mode and owner; `None` for a TCP address.
fn unix_listen(p: &mut Problems, raw: &RawConfig) -> Option<UnixSocketListen> {
    let owner = raw.listen_socket_owner.as_deref();
    let Some(path) = raw.listen.strip_prefix("unix:") else {
        if owner.is_some() {
            p.add(
                "listen_socket_owner",
                "applies to listen = \"unix:/path\" only",
            );
        }
        return None;
    };
    let path = PathBuf::from(path);
    if !path.is_absolute() {
        p.add(
            "listen",
            "a Unix socket's path must be absolute: \"unix:/run/cognito-gate/gate.sock\"",
        );
        return None;
    }
    let mode = raw.listen_socket_mode.trim_start_matches("0o");
    let mode = match u32::from_str_radix(mode, 8) {
        Ok(m) if m <= 0o777 && !mode.is_empty() => m,
        _ => {
            p.add(
                "listen_socket_mode",
                format!(
                    "{:?} is not octal permission bits like \"0660\"",
                    raw.listen_socket_mode
                ),
            );
            return None;
        }
    };
    let id = |text: &str| -> Result<Option<u32>, ()> {
        match text {
            "" => Ok(None),
            digits => digits.parse().map(Some).map_err(drop),
        }
    };
    let (uid, gid) = match owner {
        None => (None, None),
        Some(owner) => {
            let (user, group) = owner.split_once(':').unwrap_or((owner, ""));
            match (id(user), id(group)) {
                (Ok(uid), Ok(gid)) if uid.is_some() || gid.is_some() => (uid, gid),
                _ => {
                    p.add(
                        "listen_socket_owner",
                        format!("{owner:?} is not \"uid\", \"uid:gid\" or \":gid\" (numbers)"),
                    );
                    return None;
                }
            }
        }
    };
    Some(UnixSocketListen {
        path,
        mode,
        uid,
        gid,
    })
}

/// A listener's `[{table}]`: both files are read, the key must be the certificate's
/// and the client CA must parse, so that `check` finds what the start would.
fn listener_tls(
    p: &mut Problems,
    table: &str,
    raw: Option<RawListenerTls>,
    alpn: Alpn,
) -> Option<ListenerTlsFiles> {
    let raw = raw?;
    let mut required = |key: &str, value: Option<String>| match value {
        Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ => {
            p.add(
                &format!("{table}.{key}"),
                "is required for TLS on the listener",
            );
            None
        }
    };
    let cert_file = required("cert_file", raw.cert_file);
    let key_file = required("key_file", raw.key_file);
    let files = ListenerTlsFiles {
        cert_file: cert_file?,
        key_file: key_file?,
        client_ca: raw.client_ca.map(PathBuf::from),
    };
    match crate::tls::load(&files, alpn) {
        Ok(_) => Some(files),
        Err(e) => {
            p.add(table, e);
            None
        }
    }
}

/// The `{table}.ca_file`, `client_cert` and `client_key` of an outbound TLS client,
/// each file read and parsed now, so that `check` names the one that is wrong.
fn tls_client_files(
    p: &mut Problems,
    table: &str,
    ca_file: Option<String>,
    client_cert: Option<String>,
    client_key: Option<String>,
) -> TlsClientFiles {
    let mut read = |key: &str, file: Option<String>, parse: fn(&Path) -> Result<(), String>| {
        let file = PathBuf::from(file?);
        match parse(&file) {
            Ok(()) => Some(file),
            Err(e) => {
                p.add(&format!("{table}.{key}"), e);
                None
            }
        }
    };
    let ca_file = read("ca_file", ca_file, |f| {
        crate::pem::certificates(f).map(drop)
    });
    let cert = read("client_cert", client_cert.clone(), |f| {
        crate::pem::certificates(f).map(drop)
    });
    let key = read("client_key", client_key.clone(), |f| {
        crate::pem::private_key(f).map(drop)
    });
    let client_cert = match (cert, key) {
        (Some(cert), Some(key)) => Some(ClientIdentity { cert, key }),
        _ => {
            if client_cert.is_some() != client_key.is_some() {
                p.add(
                    &format!("{table}.client_cert"),
                    "client_cert and client_key go together: set both or neither",
                );
            }
            None
        }
    };
    TlsClientFiles {
        ca_file,
        client_cert,
    }
}

fn convert_authz(p: &mut Problems, raw: RawAuthz) -> Option<AuthzConfig> {
    for (tls, listener, key) in [
        (
            raw.listen_tls.is_some(),
            raw.listen.is_some(),
            "authz.listen_tls",
        ),
        (
            raw.grpc_listen_tls.is_some(),
            raw.grpc_listen.is_some(),
            "authz.grpc_listen_tls",
        ),
    ] {
        if tls && !listener {
            p.add(
                key,
                format!(
                    "is TLS on {}, which is not set",
                    key.trim_end_matches("_tls")
                ),
            );
        }
    }
    if raw.listen.is_none() && raw.grpc_listen.is_none() {
        return None;
    }
    let listen_tls = listener_tls(p, "authz.listen_tls", raw.listen_tls, Alpn::Http);
    let grpc_listen_tls = listener_tls(p, "authz.grpc_listen_tls", raw.grpc_listen_tls, Alpn::H2);
    let listen = raw.listen.as_deref().map(|l| p.addr("authz.listen", l));
    let grpc_listen = raw
        .grpc_listen
        .as_deref()
        .map(|l| p.addr("authz.grpc_listen", l));
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
    let trusted_peers = p.networks("authz.trusted_peers", &raw.trusted_peers);
    let cache_max_age = raw.cache_max_age.as_ref().and_then(|raw| {
        let age = p.duration("authz.cache_max_age", raw, Duration::ZERO);
        if age > MAX_DECISION_CACHE {
            p.add("authz.cache_max_age", "must be at most 60s");
        } else if age.subsec_nanos() != 0 {
            p.add(
                "authz.cache_max_age",
                "must be whole seconds (max-age has no fractions)",
            );
        }
        (!age.is_zero()).then_some(age)
    });
    let age = p.duration(
        "authz.grpc_max_connection_age",
        &raw.grpc_max_connection_age,
        Duration::ZERO,
    );
    let grace = p.duration(
        "authz.grpc_max_connection_age_grace",
        &raw.grpc_max_connection_age_grace,
        Duration::ZERO,
    );
    Some(AuthzConfig {
        listen,
        listen_tls,
        grpc_listen,
        grpc_listen_tls,
        path: raw.path,
        envoy_prefix: raw.envoy_prefix,
        trusted_peers,
        cache_max_age,
        grpc_connection_age: (!age.is_zero()).then_some(ConnectionAge { age, grace }),
    })
}

fn convert_pools(p: &mut Problems, raw: Vec<RawPool>, albs: bool) -> Vec<PoolConfig> {
    if raw.is_empty() && !albs {
        p.add(
            "pools",
            "at least one [[pools]] entry (or an [[issuers]] or [[alb]] entry) is required",
        );
    }
    let mut pools: Vec<PoolConfig> = Vec::with_capacity(raw.len());
    for (i, rp) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("pools[{i}].{k}");
        let leeway = p.leeway(&key("leeway"), &rp.leeway);
        let tls = tls_client_files(
            p,
            &format!("pools[{i}]"),
            rp.ca_file.clone(),
            rp.client_cert.clone(),
            rp.client_key.clone(),
        );
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
        if leaves_the_host_in_clear(&jwks_url, rp.allow_insecure_jwks_url) {
            p.add(
                &key("jwks_url"),
                format!(
                    "pool {id:?}: {jwks_text:?} is plain HTTP to a host other than loopback, \
                     so anyone on the path could replace its keys; use https, or set \
                     pools[{i}].allow_insecure_jwks_url = true"
                ),
            );
        }
        pools.push(PoolConfig {
            region: region.to_owned(),
            user_pool_id: id,
            client_ids: rp.client_ids,
            token_use,
            jwks_url,
            leeway,
            tls,
        });
    }
    pools
}

/// `token_sources`: `"header"` and `"cookie:NAME"`, each once, at least one.
fn convert_token_sources(p: &mut Problems, raw: &[String]) -> Vec<TokenSource> {
    if raw.is_empty() {
        p.add(
            "token_sources",
            "must name at least one source, e.g. [\"header\"]",
        );
    }
    let mut out: Vec<TokenSource> = Vec::with_capacity(raw.len());
    for text in raw {
        let source = match text.split_once(':') {
            None if text == "header" => TokenSource::Header,
            // RFC 6265 §4.1.1: a cookie name is an HTTP token.
            Some(("cookie", name))
                if !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) =>
            {
                TokenSource::Cookie(name.into())
            }
            _ => {
                p.add(
                    "token_sources",
                    format!("{text:?} must be \"header\" or \"cookie:NAME\" with a cookie name"),
                );
                continue;
            }
        };
        if out.contains(&source) {
            p.add("token_sources", format!("{text:?} is listed twice"));
        }
        out.push(source);
    }
    out
}

/// The valid `[[issuers]]`, and the position of each among the tables written.
fn convert_issuers(p: &mut Problems, raw: Vec<RawIssuer>) -> (Vec<IssuerConfig>, Vec<usize>) {
    use jsonwebtoken::Algorithm;
    let mut issuers: Vec<IssuerConfig> = Vec::with_capacity(raw.len());
    let mut positions = Vec::with_capacity(raw.len());
    for (i, ri) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("issuers[{i}].{k}");
        let leeway = p.leeway(&key("leeway"), &ri.leeway);
        let tls = tls_client_files(
            p,
            &format!("issuers[{i}]"),
            ri.ca_file.clone(),
            ri.client_cert.clone(),
            ri.client_key.clone(),
        );
        let Some(issuer) = ri.issuer else {
            p.add(
                &key("issuer"),
                "is required, e.g. \"https://login.example.com/realms/main\"",
            );
            continue;
        };
        let Some(issuer_url) = p.url(&key("issuer"), &issuer) else {
            continue;
        };
        if issuers.iter().any(|other| other.issuer == issuer) {
            p.add(&key("issuer"), format!("{issuer:?} is configured twice"));
        }
        let discovery_text = ri.discovery_url.unwrap_or_else(|| {
            format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            )
        });
        let Some(discovery_url) = p.url(&key("discovery_url"), &discovery_text) else {
            continue;
        };
        for (url, name) in [(&issuer_url, "issuer"), (&discovery_url, "discovery_url")] {
            if leaves_the_host_in_clear(url, ri.allow_insecure_urls) {
                p.add(
                    &key(name),
                    format!(
                        "{url} is plain HTTP to a host other than loopback, so anyone on the \
                         path could replace the keys; use https, or set \
                         issuers[{i}].allow_insecure_urls = true"
                    ),
                );
            }
        }
        if ri.audiences.is_empty() || ri.audiences.iter().any(|a| a.is_empty()) {
            p.add(
                &key("audiences"),
                "at least one audience is required: the token's aud must name one",
            );
        }
        if ri.algorithms.is_empty() {
            p.add(&key("algorithms"), "at least one of RS256, ES256, PS256");
        }
        let mut algorithms = Vec::with_capacity(ri.algorithms.len());
        for name in &ri.algorithms {
            match name.as_str() {
                "RS256" => algorithms.push(Algorithm::RS256),
                "ES256" => algorithms.push(Algorithm::ES256),
                "PS256" => algorithms.push(Algorithm::PS256),
                other => p.add(
                    &key("algorithms"),
                    format!("{other:?} is not accepted: only RS256, ES256 and PS256 (never none or HMAC)"),
                ),
            }
        }
        let groups_claim: Vec<String> = ri.groups_claim.split('.').map(str::to_owned).collect();
        if groups_claim.iter().any(String::is_empty) {
            p.add(
                &key("groups_claim"),
                format!(
                    "{:?} must be a claim name or a dotted path such as realm_access.roles",
                    ri.groups_claim
                ),
            );
        }
        for (name, value) in [
            ("scopes_claim", &ri.scopes_claim),
            ("subject_claim", &ri.subject_claim),
        ] {
            if value.is_empty() {
                p.add(&key(name), "must name a claim");
            }
        }
        positions.push(i);
        issuers.push(IssuerConfig {
            issuer,
            discovery_url,
            audiences: ri.audiences,
            algorithms,
            groups_claim,
            scopes_claim: ri.scopes_claim,
            subject_claim: ri.subject_claim,
            allow_insecure_urls: ri.allow_insecure_urls,
            leeway,
            tls,
        });
    }
    (issuers, positions)
}

/// The public keys of ALB-signed headers, by region.
const ALB_KEY_URL: &str = "https://public-keys.auth.elb.{region}.amazonaws.com/{kid}";

fn convert_albs(p: &mut Problems, raw: Vec<RawAlb>) -> Vec<AlbConfig> {
    let mut albs = Vec::with_capacity(raw.len());
    for (i, ra) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("alb[{i}].{k}");
        let leeway = p.leeway(&key("leeway"), &ra.leeway);
        let tls = tls_client_files(
            p,
            &format!("alb[{i}]"),
            ra.ca_file.clone(),
            ra.client_cert.clone(),
            ra.client_key.clone(),
        );
        let Some(region) = ra.region else {
            p.add(&key("region"), "is required, e.g. \"eu-west-1\"");
            continue;
        };
        let region_ok = region.contains('-')
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            p.add(
                &key("region"),
                format!("{region:?} is not a region like \"eu-west-1\""),
            );
        }
        if ra.signers.is_empty() {
            p.add(
                &key("signers"),
                "at least one load balancer ARN is required: the header's signer must equal one",
            );
        }
        for signer in &ra.signers {
            let arn_ok = signer.starts_with("arn:")
                && signer.contains(":elasticloadbalancing:")
                && signer.contains(":loadbalancer/app/");
            if !arn_ok {
                p.add(
                    &key("signers"),
                    format!(
                        "{signer:?} is not an Application Load Balancer ARN like \
                         \"arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/my-alb/50dc6c495c0c9188\""
                    ),
                );
            }
        }
        if ra.client_ids.iter().any(|c| c.is_empty()) {
            p.add(&key("client_ids"), "client ids must not be empty");
        }
        if ra.issuer.as_deref() == Some("") {
            p.add(
                &key("issuer"),
                "must not be empty (leave it out to accept any)",
            );
        }
        let key_url = ra
            .key_url
            .unwrap_or_else(|| ALB_KEY_URL.to_owned())
            .replace("{region}", &region);
        if !key_url.contains("{kid}") {
            p.add(
                &key("key_url"),
                format!("{key_url:?} must contain {{kid}}, where the token's key id goes"),
            );
            continue;
        }
        let Some(url) = p.url(&key("key_url"), &key_url.replace("{kid}", "kid")) else {
            continue;
        };
        if leaves_the_host_in_clear(&url, ra.allow_insecure_key_url) {
            p.add(
                &key("key_url"),
                format!(
                    "{key_url:?} is plain HTTP to a host other than loopback, so anyone on \
                     the path could replace the keys; use https, or set \
                     alb[{i}].allow_insecure_key_url = true"
                ),
            );
        }
        albs.push(AlbConfig {
            region,
            signers: ra.signers,
            key_url,
            client_ids: ra.client_ids,
            issuer: ra.issuer,
            leeway,
            tls,
        });
    }
    albs
}

/// Whether keys fetched from `url` would travel in clear off this machine, and that was
/// not explicitly allowed.
pub fn leaves_the_host_in_clear(url: &Uri, allowed: bool) -> bool {
    url.scheme_str() == Some("http") && !allowed && !url.host().is_some_and(is_loopback_host)
}

/// Whether `host` (as in a URL: a name, an IPv4 address, or a bracketed IPv6 one) is
/// this machine's loopback, where plain HTTP does not leave the host.
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The region part of a user pool id (`us-east-1` of `us-east-1_AbCdEf123`).
pub(super) fn region_of(pool_id: &str) -> Option<&str> {
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
    fn name(p: &mut Problems, key: &str, value: &str) -> HeaderName {
        match HeaderName::from_bytes(value.as_bytes()) {
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
        }
    }
    let user_sub = name(p, "headers.user_sub", &raw.user_sub);
    let user_groups = name(p, "headers.user_groups", &raw.user_groups);
    // oauth2-proxy's names (its `--set-xauthrequest` and `--pass-user-headers`), for an
    // app that reads them: `sub` as the user, the groups, and the `email` claim.
    let (also_sub, also_groups, preset_claims): (Vec<&str>, Vec<&str>, Vec<(&str, &str)>) =
        match raw.preset.as_deref() {
            None => (Vec::new(), Vec::new(), Vec::new()),
            Some("oauth2-proxy") => (
                vec!["x-auth-request-user", "x-forwarded-user"],
                vec!["x-auth-request-groups", "x-forwarded-groups"],
                vec![("x-auth-request-email", "email")],
            ),
            Some(other) => {
                p.add(
                    "headers.preset",
                    format!("{other:?} is not a preset; the one there is is \"oauth2-proxy\""),
                );
                (Vec::new(), Vec::new(), Vec::new())
            }
        };
    let also_sub: Vec<HeaderName> = also_sub.into_iter().map(HeaderName::from_static).collect();
    let also_groups: Vec<HeaderName> = also_groups
        .into_iter()
        .map(HeaderName::from_static)
        .collect();
    let mut claims: Vec<(HeaderName, Box<str>)> = preset_claims
        .into_iter()
        .map(|(h, c)| (HeaderName::from_static(h), c.into()))
        .collect();
    let preset_names: Vec<HeaderName> = also_sub
        .iter()
        .chain(&also_groups)
        .chain(claims.iter().map(|(h, _)| h))
        .cloned()
        .collect();
    for (header, claim) in &raw.claims {
        let key = format!("headers.claims.{header:?}");
        let h = name(p, &key, header);
        if claim.is_empty() {
            p.add(&key, "must name a claim");
        }
        let taken = [&user_sub, &user_groups]
            .into_iter()
            .chain(also_sub.iter().chain(&also_groups))
            .chain(claims.iter().map(|(other, _)| other))
            .find(|other| crate::wire::same_folded_name(h.as_str(), other.as_str()));
        if let Some(other) = taken {
            p.add(
                &key,
                format!("reads as {other}, which another identity header already is"),
            );
        }
        claims.push((h, claim.as_str().into()));
    }
    if crate::wire::same_folded_name(user_sub.as_str(), user_groups.as_str()) {
        p.add("headers.user_groups", "must differ from headers.user_sub");
    }
    for (key, own) in [
        ("headers.user_sub", &user_sub),
        ("headers.user_groups", &user_groups),
    ] {
        if let Some(other) = preset_names
            .iter()
            .find(|other| crate::wire::same_folded_name(own.as_str(), other.as_str()))
        {
            p.add(
                key,
                format!("reads as {other}, which headers.preset writes"),
            );
        }
    }
    HeadersConfig {
        user_sub,
        user_groups,
        forward_authorization: raw.forward_authorization,
        claims,
        also_sub,
        also_groups,
    }
}

fn is_reserved_header(h: &HeaderName) -> bool {
    use http::header::*;
    crate::wire::is_hop_by_hop(h)
        || [
            HOST,
            AUTHORIZATION,
            CONTENT_LENGTH,
            CONTENT_TYPE,
            COOKIE,
            FORWARDED,
        ]
        .contains(h)
        || ["x-real-ip", "x-request-id", "traceparent", "tracestate"].contains(&h.as_str())
        || crate::wire::folded_starts_with(h.as_str(), "x-forwarded-")
}
