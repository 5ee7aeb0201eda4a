//! The verified-token cache: tokens that passed every check, remembered so that a
//! client reusing its token does not pay for an RSA verification on every request.
//! Entries are keyed by the SHA-256 digest of the whole token, never by a fast hash
//! alone (a collision would hand one caller another caller's identity), and never hold
//! the token's text.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use super::identity::Verified;
use crate::metrics::Metrics;

/// A token that passed every check, remembered so that its signature need not be
/// computed again. A hit is honoured only while the pool's current key for the
/// token's `kid` is the very key that verified it (same fingerprint: a key withdrawn,
/// or republished under the same `kid` with other material, revokes the entry), and
/// only after `exp`/`nbf` are checked again against the clock.
pub struct Remembered {
    pub verified: Verified,
    pub kid: String,
    /// The fingerprint of the key that verified it.
    pub key: [u8; 32],
}

/// What one entry costs the process besides its strings: the digest, the
/// `Remembered` and its `Arc`, the strings' and vectors' allocations, and moka's own
/// bookkeeping (hash table, access-order and expiry nodes). Measured, not estimated:
/// `cargo bench --bench authorize -- "token cache"` prints the resident bytes per
/// identity, 776 for a Cognito identity whose strings take 136.
const ENTRY_OVERHEAD: usize = 640;

/// How long a remembered token may stay in the cache at most; its own `exp` is
/// checked on every hit regardless.
const REMEMBER_AT_MOST: Duration = Duration::from_secs(3600);

/// A token's SHA-256 digest: the cache key.
pub type Digest = [u8; 32];

/// The digest of `token`'s exact text.
pub fn digest(token: &str) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref(),
    );
    out
}

/// Remembers a token that just passed (when there is a cache, and so a digest) and
/// hands back what it verified.
pub async fn remember(
    cache: Option<&TokenCache>,
    digest: Option<Digest>,
    remembered: Remembered,
) -> Verified {
    let verified = remembered.verified.clone();
    if let (Some(cache), Some(digest)) = (cache, digest) {
        cache.remember(digest, remembered).await;
    }
    verified
}

/// The remembered verification of a token, when there is a cache that holds it and
/// `still_current` says the key that verified it is still the signer's current one;
/// an entry whose key left the key set or changed is forgotten, so that the token is
/// verified from scratch (which says why). Counts the hit or the miss. One recall for
/// the bearer tokens' verifier and the load balancer's.
pub async fn recall(
    cache: Option<&TokenCache>,
    digest: Option<&Digest>,
    metrics: Option<&Metrics>,
    still_current: impl AsyncFnOnce(&Remembered) -> bool,
) -> Option<Arc<Remembered>> {
    let (cache, digest) = (cache?, digest?);
    if let Some(hit) = cache.get(digest).await {
        if still_current(&hit).await {
            if let Some(m) = metrics {
                m.token_cache_hits.inc();
            }
            return Some(hit);
        }
        cache.forget(digest).await;
    }
    if let Some(m) = metrics {
        m.token_cache_misses.inc();
    }
    None
}

/// Remembered tokens by digest, bounded in bytes.
pub struct TokenCache(Cache<Digest, Arc<Remembered>>);

impl TokenCache {
    /// A cache of at most `max_bytes` (the identity's strings plus [`ENTRY_OVERHEAD`]
    /// per entry); `None` for 0, which verifies every signature every time.
    pub fn new(max_bytes: u64) -> Option<Self> {
        (max_bytes > 0).then(|| {
            TokenCache(
                Cache::builder()
                    .max_capacity(max_bytes)
                    .weigher(|_: &Digest, r: &Arc<Remembered>| {
                        let identity = &r.verified.identity;
                        let strings: usize = identity
                            .groups
                            .iter()
                            .chain(&identity.scopes)
                            .map(String::len)
                            .sum();
                        let bytes = identity.sub.len()
                            + identity.client_id.len()
                            + identity.revocable.family.as_ref().map_or(0, |f| f.len())
                            + r.kid.len()
                            + strings
                            + identity.claims.weight()
                            + ENTRY_OVERHEAD;
                        u32::try_from(bytes).unwrap_or(u32::MAX)
                    })
                    .time_to_live(REMEMBER_AT_MOST)
                    .build(),
            )
        })
    }

    /// Entries now, after moka's pending bookkeeping has run.
    pub async fn entry_count(&self) -> u64 {
        self.0.run_pending_tasks().await;
        self.0.entry_count()
    }

    pub async fn get(&self, key: &Digest) -> Option<Arc<Remembered>> {
        self.0.get(key).await
    }

    pub async fn forget(&self, key: &Digest) {
        self.0.invalidate(key).await;
    }

    pub async fn remember(&self, key: Digest, remembered: Remembered) {
        self.0.insert(key, Arc::new(remembered)).await;
    }
}

#[cfg(any(test, feature = "dev"))]
impl Remembered {
    /// The `i`th of many typical Cognito users, for the size test and the benchmark:
    /// a UUID `sub`, two groups and two scopes (a generous user), a real-looking
    /// `client_id` and `kid`.
    pub fn typical(i: usize) -> Self {
        use super::identity::{Claims, Identity, PoolId, Source, TokenUse};
        Remembered {
            verified: Verified {
                identity: Arc::new(Identity {
                    sub: format!("4f6c1a2e-8d0b-4b8e-9a53-{i:012}"),
                    groups: vec!["admins".into(), "finance".into()],
                    scopes: vec!["openid".into(), "orders/read".into()],
                    token_use: TokenUse::Access,
                    client_id: "1example23456789abcdefghij".into(),
                    source: Source::Pool(PoolId(0)),
                    claims: Claims::default(),
                    revocable: Default::default(),
                }),
                exp: 4e9,
                nbf: None,
            },
            kid: "Ob3sVovGdh62Pp9TLNibzCEhRwbhLjhkxygoCJzoYWQ=".into(),
            key: [7; 32],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_default_size_holds_fifty_thousand_cognito_identities() {
        let default = crate::config::RawConfig::default().token_cache.max_bytes;
        let cache = TokenCache::new(default).expect("cache");
        for i in 0..50_000 {
            cache
                .remember(digest(&format!("token-{i}")), Remembered::typical(i))
                .await;
        }
        assert_eq!(cache.entry_count().await, 50_000);
        assert!(cache.get(&digest("token-0")).await.is_some());
        assert!(cache.get(&digest("token-49999")).await.is_some());
        assert!(cache.get(&digest("token-50000")).await.is_none());
    }

    #[test]
    fn keys_are_sha256_of_the_whole_token() {
        assert_eq!(
            digest("abc"),
            [
                0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae,
                0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61,
                0xf2, 0x00, 0x15, 0xad
            ]
        );
        assert_ne!(digest("a.b.c"), digest("a.b.d"));
    }
}
