//! Hot reload of the policy and the pools: on SIGHUP, and when the config or policy
//! file changes on disk. Files are watched through their folders, so that a
//! Kubernetes ConfigMap update (a `..data` symlink swapped for a new one, the files
//! themselves never written) is seen like an editor's save. Events are debounced, and
//! a change of watched folder content that leaves both files' bytes as they were is
//! not a reload.
//!
//! A file renamed into place (a ConfigMap swap, `mv`, most editors) is complete the
//! moment it appears, and is read at once, as on SIGHUP. A file written in place (its
//! inode kept) may be read half-written, and half a policy can parse as a wider one: it
//! is read only once it has been unchanged (size, modification time and bytes) for
//! `reload.settle`, and each postponement is logged and counted
//! (`cognito_gate_reloads_deferred_total`). A new policy that has no `[[test]]` tables
//! where the one in effect has some is refused, as a file cut short would be.
//!
//! A reload loads and checks everything first (the config, the policy with its lints
//! and `[[test]]` tables, and keys for new pools), then swaps the whole decision
//! state at once; a request in flight finishes under the state it started with. Any
//! problem keeps the old state, logs every reason, and counts
//! `cognito_gate_reloads_total{result="error"}`. Settings that need a restart (listen
//! addresses, timeouts, headers...) are reported as such and not applied.
//! Same floor as `gate`: may import every floor below `dev`, and `check`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::authorize::{Authorizer, JwksClient, State};
use crate::config::Config;
use crate::dry_run::load_policy;

/// How long the file watcher waits for a burst of events to end.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// How often a file written in place is looked at while it settles.
const SETTLE_POLL: Duration = Duration::from_millis(50);

/// Stops reloading when dropped.
pub(crate) struct Reloader {
    task: JoinHandle<()>,
}

impl Drop for Reloader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why a reload was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Signal,
    FileChange,
}

/// Starts reloading `config` (loaded from `file`) into `authz`. The SIGHUP handler is
/// installed before this returns, so a signal sent once the gate serves is never
/// taken for the default action, which would end the process.
pub(crate) fn start(
    file: PathBuf,
    config: Config,
    authz: Arc<Authorizer>,
    jwks_client: JwksClient,
) -> Reloader {
    let (tx, rx) = mpsc::channel::<Trigger>(64);
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hangups) => {
            let tx = tx.clone();
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    if tx.send(Trigger::Signal).await.is_err() {
                        break;
                    }
                }
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload on file change only")
        }
    }
    let watch_tx = tx.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            Ok(e) => !matches!(e.kind, notify::EventKind::Access(_)),
            Err(_) => true,
        };
        if relevant {
            // Full means a reload is pending already.
            let _ = watch_tx.try_send(Trigger::FileChange);
        }
    });
    let watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config files; reload on SIGHUP only");
            None
        }
    };
    let reloading = Reloading {
        seen: Snapshot::take(&file, &config.policy_file),
        file,
        config,
        authz,
        jwks_client,
        watcher,
        watched: Vec::new(),
    };
    Reloader {
        task: tokio::spawn(reloading.run(rx)),
    }
}

struct Reloading {
    file: PathBuf,
    /// The configuration in effect.
    config: Config,
    /// The config and policy files as they were when last read.
    seen: Snapshot,
    authz: Arc<Authorizer>,
    jwks_client: JwksClient,
    watcher: Option<notify::RecommendedWatcher>,
    watched: Vec<PathBuf>,
}

impl Reloading {
    async fn run(mut self, mut rx: mpsc::Receiver<Trigger>) {
        self.watch();
        while let Some(first) = rx.recv().await {
            let mut signalled = first == Trigger::Signal;
            // Debounce: an editor's save or a ConfigMap swap is several events.
            tokio::time::sleep(DEBOUNCE).await;
            while let Ok(more) = rx.try_recv() {
                signalled |= more == Trigger::Signal;
            }
            if !signalled {
                let now = Snapshot::take(&self.file, &self.config.policy_file);
                if now.same_bytes(&self.seen) {
                    continue;
                }
                if now.written_in_place(&self.seen) {
                    signalled = self.settle(now, &mut rx).await;
                }
            }
            let why = if signalled { "SIGHUP" } else { "file change" };
            self.reload(why).await;
            self.watch();
        }
    }

