//! The `cognito-gate` binary as a separate process: started on loopback ports with a
//! config and policy in temporary files, stopped with SIGTERM, killed if a test fails.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_cognito-gate");

pub fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("cognito-gate-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// A spawned binary that is killed if the test fails before stopping it, so that a
/// failure never leaves a gate running (or a pipe held open).
pub struct Running(pub Option<std::process::Child>);

impl Running {
    /// Sends SIGTERM and waits for the exit, returning the status and stderr.
    pub async fn stop(mut self) -> (std::process::ExitStatus, String) {
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
pub async fn run_gate(
    tag: &str,
    upstream: &Upstream,
    jwks: &JwksServer,
    extra: &str,
) -> (Running, std::net::SocketAddr, std::net::SocketAddr) {
    run_gate_with(tag, upstream, jwks, "", extra, None).await
}

/// [`run_gate`] with top-level keys `top`, under a shell's `ulimit -n fd_limit` when
/// one is given (soft and hard alike, so the gate cannot raise it).
pub async fn run_gate_with(
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
pub async fn wait_ready(admin: std::net::SocketAddr) {
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

pub fn terminate(pid: u32) {
    signal(pid, "TERM");
}

/// Sends `SIG<name>` to `pid` with kill(1).
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Runs `cognito-gate run --config <config>` in the repository (so that
/// `config/policy.toml` resolves), with stderr piped for [`Running::stop`]; it is not
/// waited for. For short runs that log little.
pub fn spawn_run(config: &std::path::Path) -> Running {
    Running(Some(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(config)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ))
}

/// Runs `cognito-gate run --config <config>`, whose admin listener is `admin`, with
/// stderr written to `<config>.log` (a file, not a pipe: a busy gate would fill a pipe
/// nobody reads and stall); returns it ready, with the log's path.
pub async fn spawn_gate(
    config: &std::path::Path,
    admin: std::net::SocketAddr,
) -> (Running, PathBuf) {
    let log = config.with_extension("log");
    let child = Running(Some(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(config)
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    ));
    wait_ready(admin).await;
    (child, log)
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }
}

/// The value of the sample `name` (with its labels, exactly as exposed) on the
/// admin listener's `/metrics`, or `None` when it is not there.
pub async fn metric(admin: std::net::SocketAddr, name: &str) -> Option<f64> {
    let (status, _, text) = get(&format!("http://{admin}/metrics"), &[]).await;
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Waits until `check` holds, polling every 50 ms for at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
