//! The module map stays a map: every file of `src/` imports only its own floor and the
//! floors below (config, path and wire at the bottom, the listeners near the top), no
//! two files import each other through any chain, and each folder says what it holds.
//! It reads the source as text, so it needs no tool beyond the test itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The floor of each top-level module; `crate` is the root, `lib.rs`.
const FLOORS: &[(&str, u8)] = &[
    ("config", 0),
    ("cors", 0),
    ("path", 0),
    ("wire", 0),
    ("metrics", 0),
    ("manual", 0),
    ("backoff", 0),
    ("pem", 0),
    ("tls", 0),
    ("client", 1),
    ("revocation", 1),
    ("trace", 1),
    ("token", 2),
    ("policy", 3),
    ("authorize", 4),
    ("rejection", 4),
    ("dry_run", 5),
    ("http", 6),
    ("logging", 6),
    ("gate", 7),
    ("reload", 7),
    ("dev", 8),
    ("crate", 9),
];

fn floor(module: &str) -> u8 {
    let top = module.split("::").next().unwrap_or(module);
    FLOORS
        .iter()
        .find(|(name, _)| *name == top)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("src/ has a module `{top}` with no floor in tests/it/layout.rs"))
}

/// Every module of the library (`crate`, `http`, `http::proxy`, ...) with its source
/// text up to its unit tests; `tests.rs` files are test code and left out.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            if path.is_dir() {
                let mut inner = prefix.to_vec();
                inner.push(name);
                walk(&path, &inner, out);
                continue;
            }
            let Some(stem) = name.strip_suffix(".rs") else {
                continue;
            };
            let mut module = prefix.to_vec();
            match stem {
                "main" if prefix.is_empty() => continue,
                "tests" => continue,
                "lib" if prefix.is_empty() => {}
                "mod" => {}
                other => module.push(other.to_owned()),
            }
            let module = if module.is_empty() {
                "crate".to_owned()
            } else {
                module.join("::")
            };
            let text = std::fs::read_to_string(&path).unwrap();
            let production = match text.find("#[cfg(test)]\nmod tests {") {
                Some(at) => text[..at].to_owned(),
                None => text,
            };
            out.insert(module, production);
        }
    }
    let mut out = BTreeMap::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &[],
        &mut out,
    );
    out
}

fn parent(module: &str) -> String {
    match module.rsplit_once("::") {
        Some((up, _)) => up.to_owned(),
        None => "crate".to_owned(),
    }
}

/// The paths a piece of source names after `crate::` or `super::`, with brace groups
/// expanded: `use super::{a, b::c}` names `super::a` and `super::b::c`.
fn named_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for start in ["crate::", "super::"] {
        let mut rest = text;
        while let Some(at) = rest.find(start) {
            let before = rest[..at].chars().last();
            rest = &rest[at..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                rest = &rest[start.len()..];
                continue;
            }
            let path_len = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let path = rest[..path_len].trim_end_matches(':').to_owned();
            let after = &rest[path_len..];
            if after.starts_with('{') {
                let mut depth = 0;
                let mut item = String::new();
                for c in after.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 1 => break,
                        '}' => depth -= 1,
                        ',' if depth == 1 => {
                            out.push(format!("{path}::{}", item.trim()));
                            item.clear();
                            continue;
                        }
                        _ => {}
                    }
                    if depth >= 1 && c != '{' {
                        item.push(c);
                    }
                }
                if !item.trim().is_empty() {
                    out.push(format!("{path}::{}", item.trim()));
                }
            } else {
                out.push(path);
            }
            rest = &rest[path_len..];
        }
    }
    out
}

/// The modules `module` imports: each named path resolved to the longest module it
/// starts with.
fn imports(module: &str, text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for path in named_paths(text) {
        let mut segments: Vec<String> = Vec::new();
        let mut base = module.to_owned();
        for (i, seg) in path.split("::").enumerate() {
            match (i, seg) {
                (0, "crate") => base = "crate".to_owned(),
                (_, "super") if segments.is_empty() => base = parent(&base),
                (_, "self") => {}
                _ => segments.push(seg.trim().to_owned()),
            }
        }
        let mut target = base.clone();
        for seg in &segments {
            let candidate = if target == "crate" {
                seg.clone()
            } else {
                format!("{target}::{seg}")
            };
            if known.contains(&candidate) {
                target = candidate;
            } else {
                break;
            }
        }
        if target != module {
            out.insert(target);
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(m, text)| (m.clone(), imports(m, text, &known)))
        .collect()
}

#[test]
fn no_module_imports_a_floor_above_its_own() {
    let mut upward = Vec::new();
    for (module, targets) in graph() {
        for target in targets {
            if floor(&target) > floor(&module) {
                upward.push(format!("{module} imports {target}"));
            }
        }
    }
    assert!(upward.is_empty(), "upward imports:\n{}", upward.join("\n"));
}

#[test]
fn no_two_files_import_each_other_through_any_chain() {
    let graph = graph();
    // Depth-first search with the path on the stack; a back edge is a cycle.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(cycle) = visit(module, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_checker_sees_imports_cycles_and_floors() {
    // The checks above pass vacuously if the parser finds nothing: pin what it reads.
    let known: BTreeSet<String> = ["http", "http::proxy", "http::answer", "token", "policy"]
        .into_iter()
        .map(String::from)
        .collect();
    let text = "use super::answer::{GateBody, Rejection};\nuse crate::token::Identity;\n\
                use crate::{policy::Rule, token};\nlet x = my_crate::other;";
    let got: Vec<String> = imports("http::proxy", text, &known).into_iter().collect();
    assert_eq!(got, ["http::answer", "policy", "token"]);
    let g = graph();
    assert!(
        g["http::proxy"].contains("authorize"),
        "{:?}",
        g["http::proxy"]
    );
    assert!(g["authorize"].contains("policy"));
    assert!(floor("config") < floor("http::proxy"));
    // The policy's own tests judge statuses without the web layer.
    assert!(floor("rejection") < floor("dry_run") && floor("dry_run") < floor("http"));
}

#[test]
fn each_folder_says_what_it_holds_and_what_it_may_import() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut folders = 0;
    for entry in std::fs::read_dir(&src).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        folders += 1;
        let text = std::fs::read_to_string(dir.join("mod.rs")).unwrap();
        let doc: Vec<&str> = text.lines().take_while(|l| l.starts_with("//!")).collect();
        assert!(doc.len() >= 2, "{}: no two-line //! header", dir.display());
        assert!(
            doc.join(" ").contains("import"),
            "{}: the header does not say what it may import",
            dir.display()
        );
    }
    assert!(folders >= 5, "src/ has only {folders} folders");
}

#[test]
fn the_library_exposes_only_its_api_and_one_hidden_module() {
    let lib = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lib.rs")).unwrap();
    let public_modules: Vec<&str> = lib
        .lines()
        .filter(|l| l.trim_start().starts_with("pub mod"))
        .collect();
    assert_eq!(public_modules, ["pub mod internals {"]);
    let reexports: Vec<&str> = lib.lines().filter(|l| l.starts_with("pub use")).collect();
    assert_eq!(
        reexports,
        [
            "pub use authorize::Clock;",
            "pub use config::Config;",
            "pub use gate::{run, Listeners, StartError};",
            "pub use policy::Policy;",
        ]
    );
    assert!(lib.contains("#[doc(hidden)]\npub mod internals"));
}
