//! ALB mode: the `x-amzn-oidc-data` header an Application Load Balancer with a Cognito
//! or OIDC `authenticate` action hands the app, verified as the ALB user guide
//! specifies and at least as strictly as aws-jwt-verify's `AlbJwtVerifier`:
//! - ES256 (P-256, SHA-256) with the JOSE `R‖S` signature (64 bytes, never DER);
//! - every part base64url **with** canonical padding, and the signature over the
//!   padded `header.payload` text exactly as received (accepted only here);
//! - `signer`, `iss`, `client` and `exp` from the protected header, `signer` equal to
//!   a configured load balancer ARN;
//! - the `kid` a UUID before it goes near a URL, and its public key a PEM P-256 key
//!   fetched from `key_url`, cached per URL with one fetch for concurrent misses and a
//!   cooldown after a failed one.
//!
//! Stricter than aws-jwt-verify: the header's `exp` is required and checked, the key
//! must be a P-256 key, unpadded parts are refused, and the payload's `exp`, `nbf` and
//! `iss` are honoured when present. High-S signatures are accepted: ALB does not
//! normalise them. The identity is never taken from `x-amzn-oidc-identity` or
//! `x-amzn-oidc-accesstoken`.
//!
//! A header that passed is remembered by its SHA-256 digest, as bearer tokens are
//! (`token_cache`): a repeat skips the signature, never the header's checks (shape,
//! `signer`, `iss`, `client`, `exp`), and counts only while the load balancer's key
//! for its `kid` is the one that verified it; the payload's `exp` and `nbf` are
//! checked again.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;
use bytes::Bytes;
use http::Uri;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use moka::future::Cache;
use serde::Deserialize;
use serde_json::Value;

use super::cache::{digest, recall, remember, Remembered, TokenCache};
use super::identity::{Identity, Source, TokenUse, Verified};
use super::keys::{download, end_fetch_span, JwksError};
use super::verify::{
    check_time, compact_parts, groups_claim, keep_claims, number_claim, string_claim, Present,
    TokenError, VerifyError,
};
use crate::client::{own_jwks_client, JwksClient, JwksConnector};
use crate::config::AlbConfig;
use crate::metrics::{FetchLabels, Metrics};
use crate::trace::Tracing;

/// The header an ALB writes its signed user claims to.
pub const ALB_DATA: &str = "x-amzn-oidc-data";

/// Headers an ALB writes that must never be believed from a client: the gate's own
/// identity headers say who the caller is.
pub const ALB_UNVERIFIED: [&str; 2] = ["x-amzn-oidc-identity", "x-amzn-oidc-accesstoken"];

/// Every header an ALB writes about the user. An app written for an ALB trusts them
/// all, so none reaches it unless this gate verified it on this very request: only
/// [`ALB_DATA`] can be, and only in ALB mode.
pub const ALB_HEADERS: [&str; 3] = [ALB_UNVERIFIED[0], ALB_UNVERIFIED[1], ALB_DATA];

/// The DER of a P-256 `SubjectPublicKeyInfo` up to its uncompressed point: the
/// `id-ecPublicKey` and `prime256v1` OIDs and a 66-byte BIT STRING (no unused bits,
/// then `04`). Any other key type, curve or point form is refused.
const P256_SPKI_PREFIX: [u8; 27] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
];

/// A PEM public key is a few hundred bytes; anything larger is not one.
const MAX_KEY_BYTES: usize = 8 * 1024;

/// How long a fetched key is kept: keys are immutable per `kid`, so this only bounds
/// how long a withdrawn one could linger.
const KEEP_KEYS: Duration = Duration::from_secs(24 * 3600);

/// The protected header. Derived deserialization refuses a field given twice.
#[derive(Deserialize)]
struct RawHeader {
    alg: Option<Value>,
    kid: Option<Value>,
    signer: Option<Value>,
    iss: Option<Value>,
    client: Option<Value>,
    exp: Option<Value>,
    #[serde(default)]
    crit: Present,
}

