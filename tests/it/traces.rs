//! OpenTelemetry traces, received by a real OTLP/gRPC collector: a tonic server built
//! on the `opentelemetry-proto` service definitions, which keeps every span it is
//! sent. Each test reads the spans as a collector stores them: ids, parents, kinds,
//! attributes and the resource.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::process::{eventually, metric};
use crate::common::*;
use crate::grpc::check_request;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// One span as the collector got it.
#[derive(Debug, Clone)]
pub(crate) struct Got {
    pub name: String,
    pub kind: SpanKind,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    attributes: HashMap<String, String>,
    /// The resource's attributes (`service.name`, ...).
    resource: HashMap<String, String>,
    /// `Status.code`: 0 unset, 1 ok, 2 error.
    status: i32,
}

impl Got {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

/// The collector's side: every span of every export request.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Got>>>,
    requests: Arc<Mutex<usize>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        *self.requests.lock().unwrap() += 1;
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let resource = text(
                &resource_spans
                    .resource
                    .map(|r| r.attributes)
                    .unwrap_or_default(),
            );
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(Got {
                        kind: span.kind(),
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        attributes: text(&span.attributes),
                        resource: resource.clone(),
                        status: span.status.map_or(0, |s| s.code),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A running OTLP receiver on loopback; stops when dropped.
pub(crate) struct Receiver {
    addr: std::net::SocketAddr,
    collector: Collector,
    _stop: oneshot::Sender<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Receiver::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    fn start_on(listener: TcpListener) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let collector = Collector::default();
        let (stop, stopped) = oneshot::channel::<()>();
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(tokio_stream_of(listener), async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Receiver {
            addr,
            collector,
            _stop: stop,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn spans(&self) -> Vec<Got> {
        self.collector.spans.lock().unwrap().clone()
    }

    /// Waits (the gate sends a batch a second after its first span) until a span
    /// matches `wanted`.
    pub async fn span(&self, what: &str, wanted: impl Fn(&Got) -> bool) -> Got {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(span) = self.spans().into_iter().find(&wanted) {
                return span;
            }
            assert!(
                Instant::now() < deadline,
                "the collector never got {what}: {:#?}",
                self.spans()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The trace id and parent span id of a `traceparent` value.
fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[0], "00", "{traceparent}");
    (parts[1].to_owned(), parts[2].to_owned())
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn traceparent() -> String {
    format!("00-{TRACE}-{PARENT}-01")
}

/// GETs `url` with `token`, in the trace [`traceparent`] with `tracestate`; the status.
async fn get_in_trace(url: &str, token: &str, tracestate: &str) -> u16 {
    let parent = traceparent();
    let headers = [
        ("authorization", token),
        ("traceparent", parent.as_str()),
        ("tracestate", tracestate),
    ];
    get(url, &headers).await.0
}

/// Waits until the gate has counted a batch the collector did not take.
async fn export_failed(gate: &Gate, what: &str) {
    eventually(Duration::from_secs(20), what, || async {
        metric(
            gate.admin,
            "cognito_gate_trace_spans_dropped_total{reason=\"export_failed\"}",
        )
        .await
        .is_some_and(|n| n >= 1.0)
    })
    .await;
}

fn tracing_table(receiver: &Receiver, extra: &str) -> String {
    format!(
        "[tracing]\notlp_endpoint = \"{}\"\n{extra}\n",
        receiver.endpoint()
    )
}

#[tokio::test]
async fn a_trusted_proxys_trace_is_continued_through_the_gate_to_the_app() {
    let receiver = Receiver::start().await;
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let top = format!(
        "trusted_proxies = [\"127.0.0.1/32\"]\n{}",
        tracing_table(
            &receiver,
            "record_subject = true\nservice_name = \"edge-gate\""
        )
    );
    let gate = Gate::start(&config(&upstream.url(), &jwks.url(), &top), POLICY).await;
    gate.wait_ready(Duration::from_secs(10)).await;

    // A token signed with a key the JWKS does not have yet: the request's refetch is
    // a span of its own, child of the request's.
    jwks.set_keys(&[key_a(), key_b()]);
    let alice = bearer(key_b(), "alice", &["admins"]);
    let parent = traceparent();
    let status = get_in_trace(
        &gate.url("/admin/reports?secret=query"),
        &alice,
        "vendor=kept",
    )
    .await;
    assert_eq!(status, 200);
    let seen = upstream.last();
    let app_parent = seen
        .header("traceparent")
        .expect("the app is told the trace");
    let (app_trace, app_parent_id) = ids(&app_parent);
    assert_eq!(app_trace, TRACE, "the app continues the proxy's trace");
    assert_ne!(app_parent_id, PARENT, "the app's parent is the gate's span");
    assert!(app_parent.ends_with("-01"), "sampled: {app_parent}");
    assert_eq!(seen.header("tracestate").as_deref(), Some("vendor=kept"));

    let server = receiver
        .span("the proxy's server span", |s| s.name == "proxy GET")
        .await;
    assert_eq!(server.kind, SpanKind::Server);
    assert_eq!(server.trace_id, TRACE);
    assert_eq!(server.parent_span_id, PARENT);
    assert_eq!(server.attr("cognito_gate.endpoint"), Some("proxy"));
    assert_eq!(server.attr("cognito_gate.decision"), Some("allow"));
    assert_eq!(server.attr("cognito_gate.rule"), Some("admin"));
    assert_eq!(server.attr("http.response.status_code"), Some("200"));
    assert_eq!(server.attr("http.request.method"), Some("GET"));
    assert_eq!(server.attr("url.path"), Some("/admin/reports"));
    assert_eq!(server.attr("cognito_gate.pool"), Some(POOL));
    assert_eq!(server.attr("enduser.id"), Some("alice"));
    assert_eq!(
        server.resource.get("service.name").map(String::as_str),
        Some("edge-gate")
    );
    let everything = format!("{:?}", receiver.spans());
    assert!(!everything.contains(&alice[7..]), "a span holds the token");
    assert!(
        !everything.contains("secret=query"),
        "a span holds the query"
    );

    let call = receiver
        .span("the upstream call's span", |s| s.name == "upstream GET")
        .await;
    assert_eq!(call.kind, SpanKind::Client);
    assert_eq!(call.trace_id, TRACE);
    assert_eq!(call.parent_span_id, server.span_id);
    assert_eq!(
        call.span_id, app_parent_id,
        "the app's parent is the call's span"
    );
    assert_eq!(call.attr("http.response.status_code"), Some("200"));
    assert_eq!(
        call.attr("server.address")
            .map(|a| a.contains(&upstream.addr.to_string())),
        Some(true)
    );

    let refetch = receiver
        .span("the request's key fetch", |s| {
            s.name == "jwks fetch" && s.trace_id == TRACE
        })
        .await;
    assert_eq!(refetch.kind, SpanKind::Client);
    assert_eq!(refetch.parent_span_id, server.span_id);
    assert_eq!(refetch.attr("cognito_gate.pool"), Some(POOL));
    assert_eq!(refetch.attr("url.full"), Some(jwks.url().as_str()));
    assert_eq!(refetch.attr("cognito_gate.keys"), Some("2"));
    // The first fetch, at start, belongs to no request: a trace of its own.
    let first = receiver
        .span("the start-up key fetch", |s| {
            s.name == "jwks fetch" && s.trace_id != TRACE
        })
        .await;
    assert!(first.parent_span_id.is_empty(), "{first:?}");
    assert_eq!(first.attr("http.response.status_code"), Some("200"));

    // A refusal is a span too, with the reason and no subject.
    let (status, _, _) = get(&gate.url("/admin/x"), &[("traceparent", &parent)]).await;
    assert_eq!(status, 401);
    let denied = receiver
        .span("the refusal's span", |s| {
            s.name == "proxy GET" && s.attr("cognito_gate.decision") == Some("deny")
        })
        .await;
    assert_eq!(denied.attr("http.response.status_code"), Some("401"));
    assert_eq!(denied.attr("cognito_gate.reason"), Some("no bearer token"));
    assert_eq!(denied.attr("enduser.id"), None);
    assert_eq!(denied.status, 0, "a 4xx is not the server's error");
    assert_eq!(
        metric(
            gate.admin,
            "cognito_gate_trace_spans_dropped_total{reason=\"queue_full\"}"
        )
        .await,
        None
    );
}

#[tokio::test]
async fn an_untrusted_clients_trace_is_not_continued_and_the_subject_is_left_out() {
    let receiver = Receiver::start().await;
    let (gate, upstream, _jwks) = stack_with(&tracing_table(&receiver, "")).await;
    let alice = bearer(key_a(), "alice", &["admins"]);
    let status = get_in_trace(&gate.url("/admin/x"), &alice, "forged=1").await;
    assert_eq!(status, 200);
    let seen = upstream.last();
    let (app_trace, _) = ids(&seen
        .header("traceparent")
        .expect("a fresh trace for the app"));
    assert_ne!(app_trace, TRACE, "a client's trace id reached the app");
    assert_eq!(
        seen.header("tracestate"),
        None,
        "a client's tracestate reached the app"
    );
    let server = receiver
        .span("the server span", |s| s.name == "proxy GET")
        .await;
    assert_eq!(server.trace_id, app_trace);
    assert!(server.parent_span_id.is_empty(), "{server:?}");
    assert_eq!(
        server.attr("enduser.id"),
        None,
        "record_subject is off by default"
    );
    assert_eq!(
        server.resource.get("service.name").map(String::as_str),
        Some("cognito-gate")
    );
    assert!(receiver.spans().iter().all(|s| s.trace_id != TRACE));
}

#[tokio::test]
async fn decision_endpoints_and_grpc_ext_authz_continue_the_peers_trace() {
    let receiver = Receiver::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let (gate, _upstream) =
        crate::grpc::grpc_gate_with(&jwks.url(), &tracing_table(&receiver, "")).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let alice = bearer(key_a(), "alice", &["admins"]);

    // nginx auth_request / Traefik / Caddy: `/auth`.
    let auth_trace = "11111111111111111111111111111111";
    let (status, _, _) = get(
        &format!("http://{}/auth", gate.authz),
        &[
            ("authorization", &alice),
            ("x-original-method", "GET"),
            ("x-original-uri", "/admin/x?q=1"),
            ("traceparent", &format!("00-{auth_trace}-{PARENT}-01")),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let span = receiver
        .span("the /auth decision's span", |s| s.trace_id == auth_trace)
        .await;
    assert_eq!(span.name, "forward_auth GET");
    assert_eq!(span.kind, SpanKind::Server);
    assert_eq!(span.parent_span_id, PARENT);
    assert_eq!(span.attr("url.path"), Some("/admin/x"));
    assert_eq!(span.attr("cognito_gate.decision"), Some("allow"));
    assert_eq!(span.attr("cognito_gate.rule"), Some("admin"));

    // Envoy over gRPC: its trace is in the call's metadata; the client's headers
    // inside the CheckRequest are not Envoy's and are not continued.
    let grpc_trace = "22222222222222222222222222222222";
    let client_trace = "33333333333333333333333333333333";
    let mut client = AuthorizationClient::new(crate::grpc::channel(&gate).await);
    let mut request = tonic::Request::new(check_request(
        "DELETE",
        "/admin/x",
        &[
            ("authorization", &alice),
            ("traceparent", &format!("00-{client_trace}-{PARENT}-01")),
        ],
        false,
    ));
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{grpc_trace}-{PARENT}-01").parse().unwrap(),
    );
    client.check(request).await.unwrap();
    let span = receiver
        .span("the gRPC Check's span", |s| s.trace_id == grpc_trace)
        .await;
    assert_eq!(span.name, "ext_authz_grpc DELETE");
    assert_eq!(span.parent_span_id, PARENT);
    assert_eq!(span.attr("cognito_gate.endpoint"), Some("ext_authz_grpc"));
    assert_eq!(span.attr("http.response.status_code"), Some("200"));
    assert!(receiver.spans().iter().all(|s| s.trace_id != client_trace));
}

/// A collector that accepts connections and never answers: each export hangs for
/// the whole `tracing.export_timeout`.
async fn black_hole() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_collector_that_hangs_or_is_gone_never_holds_up_a_request_and_drops_are_counted() {
    let (hole, _held) = black_hole().await;
    let extra = format!(
        "[tracing]\notlp_endpoint = \"http://{hole}\"\nqueue_size = 16\nexport_timeout = \"3s\"\n"
    );
    let (gate, _upstream, _jwks) = stack_with(&extra).await;
    let alice = bearer(key_a(), "alice", &["admins"]);
    // The first batch goes out a second after its first span, and hangs.
    let (status, _, _) = get(&gate.url("/admin/x"), &[("authorization", &alice)]).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Meanwhile every request is answered at once: the queue fills and overflows.
    let mut slowest = Duration::ZERO;
    for _ in 0..100 {
        let asked = Instant::now();
        let (status, _, _) = get(&gate.url("/admin/x"), &[("authorization", &alice)]).await;
        assert_eq!(status, 200);
        slowest = slowest.max(asked.elapsed());
    }
    // Far below the 3 s an export waits: no request waited for one.
    assert!(
        slowest < Duration::from_secs(1),
        "a request took {slowest:?}"
    );
    let full = metric(
        gate.admin,
        "cognito_gate_trace_spans_dropped_total{reason=\"queue_full\"}",
    )
    .await
    .unwrap_or_default();
    // 200 spans (a server span and a call span each) into a queue of 16.
    assert!(full >= 184.0, "{full} spans dropped for a full queue");
    // The hung batch times out and is counted too.
    export_failed(&gate, "the hung batch counted as failed").await;
    assert_eq!(
        metric(gate.admin, "cognito_gate_trace_spans_exported_total").await,
        Some(0.0)
    );
}

#[tokio::test]
async fn a_collector_that_comes_and_goes_loses_only_what_was_sent_while_it_was_gone() {
    let receiver = Receiver::start().await;
    let addr = receiver.addr;
    let (gate, _upstream, _jwks) =
        stack_with(&tracing_table(&receiver, "export_timeout = \"1s\"")).await;
    let alice = bearer(key_a(), "alice", &["admins"]);
    let (status, _, _) = get(&gate.url("/admin/x"), &[("authorization", &alice)]).await;
    assert_eq!(status, 200);
    receiver
        .span("the first request's span", |s| s.name == "proxy GET")
        .await;
    drop(receiver);
    // The receiver is gone: connections are refused, requests still pass.
    for _ in 0..20 {
        let (status, _, _) = get(&gate.url("/admin/x"), &[("authorization", &alice)]).await;
        assert_eq!(status, 200);
    }
    export_failed(&gate, "the lost batch counted").await;
    let exported = metric(gate.admin, "cognito_gate_trace_spans_exported_total")
        .await
        .unwrap_or_default();
    assert!(exported >= 2.0, "{exported}");
    // Back on the same address: the next spans are exported again.
    let receiver = Receiver::start_on(TcpListener::bind(addr).await.unwrap());
    let (status, _, _) = get(&gate.url("/public/back"), &[]).await;
    assert_eq!(status, 200);
    receiver
        .span("a span after the collector came back", |s| {
            s.attr("url.path") == Some("/public/back")
        })
        .await;
}
