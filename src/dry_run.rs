//! Decisions without a request: the policy's `[[test]]` tables, run through the same
//! decision core as every request (`authorize::judge` and `conclude`) and judged by
//! the same status mapping (`rejection`), at `check`, at start-up and on every reload;
//! and `cognito-gate explain`, which shows how one request is decided.
//! Same floor as `http`: may import `authorize`, `rejection` and every floor below;
//! nothing from `http`.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use http::{HeaderMap, Method};

use crate::authorize::{conclude, judge, Admission, AuthError, Decision, Judged, RequestFacts};
use crate::config::ProblemList;
use crate::path;
use crate::policy::{Expect, Policy, PolicyError, PolicyTest};
use crate::rejection::Rejection;
use crate::token::{Claim, Claims, Identity, PoolId, Source, TokenUse};

/// Loads a policy file and runs its tests: what `check`, `run` and a reload use.
pub fn load_policy(file: &Path) -> Result<Policy, PolicyError> {
    let policy = Policy::load(file)?;
    run_tests(&policy)?;
    Ok(policy)
}

/// Runs every `[[test]]` of `policy`; the error names each failing test, the answer
/// it got, and the rule that decided.
pub fn run_tests(policy: &Policy) -> Result<(), PolicyError> {
    let failures: Vec<String> = policy
        .tests()
        .iter()
        .filter_map(|test| {
            let (status, decision) = evaluate(policy, test);
            let passed = match test.expect {
                Expect::Allow => status == 200,
                Expect::Deny => status != 200,
                Expect::Status(want) => status == want,
            };
            (!passed).then(|| {
                let decided = match &decision.rule {
                    Some(rule) => format!("rule {} ({}) decided", rule.number, rule),
                    None => "no rule decided".to_owned(),
                };
                let why = match &decision.outcome {
                    Ok(_) => "allowed".to_owned(),
                    Err(e) => e.to_string(),
                };
                let on = test
                    .host
                    .as_ref()
                    .map_or(String::new(), |h| format!(" on {h}"));
                format!(
                    "test {} ({} {}{on} {}): expected {}, got {status}: {decided}: {why}",
                    test.number,
                    test.method,
                    test.path,
                    caller(test),
                    test.expect,
                )
            })
        })
        .collect();
    match failures.is_empty() {
        true => Ok(()),
        false => Err(ProblemList::policy(failures)),
    }
}

/// `as anonymous`, `as groups [a, b]`, `as scopes [s]`, `as a user in no group`, then
/// any claims: `with claims {"custom:tenant": "acme"}`.
fn caller(test: &PolicyTest) -> String {
    if test.anonymous {
        return "as anonymous".into();
    }
    let who = who(test);
    match test.claims.is_empty() {
        true => who,
        false => format!("{who} with claims {}", claims_text(&test.claims)),
    }
}

/// `{"custom:tenant": "acme", "email_verified": true}`.
fn claims_text(claims: &[Claim]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = claims
        .iter()
        .map(|(n, v)| (n.to_string(), v.clone()))
        .collect();
    serde_json::Value::Object(map).to_string()
}

fn who(test: &PolicyTest) -> String {
    match (test.groups.is_empty(), test.scopes.is_empty()) {
        (true, true) => "as a user in no group".into(),
        (false, true) => format!("as groups [{}]", test.groups.join(", ")),
        (true, false) => format!("as scopes [{}]", test.scopes.join(", ")),
        (false, false) => format!(
            "as groups [{}] with scopes [{}]",
            test.groups.join(", "),
            test.scopes.join(", ")
        ),
    }
}

/// The identity a test or `explain` speaks for.
fn synthetic(groups: &[String], scopes: &[String], claims: &[Claim]) -> Identity {
    Identity {
        sub: "policy-test".into(),
        groups: groups.to_vec(),
        scopes: scopes.to_vec(),
        token_use: TokenUse::Access,
        client_id: "policy-test".into(),
        source: Source::Pool(PoolId(0)),
        claims: Claims::new(claims.to_vec()),
        revocable: Default::default(),
    }
}

