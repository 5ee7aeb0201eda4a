//! The shared list is one Redis stream, `{key_prefix}revocations`. Each entry has the
//! fields `kind` (`origin_jti` or `sub`), `value` (the token family's id, or the user's
//! `sub`) and `at` (seconds since the epoch: when it was revoked, or when the user
//! signed out). Stream ids are the instants entries were written, so a writer trims
//! what no token can outlive with `MINID`, and a reader that was away catches up with
//! everything written meanwhile by reading on from the last id it saw.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::backoff::Backoff;
use crate::config::RevocationConfig;
use crate::metrics::Metrics;

use super::entry::Entry;
use super::list::RevocationList;
use super::redis::{Connection, Reply};

/// The stream's name after the key prefix.
pub const STREAM: &str = "revocations";

/// How long one read waits for new entries before it counts as an exchange anyway.
const BLOCK: Duration = Duration::from_millis(1000);
/// Entries per read.
const BATCH: &str = "10000";

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The password: the file's (trimmed of its line end) when `password_file` is set.
fn password(config: &RevocationConfig) -> std::io::Result<Option<String>> {
    match &config.password_file {
        Some(file) => Ok(Some(
            std::fs::read_to_string(file)?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        )),
        None => Ok(None),
    }
}

fn key(config: &RevocationConfig) -> String {
    format!("{}{STREAM}", config.key_prefix)
}

/// Writes `entry` to the stream, trimming what has outlived every token; returns the
/// entry's id.
pub async fn write(config: &RevocationConfig, entry: &Entry) -> std::io::Result<String> {
    let mut conn = Connection::open(
        &config.redis_url,
        password(config)?.as_deref(),
        config.timeout,
    )
    .await?;
    let cutoff = ((now() - config.max_token_lifetime.as_secs_f64()).max(0.0) * 1000.0) as u64;
    let (key, cutoff) = (key(config), cutoff.to_string());
    let fields = entry.fields();
    let mut args: Vec<&[u8]> = vec![
        b"XADD",
        key.as_bytes(),
        b"MINID",
        b"~",
        cutoff.as_bytes(),
        b"*",
    ];
    for (name, value) in &fields {
        args.push(name.as_bytes());
        args.push(value.as_bytes());
    }
    match conn.call(&args).await? {
        Reply::Bulk(Some(id)) => Ok(String::from_utf8_lossy(&id).into_owned()),
        Reply::Error(e) => Err(std::io::Error::other(format!("redis refused XADD: {e}"))),
        other => Err(std::io::Error::other(format!(
            "redis answered XADD with {other:?}"
        ))),
    }
}

/// The records of a stream reply (`XRANGE`'s array, or one stream of `XREAD`'s), as
/// (id, fields).
fn records(reply: Reply) -> Result<Vec<(String, Vec<Reply>)>, &'static str> {
    let Reply::Array(Some(items)) = reply else {
        return Err("not an array of records");
    };
    items
        .into_iter()
        .map(|item| match item {
            Reply::Array(Some(mut pair)) if pair.len() == 2 => {
                let fields = match pair.pop() {
                    Some(Reply::Array(Some(fields))) => fields,
                    // A record whose fields were deleted.
                    _ => Vec::new(),
                };
                match pair.pop() {
                    Some(Reply::Bulk(Some(id))) => {
                        Ok((String::from_utf8_lossy(&id).into_owned(), fields))
                    }
                    _ => Err("a record without an id"),
                }
            }
            _ => Err("a record that is not an id and its fields"),
        })
        .collect()
}

/// Applies `records` to `list`; a malformed one is skipped, counted and logged, and
/// never refuses anyone. Returns the last id.
fn apply(
    list: &RevocationList,
    metrics: &Metrics,
    records: Vec<(String, Vec<Reply>)>,
) -> Option<String> {
    let mut last = None;
    let mut batch = Vec::with_capacity(records.len());
    for (id, fields) in records {
        match Entry::from_fields(&fields) {
            Ok(entry) => batch.push(entry),
            Err(why) => {
                metrics.revocation_malformed.inc();
                tracing::warn!(%id, why, "a revocation entry in redis is malformed; it is skipped");
            }
        }
        last = Some(id);
    }
    list.apply(&batch, now());
    last
}

