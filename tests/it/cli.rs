//! The `cognito-gate` binary as a user runs it: `check` validates, `explain` explains,
//! and SIGTERM ends `run` cleanly. The demo is in `demo.rs`.

use std::process::Command;
use std::time::Duration;

use crate::common::process::*;
use crate::common::*;

/// Runs `cognito-gate check --config <config>` in the repository, with `env` set;
/// returns the exit code, stdout and stderr.
fn check(config: &std::path::Path, env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(config)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A valid config (an app and a pool nobody serves) that uses the policy at `policy`.
fn config_for_policy(tag: &str, policy: &std::path::Path) -> std::path::PathBuf {
    temp_file(
        &format!("{tag}.toml"),
        &format!(
            "policy_file = {:?}\n[upstream]\nurl = \"http://127.0.0.1:3000\"\n[[pools]]\nuser_pool_id = \"us-east-1_a\"\nclient_ids = [\"c\"]\n",
            policy.display().to_string()
        ),
    )
}

#[test]
fn check_accepts_the_shipped_config_and_summarizes_it() {
    let (code, stdout, stderr) = check("config/cognito-gate.toml".as_ref(), &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    for line in [
        "config config/cognito-gate.toml: ok",
        "policy config/policy.toml: ok, 6 rules",
        "  1. * /public/drafts/** -> nobody (an explicit deny) (drafts)",
        "  2. * /public/** -> anyone (public)",
        "  3. * /tenants/{tenant}/** -> any signed-in user, with claims custom:tenant = {tenant} (tenant)",
        "  4. * /admin/** -> any of groups admins (admin)",
        "  5. POST,PUT,DELETE /reports/** -> all of groups finance, editors (reports-write)",
        "  6. * /** -> any signed-in user (app)",
        "  12 policy tests pass",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in {stdout}");
    }
}

#[test]
fn check_accepts_the_container_config() {
    // In the image the policy is at /etc/cognito-gate/policy.toml.
    let env = [("COGNITO_GATE_POLICY_FILE", "config/policy.toml")];
    let (code, stdout, stderr) = check("config/container.toml".as_ref(), &env);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("proxy 0.0.0.0:8080 -> upstream http://127.0.0.1:3000/"),
        "{stdout}"
    );
    assert!(stdout.contains("admin 0.0.0.0:9090"), "{stdout}");
}

#[test]
fn check_accepts_the_decision_only_example() {
    let (code, stdout, stderr) = check("config/cognito-gate-authz.toml".as_ref(), &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("no upstream: decision-only mode"),
        "{stdout}"
    );
    let decisions = "decisions on 127.0.0.1:9191: /auth (nginx, Traefik, Caddy), /envoy/... (Envoy), trusted peers 127.0.0.0/8, ::1/128";
    assert!(stdout.contains(decisions), "{stdout}");
}

#[test]
fn check_reports_every_problem_and_fails() {
    let config = temp_file(
        "bad.toml",
        "listen = \"nowhere\"\n[upstream]\nurl = \"ftp://x\"\n[[pools]]\nuser_pool_id = \"bad\"\nclient_ids = [\"c\"]\n",
    );
    let (code, _, stderr) = check(&config, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    for problem in [
        "listen: \"nowhere\" is not an IP:port address",
        "upstream.url: \"ftp://x\" is not an absolute http(s) URL",
        "pools[0].user_pool_id: \"bad\" is not a user pool id",
    ] {
        assert!(stderr.contains(problem), "missing {problem:?} in {stderr}");
    }

    let policy = temp_file("bad-policy.toml", "[[rule]]\npath = \"/a\"\n");
    let config = config_for_policy("good", &policy);
    let (code, _, stderr) = check(&config, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "rule 1: allow: a rule needs exactly one of allow, groups, groups_all or scopes"
        ),
        "{stderr}"
    );
}

#[test]
fn environment_variables_override_the_file_and_typos_are_refused() {
    let shipped: &std::path::Path = "config/cognito-gate.toml".as_ref();
    let env = [
        ("COGNITO_GATE_UPSTREAM__URL", "http://127.0.0.2:4000"),
        (
            "COGNITO_GATE_POOLS",
            r#"[{user_pool_id="eu-west-1_FromEnv", client_ids=["env-client"]}]"#,
        ),
    ];
    let (code, stdout, stderr) = check(shipped, &env);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("upstream http://127.0.0.2:4000/"),
        "{stdout}"
    );
    assert!(stdout.contains("pool eu-west-1_FromEnv"), "{stdout}");

    let (code, _, stderr) = check(shipped, &[("COGNITO_GATE_UPSTREAM__TIMEOUT", "5s")]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("timeout"), "{stderr}");
}

