//! The rule index: the rules by the first segment of their path.

use super::rule::{Rule, Segment};
use crate::path;

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
    pub(super) fn candidates<'i>(
        &'i self,
        canonical_path: &str,
    ) -> impl Iterator<Item = usize> + 'i {
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
