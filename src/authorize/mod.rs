//! The one decision core. The reverse proxy and every decision endpoint hand it the
//! request's method, raw path and headers; it answers with the canonical path to
//! forward, the rule that decided, and either the caller's identity or why not.
//! May import `policy`, `token`, `client`, `path`, `config`, `metrics` and `wire`;
//! nothing from `http`.

mod credentials;
mod state;

use credentials::alb_data;
pub use credentials::{Admission, Carrier};
pub use state::{JwksClient, State};

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use http::{HeaderMap, Method};

use crate::config::{CorsConfig, CorsPreflight};
use crate::cors::{self, Refusal};
use crate::metrics::Metrics;
use crate::path::{self, PathError};
use crate::policy::{normalize_host, Governing, Policy, RuleId};
use crate::revocation::{Denial, RevocationList};
use crate::token::{Identity, PoolId, Source, TokenError, Verified, VerifyError};
use crate::trace::Tracing;
use crate::wire::{forwarded_elements, upgrade_allowed, FORWARDED};

/// Why `authorize` refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the method must be an upper-case token (RFC 9110 §9.1)")]
    BadMethod,
    #[error("this method cannot be forwarded")]
    MethodNotAllowed,
    #[error("this protocol upgrade is not allowed (see allowed_upgrades)")]
    UpgradeNotAllowed,
    #[error("{0}")]
    BadPath(PathError),
    #[error("more than one Authorization header")]
    AmbiguousCredentials,
    #[error("no bearer token")]
    MissingToken,
    #[error("{0}")]
    InvalidToken(TokenError),
    /// Our fault, not the token's: the pool's signing keys could not be fetched.
    #[error("signing keys are unavailable")]
    KeysUnavailable,
    /// Our fault too: the system clock reads before the Unix epoch, so no token's
    /// `exp` can be judged (time 0 would pass every token).
    #[error("the system clock is before the Unix epoch")]
    ClockUnavailable,
    /// Our fault too: the revocation list is not loaded, or Redis has been away too
    /// long to trust it (`revocation.on_unavailable`).
    #[error("the revocation list is unavailable")]
    RevocationUnavailable,
    /// The token is valid, but its groups, scopes or claims do not satisfy the rule.
    #[error("the token's groups, scopes or claims are not allowed by the rule")]
    NotGranted,
    /// The rule is `allow = "nobody"`: refused whoever asks.
    #[error("the policy denies this request to everyone")]
    Denied,
    #[error("no policy rule matches this request")]
    NoMatchingRule,
    /// The policy has rules for named hosts, and the request names none that parses.
    #[error("the request names no valid host")]
    BadHost,
    /// The query names another method (`_method=DELETE`), which the app would run
    /// instead of the one the policy judged.
    #[error("a _method parameter in the query would override the request's method")]
    MethodOverride,
    /// Not a refusal: with `cors_preflight = "answer"` the gate answers an allowed
    /// CORS preflight itself (204), and it never reaches the app.
    #[error("a CORS preflight, answered by the gate")]
    PreflightAnswered,
    /// A CORS preflight that `[cors]` does not allow; it never reaches the app.
    #[error("{}", .0.text())]
    CorsRefused(Refusal),
}

/// Where "now" comes from. Injected so that tests can verify tokens that Cognito
/// issued years ago, at an instant inside their validity window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Clock {
    System,
    /// A fixed instant, in seconds since the Unix epoch.
    Fixed(f64),
}

impl Clock {
    /// Seconds since the Unix epoch; `None` when the system clock reads before it,
    /// which fails closed (a 503), never as time 0, at which every token is valid.
    pub fn now(&self) -> Option<f64> {
        match self {
            Clock::System => since_epoch(SystemTime::now()),
            Clock::Fixed(t) => Some(*t),
        }
    }
}

fn since_epoch(t: SystemTime) -> Option<f64> {
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs_f64())
}