#[tokio::test]
async fn run_serves_and_sigterm_ends_it_with_exit_code_0() {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let (child, listen, _) = run_gate("run", &upstream, &jwks, "").await;
    let (status, _, _) = get(
        &format!("http://{listen}/admin/a"),
        &[("authorization", &bearer(key_a(), "x", &["admins"]))],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(upstream.last().header("x-user-sub").as_deref(), Some("x"));

    let (status, _) = child.stop().await;
    assert!(status.success(), "run exited with {status}");
}

#[tokio::test]
async fn every_request_writes_one_json_access_line_without_the_token() {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let (child, listen, _) = run_gate("log", &upstream, &jwks, "[log]\nformat = \"json\"").await;

    let alice = bearer(key_a(), "alice", &["admins"]);
    let bob = bearer(key_a(), "bob", &[]);
    let forged = format!("{}x", &alice[..alice.len() - 1]);
    let requests = [
        ("/admin/reports", alice.as_str(), 200),
        ("/missing", alice.as_str(), 404),
        ("/admin/reports", bob.as_str(), 403),
        ("/admin/reports", forged.as_str(), 401),
    ];
    for (path, auth, want) in requests {
        let (status, _, _) = get(
            &format!("http://{listen}{path}"),
            &[("authorization", auth)],
        )
        .await;
        assert_eq!(status, want, "{path}");
    }
    {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
        let mut request = format!("ws://{listen}/ws").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", alice.parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        ws.send(Message::text("twelve bytes")).await.unwrap();
        assert!(ws.next().await.unwrap().unwrap().is_text());
        ws.close(None).await.unwrap();
        while ws.next().await.is_some() {}
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, stderr) = child.stop().await;
    assert!(
        !stderr.contains("eyJ"),
        "a token reached the log:\n{stderr}"
    );
    // The WebSocket session's own line, when it ends: how long, and how much.
    let session: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == "upgraded connection closed")
        .collect();
    assert_eq!(session.len(), 1, "{stderr}");
    let session = &session[0];
    assert_eq!(
        (
            &session["target"],
            &session["path"],
            &session["sub"],
            &session["rule"]
        ),
        (
            &serde_json::json!("cognito_gate::access"),
            &serde_json::json!("/ws"),
            &serde_json::json!("alice"),
            &serde_json::json!("app")
        ),
        "{session}"
    );
    // A masked 12-byte text frame plus a close frame from the client; the echo and the
    // close reply from the app.
    assert!(
        session["bytes_from_client"].as_u64().unwrap() >= 18 + 6,
        "{session}"
    );
    assert!(
        session["bytes_from_upstream"].as_u64().unwrap() >= 14 + 2,
        "{session}"
    );
    assert!(session["duration_ms"]
        .as_str()
        .unwrap()
        .parse::<f64>()
        .is_ok());

    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["target"] == "cognito_gate::access" && l["method"] == "GET")
        .collect();
    // Why the gate refused, in its own words; "-" when the app answered.
    let reasons: Vec<&str> = lines
        .iter()
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons[..3],
        [
            "-",
            "-",
            "the token's groups, scopes or claims are not allowed by the rule"
        ]
    );
    assert!(reasons[3].contains("token"), "{reasons:?}");
    let summary: Vec<(String, u64, String, String, String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["path"].as_str().unwrap().to_owned(),
                l["status"].as_u64().unwrap(),
                l["decision"].as_str().unwrap().to_owned(),
                l["rule"].as_str().unwrap().to_owned(),
                l["sub"].as_str().unwrap().to_owned(),
                l["level"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("/admin/reports", 200, "allow", "admin", "alice", "INFO"),
        ("/missing", 404, "allow", "app", "alice", "INFO"),
        ("/admin/reports", 403, "deny", "admin", "bob", "INFO"),
        ("/admin/reports", 401, "deny", "admin", "-", "INFO"),
        ("/ws", 101, "allow", "app", "alice", "INFO"),
    ]
    .map(|(p, s, d, r, u, l)| {
        (
            p.to_owned(),
            s,
            d.to_owned(),
            r.to_owned(),
            u.to_owned(),
            l.to_owned(),
        )
    });
    assert_eq!(summary, expected, "{stderr}");
    let mut ids = std::collections::BTreeSet::new();
    for line in &lines {
        assert_eq!(line["endpoint"], "proxy");
        assert!(
            line["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
            "{line}"
        );
        assert_eq!(line["client"], "127.0.0.1", "{line}");
        ids.insert(line["request_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), lines.len(), "request ids repeat: {ids:?}");
}

#[tokio::test]
async fn silent_connections_cannot_exhaust_file_descriptors() {
    // The attack: 300 connections that never speak, against a process allowed 256 open
    // files. The gate must keep answering probes, and serve real requests again as
    // soon as the silent ones are cut off.
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let (child, listen, admin) = run_gate_with(
        "fds",
        &upstream,
        &jwks,
        "header_read_timeout = \"1s\"",
        "",
        Some(256),
    )
    .await;
    let mut silent = Vec::new();
    for _ in 0..300 {
        silent.push(tokio::net::TcpStream::connect(listen).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..5 {
        let (status, _, _) = get(&format!("http://{admin}/readyz"), &[]).await;
        assert_eq!(status, 200, "/readyz stopped answering");
    }
    let started = std::time::Instant::now();
    let (status, _, _) = tokio::time::timeout(
        Duration::from_secs(15),
        get(
            &format!("http://{listen}/app"),
            &[("authorization", &bearer(key_a(), "x", &[]))],
        ),
    )
    .await
    .expect("a real request was never answered");
    assert_eq!(status, 200, "after {:?}", started.elapsed());
    drop(silent);
    let (_, stderr) = child.stop().await;
    assert!(
        !stderr.contains("Too many open files"),
        "the gate ran out of file descriptors:\n{stderr}"
    );
}

#[test]
fn run_without_a_config_file_fails_clearly() {
    let out = Command::new(BIN)
        .args(["run", "--config", "/nonexistent/cognito-gate.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("config file /nonexistent/cognito-gate.toml does not exist"));
}

#[test]
fn check_refuses_shadowed_rules_duplicate_names_and_failing_policy_tests() {
    let policy = temp_file(
        "lint-policy.toml",
        r#"
        [[rule]]
        name = "signed-in"
        path = "/**"
        allow = "authenticated"

        [[rule]]
        name = "admin"
        path = "/admin/**"
        methods = ["GET"]
        groups = ["admins"]

        [[rule]]
        name = "signed-in"
        path = "/public/*"
        allow = "anyone"

        [[test]]
        path = "/admin/x"
        groups = ["staff"]
        expect = 403
        "#,
    );
    let config = config_for_policy("lint", &policy);
    let (code, _, stderr) = check(&config, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    for problem in [
        "rule 2 (admin: GET /admin/**) can never match: rule 1 (signed-in: any method /**) comes first and matches every request it matches",
        "rule 3 (signed-in): name: \"signed-in\" is also the name of rule 1",
        "rule 3 (signed-in: any method /public/*) can never match: rule 1 (signed-in: any method /**)",
    ] {
        assert!(stderr.contains(problem), "missing {problem:?} in {stderr}");
    }

    // A policy that lints clean but fails its own test: check and run both refuse it.
    std::fs::write(
        &policy,
        "[[rule]]\nname = \"all\"\npath = \"/**\"\nallow = \"authenticated\"\n[[test]]\npath = \"/admin/x\"\ngroups = [\"staff\"]\nexpect = 403\n",
    )
    .unwrap();
    let (code, _, stderr) = check(&config, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    let failure = "test 1 (GET /admin/x as groups [staff]): expected 403, got 200: rule 1 (all) decided: allowed";
    assert!(stderr.contains(failure), "{stderr}");
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(failure));
}

/// Runs the binary in the repository with `args`; returns the exit code and stdout.
fn cognito_gate(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn explain_shows_the_canonical_path_each_rule_tried_and_the_status() {
    let (code, out) = cognito_gate(&[
        "explain",
        "-c",
        "config/cognito-gate.toml",
        "DELETE",
        "/reports/%37",
        "--groups",
        "finance",
    ]);
    assert_eq!(code, Some(0), "{out}");
    let want = "\
request  DELETE /reports/%37
path     /reports/7 (canonical: what the app receives)
  rule  1 drafts                   no: the path does not match
  rule  2 public                   no: the path does not match
  rule  3 tenant                   no: the path does not match
  rule  4 admin                    no: the path does not match
  rule  5 reports-write            MATCHES -> all of groups finance, editors
caller   groups [finance], scopes []
decided  by rule 5 (reports-write): deny: the token's groups, scopes or claims are not allowed by the rule
status   403
";
    assert_eq!(out, want);

    // Claims given on the command line meet the tenant rule's condition, or do not.
    let tenant = |claims: &[&str]| {
        let mut args = vec![
            "explain",
            "-c",
            "config/cognito-gate.toml",
            "GET",
            "/tenants/acme/x",
        ];
        for claim in claims {
            args.extend(["--claim", claim]);
        }
        cognito_gate(&args).1
    };
    let out = tenant(&["custom:tenant=acme"]);
    assert!(
        out.contains("rule  3 tenant                   MATCHES -> any signed-in user, with claims custom:tenant = {tenant}"),
        "{out}"
    );
    assert!(
        out.contains(r#"caller   groups [], scopes [], claims {"custom:tenant":"acme"}"#),
        "{out}"
    );
    assert!(
        out.ends_with("decided  by rule 3 (tenant): allow\nstatus   200\n"),
        "{out}"
    );
    assert!(tenant(&["custom:tenant=globex"]).ends_with("status   403\n"));
    // JSON when it parses: an array claim contains the value; a number is not a string.
    assert!(tenant(&[r#"custom:tenant=["globex","acme"]"#]).ends_with("status   200\n"));
    assert!(tenant(&["custom:tenant=7"]).ends_with("status   403\n"));
    assert!(tenant(&[]).ends_with("status   403\n"));
    let (_, out) = cognito_gate(&[
        "explain",
        "-c",
        "config/cognito-gate.toml",
        "GET",
        "/public/drafts/q3",
        "--anonymous",
    ]);
    assert!(
        out.ends_with("decided  by rule 1 (drafts): deny: the policy denies this request to everyone\nstatus   403\n"),
        "{out}"
    );

    let (_, out) = cognito_gate(&[
        "explain",
        "-c",
        "config/cognito-gate.toml",
        "GET",
        "/admin/x",
        "--anonymous",
    ]);
    assert!(
        out.contains("rule  4 admin                    MATCHES -> any of groups admins"),
        "{out}"
    );
    assert!(
        out.ends_with("decided  by rule 4 (admin): deny: no bearer token\nstatus   401\n"),
        "{out}"
    );

    let (_, out) = cognito_gate(&[
        "explain",
        "-c",
        "config/cognito-gate.toml",
        "GET",
        "/public/../admin",
        "--anonymous",
    ]);
    assert!(
        out.contains("path     refused: the path contains a '.' or '..' segment"),
        "{out}"
    );
    assert!(out.ends_with("status   400\n"), "{out}");

    // Upper case in the path: a case-insensitive app would route it to /admin.
    let (_, out) = cognito_gate(&[
        "explain",
        "-c",
        "config/cognito-gate.toml",
        "GET",
        "/ADMIN/x",
        "--groups",
        "staff",
    ]);
    assert!(out.contains("rules app, admin all govern it"), "{out}");
    assert!(out.ends_with("status   403\n"), "{out}");
}

#[tokio::test]
async fn explain_verifies_a_real_token_step_by_step() {
    let jwks = JwksServer::start(&[key_a()]).await;
    let upstream = Upstream::start().await;
    let config = temp_file(
        "explain.toml",
        &format!(
            "policy_file = \"config/policy.toml\"\n{}",
            crate::common::config(&upstream.url(), &jwks.url(), "")
        ),
    );
    let explain = |token: String| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            let out = Command::new(BIN)
                .args(["explain", "-c"])
                .arg(&config)
                .args(["GET", "/admin/x", "--token", &token])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    let token = bearer(key_a(), "alice", &["admins"]);
    let token = token.trim_start_matches("Bearer ").to_owned();
    let out = explain(token.clone()).await.unwrap();
    assert!(out.contains("token    1. shape, header and issuer: ok: RS256, kid \"key-a\", pool eu-central-1_GateTest1"), "{out}");
    assert!(out.contains("token    2. signing key: found"), "{out}");
    assert!(
        out.contains("token    3. signature, exp/nbf, token_use, client id: ok"),
        "{out}"
    );
    assert!(out.contains("caller   sub alice, groups [admins]"), "{out}");
    assert!(out.ends_with("status   200\n"), "{out}");
    assert!(!out.contains(&token), "the token was printed");

    // One signature character changed (a valid base64url character, not the last).
    let at = token.len() - 10;
    let swapped = if &token[at..=at] == "A" { "B" } else { "A" };
    let forged = format!("{}{swapped}{}", &token[..at], &token[at + 1..]);
    let out = explain(forged).await.unwrap();
    assert!(out.contains("token    3. signature, exp/nbf, token_use, client id: refused: token signature is invalid"), "{out}");
    assert!(out.ends_with("status   401\n"), "{out}");
}

#[test]
fn version_names_the_commit_and_completions_are_printed_for_each_shell() {
    let (code, out) = cognito_gate(&["--version"]);
    assert_eq!(code, Some(0));
    // Built outside a git checkout (a source tarball, no git), the commit is "unknown".
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map_or("unknown".to_owned(), |out| {
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        });
    assert_eq!(
        out.trim(),
        format!("cognito-gate {} (commit {head})", env!("CARGO_PKG_VERSION"))
    );
    for (shell, marker) in [
        (
            "bash",
            "complete -F _cognito__gate -o bashdefault -o default cognito-gate",
        ),
        ("zsh", "#compdef cognito-gate"),
        ("fish", "complete -c cognito-gate"),
    ] {
        let (code, out) = cognito_gate(&["completions", shell]);
        assert_eq!(code, Some(0));
        assert!(out.contains(marker), "{shell}: {out}");
        assert!(out.contains("explain"), "{shell}");
    }
}

#[test]
fn list_values_from_the_environment_take_commas_or_json() {
    let shipped: &std::path::Path = "config/cognito-gate-authz.toml".as_ref();
    for value in [
        "10.0.0.0/8, 192.168.0.0/16",
        r#"["10.0.0.0/8","192.168.0.0/16"]"#,
    ] {
        let env = [("COGNITO_GATE_AUTHZ__TRUSTED_PEERS", value)];
        let (code, stdout, stderr) = check(shipped, &env);
        assert_eq!(code, Some(0), "{value}: {stderr}");
        assert!(
            stdout.contains("trusted peers 10.0.0.0/8, 192.168.0.0/16"),
            "{stdout}"
        );
    }
    let env = [("COGNITO_GATE_TRUSTED_PROXIES", "10.0.0.0/8,nonsense")];
    let (code, _, stderr) = check(shipped, &env);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("trusted_proxies: \"nonsense\" is not an IP address or CIDR range"),
        "{stderr}"
    );
}

#[tokio::test]
async fn logs_are_json_without_colour_when_not_a_terminal_and_key_fetches_say_so() {
    // No [log] table: the default format is auto, and stderr here is a pipe.
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start(&[key_a()]).await;
    let (child, listen, _) = run_gate("auto", &upstream, &jwks, "").await;
    let (status, _, _) = get(&format!("http://{listen}/public/x"), &[]).await;
    assert_eq!(status, 200);
    let (_, stderr) = child.stop().await;
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes in a pipe:\n{stderr}"
    );
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let loaded = lines
        .iter()
        .find(|l| l["message"] == "JWKS loaded")
        .unwrap_or_else(|| panic!("no key fetch at info:\n{stderr}"));
    assert_eq!(loaded["level"], "INFO");
    assert_eq!(loaded["pool"], POOL);
    assert_eq!(loaded["keys"], 1);

    // A pool whose keys never come: the error does not claim last good keys.
    let held = reserve_port().await;
    let dead = held.addr;
    let config = temp_file(
        "nokeys.toml",
        &format!(
            "admin_listen = \"{}\"\npolicy_file = \"config/policy.toml\"\n{}",
            reserve_port().await.addr,
            crate::common::config(
                &upstream.url(),
                &format!("http://{dead}/jwks.json"),
                "listen = \"127.0.0.1:0\""
            )
        ),
    );
    let child = spawn_run(&config);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, stderr) = child.stop().await;
    assert!(
        stderr.contains("JWKS fetch failed and the pool has no keys yet: its tokens are answered 503 until a fetch succeeds"),
        "{stderr}"
    );
    assert!(!stderr.contains("keeping the last good keys"), "{stderr}");
}

#[tokio::test]
async fn decision_only_mode_logs_no_proxy_address() {
    let jwks = JwksServer::start(&[key_a()]).await;
    let (authz, admin) = (reserve_port().await.addr, reserve_port().await.addr);
    let config = temp_file(
        "decision-only.toml",
        &format!(
            "listen = \"127.0.0.1:8\"\nadmin_listen = \"{admin}\"\npolicy_file = \"config/policy.toml\"\n{}",
            authz_config(&jwks.url(), "").replace("127.0.0.1:9191", &authz.to_string())
        ),
    );
    let child = spawn_run(&config);
    wait_ready(admin).await;
    let (_, stderr) = child.stop().await;
    let started: serde_json::Value = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "cognito-gate started")
        .unwrap_or_else(|| panic!("no start line:\n{stderr}"));
    assert_eq!(started["listen"], "off", "{started}");
    assert_eq!(started["upstream"], "none (decision-only)", "{started}");
    assert_eq!(started["authz"], authz.to_string(), "{started}");
    assert!(!stderr.contains("127.0.0.1:8\""), "{stderr}");
}

#[test]
fn policy_tests_and_explain_name_the_host() {
    let policy = temp_file(
        "hosts-policy.toml",
        "[[rule]]\nname = \"admin-site\"\nhost = \"admin.example.com\"\npath = \"/**\"\ngroups = [\"admins\"]\n\
         [[rule]]\nname = \"rest\"\npath = \"/**\"\nallow = \"anyone\"\n\
         [[test]]\nhost = \"Admin.Example.com:8443\"\npath = \"/x\"\nanonymous = true\nexpect = 401\n\
         [[test]]\nhost = \"www.example.com\"\npath = \"/x\"\nanonymous = true\nexpect = \"allow\"\n\
         [[test]]\nhost = \"admin.example.com\"\npath = \"/x\"\ngroups = [\"staff\"]\nexpect = \"allow\"\n",
    );
    let env = [("COGNITO_GATE_POLICY_FILE", policy.to_str().unwrap())];
    let (code, stdout, stderr) = check("config/cognito-gate.toml".as_ref(), &env);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains(
            "test 3 (GET /x on admin.example.com as groups [staff]): expected allow, got 403: rule 1 (admin-site) decided"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("test 1") && !stderr.contains("test 2"),
        "{stderr}"
    );

    let (_, out) = cognito_gate(&[
        "explain",
        "-c",
        "config/cognito-gate.toml",
        "GET",
        "/x",
        "--host",
        "admin.example.com",
        "--anonymous",
    ]);
    // The shipped policy has no host rules: every host reads the same.
    assert!(
        out.starts_with("request  GET /x (host admin.example.com)\n"),
        "{out}"
    );
    assert!(out.ends_with("status   401\n"), "{out}");
}

#[tokio::test]
async fn check_fetches_each_issuers_discovery_document_and_names_the_one_that_fails() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let issuer = format!("{base}/realms/main");
    let served = issuer.clone();
    let _stop = spawn_server(listener, move |req| {
        let issuer = served.clone();
        async move {
            let mut response = http::Response::new(full(""));
            if req.uri().path() == "/realms/main/.well-known/openid-configuration" {
                let body =
                    serde_json::json!({ "issuer": issuer, "jwks_uri": format!("{issuer}/keys") });
                *response.body_mut() = full(body.to_string());
            } else {
                *response.status_mut() = http::StatusCode::NOT_FOUND;
            }
            response
        }
    });
    let config = |issuers: &str| {
        temp_file(
            "issuers.toml",
            &format!(
                "policy_file = \"config/policy.toml\"\n[upstream]\nurl = \"http://127.0.0.1:3000\"\n{issuers}"
            ),
        )
    };
    let good = format!("[[issuers]]\nissuer = \"{issuer}\"\naudiences = [\"api\"]\n");
    let file = config(&good);
    let out = tokio::task::spawn_blocking(move || check(&file, &[]))
        .await
        .unwrap();
    assert_eq!(out.0, Some(0), "{out:?}");
    assert!(
        out.1.contains(&format!(
            "  issuer {issuer} (RS256, audiences api, groups from groups), keys from {issuer}/keys"
        )),
        "{out:?}"
    );

    let bad =
        format!("{good}[[issuers]]\nissuer = \"{base}/realms/other\"\naudiences = [\"api\"]\n");
    let file = config(&bad);
    let out = tokio::task::spawn_blocking(move || check(&file, &[]))
        .await
        .unwrap();
    assert_eq!(out.0, Some(1), "{out:?}");
    assert!(
        out.2.contains(&format!(
            "issuers[1] ({base}/realms/other): discovery at {base}/realms/other/.well-known/openid-configuration failed: answered HTTP 404"
        )),
        "{out:?}"
    );
}
