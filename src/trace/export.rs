//! The way out for finished spans: a bounded queue that a request only ever tries to
//! push to, and one task that sends its contents to the collector in batches. A full
//! queue, or a batch the collector did not take, is dropped and counted
//! (`cognito_gate_trace_spans_dropped_total{reason}`); a request never waits for
//! either.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;
use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::JoinHandle;
use tonic::transport::{Certificate, ClientTlsConfig};

use crate::config::TracingConfig;
use crate::metrics::Metrics;

/// The most spans in one export request.
const MAX_BATCH: usize = 512;
/// How long a batch that is not full waits for more before it is sent.
const BATCH_DELAY: Duration = Duration::from_secs(1);

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("tracing.ca_file {0}: {1}")]
    CaFile(String, std::io::Error),
    #[error("the OTLP exporter cannot be built: {0}")]
    Build(String),
}

/// The spans' queue, as the SDK's tracer sees it: `on_end` pushes or drops.
#[derive(Debug)]
pub(super) struct Queue {
    spans: mpsc::Sender<SpanData>,
    metrics: Arc<Metrics>,
}

impl SpanProcessor for Queue {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if self.spans.try_send(span).is_err() {
            self.metrics.trace_spans_dropped("queue_full", 1);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// The export task, and how to stop it.
pub(super) struct Exporting {
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Exporting {
    /// Tells the task to send what is queued and end; waits for it at most `limit`.
    pub(super) async fn stop(&self, limit: Duration) {
        let _ = self.stop.send(true);
        let Some(task) = self.task.lock().await.take() else {
            return;
        };
        let abort = task.abort_handle();
        if tokio::time::timeout(limit, task).await.is_err() {
            abort.abort();
            tracing::warn!(
                "trace export did not finish before shutdown; the spans still queued are lost"
            );
        }
    }
}

/// Builds the OTLP/gRPC exporter for `config` and starts the task that feeds it.
pub(super) fn start(
    config: &TracingConfig,
    resource: &Resource,
    metrics: Arc<Metrics>,
) -> Result<(Queue, Exporting), ExportError> {
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(config.endpoint.to_string())
        .with_timeout(config.export_timeout);
    if config.endpoint.scheme_str() == Some("https") {
        let domain = config.endpoint.host().unwrap_or_default().to_owned();
        let tls = ClientTlsConfig::new().domain_name(domain);
        let tls = match &config.ca_file {
            Some(file) => {
                let pem = std::fs::read(file)
                    .map_err(|e| ExportError::CaFile(file.display().to_string(), e))?;
                tls.ca_certificate(Certificate::from_pem(pem))
            }
            None => tls.with_native_roots(),
        };
        builder = builder.with_tls_config(tls);
    }
    let mut exporter = builder
        .build()
        .map_err(|e| ExportError::Build(e.to_string()))?;
    exporter.set_resource(resource);
    let (spans, queued) = mpsc::channel(config.queue_size);
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(export_loop(
        queued,
        exporter,
        metrics.clone(),
        stopped,
        config.endpoint.to_string(),
    ));
    Ok((
        Queue { spans, metrics },
        Exporting {
            stop,
            task: Mutex::new(Some(task)),
        },
    ))
}

/// Sends batches of up to [`MAX_BATCH`] spans, each as soon as it is full or
/// [`BATCH_DELAY`] after its first span; on stop, what is left, then ends.
async fn export_loop(
    mut queued: mpsc::Receiver<SpanData>,
    exporter: opentelemetry_otlp::SpanExporter,
    metrics: Arc<Metrics>,
    mut stopped: watch::Receiver<bool>,
    endpoint: String,
) {
    let mut failing = false;
    loop {
        let first = tokio::select! {
            span = queued.recv() => span,
            _ = stopped.wait_for(|stop| *stop) => None,
        };
        let Some(first) = first else {
            break;
        };
        let mut batch = vec![first];
        let deadline = tokio::time::sleep(BATCH_DELAY);
        tokio::pin!(deadline);
        while batch.len() < MAX_BATCH {
            tokio::select! {
                span = queued.recv() => match span {
                    Some(span) => batch.push(span),
                    None => break,
                },
                _ = &mut deadline => break,
                _ = stopped.wait_for(|stop| *stop) => break,
            }
        }
        send(&exporter, batch, &metrics, &mut failing, &endpoint).await;
        if *stopped.borrow() {
            break;
        }
    }
    // Stopping: what is already queued goes too.
    queued.close();
    let mut batch = Vec::new();
    while let Some(span) = queued.recv().await {
        batch.push(span);
        if batch.len() == MAX_BATCH {
            send(
                &exporter,
                std::mem::take(&mut batch),
                &metrics,
                &mut failing,
                &endpoint,
            )
            .await;
        }
    }
    if !batch.is_empty() {
        send(&exporter, batch, &metrics, &mut failing, &endpoint).await;
    }
}

/// Exports one batch, and counts it as sent or dropped. The first failure after a
/// success is logged, and the recovery: not every batch.
async fn send(
    exporter: &opentelemetry_otlp::SpanExporter,
    batch: Vec<SpanData>,
    metrics: &Metrics,
    failing: &mut bool,
    endpoint: &str,
) {
    let count = batch.len() as u64;
    match exporter.export(batch).await {
        Ok(()) => {
            metrics.trace_spans_exported.inc_by(count);
            if std::mem::take(failing) {
                tracing::info!(%endpoint, "trace export works again");
            }
        }
        Err(e) => {
            metrics.trace_spans_dropped("export_failed", count);
            if !std::mem::replace(failing, true) {
                tracing::warn!(%endpoint, error = %e, "trace export failed; spans are dropped (cognito_gate_trace_spans_dropped_total) until the collector takes them");
            }
        }
    }
}
