//! The one error shape of every file the gate loads: the list of all problems found,
//! each naming the key (and for a policy, the rule) that caused it.

use std::fmt;

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
