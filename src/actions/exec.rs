//! `type = "exec"`: run a program when a rule flips, as monit's `then exec "..."` did. No
//! shell, no PATH search; the event goes in the environment. The program runs in its own
//! process group so that a timeout kills whatever it started too (a `curl` left hanging in a
//! script would otherwise outlive it). A non-zero exit or a timeout is an error, retried on the
//! next cycle while the rule stays in the same state.

use super::{ActionContext, ActionOutcome};
use crate::checks::program::{self, Ended};
use crate::config::ExecSpec;
use crate::telemetry::events;

/// How many characters of the program's output are kept for the log (the last ones).
const OUTPUT_LIMIT: usize = 2048;

pub struct Exec {
    spec: ExecSpec,
    dry_run: bool,
}

impl Exec {
    pub fn new(spec: ExecSpec, dry_run: bool) -> Self {
        Exec { spec, dry_run }
    }

    pub async fn run(&self, ctx: &ActionContext) -> ActionOutcome {
        let argv = &self.spec.command;
        if self.dry_run {
            tracing::info!(event = events::DRY_RUN, action = %self.spec.name, command = ?argv);
            return ActionOutcome::NoOp(format!("dry run: would run {argv:?}"));
        }
        let env = [
            ("WATCHDOG_RULE", ctx.rule.clone()),
            ("WATCHDOG_EVENT", ctx.transition.as_str().to_owned()),
            ("WATCHDOG_DETAIL", ctx.detail.clone()),
            ("WATCHDOG_CONSECUTIVE", ctx.consecutive.to_string()),
        ];
        let ran = program::run(argv, &env, self.spec.timeout).await;
        let output = ran.tail(OUTPUT_LIMIT);
        match ran.ended {
            Ended::Exited(0) => ActionOutcome::Done(format!("{} exited 0{output}", argv[0])),
            Ended::Exited(code) => {
                ActionOutcome::Error(format!("{} exited {code}{output}", argv[0]))
            }
            Ended::Signal(_) => {
                ActionOutcome::Error(format!("{} was killed by a signal{output}", argv[0]))
            }
            Ended::Spawn(e) => ActionOutcome::Error(format!("cannot run {}: {e}", argv[0])),
            Ended::Wait(e) => ActionOutcome::Error(format!("waiting for {}: {e}", argv[0])),
            Ended::TimedOut => ActionOutcome::Error(format!(
                "{} did not finish within {}; killed it and its process group",
                argv[0],
                humantime::format_duration(self.spec.timeout)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::threshold::Transition;
    use std::time::Duration;

    fn ctx() -> ActionContext {
        ActionContext {
            rule: "eip".into(),
            transition: Transition::Failed,
            detail: "HTTP 503".into(),
            consecutive: 3,
            retry: false,
            recheck: None,
            times: Default::default(),
            planned: None,
            group: None,
        }
    }

    fn exec(command: &[&str], timeout: Duration) -> Exec {
        Exec::new(
            ExecSpec {
                name: "x".into(),
                command: command.iter().map(|s| s.to_string()).collect(),
                timeout,
            },
            false,
        )
    }

    #[tokio::test]
    async fn the_event_reaches_the_program_and_its_exit_decides() {
        let ok = exec(
            &[
                "/bin/sh",
                "-c",
                "echo \"$WATCHDOG_RULE $WATCHDOG_EVENT $WATCHDOG_CONSECUTIVE $WATCHDOG_DETAIL\"",
            ],
            Duration::from_secs(5),
        );
        assert_eq!(
            ok.run(&ctx()).await,
            ActionOutcome::Done("/bin/sh exited 0: eip failed 3 HTTP 503".into())
        );
        let bad = exec(
            &["/bin/sh", "-c", "echo nope >&2; exit 3"],
            Duration::from_secs(5),
        );
        assert_eq!(
            bad.run(&ctx()).await,
            ActionOutcome::Error("/bin/sh exited 3: nope".into())
        );
        let missing = exec(&["/nonexistent/script"], Duration::from_secs(5));
        assert!(
            matches!(missing.run(&ctx()).await, ActionOutcome::Error(e) if e.starts_with("cannot run /nonexistent/script"))
        );
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("grandchild-ran");
        // The grandchild would write the marker after 2 s, unless the group is killed first.
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let slow = exec(&["/bin/sh", "-c", &script], Duration::from_millis(300));
        let started = std::time::Instant::now();
        let out = slow.run(&ctx()).await;
        assert!(
            matches!(&out, ActionOutcome::Error(e) if e.contains("did not finish within 300ms")),
            "{out:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "the script's own child was killed too");
    }
}