    /// Waits until the files have been unchanged for `reload.settle`, logging and
    /// counting each postponement; returns early, with `true`, on SIGHUP.
    async fn settle(&self, mut last: Snapshot, rx: &mut mpsc::Receiver<Trigger>) -> bool {
        let settle = self.config.reload.settle;
        let deferred = &self.authz.metrics().reloads_deferred;
        deferred.inc();
        tracing::info!(
            settle = ?settle,
            "a config or policy file was written in place; the reload waits until it is unchanged"
        );
        let mut quiet_since = Instant::now();
        while quiet_since.elapsed() < settle {
            let wait = SETTLE_POLL.min(settle.saturating_sub(quiet_since.elapsed()));
            tokio::select! {
                trigger = rx.recv() => match trigger {
                    Some(Trigger::Signal) => return true,
                    Some(Trigger::FileChange) => {}
                    None => return false,
                },
                _ = tokio::time::sleep(wait) => {}
            }
            let now = Snapshot::take(&self.file, &self.config.policy_file);
            if now != last {
                last = now;
                quiet_since = Instant::now();
                deferred.inc();
                tracing::warn!(
                    settle = ?settle,
                    "a config or policy file is still being written; the reload is deferred"
                );
            }
        }
        false
    }

    /// Watches the folders of the config and policy files (the policy file may move).
    fn watch(&mut self) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        let wanted: Vec<PathBuf> = [&self.file, &self.config.policy_file]
            .into_iter()
            .map(|f| folder_of(f))
            .collect();
        for dir in &wanted {
            if self.watched.contains(dir) {
                continue;
            }
            match watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => self.watched.push(dir.clone()),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch for changes")
                }
            }
        }
    }

    async fn reload(&mut self, why: &str) {
        let metrics = self.authz.metrics().clone();
        let seen = Snapshot::take(&self.file, &self.config.policy_file);
        match self.prepare().await {
            Ok((config, state)) => {
                let restart = needs_restart(&self.config, &config);
                if !restart.is_empty() {
                    tracing::warn!(
                        settings = %restart.join(", "),
                        "these settings changed but need a restart; they were not applied"
                    );
                }
                tracing::info!(
                    trigger = why,
                    rules = state.policy.rules().len(),
                    pools = state.pools.len(),
                    "reloaded the policy and the pools"
                );
                self.authz.replace(state);
                for gone in self.config.pools.iter().filter(|old| {
                    !config
                        .pools
                        .iter()
                        .any(|p| p.user_pool_id == old.user_pool_id)
                }) {
                    metrics.forget_pool(&gone.user_pool_id);
                }
                // A moved policy file: what is in effect is the new file's bytes.
                self.seen = if config.policy_file == self.config.policy_file {
                    seen
                } else {
                    Snapshot::take(&self.file, &config.policy_file)
                };
                // What is not applied stays as it was, so a later reload compares
                // with what runs.
                self.config.policy_file = config.policy_file;
                self.config.pools = config.pools;
                metrics.record_reload(true);
            }
            Err(problems) => {
                tracing::error!(
                    trigger = why,
                    problems = %problems,
                    "reload failed; the gate keeps the policy and pools it had"
                );
                // Not retried until the files change again or another SIGHUP.
                self.seen = seen;
                metrics.record_reload(false);
            }
        }
    }

    /// Loads and checks the new config, policy and keys, without touching the gate.
    async fn prepare(&self) -> Result<(Config, State), String> {
        let config = Config::load(&self.file).map_err(|e| e.to_string())?;
        let policy = load_policy(&config.policy_file)
            .map_err(|e| format!("{}: {e}", config.policy_file.display()))?;
        let current = self.authz.state();
        let tested = current.policy.tests().len();
        if tested > 0 && policy.tests().is_empty() {
            return Err(format!(
                "{}: the policy in effect has {tested} [[test]] tables and this one has none, \
                 as a file cut short would; it was not applied (replace policy files by \
                 renaming a complete file over them; to drop every test on purpose, restart \
                 the gate)",
                config.policy_file.display()
            ));
        }
        // Only the pools and the policy are applied: the new state is built with the
        // running `jwks`, `max_token_bytes` and `token_cache` settings, which need a
        // restart and are reported as such.
        let mut applied = self.config.clone();
        applied.pools.clone_from(&config.pools);
        applied.issuers.clone_from(&config.issuers);
        applied.policy_file.clone_from(&config.policy_file);
        let pools_changed = *current.pools != applied.pools || *current.issuers != applied.issuers;
        let state = State::build(
            &applied,
            policy,
            self.jwks_client.clone(),
            self.authz.metrics().clone(),
            self.authz.tracing(),
            Some(&current),
        )
        .await;
        if pools_changed {
            let wait = self.config.jwks.fetch_timeout + Duration::from_secs(1);
            if !state.keys.wait_ready(wait).await {
                return Err(format!(
                    "the new pools' signing keys could not be fetched within {wait:?}"
                ));
            }
        }
        Ok((config, state))
    }
}

