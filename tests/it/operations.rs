//! Running the gate in production: hot reload on SIGHUP and on file changes (with the
//! real process and real signals, including a Kubernetes-style ConfigMap swap), the
//! Prometheus metrics, and what the app is told about the client behind trusted
//! proxies.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::process::*;
use crate::common::*;

/// The test policy with `/admin/**` opened to every signed-in user.
const OPEN_ADMIN: &str = r#"
    [[rule]]
    name = "public"
    path = "/public/**"
    allow = "anyone"

    [[rule]]
    name = "admin-opened"
    path = "/admin/**"
    allow = "authenticated"

    [[rule]]
    name = "app"
    path = "/**"
    allow = "authenticated"
"#;

/// A fresh folder for one test's files.
fn folder(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cognito-gate-ops-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `text` to `path` the way editors and `kubectl cp` do: a new file renamed
/// over the old one, so that a reader never sees half a file.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Files {
    config: PathBuf,
    policy: PathBuf,
    listen: SocketAddr,
    admin: SocketAddr,
}

/// A config in `dir` in front of `upstream` with keys from `jwks`, and `policy`.
async fn files(dir: &Path, upstream: &Upstream, jwks: &JwksServer, policy: &str) -> Files {
    let (listen, admin) = (reserve_port().await.addr, reserve_port().await.addr);
    let policy_path = dir.join("policy.toml");
    let config_path = dir.join("gate.toml");
    std::fs::write(&policy_path, policy).unwrap();
    std::fs::write(
        &config_path,
        gate_toml(listen, admin, &policy_path, &upstream.url(), &jwks.url()),
    )
    .unwrap();
    Files {
        config: config_path,
        policy: policy_path,
        listen,
        admin,
    }
}

fn gate_toml(
    listen: SocketAddr,
    admin: SocketAddr,
    policy: &Path,
    upstream: &str,
    jwks: &str,
) -> String {
    format!(
        "listen = \"{listen}\"\nadmin_listen = \"{admin}\"\npolicy_file = {:?}\n{}\n[log]\nformat = \"json\"\n",
        policy.display().to_string(),
        config(upstream, jwks, "")
    )
}

async fn status(listen: SocketAddr, path: &str, auth: &str) -> u16 {
    get(
        &format!("http://{listen}{path}"),
        &[("authorization", auth)],
    )
    .await
    .0
}

async fn reloads(admin: SocketAddr, result: &str) -> f64 {
    metric(
        admin,
        &format!("cognito_gate_reloads_total{{result=\"{result}\"}}"),
    )
    .await
    .unwrap_or(0.0)
}

