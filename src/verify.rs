//! Cognito token verification, at least as strict as awslabs/aws-jwt-verify's
//! `CognitoJwtVerifier`, and stricter where it is lax: `crit` is refused, `exp` is
//! required, base64url must be canonical and unpadded, token size is bounded, and a
//! duplicated claim is refused instead of "last one wins".
//!
//! Verification runs in three steps so that each can be tested alone:
//! [`Verifier::parse`] (shape, header, issuer → pool), a key lookup by `(pool, kid)`,
//! and [`Verifier::finish`] (key checks, signature, time, token use, client, claims).
//! Claims other than `iss` are only interpreted after the signature holds.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use moka::future::Cache;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::config::{PoolConfig, TokenUsePolicy};
use crate::jwks::{Key, KeyLookupError, KeyStore};

/// Why a token was refused. The text is the RFC 6750 `error_description`: short, and
/// never quoting the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is too large")]
    TooLarge,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("token alg must be RS256")]
    UnsupportedAlgorithm,
    #[error("token header has no kid")]
    MissingKeyId,
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
    /// Not the client's fault: the pool's keys could not be fetched.
    #[error("signing keys are unavailable")]
    KeysUnavailable,
}

/// The Cognito `token_use` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    Access,
    Id,
}

/// Who a verified token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub sub: String,
    /// `cognito:groups`, in token order; empty when the claim is absent.
    pub groups: Vec<String>,
    /// The access token's space-separated `scope` (RFC 6749 §3.3), e.g. `openid` or a
    /// resource server's `orders/read`; empty for ID tokens and without the claim.
    pub scopes: Vec<String>,
    pub token_use: TokenUse,
    /// `client_id` of an access token, `aud` of an ID token.
    pub client_id: String,
    /// Index of the pool in `Config::pools` whose issuer signed the token.
    pub pool: usize,
}

/// A token that passed the structural checks and whose issuer picked a pool, but
/// whose signature has not been checked yet.
#[derive(Debug)]
pub struct Unverified<'t> {
    pub pool: usize,
    pub kid: String,
    signing_input: &'t str,
    signature: &'t str,
    claims: RawClaims,
}

struct PoolRules {
    issuers: [String; 2],
    client_ids: Vec<String>,
    token_use: TokenUsePolicy,
    leeway: f64,
}

impl PoolRules {
    /// `exp` and `nbf` against `now`, with the pool's leeway. A token is expired from
    /// the instant `exp` is reached (RFC 7519 §4.1.4: "on or after").
    fn check_time(&self, exp: f64, nbf: Option<f64>, now: f64) -> Result<(), TokenError> {
        if now >= exp + self.leeway {
            return Err(TokenError::Expired);
        }
        if nbf.is_some_and(|nbf| now + self.leeway < nbf) {
            return Err(TokenError::NotYetValid);
        }
        Ok(())
    }
}

/// A fully verified token: who it names, and the times that bound its validity.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub identity: Identity,
    pub exp: f64,
    pub nbf: Option<f64>,
}

/// A token that passed every check, remembered so that its signature need not be
/// computed again. A hit is honoured only while the pool's current key for the
/// token's `kid` is the very key that verified it (same fingerprint: a key withdrawn,
/// or republished under the same `kid` with other material, revokes the entry), and
/// only after `exp`/`nbf` are checked again against the clock.
struct Remembered {
    verified: Verified,
    kid: String,
    key: [u8; 32],
}

/// How long a remembered token may stay in the cache at most; its own `exp` is
/// checked on every hit regardless.
const REMEMBER_AT_MOST: Duration = Duration::from_secs(3600);

/// Verifies tokens against the configured pools.
pub struct Verifier {
    pools: Vec<PoolRules>,
    max_token_bytes: usize,
    /// Verified tokens by their exact text; `None` when `token_cache.max_bytes` is 0.
    remembered: Option<Cache<Arc<str>, Arc<Remembered>>>,
}

/// Marks a field as present, whatever its value (even `null`).
#[derive(Debug, Default)]
struct Present(bool);

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
}

fn decode_part(part: &str, what: &'static str) -> Result<Vec<u8>, TokenError> {
    // The standard engine refuses padding, characters outside the base64url alphabet
    // and non-canonical trailing bits.
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed(what))
}