/// The status a client would get for `decision`.
pub fn status_of(decision: &Decision<'_>) -> u16 {
    match &decision.outcome {
        Ok(_) => 200,
        Err(e) => Rejection::Auth(e.clone()).answer().status.as_u16(),
    }
}

fn evaluate<'t>(policy: &Policy, test: &'t PolicyTest) -> (u16, Decision<'t>) {
    let Ok(method) = Method::from_bytes(test.method.as_bytes()) else {
        let decision = Decision::refused(None, AuthError::BadMethod);
        return (status_of(&decision), decision);
    };
    let identity = match test.anonymous {
        true => Err(AuthError::MissingToken),
        false => Ok(synthetic(&test.groups, &test.scopes, &test.claims)),
    };
    let decision = decide(policy, &method, test.host.as_deref(), &test.path, identity);
    (status_of(&decision), decision)
}

/// The decision for a request with this method, path and caller.
fn decide<'p>(
    policy: &Policy,
    method: &Method,
    host: Option<&str>,
    path: &'p str,
    identity: Result<Identity, AuthError>,
) -> Decision<'p> {
    let (path, query) = match path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path, None),
    };
    let headers = HeaderMap::new();
    let facts = RequestFacts {
        method,
        path,
        query,
        host,
        headers: &headers,
        forwarded_host_reaches_app: false,
        forwarded_reaches_app: false,
        answers_preflight: false,
    };
    match judge(policy, &Admission::default(), facts) {
        Judged::Done(decision) => decision,
        Judged::NeedsIdentity(pending) => conclude(pending, identity.map(Arc::new)),
    }
}

/// Who `explain` asks for.
pub enum Caller {
    Anonymous,
    /// Groups, scopes and other claims given on the command line.
    Claims {
        groups: Vec<String>,
        scopes: Vec<String>,
        claims: Vec<Claim>,
    },
    /// The identity a real token verified to, or why it did not.
    Token(Result<Identity, AuthError>),
}

/// `cognito-gate explain`: the canonical path (or why the path is refused), each rule
/// tried in order and why it did not match, then the rule that matched, its grant,
/// and the status a client would get.
pub fn explain(
    policy: &Policy,
    method: &str,
    host: Option<&str>,
    raw_path: &str,
    caller: Caller,
) -> String {
    let mut out = String::new();
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        let _ = writeln!(out, "method {method:?}: not an HTTP method\nstatus 400");
        return out;
    };
    let path_only = raw_path.split_once('?').map_or(raw_path, |(p, _)| p);
    match path::canonicalize(path_only) {
        Ok(canonical) => {
            let _ = match host {
                Some(host) => writeln!(out, "request  {method} {raw_path} (host {host})"),
                None => writeln!(out, "request  {method} {raw_path}"),
            };
            let normalized = host.and_then(crate::policy::normalize_host);
            let _ = writeln!(
                out,
                "path     {canonical} (canonical: what the app receives)"
            );
            let mut matched = false;
            for rule in policy.rules() {
                let label = format!("rule {:>2} {:<24}", rule.id().number, rule.id().to_string());
                match rule.mismatch(&method, normalized.as_deref(), &canonical) {
                    Some(why) if !matched => {
                        let _ = writeln!(out, "  {label} no: {why}");
                    }
                    None if !matched => {
                        matched = true;
                        let _ = writeln!(out, "  {label} MATCHES -> {}", rule_text(rule));
                    }
                    _ => {}
                }
            }
            if !matched {
                let _ = writeln!(out, "  no rule matches: denied");
            }
            if let Some(governing) = policy.govern_on(&method, normalized.as_deref(), &canonical) {
                let rules: Vec<String> = governing.rules().map(|r| r.id().to_string()).collect();
                if rules.len() > 1 {
                    let _ = writeln!(
                        out,
                        "readings the app may also read this path case-insensitively or without its trailing '/': rules {} all govern it, and all must allow",
                        rules.join(", ")
                    );
                }
            }
        }
        Err(e) => {
            let _ = writeln!(out, "request  {method} {raw_path}");
            let _ = writeln!(out, "path     refused: {e}");
        }
    }
    let identity = match caller {
        Caller::Anonymous => {
            let _ = writeln!(out, "caller   anonymous (no token)");
            Err(AuthError::MissingToken)
        }
        Caller::Claims {
            groups,
            scopes,
            claims,
        } => {
            let _ = write!(
                out,
                "caller   groups [{}], scopes [{}]",
                groups.join(", "),
                scopes.join(", ")
            );
            if !claims.is_empty() {
                let _ = write!(out, ", claims {}", claims_text(&claims));
            }
            let _ = writeln!(out);
            Ok(synthetic(&groups, &scopes, &claims))
        }
        Caller::Token(identity) => {
            match &identity {
                Ok(id) => {
                    let _ = write!(
                        out,
                        "caller   sub {}, groups [{}], scopes [{}]",
                        id.sub,
                        id.groups.join(", "),
                        id.scopes.join(", ")
                    );
                    let claims: Vec<_> = id.claims.iter().cloned().collect();
                    if !claims.is_empty() {
                        let _ = write!(out, ", claims {}", claims_text(&claims));
                    }
                    let _ = writeln!(out, " (from the token)");
                }
                Err(e) => {
                    let _ = writeln!(out, "caller   token refused: {e}");
                }
            }
            identity
        }
    };
    let decision = decide(policy, &method, host, raw_path, identity);
    let rule = decision
        .rule
        .as_ref()
        .map_or("-".to_owned(), |r| format!("{} ({r})", r.number));
    let verdict = match &decision.outcome {
        Ok(_) => "allow".to_owned(),
        Err(e) => format!("deny: {e}"),
    };
    let _ = writeln!(out, "decided  by rule {rule}: {verdict}");
    let _ = writeln!(out, "status   {}", status_of(&decision));
    out
}

