//! What a release says of itself agrees: the version in `Cargo.toml`, the binary's
//! `--version`, the image's `org.opencontainers.image.version` label and the newest
//! release in `CHANGELOG.md`; and the license `Cargo.toml` names is shipped as files,
//! in the repository and in the image.

use std::path::Path;

use crate::common::process::BIN;

fn read(file: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[test]
fn the_binary_the_image_and_the_changelog_name_the_crates_version() {
    let output = std::process::Command::new(BIN)
        .arg("--version")
        .output()
        .unwrap();
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(
        printed.starts_with(&format!("cognito-gate {VERSION} (commit ")),
        "--version printed {printed:?}"
    );

    let dockerfile = read("Dockerfile");
    let labels: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.split("org.opencontainers.image.version=\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert_eq!(labels, [VERSION], "the image's version label");

    // Keep a Changelog: `## [Unreleased]`, then `## [x.y.z] - YYYY-MM-DD`, newest first.
    let changelog = read("CHANGELOG.md");
    let releases: Vec<&str> = changelog
        .lines()
        .filter_map(|l| l.strip_prefix("## ["))
        .collect();
    assert_eq!(
        releases.first().copied(),
        Some("Unreleased]"),
        "{releases:?}"
    );
    let newest = releases.get(1).expect("a released version in CHANGELOG.md");
    let (version, date) = newest
        .split_once("] - ")
        .unwrap_or_else(|| panic!("not `[x.y.z] - date`: {newest}"));
    assert_eq!(version, VERSION, "the newest release in CHANGELOG.md");
    let parts: Vec<&str> = date.split('-').collect();
    assert!(
        parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok()),
        "not a YYYY-MM-DD date: {date}"
    );
}

#[test]
fn the_license_cargo_toml_names_is_in_the_repository_and_the_image() {
    let manifest = read("Cargo.toml");
    assert!(
        manifest.contains("license = \"MIT OR Apache-2.0\""),
        "Cargo.toml's license changed: update the files and this test"
    );
    assert!(read("LICENSE-MIT").starts_with("MIT License\n"));
    let apache = read("LICENSE-APACHE");
    assert!(apache.contains("Apache License") && apache.contains("Version 2.0, January 2004"));
    assert!(apache.contains("END OF TERMS AND CONDITIONS"));
    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains("org.opencontainers.image.licenses=\"MIT OR Apache-2.0\""));
    assert!(dockerfile.contains("COPY LICENSE-MIT LICENSE-APACHE /usr/share/doc/cognito-gate/"));
}
