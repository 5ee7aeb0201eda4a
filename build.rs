//! Records the git commit the binary is built from, for `--version` and
//! `cognito_gate_build_info`. `GATE_BUILD_COMMIT` in the build environment wins (the
//! container build passes it, as the image has no `.git`); otherwise `git` is asked,
//! and without either the commit is "unknown".

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=GATE_BUILD_COMMIT");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let commit = std::env::var("GATE_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_commit);
    let commit = commit.unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=GATE_BUILD_COMMIT={commit}");
}

fn git_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let commit = text.trim();
    (out.status.success() && !commit.is_empty()).then(|| commit.to_owned())
}
