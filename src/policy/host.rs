//! Host rules: a rule's `host` pattern and the request's host as rules compare it.

use std::fmt;

/// A rule's `host`, normalized: lower case, no port, no trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `api.example.com`.
    Exact(String),
    /// `*.example.com`, kept as `.example.com`: any name below it, not itself.
    Below(String),
}

impl HostPattern {
    pub(super) fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => host == name,
            HostPattern::Below(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        }
    }

    /// Whether every host `other` matches, this matches too.
    pub(super) fn covers(&self, other: &HostPattern) -> bool {
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