/// The payload claims read here; the rest are the policy's (see `keep_claims`).
#[derive(Deserialize)]
struct RawPayload {
    sub: Option<Value>,
    exp: Option<Value>,
    nbf: Option<Value>,
    iss: Option<Value>,
    #[serde(rename = "cognito:groups")]
    groups: Option<Value>,
}

/// A load balancer's public key, ready to verify with.
struct AlbKey {
    /// The uncompressed P-256 point.
    point: Vec<u8>,
    /// Its SHA-256: what a remembered header was verified with.
    fingerprint: [u8; 32],
}

/// Verifies `x-amzn-oidc-data` for the configured load balancers.
pub struct AlbVerifier {
    albs: Vec<AlbConfig>,
    max_token_bytes: usize,
    kept_claims: Vec<Box<str>>,
    client: Client<JwksConnector, Empty<Bytes>>,
    /// Each load balancer's own key-fetch client, when it has TLS files.
    own_clients: Vec<Option<Result<JwksClient, String>>>,
    fetch_timeout: Duration,
    /// Keys by URL.
    keys: Cache<String, Arc<AlbKey>>,
    /// Failed fetches by URL, for the cooldown: `true` when the key server said the
    /// key does not exist (the token's fault), `false` when it could not be asked.
    failed: Cache<String, bool>,
    /// Headers that passed, by digest; `None` when `token_cache.max_bytes` is 0.
    remembered: Option<TokenCache>,
    metrics: Arc<Metrics>,
    /// A span per key fetch, when tracing is on.
    tracing: Tracing,
}

impl AlbVerifier {
    /// `cache_bytes` bounds the remembered headers, as `token_cache.max_bytes` does
    /// the bearer tokens (0: verify every signature).
    pub fn new(
        albs: &[AlbConfig],
        max_token_bytes: usize,
        client: Client<JwksConnector, Empty<Bytes>>,
        fetch_timeout: Duration,
        cooldown: Duration,
        cache_bytes: u64,
        metrics: Arc<Metrics>,
    ) -> Self {
        AlbVerifier {
            albs: albs.to_vec(),
            max_token_bytes,
            kept_claims: Vec::new(),
            client,
            own_clients: albs
                .iter()
                .map(|alb| own_jwks_client(&alb.tls, fetch_timeout))
                .collect(),
            fetch_timeout,
            keys: Cache::builder()
                .max_capacity(1024)
                .time_to_live(KEEP_KEYS)
                .build(),
            failed: Cache::builder().time_to_live(cooldown).build(),
            remembered: TokenCache::new(cache_bytes),
            metrics,
            tracing: Tracing::off(),
        }
    }

