//! Cognito token verification, at least as strict as awslabs/aws-jwt-verify's
//! `CognitoJwtVerifier`, and stricter where it is lax: `crit` is refused, `exp` is
//! required, base64url must be canonical and unpadded, token size is bounded, and a
//! duplicated claim is refused instead of "last one wins".
//!
//! Verification runs in three steps so that each can be tested alone:
//! [`Verifier::parse`] (shape, header, issuer → pool), a key lookup by `(pool, kid)`,
//! and [`Verifier::finish`] (key checks, signature, time, token use, client, claims).
//! Claims other than `iss` are only interpreted after the signature holds.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::cache::{digest, recall, remember, Remembered, TokenCache};
use super::identity::{Claim, Claims, Identity, PoolId, Revocable, Source, TokenUse, Verified};
use super::keys::{Key, KeyLookupError, KeyStore};
use std::sync::Arc;

use crate::config::{IssuerConfig, PoolConfig, TokenUsePolicy};
use crate::metrics::Metrics;

/// Why a token was refused. The text is the RFC 6750 `error_description`: short, and
/// never quoting the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is too large")]
    TooLarge,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("token alg is not accepted")]
    UnsupportedAlgorithm,
    #[error("token header has no kid")]
    MissingKeyId,
    #[error("token kid is not a key id")]
    InvalidKeyId,
    #[error("token was signed by a load balancer that is not accepted")]
    SignerNotAllowed,
    #[error("token has critical header parameters")]
    CriticalHeader,
    #[error("token issuer is not an accepted user pool")]
    UnknownIssuer,
    #[error("no signing key matches the token kid")]
    UnknownKeyId,
    #[error("the key is not an RSA signing key")]
    KeyNotUsable,
    #[error("the key alg does not match the token alg")]
    AlgorithmMismatch,
    #[error("token signature is invalid")]
    InvalidSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token has no {0} claim")]
    MissingClaim(&'static str),
    #[error("token claim {0} has the wrong type")]
    InvalidClaimType(&'static str),
    #[error("token_use must be id or access")]
    InvalidTokenUse,
    #[error("this kind of token is not accepted here")]
    TokenUseNotAccepted,
    #[error("token was issued to another client")]
    ClientNotAllowed,
    /// Its family was revoked, or its user signed out after it was issued.
    #[error("token has been revoked")]
    Revoked,
}

#[cfg(test)]
impl TokenError {
    /// Every variant once, derived from an exhaustive match: a new variant does not
    /// compile until it is given a successor here, and so joins the list.
    pub(crate) fn every() -> Vec<TokenError> {
        use TokenError as T;
        let mut all = Vec::new();
        let mut next = Some(T::TooLarge);
        while let Some(e) = next {
            assert!(!all.contains(&e), "{e:?} twice: the chain loops");
            all.push(e);
            next = match e {
                T::TooLarge => Some(T::Malformed("…")),
                T::Malformed(_) => Some(T::UnsupportedAlgorithm),
                T::UnsupportedAlgorithm => Some(T::MissingKeyId),
                T::MissingKeyId => Some(T::InvalidKeyId),
                T::InvalidKeyId => Some(T::SignerNotAllowed),
                T::SignerNotAllowed => Some(T::CriticalHeader),
                T::CriticalHeader => Some(T::UnknownIssuer),
                T::UnknownIssuer => Some(T::UnknownKeyId),
                T::UnknownKeyId => Some(T::KeyNotUsable),
                T::KeyNotUsable => Some(T::AlgorithmMismatch),
                T::AlgorithmMismatch => Some(T::InvalidSignature),
                T::InvalidSignature => Some(T::Expired),
                T::Expired => Some(T::NotYetValid),
                T::NotYetValid => Some(T::MissingClaim("…")),
                T::MissingClaim(_) => Some(T::InvalidClaimType("…")),
                T::InvalidClaimType(_) => Some(T::InvalidTokenUse),
                T::InvalidTokenUse => Some(T::TokenUseNotAccepted),
                T::TokenUseNotAccepted => Some(T::ClientNotAllowed),
                T::ClientNotAllowed => Some(T::Revoked),
                T::Revoked => None,
            };
        }
        all
    }
}

/// Why [`Verifier::verify`] gave no identity: the token's fault, or ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Token(#[from] TokenError),
    /// Not the client's fault: the pool's keys could not be fetched.
    #[error("signing keys are unavailable")]
    KeysUnavailable,
}