/// One connection's life: load from `from` (or the start), then follow; returns when
/// the connection fails, with the last id seen.
async fn session(
    config: &RevocationConfig,
    list: &RevocationList,
    metrics: &Metrics,
    mut last: Option<String>,
) -> (Option<String>, std::io::Error) {
    let password = match password(config) {
        Ok(p) => p,
        Err(e) => return (last, e),
    };
    let mut conn =
        match Connection::open(&config.redis_url, password.as_deref(), config.timeout).await {
            Ok(c) => c,
            Err(e) => return (last, e),
        };
    let key = key(config);
    // Everything after the last id seen (all of it, the first time), page by page.
    loop {
        let start = match &last {
            Some(id) => format!("({id}"),
            None => "-".to_owned(),
        };
        let read = conn
            .call(&[
                b"XRANGE",
                key.as_bytes(),
                start.as_bytes(),
                b"+",
                b"COUNT",
                BATCH.as_bytes(),
            ])
            .await;
        let page = match read.map(records) {
            Ok(Ok(page)) => page,
            Ok(Err(why)) => return (last, std::io::Error::other(format!("redis: XRANGE: {why}"))),
            Err(e) => return (last, e),
        };
        let full = page.len().to_string() == BATCH;
        if let Some(id) = apply(list, metrics, page) {
            last = Some(id);
        }
        if !full {
            break;
        }
    }
    list.synced(now());
    let status = list.status(now());
    tracing::info!(
        entries = status.entries,
        "revocation list loaded from redis; following it"
    );
    let block = BLOCK.as_millis().to_string();
    loop {
        let from = last.clone().unwrap_or_else(|| "0-0".to_owned());
        let read = tokio::time::timeout(
            BLOCK + config.timeout,
            conn.call(&[
                b"XREAD",
                b"COUNT",
                BATCH.as_bytes(),
                b"BLOCK",
                block.as_bytes(),
                b"STREAMS",
                key.as_bytes(),
                from.as_bytes(),
            ]),
        )
        .await;
        let reply = match read {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => return (last, e),
            Err(_) => {
                return (
                    last,
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "redis: a stream read timed out",
                    ),
                )
            }
        };
        match reply {
            // Nothing new within BLOCK.
            Reply::Array(None) => {}
            Reply::Array(Some(streams)) => {
                for stream in streams {
                    let Reply::Array(Some(mut pair)) = stream else {
                        return (
                            last,
                            std::io::Error::other("redis: XREAD: not a stream and its records"),
                        );
                    };
                    let Some(records_reply) = pair.pop() else {
                        continue;
                    };
                    match records(records_reply) {
                        Ok(page) => {
                            if let Some(id) = apply(list, metrics, page) {
                                last = Some(id);
                            }
                        }
                        Err(why) => {
                            return (last, std::io::Error::other(format!("redis: XREAD: {why}")))
                        }
                    }
                }
            }
            Reply::Error(e) => {
                return (
                    last,
                    std::io::Error::other(format!("redis refused XREAD: {e}")),
                )
            }
            other => {
                return (
                    last,
                    std::io::Error::other(format!("redis answered XREAD with {other:?}")),
                )
            }
        }
        list.synced(now());
    }
}

/// Loads the list and follows it for as long as the gate runs: after a lost
/// connection it reconnects (1 s, doubling to 30 s, with jitter) and reads on from the
/// last id it saw, so nothing written meanwhile is missed. Expired entries are swept
/// once a minute.
pub async fn follow(config: RevocationConfig, list: Arc<RevocationList>, metrics: Arc<Metrics>) {
    let sweeper = {
        let list = list.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                list.sweep(now());
            }
        })
    };
    let _sweeper = AbortOnDrop(sweeper);
    let mut last = None;
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        let started = std::time::Instant::now();
        let (seen, error) = session(&config, &list, &metrics, last).await;
        last = seen;
        list.disconnected();
        metrics.revocation_reconnects.inc();
        // A session that ran a while was a connection that worked: start over.
        if started.elapsed() > Duration::from_secs(30) {
            backoff.reset();
        }
        let wait = backoff.next_wait();
        tracing::warn!(redis = %config.redis_url.redacted(), %error, retry_in_ms = wait.as_millis() as u64, "lost the revocation list's redis; reconnecting");
        tokio::time::sleep(wait).await;
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