fn string_claim(v: &Option<Value>, name: &'static str) -> Result<Option<String>, TokenError> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TokenError::InvalidClaimType(name)),
    }
}

fn number_claim(v: &Option<Value>, name: &'static str) -> Result<Option<f64>, TokenError> {
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
        let remembered = (cache_bytes > 0).then(|| {
            Cache::builder()
                .max_capacity(cache_bytes)
                .weigher(|token: &Arc<str>, r: &Arc<Remembered>| {
                    let groups: usize = r.verified.identity.groups.iter().map(String::len).sum();
                    let bytes = token.len() + r.verified.identity.sub.len() + groups + 128;
                    u32::try_from(bytes).unwrap_or(u32::MAX)
                })
                .time_to_live(REMEMBER_AT_MOST)
                .build()
        });
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
            max_token_bytes,
            remembered,
        }
    }

    /// Verifies `token` with keys from `keys`, at the instant `now` (seconds since
    /// the Unix epoch), which the caller supplies so that tests need no time tricks.
    pub async fn verify(
        &self,
        token: &str,
        keys: &KeyStore,
        now: f64,
    ) -> Result<Identity, TokenError> {
        if token.len() > self.max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        if let Some(cache) = &self.remembered {
            if let Some(hit) = cache.get(token).await {
                let id = &hit.verified.identity;
                let current = keys.cached(id.pool, &hit.kid).await;
                if current.is_some_and(|k| k.fingerprint == hit.key) {
                    let pool = self.pools.get(id.pool).ok_or(TokenError::UnknownIssuer)?;
                    pool.check_time(hit.verified.exp, hit.verified.nbf, now)?;
                    return Ok(id.clone());
                }
                // The key left the key set or changed: verify from scratch, which will
                // say why.
                cache.invalidate(token).await;
            }
        }
        let unverified = self.parse(token)?;
        let (pool, kid) = (unverified.pool, unverified.kid.clone());
        let key = keys.find(pool, &kid).await.map_err(|e| match e {
            KeyLookupError::UnknownKeyId => TokenError::UnknownKeyId,
            KeyLookupError::Unavailable => TokenError::KeysUnavailable,
        })?;
        let verified = self.finish(unverified, &key, now)?;
        let identity = verified.identity.clone();
        if let Some(cache) = &self.remembered {
            let remembered = Remembered {
                verified,
                kid,
                key: key.fingerprint,
            };
            cache.insert(Arc::from(token), Arc::new(remembered)).await;
        }
        Ok(identity)
    }

    /// Step one: size, compact-JWS shape, header (`alg`, `kid`, `crit`), and the
    /// issuer, which selects the pool and so the key set.
    /// (Public so that the unit tests and benchmarks can drive each step alone.)
    pub fn parse<'t>(&self, token: &'t str) -> Result<Unverified<'t>, TokenError> {
        if token.len() > self.max_token_bytes {
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
        let header: RawHeader = serde_json::from_slice(&decode_part(header, "header encoding")?)
            .map_err(|_| TokenError::Malformed("header is not a JSON object"))?;
        if header.alg != Some(Value::String("RS256".into())) {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        let kid = match header.kid {
            Some(Value::String(kid)) if !kid.is_empty() => kid,
            _ => return Err(TokenError::MissingKeyId),
        };
        // RFC 7515 §4.1.11: a recipient must refuse critical extensions it does not
        // understand, and we understand none.
        if header.crit.0 {
            return Err(TokenError::CriticalHeader);
        }
        let claims: RawClaims = serde_json::from_slice(&decode_part(payload, "payload encoding")?)
            .map_err(|_| TokenError::Malformed("payload is not a JSON object of claims"))?;
        let iss = string_claim(&claims.iss, "iss")?.ok_or(TokenError::MissingClaim("iss"))?;
        let pool = self
            .pools
            .iter()
            .position(|p| p.issuers.contains(&iss))
            .ok_or(TokenError::UnknownIssuer)?;
        let signing_input_len = token.len() - signature.len() - 1;
        Ok(Unverified {
            pool,
            kid,
            signing_input: &token[..signing_input_len],
            signature,
            claims,
        })
    }

    /// Steps three and on: the key's own constraints, the signature, then the claims.
    pub fn finish(&self, t: Unverified<'_>, key: &Key, now: f64) -> Result<Verified, TokenError> {
        // from_jwk-style helpers ignore `use` and `alg`, so both are checked here.
        if key.kty != "RSA" || key.use_.as_deref().is_some_and(|u| u != "sig") {
            return Err(TokenError::KeyNotUsable);
        }
        if key.alg.as_deref().is_some_and(|a| a != "RS256") {
            return Err(TokenError::AlgorithmMismatch);
        }
        let Some(rsa) = &key.rsa else {
            return Err(TokenError::KeyNotUsable);
        };
        match jsonwebtoken::crypto::verify(
            t.signature,
            t.signing_input.as_bytes(),
            rsa,
            Algorithm::RS256,
        ) {
            Ok(true) => {}
            Ok(false) => return Err(TokenError::InvalidSignature),
            Err(_) => return Err(TokenError::Malformed("signature encoding")),
        }

        let pool = self.pools.get(t.pool).ok_or(TokenError::UnknownIssuer)?;
        let c = &t.claims;
        let exp = number_claim(&c.exp, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
        let nbf = number_claim(&c.nbf, "nbf")?;
        number_claim(&c.iat, "iat")?;
        pool.check_time(exp, nbf, now)?;

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

        let groups = match &c.groups {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|g| match g {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(TokenError::InvalidClaimType("cognito:groups")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(TokenError::InvalidClaimType("cognito:groups")),
        };
        let scopes = string_claim(&c.scope, "scope")?
            .map(|s| s.split_ascii_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();

        Ok(Verified {
            identity: Identity {
                sub,
                groups,
                scopes,
                token_use,
                client_id,
                pool: t.pool,
            },
            exp,
            nbf,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::issuer::SigningKey;
    use crate::jwks::{parse_key_set, KeySet};
    use serde_json::json;
    use std::sync::OnceLock;

    const POOL: &str = "eu-west-1_TestPool1";
    const ISS: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TestPool1";
    const NOW: f64 = 1_700_000_000.0;

    fn key() -> &'static SigningKey {
        static KEY: OnceLock<SigningKey> = OnceLock::new();
        KEY.get_or_init(|| SigningKey::generate("kid-1").expect("keygen"))
    }

    fn verifier(token_use: &str, leeway: u64) -> Verifier {
        let text = format!(
            r#"
            [upstream]
            url = "http://127.0.0.1:1"
            [[pools]]
            user_pool_id = "{POOL}"
            client_ids = ["client-a", "client-b"]
            token_use = "{token_use}"
            leeway = {leeway}
            "#
        );
        let config = Config::from_toml(&text).expect("config");
        Verifier::new(&config.pools, 8192, 0)
    }

    fn keys(extra: Value) -> KeySet {
        let mut jwk = key().jwk();
        if let (Some(obj), Some(extra)) = (jwk.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                obj.insert(k.clone(), v.clone());
            }
        }
        parse_key_set(json!({ "keys": [jwk] }).to_string().as_bytes()).expect("jwks")
    }

    fn access_claims() -> Value {
        json!({
            "sub": "user-1", "iss": ISS, "token_use": "access", "client_id": "client-a",
            "exp": NOW + 600.0, "iat": NOW - 10.0, "cognito:groups": ["admins", "ops"],
            "scope": "openid", "username": "alice"
        })
    }

    fn signed(k: &SigningKey, header: &Value, claims: &Value) -> String {
        k.sign(header, claims).expect("sign")
    }

    fn header() -> Value {
        json!({ "alg": "RS256", "kid": "kid-1" })
    }

    fn with(mut v: Value, key: &str, value: Value) -> Value {
        if let Some(obj) = v.as_object_mut() {
            if value.is_null() {
                obj.remove(key);
            } else {
                obj.insert(key.to_owned(), value);
            }
        }
        v
    }

    fn check(v: &Verifier, set: &KeySet, token: &str, now: f64) -> Result<Identity, TokenError> {
        let t = v.parse(token)?;
        let k = set.get(&t.kid).ok_or(TokenError::UnknownKeyId)?;
        v.finish(t, &k, now).map(|verified| verified.identity)
    }

    #[test]
    fn a_valid_access_token_gives_its_identity() {
        let token = signed(key(), &header(), &access_claims());
        let id = check(&verifier("access", 0), &keys(json!({})), &token, NOW).expect("valid");
        assert_eq!(
            id,
            Identity {
                sub: "user-1".into(),
                groups: vec!["admins".into(), "ops".into()],
                scopes: vec!["openid".into()],
                token_use: TokenUse::Access,
                client_id: "client-a".into(),
                pool: 0,
            }
        );
    }

    #[test]
    fn a_valid_id_token_uses_aud_and_the_multi_region_issuer() {
        let claims = json!({
            "sub": "user-2", "token_use": "id", "aud": "client-b", "exp": NOW + 5.0,
            "iss": "https://issuer-cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TestPool1"
        });
        let token = signed(key(), &header(), &claims);
        let id = check(&verifier("id", 0), &keys(json!({})), &token, NOW).expect("valid");
        assert_eq!((id.client_id.as_str(), id.groups.len()), ("client-b", 0));
    }

    #[test]
    fn each_failure_has_its_own_error() {
        use TokenError::*;
        let k = key();
        let good = access_claims();
        let sign = |h: Value, c: Value| signed(k, &h, &c);
        let valid = sign(header(), good.clone());
        let (h_b64, rest) = valid.split_once('.').expect("dot");
        let (p_b64, s_b64) = rest.split_once('.').expect("dot");
        let other_key = SigningKey::generate("kid-1").expect("keygen");
        let cases: Vec<(&str, String, TokenError)> = vec![
            ("too large", "a".repeat(9000), TooLarge),
            (
                "two parts",
                format!("{h_b64}.{p_b64}"),
                Malformed("not a compact JWS of three parts"),
            ),
            (
                "four parts",
                format!("{valid}.x"),
                Malformed("not a compact JWS of three parts"),
            ),
            (
                "empty signature",
                format!("{h_b64}.{p_b64}."),
                Malformed("empty part"),
            ),
            (
                "padded header",
                format!("{h_b64}=.{p_b64}.{s_b64}"),
                Malformed("header encoding"),
            ),
            (
                "standard alphabet",
                format!("{h_b64}.{p_b64}.{}", s_b64.replace(['-', '_'], "+")),
                Malformed("signature encoding"),
            ),
            (
                "header not json",
                format!("bm90IGpzb24.{p_b64}.{s_b64}"),
                Malformed("header is not a JSON object"),
            ),
            (
                "alg none",
                sign(json!({"alg": "none", "kid": "kid-1"}), good.clone()),
                UnsupportedAlgorithm,
            ),
            (
                "alg HS256",
                sign(json!({"alg": "HS256", "kid": "kid-1"}), good.clone()),
                UnsupportedAlgorithm,
            ),
            (
                "alg missing",
                sign(json!({"kid": "kid-1"}), good.clone()),
                UnsupportedAlgorithm,
            ),
            (
                "kid missing",
                sign(json!({"alg": "RS256"}), good.clone()),
                MissingKeyId,
            ),
            (
                "kid not a string",
                sign(json!({"alg": "RS256", "kid": 1}), good.clone()),
                MissingKeyId,
            ),
            (
                "crit",
                sign(
                    json!({"alg": "RS256", "kid": "kid-1", "crit": ["exp"]}),
                    good.clone(),
                ),
                CriticalHeader,
            ),
            (
                "payload not claims",
                format!("{h_b64}.WzFd.{s_b64}"),
                Malformed("payload is not a JSON object of claims"),
            ),
            (
                "duplicate claim",
                format!(
                    "{h_b64}.{}.{s_b64}",
                    URL_SAFE_NO_PAD.encode(br#"{"sub":"a","sub":"b"}"#)
                ),
                Malformed("payload is not a JSON object of claims"),
            ),
            (
                "iss missing",
                sign(header(), with(good.clone(), "iss", Value::Null)),
                MissingClaim("iss"),
            ),
            (
                "iss not string",
                sign(header(), with(good.clone(), "iss", json!(["x"]))),
                InvalidClaimType("iss"),
            ),
            (
                "other pool",
                sign(
                    header(),
                    with(
                        good.clone(),
                        "iss",
                        json!("https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other"),
                    ),
                ),
                UnknownIssuer,
            ),
            (
                "unknown kid",
                sign(json!({"alg": "RS256", "kid": "kid-2"}), good.clone()),
                UnknownKeyId,
            ),
            (
                "signed by another key",
                signed(&other_key, &header(), &good),
                InvalidSignature,
            ),
            (
                "tampered payload",
                format!(
                    "{h_b64}.{}.{s_b64}",
                    URL_SAFE_NO_PAD.encode(with(good.clone(), "sub", json!("root")).to_string())
                ),
                InvalidSignature,
            ),
            (
                "exp missing",
                sign(header(), with(good.clone(), "exp", Value::Null)),
                MissingClaim("exp"),
            ),
            (
                "exp string",
                sign(header(), with(good.clone(), "exp", json!("9999999999"))),
                InvalidClaimType("exp"),
            ),
            (
                "expired",
                sign(header(), with(good.clone(), "exp", json!(NOW - 1.0))),
                Expired,
            ),
            (
                "expires now",
                sign(header(), with(good.clone(), "exp", json!(NOW))),
                Expired,
            ),
            (
                "nbf future",
                sign(header(), with(good.clone(), "nbf", json!(NOW + 30.0))),
                NotYetValid,
            ),
            (
                "nbf string",
                sign(header(), with(good.clone(), "nbf", json!("0"))),
                InvalidClaimType("nbf"),
            ),
            (
                "iat string",
                sign(header(), with(good.clone(), "iat", json!("0"))),
                InvalidClaimType("iat"),
            ),
            (
                "sub missing",
                sign(header(), with(good.clone(), "sub", Value::Null)),
                MissingClaim("sub"),
            ),
            (
                "sub empty",
                sign(header(), with(good.clone(), "sub", json!(""))),
                MissingClaim("sub"),
            ),
            (
                "sub number",
                sign(header(), with(good.clone(), "sub", json!(7))),
                InvalidClaimType("sub"),
            ),
            (
                "token_use missing",
                sign(header(), with(good.clone(), "token_use", Value::Null)),
                MissingClaim("token_use"),
            ),
            (
                "token_use refresh",
                sign(header(), with(good.clone(), "token_use", json!("refresh"))),
                InvalidTokenUse,
            ),
            (
                "id token to access pool",
                sign(
                    header(),
                    with(
                        with(good.clone(), "token_use", json!("id")),
                        "aud",
                        json!("client-a"),
                    ),
                ),
                TokenUseNotAccepted,
            ),
            (
                "client_id missing",
                sign(header(), with(good.clone(), "client_id", Value::Null)),
                MissingClaim("client_id"),
            ),
            (
                "client_id number",
                sign(header(), with(good.clone(), "client_id", json!(1))),
                InvalidClaimType("client_id"),
            ),
            (
                "other client",
                sign(header(), with(good.clone(), "client_id", json!("client-z"))),
                ClientNotAllowed,
            ),
            (
                "access token with aud only",
                sign(
                    header(),
                    with(
                        with(good.clone(), "client_id", Value::Null),
                        "aud",
                        json!("client-a"),
                    ),
                ),
                MissingClaim("client_id"),
            ),
            (
                "groups not array",
                sign(
                    header(),
                    with(good.clone(), "cognito:groups", json!("admins")),
                ),
                InvalidClaimType("cognito:groups"),
            ),
            (
                "groups not strings",
                sign(
                    header(),
                    with(good.clone(), "cognito:groups", json!(["a", 1])),
                ),
                InvalidClaimType("cognito:groups"),
            ),
            (
                "scope not a string",
                sign(header(), with(good.clone(), "scope", json!(["openid"]))),
                InvalidClaimType("scope"),
            ),
        ];
        let v = verifier("access", 0);
        let set = keys(json!({}));
        for (name, token, want) in cases {
            assert_eq!(check(&v, &set, &token, NOW), Err(want), "{name}");
        }
    }

    #[test]
    fn id_token_audience_rules() {
        use TokenError::*;
        let base = json!({"sub": "u", "iss": ISS, "token_use": "id", "exp": NOW + 60.0});
        let v = verifier("any", 0);
        let set = keys(json!({}));
        let cases = [
            (Value::Null, Err(MissingClaim("aud"))),
            (json!("client-z"), Err(ClientNotAllowed)),
            (json!("client-b"), Ok("client-b")),
            // Cognito never issues an array, and aws-jwt-verify refuses one.
            (json!(["client-b"]), Err(InvalidClaimType("aud"))),
            (
                json!(["client-z", "client-b"]),
                Err(InvalidClaimType("aud")),
            ),
            (json!(["client-z", 3]), Err(InvalidClaimType("aud"))),
            (json!(5), Err(InvalidClaimType("aud"))),
        ];
        for (aud, want) in cases {
            let token = signed(key(), &header(), &with(base.clone(), "aud", aud.clone()));
            let got = check(&v, &set, &token, NOW);
            assert_eq!(
                got.as_ref().map(|i| i.client_id.as_str()),
                want.as_ref().map(|s| *s),
                "{aud}"
            );
        }
        let access_only = verifier("id", 0);
        let token = signed(key(), &header(), &access_claims());
        assert_eq!(
            check(&access_only, &set, &token, NOW),
            Err(TokenUseNotAccepted)
        );
    }

    #[test]
    fn leeway_applies_to_exp_and_nbf() {
        let v = verifier("access", 30);
        let set = keys(json!({}));
        let expired_recently = signed(
            key(),
            &header(),
            &with(access_claims(), "exp", json!(NOW - 20.0)),
        );
        assert!(check(&v, &set, &expired_recently, NOW).is_ok());
        let expired_long_ago = signed(
            key(),
            &header(),
            &with(access_claims(), "exp", json!(NOW - 31.0)),
        );
        assert_eq!(
            check(&v, &set, &expired_long_ago, NOW),
            Err(TokenError::Expired)
        );
        let nbf_soon = signed(
            key(),
            &header(),
            &with(access_claims(), "nbf", json!(NOW + 20.0)),
        );
        assert!(check(&v, &set, &nbf_soon, NOW).is_ok());
    }

    #[test]
    fn the_jwk_use_and_alg_are_enforced() {
        let token = signed(key(), &header(), &access_claims());
        let v = verifier("access", 0);
        let cases = [
            (json!({"use": "sig", "alg": "RS256"}), Ok(())),
            (json!({"use": "enc"}), Err(TokenError::KeyNotUsable)),
            (json!({"alg": "RS512"}), Err(TokenError::AlgorithmMismatch)),
            (json!({"alg": "PS256"}), Err(TokenError::AlgorithmMismatch)),
        ];
        for (extra, want) in cases {
            let got = check(&v, &keys(extra.clone()), &token, NOW).map(|_| ());
            assert_eq!(got, want, "{extra}");
        }
    }

    #[test]
    fn real_cognito_tokens_verify_inside_their_window_only() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/real-cognito");
        let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).expect("fixture");
        let set = parse_key_set(read("jwks.json").as_bytes()).expect("jwks");
        let config = Config::from_toml(
            r#"
            [upstream]
            url = "http://127.0.0.1:1"
            [[pools]]
            user_pool_id = "us-east-1_iWcTPhZBA"
            client_ids = ["6i0o6sela15jdctgeflkmj4gjo"]
            token_use = "any"
            "#,
        )
        .expect("config");
        let v = Verifier::new(&config.pools, 8192, 0);
        let inside = 1_617_955_200.0;
        for (file, use_) in [
            ("access-token.jwt", TokenUse::Access),
            ("id-token.jwt", TokenUse::Id),
        ] {
            let token = read(file);
            let id = check(&v, &set, token.trim(), inside).expect(file);
            assert_eq!(id.sub, "1bc2a8fb-fc0a-440f-93ae-576e0879d180", "{file}");
            assert_eq!(id.groups, ["us-east-1_iWcTPhZBA_adfs"], "{file}");
            let scopes: &[&str] = match use_ {
                TokenUse::Access => &["openid", "profile", "email"],
                TokenUse::Id => &[],
            };
            assert_eq!(id.scopes, scopes, "{file}");
            assert_eq!(id.client_id, "6i0o6sela15jdctgeflkmj4gjo", "{file}");
            assert_eq!(id.token_use, use_, "{file}");
            for later in [1_617_955_748.0, 1_800_000_000.0] {
                assert_eq!(
                    check(&v, &set, token.trim(), later),
                    Err(TokenError::Expired),
                    "{file} at {later}"
                );
            }
        }
    }
}
