//! The manual holds together: every page is in `docs/SUMMARY.md` and every page it names
//! exists; every link between the README, the manual and the repository's files
//! resolves, anchors included (mdBook's heading ids); the README stays a front door; and
//! the command-line reference names every subcommand and option of the binary, and only
//! those. (The configuration, status-code and metric tables are held against the code
//! by the unit tests beside it: `config`, `rejection`, `metrics`.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::process::BIN;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every Markdown file of the manual, and the repository's own pages that link into it.
fn pages() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join("docs"), &mut out);
    for page in ["README.md", "SECURITY.md", "tests/README.md"] {
        out.push(root().join(page));
    }
    out.sort();
    out
}

/// The text outside fenced code blocks and code spans, where links are links.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            let spans: Vec<&str> = line.split('`').collect();
            for (i, part) in spans.iter().enumerate() {
                if i % 2 == 0 {
                    out.push_str(part);
                } else {
                    out.push_str("code");
                }
            }
            out.push('\n');
        }
    }
    out
}

/// The targets of `[text](target)` links.
fn links(text: &str) -> Vec<String> {
    let prose = prose(text);
    let mut out = Vec::new();
    let mut rest = prose.as_str();
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(end) = rest.find(')') {
            out.push(rest[..end].to_owned());
        }
    }
    out
}

/// The ids mdBook gives a page's headings: the heading's text without markup, lower
/// case, spaces as `-`, only letters, digits, `-` and `_` kept; a repeat gets `-1`.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        let Some(heading) = line.strip_prefix('#').filter(|_| !fenced) else {
            continue;
        };
        let heading = heading.trim_start_matches('#').trim();
        // A link's text stays; its target goes.
        let mut plain = String::new();
        let mut chars = heading.chars().peekable();
        while let Some(c) = chars.next() {
            if c == ']' && chars.peek() == Some(&'(') {
                for c in chars.by_ref() {
                    if c == ')' {
                        break;
                    }
                }
                continue;
            }
            plain.push(c);
        }
        let id: String = plain
            .chars()
            .filter_map(|c| match c {
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
                c if c.is_whitespace() => Some('-'),
                _ => None,
            })
            .collect();
        let mut unique = id.clone();
        let mut n = 1;
        while out.contains(&unique) {
            unique = format!("{id}-{n}");
            n += 1;
        }
        out.insert(unique);
    }
    out
}

