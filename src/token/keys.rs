//! Each pool's signing keys: fetched at start-up, refreshed periodically, refetched on
//! an unknown `kid` at most once per cooldown, and cached with moka.
//!
//! Two moka caches do the work, and neither needs a lock held across an `.await`:
//! - `current` maps a pool to its last good [`KeySet`]. A refresh replaces the whole
//!   set at once, and only after it parsed completely, so a bad download is never
//!   half-applied and a failed refresh leaves the old keys serving.
//! - `refetched` is the penalty box, like aws-jwt-verify's: an entry per pool that
//!   lives for the cooldown. `get_with` runs one refetch for all concurrent misses,
//!   and while the entry lives, further misses reuse its outcome instead of fetching.

use crate::trace::{RequestSpan, Tracing};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::{header, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use jsonwebtoken::DecodingKey;
use moka::future::Cache;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::task::JoinHandle;

use super::identity::PoolId;
use crate::backoff::Backoff;
use crate::client::{error_chain, own_jwks_client, JwksClient, JwksConnector};
use crate::config::{IssuerConfig, JwksConfig, PoolConfig};
use crate::metrics::{FetchLabels, Metrics, PoolLabels};

/// RSA moduli below 2048 bits are refused (NIST SP 800-131A); Cognito uses 2048.
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// One key of a JWKS, with what the verifier must check before using it.
#[derive(Debug)]
pub struct Key {
    pub kty: String,
    /// The JWK's `use`, if it has one. Only "sig" may verify tokens.
    pub use_: Option<String>,
    /// The JWK's `alg`, if it has one. It must equal the token header's `alg`.
    pub alg: Option<String>,
    /// The RSA public key, or `None` when the key is not an RSA key of usable size.
    pub rsa: Option<DecodingKey>,
    /// The P-256 public key of an `EC` key on curve `P-256` (for ES256); `None` for
    /// any other key or curve.
    pub ec: Option<DecodingKey>,
    /// SHA-256 over everything above, so that a key republished under the same `kid`
    /// with other material (or another `use` or `alg`) is a different key.
    pub fingerprint: [u8; 32],
}

/// A complete, validated key set, keyed by `kid`.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: HashMap<String, Arc<Key>>,
}

impl KeySet {
    /// The key with this `kid`, shared so that a refresh can replace the set meanwhile.
    pub fn get(&self, kid: &str) -> Option<Arc<Key>> {
        self.keys.get(kid).cloned()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether both sets hold the same keys under the same ids.
    fn same_keys(&self, other: &KeySet) -> bool {
        self.keys.len() == other.keys.len()
            && self.keys.iter().all(|(kid, key)| {
                other
                    .keys
                    .get(kid)
                    .is_some_and(|o| o.fingerprint == key.fingerprint)
            })
    }
}

/// Why a JWKS download was not applied.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JwksError {
    #[error("request failed: {0}")]
    Request(String),
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    #[error("answered HTTP {0}")]
    Status(StatusCode),
    #[error("response is larger than {0} bytes")]
    TooLarge(usize),
    #[error("malformed key set: {0}")]
    Malformed(String),
}

impl JwksError {
    /// A word for the kind of failure: a span's `error.type`.
    fn kind(&self) -> &'static str {
        match self {
            JwksError::Request(_) => "request",
            JwksError::Timeout(_) => "timeout",
            JwksError::Status(_) => "status",
            JwksError::TooLarge(_) => "too_large",
            JwksError::Malformed(_) => "malformed",
        }
    }
}

/// Ends a key fetch's span with what the fetch came to: the key server's status, or
/// the failure's kind.
pub(super) fn end_fetch_span<T>(span: &RequestSpan, fetched: &Result<T, JwksError>) {
    match fetched {
        Ok(_) => span.end_call(Ok(200)),
        Err(JwksError::Status(status)) => span.end_call(Ok(status.as_u16())),
        Err(e) => span.end_call(Err((e.kind(), &e.to_string()))),
    }
}

/// Why no key could be found for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLookupError {
    /// The pool's current keys are fresh and none has this `kid`.
    UnknownKeyId,
    /// The pool has no keys, or the refetch that might have found this `kid` failed.
    Unavailable,
}

#[derive(Deserialize)]
struct RawKeySet {
    keys: Vec<Map<String, Value>>,
}

