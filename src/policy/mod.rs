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

mod grant;
mod host;
mod index;
mod load;
mod rule;
#[cfg(test)]
mod tests;

pub use grant::{Condition, Grant, Piece, Want};
pub use host::{normalize_host, HostPattern};
pub(crate) use index::RuleIndex;
pub use load::PolicyError;
use rule::{has_upper_case_letter, Case, Segment};
pub use rule::{Rule, RuleId};

use std::fmt;

use http::Method;

use crate::token::Claim;

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