    /// Traces each key fetch with `tracing`.
    pub fn tracing(mut self, tracing: Tracing) -> Self {
        self.tracing = tracing;
        self
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

    /// The load balancers this verifier accepts.
    pub fn albs(&self) -> &[AlbConfig] {
        &self.albs
    }

    /// How many verified headers are remembered.
    pub async fn cached_headers(&self) -> u64 {
        match &self.remembered {
            Some(cache) => cache.entry_count().await,
            None => 0,
        }
    }

    /// Verifies one `x-amzn-oidc-data` value at `now` (seconds since the epoch).
    pub async fn verify(&self, data: &str, now: f64) -> Result<Verified, VerifyError> {
        let checked = self.check_header(data, now)?;
        let alb = self
            .albs
            .get(checked.alb)
            .ok_or(TokenError::SignerNotAllowed)?;
        let key = self
            .key(&alb.key_url_for(&checked.kid), checked.alb)
            .await?;
        let leeway = alb.leeway.as_secs_f64();
        // Digested only when there is a cache to ask.
        let data_digest = self.remembered.as_ref().map(|_| digest(data));
        let hit = recall(
            self.remembered.as_ref(),
            data_digest.as_ref(),
            Some(&self.metrics),
            async |hit: &Remembered| hit.kid == checked.kid && hit.key == key.fingerprint,
        )
        .await;
        if let Some(hit) = hit {
            check_time(hit.verified.exp, hit.verified.nbf, now, leeway)?;
            return Ok(hit.verified.clone());
        }
        let kid = checked.kid.clone();
        let verified = self.finish(checked, &key, now)?;
        let remembered = Remembered {
            verified,
            kid,
            key: key.fingerprint,
        };
        Ok(remember(self.remembered.as_ref(), data_digest, remembered).await)
    }

    /// Shape, padding, header and its `signer`, `iss`, `client` and `exp`.
    fn check_header<'d>(&self, data: &'d str, now: f64) -> Result<Checked<'d>, TokenError> {
        let (header, payload, signature) = compact_parts(data, self.max_token_bytes)?;
        let header: RawHeader = serde_json::from_slice(&padded(header, "header encoding")?)
            .map_err(|_| TokenError::Malformed("header is not a JSON object"))?;
        if header.alg != Some(Value::String("ES256".into())) {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        if header.crit.0 {
            return Err(TokenError::CriticalHeader);
        }
        let kid = match &header.kid {
            Some(Value::String(kid)) if is_uuid(kid) => kid.clone(),
            Some(_) => return Err(TokenError::InvalidKeyId),
            None => return Err(TokenError::MissingKeyId),
        };
        let signer =
            string_claim(&header.signer, "signer")?.ok_or(TokenError::MissingClaim("signer"))?;
        let alb = self
            .albs
            .iter()
            .position(|a| a.signers.contains(&signer))
            .ok_or(TokenError::SignerNotAllowed)?;
        let config = self.albs.get(alb).ok_or(TokenError::SignerNotAllowed)?;
        let iss = string_claim(&header.iss, "iss")?.ok_or(TokenError::MissingClaim("iss"))?;
        if config.issuer.as_ref().is_some_and(|want| *want != iss) {
            return Err(TokenError::UnknownIssuer);
        }
        let client =
            string_claim(&header.client, "client")?.ok_or(TokenError::MissingClaim("client"))?;
        if !config.client_ids.is_empty() && !config.client_ids.contains(&client) {
            return Err(TokenError::ClientNotAllowed);
        }
        let exp = number_claim(&header.exp, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
        check_time(exp, None, now, config.leeway.as_secs_f64())?;
        let signing_input = &data[..header_len(data, signature)];
        Ok(Checked {
            alb,
            kid,
            iss,
            client,
            signing_input,
            payload,
            signature,
        })
    }

    /// The signature, then the payload.
    fn finish(&self, t: Checked<'_>, key: &AlbKey, now: f64) -> Result<Verified, TokenError> {
        let signature = padded(t.signature, "signature encoding")?;
        if signature.len() != 64 {
            return Err(TokenError::Malformed(
                "signature is not a 64-byte JOSE R||S ECDSA signature",
            ));
        }
        let public = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            &key.point,
        );
        public
            .verify(t.signing_input.as_bytes(), &signature)
            .map_err(|_| TokenError::InvalidSignature)?;

        let payload = padded(t.payload, "payload encoding")?;
        let claims: RawPayload = serde_json::from_slice(&payload)
            .map_err(|_| TokenError::Malformed("payload is not a JSON object of claims"))?;
        let leeway = self.albs.get(t.alb).map_or(0.0, |a| a.leeway.as_secs_f64());
        // The payload's own times are optional: the header's `exp` bounds the token.
        let exp = number_claim(&claims.exp, "exp")?.unwrap_or(f64::INFINITY);
        let nbf = number_claim(&claims.nbf, "nbf")?;
        check_time(exp, nbf, now, leeway)?;
        if string_claim(&claims.iss, "iss")?.is_some_and(|iss| iss != t.iss) {
            return Err(TokenError::UnknownIssuer);
        }
        let sub = string_claim(&claims.sub, "sub")?
            .filter(|s| !s.is_empty())
            .ok_or(TokenError::MissingClaim("sub"))?;
        let groups = groups_claim(&claims.groups)?;
        let claims = keep_claims(&payload, &self.kept_claims)?;
        let identity = Identity {
            sub,
            groups,
            scopes: Vec::new(),
            token_use: TokenUse::Id,
            client_id: t.client,
            source: Source::Alb(t.alb),
            claims,
            // Revocation applies to bearer tokens; the load balancer re-signs its
            // header for every request of a session it keeps itself.
            revocable: Default::default(),
        };
        Ok(Verified {
            identity: Arc::new(identity),
            exp,
            nbf,
        })
    }

