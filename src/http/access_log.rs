//! The access log, and the one answer-and-log path that the proxy and the decision
//! endpoints share: every request ends in [`record`], which writes its line (the
//! proxy's through [`respond`], which also writes the refusal).

use std::time::{Duration, Instant};

use http::{Response, StatusCode};

use super::answer::GateBody;
use super::forwarded::{Address, Client};
use crate::authorize::AuthError;
use crate::metrics::{Metrics, RequestLabels};
use crate::policy::RuleId;
use crate::rejection::{Fault, Rejection};
use crate::trace::{Outcome, RequestSpan};

/// What is known about a request when it is answered.
pub(crate) struct Served<'a> {
    /// `proxy`, `forward_auth`, `ext_authz`, `ext_authz_grpc`, or `authz` before the
    /// endpoint is known.
    pub endpoint: &'static str,
    /// For decisions, the original method and path.
    pub method: &'a str,
    pub path: &'a str,
    pub rule: Option<&'a RuleId>,
    pub sub: Option<&'a str>,
    pub started: Instant,
    /// Time spent waiting for the upstream's answer: not the gate's own.
    pub upstream: Duration,
    /// Who asked, and the request id, once known.
    pub client: Option<&'a Client>,
    pub metrics: &'a Metrics,
    /// A gRPC request (`content-type: application/grpc...`): refused the way gRPC
    /// clients understand.
    pub grpc: bool,
    /// The request's server span, ended here with the outcome.
    pub span: &'a RequestSpan,
}

/// Turns the proxy's outcome into the response and writes the request's access-log
/// line. `allowed` is what the policy decided: a request it allowed may still fail at
/// the upstream, and is still logged as allowed.
pub(crate) fn respond(
    served: Served<'_>,
    allowed: bool,
    outcome: Result<Response<GateBody>, Rejection>,
) -> Response<GateBody> {
    match outcome {
        Ok(response) => {
            record(&served, allowed, Ok(response.status()));
            response
        }
        Err(rejection) => {
            let response = match served.grpc {
                true => rejection.grpc_response(),
                false => rejection.response(served.client.map(Client::request_id)),
            };
            record(&served, allowed, Err(&rejection));
            response
        }
    }
}

/// Counts a request and writes its access-log line: answered with `status`, or
/// refused, logged and counted with the status the refusal stands for (also when a
/// gRPC client is told it in grpc-status under HTTP 200).
pub(crate) fn record(served: &Served<'_>, allowed: bool, outcome: Result<StatusCode, &Rejection>) {
    // An answered preflight is neither: the gate answered it for the app.
    let decision = match (outcome, allowed) {
        (_, true) => "allow",
        (Err(Rejection::Auth(AuthError::PreflightAnswered)), _) => "preflight",
        _ => "deny",
    };
    let (status, fault, reason) = match outcome {
        Ok(status) => (status, None, None),
        Err(rejection) => {
            let answer = rejection.answer();
            // The refusal's own words, never the token: "token has been revoked".
            (
                answer.status,
                Some(answer.fault),
                Some(rejection.to_string()),
            )
        }
    };
    let elapsed = served.started.elapsed();
    served.span.end(&Outcome {
        decision,
        status: status.as_u16(),
        rule: served.rule.map_or("-", |rule| &**rule.label()),
        reason: reason.as_deref(),
    });
    served.metrics.record_request(
        &RequestLabels {
            endpoint: served.endpoint,
            decision,
            status: status.as_u16(),
            rule: match served.rule {
                Some(rule) => rule.label().clone(),
                None => served.metrics.no_rule(),
            },
        },
        elapsed.saturating_sub(served.upstream),
    );
    access_log(&AccessLine {
        endpoint: served.endpoint,
        decision,
        fault,
        method: served.method,
        path: served.path,
        status,
        rule: served.rule,
        sub: served.sub,
        client: served.client.map(|c| c.address.clone()),
        request_id: served.client.map(Client::request_id),
        reason: reason.as_deref(),
        elapsed,
    });
}

/// The fields of the one structured line written per request.
struct AccessLine<'a> {
    endpoint: &'a str,
    /// What the policy decided: `allow` (an allowed request may still fail at the
    /// upstream), `deny`, or `preflight` (answered by the gate).
    decision: &'static str,
    /// Whose fault the gate's own error answer was; `None` when the answer is the
    /// app's (or the decision endpoint's "allow"), whatever its status.
    fault: Option<Fault>,
    method: &'a str,
    path: &'a str,
    status: StatusCode,
    rule: Option<&'a RuleId>,
    sub: Option<&'a str>,
    client: Option<Address>,
    request_id: Option<&'a str>,
    /// Why the gate refused the request; `None` when it did not.
    reason: Option<&'a str>,
    elapsed: Duration,
}

/// Writes the access-log line. Answers from the app and denials by the client's own
/// doing stay at info like every access line; our own faults are errors, the
/// upstream's warnings.
fn access_log(line: &AccessLine<'_>) {
    let decision = line.decision;
    let rule: &dyn std::fmt::Display = match line.rule {
        Some(rule) => rule,
        None => &"-",
    };
    // A number in JSON, to the microsecond.
    let latency_ms = (line.elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0;
    let client: &dyn std::fmt::Display = match &line.client {
        Some(ip) => ip,
        None => &"-",
    };
    macro_rules! emit {
        ($level:expr) => {
            tracing::event!(
                target: "cognito_gate::access",
                $level,
                endpoint = line.endpoint,
                method = line.method,
                path = line.path,
                status = line.status.as_u16(),
                decision,
                rule = %rule,
                sub = line.sub.unwrap_or("-"),
                client = %client,
                request_id = line.request_id.unwrap_or("-"),
                reason = line.reason.unwrap_or("-"),
                latency_ms,
                "request"
            )
        };
    }
    match line.fault {
        None | Some(Fault::Client) => emit!(tracing::Level::INFO),
        Some(Fault::Upstream) => emit!(tracing::Level::WARN),
        Some(Fault::Ours) => emit!(tracing::Level::ERROR),
    }
}
