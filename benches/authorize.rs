//! The per-request work of the decision core, without sockets: token verification
//! (RS256 with aws-lc-rs), path canonicalization and policy routing.
//!
//! Run: `cargo bench --bench authorize`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::Method;
use serde_json::json;

use cognito_gate::internals::canonicalize;
use cognito_gate::internals::issuer::SigningKey;
use cognito_gate::internals::parse_key_set;
use cognito_gate::internals::Verifier;
use cognito_gate::internals::{digest, Remembered, TokenCache};
use cognito_gate::internals::{Metrics, RequestLabels};
use cognito_gate::internals::{RevocationEntry, RevocationKind, RevocationList};
use cognito_gate::{Config, Policy};

const ISS: &str = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Bench1234";

/// A gate for the bench pool.
const CONFIG: &str = r#"
    [upstream]
    url = "http://127.0.0.1:3000"
    [[pools]]
    user_pool_id = "us-east-1_Bench1234"
    client_ids = ["bench-client"]
"#;

fn bench(c: &mut Criterion) {
    let key = SigningKey::generate("bench-key").unwrap();
    let keys = parse_key_set(json!({ "keys": [key.jwk()] }).to_string().as_bytes()).unwrap();
    let config = Config::from_toml(CONFIG).unwrap();
    let verifier = Verifier::new(&config.pools, 8192, 0);
    let token = key
        .sign(
            &json!({ "kid": "bench-key", "alg": "RS256" }),
            &json!({
                "sub": "4f6c1a2e-8d0b-4b8e-9a53-0c2f7e1d9b11", "iss": ISS, "token_use": "access",
                "client_id": "bench-client", "exp": 4_000_000_000u64, "iat": 1_700_000_000u64,
                "cognito:groups": ["admins", "finance"], "scope": "openid profile",
                "username": "bench-user", "version": 2, "jti": "b0e4", "auth_time": 1_700_000_000u64
            }),
        )
        .unwrap();
    let now = 1_800_000_000.0;

    c.bench_function("verify RS256 access token", |b| {
        b.iter_batched(
            || (),
            |_| {
                let t = verifier.parse(&token).unwrap();
                let k = keys.get(&t.kid).unwrap();
                verifier.finish(t, &k, now).unwrap()
            },
            BatchSize::SmallInput,
        )
    });

    c.bench_function("canonicalize clean path", |b| {
        b.iter(|| canonicalize(std::hint::black_box("/api/v1/orders/1234/items")).unwrap())
    });
    c.bench_function("canonicalize encoded path", |b| {
        b.iter(|| canonicalize(std::hint::black_box("/api/v1/%6Frders/a%20b/items")).unwrap())
    });

    // Routing cost must not grow with the number of rules: 10 and 1,000 rules with
    // distinct first segments, the request matching the last specific one.
    for count in [10usize, 1000] {
        let mut policy = String::new();
        for i in 0..count - 1 {
            policy.push_str(&format!(
                "[[rule]]\npath = \"/service{i}/*/items/**\"\nmethods = [\"GET\", \"POST\"]\ngroups = [\"g{i}\"]\n"
            ));
        }
        policy.push_str("[[rule]]\npath = \"/**\"\nallow = \"authenticated\"\n");
        let policy = Policy::from_toml(&policy).unwrap();
        let path = format!("/service{}/1234/items/7", count - 2);
        c.bench_function(&format!("route through {count} rules"), |b| {
            b.iter(|| {
                policy
                    .route(&Method::GET, std::hint::black_box(&path))
                    .unwrap()
            })
        });
    }
}

/// The metric work of one request: the in-flight gauge up and down, the request
/// counter by its labels, and the gate's own time into the histogram. Must stay
/// well under a microsecond.
fn metrics(c: &mut Criterion) {
    let metrics = Metrics::new();
    let rule: std::sync::Arc<str> = std::sync::Arc::from("reports-write");
    // A realistic spread of label sets already seen, as in a running gate.
    for status in [200u16, 401, 403, 404, 502] {
        metrics.record_request(
            &RequestLabels {
                endpoint: "proxy",
                decision: if status == 200 { "allow" } else { "deny" },
                status,
                rule: rule.clone(),
            },
            std::time::Duration::from_micros(40),
        );
    }
    c.bench_function("metrics: record one request", |b| {
        b.iter(|| {
            let busy = metrics.in_flight();
            metrics.record_request(
                &RequestLabels {
                    endpoint: "proxy",
                    decision: "allow",
                    status: 200,
                    rule: rule.clone(),
                },
                std::hint::black_box(std::time::Duration::from_micros(40)),
            );
            drop(busy);
        })
    });
}

