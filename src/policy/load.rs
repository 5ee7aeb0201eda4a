//! Loading a policy: the TOML as written, checked rule by rule, every problem reported
//! at once with the rule and key that caused it.

use std::path::Path;
use std::sync::Arc;

use http::Method;
use serde::Deserialize;

use serde_json::Value;

use super::{
    has_upper_case_letter, normalize_host, Condition, Expect, Grant, HostPattern, Piece, Policy,
    PolicyTest, Rule, RuleId, Segment, Want,
};
use crate::config::ProblemList;
use crate::path;

/// A policy that cannot be used, with every reason.
pub type PolicyError = ProblemList;

impl Policy {
    /// Reads and validates a policy file.
    pub fn load(file: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            PolicyError::policy(vec![format!("cannot read {}: {e}", file.display())])
        })?;
        Policy::from_toml(&text)
    }

    /// Parses and validates policy text, reporting every problem at once.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            PolicyError::policy(vec![e.message().to_owned() + &location(text, e.span())])
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
        lint(&rules, &mut problems);
        let tests = raw
            .test
            .into_iter()
            .enumerate()
            .filter_map(|(i, t)| validate_test(i + 1, t, &mut problems))
            .collect();
        if problems.is_empty() {
            let upper_case_literals = rules.iter().any(|r| {
                r.pattern
                    .iter()
                    .any(|s| matches!(s, Segment::Literal(l) if has_upper_case_letter(l)))
            });
            Ok(Policy {
                uses_hosts: rules.iter().any(|r| r.host.is_some()),
                index: super::RuleIndex::new(&rules),
                rules,
                tests,
                case_sensitive: raw.case_sensitive,
                upper_case_literals,
            })
        } else {
            Err(PolicyError::policy(problems))
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    case_sensitive: bool,
    #[serde(default)]
    rule: Vec<RawRule>,
    #[serde(default)]
    test: Vec<RawTest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    method: Option<String>,
    path: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    claims: toml::Table,
    host: Option<String>,
    #[serde(default)]
    anonymous: bool,
    expect: Option<RawExpect>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawExpect {
    Word(String),
    Status(i64),
}

fn validate_test(number: usize, raw: RawTest, problems: &mut Vec<String>) -> Option<PolicyTest> {
    let before = problems.len();
    let mut report = |msg: String| problems.push(format!("test {number}: {msg}"));
    let method = raw.method.unwrap_or_else(|| "GET".into());
    if Method::from_bytes(method.as_bytes()).is_err() {
        report(format!("method: {method:?} is not an HTTP method"));
    }
    let path = raw.path.unwrap_or_default();
    if !path.starts_with('/') {
        report("path: is required and must start with '/'".into());
    }
    if raw.anonymous && !(raw.groups.is_empty() && raw.scopes.is_empty() && raw.claims.is_empty()) {
        report(
            "anonymous = true sends no token, so it cannot have groups, scopes or claims".into(),
        );
    }
    let host = match raw.host.as_deref() {
        None => None,
        Some(text) => match normalize_host(text) {
            Some(host) => Some(host),
            None => {
                report(format!("host: {text:?} is not a host name"));
                None
            }
        },
    };
    let mut claims = Vec::with_capacity(raw.claims.len());
    for (name, value) in raw.claims {
        match claim_value(&value, true) {
            Some(v) => claims.push((name.into_boxed_str(), v)),
            None => report(format!(
                "claims: {name:?} must be a string, boolean, integer or an array of them"
            )),
        }
    }
    let expect = match raw.expect {
        Some(RawExpect::Word(w)) if w == "allow" => Expect::Allow,
        Some(RawExpect::Word(w)) if w == "deny" => Expect::Deny,
        Some(RawExpect::Status(200)) => Expect::Allow,
        Some(RawExpect::Status(s)) if (400..=599).contains(&s) => {
            Expect::Status(u16::try_from(s).unwrap_or(500))
        }
        _ => {
            report(
                "expect: must be \"allow\", \"deny\" or a status such as 401, 403 or 400".into(),
            );
            Expect::Deny
        }
    };
    (problems.len() == before).then_some(PolicyTest {
        number,
        method,
        path,
        groups: raw.groups,
        scopes: raw.scopes,
        claims,
        host,
        anonymous: raw.anonymous,
        expect,
    })
}

/// Mistakes that parse: a name used twice, and a rule that an earlier one shadows
/// entirely, which would never decide anything.
fn lint(rules: &[Rule], problems: &mut Vec<String>) {
    for (i, rule) in rules.iter().enumerate() {
        let earlier = &rules[..i];
        if let Some(name) = &rule.id.name {
            if let Some(first) = earlier.iter().find(|r| r.id.name.as_ref() == Some(name)) {
                problems.push(format!(
                    "rule {} ({name}): name: {name:?} is also the name of rule {}",
                    rule.id.number, first.id.number
                ));
            }
        }
        if let Some(shadow) = earlier.iter().find(|r| r.covers(rule)) {
            problems.push(format!(
                "rule {} can never match: rule {} comes first and matches every request it matches{}",
                describe(rule),
                describe(shadow),
                " (move the more specific rule up)"
            ));
        }
    }
}

/// `3 (admin-area: GET /admin/**)`.
fn describe(rule: &Rule) -> String {
    let methods = match &rule.methods {
        None => "any method".to_owned(),
        Some(list) => list
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(","),
    };
    let on = rule
        .host
        .as_ref()
        .map_or(String::new(), |h| format!(" on {h}"));
    match &rule.id.name {
        Some(name) => format!("{} ({name}: {methods} {}{on})", rule.id.number, rule.path),
        None => format!("{} ({methods} {}{on})", rule.id.number, rule.path),
    }
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
    claims: Option<toml::Table>,
    host: Option<String>,
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
                    "nobody" => Some(Grant::Nobody),
                    other => {
                        report(
                            "allow",
                            format!(
                                "{other:?} must be \"anyone\", \"authenticated\" or \"nobody\""
                            ),
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
    let conditions = match (raw.claims, &pattern, &grant) {
        (None, _, _) => Vec::new(),
        (Some(_), _, Some(Grant::Anyone | Grant::Nobody)) => {
            report(
                "claims",
                "conditions on claims need a signed-in caller: use them with allow = \"authenticated\", groups, groups_all or scopes".into(),
            );
            Vec::new()
        }
        (Some(table), _, _) if table.is_empty() => {
            report(
                "claims",
                "must name at least one claim (leave it out for none)".into(),
            );
            Vec::new()
        }
        (Some(table), Some(pattern), _) => table
            .into_iter()
            .filter_map(|(claim, value)| {
                condition(pattern, claim, &value)
                    .map_err(|m| report("claims", m))
                    .ok()
            })
            .collect(),
        (Some(_), None, _) => Vec::new(),
    };
    let host = match raw.host.as_deref().map(parse_host) {
        None => None,
        Some(Ok(host)) => Some(host),
        Some(Err(m)) => {
            report("host", m);
            None
        }
    };
    Some(Rule {
        id: RuleId::new(number, raw.name.filter(|n| !n.is_empty()).map(Arc::from)),
        path: raw.path.clone().unwrap_or_default(),
        pattern: pattern?,
        methods,
        host,
        grant: grant?,
        conditions,
    })
}

/// A rule's `host`: a name (`api.example.com`) or every name below one
/// (`*.example.com`), without a port, compared in lower case.
fn parse_host(text: &str) -> Result<HostPattern, String> {
    let (below, name) = match text.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let bad = || {
        format!(
            "{text:?} must be a host name such as \"api.example.com\" or \"*.example.com\", without a port"
        )
    };
    if name.contains(['*', ':']) && !name.starts_with('[') {
        return Err(bad());
    }
    let normalized = normalize_host(name)
        .filter(|n| n.len() == name.trim_end_matches('.').len())
        .ok_or_else(bad)?;
    Ok(match below {
        true => HostPattern::Below(format!(".{normalized}")),
        false => HostPattern::Exact(normalized),
    })
}

/// A claim value as JSON: a string, boolean or integer, or (for tests' tokens, when
/// `arrays`) an array of them.
fn claim_value(value: &toml::Value, arrays: bool) -> Option<Value> {
    match value {
        toml::Value::String(s) => Some(Value::String(s.clone())),
        toml::Value::Boolean(b) => Some(Value::Bool(*b)),
        toml::Value::Integer(i) => Some(Value::from(*i)),
        toml::Value::Array(items) if arrays => items
            .iter()
            .map(|v| claim_value(v, false))
            .collect::<Option<Vec<_>>>()
            .map(Value::Array),
        _ => None,
    }
}

/// One `claims` entry of a rule whose path is `pattern`.
fn condition(pattern: &[Segment], claim: String, value: &toml::Value) -> Result<Condition, String> {
    if claim.is_empty() {
        return Err("a claim name must not be empty".into());
    }
    let want = match value {
        toml::Value::String(text) if text.contains(['{', '}']) => {
            Want::Template(template(pattern, &claim, text)?)
        }
        other => Want::Value(claim_value(other, false).ok_or_else(|| {
            format!(
                "{claim:?} must be a string, boolean or integer (an array claim must contain it)"
            )
        })?),
    };
    Ok(Condition {
        claim: claim.into_boxed_str(),
        want,
    })
}

/// `"org-{org}"` as text and the captures of `pattern` it names.
fn template(pattern: &[Segment], claim: &str, text: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find(['{', '}']) {
        let (before, at) = rest.split_at(open);
        if !before.is_empty() {
            pieces.push(Piece::Text(before.to_owned()));
        }
        let name = at
            .strip_prefix('{')
            .and_then(|a| a.split_once('}'))
            .map(|(name, after)| {
                rest = after;
                name
            })
            .filter(|name| is_capture_name(name))
            .ok_or_else(|| {
                format!("{claim:?} = {text:?}: '{{' and '}}' may only enclose a capture name such as {{tenant}}")
            })?;
        let segment = pattern
            .iter()
            .position(|s| matches!(s, Segment::Capture(c) if c.as_ref() == name))
            .ok_or_else(|| format!("{claim:?} = {text:?}: the path has no capture {{{name}}}"))?;
        pieces.push(Piece::Capture {
            name: name.into(),
            segment,
        });
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_owned()));
    }
    Ok(pieces)
}

/// A capture's name: a letter or `_`, then letters, digits and `_`.
fn is_capture_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
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
            p if p.starts_with("%7B") && p.ends_with("%7D") && p.len() > 6 => {
                let name = &p[3..p.len() - 3];
                if !is_capture_name(name) {
                    return Err(format!(
                        "{pattern:?}: a capture is a name of letters, digits and '_', such as {{tenant}}"
                    ));
                }
                if out
                    .iter()
                    .any(|s| matches!(s, Segment::Capture(c) if c.as_ref() == name))
                {
                    return Err(format!("{pattern:?}: the capture {{{name}}} is used twice"));
                }
                Segment::Capture(name.into())
            }
            p if p.contains("%7B") || p.contains("%7D") => {
                return Err(format!(
                    "{pattern:?}: a capture must be a whole segment, such as /{{tenant}}/"
                ))
            }
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
