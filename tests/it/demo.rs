//! `cognito-gate demo` as the README promises it: every command it prints answers as
//! the line says. The demo exists only with feature `dev` (on by default; the shipped
//! image is built without it).
#![cfg(feature = "dev")]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::common::process::*;
use crate::common::{full, get, raw_get, send};

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
    let mut revoked = false;
    for pair in lines.windows(2) {
        let Some(promise) = pair[0].strip_prefix("# ") else {
            continue;
        };
        let want: u16 = promise[..3].parse().unwrap();
        let (header, url, as_is) = parse_curl(&pair[1]);
        if let Some((_, form)) = pair[1].split_once("-X POST -d ") {
            // The issuer's /oauth2/revoke, with the refresh token as its form.
            let form = form.split(' ').next().unwrap().to_owned();
            let (status, _, body) = send(
                "POST",
                &url,
                &[("content-type", "application/x-www-form-urlencoded")],
                full(form),
            )
            .await;
            assert_eq!(status, want, "{promise}: {body}");
            revoked = true;
            checked.push(want);
            continue;
        }
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
            let (mut status, _, mut body) = get(&url, &headers).await;
            // After the revocation the gate refuses once it has read the entry, within
            // milliseconds; a human pasting the command never sees the gap.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while revoked && status != want && std::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                (status, _, body) = get(&url, &headers).await;
            }
            if want == 401 && revoked {
                assert!(body.contains("token has been revoked"), "{body}");
            }
            if want == 200
                && header
                    .as_deref()
                    .is_some_and(|h| h.starts_with("Authorization"))
            {
                let (sub, groups) = match (promise.contains("dave"), promise.contains("erin")) {
                    (true, _) => ("dave", ""),
                    (_, true) => ("erin", "admins"),
                    _ => ("alice", "admins"),
                };
                assert!(body.contains(&format!(r#""x-user-sub":"{sub}""#)), "{body}");
                assert!(
                    body.contains(&format!(r#""x-user-groups":"{groups}""#)),
                    "{body}"
                );
            }
            if header.as_deref() == Some("X-User-Sub: forged") {
                assert!(!body.contains("forged"), "{body}");
            }
            status
        };
        assert_eq!(status, want, "{promise}");
        checked.push(want);
    }
    // With a redis-server installed (CI installs one) the demo also shows a sign-out.
    let with_redis = lines.iter().any(|l| l.contains("/oauth2/revoke"));
    assert!(
        with_redis || std::env::var("CI").as_deref() != Ok("true"),
        "CI must show the revocation: apt-get install redis-server"
    );
    let mut want = vec![200, 403, 401, 401, 200, 400, 200, 403];
    if with_redis {
        want.extend([200, 200, 401]);
    }
    assert_eq!(checked, want);

    let (status, _) = child.stop().await;
    assert!(status.success(), "demo exited with {status}");
}