/// The verified-token cache must cost the same per request with 1 user as with
/// 100,000: the digest of the token and the lookup, for a cache holding 1, 10,000 and
/// 100,000 identities, the requests cycling through every one of them (so the larger
/// caches also miss the CPU caches, as a busy gate does). The resident bytes each
/// identity really costs the process are printed: the cache's weigher must not
/// count less (see `ENTRY_OVERHEAD` in `src/token/cache.rs`).
fn token_cache(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // A realistic token text: the digest's cost depends on its length, 1 KiB here.
    let token = |i: usize| format!("{:0>1024}", i);
    for users in [1usize, 10_000, 100_000] {
        let before = rss_kib();
        let cache = TokenCache::new(1 << 30).unwrap();
        runtime.block_on(async {
            for i in 0..users {
                cache
                    .remember(digest(&token(i)), Remembered::typical(i))
                    .await;
            }
        });
        let held = runtime.block_on(cache.entry_count());
        assert_eq!(held, users as u64);
        if users == 100_000 {
            let per_entry = (rss_kib().saturating_sub(before)) * 1024 / users as u64;
            println!("token cache: {users} identities held; about {per_entry} bytes of RSS each");
        }
        let tokens: Vec<String> = (0..users).map(token).collect();
        let mut next = 0usize;
        c.bench_function(&format!("token cache hit, {users} users cycling"), |b| {
            b.iter(|| {
                next = (next + 1) % users;
                let key = digest(std::hint::black_box(&tokens[next]));
                runtime.block_on(cache.get(&key)).unwrap()
            })
        });
    }
}

/// The revocation check every verified request pays, cache hits included, with
/// 1,000,000 entries held (half token families, half signed-out users); and what
/// holding them costs in resident memory.
fn revocation(c: &mut Criterion) {
    let config = Config::from_toml(&format!(
        "{CONFIG}\n[revocation]\nredis_url = \"redis://127.0.0.1:6379\"\n"
    ))
    .unwrap();
    let settings = config.revocation.unwrap();
    let now = 1_800_000_000.0;
    let before = rss_kib();
    let list = RevocationList::new(&settings, std::sync::Arc::new(Metrics::new()));
    let entries: Vec<RevocationEntry> = (0..1_000_000u32)
        .map(|i| RevocationEntry {
            kind: match i % 2 {
                0 => RevocationKind::Family,
                _ => RevocationKind::User,
            },
            // Cognito's ids are UUIDs: 36 characters.
            value: format!("{i:08x}-1b2c-4d5e-8f90-a1b2c3d4e5f6"),
            at: now - 60.0,
        })
        .collect();
    for chunk in entries.chunks(10_000) {
        list.apply(chunk, now);
    }
    drop(entries);
    let held = rss_kib().saturating_sub(before);
    println!(
        "revocation list: 1000000 entries held in {} MiB of RSS",
        held / 1024
    );
    list.synced(now);
    let family = "ffffffff-1b2c-4d5e-8f90-a1b2c3d4e5f6";
    let sub = "4f6c1a2e-8d0b-4b8e-9a53-000000000001";
    c.bench_function(
        "revocation check, 1000000 entries, token not revoked",
        |b| {
            b.iter(|| {
                list.check(
                    std::hint::black_box(Some(family)),
                    std::hint::black_box(sub),
                    Some(now - 5.0),
                    now,
                )
            })
        },
    );
    let revoked = "00000000-1b2c-4d5e-8f90-a1b2c3d4e5f6";
    c.bench_function("revocation check, 1000000 entries, token revoked", |b| {
        b.iter(|| {
            list.check(
                std::hint::black_box(Some(revoked)),
                sub,
                Some(now - 5.0),
                now,
            )
        })
    });
}

/// The process's resident set, in KiB (0 where /proc is missing).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

criterion_group!(benches, bench, metrics, token_cache, revocation);
criterion_main!(benches);
