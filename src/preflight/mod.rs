//! `watchdog preflight`: what `validate` cannot know, checked online and read-only, as the
//! service user would run it. Each check is one [`Check`] line: PASS, FAIL with why and the
//! fix, or SKIP with why it was not (or cannot be) checked. Nothing is changed: mutating EC2
//! calls are made with `DryRun`, others are only read, the state directory gets a temporary
//! file that is removed at once (its lock is never taken, so a running daemon is undisturbed).
//!
//! Only what the daemon will run is checked: actions no enabled rule uses get one SKIP line.
//!
//! `needs.rs` lists every AWS operation and which configurations need it; `aws.rs` the AWS
//! checks; `local.rs` instance metadata, checkip, HAProxy's stats sockets, the claims'
//! readiness probe, backend sync's other dependencies and the state directory.

mod aws;
mod local;
pub mod needs;
mod private;

use crate::config::{ActionSpec, Config};
use crate::telemetry::events;
use serde::Serialize;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

/// What `preflight` is run with besides the configuration.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--state-dir`; None for none (`--state-dir ""`).
    pub state_dir: Option<PathBuf>,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Which check this is, the same whatever its result: `imds`, `eip 203.0.113.10`,
    /// `ec2:AssociateAddress claim`. For scripts reading `--json`.
    pub check: String,
    /// What was checked, for people: `ec2:AssociateAddress for action "claim" (...)`.
    pub what: String,
    pub outcome: Outcome,
}

/// `--json`'s shape of one check: always these five keys, `why` and `fix` null when empty.
impl Serialize for Check {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let (result, why, fix) = match &self.outcome {
            Outcome::Pass => ("pass", None, None),
            Outcome::Fail { why, fix } => ("fail", Some(why), Some(fix)),
            Outcome::Skip { why } => ("skip", Some(why), None),
        };
        let mut st = s.serialize_struct("Check", 5)?;
        st.serialize_field("check", &self.check)?;
        st.serialize_field("what", &self.what)?;
        st.serialize_field("result", result)?;
        st.serialize_field("why", &why)?;
        st.serialize_field("fix", &fix)?;
        st.end()
    }
}

impl Check {
    fn pass(check: impl Into<String>, what: impl Into<String>) -> Check {
        Check {
            check: check.into(),
            what: what.into(),
            outcome: Outcome::Pass,
        }
    }
    fn fail(
        check: impl Into<String>,
        what: impl Into<String>,
        why: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            check: check.into(),
            what: what.into(),
            outcome: Outcome::Fail {
                why: why.into(),
                fix: fix.into(),
            },
        }
    }
    fn skip(check: impl Into<String>, what: impl Into<String>, why: impl Into<String>) -> Check {
        Check {
            check: check.into(),
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

/// Every check, in the order they were made; with [`run_to`], each line is also written as
/// soon as it is decided.
#[derive(Default)]
pub struct Report {
    pub checks: Vec<Check>,
    /// Where each line goes as it is decided.
    out: Option<Box<dyn Write + Send>>,
    /// How many of `checks` went to `out` already; [`Report::text`] leaves them out.
    written: usize,
    /// The first AWS call that found the API unreachable: the other AWS checks are skipped
    /// rather than each waiting out its own timeout.
    aws_unreachable: bool,
}

impl std::fmt::Debug for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Report")
            .field("checks", &self.checks)
            .finish()
    }
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

    /// One line per check not written yet (all of them, unless run with [`run_to`]), then a
    /// summary line.
    pub fn text(&self) -> String {
        let mut out: String = self.checks[self.written..]
            .iter()
            .map(|c| format!("{c}\n"))
            .collect();
        out.push_str(&format!(
            "preflight: {} passed, {} failed, {} skipped\n",
            self.count(|o| matches!(o, Outcome::Pass)),
            self.count(|o| matches!(o, Outcome::Fail { .. })),
            self.count(|o| matches!(o, Outcome::Skip { .. })),
        ));
        out
    }

    /// The same as JSON, every line: `{"checks": [{"check", "what", "result", "why", "fix"}],
    /// "failed": bool}`, `why` and `fix` null where they do not apply.
    pub fn json(&self) -> String {
        serde_json::json!({ "checks": self.checks, "failed": self.failed() }).to_string()
    }

    fn push(&mut self, c: Check) {
        let result = match &c.outcome {
            Outcome::Pass => "pass",
            Outcome::Fail { .. } => "fail",
            Outcome::Skip { .. } => "skip",
        };
        tracing::debug!(event = events::PREFLIGHT_CHECK, check = %c.check, result);
        if let Some(out) = &mut self.out {
            // A closed stdout loses the line here; the exit code still says what failed.
            if writeln!(out, "{c}").and_then(|()| out.flush()).is_ok() {
                self.written += 1;
            } else {
                self.out = None;
            }
        }
        self.checks.push(c);
    }
}

