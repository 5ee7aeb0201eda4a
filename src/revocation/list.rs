//! The revocation list in memory: two hash maps keyed by a keyed 64-bit hash of the
//! revoked value (never the value itself, so 1,000,000 entries fit in about 40 MiB),
//! each entry with the instant it expires. A check is two lookups under a read lock.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::config::{OnUnavailable, RevocationConfig};
use crate::metrics::Metrics;

use super::entry::{Entry, Kind};

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// Its family (`origin_jti`, or `jti`) was revoked.
    Revoked,
    /// Its user signed out after it was issued.
    SignedOut,
    /// The list cannot be trusted: not loaded yet, or Redis is away (`on_unavailable`).
    Unavailable,
}

/// The keys are already keyed hashes: hashing them again would only cost time.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed with it; fold anything else in anyway.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map<V> = HashMap<u64, V, BuildHasherDefault<Prehashed>>;

#[derive(Default)]
struct Entries {
    /// Revoked families: hash -> expiry (seconds since the epoch).
    families: Map<u32>,
    /// Signed-out users: hash -> (signed out at, expiry).
    users: Map<(f64, u32)>,
}

/// Where the list stands, for `/readyz` and the metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Status {
    pub loaded: bool,
    pub connected: bool,
    /// Seconds since the last exchange with Redis; `None` before the first load.
    pub age: Option<f64>,
    pub entries: usize,
}

/// The list every request is checked against.
pub struct RevocationList {
    hasher: RandomState,
    entries: RwLock<Entries>,
    /// Seconds since the epoch of the last exchange with Redis, as `f64` bits; 0 before
    /// the first load.
    last_sync: AtomicU64,
    connected: AtomicBool,
    on_unavailable: OnUnavailable,
    max_staleness: f64,
    lifetime: f64,
    metrics: Arc<Metrics>,
}

impl RevocationList {
    pub fn new(config: &RevocationConfig, metrics: Arc<Metrics>) -> Self {
        RevocationList {
            hasher: RandomState::new(),
            entries: RwLock::default(),
            last_sync: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            on_unavailable: config.on_unavailable,
            max_staleness: config.max_staleness.as_secs_f64(),
            lifetime: config.max_token_lifetime.as_secs_f64(),
            metrics,
        }
    }

    fn hash(&self, value: &str) -> u64 {
        self.hasher.hash_one(value)
    }

    /// Whether a token of family `family`, for user `sub`, issued at `issued_at`, may
    /// pass at `now`. A token without an issue time counts as issued at the epoch: a
    /// signed-out user's token that does not say when it was issued is refused.
    pub fn check(
        &self,
        family: Option<&str>,
        sub: &str,
        issued_at: Option<f64>,
        now: f64,
    ) -> Result<(), Denial> {
        if !self.available(now) {
            return Err(self.refused(Denial::Unavailable));
        }
        let user = self.hash(sub);
        let family = family.map(|f| self.hash(f));
        let verdict = {
            let Ok(entries) = self.entries.read() else {
                return Err(self.refused(Denial::Unavailable));
            };
            let family_revoked = family
                .and_then(|f| entries.families.get(&f))
                .is_some_and(|expires| now < f64::from(*expires));
            let signed_out = entries.users.get(&user).is_some_and(|(at, expires)| {
                now < f64::from(*expires) && issued_at.unwrap_or(0.0) < *at
            });
            match (family_revoked, signed_out) {
                (true, _) => Err(Denial::Revoked),
                (false, true) => Err(Denial::SignedOut),
                (false, false) => Ok(()),
            }
        };
        verdict.map_err(|r| self.refused(r))
    }

    fn refused(&self, refusal: Denial) -> Denial {
        let reason = match refusal {
            Denial::Revoked => "revoked",
            Denial::SignedOut => "signed_out",
            Denial::Unavailable => "unavailable",
        };
        self.metrics.revocation_refusal(reason);
        refusal
    }

    /// Whether the list may be trusted at `now`: loaded, and Redis reachable
    /// (`refuse`) or last reached within `max_staleness` (`serve_stale`).
    fn available(&self, now: f64) -> bool {
        let last = f64::from_bits(self.last_sync.load(Ordering::Acquire));
        if last == 0.0 {
            return false;
        }
        match self.on_unavailable {
            OnUnavailable::Refuse => self.connected.load(Ordering::Acquire),
            OnUnavailable::ServeStale => now - last <= self.max_staleness,
        }
    }