    /// The key at `url`: cached, one fetch for all concurrent misses, and after a
    /// failed fetch none for the cooldown.
    async fn key(&self, url: &str, alb: usize) -> Result<Arc<AlbKey>, VerifyError> {
        if let Some(key) = self.keys.get(url).await {
            return Ok(key);
        }
        if let Some(unknown) = self.failed.get(url).await {
            return Err(match unknown {
                true => TokenError::UnknownKeyId.into(),
                false => VerifyError::KeysUnavailable,
            });
        }
        let fetched = self
            .keys
            .try_get_with(url.to_owned(), self.fetch(url, alb))
            .await;
        match fetched {
            Ok(key) => Ok(key),
            Err(e) => {
                let unknown = matches!(
                    *e,
                    JwksError::Status(s) if s.as_u16() == 403 || s.as_u16() == 404
                );
                self.failed.insert(url.to_owned(), unknown).await;
                Err(match unknown {
                    true => TokenError::UnknownKeyId.into(),
                    false => VerifyError::KeysUnavailable,
                })
            }
        }
    }

    /// Fetches the key at `url` for the load balancer `index` of the configuration.
    async fn fetch(&self, url: &str, index: usize) -> Result<Arc<AlbKey>, JwksError> {
        let (Some(alb), Some(own)) = (self.albs.get(index), self.own_clients.get(index)) else {
            return Err(JwksError::Request(format!("no load balancer {index}")));
        };
        let uri: Uri = url
            .parse()
            .map_err(|_| JwksError::Request(format!("{url:?} is not a URL")))?;
        let pool = format!("alb:{}", alb.region);
        let span = self.tracing.key_fetch("alb key fetch", &pool, url);
        let client = match own {
            None => Ok(&self.client),
            Some(Ok(client)) => Ok(client),
            Some(Err(e)) => Err(JwksError::Request(e.clone())),
        };
        let fetched = match client {
            Err(e) => Err(e),
            Ok(client) => match tokio::time::timeout(
                self.fetch_timeout,
                download(client, &uri, "application/x-pem-file, */*", MAX_KEY_BYTES),
            )
            .await
            {
                Ok(result) => {
                    result.and_then(|body| parse_pem(&body).map_err(JwksError::Malformed))
                }
                Err(_) => Err(JwksError::Timeout(self.fetch_timeout)),
            },
        };
        end_fetch_span(&span, &fetched);
        let label = FetchLabels {
            pool: Arc::from(pool),
            result: if fetched.is_ok() { "success" } else { "error" },
        };
        self.metrics.jwks_fetches.get_or_create(&label).inc();
        match &fetched {
            Ok(_) => tracing::info!(region = %alb.region, %url, "ALB public key loaded"),
            Err(e) => {
                tracing::error!(region = %alb.region, %url, error = %e, "ALB public key fetch failed")
            }
        }
        fetched.map(|point| {
            let mut fingerprint = [0u8; 32];
            fingerprint.copy_from_slice(
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &point).as_ref(),
            );
            Arc::new(AlbKey { point, fingerprint })
        })
    }
}