/// The folder to watch for `file`: its parent, or `.` for a bare name.
fn folder_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// What a reload knows of one file: which file it is (device and inode, following
/// symlinks), its size and modification time, and a hash of its bytes. An unreadable
/// or missing file is all `None` and hashes as empty.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileState {
    inode: Option<(u64, u64)>,
    len: Option<u64>,
    modified: Option<SystemTime>,
    hash: u64,
}

impl FileState {
    fn take(file: &Path) -> FileState {
        let meta = std::fs::metadata(file).ok();
        let mut h = DefaultHasher::new();
        std::fs::read(file).unwrap_or_default().hash(&mut h);
        FileState {
            inode: meta.as_ref().map(inode),
            len: meta.as_ref().map(|m| m.len()),
            modified: meta.as_ref().and_then(|m| m.modified().ok()),
            hash: h.finish(),
        }
    }
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

/// The config file and the policy file, as a reload sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot([FileState; 2]);

impl Snapshot {
    fn take(config: &Path, policy: &Path) -> Snapshot {
        Snapshot([FileState::take(config), FileState::take(policy)])
    }

    /// Whether both files hold the bytes they held in `before`.
    fn same_bytes(&self, before: &Snapshot) -> bool {
        self.0.iter().zip(&before.0).all(|(a, b)| a.hash == b.hash)
    }

    /// Whether a file whose bytes changed since `before` is still the same file: it was
    /// written in place, and may be only partly written. A file renamed into place is
    /// another inode, complete when it appears.
    fn written_in_place(&self, before: &Snapshot) -> bool {
        self.0
            .iter()
            .zip(&before.0)
            .any(|(now, was)| now.hash != was.hash && now.inode.is_some() && now.inode == was.inode)
    }
}

/// The settings that differ between `old` and `new` and that a reload cannot apply.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let differs =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    let mut out = Vec::new();
    let pairs: [(&'static str, &dyn std::fmt::Debug, &dyn std::fmt::Debug); 31] = [
        ("listen", &old.listen, &new.listen),
        ("listen", &old.listen_socket, &new.listen_socket),
        (
            "trusted_proxies",
            &old.trust_unix_peers,
            &new.trust_unix_peers,
        ),
        ("admin_listen", &old.admin_listen, &new.admin_listen),
        // The files' contents are reloaded on their own; which files, at a restart.
        ("listen_tls", &old.listen_tls, &new.listen_tls),
        (
            "admin_listen_tls",
            &old.admin_listen_tls,
            &new.admin_listen_tls,
        ),
        (
            "max_header_bytes",
            &old.max_header_bytes,
            &new.max_header_bytes,
        ),
        (
            "header_read_timeout",
            &old.header_read_timeout,
            &new.header_read_timeout,
        ),
        (
            "max_connections",
            &old.max_connections,
            &new.max_connections,
        ),
        ("workers", &old.workers, &new.workers),
        (
            "http2_keep_alive_interval",
            &old.http2_keep_alive_interval,
            &new.http2_keep_alive_interval,
        ),
        (
            "http2_keep_alive_timeout",
            &old.http2_keep_alive_timeout,
            &new.http2_keep_alive_timeout,
        ),
        (
            "allowed_upgrades",
            &old.allowed_upgrades,
            &new.allowed_upgrades,
        ),
        (
            "trusted_proxies",
            &old.trusted_proxies,
            &new.trusted_proxies,
        ),
        (
            "shutdown_timeout",
            &old.shutdown_timeout,
            &new.shutdown_timeout,
        ),
        (
            "max_token_bytes",
            &old.max_token_bytes,
            &new.max_token_bytes,
        ),
        (
            "token_cache",
            &old.token_cache_bytes,
            &new.token_cache_bytes,
        ),
        ("upstream", &old.upstream, &new.upstream),
        ("authz", &old.authz, &new.authz),
        ("jwks", &old.jwks, &new.jwks),
        ("headers", &old.headers, &new.headers),
        ("alb", &old.albs, &new.albs),
        ("cors_preflight", &old.cors_preflight, &new.cors_preflight),
        ("token_sources", &old.token_sources, &new.token_sources),
        ("cookie_methods", &old.cookie_methods, &new.cookie_methods),
        ("forward_token", &old.forward_token, &new.forward_token),
        ("log", &old.log, &new.log),
        ("reload", &old.reload, &new.reload),
        ("cors", &old.cors, &new.cors),
        ("revocation", &old.revocation, &new.revocation),
        ("tracing", &old.tracing, &new.tracing),
    ];
    for (key, a, b) in pairs {
        if differs(a, b) && !out.contains(&key) {
            out.push(key);
        }
    }
    out
}