/// Parses and validates a JWKS document. Any malformed key rejects the whole set.
pub fn parse_key_set(body: &[u8]) -> Result<KeySet, JwksError> {
    let malformed = |m: String| JwksError::Malformed(m);
    let raw: RawKeySet =
        serde_json::from_slice(body).map_err(|e| malformed(format!("not a JWKS: {e}")))?;
    let mut keys = HashMap::with_capacity(raw.keys.len());
    for (i, jwk) in raw.keys.iter().enumerate() {
        let text = |name: &str| -> Result<Option<String>, JwksError> {
            match jwk.get(name) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(malformed(format!("keys[{i}].{name} is not a string"))),
            }
        };
        let Some(kid) = text("kid")? else {
            // A key without a kid can never be selected by a Cognito token.
            continue;
        };
        let kty = text("kty")?.ok_or_else(|| malformed(format!("keys[{i}] has no kty")))?;
        let (use_, alg) = (text("use")?, text("alg")?);
        let mut fingerprint = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for part in [Some(&kty), use_.as_ref(), alg.as_ref()] {
            let part = part.map_or(&b"-"[..], |p| p.as_bytes());
            fingerprint.update(&(part.len() as u64).to_be_bytes());
            fingerprint.update(part);
        }
        let rsa = if kty == "RSA" {
            let n = text("n")?.ok_or_else(|| malformed(format!("keys[{i}] has no n")))?;
            let e = text("e")?.ok_or_else(|| malformed(format!("keys[{i}] has no e")))?;
            fingerprint.update(n.as_bytes());
            fingerprint.update(b".");
            fingerprint.update(e.as_bytes());
            rsa_key(&n, &e).map_err(|m| malformed(format!("keys[{i}]: {m}")))?
        } else {
            None
        };
        let ec = if kty == "EC" {
            let crv = text("crv")?.ok_or_else(|| malformed(format!("keys[{i}] has no crv")))?;
            let x = text("x")?.ok_or_else(|| malformed(format!("keys[{i}] has no x")))?;
            let y = text("y")?.ok_or_else(|| malformed(format!("keys[{i}] has no y")))?;
            for part in [&crv, &x, &y] {
                fingerprint.update(b".");
                fingerprint.update(part.as_bytes());
            }
            p256_key(&crv, &x, &y).map_err(|m| malformed(format!("keys[{i}]: {m}")))?
        } else {
            None
        };
        let mut digest = [0u8; 32];
        digest.copy_from_slice(fingerprint.finish().as_ref());
        let key = Key {
            kty,
            use_,
            alg,
            rsa,
            ec,
            fingerprint: digest,
        };
        if keys.insert(kid.clone(), Arc::new(key)).is_some() {
            return Err(malformed(format!("kid {kid:?} appears twice")));
        }
    }
    if !keys.values().any(|k| k.rsa.is_some() || k.ec.is_some()) {
        return Err(malformed("no usable RSA or P-256 key".into()));
    }
    Ok(KeySet { keys })
}

/// Builds an RSA key from base64url `n` and `e`. `Ok(None)` is a well-formed key too
/// small to trust; `Err` is a malformed one.
fn rsa_key(n: &str, e: &str) -> Result<Option<DecodingKey>, String> {
    let n = URL_SAFE_NO_PAD
        .decode(n)
        .map_err(|_| "n is not unpadded base64url".to_owned())?;
    let e = URL_SAFE_NO_PAD
        .decode(e)
        .map_err(|_| "e is not unpadded base64url".to_owned())?;
    let n = strip_leading_zeros(&n);
    let e = strip_leading_zeros(&e);
    if n.is_empty() || e.is_empty() || e.len() > 8 {
        return Err("n or e is out of range".into());
    }
    if n.len() < MIN_RSA_MODULUS_BYTES {
        return Ok(None);
    }
    Ok(Some(DecodingKey::from_rsa_raw_components(n, e)))
}

