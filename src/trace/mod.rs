//! OpenTelemetry traces, off unless `[tracing]` names a collector. One server span
//! per request (every listener), a client span for the call to the app and one for
//! each key fetch, sent over OTLP/gRPC through a bounded queue (`export.rs`) that
//! never makes a request wait.
//!
//! Switched off, a [`Tracing`] is `None` and each request's [`RequestSpan`] is too:
//! no span, no id, no header touched, one branch per call.
//! Floor 1: imports the configuration and the metrics.

mod export;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use crate::config::TracingConfig;
use crate::metrics::{Metrics, VERSION};

pub use export::ExportError;

/// The W3C trace-context headers: what a trusted caller's trace is continued from,
/// and what the app is told.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The gate's tracer, shared by every listener and key store; cheap to clone.
#[derive(Clone, Default)]
pub struct Tracing(Option<Arc<Active>>);

struct Active {
    tracer: SdkTracer,
    /// Kept so that the tracer stays live; the queue is drained by [`Tracing::shutdown`].
    _provider: SdkTracerProvider,
    exporting: export::Exporting,
    record_subject: bool,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Tracing(on)"
        } else {
            "Tracing(off)"
        })
    }
}

impl Tracing {
    /// No spans at all.
    pub fn off() -> Tracing {
        Tracing(None)
    }

    /// Starts exporting to `config`'s collector, or nothing without one. Needs a
    /// Tokio runtime: the export task runs on it. Nothing is sent until a span ends,
    /// and a collector that is down only costs dropped, counted spans.
    pub fn start(
        config: Option<&TracingConfig>,
        metrics: Arc<Metrics>,
    ) -> Result<Tracing, ExportError> {
        let Some(config) = config else {
            return Ok(Tracing::off());
        };
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .with_attribute(KeyValue::new("service.version", VERSION))
            .build();
        let (queue, exporting) = export::start(config, &resource, metrics)?;
        let ratio = Sampler::TraceIdRatioBased(config.sampling.ratio);
        let sampler = match config.sampling.follow_parent {
            true => Sampler::ParentBased(Box::new(ratio)),
            false => ratio,
        };
        let provider = SdkTracerProvider::builder()
            .with_span_processor(queue)
            .with_sampler(sampler)
            .with_resource(resource)
            .build();
        let scope = InstrumentationScope::builder("cognito-gate")
            .with_version(VERSION)
            .build();
        let tracer = provider.tracer_with_scope(scope);
        tracing::info!(
            endpoint = %config.endpoint,
            ratio = config.sampling.ratio,
            follow_parent = config.sampling.follow_parent,
            service = %config.service_name,
            "tracing on: spans are sent over OTLP/gRPC"
        );
        Ok(Tracing(Some(Arc::new(Active {
            tracer,
            _provider: provider,
            exporting,
            record_subject: config.record_subject,
        }))))
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// The server span of one request on `endpoint` (`proxy`, `forward_auth`,
    /// `ext_authz`, `ext_authz_grpc`), continuing the trace of `headers`'
    /// `traceparent` only when `trust_parent`: a trusted proxy's, or a decision peer's.
    /// Anyone else's trace id is ignored and a new trace begins.
    pub fn server(
        &self,
        endpoint: &'static str,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        trust_parent: bool,
    ) -> RequestSpan {
        let Some(active) = &self.0 else {
            return RequestSpan::NONE;
        };
        let parent = match trust_parent {
            true => TraceContextPropagator::new().extract(&Headers(headers)),
            false => Context::new(),
        };
        let span = active
            .tracer
            .span_builder(format!("{endpoint} {method}"))
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("cognito_gate.endpoint", endpoint),
                KeyValue::new("http.request.method", method.to_owned()),
                // The path only: a query may carry anything, a token included.
                KeyValue::new("url.path", path.split('?').next().unwrap_or("").to_owned()),
            ])
            .start_with_context(&active.tracer, &parent);
        RequestSpan(Some(Open {
            cx: parent.with_span(span),
            active: active.clone(),
        }))
    }

    /// A client span `name` (`jwks fetch`, `alb key fetch`) for fetching `pool`'s keys
    /// from `url`: the child of the request that asked for them, or a root of its own
    /// for a periodic refresh.
    pub fn key_fetch(&self, name: &'static str, pool: &str, url: &str) -> RequestSpan {
        let Some(active) = &self.0 else {
            return RequestSpan::NONE;
        };
        let parent = Context::current();
        let span = active
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("cognito_gate.pool", pool.to_owned()),
                KeyValue::new("url.full", url.to_owned()),
            ])
            .start_with_context(&active.tracer, &parent);
        RequestSpan(Some(Open {
            cx: parent.with_span(span),
            active: active.clone(),
        }))
    }

    /// Sends what is queued, for at most `limit`, and stops exporting.
    pub async fn shutdown(&self, limit: Duration) {
        if let Some(active) = &self.0 {
            active.exporting.stop(limit).await;
        }
    }
}

/// One span of a request, or none (tracing off). Ends when dropped, or when
/// [`RequestSpan::end`] is called with its outcome.
pub struct RequestSpan(Option<Open>);