/// A token that passed the structural checks and whose issuer picked a pool, but
/// whose signature has not been checked yet.
#[derive(Debug)]
pub struct Unverified<'t> {
    pub pool: PoolId,
    pub kid: String,
    /// The header's `alg`, one the pool or issuer accepts.
    pub alg: Algorithm,
    signing_input: &'t str,
    signature: &'t str,
    claims: RawClaims,
    /// The decoded payload, read again for the policy's claims once the signature holds.
    payload: Vec<u8>,
}

struct PoolRules {
    issuers: [String; 2],
    client_ids: Vec<String>,
    token_use: TokenUsePolicy,
    leeway: f64,
}

/// What an `[[issuers]]` entry accepts.
struct OidcRules {
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    groups_claim: Vec<String>,
    scopes_claim: Box<str>,
    subject_claim: Box<str>,
    leeway: f64,
}

/// The algorithms any pool or issuer may accept, by their JOSE names; never `none`
/// or HMAC.
fn accepted_algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "RS256" => Some(Algorithm::RS256),
        "ES256" => Some(Algorithm::ES256),
        "PS256" => Some(Algorithm::PS256),
        _ => None,
    }
}

/// The value at a dotted `path` (`realm_access.roles`) of the kept claims.
fn claim_at<'c>(claims: &'c Claims, path: &[String]) -> Option<&'c Value> {
    let (first, rest) = path.split_first()?;
    rest.iter()
        .try_fold(claims.get(first)?, |value, key| value.get(key.as_str()))
}

/// A list claim: an array of strings, or one string `split` into items.
fn string_list(
    value: Option<&Value>,
    name: &'static str,
    split: bool,
) -> Result<Vec<String>, TokenError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if split => {
            Ok(s.split_ascii_whitespace().map(str::to_owned).collect())
        }
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(TokenError::InvalidClaimType(name)),
            })
            .collect(),
        Some(_) => Err(TokenError::InvalidClaimType(name)),
    }
}

/// `exp` and `nbf` against `now`, with `leeway` seconds of skew allowed.
pub(super) fn check_time(
    exp: f64,
    nbf: Option<f64>,
    now: f64,
    leeway: f64,
) -> Result<(), TokenError> {
    if now >= exp + leeway {
        return Err(TokenError::Expired);
    }
    if nbf.is_some_and(|nbf| now + leeway < nbf) {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

/// The three non-empty parts of a compact JWS of at most `max_bytes`.
pub(super) fn compact_parts(
    token: &str,
    max_bytes: usize,
) -> Result<(&str, &str, &str), TokenError> {
    if token.len() > max_bytes {
        return Err(TokenError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("not a compact JWS of three parts"));
    };
    if header.is_empty() || payload.is_empty() || signature.is_empty() {
        return Err(TokenError::Malformed("empty part"));
    }
    Ok((header, payload, signature))
}

/// `cognito:groups`: an array of strings, or nothing.
pub(super) fn groups_claim(v: &Option<Value>) -> Result<Vec<String>, TokenError> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|g| match g {
                Value::String(s) => Ok(s.clone()),
                _ => Err(TokenError::InvalidClaimType("cognito:groups")),
            })
            .collect(),
        Some(_) => Err(TokenError::InvalidClaimType("cognito:groups")),
    }
}

/// Verifies tokens against the configured pools.
pub struct Verifier {
    pools: Vec<PoolRules>,
    /// The `[[issuers]]`, whose key sets follow the pools': issuer `j` is pool
    /// `pools.len() + j` in the key store.
    oidc: Vec<OidcRules>,
    max_token_bytes: usize,
    /// Verified tokens; `None` when `token_cache.max_bytes` is 0.
    remembered: Option<TokenCache>,
    /// Where cache hits and misses are counted.
    metrics: Option<Arc<Metrics>>,
    /// The claims the policy reads, kept in each identity.
    kept_claims: Vec<Box<str>>,
}