/// A P-256 key from base64url `x` and `y` of 32 bytes each. `Ok(None)` is a
/// well-formed key on another curve, which no accepted algorithm uses.
fn p256_key(crv: &str, x: &str, y: &str) -> Result<Option<DecodingKey>, String> {
    let coordinate = |c: &str| {
        URL_SAFE_NO_PAD
            .decode(c)
            .map_err(|_| "x or y is not unpadded base64url".to_owned())
    };
    let (xb, yb) = (coordinate(x)?, coordinate(y)?);
    if crv != "P-256" {
        return Ok(None);
    }
    if xb.len() != 32 || yb.len() != 32 {
        return Err("a P-256 key's x and y are 32 bytes each".into());
    }
    DecodingKey::from_ec_components(x, y)
        .map(Some)
        .map_err(|e| e.to_string())
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// The key store for every configured pool (by index in `Config::pools`).
#[derive(Clone)]
pub struct KeyStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where each pool's keys come from: the user pools' JWKS URLs, then the OIDC
    /// issuers' discovery documents, with their metric labels.
    sources: Vec<KeySource>,
    metrics: Arc<Metrics>,
    /// A span per fetch, when tracing is on.
    tracing: Tracing,
    client: Client<JwksConnector, Empty<Bytes>>,
    settings: JwksConfig,
    current: Cache<PoolId, Arc<KeySet>>,
    refetched: Cache<PoolId, Result<(), JwksError>>,
}

/// Where one pool's keys come from.
struct KeySource {
    /// The JWKS URL, or the discovery document's when `discovery` is set.
    url: Uri,
    /// The user pool id or the issuer: the metric label.
    name: Arc<str>,
    discovery: Option<Discovery>,
    /// The source's own client, when it has TLS files (`ca_file`, `client_cert`).
    own_client: Option<Result<JwksClient, String>>,
}

/// An issuer whose JWKS URL its discovery document names (OpenID Connect Discovery).
struct Discovery {
    /// The `issuer` the document must state, exactly.
    issuer: String,
    allow_insecure_urls: bool,
}

#[derive(Deserialize)]
struct RawDiscovery {
    issuer: String,
    jwks_uri: String,
}

/// Stops the background refresh tasks when dropped.
pub struct Refreshers(Vec<JoinHandle<()>>);

impl Drop for Refreshers {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl KeyStore {
    /// Creates the store and starts one refresh task per pool; the first fetch runs at
    /// once. Start-up never waits for Cognito: until keys arrive, `is_ready` is false.
    /// On a reload, `seed` is the store being replaced: a pool with the same JWKS URL
    /// starts with its keys, so that it serves while its first fetch runs.
    pub async fn start(
        pools: &[PoolConfig],
        issuers: &[IssuerConfig],
        settings: &JwksConfig,
        client: Client<JwksConnector, Empty<Bytes>>,
        metrics: Arc<Metrics>,
        tracing: Tracing,
        seed: Option<&KeyStore>,
    ) -> (KeyStore, Refreshers) {
        let store = KeyStore {
            inner: Arc::new(Inner {
                sources: pools
                    .iter()
                    .map(|p| KeySource {
                        url: p.jwks_url.clone(),
                        name: Arc::from(p.user_pool_id.as_str()),
                        discovery: None,
                        own_client: own_jwks_client(&p.tls, settings.fetch_timeout),
                    })
                    .chain(issuers.iter().map(|i| KeySource {
                        url: i.discovery_url.clone(),
                        name: Arc::from(i.issuer.as_str()),
                        discovery: Some(Discovery {
                            issuer: i.issuer.clone(),
                            allow_insecure_urls: i.allow_insecure_urls,
                        }),
                        own_client: own_jwks_client(&i.tls, settings.fetch_timeout),
                    }))
                    .collect(),
                metrics,
                tracing,
                client,
                settings: settings.clone(),
                current: Cache::builder().build(),
                refetched: Cache::builder()
                    .time_to_live(settings.unknown_kid_cooldown)
                    .build(),
            }),
        };
        if let Some(old) = seed {
            let count = store.inner.sources.len();
            for (pool, source) in PoolId::all(count).zip(&store.inner.sources) {
                let same = PoolId::all(old.inner.sources.len())
                    .zip(&old.inner.sources)
                    .find(|(_, old_source)| old_source.url == source.url);
                if let Some((old_pool, _)) = same {
                    if let Some(set) = old.inner.current.get(&old_pool).await {
                        store.inner.current.insert(pool, set).await;
                    }
                }
            }
        }
        let tasks = PoolId::all(store.inner.sources.len())
            .map(|pool| tokio::spawn(refresh_loop(store.inner.clone(), pool)))
            .collect();
        (store, Refreshers(tasks))
    }