    /// Adds entries, and returns how many were new or changed. An entry already past
    /// its expiry is not kept.
    pub fn apply(&self, batch: &[Entry], now: f64) -> usize {
        let Ok(mut entries) = self.entries.write() else {
            return 0;
        };
        let mut changed = 0;
        for entry in batch {
            let expiry = entry.at + self.lifetime;
            if expiry <= now {
                continue;
            }
            // Seconds fit in u32 until 2106.
            let expires = expiry.ceil().min(f64::from(u32::MAX)) as u32;
            let key = self.hash(&entry.value);
            match entry.kind {
                Kind::Family => {
                    let slot = entries.families.entry(key).or_insert(0);
                    if *slot < expires {
                        *slot = expires;
                        changed += 1;
                    }
                }
                Kind::User => {
                    // The latest sign-out wins: it refuses more.
                    let slot = entries.users.entry(key).or_insert((f64::MIN, 0));
                    if slot.0 < entry.at {
                        *slot = (entry.at, expires);
                        changed += 1;
                    }
                }
            }
        }
        self.metrics
            .revocation_entries
            .set(i64::try_from(entries.families.len() + entries.users.len()).unwrap_or(i64::MAX));
        changed
    }

    /// Drops the entries that expired before `now`.
    pub fn sweep(&self, now: f64) {
        if let Ok(mut entries) = self.entries.write() {
            entries
                .families
                .retain(|_, expires| now < f64::from(*expires));
            entries
                .users
                .retain(|_, (_, expires)| now < f64::from(*expires));
            self.metrics.revocation_entries.set(
                i64::try_from(entries.families.len() + entries.users.len()).unwrap_or(i64::MAX),
            );
        }
    }

    /// Records an exchange with Redis at `now` (a load, a read, a timeout with nothing
    /// new): the list is as fresh as that.
    pub fn synced(&self, now: f64) {
        self.last_sync.store(now.to_bits(), Ordering::Release);
        self.connected.store(true, Ordering::Release);
    }

    /// Records that the connection to Redis was lost.
    pub fn disconnected(&self) {
        self.connected.store(false, Ordering::Release);
    }

    pub fn status(&self, now: f64) -> Status {
        let last = f64::from_bits(self.last_sync.load(Ordering::Acquire));
        Status {
            loaded: last != 0.0,
            connected: self.connected.load(Ordering::Acquire),
            age: (last != 0.0).then(|| (now - last).max(0.0)),
            entries: self
                .entries
                .read()
                .map(|e| e.families.len() + e.users.len())
                .unwrap_or(0),
        }
    }