#[tokio::test]
async fn sighup_applies_a_new_policy_and_a_broken_one_changes_nothing() {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let dir = folder("sighup");
    let f = files(&dir, &upstream, &jwks, POLICY).await;
    let (gate, log) = spawn_gate(&f.config, f.admin).await;
    let user = bearer(key_a(), "user", &[]);
    assert_eq!(status(f.listen, "/admin/x", &user).await, 403);

    // A valid edit, then SIGHUP.
    std::fs::write(&f.policy, OPEN_ADMIN).unwrap();
    signal(gate.pid(), "HUP");
    eventually(
        Duration::from_secs(10),
        "the new policy applies",
        || async { status(f.listen, "/admin/x", &user).await == 200 },
    )
    .await;
    assert!(reloads(f.admin, "success").await >= 1.0);
    assert_eq!(reloads(f.admin, "error").await, 0.0);

    // A broken file: every problem is logged, the error counted, nothing changes.
    let broken = "[[rule]]\npath = \"/a/**/b\"\nallow = \"anyone\"\n[[rule]]\npath = \"/c\"\n";
    std::fs::write(&f.policy, broken).unwrap();
    signal(gate.pid(), "HUP");
    eventually(
        Duration::from_secs(10),
        "the failed reload is counted",
        || async { reloads(f.admin, "error").await >= 1.0 },
    )
    .await;
    assert_eq!(status(f.listen, "/admin/x", &user).await, 200);
    assert_eq!(status(f.listen, "/public/x", "Bearer x").await, 200);
    let text = std::fs::read_to_string(&log).unwrap();
    for problem in [
        "reload failed; the gate keeps the policy and pools it had",
        "rule 1: path: \\\"/a/**/b\\\": '**' is only allowed as the last segment",
        "rule 2: allow: a rule needs exactly one of allow, groups, groups_all or scopes",
    ] {
        assert!(text.contains(problem), "{problem} not logged:\n{text}");
    }

    // A policy whose own test fails is refused the same way, naming the rule.
    let failing = format!(
        "{POLICY}\n[[test]]\npath = \"/admin/x\"\ngroups = [\"staff\"]\nexpect = \"allow\"\n"
    );
    std::fs::write(&f.policy, failing).unwrap();
    signal(gate.pid(), "HUP");
    eventually(
        Duration::from_secs(10),
        "the second failed reload",
        || async { reloads(f.admin, "error").await >= 2.0 },
    )
    .await;
    assert_eq!(status(f.listen, "/admin/x", &user).await, 200);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("test 1 (GET /admin/x as groups [staff]): expected allow, got 403: rule 2 (admin) decided"),
        "{text}"
    );

    // A listen address cannot change without a restart: reported, not applied.
    let moved = reserve_port().await.addr;
    let config = std::fs::read_to_string(&f.config)
        .unwrap()
        .replace(&f.listen.to_string(), &moved.to_string());
    std::fs::write(&f.policy, POLICY).unwrap();
    std::fs::write(&f.config, config).unwrap();
    signal(gate.pid(), "HUP");
    eventually(Duration::from_secs(10), "the policy is back", || async {
        status(f.listen, "/admin/x", &user).await == 403
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("these settings changed but need a restart; they were not applied")
            && text.contains(r#""settings":"listen""#),
        "{text}"
    );
    let (exit, _) = gate.stop().await;
    assert!(exit.success());
}

#[tokio::test]
async fn a_request_in_flight_finishes_under_the_policy_it_started_with() {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let dir = folder("in-flight");
    let f = files(&dir, &upstream, &jwks, POLICY).await;
    let (gate, _log) = spawn_gate(&f.config, f.admin).await;

    // A token under a key the gate has not seen: its request waits for a refetch,
    // which the key server now answers after 2 s.
    jwks.set_keys(&[key_a(), key_b()]);
    jwks.set_delay(Duration::from_millis(2000));
    let slow = bearer(key_b(), "bob", &[]);
    let url = format!("http://{}/admin/x", f.listen);
    let in_flight = tokio::spawn(async move { get(&url, &[("authorization", &slow)]).await.0 });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Meanwhile /admin is opened to every signed-in user.
    std::fs::write(&f.policy, OPEN_ADMIN).unwrap();
    signal(gate.pid(), "HUP");
    let fresh = bearer(key_a(), "carol", &[]);
    eventually(
        Duration::from_secs(10),
        "the new policy applies",
        || async { status(f.listen, "/admin/x", &fresh).await == 200 },
    )
    .await;
    assert!(!in_flight.is_finished(), "the slow request was not slow");

    // The slow request was judged by the policy it started under: 403.
    assert_eq!(in_flight.await.unwrap(), 403);
    drop(gate);
}

#[tokio::test]
async fn a_configmap_update_reloads_without_a_signal() {
    // Kubernetes mounts a ConfigMap as symlinks into a timestamped folder and updates
    // it by swapping the `..data` link: the files the gate named are never written.
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let dir = folder("configmap");
    let (listen, admin) = (reserve_port().await.addr, reserve_port().await.addr);
    let config_text = gate_toml(
        listen,
        admin,
        &dir.join("policy.toml"),
        &upstream.url(),
        &jwks.url(),
    );
    let version = |name: &str, policy: &str| {
        let v = dir.join(name);
        std::fs::create_dir_all(&v).unwrap();
        std::fs::write(v.join("policy.toml"), policy).unwrap();
        std::fs::write(v.join("gate.toml"), &config_text).unwrap();
    };
    version("..2026_11_30_01", POLICY);
    std::os::unix::fs::symlink("..2026_11_30_01", dir.join("..data")).unwrap();
    for file in ["policy.toml", "gate.toml"] {
        std::os::unix::fs::symlink(format!("..data/{file}"), dir.join(file)).unwrap();
    }
    let (gate, _log) = spawn_gate(&dir.join("gate.toml"), admin).await;
    let user = bearer(key_a(), "user", &[]);
    assert_eq!(status(listen, "/admin/x", &user).await, 403);

    version("..2026_11_30_02", OPEN_ADMIN);
    std::os::unix::fs::symlink("..2026_11_30_02", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..2026_11_30_01")).unwrap();
    eventually(
        Duration::from_secs(10),
        "the swapped policy applies",
        || async { status(listen, "/admin/x", &user).await == 200 },
    )
    .await;
    assert_eq!(reloads(admin, "success").await, 1.0);

    // An edit that leaves the bytes as they were is not a reload.
    replace(&dir.join("..data/policy.toml"), OPEN_ADMIN);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(reloads(admin, "success").await, 1.0);
    drop(gate);
}

#[tokio::test]
async fn fifty_reloads_under_load_fail_no_request() {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let dir = folder("load");
    let f = files(&dir, &upstream, &jwks, POLICY).await;
    let (gate, _log) = spawn_gate(&f.config, f.admin).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let admin_token = bearer(key_a(), "alice", &["admins"]);
    let mut clients = Vec::new();
    for i in 0..4 {
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        let auth = admin_token.clone();
        let url = format!("http://{}/admin/item/{i}", f.listen);
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // Allowed by both policies the reloads alternate between.
                let (status, _, _) = get(&url, &[("authorization", &auth)]).await;
                sent.fetch_add(1, Ordering::Relaxed);
                if status != 200 {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for i in 0..50 {
        let policy = if i % 2 == 0 { OPEN_ADMIN } else { POLICY };
        replace(&f.policy, policy);
        signal(gate.pid(), "HUP");
        let want = f64::from(i + 1);
        eventually(Duration::from_secs(10), "the reload completes", || async {
            reloads(f.admin, "success").await >= want
        })
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(
        sent >= 200,
        "only {sent} requests were sent during the reloads"
    );
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed during 50 reloads"
    );
    assert!(reloads(f.admin, "success").await >= 50.0);
    assert_eq!(reloads(f.admin, "error").await, 0.0);
    drop(gate);
}

#[tokio::test]
async fn a_pool_reload_fetches_the_new_keys_first_and_an_unreachable_jwks_changes_nothing() {
    let upstream = Upstream::start().await;
    let jwks_a = JwksServer::start(&[key_a()]).await;
    let jwks_b = JwksServer::start(&[key_b()]).await;
    let dir = folder("pools");
    let f = files(&dir, &upstream, &jwks_a, POLICY).await;
    let (gate, log) = spawn_gate(&f.config, f.admin).await;
    let (token_a, token_b) = (bearer(key_a(), "a", &[]), bearer(key_b(), "b", &[]));
    assert_eq!(status(f.listen, "/app", &token_a).await, 200);
    assert_eq!(status(f.listen, "/app", &token_b).await, 401);

    // The pool's keys now come from B. In the same edit, a setting that needs a
    // restart: tokens of at most 100 bytes would refuse every real token, so a 200
    // below also shows it was not applied with the new pool.
    let text = std::fs::read_to_string(&f.config).unwrap();
    let text = format!(
        "max_token_bytes = 100\n{}",
        text.replace(&jwks_a.url(), &jwks_b.url())
    );
    std::fs::write(&f.config, text).unwrap();
    signal(gate.pid(), "HUP");
    eventually(Duration::from_secs(10), "the new pool applies", || async {
        reloads(f.admin, "success").await >= 1.0
    })
    .await;
    // Keys were fetched before the swap: the first request after it is not a 503.
    assert_eq!(status(f.listen, "/app", &token_b).await, 200);
    assert_eq!(jwks_b.fetches(), 1);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains(r#""settings":"max_token_bytes""#), "{text}");

    // A JWKS nobody answers: the reload fails, B stays.
    // Held (bound, not listening) so no other test can take the port.
    let held = reserve_port().await;
    let dead = held.addr;
    let text = std::fs::read_to_string(&f.config).unwrap();
    let dead_url = format!("http://{dead}/jwks.json");
    std::fs::write(&f.config, text.replace(&jwks_b.url(), &dead_url)).unwrap();
    signal(gate.pid(), "HUP");
    eventually(
        Duration::from_secs(15),
        "the failed reload is counted",
        || async { reloads(f.admin, "error").await >= 1.0 },
    )
    .await;
    assert_eq!(status(f.listen, "/app", &token_b).await, 200);
    let (status_code, _, body) = get(&format!("http://{}/readyz", f.admin), &[]).await;
    assert_eq!(status_code, 200, "{body}");
    drop(gate);
}

#[tokio::test]
async fn metrics_count_requests_keys_and_the_token_cache() {
    let (gate, upstream, jwks) = stack().await;
    let alice = bearer(key_a(), "alice", &["admins"]);
    let bob = bearer(key_a(), "bob", &[]);
    for (path, auth) in [
        ("/admin/a", alice.as_str()),
        ("/admin/a", alice.as_str()),
        ("/admin/a", bob.as_str()),
        ("/public/x", ""),
        ("/app", "Bearer nonsense"),
    ] {
        let headers: Vec<(&str, &str)> = match auth {
            "" => vec![],
            a => vec![("authorization", a)],
        };
        get(&gate.url(path), &headers).await;
    }
    let m = |name: &'static str| metric(gate.admin, name);
    assert_eq!(
        m(r#"cognito_gate_requests_total{endpoint="proxy",decision="allow",status="200",rule="admin"}"#).await,
        Some(2.0)
    );
    assert_eq!(
        m(r#"cognito_gate_requests_total{endpoint="proxy",decision="deny",status="403",rule="admin"}"#).await,
        Some(1.0)
    );
    assert_eq!(
        m(r#"cognito_gate_requests_total{endpoint="proxy",decision="allow",status="200",rule="public"}"#).await,
        Some(1.0)
    );
    assert_eq!(
        m(r#"cognito_gate_requests_total{endpoint="proxy",decision="deny",status="401",rule="app"}"#).await,
        Some(1.0)
    );
    assert_eq!(
        m(r#"cognito_gate_request_duration_seconds_count{endpoint="proxy"}"#).await,
        Some(5.0)
    );
    assert_eq!(
        m("cognito_gate_upstream_duration_seconds_count").await,
        Some(3.0)
    );
    // alice twice (one miss, then a hit), bob once, the malformed token once.
    assert_eq!(m("cognito_gate_token_cache_hits_total").await, Some(1.0));
    assert_eq!(m("cognito_gate_token_cache_misses_total").await, Some(3.0));
    assert_eq!(m("cognito_gate_token_cache_entries").await, Some(2.0));
    let pool = format!("pool=\"{POOL}\"");
    let fetched = format!("cognito_gate_jwks_fetches_total{{{pool},result=\"success\"}}");
    assert_eq!(
        metric(gate.admin, &fetched).await,
        Some(jwks.fetches() as f64)
    );
    let keys = format!("cognito_gate_jwks_keys{{{pool}}}");
    assert_eq!(metric(gate.admin, &keys).await, Some(1.0));
    let last = format!("cognito_gate_jwks_last_success_timestamp_seconds{{{pool}}}");
    let at = metric(gate.admin, &last).await.unwrap();
    assert!((at - now() as f64).abs() < 60.0, "{at}");
    assert_eq!(m("cognito_gate_in_flight_requests").await, Some(0.0));
    let (_, headers, text) = get(&format!("http://{}/metrics", gate.admin), &[]).await;
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert!(
        text.contains("cognito_gate_build_info{version=\"") && text.contains("\",commit=\""),
        "{text}"
    );

    drop(upstream);

    // An upstream nobody answers: counted as a connect error.
    // Held (bound, not listening): connections are refused, and no other test can
    // take the port and leave the gate waiting for an answer (504).
    let held = reserve_port().await;
    let dead = format!("http://{}", held.addr);
    let gate = Gate::start(&config(&dead, &jwks.url(), ""), POLICY).await;
    let (status, _, _) = get(&gate.url("/public/x"), &[]).await;
    assert_eq!(status, 502);
    let errors = r#"cognito_gate_upstream_errors_total{kind="connect"}"#;
    assert_eq!(metric(gate.admin, errors).await, Some(1.0));
}

#[tokio::test]
async fn a_trusted_proxy_keeps_its_forwarding_headers_and_anyone_else_is_replaced() {
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let sent = [
        ("authorization", ""),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "app.example.com"),
        ("x_forwarded_proto", "https"),
        ("forwarded", "for=203.0.113.7;proto=https"),
        ("x-real-ip", "203.0.113.7"),
        ("x-request-id", "alb-1234"),
        ("traceparent", traceparent),
    ];
    let token = bearer(key_a(), "alice", &[]);
    let headers: Vec<(&str, &str)> = sent
        .iter()
        .map(|(k, v)| match *k {
            "authorization" => (*k, token.as_str()),
            _ => (*k, *v),
        })
        .collect();

    // Behind an ALB: the gate's peer (loopback here) is a trusted proxy.
    let (gate, upstream, _jwks) = stack_with("trusted_proxies = [\"127.0.0.0/8\"]").await;
    let (status, _, _) = get(&gate.url("/app"), &headers).await;
    assert_eq!(status, 200);
    let seen = upstream.last();
    assert_eq!(
        seen.header("x-forwarded-for").as_deref(),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(
        seen.header("x-forwarded-host").as_deref(),
        Some("app.example.com")
    );
    assert_eq!(seen.header("x_forwarded_proto"), None);
    assert_eq!(
        seen.header("forwarded").as_deref(),
        Some("for=203.0.113.7;proto=https")
    );
    assert_eq!(seen.header("x-request-id").as_deref(), Some("alb-1234"));
    assert_eq!(seen.header("traceparent").as_deref(), Some(traceparent));

    // Straight from a client: every forwarding header is the gate's own.
    let (gate, upstream, _jwks) = stack().await;
    let (status, _, _) = get(&gate.url("/app"), &headers).await;
    assert_eq!(status, 200);
    let seen = upstream.last();
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some(gate.addr.to_string()));
    for gone in ["x_forwarded_proto", "forwarded", "x-real-ip"] {
        assert_eq!(seen.header(gone), None, "{gone} reached the app");
    }
    let id = seen.header("x-request-id").unwrap();
    assert_ne!(id, "alb-1234");
    assert_eq!(id.len(), 32);
    assert_eq!(seen.header("traceparent").as_deref(), Some(traceparent));

    // A refusal carries the request id in its JSON body.
    let (status, _, body) = get(&gate.url("/app"), &[("x-request-id", "mine")]).await;
    assert_eq!(status, 401);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = body["request_id"].as_str().unwrap();
    assert_eq!(id.len(), 32, "{body}");
}

/// A policy whose first part, up to and including `allow = "anyone"`, is a complete
/// and much wider policy: one rule that lets anyone anywhere. The full file scopes
/// that rule to one host, so that `/admin/**` needs the `admins` group.
const SCOPED_DOCS: &str = r#"
[[rule]]
name = "docs"
path = "/**"
allow = "anyone"
host = "docs.example.com"

[[rule]]
name = "admin"
path = "/admin/**"
groups = ["admins"]

[[rule]]
name = "app"
path = "/**"
allow = "authenticated"

[[test]]
path = "/admin/x"
host = "app.test"
anonymous = true
expect = 401

[[test]]
path = "/admin/x"
host = "docs.example.com"
anonymous = true
expect = "allow"
"#;

/// Where the wider first part of [`SCOPED_DOCS`] ends.
fn scoped_docs_halves() -> (&'static str, &'static str) {
    let cut = SCOPED_DOCS.find("allow = \"anyone\"\n").unwrap() + "allow = \"anyone\"\n".len();
    SCOPED_DOCS.split_at(cut)
}

/// Rewrites `path` in place, as `echo > file` or a careless deploy script does: the same
/// inode truncated, the first part written, and the rest written `gap` later.
async fn write_in_place(path: &Path, first: &str, rest: &str, gap: Duration) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    file.write_all(first.as_bytes()).unwrap();
    file.sync_all().unwrap();
    tokio::time::sleep(gap).await;
    file.write_all(rest.as_bytes()).unwrap();
    file.sync_all().unwrap();
}

/// Sends anonymous `GET /admin/x` every 10 ms until `stop` is set; returns how many
/// were answered 200 and how many were sent.
fn probe_admin(
    listen: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(usize, usize)> {
    tokio::spawn(async move {
        let (mut allowed, mut sent) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            let status = raw_get(listen, "/admin/x", None).await;
            sent += 1;
            if status == 200 {
                allowed += 1;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (allowed, sent)
    })
}

async fn deferred(admin: SocketAddr) -> f64 {
    metric(admin, "cognito_gate_reloads_deferred_total")
        .await
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_policy_written_in_place_is_read_only_once_it_has_settled() {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let dir = folder("in-place");
    // The policy in effect has no [[test]] tables: the wait alone must keep the half
    // file out.
    let f = files(&dir, &upstream, &jwks, POLICY).await;
    let (gate, log) = spawn_gate(&f.config, f.admin).await;
    assert_eq!(raw_get(f.listen, "/admin/x", None).await, 401);

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = probe_admin(f.listen, stop.clone());
    let (first, rest) = scoped_docs_halves();
    // Two write()s one second apart, the first a valid and wider policy.
    write_in_place(&f.policy, first, rest, Duration::from_secs(1)).await;
    let docs = || async {
        let request =
            "GET /admin/x HTTP/1.1\r\nHost: docs.example.com\r\nConnection: close\r\n\r\n";
        raw(f.listen, request).await.0 == 200
    };
    eventually(Duration::from_secs(10), "the whole policy applies", docs).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (allowed, sent) = probe.await.unwrap();
    assert!(sent > 50, "only {sent} probes were sent");
    assert_eq!(
        allowed, 0,
        "{allowed} of {sent} anonymous requests to /admin/x got 200"
    );
    assert_eq!(raw_get(f.listen, "/admin/x", None).await, 401);
    let user = bearer(key_a(), "user", &[]);
    assert_eq!(status(f.listen, "/admin/x", &user).await, 403);
    // One reload, of the whole file; postponed when the wait began and again when the
    // second write came.
    assert_eq!(reloads(f.admin, "success").await, 1.0);
    assert_eq!(reloads(f.admin, "error").await, 0.0);
    assert!(deferred(f.admin).await >= 2.0);
    drop(gate);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("a config or policy file is still being written; the reload is deferred"),
        "{text}"
    );
}

#[tokio::test]
async fn a_rename_and_sighup_apply_at_once_however_long_the_settle_time() {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let dir = folder("settle-immediate");
    let f = files(&dir, &upstream, &jwks, POLICY).await;
    let text = std::fs::read_to_string(&f.config).unwrap();
    std::fs::write(&f.config, format!("{text}\n[reload]\nsettle = \"1h\"\n")).unwrap();
    let (gate, _log) = spawn_gate(&f.config, f.admin).await;
    let user = bearer(key_a(), "user", &[]);
    assert_eq!(status(f.listen, "/admin/x", &user).await, 403);

    // Renamed into place: complete when it appears, read at once.
    replace(&f.policy, OPEN_ADMIN);
    eventually(
        Duration::from_secs(5),
        "the renamed policy applies",
        || async { status(f.listen, "/admin/x", &user).await == 200 },
    )
    .await;
    assert_eq!(deferred(f.admin).await, 0.0);

    // Written in place: it waits (an hour here) until SIGHUP says the file is done.
    write_in_place(&f.policy, POLICY, "", Duration::ZERO).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        status(f.listen, "/admin/x", &user).await,
        200,
        "applied without settling"
    );
    assert_eq!(deferred(f.admin).await, 1.0);
    signal(gate.pid(), "HUP");
    eventually(Duration::from_secs(5), "SIGHUP applies it", || async {
        status(f.listen, "/admin/x", &user).await == 403
    })
    .await;
    assert_eq!(reloads(f.admin, "success").await, 2.0);
    drop(gate);
}

#[tokio::test]
async fn a_new_policy_that_drops_every_test_is_refused() {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let dir = folder("tests-dropped");
    let f = files(&dir, &upstream, &jwks, SCOPED_DOCS).await;
    // No settle time: only the [[test]] guard stands between the half file and the
    // requests.
    let text = std::fs::read_to_string(&f.config).unwrap();
    std::fs::write(&f.config, format!("{text}\n[reload]\nsettle = \"0s\"\n")).unwrap();
    let (gate, log) = spawn_gate(&f.config, f.admin).await;
    assert_eq!(raw_get(f.listen, "/admin/x", None).await, 401);

    let (first, rest) = scoped_docs_halves();
    write_in_place(&f.policy, first, "", Duration::ZERO).await;
    eventually(
        Duration::from_secs(5),
        "the cut-short policy is refused",
        || async { reloads(f.admin, "error").await >= 1.0 },
    )
    .await;
    assert_eq!(raw_get(f.listen, "/admin/x", None).await, 401);
    assert_eq!(reloads(f.admin, "success").await, 0.0);

    // The rest arrives: the whole file, with its tests, applies.
    write_in_place(&f.policy, &format!("{first}{rest}"), "", Duration::ZERO).await;
    eventually(
        Duration::from_secs(5),
        "the whole policy applies",
        || async { reloads(f.admin, "success").await >= 1.0 },
    )
    .await;
    let request = "GET /admin/x HTTP/1.1\r\nHost: docs.example.com\r\nConnection: close\r\n\r\n";
    assert_eq!(raw(f.listen, request).await.0, 200);
    assert_eq!(raw_get(f.listen, "/admin/x", None).await, 401);
    drop(gate);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("[[test]] tables and this one has none"),
        "{text}"
    );
}