/// A grant in words, for summaries.
pub fn grant_text(grant: &crate::policy::Grant) -> String {
    use crate::policy::Grant;
    match grant {
        Grant::Anyone => "anyone".to_owned(),
        Grant::Authenticated => "any signed-in user".to_owned(),
        Grant::AnyGroup(g) => format!("any of groups {}", g.join(", ")),
        Grant::AllGroups(g) => format!("all of groups {}", g.join(", ")),
        Grant::AnyScope(s) => format!("any of scopes {}", s.join(", ")),
        Grant::Nobody => "nobody (an explicit deny)".to_owned(),
    }
}

/// A rule's grant and its claim conditions in words: `any signed-in user, with claims
/// custom:tenant = {tenant}, email_verified = true`.
pub fn rule_text(rule: &crate::policy::Rule) -> String {
    use crate::policy::{Piece, Want};
    let grant = match rule.host() {
        Some(host) => format!("{} (host {host})", grant_text(rule.grant())),
        None => grant_text(rule.grant()),
    };
    if rule.conditions().is_empty() {
        return grant;
    }
    let conditions: Vec<String> = rule
        .conditions()
        .iter()
        .map(|c| {
            let want = match &c.want {
                Want::Value(v) => v.to_string(),
                Want::Template(pieces) => pieces
                    .iter()
                    .map(|p| match p {
                        Piece::Text(t) => t.clone(),
                        Piece::Capture { name, .. } => format!("{{{name}}}"),
                    })
                    .collect(),
            };
            format!("{} = {want}", c.claim)
        })
        .collect();
    format!("{grant}, with claims {}", conditions.join(", "))
}