/// What `authorize` needs to know about a request. The decision borrows only the path
/// (`'p`), so the caller may move the request once it has the answer.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'r, 'p> {
    pub method: &'r Method,
    /// The path as received, without the query.
    pub path: &'p str,
    /// The query as received, if any (read only for a method override in it).
    pub query: Option<&'r str>,
    /// The host the request is for (`Host` or `:authority`, as received), if known.
    pub host: Option<&'r str>,
    /// The headers as they will be forwarded, as far as `Upgrade` and `Authorization`
    /// go: the proxy drops an h2c offer before asking; a decision endpoint cannot.
    pub headers: &'r HeaderMap,
    /// Whether the app will also receive the `X-Forwarded-Host` in `headers`: the
    /// proxy keeps it from a trusted proxy. Host rules then require it to name the
    /// judged host, since an app may route by it (Django's `USE_X_FORWARDED_HOST`).
    pub forwarded_host_reaches_app: bool,
    /// Whether the app will also receive the RFC 7239 `Forwarded` header in `headers`:
    /// the proxy keeps it from a trusted proxy, and a decision endpoint's peer passes
    /// the client's on. Host rules then require every `host=` in it to name the judged
    /// host, since Spring, Quarkus and Micronaut route by it.
    pub forwarded_reaches_app: bool,
    /// Whether the caller can answer a CORS preflight with the gate's 204 (the proxy,
    /// and Envoy, which relays a denial as it is). `/auth` cannot: its peers forward
    /// on any 2xx, so there a preflight is judged by the policy.
    pub answers_preflight: bool,
}

/// Methods must be upper-case tokens: Werkzeug (Flask) upper-cases `delete` and runs
/// the DELETE view, while a rule for `DELETE` would not match it. `CONNECT` asks for a
/// tunnel and `TRACE` echoes credentials back (cross-site tracing): neither is
/// forwarded, as nginx refuses them too.
pub fn check_method(method: &Method) -> Result<(), AuthError> {
    if method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(AuthError::BadMethod);
    }
    if *method == Method::CONNECT || *method == Method::TRACE {
        return Err(AuthError::MethodNotAllowed);
    }
    Ok(())
}

/// The outcome, with the rule that produced it when one matched, and the verified
/// identity whenever a token was verified (also when the rule then refused it).
#[derive(Debug)]
pub struct Decision<'a> {
    pub rule: Option<RuleId>,
    pub identity: Option<Arc<Identity>>,
    /// On success, the canonical path: the one the policy judged and the one to forward.
    pub outcome: Result<Cow<'a, str>, AuthError>,
    /// How long a peer could reuse this allow: the time left until the token's `exp`.
    /// Only for an allow on a verified token whose one credential was the
    /// `Authorization` header, which a peer's cache key can hold, and only where no
    /// cookie or load balancer's header was read either. `None` for every refusal and
    /// every anonymous allow (see `authz.cache_max_age`).
    pub reusable_for: Option<Duration>,
}

impl Decision<'_> {
    pub(crate) fn refused(rule: Option<RuleId>, error: AuthError) -> Self {
        Decision {
            rule,
            identity: None,
            outcome: Err(error),
            reusable_for: None,
        }
    }

    /// An allow that needed no identity.
    fn anonymous(rule: Option<RuleId>, path: Cow<'_, str>) -> Decision<'_> {
        Decision {
            rule,
            identity: None,
            outcome: Ok(path),
            reusable_for: None,
        }
    }
}

