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
//! May import `path`, `config` and `token`'s identity; nothing above.

mod load;
#[cfg(test)]
mod tests;

pub use load::PolicyError;

use std::fmt;
use std::sync::Arc;

use http::Method;
use serde_json::Value;

use crate::path;
use crate::token::{Claim, Identity};

/// A loaded, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    /// Which rules can match a path, by its first segment.
    index: RuleIndex,
    /// The `[[test]]` tables, run by `check`, at start-up and on every reload.
    tests: Vec<PolicyTest>,
    /// `case_sensitive = true`: the app is known to route case-sensitively, so the
    /// case-folded reading is not judged.
    case_sensitive: bool,
    /// Whether a rule has an upper-case letter (outside escapes); if none has and the
    /// path has none either, the case-folded reading cannot differ and is skipped.
    upper_case_literals: bool,
    /// Whether some rule names a host.
    uses_hosts: bool,
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

/// One `[[test]]` table: a request, who makes it, and the answer it must get.
#[derive(Debug, Clone)]
pub struct PolicyTest {
    /// 1-based position among the tests.
    pub number: usize,
    pub method: String,
    pub path: String,
    /// The caller's groups and scopes; `anonymous` sends no token at all.
    pub groups: Vec<String>,
    pub scopes: Vec<String>,
    /// Other claims of the caller's token, for rules with `claims` conditions.
    pub claims: Vec<Claim>,
    /// The request's host (normalized), for rules with a `host`.
    pub host: Option<String>,
    pub anonymous: bool,
    pub expect: Expect,
}

/// What a `[[test]]` expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Allow,
    /// Any refusal.
    Deny,
    /// This exact status (200 is `allow`).
    Status(u16),
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Allow => f.write_str("allow"),
            Expect::Deny => f.write_str("deny"),
            Expect::Status(s) => write!(f, "{s}"),
        }
    }
}

/// One `[[rule]]` table.
#[derive(Debug, Clone)]
pub struct Rule {
    id: RuleId,
    /// The `path` as written, for summaries.
    path: String,
    pattern: Vec<Segment>,
    methods: Option<Vec<Method>>,
    /// `host = "api.example.com"` or `"*.example.com"`: the rule matches only requests
    /// for that host.
    host: Option<HostPattern>,
    grant: Grant,
    /// `claims = { .. }`: conditions on the caller's claims, all of which must hold
    /// beside the grant.
    conditions: Vec<Condition>,
}

/// A rule's `host`, normalized: lower case, no port, no trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `api.example.com`.
    Exact(String),
    /// `*.example.com`, kept as `.example.com`: any name below it, not itself.
    Below(String),
}

impl HostPattern {
    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => host == name,
            HostPattern::Below(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        }
    }

    /// Whether every host `other` matches, this matches too.
    fn covers(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (HostPattern::Exact(a), HostPattern::Exact(b)) => a == b,
            (HostPattern::Below(_), HostPattern::Exact(b)) => self.matches(b),
            (HostPattern::Below(a), HostPattern::Below(b)) => b.ends_with(a.as_str()),
            (HostPattern::Exact(_), HostPattern::Below(_)) => false,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Below(suffix) => write!(f, "*{suffix}"),
        }
    }
}

/// A request's host as rules compare it: `Host` or `:authority` in lower case, without
/// its port and one trailing dot. `None` when it is not a host name or IP address.
pub fn normalize_host(raw: &str) -> Option<String> {
    let without_port = match raw.strip_prefix('[') {
        // An IPv6 literal keeps its brackets: `[::1]:8080` is `[::1]`.
        Some(rest) => {
            let (inside, after) = rest.split_once(']')?;
            if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
                return None;
            }
            if inside.is_empty()
                || !inside
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            {
                return None;
            }
            return Some(format!("[{}]", inside.to_ascii_lowercase()));
        }
        None => match raw.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return None,
            None => raw,
        },
    };
    let name = without_port.strip_suffix('.').unwrap_or(without_port);
    let valid = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    valid.then(|| name.to_ascii_lowercase())
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit())
}