/// Marks a field as present, whatever its value (even `null`).
#[derive(Debug, Default)]
pub(super) struct Present(pub(super) bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d)?;
        Ok(Present(true))
    }
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<Value>,
    kid: Option<Value>,
    #[serde(default)]
    crit: Present,
}

/// The claims we read. Derived deserialization refuses a duplicated field, where
/// a generic JSON map would silently keep the last value.
#[derive(Debug, Deserialize)]
struct RawClaims {
    iss: Option<Value>,
    sub: Option<Value>,
    exp: Option<Value>,
    nbf: Option<Value>,
    iat: Option<Value>,
    token_use: Option<Value>,
    client_id: Option<Value>,
    aud: Option<Value>,
    #[serde(rename = "cognito:groups")]
    groups: Option<Value>,
    scope: Option<Value>,
    origin_jti: Option<Value>,
    jti: Option<Value>,
    auth_time: Option<Value>,
}

/// The revocation list's view of a token: `family` (its `origin_jti`, or `jti`) and
/// the later of `iat` and `auth_time`.
fn revocable(
    c: &RawClaims,
    family: &Option<Value>,
    name: &'static str,
) -> Result<Revocable, TokenError> {
    let iat = number_claim(&c.iat, "iat")?;
    let auth_time = number_claim(&c.auth_time, "auth_time")?;
    let issued_at = match (iat, auth_time) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    Ok(Revocable {
        family: string_claim(family, name)?.map(String::into_boxed_str),
        // Whole seconds: a fraction can only make a token look issued later.
        issued_at: issued_at.filter(|t| *t >= 0.0).map(|t| t.floor() as u64),
    })
}

fn decode_part(part: &str, what: &'static str) -> Result<Vec<u8>, TokenError> {
    // The standard engine refuses padding, characters outside the base64url alphabet
    // and non-canonical trailing bits.
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed(what))
}

pub(super) fn string_claim(
    v: &Option<Value>,
    name: &'static str,
) -> Result<Option<String>, TokenError> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TokenError::InvalidClaimType(name)),
    }
}

pub(super) fn number_claim(
    v: &Option<Value>,
    name: &'static str,
) -> Result<Option<f64>, TokenError> {
    match v {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(Some)
            .ok_or(TokenError::InvalidClaimType(name)),
        Some(_) => Err(TokenError::InvalidClaimType(name)),
    }
}

impl Verifier {
    /// `cache_bytes` bounds the cache of verified tokens (their text plus a little);
    /// 0 verifies every signature every time.
    pub fn new(pools: &[PoolConfig], max_token_bytes: usize, cache_bytes: u64) -> Self {
        Verifier {
            pools: pools
                .iter()
                .map(|p| PoolRules {
                    issuers: [p.issuer(), p.multi_region_issuer()],
                    client_ids: p.client_ids.clone(),
                    token_use: p.token_use,
                    leeway: p.leeway.as_secs_f64(),
                })
                .collect(),
            oidc: Vec::new(),
            max_token_bytes,
            remembered: TokenCache::new(cache_bytes),
            metrics: None,
            kept_claims: Vec::new(),
        }
    }

    /// Accepts the tokens of these OpenID Connect issuers too.
    pub fn with_issuers(mut self, issuers: &[IssuerConfig]) -> Self {
        self.oidc = issuers
            .iter()
            .map(|i| OidcRules {
                issuer: i.issuer.clone(),
                audiences: i.audiences.clone(),
                algorithms: i.algorithms.clone(),
                groups_claim: i.groups_claim.clone(),
                scopes_claim: i.scopes_claim.as_str().into(),
                subject_claim: i.subject_claim.as_str().into(),
                leeway: i.leeway.as_secs_f64(),
            })
            .collect();
        self
    }

    /// The clock skew allowed for `pool`'s tokens.
    fn leeway(&self, pool: PoolId) -> Result<f64, TokenError> {
        match self.pools.get(pool.0) {
            Some(p) => Ok(p.leeway),
            None => self
                .oidc
                .get(pool.0 - self.pools.len())
                .map(|o| o.leeway)
                .ok_or(TokenError::UnknownIssuer),
        }
    }