struct Open {
    /// The span, in the context its children and the app's `traceparent` come from.
    cx: Context,
    active: Arc<Active>,
}

impl RequestSpan {
    pub const NONE: RequestSpan = RequestSpan(None);

    /// Whether this span is kept (sampled); attributes are worth working out only then.
    pub fn is_recording(&self) -> bool {
        self.0.as_ref().is_some_and(|o| o.cx.span().is_recording())
    }

    /// The client span of the call to the app, child of this one.
    pub fn upstream(&self, method: &str, server: impl FnOnce() -> String) -> RequestSpan {
        let Some(open) = &self.0 else {
            return RequestSpan::NONE;
        };
        let tracer = &open.active.tracer;
        let span = tracer
            .span_builder(format!("upstream {method}"))
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("http.request.method", method.to_owned()),
                KeyValue::new("server.address", server()),
            ])
            .start_with_context(tracer, &open.cx);
        RequestSpan(Some(Open {
            cx: open.cx.with_span(span),
            active: open.active.clone(),
        }))
    }

    /// Replaces whatever trace context `headers` carry with this span's, for the
    /// app: it continues our trace, never a client's forged one. Off, the headers
    /// are left as they came.
    pub fn inject(&self, headers: &mut HeaderMap) {
        let Some(open) = &self.0 else {
            return;
        };
        headers.remove(TRACEPARENT);
        headers.remove(TRACESTATE);
        TraceContextPropagator::new().inject_context(&open.cx, &mut HeadersMut(headers));
    }

    /// Runs `future` with this span as the current context, so that a key fetch it
    /// starts is this span's child.
    pub fn scope<F: Future>(&self, future: F) -> Scoped<F> {
        Scoped {
            future,
            cx: self.0.as_ref().map(|o| o.cx.clone()),
        }
    }

    /// Who the caller turned out to be: where the token came from, and with
    /// `tracing.record_subject`, its `sub`.
    pub fn identity(&self, source: &str, issuer: &str, sub: &str) {
        let Some(open) = self.0.as_ref().filter(|_| self.is_recording()) else {
            return;
        };
        let span = open.cx.span();
        span.set_attribute(KeyValue::new(
            format!("cognito_gate.{source}"),
            issuer.to_owned(),
        ));
        if open.active.record_subject {
            span.set_attribute(KeyValue::new("enduser.id", sub.to_owned()));
        }
    }

    /// Ends the server span with the request's outcome.
    pub fn end(&self, outcome: &Outcome<'_>) {
        let Some(open) = &self.0 else {
            return;
        };
        let span = open.cx.span();
        if span.is_recording() {
            let mut attributes = vec![
                KeyValue::new("cognito_gate.decision", outcome.decision),
                KeyValue::new("http.response.status_code", i64::from(outcome.status)),
                KeyValue::new("cognito_gate.rule", outcome.rule.to_owned()),
            ];
            if let Some(reason) = outcome.reason {
                attributes.push(KeyValue::new("cognito_gate.reason", reason.to_owned()));
            }
            span.set_attributes(attributes);
            // A server span is in error for a 5xx only: a 4xx is the client's.
            if outcome.status >= 500 {
                span.set_status(Status::error(outcome.reason.unwrap_or("").to_owned()));
            }
        }
        span.end();
    }

    /// Ends a client span (the app's answer, or a key fetch): `Ok` with the status
    /// it answered, or `(error.type, description)` of what stopped it.
    pub fn end_call(&self, result: Result<u16, (&'static str, &str)>) {
        let Some(open) = &self.0 else {
            return;
        };
        let span = open.cx.span();
        match result {
            Ok(status) => {
                span.set_attribute(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status),
                ));
                if status >= 400 {
                    span.set_status(Status::error(""));
                }
            }
            Err((kind, description)) => {
                span.set_attribute(KeyValue::new("error.type", kind));
                span.set_status(Status::error(description.to_owned()));
            }
        }
        span.end();
    }

    /// Adds one attribute, when the span is kept.
    pub fn note(&self, key: &'static str, value: i64) {
        if let Some(open) = &self.0 {
            open.cx.span().set_attribute(KeyValue::new(key, value));
        }
    }
}

/// What a request's server span is ended with (see [`RequestSpan::end`]).
pub struct Outcome<'a> {
    /// `allow`, `deny` or `preflight`.
    pub decision: &'static str,
    pub status: u16,
    /// The rule that decided, or `-`.
    pub rule: &'a str,
    /// Why the gate refused, in the refusal's own words; never the token.
    pub reason: Option<&'a str>,
}

pin_project_lite::pin_project! {
    /// A future run inside a span's context (see [`RequestSpan::scope`]).
    pub struct Scoped<F> {
        #[pin]
        future: F,
        cx: Option<Context>,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, task: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _attached = this.cx.as_ref().map(|cx| cx.clone().attach());
        this.future.poll(task)
    }
}

/// A request's headers, read as trace context.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        // An empty `tracestate` says nothing; it is not written.
        if value.is_empty() {
            return;
        }
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(key), HeaderValue::try_from(value)) {
            self.0.insert(name, value);
        }
    }
}
