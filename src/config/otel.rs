//! `[tracing]`, validated: each key, or when it is unset the standard `OTEL_*`
//! variable an OpenTelemetry SDK reads, or the default. Tracing is off unless a
//! collector is named (the key, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_ENDPOINT`), and `OTEL_SDK_DISABLED=true` or
//! `OTEL_TRACES_EXPORTER=none` turns it off whatever the file says.

use std::path::PathBuf;
use std::time::Duration;

use http::Uri;

use super::problems::Problems;
use super::raw::RawTracing;

/// Where the gate sends its spans, and which it keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// The collector's OTLP/gRPC endpoint: `http://` or `https://`, with a host.
    pub endpoint: Uri,
    pub sampling: Sampling,
    pub service_name: String,
    /// Whether a server span carries the caller's `sub` as `enduser.id`.
    pub record_subject: bool,
    /// Finished spans waiting for export; one more is dropped and counted.
    pub queue_size: usize,
    /// What an `https://` collector's certificate must chain to, instead of the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    pub export_timeout: Duration,
}

/// Which traces are recorded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// The share of new traces kept, from 0.0 to 1.0 (by trace id, so that every
    /// gate in a trace keeps the same ones).
    pub ratio: f64,
    /// Whether a continued trace is kept exactly when its parent was
    /// (`parentbased_*`), rather than by `ratio` too.
    pub follow_parent: bool,
}

/// The default, as an SDK's: `parentbased_always_on`.
const DEFAULT_SAMPLING: Sampling = Sampling {
    ratio: 1.0,
    follow_parent: true,
};

/// `[tracing]`, with `env` read for each unset key (`std::env::var` in the gate, a
/// table in the tests). `None`: tracing is off.
pub(super) fn convert_tracing(
    p: &mut Problems,
    raw: RawTracing,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<TracingConfig> {
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return None;
    }
    match env("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
        None | Some("otlp") => {}
        Some("none") => return None,
        Some(other) => {
            p.add(
                "tracing",
                format!("OTEL_TRACES_EXPORTER={other:?}: only \"otlp\" (or \"none\") is supported"),
            );
            return None;
        }
    }
    let (endpoint, endpoint_key) = match raw.otlp_endpoint.filter(|e| !e.trim().is_empty()) {
        Some(e) => (e, "tracing.otlp_endpoint"),
        None => match env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some(e) => (e, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            None => (
                env("OTEL_EXPORTER_OTLP_ENDPOINT")?,
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
        },
    };
    let before = p.0.len();
    let endpoint = match endpoint.trim().parse::<Uri>() {
        Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {
            Some(uri)
        }
        _ => {
            p.add(
                endpoint_key,
                format!("{endpoint:?} is not an http:// or https:// URL with a host (OTLP over gRPC, as http://collector:4317)"),
            );
            None
        }
    };
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(protocol) = env(name).filter(|v| v.trim() != "grpc") {
            p.add(
                "tracing",
                format!("{name}={protocol:?}: spans are sent over OTLP/gRPC only; unset it or say \"grpc\""),
            );
        }
    }
    let sampling = match raw.sampler_ratio {
        Some(ratio) => {
            if !(0.0..=1.0).contains(&ratio) {
                p.add("tracing.sampler_ratio", "must be from 0.0 to 1.0");
            }
            Sampling {
                ratio,
                follow_parent: true,
            }
        }
        None => sampling_from_env(
            p,
            env("OTEL_TRACES_SAMPLER").as_deref(),
            env("OTEL_TRACES_SAMPLER_ARG").as_deref(),
        ),
    };
    let service_name = raw
        .service_name
        .or_else(|| env("OTEL_SERVICE_NAME"))
        .unwrap_or_else(|| "cognito-gate".to_owned());
    if service_name.trim().is_empty() {
        p.add("tracing.service_name", "must not be empty");
    }
    if raw.queue_size == 0 {
        p.add("tracing.queue_size", "must be at least 1");
    }
    let ca_file = raw.ca_file.map(PathBuf::from);
    if let Some(file) = &ca_file {
        if let Err(e) = std::fs::read(file) {
            p.add("tracing.ca_file", format!("{}: {e}", file.display()));
        }
    }
    let export_timeout = match raw.export_timeout {
        Some(raw) => p.duration("tracing.export_timeout", &raw, Duration::from_millis(100)),
        None => timeout_from_env(p, &env),
    };
    let endpoint = endpoint?;
    (p.0.len() == before).then_some(TracingConfig {
        endpoint,
        sampling,
        service_name,
        record_subject: raw.record_subject,
        queue_size: raw.queue_size,
        ca_file,
        export_timeout,
    })
}