    /// Keeps these claims in each identity, for the policy's `claims` conditions.
    pub fn keeping(mut self, claims: Vec<Box<str>>) -> Self {
        self.kept_claims = claims;
        self
    }

    /// The claims kept in each identity.
    pub fn kept_claims(&self) -> &[Box<str>] {
        &self.kept_claims
    }

    /// Counts token cache hits and misses in `metrics`.
    pub fn counting(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Tokens remembered now.
    pub async fn cached_tokens(&self) -> u64 {
        match &self.remembered {
            Some(cache) => cache.entry_count().await,
            None => 0,
        }
    }

    /// Verifies `token` with keys from `keys`, at the instant `now` (seconds since
    /// the Unix epoch), which the caller supplies so that tests need no time tricks.
    pub async fn verify(
        &self,
        token: &str,
        keys: &KeyStore,
        now: f64,
    ) -> Result<Verified, VerifyError> {
        if token.len() > self.max_token_bytes {
            return Err(TokenError::TooLarge.into());
        }
        // Digested only when there is a cache to ask.
        let key_digest = self.remembered.as_ref().map(|_| digest(token));
        let hit = recall(
            self.remembered.as_ref(),
            key_digest.as_ref(),
            self.metrics.as_deref(),
            async |hit: &Remembered| match hit.verified.identity.source {
                Source::Pool(pool) => keys
                    .cached(pool, &hit.kid)
                    .await
                    .is_some_and(|k| k.fingerprint == hit.key),
                Source::Alb(_) => false,
            },
        )
        .await;
        if let Some(hit) = hit {
            let Source::Pool(pool) = hit.verified.identity.source else {
                return Err(TokenError::UnknownIssuer.into());
            };
            check_time(hit.verified.exp, hit.verified.nbf, now, self.leeway(pool)?)?;
            return Ok(hit.verified.clone());
        }
        let unverified = self.parse(token)?;
        let (pool, kid) = (unverified.pool, unverified.kid.clone());
        let key = keys.find(pool, &kid).await.map_err(|e| match e {
            KeyLookupError::UnknownKeyId => VerifyError::Token(TokenError::UnknownKeyId),
            KeyLookupError::Unavailable => VerifyError::KeysUnavailable,
        })?;
        let verified = self.finish(unverified, &key, now)?;
        let remembered = Remembered {
            verified,
            kid,
            key: key.fingerprint,
        };
        Ok(remember(self.remembered.as_ref(), key_digest, remembered).await)
    }

    /// Step one: size, compact-JWS shape, header (`alg`, `kid`, `crit`), and the
    /// issuer, which selects the pool and so the key set.
    /// (Public so that the unit tests and benchmarks can drive each step alone.)
    pub fn parse<'t>(&self, token: &'t str) -> Result<Unverified<'t>, TokenError> {
        let (header, payload, signature) = compact_parts(token, self.max_token_bytes)?;
        let header: RawHeader = serde_json::from_slice(&decode_part(header, "header encoding")?)
            .map_err(|_| TokenError::Malformed("header is not a JSON object"))?;
        let alg = match &header.alg {
            Some(Value::String(alg)) => accepted_algorithm(alg).filter(|a| {
                *a == Algorithm::RS256 || self.oidc.iter().any(|o| o.algorithms.contains(a))
            }),
            _ => None,
        }
        .ok_or(TokenError::UnsupportedAlgorithm)?;
        let kid = match header.kid {
            Some(Value::String(kid)) if !kid.is_empty() => kid,
            _ => return Err(TokenError::MissingKeyId),
        };
        // RFC 7515 §4.1.11: a recipient must refuse critical extensions it does not
        // understand, and we understand none.
        if header.crit.0 {
            return Err(TokenError::CriticalHeader);
        }
        let payload = decode_part(payload, "payload encoding")?;
        let claims: RawClaims = serde_json::from_slice(&payload)
            .map_err(|_| TokenError::Malformed("payload is not a JSON object of claims"))?;
        let iss = string_claim(&claims.iss, "iss")?.ok_or(TokenError::MissingClaim("iss"))?;
        // Cognito pools keep their exact rules: RS256 only.
        let pool = match self.pools.iter().position(|p| p.issuers.contains(&iss)) {
            Some(i) if alg == Algorithm::RS256 => PoolId(i),
            Some(_) => return Err(TokenError::UnsupportedAlgorithm),
            None => {
                let j = self
                    .oidc
                    .iter()
                    .position(|o| o.issuer == iss)
                    .ok_or(TokenError::UnknownIssuer)?;
                if self
                    .oidc
                    .get(j)
                    .is_some_and(|o| !o.algorithms.contains(&alg))
                {
                    return Err(TokenError::UnsupportedAlgorithm);
                }
                PoolId(self.pools.len() + j)
            }
        };
        let signing_input_len = token.len() - signature.len() - 1;
        Ok(Unverified {
            pool,
            kid,
            alg,
            signing_input: &token[..signing_input_len],
            signature,
            claims,
            payload,
        })
    }

    /// Steps three and on: the key's own constraints, the signature, then the claims.
    pub fn finish(&self, t: Unverified<'_>, key: &Key, now: f64) -> Result<Verified, TokenError> {
        // from_jwk-style helpers ignore `use` and `alg`, so both are checked here, and
        // the key's type (and curve) must be the algorithm's.
        let (kty, material) = match t.alg {
            Algorithm::ES256 => ("EC", &key.ec),
            _ => ("RSA", &key.rsa),
        };
        if key.kty != kty || key.use_.as_deref().is_some_and(|u| u != "sig") {
            return Err(TokenError::KeyNotUsable);
        }
        if key
            .alg
            .as_deref()
            .is_some_and(|a| accepted_algorithm(a) != Some(t.alg))
        {
            return Err(TokenError::AlgorithmMismatch);
        }
        let Some(material) = material else {
            return Err(TokenError::KeyNotUsable);
        };
        match jsonwebtoken::crypto::verify(t.signature, t.signing_input.as_bytes(), material, t.alg)
        {
            Ok(true) => {}
            Ok(false) => return Err(TokenError::InvalidSignature),
            Err(_) => return Err(TokenError::Malformed("signature encoding")),
        }

        let Some(pool) = self.pools.get(t.pool.0) else {
            return self.finish_oidc(t, now);
        };
        let c = &t.claims;
        let exp = number_claim(&c.exp, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
        let nbf = number_claim(&c.nbf, "nbf")?;
        number_claim(&c.iat, "iat")?;
        check_time(exp, nbf, now, pool.leeway)?;

        let sub = string_claim(&c.sub, "sub")?
            .filter(|s| !s.is_empty())
            .ok_or(TokenError::MissingClaim("sub"))?;
        let token_use = match string_claim(&c.token_use, "token_use")?.as_deref() {
            None => return Err(TokenError::MissingClaim("token_use")),
            Some("access") => TokenUse::Access,
            Some("id") => TokenUse::Id,
            Some(_) => return Err(TokenError::InvalidTokenUse),
        };
        let accepted = match (pool.token_use, token_use) {
            (TokenUsePolicy::Any, _) => true,
            (TokenUsePolicy::Access, TokenUse::Access) | (TokenUsePolicy::Id, TokenUse::Id) => true,
            (TokenUsePolicy::Access, TokenUse::Id) | (TokenUsePolicy::Id, TokenUse::Access) => {
                false
            }
        };
        if !accepted {
            return Err(TokenError::TokenUseNotAccepted);
        }
        let client_id = match token_use {
            TokenUse::Access => {
                let id = string_claim(&c.client_id, "client_id")?
                    .ok_or(TokenError::MissingClaim("client_id"))?;
                pool.client_ids.contains(&id).then_some(id)
            }
            // Cognito issues `aud` as one string; aws-jwt-verify refuses an array too.
            TokenUse::Id => match &c.aud {
                None => return Err(TokenError::MissingClaim("aud")),
                Some(Value::String(aud)) => pool.client_ids.contains(aud).then(|| aud.clone()),
                Some(_) => return Err(TokenError::InvalidClaimType("aud")),
            },
        }
        .ok_or(TokenError::ClientNotAllowed)?;

        let groups = groups_claim(&c.groups)?;
        let scopes = string_claim(&c.scope, "scope")?
            .map(|s| s.split_ascii_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();

        let claims = keep_claims(&t.payload, &self.kept_claims)?;
        let revocable = revocable(c, &c.origin_jti, "origin_jti")?;

        Ok(Verified {
            identity: Arc::new(Identity {
                sub,
                groups,
                scopes,
                token_use,
                client_id,
                source: Source::Pool(t.pool),
                claims,
                revocable,
            }),
            exp,
            nbf,
        })
    }
}

impl Verifier {
    /// The claims of an `[[issuers]]` token whose signature holds: `exp` (required),
    /// `nbf`, `aud` (must name an accepted audience), and the configured subject,
    /// groups and scopes claims.
    fn finish_oidc(&self, t: Unverified<'_>, now: f64) -> Result<Verified, TokenError> {
        let rules = self
            .oidc
            .get(t.pool.0 - self.pools.len())
            .ok_or(TokenError::UnknownIssuer)?;
        let c = &t.claims;
        let exp = number_claim(&c.exp, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
        let nbf = number_claim(&c.nbf, "nbf")?;
        number_claim(&c.iat, "iat")?;
        check_time(exp, nbf, now, rules.leeway)?;
        let audiences = string_list(c.aud.as_ref(), "aud", false)?;
        if audiences.is_empty() {
            return Err(TokenError::MissingClaim("aud"));
        }
        let client_id = audiences
            .into_iter()
            .find(|a| rules.audiences.contains(a))
            .ok_or(TokenError::ClientNotAllowed)?;
        let wanted: Vec<Box<str>> = [
            rules.subject_claim.clone(),
            rules.scopes_claim.clone(),
            rules
                .groups_claim
                .first()
                .map_or("".into(), |g| g.as_str().into()),
        ]
        .into_iter()
        .filter(|n| !n.is_empty())
        .collect();
        let read = keep_claims(&t.payload, &wanted)?;
        let sub = match read.get(&rules.subject_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::String(_)) | None => return Err(TokenError::MissingClaim("sub")),
            Some(_) => return Err(TokenError::InvalidClaimType("sub")),
        };
        let groups = string_list(claim_at(&read, &rules.groups_claim), "groups", false)?;
        let scopes = string_list(read.get(&rules.scopes_claim), "scope", true)?;
        let claims = keep_claims(&t.payload, &self.kept_claims)?;
        let revocable = revocable(c, &c.jti, "jti")?;
        Ok(Verified {
            identity: Arc::new(Identity {
                sub,
                groups,
                scopes,
                token_use: TokenUse::Access,
                client_id,
                source: Source::Pool(t.pool),
                claims,
                revocable,
            }),
            exp,
            nbf,
        })
    }
}

/// The claims named in `wanted` from a payload whose signature holds, as the token has
/// them. A claim that appears twice is refused, as for the claims the verifier reads.
pub(super) fn keep_claims(payload: &[u8], wanted: &[Box<str>]) -> Result<Claims, TokenError> {
    if wanted.is_empty() {
        return Ok(Claims::default());
    }
    use serde::de::{MapAccess, Visitor};

    struct Keep<'w>(&'w [Box<str>]);

    impl<'de> Visitor<'de> for Keep<'_> {
        type Value = Option<Vec<Claim>>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object of claims")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut kept: Vec<Claim> = Vec::new();
            while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                match self.0.iter().find(|w| w.as_ref() == name.as_ref()) {
                    Some(_) if kept.iter().any(|(n, _)| n.as_ref() == name.as_ref()) => {
                        map.next_value::<IgnoredAny>()?;
                        return Ok(None);
                    }
                    Some(w) => kept.push((w.clone(), map.next_value()?)),
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(Some(kept))
        }
    }

    let mut de = serde_json::Deserializer::from_slice(payload);
    match serde::Deserializer::deserialize_map(&mut de, Keep(wanted)) {
        Ok(Some(kept)) => Ok(Claims::new(kept)),
        Ok(None) => Err(TokenError::Malformed("a claim appears twice")),
        Err(_) => Err(TokenError::Malformed(
            "payload is not a JSON object of claims",
        )),
    }
}