    /// Waits until every pool has keys, for at most `timeout`; whether they all do.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.is_ready() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Whether the pool has ever received a good key set.
    pub fn has_keys(&self, pool: PoolId) -> bool {
        self.inner.current.contains_key(&pool)
    }

    /// Whether every pool has keys: what `/readyz` reports.
    pub fn is_ready(&self) -> bool {
        PoolId::all(self.inner.sources.len()).all(|p| self.has_keys(p))
    }

    /// The key `kid` of `pool`. A miss triggers at most one refetch per cooldown.
    pub async fn find(&self, pool: PoolId, kid: &str) -> Result<Arc<Key>, KeyLookupError> {
        if let Some(key) = self.cached(pool, kid).await {
            return Ok(key);
        }
        let inner = &self.inner;
        let refetch = inner
            .refetched
            .get_with(pool, async {
                tracing::info!(
                    pool = %inner.pool_name(pool),
                    "unknown key id or no keys yet; refetching the JWKS"
                );
                inner.fetch_and_store(pool).await
            })
            .await;
        // Look again: this refetch, or the periodic refresh, may have brought the key.
        if let Some(key) = self.cached(pool, kid).await {
            return Ok(key);
        }
        match (self.has_keys(pool), refetch) {
            (true, Ok(())) => Err(KeyLookupError::UnknownKeyId),
            _ => Err(KeyLookupError::Unavailable),
        }
    }

    /// The pool's current key `kid`, without fetching anything.
    pub async fn cached(&self, pool: PoolId, kid: &str) -> Option<Arc<Key>> {
        self.inner.current.get(&pool).await?.get(kid)
    }
}

impl Inner {
    fn pool_name(&self, pool: PoolId) -> &str {
        self.sources.get(pool.0).map_or("?", |s| &s.name)
    }

    async fn fetch_and_store(&self, pool: PoolId) -> Result<(), JwksError> {
        let Some(source) = self.sources.get(pool.0) else {
            return Err(JwksError::Request(format!("no pool {pool}")));
        };
        let (url, name) = (&source.url, &source.name);
        let span = match self.tracing.is_on() {
            true => self.tracing.key_fetch("jwks fetch", name, &url.to_string()),
            false => RequestSpan::NONE,
        };
        let fetched =
            match tokio::time::timeout(self.settings.fetch_timeout, self.fetch(source)).await {
                Ok(result) => result,
                Err(_) => Err(JwksError::Timeout(self.settings.fetch_timeout)),
            };
        if let Ok(set) = &fetched {
            span.note(
                "cognito_gate.keys",
                i64::try_from(set.len()).unwrap_or(i64::MAX),
            );
        }
        end_fetch_span(&span, &fetched);
        let result = if fetched.is_ok() { "success" } else { "error" };
        self.metrics
            .jwks_fetches
            .get_or_create(&FetchLabels {
                pool: name.clone(),
                result,
            })
            .inc();
        match fetched {
            Ok(set) => {
                let labels = PoolLabels { pool: name.clone() };
                let count = set.len();
                let changed = match self.current.get(&pool).await {
                    Some(old) => !old.same_keys(&set),
                    None => true,
                };
                self.metrics
                    .jwks_keys
                    .get_or_create(&labels)
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or_default();
                self.metrics
                    .jwks_last_success
                    .get_or_create(&labels)
                    .set(now);
                self.current.insert(pool, Arc::new(set)).await;
                if changed {
                    tracing::info!(pool = %name, %url, keys = count, "JWKS loaded");
                } else {
                    tracing::debug!(pool = %name, %url, keys = count, "JWKS unchanged");
                }
                Ok(())
            }
            Err(e) => {
                if self.current.contains_key(&pool) {
                    tracing::error!(pool = %name, %url, error = %e, "JWKS fetch failed; keeping the last good keys");
                } else {
                    tracing::error!(pool = %name, %url, error = %e, "JWKS fetch failed and the pool has no keys yet: its tokens are answered 503 until a fetch succeeds");
                }
                Err(e)
            }
        }
    }

