//! `watchdog preflight`: what `validate` cannot know, checked online and read-only, as the
//! service user would run it. Each check is one [`Check`] line: PASS, FAIL with why and the
//! fix, or SKIP with why it was not (or cannot be) checked. Nothing is changed: mutating EC2
//! calls are made with `DryRun`, others are only read, the state directory gets a temporary
//! file that is removed at once (its lock is never taken, so a running daemon is undisturbed).
//!
//! `needs.rs` lists every AWS operation and which configurations need it; `aws.rs` the AWS
//! checks; `local.rs` instance metadata, checkip, HAProxy's stats sockets and the state
//! directory.

mod aws;
mod local;
pub mod needs;

use crate::config::Config;
use crate::telemetry::events;
use serde::Serialize;
use std::path::PathBuf;

/// What `preflight` is run with besides the configuration.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--state-dir`; None for none (`--state-dir ""`).
    pub state_dir: Option<PathBuf>,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Outcome {
    /// It works.
    Pass,
    /// It does not: why, and what to do about it.
    Fail { why: String, fix: String },
    /// Not checked: the configuration does not need it, it cannot be proven without acting,
    /// or what it depends on failed (that failure has its own line).
    Skip { why: String },
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked: `ec2:AssociateAddress for action "claim" (...)`.
    pub what: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl Check {
    fn pass(what: impl Into<String>) -> Check {
        Check {
            what: what.into(),
            outcome: Outcome::Pass,
        }
    }
    fn fail(what: impl Into<String>, why: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            what: what.into(),
            outcome: Outcome::Fail {
                why: why.into(),
                fix: fix.into(),
            },
        }
    }
    fn skip(what: impl Into<String>, why: impl Into<String>) -> Check {
        Check {
            what: what.into(),
            outcome: Outcome::Skip { why: why.into() },
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            Outcome::Pass => write!(f, "PASS {}", self.what),
            Outcome::Fail { why, fix } => write!(f, "FAIL {}: {why}. Fix: {fix}", self.what),
            Outcome::Skip { why } => write!(f, "SKIP {}: {why}", self.what),
        }
    }
}

/// Every check, in the order they were made.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// Did any check fail?
    pub fn failed(&self) -> bool {
        self.checks
            .iter()
            .any(|c| matches!(c.outcome, Outcome::Fail { .. }))
    }

    fn count(&self, f: fn(&Outcome) -> bool) -> usize {
        self.checks.iter().filter(|c| f(&c.outcome)).count()
    }

    /// One line per check, then a summary line.
    pub fn text(&self) -> String {
        let mut out: String = self.checks.iter().map(|c| format!("{c}\n")).collect();
        out.push_str(&format!(
            "preflight: {} passed, {} failed, {} skipped\n",
            self.count(|o| matches!(o, Outcome::Pass)),
            self.count(|o| matches!(o, Outcome::Fail { .. })),
            self.count(|o| matches!(o, Outcome::Skip { .. })),
        ));
        out
    }

    /// The same as JSON: `{"checks": [{"what", "result", "why"?, "fix"?}], "failed": bool}`.
    pub fn json(&self) -> String {
        serde_json::json!({ "checks": self.checks, "failed": self.failed() }).to_string()
    }

    fn push(&mut self, c: Check) {
        let result = match &c.outcome {
            Outcome::Pass => "pass",
            Outcome::Fail { .. } => "fail",
            Outcome::Skip { .. } => "skip",
        };
        tracing::debug!(event = events::PREFLIGHT_CHECK, check = %c.what, result);
        self.checks.push(c);
    }
}

/// Run every check `config` calls for. Every network call is bounded: the SDK by `[aws]`'s
/// timeouts, instance metadata by `[node] imds_timeout`, checkip by `[egress] timeout` (or
/// the rule's), the stats sockets by `[haproxy] timeout` (or the rule's).
pub async fn run(config: &Config, options: &Options) -> Report {
    let mut report = Report::default();
    local::state_dir(&mut report, options.state_dir.as_deref());
    let identity = local::identity(&mut report, config).await;
    aws::all(&mut report, config, identity.as_ref()).await;
    local::checkip(&mut report, config).await;
    local::stats_sockets(&mut report, config).await;
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_pass_fail_fix_and_skip() {
        let mut r = Report::default();
        r.push(Check::pass("state directory /x is writable"));
        r.push(Check::fail(
            "ec2:AssociateAddress",
            "UnauthorizedOperation",
            "allow it",
        ));
        r.push(Check::skip("sns:Publish", "no dry run"));
        assert_eq!(
            r.text(),
            "PASS state directory /x is writable\n\
             FAIL ec2:AssociateAddress: UnauthorizedOperation. Fix: allow it\n\
             SKIP sns:Publish: no dry run\n\
             preflight: 1 passed, 1 failed, 1 skipped\n"
        );
        assert!(r.failed());
        let j: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(j["failed"], true);
        assert_eq!(j["checks"][1]["result"], "fail");
        assert_eq!(j["checks"][1]["fix"], "allow it");
        assert_eq!(j["checks"][2]["why"], "no dry run");
    }
}