/// Halfway through a decision: everything that needs no token is settled.
pub enum Judged<'p, 's> {
    /// Decided without a token: refused, or allowed by `anyone` rules alone.
    Done(Decision<'p>),
    /// Some governing rule needs an identity; [`conclude`] finishes with it.
    NeedsIdentity(Pending<'p, 's>),
}

/// A decision waiting for the caller's identity; it borrows the policy's rules.
pub struct Pending<'p, 's> {
    path: Cow<'p, str>,
    governing: Governing<'s>,
}

/// Whether every `X-Forwarded-Host` value (each header, each comma-separated entry)
/// names `judged`, or there is none. Without host rules (`judged` is None) any agrees.
fn forwarded_host_agrees(headers: &HeaderMap, judged: Option<&str>) -> bool {
    let Some(judged) = judged else {
        return true;
    };
    headers
        .get_all("x-forwarded-host")
        .iter()
        .all(|value| match value.to_str() {
            Ok(text) => text
                .split(',')
                .all(|entry| normalize_host(entry.trim()).as_deref() == Some(judged)),
            Err(_) => false,
        })
}

/// Whether every `host=` of every element of every `Forwarded` header names `judged`,
/// or there is none. A header that does not parse, or that a lax reader would read
/// otherwise (see [`forwarded_elements`]), names no host anyone can agree on. Without
/// host rules (`judged` is None) any agrees.
fn forwarded_header_agrees(headers: &HeaderMap, judged: Option<&str>) -> bool {
    let Some(judged) = judged else {
        return true;
    };
    if !headers.contains_key(FORWARDED) {
        return true;
    }
    forwarded_elements(headers).is_some_and(|elements| {
        elements
            .iter()
            .flatten()
            .filter(|pair| pair.name == "host")
            .all(|pair| normalize_host(&pair.value).as_deref() == Some(judged))
    })
}

/// The part of the decision that needs no token: method, upgrade, path, and the rules
/// of every reading of the path (see [`Policy::govern`]). Pure, so that the policy's
/// own tests and `explain` run exactly what a request runs.
pub fn judge<'p, 's>(
    policy: &'s Policy,
    admission: &Admission,
    req: RequestFacts<'_, 'p>,
) -> Judged<'p, 's> {
    if let Err(e) = check_method(req.method) {
        return Judged::Done(Decision::refused(None, e));
    }
    // Laravel, Symfony and Express's method-override run `POST /x?_method=DELETE` as
    // DELETE; the policy can only judge the method it is told.
    if req.query.is_some_and(path::query_overrides_method) {
        return Judged::Done(Decision::refused(None, AuthError::MethodOverride));
    }
    if !upgrade_allowed(req.headers, &admission.upgrades) {
        return Judged::Done(Decision::refused(None, AuthError::UpgradeNotAllowed));
    }
    let path = match path::canonicalize(req.path) {
        Ok(p) => p,
        Err(e) => return Judged::Done(Decision::refused(None, AuthError::BadPath(e))),
    };
    // A host with userinfo (`user@host`, in Host or an absolute-form target) is no host
    // (RFC 9110 §4.2.4), whatever the policy: an app could read either side of the `@`
    // as the host, and the proxy would forward it as Host.
    // Two Host headers (RFC 9112 §3.2: 400) would let the policy judge one host while
    // the app routes by the other.
    if req.host.is_some_and(|h| h.contains('@'))
        || req
            .headers
            .get_all(http::header::HOST)
            .iter()
            .nth(1)
            .is_some()
    {
        return Judged::Done(Decision::refused(None, AuthError::BadHost));
    }
    // Host rules need a host; without one a request could slip past a host-scoped rule
    // to a wider one.
    // Normalized only for a policy that reads it: no allocation on every request.
    let host = match policy.uses_hosts() {
        true => match req.host.and_then(normalize_host) {
            Some(host) => Some(host),
            None => return Judged::Done(Decision::refused(None, AuthError::BadHost)),
        },
        false => None,
    };
    let host = host.as_deref();
    if req.forwarded_host_reaches_app && !forwarded_host_agrees(req.headers, host) {
        return Judged::Done(Decision::refused(None, AuthError::BadHost));
    }
    if req.forwarded_reaches_app && !forwarded_header_agrees(req.headers, host) {
        return Judged::Done(Decision::refused(None, AuthError::BadHost));
    }
    if cors::is_preflight(req.method, req.headers) {
        let rule = || {
            policy
                .route_on(req.method, host, &path)
                .map(|r| r.id().clone())
        };
        match admission.cors_preflight {
            // A browser's preflight carries no credentials; with "pass" one that
            // carries nothing a handler could act on reaches the app, which answers
            // what it allows. Its path was canonicalized above, and identity headers
            // are stripped as on every request.
            CorsPreflight::Pass if cors::carries_only_preflight(req.headers) => {
                return Judged::Done(Decision::anonymous(rule(), path));
            }
            // With "answer" the gate answers it, allowed or not: the app never sees
            // an anonymous request to a protected path.
            CorsPreflight::Answer if req.answers_preflight => {
                let error = match admission.cors.as_deref() {
                    Some(config) => match cors::judge_preflight(config, req.headers) {
                        Ok(()) => AuthError::PreflightAnswered,
                        Err(refusal) => AuthError::CorsRefused(refusal),
                    },
                    None => AuthError::CorsRefused(Refusal::Origin),
                };
                return Judged::Done(Decision::refused(rule(), error));
            }
            _ => {}
        }
    }
    let Some(governing) = policy.govern_on(req.method, host, &path) else {
        return Judged::Done(Decision::refused(None, AuthError::NoMatchingRule));
    };
    if let Some(deny) = governing.rules().find(|r| r.denies_everyone()) {
        return Judged::Done(Decision::refused(
            Some(deny.id().clone()),
            AuthError::Denied,
        ));
    }
    if !governing.rules().any(|r| r.grant().needs_token()) {
        return Judged::Done(Decision::anonymous(
            governing.primary().map(|r| r.id().clone()),
            path,
        ));
    }
    Judged::NeedsIdentity(Pending { path, governing })
}

/// Finishes a decision with the caller's identity, or why there is none. The
/// strictest answer wins: a missing or bad token (logged against the first governing
/// rule that needs one), then the first governing rule whose grant or claim conditions
/// refuse the identity.
pub fn conclude<'p>(
    pending: Pending<'p, '_>,
    identity: Result<Arc<Identity>, AuthError>,
) -> Decision<'p> {
    let Pending { path, governing } = pending;
    let identity = match identity {
        Ok(identity) => identity,
        Err(e) => {
            let first_needing = governing.rules().find(|r| r.grant().needs_token());
            return Decision::refused(first_needing.map(|r| r.id().clone()), e);
        }
    };
    let (rule, outcome) = match governing
        .rules()
        .find(|r| !r.admits(Some(&identity), &path))
    {
        Some(refusing) => (Some(refusing.id().clone()), Err(AuthError::NotGranted)),
        None => (governing.primary().map(|r| r.id().clone()), Ok(path)),
    };
    Decision {
        rule,
        identity: Some(identity),
        outcome,
        reusable_for: None,
    }
}

