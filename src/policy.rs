//! The path policy: ordered rules from a TOML file, first match wins, no match denies.
//!
//! This module is pure: no I/O after loading, no clock, no async. It answers two
//! questions — which rule governs (method, canonical path), and does that rule's grant
//! admit a given identity — so both can be tested as tables.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use http::Method;
use serde::Deserialize;

use crate::path;
use crate::verify::Identity;

/// A loaded, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
}

/// One `[[rule]]` table.
#[derive(Debug, Clone)]
pub struct Rule {
    id: RuleId,
    pattern: Vec<Segment>,
    methods: Option<Vec<Method>>,
    grant: Grant,
}

/// How a rule is named in logs and answers: its `name`, or `#N` (1-based position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleId {
    pub number: usize,
    pub name: Option<Arc<str>>,
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => f.write_str(name),
            None => write!(f, "#{}", self.number),
        }
    }
}

/// Who a rule lets in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// `allow = "anyone"`: no token is needed or read.
    Anyone,
    /// `allow = "authenticated"`: any valid token.
    Authenticated,
    /// `groups = [..]`: a member of at least one of them.
    AnyGroup(Vec<String>),
    /// `groups_all = [..]`: a member of every one of them.
    AllGroups(Vec<String>),
    /// `scopes = [..]`: an access token with at least one of these scopes. This is how
    /// machine-to-machine (client-credentials) tokens, which carry no groups, are gated.
    AnyScope(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`: exactly one non-empty segment.
    One,
    /// `**`: any number of trailing segments, including none.
    Rest,
}

impl Grant {
    /// Whether `identity` satisfies this grant. `Anyone` admits even no identity.
    pub fn admits(&self, identity: Option<&Identity>) -> bool {
        match (self, identity) {
            (Grant::Anyone, _) => true,
            (_, None) => false,
            (Grant::Authenticated, Some(_)) => true,
            (Grant::AnyGroup(wanted), Some(id)) => wanted.iter().any(|g| id.groups.contains(g)),
            (Grant::AllGroups(wanted), Some(id)) => wanted.iter().all(|g| id.groups.contains(g)),
            (Grant::AnyScope(wanted), Some(id)) => wanted.iter().any(|s| id.scopes.contains(s)),
        }
    }

    /// Whether a token must be verified before the grant can be decided; `anyone`
    /// rules never read the token, so a bad one cannot make a public path fail.
    pub fn needs_token(&self) -> bool {
        !matches!(self, Grant::Anyone)
    }
}

impl Rule {
    /// How this rule is named in logs.
    pub fn id(&self) -> &RuleId {
        &self.id
    }

    /// Who this rule lets in.
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    fn matches(&self, method: &Method, canonical_path: &str) -> bool {
        let method_ok = match &self.methods {
            None => true,
            // GET also admits HEAD, as nginx's limit_except and most routers do.
            Some(list) => list
                .iter()
                .any(|m| m == method || (*m == Method::GET && *method == Method::HEAD)),
        };
        method_ok && pattern_matches(&self.pattern, canonical_path)
    }
}

fn pattern_matches(pattern: &[Segment], canonical_path: &str) -> bool {
    let mut segs = path::segments(canonical_path);
    for p in pattern {
        match p {
            Segment::Rest => return true,
            Segment::One => match segs.next() {
                Some(s) if !s.is_empty() => {}
                _ => return false,
            },
            Segment::Literal(lit) => match segs.next() {
                Some(s) if s == lit => {}
                _ => return false,
            },
        }
    }
    segs.next().is_none()
}

impl Policy {
    /// The first rule matching `method` and `canonical_path`, which must come from
    /// [`path::canonicalize`]. `None` means no rule matches, and the request is denied.
    pub fn route(&self, method: &Method, canonical_path: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|r| r.matches(method, canonical_path))
    }

    /// The rules in order, for `check`'s summary.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Reads and validates a policy file.
    pub fn load(file: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(file).map_err(|e| PolicyError {
            problems: vec![format!("cannot read {}: {e}", file.display())],
        })?;
        Policy::from_toml(&text)
    }

    /// Parses and validates policy text, reporting every problem at once.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| PolicyError {
            problems: vec![e.message().to_owned() + &location(text, e.span())],
        })?;
        let mut problems = Vec::new();
        if raw.rule.is_empty() {
            problems.push("the policy has no [[rule]] tables, so it would deny everything".into());
        }
        let mut rules = Vec::with_capacity(raw.rule.len());
        for (i, r) in raw.rule.into_iter().enumerate() {
            let before = problems.len();
            let rule = validate_rule(i + 1, r, &mut problems);
            if problems.len() == before {
                rules.extend(rule);
            }
        }
        if problems.is_empty() {
            Ok(Policy { rules })
        } else {
            Err(PolicyError { problems })
        }
    }
}

fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(s) => {
            let line = text
                .get(..s.start)
                .unwrap_or_default()
                .matches('\n')
                .count()
                + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

/// Every problem found in a policy, each naming the rule and key that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub problems: Vec<String>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid policy:")?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    path: Option<String>,
    methods: Option<Vec<String>>,
    allow: Option<String>,
    groups: Option<Vec<String>>,
    groups_all: Option<Vec<String>>,
    scopes: Option<Vec<String>>,
}

fn validate_rule(number: usize, raw: RawRule, problems: &mut Vec<String>) -> Option<Rule> {
    let label = match &raw.name {
        Some(name) => format!("rule {number} ({name})"),
        None => format!("rule {number}"),
    };
    let mut report = |key: &str, msg: String| problems.push(format!("{label}: {key}: {msg}"));

    if raw.name.as_deref() == Some("") {
        report("name", "must not be empty".into());
    }
    let pattern = match raw.path.as_deref() {
        None => {
            report("path", "is required".into());
            None
        }
        Some(p) => parse_pattern(p).map_err(|m| report("path", m)).ok(),
    };
    let methods = match raw.methods {
        None => None,
        Some(list) if list.is_empty() => {
            report(
                "methods",
                "must not be empty (leave it out to match every method)".into(),
            );
            None
        }
        Some(list) => {
            let mut parsed = Vec::with_capacity(list.len());
            for m in list {
                match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                    Ok(method) if !m.is_empty() => parsed.push(method),
                    _ => report("methods", format!("{m:?} is not an HTTP method")),
                }
            }
            Some(parsed)
        }
    };
    let grants = [
        raw.allow.is_some(),
        raw.groups.is_some(),
        raw.groups_all.is_some(),
        raw.scopes.is_some(),
    ];
    let grant = match grants.iter().filter(|g| **g).count() {
        0 => {
            report(
                "allow",
                "a rule needs exactly one of allow, groups, groups_all or scopes".into(),
            );
            None
        }
        1 => {
            if let Some(allow) = raw.allow {
                match allow.as_str() {
                    "anyone" => Some(Grant::Anyone),
                    "authenticated" => Some(Grant::Authenticated),
                    other => {
                        report(
                            "allow",
                            format!("{other:?} must be \"anyone\" or \"authenticated\""),
                        );
                        None
                    }
                }
            } else if let Some(groups) = raw.groups {
                name_list("groups", groups, &mut report).map(Grant::AnyGroup)
            } else if let Some(groups) = raw.groups_all {
                name_list("groups_all", groups, &mut report).map(Grant::AllGroups)
            } else {
                raw.scopes
                    .and_then(|s| name_list("scopes", s, &mut report))
                    .map(Grant::AnyScope)
            }
        }
        _ => {
            report(
                "allow",
                "allow, groups, groups_all and scopes are exclusive: give exactly one".into(),
            );
            None
        }
    };
    Some(Rule {
        id: RuleId {
            number,
            name: raw.name.filter(|n| !n.is_empty()).map(Arc::from),
        },
        pattern: pattern?,
        methods,
        grant: grant?,
    })
}

/// A non-empty list of non-empty group or scope names.
fn name_list(
    key: &str,
    names: Vec<String>,
    report: &mut impl FnMut(&str, String),
) -> Option<Vec<String>> {
    if names.is_empty() {
        report(key, "must name at least one".into());
        return None;
    }
    if names
        .iter()
        .any(|n| n.is_empty() || n.contains(char::is_whitespace))
    {
        report(key, "names must not be empty or contain spaces".into());
        return None;
    }
    Some(names)
}

/// Parses a rule's `path`. Literal segments go through the same canonicalization as
/// request paths, so `/%61dmin` in a rule means `/admin`.
fn parse_pattern(pattern: &str) -> Result<Vec<Segment>, String> {
    let canonical = path::canonicalize(pattern).map_err(|e| format!("{pattern:?}: {e}"))?;
    let parts: Vec<&str> = path::segments(&canonical).collect();
    let mut out = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let seg = match *part {
            "**" if i + 1 == parts.len() => Segment::Rest,
            "**" => {
                return Err(format!(
                    "{pattern:?}: '**' is only allowed as the last segment"
                ))
            }
            "*" => Segment::One,
            p if p.contains('*') => {
                return Err(format!(
                    "{pattern:?}: '*' must be a whole segment (no partial wildcards)"
                ))
            }
            p => Segment::Literal(p.to_owned()),
        };
        out.push(seg);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::TokenUse;

    fn identity(groups: &[&str]) -> Identity {
        Identity {
            sub: "user-1".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            scopes: vec!["orders/read".into(), "openid".into()],
            token_use: TokenUse::Access,
            client_id: "client".into(),
            pool: 0,
        }
    }

    const POLICY: &str = r#"
        [[rule]]
        name = "health"
        path = "/healthz"
        methods = ["GET"]
        allow = "anyone"

        [[rule]]
        name = "public"
        path = "/public/**"
        allow = "anyone"

        [[rule]]
        name = "admin"
        path = "/admin/**"
        groups = ["admins"]

        [[rule]]
        path = "/reports/*/export"
        methods = ["post", "PUT"]
        groups_all = ["finance", "auditors"]

        [[rule]]
        name = "root"
        path = "/"
        allow = "anyone"

        [[rule]]
        name = "api"
        path = "/api/**"
        allow = "authenticated"
    "#;

    #[test]
    fn routing_table() {
        let policy = Policy::from_toml(POLICY).expect("valid policy");
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("GET", "/healthz", Some("health")),
            ("HEAD", "/healthz", Some("health")),
            ("POST", "/healthz", None),
            ("GET", "/healthz/", None),
            ("GET", "/public", Some("public")),
            ("GET", "/public/", Some("public")),
            ("DELETE", "/public/a/b/c", Some("public")),
            ("GET", "/publication", None),
            ("GET", "/admin", Some("admin")),
            ("GET", "/admin/x/y", Some("admin")),
            ("GET", "/administrator", None),
            ("GET", "/Admin", None),
            ("POST", "/reports/2024/export", Some("#4")),
            ("PUT", "/reports/q1/export", Some("#4")),
            ("GET", "/reports/2024/export", None),
            ("POST", "/reports/export", None),
            ("POST", "/reports/a/b/export", None),
            ("POST", "/reports//export", None),
            ("GET", "/", Some("root")),
            ("GET", "/api/v1/items", Some("api")),
            ("GET", "/elsewhere", None),
        ];
        for (method, path, want) in cases {
            let method = Method::from_bytes(method.as_bytes()).expect("method");
            let got = policy.route(&method, path).map(|r| r.id().to_string());
            assert_eq!(got.as_deref(), *want, "{method} {path}");
        }
    }

    #[test]
    fn grant_table() {
        let admins = identity(&["admins"]);
        let auditors = identity(&["finance", "auditors", "x"]);
        let finance = identity(&["finance"]);
        let nobody = identity(&[]);
        let any_admin = Grant::AnyGroup(vec!["admins".into(), "ops".into()]);
        let all_fin = Grant::AllGroups(vec!["finance".into(), "auditors".into()]);
        let cases: &[(&Grant, Option<&Identity>, bool)] = &[
            (&Grant::Anyone, None, true),
            (&Grant::Anyone, Some(&nobody), true),
            (&Grant::Authenticated, None, false),
            (&Grant::Authenticated, Some(&nobody), true),
            (&any_admin, Some(&admins), true),
            (&any_admin, Some(&finance), false),
            (&any_admin, Some(&nobody), false),
            (&any_admin, None, false),
            (&all_fin, Some(&auditors), true),
            (&all_fin, Some(&finance), false),
            (&all_fin, None, false),
            (
                &Grant::AnyScope(vec!["orders/read".into()]),
                Some(&nobody),
                true,
            ),
            (
                &Grant::AnyScope(vec!["orders/write".into(), "openid".into()]),
                Some(&nobody),
                true,
            ),
            (
                &Grant::AnyScope(vec!["orders/write".into()]),
                Some(&nobody),
                false,
            ),
            (&Grant::AnyScope(vec!["orders/read".into()]), None, false),
        ];
        for (i, (grant, id, want)) in cases.iter().enumerate() {
            assert_eq!(grant.admits(*id), *want, "case {i}: {grant:?}");
        }
    }

    #[test]
    fn group_names_compare_exactly() {
        let grant = Grant::AnyGroup(vec!["admins".into()]);
        assert!(!grant.admits(Some(&identity(&["Admins"]))));
        assert!(!grant.admits(Some(&identity(&["admins "]))));
    }

    #[test]
    fn rule_patterns_are_canonicalized() {
        let policy = Policy::from_toml("[[rule]]\npath = \"/%61dmin/**\"\nallow = \"anyone\"\n")
            .expect("valid");
        assert!(policy.route(&Method::GET, "/admin/x").is_some());
    }

    #[test]
    fn every_problem_is_reported_with_rule_and_key() {
        let text = r#"
            [[rule]]
            path = "admin"
            allow = "everyone"

            [[rule]]
            name = "two"
            path = "/a/**/b"
            groups = []
            methods = []

            [[rule]]
            path = "/x"
            allow = "anyone"
            groups = ["g"]

            [[rule]]
            path = "/y*"

            [[rule]]
            allow = "authenticated"
            methods = ["GE T"]
        "#;
        let err = Policy::from_toml(text).expect_err("invalid");
        let want = [
            "rule 1: path: \"admin\": the path must start with '/'",
            "rule 1: allow: \"everyone\" must be \"anyone\" or \"authenticated\"",
            "rule 2 (two): path: \"/a/**/b\": '**' is only allowed as the last segment",
            "rule 2 (two): methods: must not be empty (leave it out to match every method)",
            "rule 2 (two): groups: must name at least one",
            "rule 3: allow: allow, groups, groups_all and scopes are exclusive: give exactly one",
            "rule 4: path: \"/y*\": '*' must be a whole segment (no partial wildcards)",
            "rule 4: allow: a rule needs exactly one of allow, groups, groups_all or scopes",
            "rule 5: path: is required",
            "rule 5: methods: \"GE T\" is not an HTTP method",
        ];
        assert_eq!(err.problems, want);
    }

    #[test]
    fn unknown_keys_and_empty_policies_are_refused() {
        let err =
            Policy::from_toml("[[rule]]\npath = \"/\"\nallow = \"anyone\"\ngroup = [\"a\"]\n")
                .expect_err("unknown key");
        assert!(err.problems[0].contains("unknown field `group`"), "{err}");
        assert!(err.problems[0].contains("line 4"), "{err}");
        let err = Policy::from_toml("").expect_err("empty");
        assert!(err.problems[0].contains("no [[rule]]"), "{err}");
    }

    #[test]
    fn bad_path_patterns() {
        for p in ["/a//b", "/a/../b", "/a%2Fb", "/a;b", "/a/b\\c"] {
            let text = format!("[[rule]]\npath = {p:?}\nallow = \"anyone\"\n");
            assert!(Policy::from_toml(&text).is_err(), "{p}");
        }
    }
}
