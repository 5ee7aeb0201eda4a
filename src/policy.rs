//! The path policy: ordered rules from a TOML file, first match wins, no match denies.
//!
//! The app behind the gate may read a path more loosely than the rules do: Express and
//! ASP.NET route case-insensitively, and Express (non-strict routing, its default) and
//! Spring before 6 ignore one trailing slash. The gate cannot know which, so
//! [`Policy::govern`] judges every such reading of the path, and a request is allowed
//! only when the rules of all of them allow it.
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
    /// `case_sensitive = true`: the app is known to route case-sensitively, so the
    /// case-folded reading is not judged.
    case_sensitive: bool,
    /// Whether a rule has an upper-case letter (outside escapes); if none has and the
    /// path has none either, the case-folded reading cannot differ and is skipped.
    upper_case_literals: bool,
}

/// The rules that govern a request: the rule of each reading of its path, without
/// repeats, the path as sent first. Every one of them must allow the request.
#[derive(Debug)]
pub struct Governing<'p> {
    rules: [Option<&'p Rule>; 4],
}

impl<'p> Governing<'p> {
    /// The rule of the path as sent: the one an allowed request is logged with.
    pub fn primary(&self) -> Option<&'p Rule> {
        self.rules[0]
    }

    /// Every governing rule, the path as sent first.
    pub fn rules(&self) -> impl Iterator<Item = &'p Rule> + '_ {
        self.rules.iter().flatten().copied()
    }

    fn add(&mut self, rule: &'p Rule) {
        if self.rules().any(|r| std::ptr::eq(r, rule)) {
            return;
        }
        if let Some(slot) = self.rules.iter_mut().find(|slot| slot.is_none()) {
            *slot = Some(rule);
        }
    }
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
        self.matches_as(method, canonical_path, Case::Sensitive)
    }

    fn matches_as(&self, method: &Method, canonical_path: &str, case: Case) -> bool {
        let method_ok = match &self.methods {
            None => true,
            // GET also admits HEAD, as nginx's limit_except and most routers do.
            Some(list) => list
                .iter()
                .any(|m| m == method || (*m == Method::GET && *method == Method::HEAD)),
        };
        method_ok && pattern_matches(&self.pattern, canonical_path, case)
    }
}

/// How literal segments compare with the path's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Sensitive,
    /// ASCII letters compare equal in either case, as in Express and ASP.NET.
    Insensitive,
}

/// Whether `text` has an ASCII upper-case letter outside its `%XX` escapes (whose hex
/// digits are upper case in canonical form).
fn has_upper_case_letter(text: &str) -> bool {
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                bytes.nth(1);
            }
            b if b.is_ascii_uppercase() => return true,
            _ => {}
        }
    }
    false
}

fn pattern_matches(pattern: &[Segment], canonical_path: &str, case: Case) -> bool {
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
                Some(s) if case == Case::Insensitive && s.eq_ignore_ascii_case(lit) => {}
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

    /// The rules that govern `method` and `canonical_path` under every reading a
    /// common router makes: the path as sent; case-folded (unless `case_sensitive`);
    /// without one trailing slash; and both. `None` when some reading matches no rule,
    /// which denies the request whatever the others say.
    pub fn govern(&self, method: &Method, canonical_path: &str) -> Option<Governing<'_>> {
        let mut governing = Governing { rules: [None; 4] };
        let folded = !self.case_sensitive
            && (self.upper_case_literals || has_upper_case_letter(canonical_path));
        let trimmed = canonical_path
            .strip_suffix('/')
            .filter(|rest| !rest.is_empty());
        let readings = [
            Some((canonical_path, Case::Sensitive)),
            folded.then_some((canonical_path, Case::Insensitive)),
            trimmed.map(|p| (p, Case::Sensitive)),
            trimmed.filter(|_| folded).map(|p| (p, Case::Insensitive)),
        ];
        for (path, case) in readings.into_iter().flatten() {
            let rule = self
                .rules
                .iter()
                .find(|r| r.matches_as(method, path, case))?;
            governing.add(rule);
        }
        Some(governing)
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
            let upper_case_literals = rules.iter().any(|r| {
                r.pattern
                    .iter()
                    .any(|s| matches!(s, Segment::Literal(l) if has_upper_case_letter(l)))
            });
            Ok(Policy {
                rules,
                case_sensitive: raw.case_sensitive,
                upper_case_literals,
            })
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
    case_sensitive: bool,
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

    /// The rules that govern each request, by name, for the readings table below.
    fn governing(policy: &Policy, method: &str, path: &str) -> Option<Vec<String>> {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        policy
            .govern(&method, path)
            .map(|g| g.rules().map(|r| r.id().to_string()).collect())
    }

    const READINGS: &str = include_str!("../tests/policies/readings.toml");

    #[test]
    fn every_reading_a_router_makes_is_governed() {
        let policy = Policy::from_toml(READINGS).expect("valid policy");
        let cases: &[(&str, &str, &[&str])] = &[
            // Exactly as sent: one rule.
            ("GET", "/admin/x", &["admin"]),
            ("GET", "/public/x", &["public"]),
            // Express and ASP.NET route /ADMIN/x to the admin pages.
            ("GET", "/ADMIN/x", &["app", "admin"]),
            ("GET", "/Admin", &["app", "admin"]),
            // An escape decodes to a letter first, then folds.
            ("GET", "/Public/secret", &["app", "public"]),
            // Express's non-strict routing serves /export for /export/.
            ("POST", "/invoices/7/export/", &["app", "export"]),
            ("POST", "/INVOICES/7/EXPORT/", &["app", "export"]),
            ("GET", "/invoices/7/export/", &["app"]),
            // The root has no trailing slash to lose.
            ("GET", "/", &["app"]),
            // Escapes keep their (upper-case) hex digits and are not "letters".
            ("GET", "/caf%C3%A9", &["app"]),
        ];
        for (method, path, want) in cases {
            let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            assert_eq!(
                governing(&policy, method, path),
                Some(want),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn a_reading_no_rule_matches_denies() {
        let policy = Policy::from_toml(
            "[[rule]]\npath = \"/api/**\"\nallow = \"anyone\"\n\
             [[rule]]\npath = \"/Docs\"\nallow = \"anyone\"\n",
        )
        .expect("valid");
        assert_eq!(governing(&policy, "GET", "/api/x"), Some(vec!["#1".into()]));
        // Case-sensitively /API matches nothing, so it is denied whatever /api allows.
        assert_eq!(governing(&policy, "GET", "/API/x"), None);
        // A rule with capitals is compared folded as well.
        assert_eq!(governing(&policy, "GET", "/Docs"), Some(vec!["#2".into()]));
        assert_eq!(governing(&policy, "GET", "/docs"), None);
    }

    #[test]
    fn case_sensitive_policies_judge_the_path_as_sent_only() {
        let text = format!("case_sensitive = true\n{READINGS}");
        let policy = Policy::from_toml(&text).expect("valid policy");
        assert_eq!(
            governing(&policy, "GET", "/ADMIN/x"),
            Some(vec!["app".into()])
        );
        // The trailing slash is still judged both ways.
        assert_eq!(
            governing(&policy, "POST", "/invoices/7/export/"),
            Some(vec!["app".into(), "export".into()])
        );
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