/// The decision core: the current [`State`], the clock and the allowed upgrades.
/// Shared by the proxy and the decision endpoints, so that both answer every request
/// the same way.
pub struct Authorizer {
    state: ArcSwap<State>,
    clock: Clock,
    admission: Admission,
    metrics: Arc<Metrics>,
    /// `[revocation]`: checked for every verified token, remembered ones included.
    revocation: Option<Arc<RevocationList>>,
    /// The spans of every listener and key fetch (off without `[tracing]`).
    tracing: Tracing,
}

impl Authorizer {
    pub fn new(
        state: State,
        clock: Clock,
        admission: Admission,
        metrics: Arc<Metrics>,
        revocation: Option<Arc<RevocationList>>,
        tracing: Tracing,
    ) -> Self {
        Authorizer {
            state: ArcSwap::from_pointee(state),
            clock,
            admission,
            metrics,
            revocation,
            tracing,
        }
    }

    pub fn tracing(&self) -> &Tracing {
        &self.tracing
    }

    /// Where a verified identity's token came from, for its span: `("pool", user pool
    /// id)`, `("issuer", issuer URL)` or `("alb", region)`.
    pub fn source_of(&self, identity: &Identity) -> (&'static str, String) {
        let state = self.state();
        match identity.source {
            Source::Pool(PoolId(i)) => match state.pools.get(i) {
                Some(pool) => ("pool", pool.user_pool_id.clone()),
                None => (
                    "issuer",
                    state
                        .issuers
                        .get(i.saturating_sub(state.pools.len()))
                        .map(|issuer| issuer.issuer.clone())
                        .unwrap_or_default(),
                ),
            },
            Source::Alb(i) => (
                "alb",
                state
                    .alb
                    .as_ref()
                    .and_then(|alb| alb.albs().get(i))
                    .map(|alb| alb.region.clone())
                    .unwrap_or_default(),
            ),
        }
    }

    /// Now, by the decision's clock.
    pub fn now(&self) -> Option<f64> {
        self.clock.now()
    }

    /// The revocation list, when `[revocation]` is configured.
    pub fn revocation(&self) -> Option<&RevocationList> {
        self.revocation.as_deref()
    }

    /// Whether the clock can be read and the revocation list (if any) trusted now.
    pub fn revocation_ready(&self) -> bool {
        match (&self.revocation, self.clock.now()) {
            (None, _) => true,
            (Some(list), Some(now)) => list.ready(now),
            (Some(_), None) => false,
        }
    }

    /// The state requests are decided with now.
    pub fn state(&self) -> Arc<State> {
        self.state.load_full()
    }