/// One entry of a rule's `claims`: the claim must equal the value (for an array
/// claim, contain it). A missing claim or another type does not hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub claim: Box<str>,
    pub want: Want,
}

/// What a condition's claim must equal.
#[derive(Debug, Clone, PartialEq)]
pub enum Want {
    /// A string, boolean or integer, as written.
    Value(Value),
    /// A string naming path captures: `"{tenant}"`, `"org-{org}"`. Each capture is
    /// the matched segment, percent-decoded, as the app reads it.
    Template(Vec<Piece>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Text(String),
    /// The segment at this position of the rule's path.
    Capture {
        name: Box<str>,
        segment: usize,
    },
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
    /// `allow = "nobody"`: an explicit deny (403), token or not, so that a hole can be
    /// punched before a wider rule.
    Nobody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`: exactly one non-empty segment.
    One,
    /// `**`: any number of trailing segments, including none.
    Rest,
    /// `{name}`: exactly one non-empty segment, which `claims` conditions may name.
    Capture(Box<str>),
}

impl Grant {
    /// Whether `identity` satisfies this grant. `Anyone` admits even no identity.
    pub fn admits(&self, identity: Option<&Identity>) -> bool {
        match (self, identity) {
            (Grant::Anyone, _) => true,
            (Grant::Nobody, _) | (_, None) => false,
            (Grant::Authenticated, Some(_)) => true,
            (Grant::AnyGroup(wanted), Some(id)) => wanted.iter().any(|g| id.groups.contains(g)),
            (Grant::AllGroups(wanted), Some(id)) => wanted.iter().all(|g| id.groups.contains(g)),
            (Grant::AnyScope(wanted), Some(id)) => wanted.iter().any(|s| id.scopes.contains(s)),
        }
    }

    /// Whether a token must be verified before the grant can be decided; `anyone`
    /// rules never read the token, so a bad one cannot make a public path fail.
    pub fn needs_token(&self) -> bool {
        !matches!(self, Grant::Anyone | Grant::Nobody)
    }
}

impl Condition {
    /// Whether `identity`'s claim satisfies this condition, for a request whose
    /// canonical path `segments` the rule matched.
    fn holds(&self, identity: &Identity, segments: &[&str]) -> bool {
        let Some(claim) = identity.claims.get(&self.claim) else {
            return false;
        };
        match &self.want {
            Want::Value(want) => claim_has(claim, want),
            Want::Template(pieces) => {
                let mut want = String::new();
                for piece in pieces {
                    match piece {
                        Piece::Text(t) => want.push_str(t),
                        Piece::Capture { segment, .. } => {
                            let Some(text) = segments.get(*segment).and_then(|s| decode(s)) else {
                                return false;
                            };
                            want.push_str(&text);
                        }
                    }
                }
                claim_has(claim, &Value::String(want))
            }
        }
    }
}

/// Whether `claim` equals `want`, or, being an array, contains it. Strings, booleans
/// and numbers compare only with their own type: `"true"` is not `true`.
fn claim_has(claim: &Value, want: &Value) -> bool {
    let equal = |v: &Value| match (v, want) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    };
    match claim {
        Value::Array(items) => items.iter().any(equal),
        other => equal(other),
    }
}

/// A canonical segment as the app reads it: percent-decoded, UTF-8.
fn decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
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

    fn matches_as(
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

/// Whether `first` matches every path `later` matches.
fn pattern_covers(first: &[Segment], later: &[Segment]) -> bool {
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

fn pattern_matches(pattern: &[Segment], canonical_path: &str, case: Case) -> bool {
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

/// The rules by the first segment of their path, so that routing does not scan every
/// rule: a rule whose path starts with a literal can only match paths that start with
/// it (compared case-insensitively, which covers both readings); the others (`/*...`,
/// `/**`) can match any path. Positions are kept, so first match still wins.
#[derive(Debug, Clone, Default)]
pub(crate) struct RuleIndex {
    /// Rule positions, ascending, by the ASCII-lower-cased first literal.
    by_first: std::collections::HashMap<Box<str>, Vec<u32>>,
    /// Positions of the rules whose path starts with `*` or `**`, ascending.
    anywhere: Vec<u32>,
}

impl RuleIndex {
    pub(crate) fn new(rules: &[Rule]) -> Self {
        let mut index = RuleIndex::default();
        for (i, rule) in rules.iter().enumerate() {
            let position = u32::try_from(i).unwrap_or(u32::MAX);
            match rule.pattern.first() {
                Some(Segment::Literal(first)) => index
                    .by_first
                    .entry(first.to_ascii_lowercase().into_boxed_str())
                    .or_default()
                    .push(position),
                _ => index.anywhere.push(position),
            }
        }
        index
    }

    /// The positions of the rules that may match `canonical_path`, ascending.
    fn candidates<'i>(&'i self, canonical_path: &str) -> impl Iterator<Item = usize> + 'i {
        let first = path::segments(canonical_path).next().unwrap_or_default();
        let bucket = if first.bytes().any(|b| b.is_ascii_uppercase()) {
            self.by_first.get(first.to_ascii_lowercase().as_str())
        } else {
            self.by_first.get(first)
        };
        merge(bucket.map_or(&[][..], Vec::as_slice), &self.anywhere)
    }
}

/// Two ascending lists of positions as one ascending sequence.
fn merge<'a>(a: &'a [u32], b: &'a [u32]) -> impl Iterator<Item = usize> + 'a {
    let (mut a, mut b) = (a.iter().peekable(), b.iter().peekable());
    std::iter::from_fn(move || {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x <= y => a.next(),
            (Some(_), Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, _) => b.next(),
        };
        next.map(|p| *p as usize)
    })
}

impl Policy {
    /// The first rule matching `method` and `canonical_path`, which must come from
    /// [`path::canonicalize`], for a request that names no host. `None` means no rule
    /// matches, and the request is denied.
    pub fn route(&self, method: &Method, canonical_path: &str) -> Option<&Rule> {
        self.route_on(method, None, canonical_path)
    }

    /// [`Policy::route`] for a request to `host` (see `normalize_host`).
    pub fn route_on(
        &self,
        method: &Method,
        host: Option<&str>,
        canonical_path: &str,
    ) -> Option<&Rule> {
        self.first_match(method, host, canonical_path, Case::Sensitive)
    }

    fn first_match(
        &self,
        method: &Method,
        host: Option<&str>,
        canonical_path: &str,
        case: Case,
    ) -> Option<&Rule> {
        self.index
            .candidates(canonical_path)
            .filter_map(|i| self.rules.get(i))
            .find(|r| r.matches_as(method, host, canonical_path, case))
    }

    /// Whether some rule names a `host`: then a request must say which host it is for.
    pub fn uses_hosts(&self) -> bool {
        self.uses_hosts
    }

    /// [`Policy::govern_on`] for a request that names no host.
    pub fn govern(&self, method: &Method, canonical_path: &str) -> Option<Governing<'_>> {
        self.govern_on(method, None, canonical_path)
    }

    /// The rules that govern `method` and `canonical_path` for `host` under every
    /// reading a common router makes: the path as sent; case-folded (unless
    /// `case_sensitive`); without one trailing slash; and both. `None` when some
    /// reading matches no rule, which denies the request whatever the others say.
    pub fn govern_on(
        &self,
        method: &Method,
        host: Option<&str>,
        canonical_path: &str,
    ) -> Option<Governing<'_>> {
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
            let rule = self.first_match(method, host, path, case)?;
            governing.add(rule);
        }
        Some(governing)
    }

    /// The rules in order, for `check`'s summary.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The `[[test]]` tables.
    pub fn tests(&self) -> &[PolicyTest] {
        &self.tests
    }

    /// Every claim a rule's conditions read, sorted, once each: what the verifier
    /// keeps in each identity.
    pub fn claim_names(&self) -> Vec<Box<str>> {
        let mut names: Vec<Box<str>> = self
            .rules
            .iter()
            .flat_map(|r| r.conditions.iter().map(|c| c.claim.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }
}
