//! Revocation with the real parts: Debian's `redis-server` on a loopback port, gates as
//! real processes sharing it, `cognito-gate revoke` writing to it, and `redis-cli` for
//! what other producers may write. Each test starts its own Redis and stops it by PID.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::process::*;
use crate::common::*;
use crate::grpc::{channel, check};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;

const INSTALL: &str = "apt-get install -y redis-server";

/// A `redis-server` of its own, on a loopback port, with its data in a temporary
/// directory (append-only, so that a restart keeps the stream).
struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    /// Starts one, or `None` (the test is skipped) when Redis is not installed.
    async fn start(tag: &str) -> Option<Redis> {
        let found = [
            "/usr/bin/redis-server",
            "/usr/local/bin/redis-server",
            "/usr/sbin/redis-server",
        ]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file());
        if found.is_none() {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("redis-server is not installed, and CI must run the revocation tests: {INSTALL}");
            }
            eprintln!(
                "SKIPPED: redis-server is not installed; `{INSTALL}` to run the revocation tests"
            );
            return None;
        }
        let port = reserve_port().await.addr.port();
        let dir =
            std::env::temp_dir().join(format!("cognito-gate-redis-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Redis {
            child: None,
            port,
            dir,
        };
        redis.run().await;
        Some(redis)
    }

    async fn run(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..200 {
            if self.cli(&["PING"]).trim() == "PONG" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Stops it (SIGKILL, by PID): every connection drops at once.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A `[revocation]` table for this Redis, with `extra` keys.
    fn table(&self, extra: &str) -> String {
        format!("[revocation]\nredis_url = \"{}\"\n{extra}\n", self.url())
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A token of `sub` in the token family `family`, issued `age` seconds ago.
fn token_of(sub: &str, family: &str, age: i64) -> String {
    let mut claims = access_claims(sub, &["admins"]);
    claims["origin_jti"] = json!(family);
    claims["iat"] = json!(now() as i64 - age);
    claims["auth_time"] = json!(now() as i64 - age);
    format!("Bearer {}", token(key_a(), &claims))
}

async fn status(gate: std::net::SocketAddr, auth: &str) -> (u16, String) {
    let (status, headers, _) = get(
        &format!("http://{gate}/admin/x"),
        &[("authorization", auth)],
    )
    .await;
    let challenge = headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, challenge)
}

/// `cognito-gate revoke` with `config`'s `[revocation]`.
fn revoke(config: &std::path::Path, args: &[&str]) {
    let out = Command::new(BIN)
        .args(["revoke", "--config"])
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "revoke {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("revoked: "));
}

/// A configuration file naming `redis`, for `revoke` and `check`.
fn revocation_config(tag: &str, redis: &Redis, extra: &str) -> PathBuf {
    temp_file(
        &format!("{tag}-revoke.toml"),
        &format!(
            "{}\n{}",
            config("http://127.0.0.1:9", "http://127.0.0.1:9/jwks", ""),
            redis.table(extra)
        ),
    )
}

#[tokio::test]
async fn a_revocation_is_enforced_by_every_replica_within_a_second() {
    let Some(redis) = Redis::start("replicas").await else {
        return;
    };
    let (upstream, jwks) = (Upstream::start().await, JwksServer::start(&[key_a()]).await);
    let mut gates = Vec::new();
    for i in 0..3 {
        gates.push(
            run_gate(
                &format!("revocation-replica-{i}"),
                &upstream,
                &jwks,
                &redis.table(""),
            )
            .await,
        );
    }
    let writer = revocation_config("replicas", &redis, "");
    let mut delays = Vec::new();
    for round in 0..5 {
        let (family, other) = (format!("family-{round}"), format!("other-{round}"));
        let (revoked, kept) = (token_of("alice", &family, 5), token_of("alice", &other, 5));
        for (_, addr, _) in &gates {
            // Verified and remembered before the revocation: the cache must not skip it.
            assert_eq!(status(*addr, &revoked).await.0, 200);
        }
        let written = Instant::now();
        revoke(&writer, &["--origin-jti", &family]);
        for (_, addr, _) in &gates {
            loop {
                let (code, challenge) = status(*addr, &revoked).await;
                if code == 401 {
                    assert_eq!(
                        challenge,
                        r#"Bearer realm="cognito-gate", error="invalid_token", error_description="token has been revoked""#
                    );
                    break;
                }
                assert_eq!(code, 200);
                // A hang guard only: the distribution is printed below.
                assert!(
                    written.elapsed() < Duration::from_secs(2),
                    "replica {addr} still allows after 2 s"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            delays.push(written.elapsed());
            // Another family of the same user is untouched.
            assert_eq!(status(*addr, &kept).await.0, 200);
        }
    }
    delays.sort();
    eprintln!(
        "revocation propagation to 3 replicas, {} samples: min {:?}, median {:?}, max {:?} (from the revoke command's start, process start-up included)",
        delays.len(),
        delays[0],
        delays[delays.len() / 2],
        delays[delays.len() - 1]
    );
    for (_, _, admin) in &gates {
        assert_eq!(
            metric(
                *admin,
                "cognito_gate_revocation_refusals_total{reason=\"revoked\"}"
            )
            .await,
            Some(5.0)
        );
        assert_eq!(
            metric(*admin, "cognito_gate_revocation_entries").await,
            Some(5.0)
        );
    }
    for (gate, _, _) in gates {
        gate.stop().await;
    }
}

#[tokio::test]
async fn a_sign_out_refuses_the_users_older_tokens_and_not_newer_ones() {
    let Some(redis) = Redis::start("signout").await else {
        return;
    };
    let (upstream, jwks) = (Upstream::start().await, JwksServer::start(&[key_a()]).await);
    let (gate, addr, _admin) =
        run_gate("revocation-signout", &upstream, &jwks, &redis.table("")).await;
    let (old, bob) = (token_of("carol", "c-1", 60), token_of("bob", "b-1", 60));
    assert_eq!(status(addr, &old).await.0, 200);
    // Signed out 30 s ago, given as RFC 3339.
    let at = now() - 30;
    let days = at / 86_400;
    let (secs, (y, m, d)) = (at % 86_400, civil(days as i64));
    let rfc3339 = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    revoke(
        &revocation_config("signout", &redis, ""),
        &["--sub", "carol", "--at", &rfc3339],
    );
    eventually(
        Duration::from_secs(2),
        "carol's old token is refused",
        || async { status(addr, &old).await.0 == 401 },
    )
    .await;
    // Signed in again after the sign-out: a new token passes; other users are untouched.
    assert_eq!(status(addr, &token_of("carol", "c-2", 10)).await.0, 200);
    assert_eq!(status(addr, &bob).await.0, 200);
    gate.stop().await;
}

/// The civil date of `days` since the epoch.
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[tokio::test]
async fn a_replica_that_was_cut_off_misses_nothing_written_meanwhile() {
    let Some(mut redis) = Redis::start("cutoff").await else {
        return;
    };
    let (upstream, jwks) = (Upstream::start().await, JwksServer::start(&[key_a()]).await);
    let (gate, addr, admin) =
        run_gate("revocation-cutoff", &upstream, &jwks, &redis.table("")).await;
    let writer = revocation_config("cutoff", &redis, "");
    let (first, second) = (token_of("dave", "d-1", 5), token_of("dave", "d-2", 5));
    assert_eq!(status(addr, &first).await.0, 200);
    // Its connection killed: the entry is written before it can reconnect (at least
    // half a second of back-off).
    redis.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
    revoke(&writer, &["--origin-jti", "d-1"]);
    eventually(
        Duration::from_secs(5),
        "the entry written while away is enforced",
        || async { status(addr, &first).await.0 == 401 },
    )
    .await;
    assert!(metric(admin, "cognito_gate_revocation_reconnects_total").await >= Some(1.0));
    // Redis itself down and back (its data kept): an entry written after the restart
    // is read on from the last id seen.
    redis.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        status(addr, &second).await.0,
        200,
        "serve_stale keeps deciding meanwhile"
    );
    redis.run().await;
    revoke(&writer, &["--origin-jti", "d-2"]);
    eventually(
        Duration::from_secs(35),
        "the entry written after the restart is enforced",
        || async { status(addr, &second).await.0 == 401 },
    )
    .await;
    assert_eq!(
        status(addr, &first).await.0,
        401,
        "the earlier entry is still there"
    );
    gate.stop().await;
}

#[tokio::test]
async fn serve_stale_and_refuse_across_an_outage() {
    let Some(mut redis) = Redis::start("outage").await else {
        return;
    };
    let (upstream, jwks) = (Upstream::start().await, JwksServer::start(&[key_a()]).await);
    let stale = run_gate(
        "revocation-stale",
        &upstream,
        &jwks,
        &redis.table("max_staleness = \"2s\""),
    )
    .await;
    let refuse = run_gate(
        "revocation-refuse",
        &upstream,
        &jwks,
        &redis.table("on_unavailable = \"refuse\""),
    )
    .await;
    let user = token_of("erin", "e-1", 5);
    assert_eq!(status(stale.1, &user).await.0, 200);
    assert_eq!(status(refuse.1, &user).await.0, 200);
    redis.stop();
    let down = Instant::now();
    eventually(
        Duration::from_secs(2),
        "refuse answers 503 once redis is gone",
        || async { status(refuse.1, &user).await.0 == 503 },
    )
    .await;
    let (code, _, body) = get(
        &format!("http://{}/admin/x", refuse.1),
        &[("authorization", &user)],
    )
    .await;
    assert_eq!(code, 503);
    assert!(
        body.contains("\"error\":\"revocation_unavailable\""),
        "{body}"
    );
    // Shorter than max_staleness: the last list keeps serving.
    assert!(
        down.elapsed() < Duration::from_millis(900),
        "{:?}",
        down.elapsed()
    );
    assert_eq!(status(stale.1, &user).await.0, 200);
    // Longer: 503, and not ready.
    eventually(
        Duration::from_secs(4),
        "serve_stale answers 503 past max_staleness",
        || async { status(stale.1, &user).await.0 == 503 },
    )
    .await;
    // Staleness counts from the last word from Redis, at most a second before it went.
    assert!(
        down.elapsed() >= Duration::from_secs(1),
        "{:?}",
        down.elapsed()
    );
    let (ready, _, body) = get(&format!("http://{}/readyz", stale.2), &[]).await;
    assert_eq!(ready, 503, "{body}");
    // Public paths need no token and so no list.
    assert_eq!(
        get(&format!("http://{}/public/x", stale.1), &[]).await.0,
        200
    );
    assert!(
        metric(
            refuse.2,
            "cognito_gate_revocation_refusals_total{reason=\"unavailable\"}"
        )
        .await
            >= Some(1.0)
    );
    redis.run().await;
    for (_, addr, _) in [&stale, &refuse] {
        eventually(
            Duration::from_secs(35),
            "both decide again once redis is back",
            || async { status(*addr, &user).await.0 == 200 },
        )
        .await;
    }
    stale.0.stop().await;
    refuse.0.stop().await;
}

#[tokio::test]
async fn not_ready_until_the_first_load_and_malformed_entries_are_skipped_and_counted() {
    let Some(mut redis) = Redis::start("malformed").await else {
        return;
    };
    redis.stop();
    let (upstream, jwks) = (Upstream::start().await, JwksServer::start(&[key_a()]).await);
    let (listen, admin) = (reserve_port().await.addr, reserve_port().await.addr);
    let policy = temp_file("revocation-malformed-policy.toml", POLICY);
    let file = temp_file(
        "revocation-malformed.toml",
        &format!(
            "listen = \"{listen}\"\nadmin_listen = \"{admin}\"\npolicy_file = {:?}\n{}\n{}",
            policy.display().to_string(),
            config(&upstream.url(), &jwks.url(), ""),
            redis.table("")
        ),
    );
    let gate = spawn_run(&file);
    let user = token_of("frank", "f-1", 5);
    eventually(
        Duration::from_secs(10),
        "the gate answers, unready",
        || async { tokio::net::TcpStream::connect(admin).await.is_ok() },
    )
    .await;
    let (ready, _, body) = get(&format!("http://{admin}/readyz"), &[]).await;
    assert_eq!(ready, 503, "{body}");
    assert!(body.contains("\"loaded\":false"), "{body}");
    assert_eq!(status(listen, &user).await.0, 503);
    redis.run().await;
    // Other producers' entries: two malformed ones, then a good one.
    let stream = "cognito-gate:revocations";
    redis.cli(&["XADD", stream, "*", "kind", "jti", "value", "x", "at", "1"]);
    redis.cli(&["XADD", stream, "*", "kind", "origin_jti", "value", "f-1"]);
    let at = now().to_string();
    redis.cli(&[
        "XADD",
        stream,
        "*",
        "kind",
        "origin_jti",
        "value",
        "f-1",
        "at",
        &at,
        "by",
        "ops",
    ]);
    // The stream reconnects with full-jitter waits of up to 30 s (src/backoff.rs).
    eventually(
        Duration::from_secs(35),
        "ready once redis is back",
        || async { get(&format!("http://{admin}/readyz"), &[]).await.0 == 200 },
    )
    .await;
    eventually(
        Duration::from_secs(3),
        "the good entry is enforced",
        || async { status(listen, &user).await.0 == 401 },
    )
    .await;
    assert_eq!(
        metric(admin, "cognito_gate_revocation_malformed_entries_total").await,
        Some(2.0)
    );
    assert_eq!(
        status(listen, &token_of("frank", "f-2", 5)).await.0,
        200,
        "nobody else is refused"
    );
    gate.stop().await;
}

#[tokio::test]
async fn a_revoked_token_gets_the_same_answer_from_every_endpoint() {
    let Some(redis) = Redis::start("endpoints").await else {
        return;
    };
    let jwks = JwksServer::start(&[key_a()]).await;
    let upstream = Upstream::start().await;
    let text = config(&upstream.url(), &jwks.url(), &redis.table("")).replace(
        "[upstream]",
        "[authz]\nlisten = \"127.0.0.1:9191\"\ngrpc_listen = \"127.0.0.1:9192\"\n[upstream]",
    );
    let gate = Gate::start(&text, POLICY).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let user = token_of("grace", "g-1", 5);
    revoke(
        &revocation_config("endpoints", &redis, ""),
        &["--origin-jti", "g-1"],
    );
    let revoked = r#"Bearer realm="cognito-gate", error="invalid_token", error_description="token has been revoked""#;
    eventually(Duration::from_secs(2), "the proxy refuses", || async {
        status(gate.addr, &user).await == (401, revoked.to_owned())
    })
    .await;
    let forward = [
        ("authorization", user.as_str()),
        ("x-original-method", "GET"),
        ("x-original-uri", "/admin/x"),
    ];
    let (code, headers, _) = get(&format!("http://{}/auth", gate.authz), &forward).await;
    assert_eq!(
        (code, headers["www-authenticate"].to_str().unwrap()),
        (401, revoked)
    );
    let (code, headers, _) = get(
        &format!("http://{}/envoy/admin/x", gate.authz),
        &[("authorization", &user)],
    )
    .await;
    assert_eq!(
        (code, headers["www-authenticate"].to_str().unwrap()),
        (401, revoked)
    );
    let mut client = AuthorizationClient::new(channel(&gate).await);
    let (code, headers, _, _) =
        check(&mut client, "GET", "/admin/x", &[("authorization", &user)]).await;
    assert_eq!((code, headers["www-authenticate"].as_str()), (401, revoked));
    assert!(
        upstream.seen().is_empty(),
        "the app saw a revoked token's request"
    );
}

#[tokio::test]
async fn check_reports_a_bad_redis_url_and_an_unreadable_password_file() {
    let file = temp_file(
        "revocation-check.toml",
        &format!(
            "{}\n[revocation]\nredis_url = \"http://redis:6379\"\npassword_file = \"/nonexistent/pw\"\non_unavailable = \"maybe\"\n",
            config("http://127.0.0.1:3000", "http://127.0.0.1:9/jwks", "")
        ),
    );
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for problem in [
        "revocation.redis_url: \"http://redis:6379\" is not a redis:// or rediss:// URL",
        "revocation.password_file: /nonexistent/pw",
        "revocation.on_unavailable: \"maybe\" is not",
    ] {
        assert!(stderr.contains(problem), "{problem}: {stderr}");
    }
}