    /// Puts `state` in place for every request that starts from now on.
    pub fn replace(&self, state: State) {
        self.state.store(Arc::new(state));
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// `[cors]`, when the gate answers preflights and writes the CORS headers.
    pub fn cors(&self) -> Option<&CorsConfig> {
        match self.admission.cors_preflight {
            CorsPreflight::Answer => self.admission.cors.as_deref(),
            _ => None,
        }
    }

    /// Checks the method and any upgrade, canonicalizes the path (refusing doubtful
    /// ones), finds the rule of every reading of the path (see [`Policy::govern`]),
    /// and, if one of them needs a token, verifies it and checks every rule's grant.
    pub async fn authorize<'p>(&self, req: RequestFacts<'_, 'p>) -> Decision<'p> {
        let state = self.state();
        let pending = match judge(&state.policy, &self.admission, req) {
            Judged::Done(decision) => return decision,
            Judged::NeedsIdentity(pending) => pending,
        };
        let Some(now) = self.clock.now() else {
            return conclude(pending, Err(AuthError::ClockUnavailable));
        };
        let identified = self
            .identify(&state, req.method, req.headers, now)
            .await
            .and_then(|found| self.unrevoked(found, now));
        let (identity, reusable_for) = match identified {
            Ok((verified, carrier)) => {
                let left = (verified.exp - now).max(0.0);
                // The peer's cache key holds the Authorization header, not the
                // cookies or the load balancer's header whose absence this decision
                // also relied on (two credentials are refused).
                let header_only = carrier == Carrier::AuthorizationHeader
                    && state.alb.is_none()
                    && !self.admission.reads_cookies(req.method);
                let reusable = header_only
                    .then(|| Duration::try_from_secs_f64(left).ok())
                    .flatten();
                (Ok(verified.identity), reusable)
            }
            Err(e) => (Err(e), None),
        };
        let mut decision = conclude(pending, identity);
        if decision.outcome.is_ok() {
            decision.reusable_for = reusable_for;
        }
        decision
    }

    /// `verified`, unless the revocation list refuses it. A load balancer's header is
    /// not checked: the load balancer keeps its own session and re-signs it per request.
    fn unrevoked(
        &self,
        (verified, carrier): (Verified, Carrier),
        now: f64,
    ) -> Result<(Verified, Carrier), AuthError> {
        let Some(list) = &self.revocation else {
            return Ok((verified, carrier));
        };
        if carrier == Carrier::LoadBalancer {
            return Ok((verified, carrier));
        }
        let id = &verified.identity;
        let issued_at = id.revocable.issued_at.map(|t| t as f64);
        match list.check(id.revocable.family.as_deref(), &id.sub, issued_at, now) {
            Ok(()) => Ok((verified, carrier)),
            Err(Denial::Revoked | Denial::SignedOut) => {
                Err(AuthError::InvalidToken(TokenError::Revoked))
            }
            Err(Denial::Unavailable) => Err(AuthError::RevocationUnavailable),
        }
    }

    /// The caller's verified token, and where it was found.
    async fn identify(
        &self,
        state: &State,
        method: &Method,
        headers: &HeaderMap,
        now: f64,
    ) -> Result<(Verified, Carrier), AuthError> {
        let from_verify = |e| match e {
            VerifyError::Token(e) => AuthError::InvalidToken(e),
            VerifyError::KeysUnavailable => AuthError::KeysUnavailable,
        };
        if let Some(alb) = &state.alb {
            if let Some(data) = alb_data(headers)? {
                // One credential per request: a bearer token beside the load
                // balancer's claims could name someone else.
                if !matches!(
                    self.admission.token(method, headers),
                    Err(AuthError::MissingToken)
                ) {
                    return Err(AuthError::AmbiguousCredentials);
                }
                let verified = alb.verify(data, now).await.map_err(from_verify)?;
                return Ok((verified, Carrier::LoadBalancer));
            }
        }
        let token = self.admission.token(method, headers)?;
        let verified = state
            .verifier
            .verify(token.text, &state.keys, now)
            .await
            .map_err(from_verify)?;
        Ok((verified, token.carrier))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn a_clock_before_the_epoch_is_no_time_at_all() {
        let after = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(since_epoch(after), Some(1_700_000_000.0));
        assert_eq!(since_epoch(UNIX_EPOCH), Some(0.0));
        assert_eq!(since_epoch(UNIX_EPOCH - Duration::from_secs(1)), None);
        assert_eq!(Clock::Fixed(5.0).now(), Some(5.0));
        assert!(Clock::System.now().is_some_and(|t| t > 1.7e9));
    }

    use super::*;
    use http::HeaderValue;

    #[test]
    fn methods_must_be_upper_case_and_forwardable() {
        for ok in [
            "GET",
            "DELETE",
            "PATCH",
            "PROPFIND",
            "M-SEARCH",
            "VERSION-CONTROL",
        ] {
            let m = Method::from_bytes(ok.as_bytes()).expect("method");
            assert_eq!(check_method(&m), Ok(()), "{ok}");
        }
        for bad in [
            "delete", "Delete", "DeLeTe", "get", "put", "post", "connect", "pAtCh",
        ] {
            let m = Method::from_bytes(bad.as_bytes()).expect("method");
            assert_eq!(check_method(&m), Err(AuthError::BadMethod), "{bad}");
        }
        for refused in [Method::CONNECT, Method::TRACE] {
            assert_eq!(
                check_method(&refused),
                Err(AuthError::MethodNotAllowed),
                "{refused}"
            );
        }
    }

    #[test]
    fn a_preflight_passes_only_when_asked_and_only_as_a_preflight() {
        let policy = Policy::from_toml("[[rule]]\npath = \"/api/**\"\nallow = \"authenticated\"\n")
            .expect("policy");
        let pass = Admission {
            cors_preflight: CorsPreflight::Pass,
            ..Admission::default()
        };
        let answer = Admission {
            cors_preflight: CorsPreflight::Answer,
            cors: Some(Arc::new(CorsConfig {
                allowed_origins: vec!["https://app.example.com".into()],
                allowed_methods: vec![Method::PUT],
                allowed_headers: vec![],
                expose_headers: vec![],
                allow_credentials: false,
                max_age: std::time::Duration::ZERO,
            })),
            ..Admission::default()
        };
        // `None`: the token decides; `Some(Ok)`: forwarded without one.
        let decide = |admission: &Admission,
                      method: Method,
                      headers: &[(&'static str, &'static str)],
                      answers_preflight: bool| {
            let mut h = HeaderMap::new();
            for (k, v) in headers {
                h.insert(*k, HeaderValue::from_static(v));
            }
            let facts = RequestFacts {
                method: &method,
                path: "/api/x",
                query: None,
                forwarded_host_reaches_app: false,
                forwarded_reaches_app: false,
                answers_preflight,
                host: None,
                headers: &h,
            };
            match judge(&policy, admission, facts) {
                Judged::Done(d) => Some(d.outcome.map(|_| ())),
                Judged::NeedsIdentity(_) => None,
            }
        };
        let preflight = [
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "PUT"),
        ];
        assert_eq!(
            decide(&pass, Method::OPTIONS, &preflight, true),
            Some(Ok(()))
        );
        // Needs a token: the policy decides, not the preflight rule.
        assert_eq!(
            decide(&Admission::default(), Method::OPTIONS, &preflight, true),
            None
        );
        assert_eq!(decide(&pass, Method::OPTIONS, &preflight[..1], true), None);
        assert_eq!(decide(&pass, Method::OPTIONS, &preflight[1..], true), None);
        assert_eq!(decide(&pass, Method::PUT, &preflight, true), None);
        // A preflight with anything a handler could act on is judged like any request.
        for extra in [
            ("cookie", "s=1"),
            ("content-length", "3"),
            ("x-api-key", "k"),
        ] {
            let mut with = preflight.to_vec();
            with.push(extra);
            assert_eq!(
                decide(&pass, Method::OPTIONS, &with, true),
                None,
                "{extra:?}"
            );
        }
        // "answer": the gate answers every preflight, never forwards one.
        assert_eq!(
            decide(&answer, Method::OPTIONS, &preflight, true),
            Some(Err(AuthError::PreflightAnswered))
        );
        let put_from_elsewhere = [("origin", "https://evil.example"), preflight[1]];
        assert_eq!(
            decide(&answer, Method::OPTIONS, &put_from_elsewhere, true),
            Some(Err(AuthError::CorsRefused(Refusal::Origin)))
        );
        // Where it cannot answer (`/auth`), the policy decides.
        assert_eq!(decide(&answer, Method::OPTIONS, &preflight, false), None);
    }
}