/// Run every check `config` calls for. Every network call is bounded: the SDK by `[aws]`'s
/// timeouts (and after the first AWS call that finds the API unreachable, the other AWS
/// checks are skipped), instance metadata by `[node] imds_timeout`, checkip by `[egress]
/// timeout` (or the rule's), the stats sockets by `[haproxy] timeout` (or the rule's).
pub async fn run(config: &Config, options: &Options) -> Report {
    run_to::<std::io::Stdout>(config, options, None).await
}

/// [`run`], writing each line to `out` as soon as it is decided (a slow check does not hold
/// back the lines before it); [`Report::text`] then holds only the summary.
pub async fn run_to<W: Write + Send + 'static>(
    config: &Config,
    options: &Options,
    out: Option<W>,
) -> Report {
    let mut report = Report {
        out: out.map(|w| Box::new(w) as Box<dyn Write + Send>),
        ..Report::default()
    };
    local::state_dir(&mut report, options.state_dir.as_deref());
    unused_actions(&mut report, config);
    let identity = local::identity(&mut report, config).await;
    let owners = aws::all(&mut report, config, identity.as_ref()).await;
    local::checkip(&mut report, config, &owners, identity.as_ref()).await;
    let failed_sockets = local::stats_sockets(&mut report, config).await;
    local::readiness(&mut report, config, &failed_sockets).await;
    local::private(&mut report, config, identity.as_ref()).await;
    local::backend_sync(&mut report, config).await;
    local::programs(&mut report, config);
    report
}

/// The actions an enabled rule runs, and the members of the groups it runs; the daemon
/// never runs the others.
fn used_actions(config: &Config) -> BTreeSet<&str> {
    let listed: BTreeSet<&str> = config
        .rules
        .iter()
        .flat_map(|r| r.on_fail.iter().chain(&r.on_recover))
        .map(String::as_str)
        .collect();
    let members = listed
        .iter()
        .flat_map(|name| match config.actions.get(*name) {
            Some(ActionSpec::ClaimGroup(g)) => g.members.iter().map(String::as_str).collect(),
            _ => Vec::new(),
        });
    members.chain(listed.iter().copied()).collect()
}

/// Is action `name` one the daemon will run?
fn in_use(config: &Config, name: &str) -> bool {
    used_actions(config).contains(name)
}

