//! A rule: its path pattern and segments, methods, host, and whether a request's
//! method, host and canonical path match it (as sent, or as an app may read it).

use std::fmt;
use std::sync::Arc;

use http::Method;

use super::grant::{Condition, Grant};
use super::host::HostPattern;
use crate::path;
use crate::token::Identity;

/// One `[[rule]]` table.
#[derive(Debug, Clone)]
pub struct Rule {
    pub(super) id: RuleId,
    /// The `path` as written, for summaries.
    pub(super) path: String,
    pub(super) pattern: Vec<Segment>,
    pub(super) methods: Option<Vec<Method>>,
    /// `host = "api.example.com"` or `"*.example.com"`: the rule matches only requests
    /// for that host.
    pub(super) host: Option<HostPattern>,
    pub(super) grant: Grant,
    /// `claims = { .. }`: conditions on the caller's claims, all of which must hold
    /// beside the grant.
    pub(super) conditions: Vec<Condition>,
}

/// How a rule is named in logs and answers: its `name`, or `#N` (1-based position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleId {
    pub number: usize,
    pub name: Option<Arc<str>>,
    /// The name, or `#N`: shared, so that a metric label costs no allocation.
    label: Arc<str>,
}

impl RuleId {
    pub fn new(number: usize, name: Option<Arc<str>>) -> Self {
        let label = match &name {
            Some(name) => name.clone(),
            None => Arc::from(format!("#{number}")),
        };
        RuleId {
            number,
            name,
            label,
        }
    }

    /// How the rule is named in logs and metrics.
    pub fn label(&self) -> &Arc<str> {
        &self.label
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Segment {
    Literal(String),
    /// `*`: exactly one non-empty segment.
    One,
    /// `**`: any number of trailing segments, including none.
    Rest,
    /// `{name}`: exactly one non-empty segment, which `claims` conditions may name.
    Capture(Box<str>),
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

    /// The rule's `claims` conditions.
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    /// Whether the rule lets `identity` (or no identity) make a request to
    /// `canonical_path`, which the rule matches: the grant, and every condition on
    /// the caller's claims with the path's captures substituted.
    pub fn admits(&self, identity: Option<&Identity>, canonical_path: &str) -> bool {
        if !self.grant.admits(identity) {
            return false;
        }
        if self.conditions.is_empty() {
            return true;
        }
        let Some(identity) = identity else {
            return false;
        };
        let segments: Vec<&str> = path::segments(canonical_path).collect();
        self.conditions.iter().all(|c| c.holds(identity, &segments))
    }

    /// Whether the rule refuses every caller, whoever they are.
    pub fn denies_everyone(&self) -> bool {
        self.grant == Grant::Nobody
    }

    /// The `path` as written.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The methods, or `None` for every method.
    pub fn methods(&self) -> Option<&[Method]> {
        self.methods.as_deref()
    }

    /// The host the rule is for, or `None` for every host.
    pub fn host(&self) -> Option<&HostPattern> {
        self.host.as_ref()
    }

    /// Why this rule does not match `method`, `host` and `canonical_path` as sent, or
    /// `None` when it does. For `explain`.
    pub fn mismatch(
        &self,
        method: &Method,
        host: Option<&str>,
        canonical_path: &str,
    ) -> Option<&'static str> {
        if !self.host_admits(host) {
            return Some("the host does not match");
        }
        let method_ok = self.method_admits(method);
        let path_ok = pattern_matches(&self.pattern, canonical_path, Case::Sensitive);
        match (method_ok, path_ok) {
            (true, true) => None,
            (false, true) => Some("the method is not listed"),
            (true, false) => Some("the path does not match"),
            (false, false) => Some("neither the method nor the path matches"),
        }
    }

    fn host_admits(&self, host: Option<&str>) -> bool {
        match (&self.host, host) {
            (None, _) => true,
            (Some(pattern), Some(host)) => pattern.matches(host),
            (Some(_), None) => false,
        }
    }

    fn method_admits(&self, method: &Method) -> bool {
        match &self.methods {
            None => true,
            Some(list) => list
                .iter()
                .any(|m| m == method || (*m == Method::GET && *method == Method::HEAD)),
        }
    }

    /// Whether this rule matches every request `later` matches, so that `later`,
    /// coming after it, can never be reached.
    pub fn covers(&self, later: &Rule) -> bool {
        let methods = match (&self.methods, &later.methods) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(_), Some(theirs)) => theirs.iter().all(|m| self.method_admits(m)),
        };
        let hosts = match (&self.host, &later.host) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(mine), Some(theirs)) => mine.covers(theirs),
        };
        methods && hosts && pattern_covers(&self.pattern, &later.pattern)
    }

    pub(super) fn matches_as(
        &self,
        method: &Method,
        host: Option<&str>,
        canonical_path: &str,
        case: Case,
    ) -> bool {
        // GET also admits HEAD, as nginx's limit_except and most routers do.
        self.method_admits(method)
            && self.host_admits(host)
            && pattern_matches(&self.pattern, canonical_path, case)
    }
}

/// How literal segments compare with the path's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Case {
    Sensitive,
    /// ASCII letters compare equal in either case, as in Express and ASP.NET.
    Insensitive,
}

/// Whether `text` has an ASCII upper-case letter outside its `%XX` escapes (whose hex
/// digits are upper case in canonical form).
pub(super) fn has_upper_case_letter(text: &str) -> bool {
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

/// Whether `first` matches every path `later` matches.
pub(super) fn pattern_covers(first: &[Segment], later: &[Segment]) -> bool {
    let mut theirs = later.iter();
    for mine in first {
        match (mine, theirs.next()) {
            (Segment::Rest, _) => return true,
            (Segment::One | Segment::Capture(_), Some(Segment::One | Segment::Capture(_))) => {}
            (Segment::One | Segment::Capture(_), Some(Segment::Literal(l))) if !l.is_empty() => {}
            (Segment::Literal(a), Some(Segment::Literal(b))) if a == b => {}
            _ => return false,
        }
    }
    theirs.next().is_none()
}

pub(super) fn pattern_matches(pattern: &[Segment], canonical_path: &str, case: Case) -> bool {
    let mut segs = path::segments(canonical_path);
    for p in pattern {
        match p {
            Segment::Rest => return true,
            Segment::One | Segment::Capture(_) => match segs.next() {
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