/// A header that passed its checks, waiting for its key.
struct Checked<'d> {
    alb: usize,
    kid: String,
    iss: String,
    client: String,
    signing_input: &'d str,
    payload: &'d str,
    signature: &'d str,
}

/// Where the signature part starts, less its dot.
fn header_len(data: &str, signature: &str) -> usize {
    data.len() - signature.len() - 1
}

/// A base64url part with canonical `=` padding, as ALB writes every part.
fn padded(part: &str, what: &'static str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE
        .decode(part)
        .map_err(|_| TokenError::Malformed(what))
}

/// Whether `kid` is a UUID (8-4-4-4-12 hex digits), as ALB issues them: nothing else
/// is put into a key URL.
pub fn is_uuid(kid: &str) -> bool {
    let groups: Vec<&str> = kid.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The uncompressed point of a PEM `PUBLIC KEY` that is a P-256 key.
fn parse_pem(body: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the key is not text".to_owned())?;
    let inner = text
        .trim()
        .strip_prefix("-----BEGIN PUBLIC KEY-----")
        .and_then(|t| t.strip_suffix("-----END PUBLIC KEY-----"))
        .ok_or_else(|| "the key is not a PEM PUBLIC KEY".to_owned())?;
    let b64: String = inner.split_ascii_whitespace().collect();
    let der = STANDARD
        .decode(b64)
        .map_err(|_| "the PEM key is not base64".to_owned())?;
    match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
        Some(xy) if xy.len() == 64 => Ok(der[P256_SPKI_PREFIX.len() - 1..].to_vec()),
        _ => Err("the key is not an uncompressed P-256 (prime256v1) EC public key".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_uuids_are_key_ids() {
        for good in [
            "01234567-89ab-cdef-0123-456789abcdef",
            "ABCDEF01-2345-6789-ABCD-EF0123456789",
        ] {
            assert!(is_uuid(good), "{good}");
        }
        for bad in [
            "",
            "../../etc/passwd",
            "01234567-89ab-cdef-0123-456789abcde",
            "01234567-89ab-cdef-0123-456789abcdefa",
            "0123456789abcdef0123456789abcdef",
            "01234567-89ab-cdef-0123-456789abcdeg",
            "01234567-89ab-cdef-0123-456789abcdef/x",
            "01234567-89ab-cdef-0123-456789abcdef?x=1",
            "01234567-89ab-cdef-0123-4567-89abcdef",
        ] {
            assert!(!is_uuid(bad), "{bad}");
        }
    }

    #[test]
    fn only_p256_public_keys_parse() {
        let point = [0x04u8; 65];
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&point[1..]);
        let pem = |der: &[u8]| {
            format!(
                "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
                STANDARD.encode(der)
            )
        };
        let parsed = parse_pem(pem(&der).as_bytes()).expect("a P-256 key");
        assert_eq!(parsed.len(), 65);
        assert_eq!(parsed[0], 0x04);
        // Another curve's OID, a compressed point, a short key, and not PEM at all.
        let mut p384 = der.clone();
        p384[20] = 0x22;
        assert!(parse_pem(pem(&p384).as_bytes()).is_err());
        let mut compressed = der.clone();
        compressed[26] = 0x02;
        assert!(parse_pem(pem(&compressed).as_bytes()).is_err());
        assert!(parse_pem(pem(&der[..80]).as_bytes()).is_err());
        assert!(parse_pem(b"not a key").is_err());
        assert!(parse_pem(pem(&der).replace("PUBLIC KEY", "RSA PUBLIC KEY").as_bytes()).is_err());
    }

    #[test]
    fn padding_is_required_and_canonical() {
        // "ab" needs one '=' to be canonical.
        assert_eq!(padded("YWI=", "x"), Ok(b"ab".to_vec()));
        assert!(padded("YWI", "x").is_err());
        assert!(padded("YWJ=", "x").is_err());
        assert!(padded("YWI==", "x").is_err());
    }
}
