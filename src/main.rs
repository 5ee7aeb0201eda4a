//! The `cognito-gate` command: `run` (the default), `check`, `explain`, `demo`, `health`,
//! `completions` and `dev-issuer`.

#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use tokio::net::TcpListener;

#[cfg(feature = "dev")]
use cognito_gate::internals::demo::{self, DemoOptions};
use cognito_gate::internals::{
    describe_tls, discover_issuers, explain, explain_token, init_logging, load_policy, probe,
    raise_fd_limit, rule_text, write_revocation, Alpn, Caller, ListenerTlsFiles, RevocationEntry,
    RevocationKind, UnixSocketListen,
};
#[cfg(feature = "dev")]
use cognito_gate::internals::{LogConfig, LogFormat};
use cognito_gate::{Clock, Config, Listeners, Policy};

#[derive(Parser)]
#[command(
    name = "cognito-gate",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("GATE_BUILD_COMMIT"), ")"),
    about = "Verifies Amazon Cognito tokens and enforces a path policy in front of an HTTP app"
)]
struct Cli {
    /// The configuration file (TOML). Environment variables COGNITO_GATE_* override it.
    #[arg(
        long,
        short,
        global = true,
        env = "COGNITO_GATE_CONFIG",
        default_value = "config/cognito-gate.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gate (the default).
    Run,
    /// Validate the configuration and the policy (lints and [[test]] tables), print a summary, exit non-zero on problems.
    Check,
    /// Show how the policy decides one request: the canonical path, each rule tried, the status.
    Explain {
        /// The request's method, e.g. GET.
        method: String,
        /// The request's path as the client sends it, e.g. /admin/reports.
        path: String,
        /// The caller's groups, comma-separated.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// The caller's scopes, comma-separated.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// The host the request is for (its Host header), for rules with a `host`.
        #[arg(long)]
        host: Option<String>,
        /// A claim of the caller's token, NAME=VALUE; repeatable. VALUE is JSON when it
        /// parses as JSON (true, 42, "007", ["a","b"]), a string otherwise.
        #[arg(long = "claim", value_name = "NAME=VALUE", value_parser = parse_claim)]
        claims: Vec<(String, serde_json::Value)>,
        /// The caller sends no token.
        #[arg(long, conflicts_with_all = ["groups", "scopes", "claims", "token"])]
        anonymous: bool,
        /// A real token: verified step by step against the configured pools.
        #[arg(long, conflicts_with_all = ["groups", "scopes", "claims"])]
        token: Option<String>,
    },
    /// Print a shell completion script: cognito-gate completions bash > /etc/bash_completion.d/cognito-gate
    Completions { shell: clap_complete::Shell },
    /// Run a self-contained demo on loopback: local issuer, echo app and the gate.
    #[cfg(feature = "dev")]
    Demo {
        /// Where the gate listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where /healthz and /readyz are served.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin_listen: SocketAddr,
        /// The policy file (default: config/policy.toml, or the embedded copy of it).
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Revoke a token family or sign a user out, in the revocation list's Redis ([revocation]): every gate following it refuses those tokens.
    Revoke {
        /// The origin_jti of the tokens to refuse: a Cognito refresh token and every token issued from it (jti for other issuers).
        #[arg(long, conflicts_with = "sub", required_unless_present = "sub")]
        origin_jti: Option<String>,
        /// The user whose tokens issued before --at are refused (GlobalSignOut).
        #[arg(long)]
        sub: Option<String>,
        /// When the user signed out: seconds since the epoch, or RFC 3339 (2026-12-06T10:00:00Z). Default: now.
        #[arg(long, requires = "sub", value_parser = parse_time)]
        at: Option<f64>,
    },
    /// Exit 0 if the gate's admin /readyz answers 200, 1 otherwise (for container healthchecks).
    Health {
        /// What to ask (default: /readyz on the configured admin_listen, via loopback).
        #[arg(long)]
        url: Option<String>,
    },
    /// DEVELOPMENT ONLY: serve a local JWKS and mint tokens that a gate trusting it accepts.
    #[cfg(feature = "dev")]
    DevIssuer {
        #[arg(long, default_value = "127.0.0.1:9400")]
        listen: SocketAddr,
        /// The user pool id the tokens claim (their iss is that pool's real Cognito issuer).
        #[arg(long, default_value = "us-east-1_DevPool1")]
        pool_id: String,
        /// The client_id the tokens carry.
        #[arg(long, default_value = "dev-client")]
        client_id: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread for accepting, probes, key refreshes and reloads; client connections
    // are served by the gate's own worker threads (`workers`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cognito-gate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => runtime.block_on(run(cli.config)),
        Command::Check => runtime.block_on(check(&cli.config)),
        Command::Explain {
            method,
            path,
            groups,
            scopes,
            host,
            claims,
            anonymous,
            token,
        } => runtime.block_on(explain_command(
            &cli.config,
            &method,
            host.as_deref(),
            &path,
            match (anonymous, token) {
                (true, _) => Request::Anonymous,
                (false, Some(token)) => Request::Token(token),
                (false, None) => Request::Claims(groups, scopes, claims),
            },
        )),
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics on a failed write (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "cognito-gate", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script)
                .map_err(|e| format!("cannot write the completion script: {e}"))
        }
        #[cfg(feature = "dev")]
        Command::Demo {
            listen,
            admin_listen,
            policy,
        } => {
            let _log = init_logging(&LogConfig {
                level: "info".into(),
                format: LogFormat::Pretty,
            });
            let options = DemoOptions {
                listen,
                admin_listen,
                policy,
            };
            runtime
                .block_on(async { demo::run(options, shutdown_signal()).await })
                .map_err(|e| e.to_string())
        }
        Command::Health { url } => runtime.block_on(health(&cli.config, url)),
        Command::Revoke {
            origin_jti,
            sub,
            at,
        } => runtime.block_on(revoke(&cli.config, origin_jti, sub, at)),
        #[cfg(feature = "dev")]
        Command::DevIssuer {
            listen,
            pool_id,
            client_id,
        } => runtime.block_on(dev_issuer(listen, &pool_id, &client_id)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cognito-gate: {message}");
            ExitCode::FAILURE
        }
    }
}

