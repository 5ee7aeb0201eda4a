//! Log set-up: human-readable or JSON lines on stderr (`auto`: JSON unless a terminal), filtered by `log.level`
//! (overridable with `RUST_LOG`).

use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Lines waiting for the writer thread at most: about half a MiB of queue, and more
/// than a second of access lines at the gate's full rate.
const QUEUE_LINES: usize = 16_384;

/// Counts the lines dropped because the writer fell behind (see [`init`]).
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Log lines dropped so far because the log writer could not keep up.
pub fn dropped_lines() -> u64 {
    DROPPED
        .get()
        .map_or(0, |c| u64::try_from(c.dropped_lines()).unwrap_or(u64::MAX))
}

/// Keeps the log writer running; dropping it writes out every pending line.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _writer: Option<WorkerGuard>,
}

/// Installs the global subscriber. A second call (as in tests) is a no-op.
/// `auto` writes JSON unless stderr is a terminal; colour codes are only ever written
/// to a terminal.
///
/// Lines are handed to a writer thread through a bounded queue and written in batches
/// (one `write` per batch, not per line), so a request never waits for stderr. A
/// line that finds the queue full is dropped and counted
/// (`cognito_gate_log_lines_dropped_total`) rather than slowing requests down.
pub fn init(config: &LogConfig) -> LogGuard {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = std::io::stderr().is_terminal();
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUE_LINES)
        .thread_name("cognito-gate-log")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let _ = DROPPED.set(writer.error_counter());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(terminal)
        .with_writer(writer);
    let json = match config.format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !terminal,
    };
    let installed = match json {
        true => builder.json().flatten_event(true).try_init(),
        false => builder.try_init(),
    };
    LogGuard {
        _writer: installed.is_ok().then_some(guard),
    }
}