/// Verifies `token` against `config`'s pools step by step, fetching the pool's keys,
/// and says what each step found. For `explain --token`; the token is never printed.
pub async fn explain_token(
    config: &crate::config::Config,
    policy: &Policy,
    token: &str,
    now: f64,
) -> (String, Result<Identity, AuthError>) {
    use crate::token::{KeyStore, Verifier};
    let mut out = String::new();
    let verifier = Verifier::new(&config.pools, config.max_token_bytes, 0)
        .with_issuers(&config.issuers)
        .keeping(policy.claim_names());
    let unverified = match verifier.parse(token) {
        Ok(u) => u,
        Err(e) => {
            let _ = writeln!(out, "token    1. shape, header and issuer: refused: {e}");
            return (out, Err(AuthError::InvalidToken(e)));
        }
    };
    let index = unverified.pool.0;
    let issuer = config.issuers.get(index.wrapping_sub(config.pools.len()));
    let (source, keys_url) = match (config.pools.get(index), issuer) {
        (Some(p), _) => (format!("pool {}", p.user_pool_id), p.jwks_url.to_string()),
        (None, Some(i)) => (
            format!("issuer {}", i.issuer),
            format!("the jwks_uri of {}", i.discovery_url),
        ),
        (None, None) => ("?".to_owned(), String::new()),
    };
    let _ = writeln!(
        out,
        "token    1. shape, header and issuer: ok: {:?}, kid {:?}, {source}",
        unverified.alg, unverified.kid,
    );
    let client = match crate::client::jwks_connector(crate::client::ProxyAware::from_env(
        config.jwks.fetch_timeout,
    )) {
        Ok(c) => crate::client::client(c, config.jwks.fetch_timeout),
        Err(e) => {
            let _ = writeln!(out, "token    2. signing keys: cannot set up TLS: {e}");
            return (out, Err(AuthError::KeysUnavailable));
        }
    };
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
    let (keys, _refreshers) = KeyStore::start(
        &config.pools,
        &config.issuers,
        &config.jwks,
        client,
        metrics,
        crate::trace::Tracing::off(),
        None,
    )
    .await;
    let key = match keys.find(unverified.pool, &unverified.kid).await {
        Ok(key) => key,
        Err(e) => {
            let (why, error) = match e {
                crate::token::KeyLookupError::UnknownKeyId => (
                    "the pool's key set has no key with this kid",
                    AuthError::InvalidToken(crate::token::TokenError::UnknownKeyId),
                ),
                crate::token::KeyLookupError::Unavailable => (
                    "the pool's JWKS could not be fetched",
                    AuthError::KeysUnavailable,
                ),
            };
            let url = keys_url;
            let _ = writeln!(out, "token    2. signing key from {url}: {why}");
            return (out, Err(error));
        }
    };
    let _ = writeln!(out, "token    2. signing key: found");
    match verifier.finish(unverified, &key, now) {
        Ok(verified) => {
            let _ = writeln!(
                out,
                "token    3. signature, exp/nbf, token_use, client id: ok ({:?} token, client {})",
                verified.identity.token_use, verified.identity.client_id
            );
            (out, Ok(Arc::unwrap_or_clone(verified.identity)))
        }
        Err(e) => {
            let _ = writeln!(
                out,
                "token    3. signature, exp/nbf, token_use, client id: refused: {e}"
            );
            (out, Err(AuthError::InvalidToken(e)))
        }
    }
}

/// For `check`: each `[[issuers]]` entry's discovery document, fetched now. The
/// `jwks_uri` each names, or every problem, each naming its issuer.
pub async fn discover_issuers(config: &crate::config::Config) -> Result<Vec<String>, ProblemList> {
    if config.issuers.is_empty() {
        return Ok(Vec::new());
    }
    let timeout = config.jwks.fetch_timeout;
    let client = crate::client::jwks_connector(crate::client::ProxyAware::from_env(timeout))
        .map(|c| crate::client::client(c, timeout))
        .map_err(|e| ProblemList::config(vec![format!("cannot set up TLS: {e}")]))?;
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for (i, issuer) in config.issuers.iter().enumerate() {
        let limit = config.jwks.max_response_bytes;
        match crate::token::check_discovery(&client, issuer, limit, timeout).await {
            Ok(jwks) => found.push(jwks.to_string()),
            Err(e) => problems.push(format!(
                "issuers[{i}] ({}): discovery at {} failed: {e}",
                issuer.issuer, issuer.discovery_url
            )),
        }
    }
    match problems.is_empty() {
        true => Ok(found),
        false => Err(ProblemList::config(problems)),
    }
}