    async fn fetch(&self, source: &KeySource) -> Result<KeySet, JwksError> {
        let limit = self.settings.max_response_bytes;
        let client = match &source.own_client {
            None => &self.client,
            Some(Ok(client)) => client,
            Some(Err(e)) => return Err(JwksError::Request(e.clone())),
        };
        let jwks_url = match &source.discovery {
            None => source.url.clone(),
            Some(discovery) => discover(client, &source.url, discovery, limit).await?,
        };
        let body = download(client, &jwks_url, "application/json", limit).await?;
        parse_key_set(&body)
    }
}

/// Fetches `url`'s discovery document and returns its `jwks_uri` (see [`jwks_uri`]).
async fn discover(
    client: &Client<JwksConnector, Empty<Bytes>>,
    url: &Uri,
    discovery: &Discovery,
    limit: usize,
) -> Result<Uri, JwksError> {
    let body = download(client, url, "application/json", limit).await?;
    jwks_uri(&body, discovery)
}

/// What `check` says of an issuer: the `jwks_uri` its discovery document names, or why
/// there is none, within `timeout`.
pub async fn check_discovery(
    client: &Client<JwksConnector, Empty<Bytes>>,
    issuer: &IssuerConfig,
    limit: usize,
    timeout: Duration,
) -> Result<Uri, JwksError> {
    let discovery = Discovery {
        issuer: issuer.issuer.clone(),
        allow_insecure_urls: issuer.allow_insecure_urls,
    };
    tokio::time::timeout(
        timeout,
        discover(client, &issuer.discovery_url, &discovery, limit),
    )
    .await
    .unwrap_or(Err(JwksError::Timeout(timeout)))
}

/// The `jwks_uri` of a discovery document, which must state exactly the configured
/// `issuer` (OpenID Connect Discovery 1.0 §4.3) and name an https URL (or loopback).
fn jwks_uri(body: &[u8], discovery: &Discovery) -> Result<Uri, JwksError> {
    let doc: RawDiscovery = serde_json::from_slice(body).map_err(|e| {
        JwksError::Malformed(format!(
            "not a discovery document with issuer and jwks_uri: {e}"
        ))
    })?;
    if doc.issuer != discovery.issuer {
        return Err(JwksError::Malformed(format!(
            "the discovery document is for issuer {:?}, not {:?}",
            doc.issuer, discovery.issuer
        )));
    }
    let uri: Uri = doc
        .jwks_uri
        .parse()
        .ok()
        .filter(|u: &Uri| {
            matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some()
        })
        .ok_or_else(|| {
            JwksError::Malformed(format!("jwks_uri {:?} is not an http(s) URL", doc.jwks_uri))
        })?;
    if crate::config::leaves_the_host_in_clear(&uri, discovery.allow_insecure_urls) {
        return Err(JwksError::Malformed(format!(
            "jwks_uri {:?} is plain HTTP to a host other than loopback",
            doc.jwks_uri
        )));
    }
    Ok(uri)
}

/// GETs `url` and returns the body of a 200 answer of at most `limit` bytes: what key
/// sets and ALB public keys are fetched with. Redirects are not followed.
pub(super) async fn download(
    client: &Client<JwksConnector, Empty<Bytes>>,
    url: &Uri,
    accept: &'static str,
    limit: usize,
) -> Result<Bytes, JwksError> {
    let request = Request::get(url.clone())
        .header(header::ACCEPT, accept)
        .header(
            header::USER_AGENT,
            concat!("cognito-gate/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .map_err(|e| JwksError::Request(e.to_string()))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| JwksError::Request(error_chain(&e)))?;
    if response.status() != StatusCode::OK {
        return Err(JwksError::Status(response.status()));
    }
    let declared = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(JwksError::TooLarge(limit));
    }
    Ok(Limited::new(response.into_body(), limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                JwksError::TooLarge(limit)
            } else {
                JwksError::Request(e.to_string())
            }
        })?
        .to_bytes())
}

