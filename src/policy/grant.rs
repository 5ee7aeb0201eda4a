//! Who a rule lets in: the group check (`Grant::admits`), scopes, and the `claims`
//! conditions, with path captures substituted.

use serde_json::Value;

use crate::token::Identity;

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
    pub(super) fn holds(&self, identity: &Identity, segments: &[&str]) -> bool {
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
