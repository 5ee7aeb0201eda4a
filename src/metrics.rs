//! The Prometheus metrics of one gate, served on the admin listener's `/metrics`.
//!
//! One [`Metrics`] per running gate (not a process global), so that two gates in one
//! process, as in the tests, count apart. Label sets are built from `&'static str`,
//! integers and shared `Arc<str>` rule names, so recording a request allocates nothing
//! once its label set has been seen.
//! Bottom floor: imports nothing of the gate's own.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Metric, Registry, Unit};

/// The version and the git commit the binary was built from.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Set by `build.rs`: the git commit, or "unknown".
pub const COMMIT: &str = env!("GATE_BUILD_COMMIT");

/// The content type of the text exposition format `encode` writes (OpenMetrics 1.0,
/// which Prometheus, the OpenTelemetry collector and VictoriaMetrics all read).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `proxy`, `forward_auth`, `ext_authz` or `ext_authz_grpc`.
    pub endpoint: &'static str,
    /// `allow` or `deny`.
    pub decision: &'static str,
    pub status: u16,
    /// The rule that decided, or `-` when none did.
    pub rule: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `connect`, `timeout` or `body`.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FetchLabels {
    pub pool: Arc<str>,
    /// `success` or `error`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// `revoked`, `signed_out` or `unavailable`; for dropped spans, `queue_full` or
    /// `export_failed`.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `success` or `error`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// `proxy`, `authz`, `grpc` or `admin`.
    pub listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerResultLabels {
    pub listener: &'static str,
    /// `success` or `error`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

/// Buckets from 50 µs to 10 s: the gate's own time is tens of microseconds with a
/// cached token and a millisecond or so for a first RSA verification.
fn gate_buckets() -> impl Iterator<Item = f64> {
    [
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
        1.0, 2.5, 5.0, 10.0,
    ]
    .into_iter()
}

/// Buckets from 1 ms to 60 s for the app's answers.
fn upstream_buckets() -> impl Iterator<Item = f64> {
    [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ]
    .into_iter()
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric of one gate.
pub struct Metrics {
    registry: Registry,
    /// Every metric's name as a query names it, and its type.
    listed: Vec<(String, &'static str)>,
    no_rule: Arc<str>,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: HistogramFamily<EndpointLabels>,
    pub upstream_duration: Histogram,
    pub upstream_errors: Family<KindLabels, Counter>,
    pub jwks_fetches: Family<FetchLabels, Counter>,
    pub jwks_keys: Family<PoolLabels, Gauge>,
    pub jwks_last_success: Family<PoolLabels, Gauge<f64, AtomicU64>>,
    pub token_cache_hits: Counter,
    pub token_cache_misses: Counter,
    pub token_cache_entries: Gauge,
    pub reloads: Family<ResultLabels, Counter>,
    pub reloads_deferred: Counter,
    pub in_flight: Gauge,
    pub log_lines_dropped: Counter,
    pub revocation_entries: Gauge,
    pub revocation_sync_age: Gauge<f64, AtomicU64>,
    pub revocation_reconnects: Counter,
    pub revocation_refusals: Family<ReasonLabels, Counter>,
    pub revocation_malformed: Counter,
    pub tls_certificate_expiry: Family<ListenerLabels, Gauge>,
    pub tls_reloads: Family<ListenerResultLabels, Counter>,
    pub tls_handshake_errors: Family<ListenerLabels, Counter>,
    pub trace_spans_exported: Counter,
    trace_spans_dropped: Family<ReasonLabels, Counter>,
}

/// Every metric's name starts with this.
const PREFIX: &str = "cognito_gate";

/// The registry being filled, and the name and type of each metric put in it.
struct Catalog {
    registry: Registry,
    listed: Vec<(String, &'static str)>,
}

impl Catalog {
    /// Registers `metric`, and lists it under the name a query uses: with its unit,
    /// and a counter's `_total` or an info's `_info`.
    fn add<M: Metric + TypedMetric>(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        metric: M,
    ) {
        let mut queried = format!("{PREFIX}_{name}");
        if let Some(unit) = &unit {
            queried = format!("{queried}_{}", unit.as_str());
        }
        let kind = match M::TYPE {
            MetricType::Counter => {
                queried.push_str("_total");
                "counter"
            }
            MetricType::Info => {
                queried.push_str("_info");
                "info"
            }
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Unknown => "unknown",
        };
        self.listed.push((queried, kind));
        match unit {
            Some(unit) => self.registry.register_with_unit(name, help, unit, metric),
            None => self.registry.register(name, help, metric),
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut catalog = Catalog {
            registry: Registry::with_prefix(PREFIX),
            listed: Vec::new(),
        };
        let requests = Family::<RequestLabels, Counter>::default();
        catalog.add(
            "requests",
            "Requests answered, by endpoint, decision, status and deciding rule",
            None,
            requests.clone(),
        );
        let request_duration: HistogramFamily<EndpointLabels> =
            Family::new_with_constructor(|| Histogram::new(gate_buckets()));
        catalog.add(
            "request_duration",
            "The gate's own time per request, without the upstream's",
            Some(Unit::Seconds),
            request_duration.clone(),
        );
        let upstream_duration = Histogram::new(upstream_buckets());
        catalog.add(
            "upstream_duration",
            "Time until the upstream's response headers",
            Some(Unit::Seconds),
            upstream_duration.clone(),
        );
        let upstream_errors = Family::<KindLabels, Counter>::default();
        catalog.add(
            "upstream_errors",
            "Requests the upstream failed: connect, timeout, or a cut-off body",
            None,
            upstream_errors.clone(),
        );
        let jwks_fetches = Family::<FetchLabels, Counter>::default();
        catalog.add(
            "jwks_fetches",
            "JWKS downloads per pool, by result",
            None,
            jwks_fetches.clone(),
        );
        let jwks_keys = Family::<PoolLabels, Gauge>::default();
        catalog.add(
            "jwks_keys",
            "Keys in the pool's current key set",
            None,
            jwks_keys.clone(),
        );
        let jwks_last_success = Family::<PoolLabels, Gauge<f64, AtomicU64>>::default();
        catalog.add(
            "jwks_last_success_timestamp_seconds",
            "Unix time of the pool's last good JWKS download",
            None,
            jwks_last_success.clone(),
        );
        let token_cache_hits = Counter::default();
        catalog.add(
            "token_cache_hits",
            "Tokens found already verified",
            None,
            token_cache_hits.clone(),
        );
        let token_cache_misses = Counter::default();
        catalog.add(
            "token_cache_misses",
            "Tokens whose signature had to be verified",
            None,
            token_cache_misses.clone(),
        );
        let token_cache_entries = Gauge::default();
        catalog.add(
            "token_cache_entries",
            "Verified tokens remembered",
            None,
            token_cache_entries.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        catalog.add(
            "reloads",
            "Reloads of the policy and the pools, by result",
            None,
            reloads.clone(),
        );
        let reloads_deferred = Counter::default();
        catalog.add(
            "reloads_deferred",
            "Reloads postponed because a file written in place was still changing",
            None,
            reloads_deferred.clone(),
        );
        let in_flight = Gauge::default();
        catalog.add(
            "in_flight_requests",
            "Requests being handled now",
            None,
            in_flight.clone(),
        );
        let log_lines_dropped = Counter::default();
        catalog.add(
            "log_lines_dropped",
            "Log lines dropped because the log writer could not keep up",
            None,
            log_lines_dropped.clone(),
        );
        let revocation_entries = Gauge::default();
        catalog.add(
            "revocation_entries",
            "Revoked token families and signed-out users held in memory",
            None,
            revocation_entries.clone(),
        );
        let revocation_sync_age = Gauge::<f64, AtomicU64>::default();
        catalog.add(
            "revocation_sync_age",
            "Time since the revocation list last heard from Redis",
            Some(Unit::Seconds),
            revocation_sync_age.clone(),
        );
        let revocation_reconnects = Counter::default();
        catalog.add(
            "revocation_reconnects",
            "Connections to the revocation list's Redis lost and made again",
            None,
            revocation_reconnects.clone(),
        );
        let revocation_refusals = Family::<ReasonLabels, Counter>::default();
        catalog.add(
            "revocation_refusals",
            "Tokens refused by the revocation list, by reason",
            None,
            revocation_refusals.clone(),
        );
        let revocation_malformed = Counter::default();
        catalog.add(
            "revocation_malformed_entries",
            "Revocation entries in Redis that were skipped as malformed",
            None,
            revocation_malformed.clone(),
        );
        catalog.add(
            "build",
            "The running version and git commit",
            None,
            Info::new(BuildLabels {
                version: VERSION,
                commit: COMMIT,
            }),
        );
        let tls_certificate_expiry = Family::<ListenerLabels, Gauge>::default();
        catalog.add(
            "tls_certificate_expiry_timestamp_seconds",
            "Unix time at which the certificate a TLS listener serves expires (its notAfter)",
            None,
            tls_certificate_expiry.clone(),
        );
        let tls_reloads = Family::<ListenerResultLabels, Counter>::default();
        catalog.add(
            "tls_reloads",
            "Reloads of a TLS listener's certificate and key, by result (an error keeps the old pair)",
            None,
            tls_reloads.clone(),
        );
        let tls_handshake_errors = Family::<ListenerLabels, Counter>::default();
        catalog.add(
            "tls_handshake_errors",
            "TLS handshakes that failed on a listener (no common protocol, an untrusted or missing client certificate, plaintext sent to a TLS port)",
            None,
            tls_handshake_errors.clone(),
        );
        let trace_spans_exported = Counter::default();
        catalog.add(
            "trace_spans_exported",
            "Spans the OpenTelemetry collector accepted",
            None,
            trace_spans_exported.clone(),
        );
        let trace_spans_dropped = Family::<ReasonLabels, Counter>::default();
        catalog.add(
            "trace_spans_dropped",
            "Spans that were never exported: the queue was full (queue_full), or the collector did not take their batch (export_failed)",
            None,
            trace_spans_dropped.clone(),
        );
        Metrics {
            registry: catalog.registry,
            listed: catalog.listed,
            no_rule: Arc::from("-"),
            requests,
            request_duration,
            upstream_duration,
            upstream_errors,
            jwks_fetches,
            jwks_keys,
            jwks_last_success,
            token_cache_hits,
            token_cache_misses,
            token_cache_entries,
            reloads,
            reloads_deferred,
            in_flight,
            log_lines_dropped,
            revocation_entries,
            revocation_sync_age,
            revocation_reconnects,
            revocation_refusals,
            revocation_malformed,
            tls_certificate_expiry,
            tls_reloads,
            tls_handshake_errors,
            trace_spans_exported,
            trace_spans_dropped,
        }
    }

    /// Counts `count` spans lost for `reason` (`queue_full` or `export_failed`).
    pub fn trace_spans_dropped(&self, reason: &'static str, count: u64) {
        self.trace_spans_dropped
            .get_or_create(&ReasonLabels { reason })
            .inc_by(count);
    }

    /// Counts a TLS listener's reload; a good one also sets its expiry.
    pub fn record_tls_reload(&self, listener: &'static str, outcome: Result<i64, ()>) {
        let result = match outcome {
            Ok(not_after) => {
                self.set_tls_expiry(listener, not_after);
                "success"
            }
            Err(()) => "error",
        };
        self.tls_reloads
            .get_or_create(&ListenerResultLabels { listener, result })
            .inc();
    }

    pub fn set_tls_expiry(&self, listener: &'static str, not_after: i64) {
        self.tls_certificate_expiry
            .get_or_create(&ListenerLabels { listener })
            .set(not_after);
    }

    /// Counts one answered request and the gate's own time on it.
    pub fn record_request(&self, labels: &RequestLabels, own_time: Duration) {
        self.requests.get_or_create(labels).inc();
        self.request_duration
            .get_or_create(&EndpointLabels {
                endpoint: labels.endpoint,
            })
            .observe(own_time.as_secs_f64());
    }

    /// The `rule` label of a request no rule decided.
    /// Counts a token the revocation list refused.
    pub fn revocation_refusal(&self, reason: &'static str) {
        self.revocation_refusals
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn no_rule(&self) -> Arc<str> {
        self.no_rule.clone()
    }

    /// Drops the series of a pool that is no longer configured, so that a dashboard
    /// does not show a removed pool's last keys forever.
    pub fn forget_pool(&self, pool: &str) {
        let pool: Arc<str> = Arc::from(pool);
        let labels = PoolLabels { pool: pool.clone() };
        self.jwks_keys.remove(&labels);
        self.jwks_last_success.remove(&labels);
        for result in ["success", "error"] {
            self.jwks_fetches.remove(&FetchLabels {
                pool: pool.clone(),
                result,
            });
        }
    }

    /// Counts a reload.
    pub fn record_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "error" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// A request is being handled until the returned guard is dropped.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// The text exposition of every metric.
    /// Every metric's name as a query names it (`cognito_gate_requests_total`), and
    /// its OpenMetrics type: also those no request has touched yet, which `render`
    /// leaves out.
    pub fn listed(&self) -> impl Iterator<Item = (&str, &'static str)> {
        self.listed
            .iter()
            .map(|(name, kind)| (name.as_str(), *kind))
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Decrements `cognito_gate_in_flight_requests` when dropped.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_name_is_exposed() {
        let m = Metrics::new();
        m.record_request(
            &RequestLabels {
                endpoint: "proxy",
                decision: "allow",
                status: 200,
                rule: Arc::from("admin"),
            },
            Duration::from_micros(30),
        );
        m.upstream_duration.observe(0.01);
        m.upstream_errors
            .get_or_create(&KindLabels { kind: "connect" })
            .inc();
        let pool = PoolLabels {
            pool: Arc::from("eu-west-1_Abc"),
        };
        m.jwks_fetches
            .get_or_create(&FetchLabels {
                pool: pool.pool.clone(),
                result: "success",
            })
            .inc();
        m.jwks_keys.get_or_create(&pool).set(2);
        m.jwks_last_success.get_or_create(&pool).set(1.7e9);
        m.record_reload(false);
        let _busy = m.in_flight();
        let text = m.render();
        for line in [
            r#"cognito_gate_requests_total{endpoint="proxy",decision="allow",status="200",rule="admin"} 1"#,
            r#"cognito_gate_request_duration_seconds_count{endpoint="proxy"} 1"#,
            "cognito_gate_upstream_duration_seconds_count 1",
            r#"cognito_gate_upstream_errors_total{kind="connect"} 1"#,
            r#"cognito_gate_jwks_fetches_total{pool="eu-west-1_Abc",result="success"} 1"#,
            r#"cognito_gate_jwks_keys{pool="eu-west-1_Abc"} 2"#,
            r#"cognito_gate_jwks_last_success_timestamp_seconds{pool="eu-west-1_Abc"} 1700000000.0"#,
            "cognito_gate_token_cache_hits_total 0",
            "cognito_gate_token_cache_misses_total 0",
            "cognito_gate_token_cache_entries 0",
            r#"cognito_gate_reloads_total{result="error"} 1"#,
            "cognito_gate_in_flight_requests 1",
            "cognito_gate_log_lines_dropped_total 0",
            &format!(r#"cognito_gate_build_info{{version="{VERSION}",commit="{COMMIT}"}} 1"#),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        drop(_busy);
        assert!(m.render().contains("cognito_gate_in_flight_requests 0"));
        m.forget_pool("eu-west-1_Abc");
        assert!(!m.render().contains("eu-west-1_Abc"));
    }

    #[test]
    fn the_metrics_reference_lists_every_metric_with_its_type_and_nothing_else() {
        let metrics = Metrics::new();
        let mut listed: Vec<(String, String)> = metrics
            .listed()
            .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
            .collect();
        listed.sort();
        // What is rendered is listed (the list is the registry's own).
        for line in metrics.render().lines() {
            if let Some(family) = line
                .strip_prefix("# TYPE ")
                .and_then(|r| r.split(' ').next())
            {
                assert!(
                    listed.iter().any(|(name, _)| name.starts_with(family)),
                    "{family} is rendered and not listed"
                );
            }
        }
        let mut documented = Vec::new();
        for row in crate::manual::rows("reference/metrics.md", "metric") {
            let kind = row[1]
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            for name in crate::manual::code_spans(&row[0]) {
                documented.push((name.to_owned(), kind.clone()));
            }
        }
        documented.sort();
        assert_eq!(documented, listed, "docs/reference/metrics.md");
    }
}