#[test]
fn every_link_of_the_readme_and_the_manual_resolves_anchors_included() {
    let mut broken = Vec::new();
    let (mut checked, mut anchored) = (0, 0);
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = match link.split_once('#') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (link.as_str(), None),
            };
            let target = match file {
                "" => page.clone(),
                file => page.parent().unwrap().join(file),
            };
            let shown = page.strip_prefix(root()).unwrap().display();
            checked += 1;
            if !target.exists() {
                broken.push(format!("{shown}: {link}: no such file"));
                continue;
            }
            if let Some(anchor) = anchor {
                anchored += 1;
                let target_text = std::fs::read_to_string(&target).unwrap_or_default();
                if !anchors(&target_text).contains(anchor) {
                    broken.push(format!("{shown}: {link}: no such heading"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    // The reader found the links: the manual has over a hundred, half to a heading.
    assert!(
        checked >= 100 && anchored >= 50,
        "{checked} links, {anchored} with an anchor"
    );
}

#[test]
fn the_summary_names_every_page_of_the_manual_and_only_pages_that_exist() {
    let docs = root().join("docs");
    let summary = std::fs::read_to_string(docs.join("SUMMARY.md")).unwrap();
    let named: BTreeSet<PathBuf> = links(&summary).iter().map(|l| docs.join(l)).collect();
    for page in &named {
        assert!(
            page.exists(),
            "SUMMARY.md names {}, which does not exist",
            page.display()
        );
    }
    for page in pages().into_iter().filter(|p| p.starts_with(&docs)) {
        if page.ends_with("SUMMARY.md") {
            continue;
        }
        assert!(
            named.contains(&page),
            "SUMMARY.md does not name {}",
            page.display()
        );
    }
}

#[test]
fn the_readme_stays_a_front_door_with_the_two_commands() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.len() <= 12 * 1024,
        "README.md is {} bytes; the manual is docs/",
        readme.len()
    );
    assert!(readme.contains("cognito-gate demo") || readme.contains("-- demo"));
    assert!(readme.contains("cargo test"));
}

/// The subcommands or options a `--help` lists, as a reader types them.
fn listed(help: &str, section: &str) -> Vec<String> {
    let Some((_, rest)) = help.split_once(&format!("{section}:\n")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in rest.lines() {
        if line.is_empty() || !line.starts_with(' ') {
            break;
        }
        let line = line.trim_start();
        let item = match section {
            "Commands" => line.split_whitespace().next(),
            _ => line.split([',', ' ']).find(|w| w.starts_with("--")),
        };
        if let Some(item) = item.filter(|i| !matches!(*i, "help" | "--help" | "--version")) {
            out.push(item.to_owned());
        }
    }
    out
}

fn help(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).arg("--help").output().unwrap();
    assert!(out.status.success(), "{args:?} --help");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_command_line_reference_names_every_subcommand_and_option_and_nothing_else() {
    let page = std::fs::read_to_string(root().join("docs/reference/cli.md")).unwrap();
    // The page's sections by their heading: "## `explain`" -> its text.
    let sections: Vec<(String, String)> = page
        .split("\n## ")
        .skip(1)
        .map(|s| {
            let (title, body) = s.split_once('\n').unwrap_or((s, ""));
            (title.trim_matches('`').to_owned(), body.to_owned())
        })
        .collect();
    let section = |name: &str| {
        sections
            .iter()
            .find(|(title, _)| title == name)
            .map(|(_, body)| body.as_str())
    };
    let top = help(&[]);
    let globals = section("Global options").expect("a Global options section");
    for option in listed(&top, "Options") {
        assert!(
            globals.contains(&format!("`{option}`")),
            "cli.md: global option {option}"
        );
    }
    let commands = listed(&top, "Commands");
    assert!(commands.contains(&"explain".to_owned()), "{top}");
    for command in &commands {
        let body =
            section(command).unwrap_or_else(|| panic!("cli.md has no section for `{command}`"));
        for option in listed(&help(&[command]), "Options") {
            if option == "--config" {
                continue; // global, documented once
            }
            assert!(
                body.contains(&format!("`{option}`")),
                "cli.md, `{command}`: {option}"
            );
        }
    }
    for (title, body) in &sections {
        if title == "Global options" || commands.contains(title) {
            continue;
        }
        // Without feature `dev` the binary has no demo and no dev-issuer.
        assert!(
            !cfg!(feature = "dev") && body.contains("Built with the `dev` feature"),
            "cli.md documents `{title}`, which the binary does not have"
        );
    }
}

#[test]
fn the_readme_configuration_and_policy_pass_check() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(code, _)| code))
        .collect();
    let config = blocks
        .iter()
        .find(|b| b.contains("[[pools]]"))
        .expect("a configuration");
    let policy = blocks
        .iter()
        .find(|b| b.contains("[[rule]]"))
        .expect("a policy");
    let dir = std::env::temp_dir().join(format!("cognito-gate-readme-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("config")).unwrap();
    std::fs::write(dir.join("config/cognito-gate.toml"), config).unwrap();
    std::fs::write(dir.join("config/policy.toml"), policy).unwrap();
    let out = Command::new(BIN)
        .current_dir(&dir)
        .args(["check", "--config", "config/cognito-gate.toml"])
        .env_remove("COGNITO_GATE_CONFIG")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 policy tests pass"), "{stdout}");
}
