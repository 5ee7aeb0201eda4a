//! The verified-token cache: tokens that passed every check, remembered so that a
//! client reusing its token does not pay for an RSA verification on every request.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use super::identity::Verified;

/// A token that passed every check, remembered so that its signature need not be
/// computed again. A hit is honoured only while the pool's current key for the
/// token's `kid` is the very key that verified it (same fingerprint: a key withdrawn,
/// or republished under the same `kid` with other material, revokes the entry), and
/// only after `exp`/`nbf` are checked again against the clock.
pub(crate) struct Remembered {
    pub verified: Verified,
    pub kid: String,
    /// The fingerprint of the key that verified it.
    pub key: [u8; 32],
}

/// How long a remembered token may stay in the cache at most; its own `exp` is
/// checked on every hit regardless.
const REMEMBER_AT_MOST: Duration = Duration::from_secs(3600);

/// Remembered tokens by their exact text, bounded in bytes.
pub(crate) struct TokenCache(Cache<Arc<str>, Arc<Remembered>>);

impl TokenCache {
    /// A cache of at most `max_bytes` (token text plus a little per entry); `None`
    /// for 0, which verifies every signature every time.
    pub fn new(max_bytes: u64) -> Option<Self> {
        (max_bytes > 0).then(|| {
            TokenCache(
                Cache::builder()
                    .max_capacity(max_bytes)
                    .weigher(|token: &Arc<str>, r: &Arc<Remembered>| {
                        let identity = &r.verified.identity;
                        let groups: usize = identity.groups.iter().map(String::len).sum();
                        let bytes = token.len() + identity.sub.len() + groups + 128;
                        u32::try_from(bytes).unwrap_or(u32::MAX)
                    })
                    .time_to_live(REMEMBER_AT_MOST)
                    .build(),
            )
        })
    }

    /// Entries now, after moka's pending bookkeeping has run.
    pub async fn len(&self) -> u64 {
        self.0.run_pending_tasks().await;
        self.0.entry_count()
    }

    pub async fn get(&self, token: &str) -> Option<Arc<Remembered>> {
        self.0.get(token).await
    }

    pub async fn forget(&self, token: &str) {
        self.0.invalidate(token).await;
    }

    pub async fn remember(&self, token: &str, remembered: Remembered) {
        self.0.insert(Arc::from(token), Arc::new(remembered)).await;
    }
}