/// One SKIP line for each action no enabled rule runs (`enabled = false` rules are not in
/// the validated configuration, so "used only by disabled rules" and "used by no rule" read
/// alike).
fn unused_actions(report: &mut Report, config: &Config) {
    let used = used_actions(config);
    for (name, a) in &config.actions {
        if used.contains(name.as_str()) {
            continue;
        }
        let kind = match a {
            ActionSpec::ClaimEip(_) => "claim_eip",
            ActionSpec::ClaimPrivateIp(_) => "claim_private_ip",
            ActionSpec::ClaimRoute(_) => "claim_route",
            ActionSpec::ClaimGroup(_) => "claim_group",
            ActionSpec::Sns(_) => "sns",
            ActionSpec::Exec(_) => "exec",
        };
        report.push(Check::skip(
            format!("action {name}"),
            format!("action {name:?} ({kind})"),
            "used by no enabled rule (only by disabled rules, or by none), so the daemon never runs it: not checked",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_pass_fail_fix_and_skip() {
        let mut r = Report::default();
        r.push(Check::pass("state dir", "state directory /x is writable"));
        r.push(Check::fail(
            "ec2:AssociateAddress claim",
            "ec2:AssociateAddress",
            "UnauthorizedOperation",
            "allow it",
        ));
        r.push(Check::skip("sns:Publish t", "sns:Publish", "no dry run"));
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

    /// Every entry of `--json` has the same keys, `why`/`fix` null where they do not apply,
    /// and a `check` that names the check whatever its result.
    #[test]
    fn json_shape_is_stable() {
        let mut r = Report::default();
        r.push(Check::pass(
            "eip 203.0.113.10",
            "Elastic IP 203.0.113.10 found; held by nobody",
        ));
        r.push(Check::fail(
            "eip 203.0.113.10",
            "Elastic IP 203.0.113.10",
            "gone",
            "fix it",
        ));
        r.push(Check::skip(
            "eip 203.0.113.10",
            "Elastic IP 203.0.113.10",
            "not asked",
        ));
        let j: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        let checks = j["checks"].as_array().unwrap();
        for c in checks {
            let keys: Vec<&String> = c.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["check", "fix", "result", "what", "why"], "{c}");
            assert_eq!(c["check"], "eip 203.0.113.10");
        }
        assert!(checks[0]["why"].is_null() && checks[0]["fix"].is_null());
        assert!(checks[2]["fix"].is_null() && checks[2]["why"] == "not asked");
    }

    /// A shared writer, for reading what was streamed.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Each line is written when it is decided, not at the end; the report's text then holds
    /// only what was not written (the summary).
    #[test]
    fn lines_stream_as_each_check_is_decided() {
        let out = Shared::default();
        let mut r = Report {
            out: Some(Box::new(out.clone())),
            ..Report::default()
        };
        r.push(Check::pass("a", "first"));
        assert_eq!(
            String::from_utf8(out.0.lock().unwrap().clone()).unwrap(),
            "PASS first\n"
        );
        r.push(Check::skip("b", "second", "why"));
        assert_eq!(
            String::from_utf8(out.0.lock().unwrap().clone()).unwrap(),
            "PASS first\nSKIP second: why\n"
        );
        assert_eq!(r.text(), "preflight: 1 passed, 0 failed, 1 skipped\n");
    }

    /// `run_to` streams every line of a whole run to its writer, and leaves the summary.
    #[tokio::test]
    async fn run_to_streams_each_line_and_leaves_the_summary() {
        let toml = r#"
[rules.web]
check = { type = "http", url = "http://127.0.0.1:9/" }
"#;
        let config = crate::config::from_sources(&[("t.toml".into(), toml.to_owned())])
            .unwrap_or_else(|e| panic!("{e}"));
        let out = Shared::default();
        let report = run_to(&config, &Options::default(), Some(out.clone())).await;
        let streamed = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let all: String = report.checks.iter().map(|c| format!("{c}\n")).collect();
        assert_eq!(streamed, all);
        assert!(!streamed.is_empty());
        assert!(
            report.text().starts_with("preflight: "),
            "{}",
            report.text()
        );
        assert_eq!(report.text().lines().count(), 1);
        // The form the command uses: `--json` gives no writer, one document at the end.
        let json = true;
        let report = run_to(&config, &Options::default(), (!json).then(std::io::stdout)).await;
        assert_eq!(report.text().lines().count(), report.checks.len() + 1);
        // Without a writer, the text holds every line.
        let report = run(&config, &Options::default()).await;
        assert_eq!(report.text().lines().count(), report.checks.len() + 1);
    }

    /// The daemon runs only the actions an enabled rule lists: the others are one SKIP line
    /// each and are not checked (no AWS call, no FAIL).
    #[tokio::test]
    async fn actions_no_enabled_rule_runs_are_one_skip_line_each() {
        let toml = r#"
[actions.claim]
type = "claim_eip"
eip = "203.0.113.10"
sns_topic_arn = "arn:aws:sns:us-east-1:123456789012:t"
[actions.spare]
type = "sns"
topic_arn = "arn:aws:sns:us-east-1:123456789012:t"
[rules.web]
check = { type = "http", url = "http://127.0.0.1/" }
on_fail = ["spare"]
[rules.off]
enabled = false
check = { type = "http", url = "http://127.0.0.1/" }
on_fail = ["claim"]
"#;
        let mut config = crate::config::from_sources(&[("t.toml".into(), toml.to_owned())])
            .unwrap_or_else(|e| panic!("{e}"));
        let mut r = Report::default();
        unused_actions(&mut r, &config);
        assert_eq!(r.checks.len(), 1, "{}", r.text());
        assert_eq!(r.checks[0].check, "action claim");
        assert!(matches!(r.checks[0].outcome, Outcome::Skip { .. }));
        assert!(!in_use(&config, "claim") && in_use(&config, "spare"));
        // Nothing of the unused claim is asked: no identity, no EIP, no permission.
        assert!(needs::of(&config)
            .iter()
            .all(|n| n.by != "action \"claim\""));
        let mut r = Report::default();
        local::identity(&mut r, &config).await;
        assert!(
            matches!(r.checks[0].outcome, Outcome::Skip { .. }),
            "{}",
            r.text()
        );
        // And none is run when no rule lists it at all.
        config.rules.clear();
        assert!(needs::of(&config).is_empty());
    }
}