    /// Whether requests can be decided: the first load is done, and the list is not
    /// unavailable at `now`.
    pub fn ready(&self, now: f64) -> bool {
        self.available(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(mode: OnUnavailable) -> RevocationList {
        let config = RevocationConfig {
            on_unavailable: mode,
            ..RevocationConfig::for_tests()
        };
        RevocationList::new(&config, Arc::new(Metrics::new()))
    }

    fn entry(kind: Kind, value: &str, at: f64) -> Entry {
        Entry {
            kind,
            value: value.to_owned(),
            at,
        }
    }

    #[test]
    fn families_are_refused_users_only_for_tokens_issued_before_they_signed_out() {
        let l = list(OnUnavailable::ServeStale);
        assert_eq!(
            l.check(Some("f"), "u", Some(10.0), 100.0),
            Err(Denial::Unavailable)
        );
        l.synced(100.0);
        l.apply(
            &[
                entry(Kind::Family, "f1", 100.0),
                entry(Kind::User, "u1", 50.0),
            ],
            100.0,
        );
        assert_eq!(
            l.check(Some("f1"), "x", Some(10.0), 100.0),
            Err(Denial::Revoked)
        );
        assert_eq!(l.check(Some("f2"), "x", Some(10.0), 100.0), Ok(()));
        assert_eq!(
            l.check(None, "u1", Some(49.0), 100.0),
            Err(Denial::SignedOut)
        );
        assert_eq!(l.check(None, "u1", Some(51.0), 100.0), Ok(()));
        // No issue time: counted as issued at the epoch.
        assert_eq!(l.check(None, "u1", None, 100.0), Err(Denial::SignedOut));
        // A later sign-out replaces an earlier one; an earlier one changes nothing.
        l.apply(
            &[entry(Kind::User, "u1", 60.0), entry(Kind::User, "u1", 40.0)],
            100.0,
        );
        assert_eq!(
            l.check(None, "u1", Some(55.0), 100.0),
            Err(Denial::SignedOut)
        );
    }

    #[test]
    fn entries_expire_after_the_longest_token_lifetime() {
        let l = list(OnUnavailable::ServeStale);
        let day = RevocationConfig::for_tests()
            .max_token_lifetime
            .as_secs_f64();
        l.synced(1000.0);
        l.apply(&[entry(Kind::Family, "f", 1000.0)], 1000.0);
        l.synced(1000.0 + day - 1.0);
        assert_eq!(
            l.check(Some("f"), "u", Some(1.0), 1000.0 + day - 1.0),
            Err(Denial::Revoked)
        );
        l.synced(1000.0 + day + 1.0);
        assert_eq!(
            l.check(Some("f"), "u", Some(1.0), 1000.0 + day + 1.0),
            Ok(())
        );
        l.sweep(1000.0 + day + 1.0);
        assert_eq!(l.status(1000.0 + day + 1.0).entries, 0);
        // Already expired when it arrives: not kept.
        assert_eq!(
            l.apply(&[entry(Kind::User, "u", 0.0)], 1000.0 + day + 1.0),
            0
        );
    }

    #[test]
    fn an_outage_is_served_stale_until_max_staleness_or_refused_at_once() {
        let stale = list(OnUnavailable::ServeStale);
        let refuse = list(OnUnavailable::Refuse);
        for l in [&stale, &refuse] {
            l.synced(100.0);
            l.disconnected();
        }
        let limit = RevocationConfig::for_tests().max_staleness.as_secs_f64();
        assert_eq!(
            stale.check(None, "u", Some(1.0), 100.0 + limit - 1.0),
            Ok(())
        );
        assert_eq!(
            stale.check(None, "u", Some(1.0), 100.0 + limit + 1.0),
            Err(Denial::Unavailable)
        );
        assert_eq!(
            refuse.check(None, "u", Some(1.0), 101.0),
            Err(Denial::Unavailable)
        );
        refuse.synced(102.0);
        assert_eq!(refuse.check(None, "u", Some(1.0), 102.0), Ok(()));
    }

    proptest::proptest! {
        /// For any entries and any token, the list decides as the plain rule says:
        /// refused when an unexpired entry names its family, or names its user with a
        /// sign-out after it was issued.
        #[test]
        fn decisions_equal_the_reference_model(
            entries in proptest::collection::vec((proptest::bool::ANY, 0u8..6, 0u32..200), 0..40),
            family in proptest::option::of(0u8..6),
            sub in 0u8..6,
            issued in proptest::option::of(0u32..200),
            now in 1u32..300,
        ) {
            let lifetime = 100.0;
            let config = RevocationConfig {
                max_token_lifetime: std::time::Duration::from_secs(100),
                ..RevocationConfig::for_tests()
            };
            let list = RevocationList::new(&config, Arc::new(Metrics::new()));
            let now = f64::from(now);
            list.synced(now);
            let batch: Vec<Entry> = entries
                .iter()
                .map(|(is_family, value, at)| Entry {
                    kind: if *is_family { Kind::Family } else { Kind::User },
                    value: format!("v{value}"),
                    at: f64::from(*at),
                })
                .collect();
            list.apply(&batch, 0.0);
            let family_name = family.map(|f| format!("v{f}"));
            let sub_name = format!("v{sub}");
            let issued = issued.map(f64::from);
            let live = |e: &Entry| now < (e.at + lifetime).ceil();
            let revoked = batch.iter().any(|e| {
                e.kind == Kind::Family && Some(&e.value) == family_name.as_ref() && live(e)
            });
            // The latest sign-out of the user is the one that counts.
            let latest = batch
                .iter()
                .filter(|e| e.kind == Kind::User && e.value == sub_name)
                .max_by(|a, b| a.at.total_cmp(&b.at));
            let signed_out = latest.is_some_and(|e| live(e) && issued.unwrap_or(0.0) < e.at);
            let want = match (revoked, signed_out) {
                (true, _) => Err(Denial::Revoked),
                (false, true) => Err(Denial::SignedOut),
                (false, false) => Ok(()),
            };
            proptest::prop_assert_eq!(list.check(family_name.as_deref(), &sub_name, issued, now), want);
        }
    }
}
