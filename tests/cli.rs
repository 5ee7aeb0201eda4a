//! The `cognito-gate` binary as a user runs it: the demo's printed commands answer
//! what they promise, `check` validates, and SIGTERM ends `run` cleanly.
// The tests sign their tokens with the development issuer (feature `dev`).
#![cfg(feature = "dev")]

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_cognito-gate");

fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("cognito-gate-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

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

/// A spawned binary that is killed if the test fails before stopping it, so that a
/// failure never leaves a gate running (or a pipe held open).
struct Running(Option<std::process::Child>);

impl Running {
    /// Sends SIGTERM and waits for the exit, returning the status and stderr.
    async fn stop(mut self) -> (std::process::ExitStatus, String) {
        let child = self.0.take().unwrap();
        terminate(child.id());
        let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `cognito-gate run` in front of `upstream` with keys from `jwks` and the test
/// policy, plus `extra` TOML (appended last); returns it ready, with its addresses.
async fn run_gate(
    tag: &str,
    upstream: &Upstream,
    jwks: &JwksServer,
    extra: &str,
) -> (Running, std::net::SocketAddr, std::net::SocketAddr) {
    run_gate_with(tag, upstream, jwks, "", extra, None).await
}

/// [`run_gate`] with top-level keys `top`, under a shell's `ulimit -n fd_limit` when
/// one is given (soft and hard alike, so the gate cannot raise it).
async fn run_gate_with(
    tag: &str,
    upstream: &Upstream,
    jwks: &JwksServer,
    top: &str,
    extra: &str,
    fd_limit: Option<u32>,
) -> (Running, std::net::SocketAddr, std::net::SocketAddr) {
    // Released just before the binary binds them; a clash would fail loudly, not pass.
    let (listen, admin) = (reserve_port().await.addr, reserve_port().await.addr);
    let policy = temp_file(&format!("{tag}-policy.toml"), POLICY);
    let config = temp_file(
        &format!("{tag}.toml"),
        &format!(
            "listen = \"{listen}\"\nadmin_listen = \"{admin}\"\npolicy_file = {:?}\n{}\n{extra}\n",
            policy.display().to_string(),
            config(&upstream.url(), &jwks.url(), top)
        ),
    );
    let mut command = match fd_limit {
        None => Command::new(BIN),
        Some(n) => {
            let mut sh = Command::new("sh");
            sh.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), BIN]);
            sh
        }
    };
    let child = Running(Some(
        command
            .args(["run", "--config"])
            .arg(&config)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    wait_ready(admin).await;
    (child, listen, admin)
}

/// Polls `admin`'s `/readyz` until it answers 200.
async fn wait_ready(admin: std::net::SocketAddr) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(admin).await.is_ok()
            && get(&format!("http://{admin}/readyz"), &[]).await.0 == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the gate never became ready");
}

fn terminate(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Pulls the header and URL out of a printed `curl -i [-H '...'] [--path-as-is] URL`.
fn parse_curl(line: &str) -> (Option<String>, String, bool) {
    let header = line
        .split_once("-H '")
        .and_then(|(_, rest)| rest.split_once('\''))
        .map(|(h, _)| h.to_owned());
    let url = line.rsplit(' ').next().unwrap().to_owned();
    (header, url, line.contains("--path-as-is"))
}

#[tokio::test]
async fn the_demo_prints_commands_that_answer_as_promised() {
    let mut child = Running(Some(
        Command::new(BIN)
            .args([
                "demo",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    let stdout = child.0.as_mut().and_then(|c| c.stdout.take()).unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.starts_with("Press Ctrl-C");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    })
    .await
    .unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("policy                config/policy.toml")),
        "{lines:#?}"
    );

    let mut checked = Vec::new();
    for pair in lines.windows(2) {
        let Some(promise) = pair[0].strip_prefix("# ") else {
            continue;
        };
        let want: u16 = promise[..3].parse().unwrap();
        let (header, url, as_is) = parse_curl(&pair[1]);
        let (host_port, path) = url.trim_start_matches("http://").split_once('/').unwrap();
        let path = format!("/{path}");
        let addr: std::net::SocketAddr = host_port.parse().unwrap();
        let status = if as_is {
            raw_get(addr, &path, None).await
        } else {
            let headers: Vec<(&str, &str)> = header
                .as_deref()
                .map(|h| h.split_once(": ").unwrap())
                .into_iter()
                .collect();
            let (status, _, body) = get(&url, &headers).await;
            if want == 200
                && header
                    .as_deref()
                    .is_some_and(|h| h.starts_with("Authorization"))
            {
                assert!(body.contains(r#""x-user-sub":"alice""#), "{body}");
                assert!(body.contains(r#""x-user-groups":"admins""#), "{body}");
            }
            if header.as_deref() == Some("X-User-Sub: forged") {
                assert!(!body.contains("forged"), "{body}");
            }
            status
        };
        assert_eq!(status, want, "{promise}");
        checked.push(want);
    }
    assert_eq!(checked, [200, 403, 401, 401, 200, 400]);

    let (status, _) = child.stop().await;
    assert!(status.success(), "demo exited with {status}");
}

#[test]
fn check_accepts_the_shipped_config_and_summarizes_it() {
    let (code, stdout, stderr) = check("config/cognito-gate.toml".as_ref(), &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    for line in [
        "config config/cognito-gate.toml: ok",
        "policy config/policy.toml: ok, 4 rules",
        "  1. * /public/** -> anyone (public)",
        "  2. * /admin/** -> any of groups admins (admin)",
        "  3. POST,PUT,DELETE /reports/** -> all of groups finance, editors (reports-write)",
        "  4. * /** -> any signed-in user (app)",
        "  8 policy tests pass",
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
    let config = temp_file(
        "good.toml",
        &format!(
            "policy_file = {:?}\n[upstream]\nurl = \"http://127.0.0.1:3000\"\n[[pools]]\nuser_pool_id = \"us-east-1_a\"\nclient_ids = [\"c\"]\n",
            policy.display().to_string()
        ),
    );
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