/// `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`, as the specification names
/// them; a ratio sampler without an argument keeps everything, as SDKs do.
fn sampling_from_env(p: &mut Problems, sampler: Option<&str>, arg: Option<&str>) -> Sampling {
    let mut ratio = || match arg.map(|a| a.trim().parse::<f64>()) {
        None => 1.0,
        Some(Ok(r)) if (0.0..=1.0).contains(&r) => r,
        Some(_) => {
            p.add(
                "tracing",
                format!(
                    "OTEL_TRACES_SAMPLER_ARG={:?} is not a ratio from 0.0 to 1.0",
                    arg.unwrap_or_default()
                ),
            );
            1.0
        }
    };
    let (ratio, follow_parent) = match sampler.map(str::trim) {
        None => return DEFAULT_SAMPLING,
        Some("always_on") => (1.0, false),
        Some("always_off") => (0.0, false),
        Some("traceidratio") => (ratio(), false),
        Some("parentbased_always_on") => (1.0, true),
        Some("parentbased_always_off") => (0.0, true),
        Some("parentbased_traceidratio") => (ratio(), true),
        Some(other) => {
            p.add(
                "tracing",
                format!("OTEL_TRACES_SAMPLER={other:?} is not one of always_on, always_off, traceidratio and their parentbased_ forms"),
            );
            return DEFAULT_SAMPLING;
        }
    };
    Sampling {
        ratio,
        follow_parent,
    }
}

/// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` or `OTEL_EXPORTER_OTLP_TIMEOUT`, in
/// milliseconds; 10 s without either, as the specification says.
fn timeout_from_env(p: &mut Problems, env: &dyn Fn(&str) -> Option<String>) -> Duration {
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ] {
        if let Some(text) = env(name) {
            return match text.trim().parse::<u64>() {
                Ok(ms) if ms >= 100 => Duration::from_millis(ms),
                _ => {
                    p.add(
                        "tracing",
                        format!("{name}={text:?} is not a number of milliseconds of at least 100"),
                    );
                    Duration::from_secs(10)
                }
            };
        }
    }
    Duration::from_secs(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::RawDuration;

    fn convert(
        raw: RawTracing,
        vars: &[(&str, &str)],
    ) -> Result<Option<TracingConfig>, Vec<String>> {
        let mut p = Problems(Vec::new());
        let env = |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        };
        let config = convert_tracing(&mut p, raw, &env);
        match p.0.is_empty() {
            true => Ok(config),
            false => Err(p.0),
        }
    }

    fn with_endpoint(endpoint: &str) -> RawTracing {
        RawTracing {
            otlp_endpoint: Some(endpoint.into()),
            ..RawTracing::default()
        }
    }

    #[test]
    fn tracing_is_off_until_a_collector_is_named_and_the_kill_switches_win() {
        assert_eq!(convert(RawTracing::default(), &[]), Ok(None));
        let on = convert(with_endpoint("http://collector:4317"), &[])
            .expect("valid")
            .expect("on");
        assert_eq!(on.endpoint, "http://collector:4317/");
        assert_eq!(on.sampling, DEFAULT_SAMPLING);
        assert_eq!(on.service_name, "cognito-gate");
        assert_eq!(on.queue_size, 2048);
        assert_eq!(on.export_timeout, Duration::from_secs(10));
        assert!(!on.record_subject);
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            assert_eq!(
                convert(with_endpoint("http://collector:4317"), &[off]),
                Ok(None),
                "{off:?}"
            );
        }
        let still_on = convert(
            with_endpoint("http://collector:4317"),
            &[
                ("OTEL_SDK_DISABLED", "false"),
                ("OTEL_TRACES_EXPORTER", "otlp"),
            ],
        );
        assert!(matches!(still_on, Ok(Some(_))), "{still_on:?}");
    }

    #[test]
    fn each_unset_key_falls_back_to_its_otel_variable() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://traces:4317"),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_SERVICE_NAME", "edge-gate"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ];
        let c = convert(RawTracing::default(), &vars)
            .expect("valid")
            .expect("on");
        assert_eq!(c.endpoint, "https://traces:4317/");
        assert_eq!(
            c.sampling,
            Sampling {
                ratio: 0.25,
                follow_parent: false
            }
        );
        assert_eq!(c.service_name, "edge-gate");
        assert_eq!(c.export_timeout, Duration::from_millis(2500));
        let c = convert(RawTracing::default(), &vars[..1])
            .expect("valid")
            .expect("on");
        assert_eq!(c.endpoint, "http://general:4317/");
        // The file's keys win over the variables.
        let raw = RawTracing {
            otlp_endpoint: Some("http://mine:4317".into()),
            sampler_ratio: Some(0.01),
            service_name: Some("gate-a".into()),
            export_timeout: Some(RawDuration::text("3s")),
            ..RawTracing::default()
        };
        let c = convert(raw, &vars).expect("valid").expect("on");
        assert_eq!(c.endpoint, "http://mine:4317/");
        assert_eq!(
            c.sampling,
            Sampling {
                ratio: 0.01,
                follow_parent: true
            }
        );
        assert_eq!(c.service_name, "gate-a");
        assert_eq!(c.export_timeout, Duration::from_secs(3));
    }

    #[test]
    fn every_standard_sampler_name_is_read() {
        for (sampler, arg, ratio, follow_parent) in [
            ("always_on", None, 1.0, false),
            ("always_off", None, 0.0, false),
            ("traceidratio", Some("0.5"), 0.5, false),
            ("traceidratio", None, 1.0, false),
            ("parentbased_always_on", None, 1.0, true),
            ("parentbased_always_off", None, 0.0, true),
            ("parentbased_traceidratio", Some("0.1"), 0.1, true),
        ] {
            let mut vars = vec![("OTEL_TRACES_SAMPLER", sampler)];
            vars.extend(arg.map(|a| ("OTEL_TRACES_SAMPLER_ARG", a)));
            let c = convert(with_endpoint("http://c:4317"), &vars)
                .expect(sampler)
                .expect("on");
            assert_eq!(
                c.sampling,
                Sampling {
                    ratio,
                    follow_parent
                },
                "{sampler}"
            );
        }
    }

    #[test]
    fn bad_values_name_their_key_or_variable() {
        let bad = |raw: RawTracing, vars: &[(&str, &str)], says: &str| {
            let problems = convert(raw, vars).expect_err(says);
            assert!(
                problems.iter().any(|p| p.contains(says)),
                "{says}: {problems:?}"
            );
        };
        bad(
            with_endpoint("collector:4317"),
            &[],
            "tracing.otlp_endpoint:",
        );
        bad(
            with_endpoint("grpc://collector:4317"),
            &[],
            "tracing.otlp_endpoint:",
        );
        bad(
            RawTracing::default(),
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "nowhere")],
            "OTEL_EXPORTER_OTLP_ENDPOINT:",
        );
        let ratio = RawTracing {
            sampler_ratio: Some(1.5),
            ..with_endpoint("http://c:4317")
        };
        bad(ratio, &[], "tracing.sampler_ratio:");
        let queue = RawTracing {
            queue_size: 0,
            ..with_endpoint("http://c:4317")
        };
        bad(queue, &[], "tracing.queue_size:");
        let ca = RawTracing {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..with_endpoint("https://c:4317")
        };
        bad(ca, &[], "tracing.ca_file:");
        let name = RawTracing {
            service_name: Some(" ".into()),
            ..with_endpoint("http://c:4317")
        };
        bad(name, &[], "tracing.service_name:");
        let e = || with_endpoint("http://c:4317");
        bad(
            e(),
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")],
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        );
        bad(
            e(),
            &[("OTEL_TRACES_EXPORTER", "zipkin")],
            "OTEL_TRACES_EXPORTER",
        );
        bad(
            e(),
            &[("OTEL_TRACES_SAMPLER", "xray")],
            "OTEL_TRACES_SAMPLER",
        );
        bad(
            e(),
            &[
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "2"),
            ],
            "OTEL_TRACES_SAMPLER_ARG",
        );
        bad(
            e(),
            &[("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")],
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        );
    }
}
