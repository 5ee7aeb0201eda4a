//! A development-only token issuer for cognito-gate: in-memory RSA and P-256 keys that
//! sign Cognito-shaped tokens, OIDC tokens and ALB headers, and publish their keys.
//! `cognito-gate demo` and `dev-issuer` serve it (feature `dev`), and the tests sign
//! with it as a dev-dependency, so that `cargo test --no-default-features` tests the
//! binary that ships, which has no signing code at all.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

/// The DER SubjectPublicKeyInfo of a P-256 key up to its point (RFC 5480): the
/// algorithm (id-ecPublicKey, secp256r1) and the bit string's header, then the 64
/// bytes of X and Y. Written here on its own, not taken from the verifier, so that the
/// signer and the verifier check each other.
const P256_SPKI_PREFIX: [u8; 27] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
];

#[derive(Debug, thiserror::Error)]
/// Why the local issuer could not make a key or a token.
pub enum IssuerError {
    #[error("key generation failed")]
    KeyGeneration,
    #[error("signing failed")]
    Signing,
}

/// An RSA-2048 key pair with a key id.
pub struct SigningKey {
    kid: String,
    pair: KeyPair,
}

impl SigningKey {
    /// A fresh key, held only in memory.
    pub fn generate(kid: &str) -> Result<SigningKey, IssuerError> {
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| IssuerError::KeyGeneration)?;
        Ok(SigningKey {
            kid: kid.to_owned(),
            pair,
        })
    }

    /// The key id that tokens name in their header and the JWKS lists.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK, shaped like Cognito's (`alg`, `e`, `kid`, `kty`, `n`, `use`).
    pub fn jwk(&self) -> Value {
        let public = PublicKeyComponents::<Vec<u8>>::from(self.pair.public_key());
        json!({
            "alg": "RS256",
            "e": URL_SAFE_NO_PAD.encode(&public.e),
            "kid": self.kid,
            "kty": "RSA",
            "n": URL_SAFE_NO_PAD.encode(&public.n),
            "use": "sig",
        })
    }

    /// Signs `claims` under `header` as a compact JWS with RS256. The header is used as
    /// given, so tests can also produce deliberately wrong tokens.
    pub fn sign(&self, header: &Value, claims: &Value) -> Result<String, IssuerError> {
        let header = URL_SAFE_NO_PAD.encode(header.to_string());
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        self.sign_parts(&header, &claims)
    }

    /// [`SigningKey::sign`] with PS256 (RSASSA-PSS, SHA-256), for OIDC issuers.
    pub fn sign_ps256(&self, header: &Value, claims: &Value) -> Result<String, IssuerError> {
        let header = URL_SAFE_NO_PAD.encode(header.to_string());
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        self.sign_parts_with(&aws_lc_rs::signature::RSA_PSS_SHA256, &header, &claims)
    }

    /// Signs already encoded header and payload parts as they are, so that tests can
    /// sign a payload no JSON value would print (a claim given twice).
    pub fn sign_parts(&self, header: &str, payload: &str) -> Result<String, IssuerError> {
        self.sign_parts_with(&RSA_PKCS1_SHA256, header, payload)
    }

    fn sign_parts_with(
        &self,
        padding: &'static dyn aws_lc_rs::signature::RsaEncoding,
        header: &str,
        payload: &str,
    ) -> Result<String, IssuerError> {
        let mut token = format!("{header}.{payload}");
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                padding,
                &SystemRandom::new(),
                token.as_bytes(),
                &mut signature,
            )
            .map_err(|_| IssuerError::Signing)?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(token)
    }
}

/// A P-256 key pair that signs headers the way an Application Load Balancer does:
/// ES256, JOSE `R‖S`, every part base64url with padding. For tests of ALB mode.
pub struct AlbSigner {
    pair: aws_lc_rs::signature::EcdsaKeyPair,
}