fn load(config_file: &Path) -> Result<(Config, Policy), String> {
    let config =
        Config::load(config_file).map_err(|e| format!("{}: {e}", config_file.display()))?;
    let policy = load_policy(&config.policy_file)
        .map_err(|e| format!("{}: {e}", config.policy_file.display()))?;
    Ok((config, policy))
}

/// Who `explain` asks for, as given on the command line.
enum Request {
    Anonymous,
    Claims(Vec<String>, Vec<String>, Vec<(String, serde_json::Value)>),
    Token(String),
}

/// `--claim NAME=VALUE`.
/// Seconds since the epoch, or an RFC 3339 date and time in UTC or with an offset.
fn parse_time(text: &str) -> Result<f64, String> {
    let bad = || {
        format!("{text:?}: expected seconds since the epoch or RFC 3339, e.g. 2026-12-06T10:00:00Z")
    };
    if let Ok(seconds) = text.parse::<f64>() {
        return Some(seconds)
            .filter(|s| s.is_finite() && *s >= 0.0)
            .ok_or_else(bad);
    }
    let (date, time) = text.split_once(['T', 't', ' ']).ok_or_else(bad)?;
    let mut ymd = date.splitn(3, '-').map(|p| p.parse::<i64>());
    let (Some(Ok(y)), Some(Ok(m)), Some(Ok(d))) = (ymd.next(), ymd.next(), ymd.next()) else {
        return Err(bad());
    };
    let (clock, offset) = match time.strip_suffix(['Z', 'z']) {
        Some(clock) => (clock, 0),
        None => {
            let at = time.rfind(['+', '-']).ok_or_else(bad)?;
            let (clock, zone) = time.split_at(at);
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (h, mi) = zone[1..].split_once(':').ok_or_else(bad)?;
            let minutes =
                h.parse::<i64>().map_err(|_| bad())? * 60 + mi.parse::<i64>().map_err(|_| bad())?;
            (clock, sign * minutes * 60)
        }
    };
    let mut hms = clock.splitn(3, ':');
    let (Some(h), Some(mi), Some(sec)) = (hms.next(), hms.next(), hms.next()) else {
        return Err(bad());
    };
    let (h, mi) = (
        h.parse::<i64>().map_err(|_| bad())?,
        mi.parse::<i64>().map_err(|_| bad())?,
    );
    let sec = sec.parse::<f64>().map_err(|_| bad())?;
    if !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
        || h > 23
        || mi > 59
        || !(0.0..61.0).contains(&sec)
    {
        return Err(bad());
    }
    let days = cognito_gate::internals::days_from_civil(y, m, d);
    let seconds = (days * 86_400 + h * 3600 + mi * 60 - offset) as f64 + sec;
    Some(seconds).filter(|s| *s >= 0.0).ok_or_else(bad)
}

