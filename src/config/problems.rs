//! The one error shape of every file the gate loads: the list of all problems found,
//! each naming the key (and for a policy, the rule) that caused it.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use http::Uri;

use super::RawDuration;

/// Every problem in a configuration or a policy, reported at once rather than one
/// per attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProblemList {
    /// What was invalid: "configuration" or "policy".
    pub subject: &'static str,
    pub problems: Vec<String>,
}

impl ProblemList {
    pub fn config(problems: Vec<String>) -> Self {
        ProblemList {
            subject: "configuration",
            problems,
        }
    }

    pub fn policy(problems: Vec<String>) -> Self {
        ProblemList {
            subject: "policy",
            problems,
        }
    }
}

impl fmt::Display for ProblemList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}:", self.subject)?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProblemList {}

/// A configuration that cannot be used, with every reason.
pub type ConfigError = ProblemList;

/// Collects problems while converting, so that one run reports all of them.
pub(super) struct Problems(pub(super) Vec<String>);

impl Problems {
    pub(super) fn add(&mut self, key: &str, msg: impl fmt::Display) {
        self.0.push(format!("{key}: {msg}"));
    }

    pub(super) fn duration(&mut self, key: &str, raw: &RawDuration, min: Duration) -> Duration {
        match raw.parse() {
            Ok(d) if d < min => {
                self.add(key, format!("must be at least {min:?}"));
                d
            }
            Ok(d) => d,
            Err(e) => {
                self.add(key, e);
                Duration::ZERO
            }
        }
    }

    /// A clock-skew allowance: a duration of at most 5 minutes, as aws-jwt-verify's
    /// `graceSeconds` would be used.
    pub(super) fn leeway(&mut self, key: &str, raw: &RawDuration) -> Duration {
        let leeway = self.duration(key, raw, Duration::ZERO);
        if leeway > Duration::from_secs(300) {
            self.add(key, "must be at most 5m");
        }
        leeway
    }

    pub(super) fn addr(&mut self, key: &str, raw: &str) -> SocketAddr {
        raw.parse().unwrap_or_else(|_| {
            self.add(key, format!("{raw:?} is not an IP:port address"));
            SocketAddr::from(([0, 0, 0, 0], 0))
        })
    }

    /// IP addresses and CIDR ranges.
    pub(super) fn networks(&mut self, key: &str, raw: &[String]) -> Vec<ipnet::IpNet> {
        let mut out = Vec::with_capacity(raw.len());
        for text in raw {
            let net = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match net {
                Ok(net) => out.push(net),
                Err(_) => self.add(key, format!("{text:?} is not an IP address or CIDR range")),
            }
        }
        out
    }

    pub(super) fn url(&mut self, key: &str, raw: &str) -> Option<Uri> {
        match raw.parse::<Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.authority().is_some() =>
            {
                Some(uri)
            }
            _ => {
                self.add(key, format!("{raw:?} is not an absolute http(s) URL"));
                None
            }
        }
    }
}