async fn refresh_loop(inner: Arc<Inner>, pool: PoolId) {
    // Replicas that lost the key server together retry at scattered times: full
    // jitter, the ceiling doubling from 1 s up to the refresh interval.
    let mut backoff = Backoff::new(Duration::from_secs(1), inner.settings.refresh_interval);
    loop {
        match inner.fetch_and_store(pool).await {
            Ok(()) => {
                backoff.reset();
                tokio::time::sleep(inner.settings.refresh_interval).await;
            }
            Err(_) => tokio::time::sleep(backoff.next_wait()).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwk(kid: &str, extra: &str) -> String {
        // A 2048-bit modulus: 256 bytes of 0xC5 encoded as base64url.
        let n = URL_SAFE_NO_PAD.encode([0xC5u8; 256]);
        format!(r#"{{"kid":"{kid}","kty":"RSA","n":"{n}","e":"AQAB"{extra}}}"#)
    }

    #[test]
    fn parses_keys_with_their_use_and_alg() {
        // Coordinates of the right length; their curve arithmetic is not checked here.
        let c32 = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let c48 = URL_SAFE_NO_PAD.encode([7u8; 48]);
        let body = format!(
            r#"{{"keys":[{},{},{{"kid":"ec","kty":"EC","crv":"P-256","x":"{c32}","y":"{c32}"}},{{"kid":"p384","kty":"EC","crv":"P-384","x":"{c48}","y":"{c48}"}}]}}"#,
            jwk("a", r#","use":"sig","alg":"RS256""#),
            jwk("b", r#","use":"enc""#)
        );
        let set = parse_key_set(body.as_bytes()).expect("valid");
        assert_eq!(set.len(), 4);
        // Another curve is kept, but no accepted algorithm can use it.
        let p384 = set.get("p384").expect("p384");
        assert!(p384.ec.is_none() && p384.rsa.is_none());
        let a = set.get("a").expect("a");
        assert_eq!(
            (a.use_.as_deref(), a.alg.as_deref()),
            (Some("sig"), Some("RS256"))
        );
        assert!(a.rsa.is_some());
        assert_eq!(set.get("b").expect("b").use_.as_deref(), Some("enc"));
        let ec = set.get("ec").expect("ec");
        assert!(ec.rsa.is_none() && ec.ec.is_some());
        assert_eq!(ec.kty, "EC");
    }

    #[test]
    fn the_real_cognito_jwks_parses() {
        let body = include_str!("../../tests/fixtures/real-cognito/jwks.json");
        let set = parse_key_set(body.as_bytes()).expect("valid");
        assert!(set
            .get("Ob3sVovGdh62Pp9TLNibzCEhRwbhLjhkxygoCJzoYWQ=")
            .is_some());
        assert!(set
            .get("gQpiUD80i1clqVSTeCVFv9QqAFqLTMfsxqmOfhF6B5Q=")
            .is_some());
    }

    #[test]
    fn malformed_sets_are_rejected_whole() {
        let good = jwk("a", "");
        let small_n = URL_SAFE_NO_PAD.encode([0xC5u8; 128]);
        let cases = [
            ("not json".to_owned(), "not a JWKS"),
            (r#"{"nokeys":[]}"#.to_owned(), "not a JWKS"),
            (r#"{"keys":[]}"#.to_owned(), "no usable RSA or P-256 key"),
            (format!(r#"{{"keys":[{good},{good}]}}"#), "appears twice"),
            (
                format!(r#"{{"keys":[{good},{{"kid":"x","kty":"RSA","n":"AQAB=","e":"AQAB"}}]}}"#),
                "n is not unpadded base64url",
            ),
            (
                format!(r#"{{"keys":[{good},{{"kid":"x","kty":"RSA","e":"AQAB"}}]}}"#),
                "has no n",
            ),
            (
                format!(r#"{{"keys":[{good},{{"kid":"x"}}]}}"#),
                "has no kty",
            ),
            (
                format!(r#"{{"keys":[{good},{{"kid":"e","kty":"EC","crv":"P-256"}}]}}"#),
                "has no x",
            ),
            (
                format!(
                    r#"{{"keys":[{good},{{"kid":"e","kty":"EC","crv":"P-256","x":"AQAB","y":"AQAB"}}]}}"#
                ),
                "32 bytes each",
            ),
            (
                format!(r#"{{"keys":[{good},{{"kid":7,"kty":"RSA"}}]}}"#),
                "kid is not a string",
            ),
            (
                format!(r#"{{"keys":[{{"kid":"s","kty":"RSA","n":"{small_n}","e":"AQAB"}}]}}"#),
                "no usable RSA or P-256 key",
            ),
        ];
        for (body, want) in cases {
            match parse_key_set(body.as_bytes()) {
                Err(JwksError::Malformed(m)) => assert!(m.contains(want), "{body}: {m}"),
                other => panic!("{body}: expected Malformed({want}), got {other:?}"),
            }
        }
    }
}