/// `cognito-gate revoke`: one entry in the revocation list's Redis stream.
async fn revoke(
    config_file: &Path,
    origin_jti: Option<String>,
    sub: Option<String>,
    at: Option<f64>,
) -> Result<(), String> {
    let config =
        Config::load(config_file).map_err(|e| format!("{}: {e}", config_file.display()))?;
    let settings = config
        .revocation
        .ok_or_else(|| format!("{}: there is no [revocation] table", config_file.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| format!("the system clock: {e}"))?
        .as_secs_f64();
    let entry = match (origin_jti, sub) {
        (Some(value), _) => RevocationEntry {
            kind: RevocationKind::Family,
            value,
            at: now,
        },
        // A sign-out in the future would refuse the tokens of the next sign-in too.
        (None, Some(_)) if at.is_some_and(|at| at > now + 60.0) => {
            return Err("--at is in the future: a user can only have signed out already".into())
        }
        (None, Some(value)) => RevocationEntry {
            kind: RevocationKind::User,
            value,
            at: at.unwrap_or(now),
        },
        (None, None) => return Err("give --origin-jti or --sub".into()),
    };
    let id = write_revocation(&settings, &entry)
        .await
        .map_err(|e| format!("{}: {e}", settings.redis_url.redacted()))?;
    println!(
        "revoked: {} {} at {} (stream entry {id})",
        match entry.kind {
            RevocationKind::Family => "origin_jti",
            RevocationKind::User => "sub",
        },
        entry.value,
        entry.at
    );
    Ok(())
}

fn parse_claim(text: &str) -> Result<(String, serde_json::Value), String> {
    let (name, value) = text
        .split_once('=')
        .filter(|(name, _)| !name.is_empty())
        .ok_or_else(|| format!("{text:?}: expected NAME=VALUE, e.g. custom:tenant=acme"))?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| value.into());
    Ok((name.to_owned(), value))
}

async fn explain_command(
    config_file: &Path,
    method: &str,
    host: Option<&str>,
    path: &str,
    request: Request,
) -> Result<(), String> {
    let (config, policy) = load(config_file)?;
    let caller = match request {
        Request::Anonymous => Caller::Anonymous,
        Request::Claims(groups, scopes, claims) => Caller::Claims {
            groups,
            scopes,
            claims: claims
                .into_iter()
                .map(|(n, v)| (n.into_boxed_str(), v))
                .collect(),
        },
        Request::Token(token) => {
            let now = Clock::System
                .now()
                .ok_or("the system clock is before the Unix epoch: no token can be judged")?;
            let (steps, identity) = explain_token(&config, &policy, token.trim(), now).await;
            print!("{steps}");
            Caller::Token(identity)
        }
    };
    print!("{}", explain(&policy, method, host, path, caller));
    Ok(())
}

async fn run(config_file: PathBuf) -> Result<(), String> {
    let shutdown = shutdown_signal();
    let (config, policy) = load(&config_file)?;
    let _log = init_logging(&config.log);
    let fds = raise_fd_limit();
    tracing::debug!(fd_limit = ?fds, "open-file limit");
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))
    };
    let socket = config.upstream.as_ref().and(config.listen_socket.as_ref());
    let listeners = Listeners {
        proxy: match (&config.upstream, socket) {
            (Some(_), None) => Some(bind(config.listen).await?),
            _ => None,
        },
        proxy_socket: socket.map(bind_socket).transpose()?,
        admin: bind(config.admin_listen).await?,
        authz: match config.authz.as_ref().and_then(|a| a.listen) {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        },
        grpc: match config.authz.as_ref().and_then(|a| a.grpc_listen) {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        },
    };
    let off = || "off".to_owned();
    let authz = config.authz.as_ref();
    tracing::info!(
        listen = config.upstream.as_ref().map(|_| config.listen_text()).unwrap_or_else(off),
        admin = %config.admin_listen,
        upstream = config.upstream.as_ref().map(|u| u.address()).as_deref().unwrap_or("none (decision-only)"),
        authz = authz.and_then(|a| a.listen).map(|l| l.to_string()).unwrap_or_else(off),
        authz_grpc = authz.and_then(|a| a.grpc_listen).map(|l| l.to_string()).unwrap_or_else(off),
        pools = config.pools.len(),
        rules = policy.rules().len(),
        "cognito-gate started"
    );
    let socket_file = socket.map(|s| s.path.clone());
    let ran = cognito_gate::run(config, policy, listeners, Clock::System, shutdown).await;
    if let Some(path) = socket_file {
        let _ = std::fs::remove_file(path);
    }
    ran.map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
}