impl AlbSigner {
    /// A fresh key, held only in memory.
    pub fn generate() -> Result<AlbSigner, IssuerError> {
        use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| IssuerError::KeyGeneration)?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| IssuerError::KeyGeneration)?;
        Ok(AlbSigner { pair })
    }

    /// The public key as ALB serves it: a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    pub fn pem(&self) -> String {
        let point = self.pair.public_key().as_ref();
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(point.get(1..).unwrap_or_default());
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .filter_map(|c| std::str::from_utf8(c).ok())
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }

    /// The public key as a JWK (`kty` EC, `crv` P-256), for tests of ES256 issuers.
    pub fn jwk(&self, kid: &str) -> Value {
        let point = self.pair.public_key().as_ref();
        let (x, y) = point
            .get(1..)
            .unwrap_or_default()
            .split_at(point.len().saturating_sub(1) / 2);
        json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        })
    }

    /// A standard compact JWS with ES256 (unpadded base64url), for ES256 issuers.
    pub fn sign_jws(&self, header: &Value, claims: &Value) -> Result<String, IssuerError> {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.signature(&input)?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    /// `header` and `payload` as ALB writes them: padded base64url parts, signed over
    /// the padded text.
    pub fn sign(&self, header: &Value, payload: &Value) -> Result<String, IssuerError> {
        let pad = base64::engine::general_purpose::URL_SAFE;
        let input = format!(
            "{}.{}",
            pad.encode(header.to_string()),
            pad.encode(payload.to_string())
        );
        let signature = self.signature(&input)?;
        Ok(format!("{input}.{}", pad.encode(signature)))
    }

    /// The 64-byte `R‖S` signature of `input`, for tests that re-encode it.
    pub fn signature(&self, input: &str) -> Result<Vec<u8>, IssuerError> {
        self.pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| IssuerError::Signing)
    }
}

/// Mints Cognito-shaped access tokens for one made-up user pool.
pub struct DevIssuer {
    key: SigningKey,
    pub pool_id: String,
    pub client_id: String,
}

impl DevIssuer {
    /// An issuer for `pool_id` whose tokens carry `client_id`, with a fresh key.
    pub fn new(pool_id: &str, client_id: &str) -> Result<DevIssuer, IssuerError> {
        Ok(DevIssuer {
            key: SigningKey::generate("dev-key-1")?,
            pool_id: pool_id.to_owned(),
            client_id: client_id.to_owned(),
        })
    }

    /// The `iss` these tokens carry: the real Cognito form for this pool id.
    pub fn issuer(&self) -> String {
        let region = self.pool_id.split('_').next().unwrap_or_default();
        format!(
            "https://cognito-idp.{region}.amazonaws.com/{}",
            self.pool_id
        )
    }

    /// The path Cognito serves the JWKS at, relative to the issuer's host.
    pub fn jwks_path(&self) -> String {
        format!("/{}/.well-known/jwks.json", self.pool_id)
    }

    /// The path of this issuer's OpenID Connect discovery document.
    pub fn discovery_path(&self) -> String {
        format!("/{}/.well-known/openid-configuration", self.pool_id)
    }

    /// The discovery document, naming the key set at `base` (scheme and authority of
    /// this server, as the client reached it).
    pub fn discovery_json(&self, base: &str) -> String {
        json!({
            "issuer": self.issuer(),
            "jwks_uri": format!("{base}{}", self.jwks_path()),
            "id_token_signing_alg_values_supported": ["RS256"],
            "subject_types_supported": ["public"],
            "response_types_supported": ["code"],
        })
        .to_string()
    }

    /// The JWKS document with this issuer's one key.
    pub fn jwks_json(&self) -> String {
        json!({ "keys": [self.key.jwk()] }).to_string()
    }

    /// An access token for `sub` in `groups`, valid from now for `lifetime_secs`
    /// (negative for one that has already expired).
    pub fn mint(
        &self,
        sub: &str,
        groups: &[&str],
        lifetime_secs: i64,
    ) -> Result<String, IssuerError> {
        self.mint_with(sub, groups, &[], lifetime_secs)
    }

    /// [`DevIssuer::mint`] with more claims, such as `custom:tenant`; they cannot
    /// replace the claims the issuer sets itself.
    pub fn mint_with(
        &self,
        sub: &str,
        groups: &[&str],
        extra: &[(String, Value)],
        lifetime_secs: i64,
    ) -> Result<String, IssuerError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let issued = if lifetime_secs < 0 {
            now + 2 * lifetime_secs
        } else {
            now
        };
        let mut claims = json!({
            "sub": sub,
            "iss": self.issuer(),
            "client_id": self.client_id,
            "token_use": "access",
            "scope": "openid profile",
            "auth_time": issued,
            "iat": issued,
            "exp": now + lifetime_secs,
            "jti": format!("{sub}-{issued}"),
            "username": sub,
            "version": 2,
        });
        if !groups.is_empty() {
            claims["cognito:groups"] = json!(groups);
        }
        if let Some(map) = claims.as_object_mut() {
            for (name, value) in extra {
                map.entry(name.as_str()).or_insert_with(|| value.clone());
            }
        }
        self.key
            .sign(&json!({ "kid": self.key.kid(), "alg": "RS256" }), &claims)
    }
}