/// Binds the proxy's Unix socket and sets its mode and owner. A socket file that an
/// earlier run left behind (nobody accepts on it) is replaced; a live socket, or a file
/// that is not a socket, is an error.
fn bind_socket(socket: &UnixSocketListen) -> Result<tokio::net::UnixListener, String> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let path = &socket.path;
    let named = |e: std::io::Error| format!("cannot listen on unix:{}: {e}", path.display());
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(named(std::io::Error::other(
                "the file exists and is not a socket",
            )));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(named(std::io::Error::other(
                "another process serves this socket",
            )));
        }
        std::fs::remove_file(path).map_err(named)?;
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(named)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(socket.mode)).map_err(named)?;
    if socket.uid.is_some() || socket.gid.is_some() {
        std::os::unix::fs::chown(path, socket.uid, socket.gid).map_err(named)?;
    }
    Ok(listener)
}

async fn check(config_file: &Path) -> Result<(), String> {
    let (config, policy) = load(config_file)?;
    // An issuer's keys are found through its discovery document: check that it is
    // there and names the issuer, so that a typo fails here and not at start-up.
    let discovered = discover_issuers(&config)
        .await
        .map_err(|e| format!("{}: {e}", config_file.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let tls = |files: Option<&ListenerTlsFiles>, alpn: Alpn| -> Result<String, String> {
        match files {
            None => Ok(String::new()),
            Some(files) => describe_tls(files, alpn, now)
                .map(|text| format!("\n    {text}"))
                .map_err(|e| format!("{}: {e}", config_file.display())),
        }
    };
    let proxy_tls = tls(config.listen_tls.as_ref(), Alpn::Http)?;
    let admin_tls = tls(config.admin_listen_tls.as_ref(), Alpn::Http)?;
    let (authz_tls, grpc_tls) = match &config.authz {
        Some(a) => (
            tls(a.listen_tls.as_ref(), Alpn::Http)?,
            tls(a.grpc_listen_tls.as_ref(), Alpn::H2)?,
        ),
        None => (String::new(), String::new()),
    };
    println!("config {}: ok", config_file.display());
    match &config.upstream {
        Some(upstream) => println!(
            "  proxy {} -> upstream {}{proxy_tls}",
            config.listen_text(),
            upstream.address()
        ),
        None => println!("  no upstream: decision-only mode"),
    }
    println!("  admin {}{admin_tls}", config.admin_listen);
    if let Some(a) = &config.authz {
        let peers: Vec<String> = a.trusted_peers.iter().map(|n| n.to_string()).collect();
        let peers = peers.join(", ");
        if let Some(listen) = a.listen {
            println!(
                "  decisions on {listen}: {} (nginx, Traefik, Caddy), {}/... (Envoy), trusted peers {peers}{authz_tls}",
                a.path, a.envoy_prefix,
            );
        }
        if let Some(grpc) = a.grpc_listen {
            let transport = if grpc_tls.is_empty() {
                "h2c"
            } else {
                "h2 over TLS"
            };
            println!(
                "  decisions on {grpc}: Envoy gRPC ext_authz and grpc.health.v1 ({transport}), trusted peers {peers}{grpc_tls}"
            );
        }
    }
    for pool in &config.pools {
        println!(
            "  pool {} ({:?} tokens, clients {}), keys from {}",
            pool.user_pool_id,
            pool.token_use,
            pool.client_ids.join(", "),
            pool.jwks_url
        );
    }
    let sources: Vec<String> = config
        .token_sources
        .iter()
        .map(|s| match s.cookie() {
            Some(name) => format!("cookie {name}"),
            None => "Authorization header".to_owned(),
        })
        .collect();
    println!("  tokens from {}", sources.join(", then "));
    for (header, claim) in &config.headers.claims {
        println!("  header {header}: claim {claim}");
    }
    for (issuer, jwks) in config.issuers.iter().zip(&discovered) {
        let algorithms: Vec<String> = issuer.algorithms.iter().map(|a| format!("{a:?}")).collect();
        println!(
            "  issuer {} ({}, audiences {}, groups from {}), keys from {jwks} (through {})",
            issuer.issuer,
            algorithms.join(", "),
            issuer.audiences.join(", "),
            issuer.groups_claim.join("."),
            issuer.discovery_url
        );
    }
    for alb in &config.albs {
        println!(
            "  alb {} (x-amzn-oidc-data signed by {}{}), keys from {}",
            alb.region,
            alb.signers.join(", "),
            match alb.client_ids.is_empty() {
                true => String::new(),
                false => format!(", clients {}", alb.client_ids.join(", ")),
            },
            alb.key_url
        );
    }
    if let Some(tracing) = &config.tracing {
        println!(
            "  traces to {} (OTLP/gRPC) as {}: {}% of new traces{}, queue {} spans{}",
            tracing.endpoint,
            tracing.service_name,
            tracing.sampling.ratio * 100.0,
            match tracing.sampling.follow_parent {
                true => ", a trusted parent's choice followed",
                false => "",
            },
            tracing.queue_size,
            match tracing.record_subject {
                true => ", sub recorded",
                false => "",
            }
        );
    }
    println!(
        "policy {}: ok, {} rules",
        config.policy_file.display(),
        policy.rules().len()
    );
    for rule in policy.rules() {
        let methods = match rule.methods() {
            None => "*".to_owned(),
            Some(list) => list
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(","),
        };
        let name = match &rule.id().name {
            Some(name) => format!(" ({name})"),
            None => String::new(),
        };
        println!(
            "  {:>3}. {methods} {} -> {}{name}",
            rule.id().number,
            rule.path(),
            rule_text(rule)
        );
    }
    if !policy.tests().is_empty() {
        println!("  {} policy tests pass", policy.tests().len());
    }
    Ok(())
}

async fn health(config_file: &Path, url: Option<String>) -> Result<(), String> {
    let url = match url {
        Some(url) => url,
        None => {
            let config = Config::load(config_file).map_err(|e| e.to_string())?;
            let mut admin = config.admin_listen;
            if admin.ip().is_unspecified() {
                admin.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{admin}/readyz")
        }
    };
    let url: http::Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
    probe(&url, std::time::Duration::from_secs(3)).await?;
    println!("ok: {url}");
    Ok(())
}

#[cfg(feature = "dev")]
async fn dev_issuer(listen: SocketAddr, pool_id: &str, client_id: &str) -> Result<(), String> {
    use cognito_gate::internals::issuer;
    let _log = init_logging(&LogConfig {
        level: "info".into(),
        format: LogFormat::Pretty,
    });
    let shutdown = shutdown_signal();
    let issuer = issuer::DevIssuer::new(pool_id, client_id).map_err(|e| e.to_string())?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!(
        "DEVELOPMENT ONLY: anyone who can reach {addr} can mint tokens that a gate trusting this JWKS accepts.\n\
         JWKS   http://{addr}{jwks}\n\
         iss    {iss}\n\
         token  curl 'http://{addr}/token?sub=alice&groups=admins&ttl=3600'\n\
         gate   COGNITO_GATE_POOLS='[{{user_pool_id=\"{pool_id}\", client_ids=[\"{client_id}\"], jwks_url=\"http://{addr}{jwks}\"}}]'",
        jwks = issuer.jwks_path(),
        iss = issuer.issuer(),
    );
    issuer::serve(std::sync::Arc::new(issuer), listener, shutdown).await;
    Ok(())
}

/// Completes on SIGINT or SIGTERM. The handlers are installed by this call, not when
/// the future is first polled, so a signal that arrives while the gate is starting
/// is not lost to the default action (which would end the process with no drain).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let streams = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        );
        async move {
            match streams {
                (Ok(mut interrupt), Ok(mut term)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
