//! What the command line prints: the `status` table and the `--once` summary.

use crate::actions::ActionOutcome;
use crate::control::Status;
use crate::daemon::plural;
use crate::engine::{threshold::Health, CycleReport};
use crate::monit::Imported;

/// Widths of the RULE and CHECK columns for these (rule, check) pairs.
fn widths<'a>(rows: impl Iterator<Item = (&'a str, &'a str)>) -> (usize, usize) {
    rows.fold((4, 5), |(w, cw), (r, c)| (w.max(r.len()), cw.max(c.len())))
}

/// `watchdog status` as a table: one line per rule, then its last action.
pub fn status_table(s: &Status) -> String {
    let mut out = format!(
        "haproxy-watchdog {}, started {}{}\n",
        s.version,
        s.started.as_deref().unwrap_or("?"),
        s.reloaded
            .as_deref()
            .map(|r| format!(", reloaded {r}"))
            .unwrap_or_default()
    );
    let (w, cw) = widths(s.rules.iter().map(|r| (r.rule.as_str(), r.check.as_str())));
    out.push_str(&format!(
        "{:<w$}  {:<cw$}  {:<5}  {:>5}  {:>5}  LAST RESULT\n",
        "RULE", "CHECK", "STATE", "FAILS", "OKS"
    ));
    for r in &s.rules {
        let last = match &r.last_result {
            Some(l) => format!(
                "{} {} ({})",
                if l.ok { "pass" } else { "FAIL" },
                l.detail,
                l.at
            ),
            None => "no cycle yet".into(),
        };
        out.push_str(&format!(
            "{:<w$}  {:<cw$}  {:<5}  {:>5}  {:>5}  {last}\n",
            r.rule,
            r.check,
            if r.state == "up" { "up" } else { "DOWN" },
            r.consecutive_failures,
            r.consecutive_successes
        ));
        if let Some(a) = &r.last_action {
            out.push_str(&format!(
                "{:<w$}  -> {}: {} ({})\n",
                "", a.action, a.outcome, a.at
            ));
        }
    }
    out
}

/// The `--once` summary: one line per rule, then one per action it ran.
pub fn summary(reports: &[CycleReport]) -> String {
    let mut out = String::new();
    let (w, cw) = widths(reports.iter().map(|r| (r.rule.as_str(), r.check)));
    out.push_str(&format!(
        "{:<w$}  {:<cw$}  {:<6}  {:<5}  {:<6}  DETAIL\n",
        "RULE", "CHECK", "RESULT", "STATE", "STREAK"
    ));
    for r in reports {
        let streak = if r.outcome.ok {
            format!("+{}", r.consecutive_successes)
        } else {
            format!("-{}", r.consecutive_failures)
        };
        let state = match r.health {
            Health::Up => "up",
            Health::Down => "DOWN",
        };
        out.push_str(&format!(
            "{:<w$}  {:<cw$}  {:<6}  {:<5}  {:<6}  {}\n",
            r.rule,
            r.check,
            if r.outcome.ok { "pass" } else { "FAIL" },
            state,
            streak,
            r.outcome.detail
        ));
        for (name, a) in &r.actions {
            let mark = match a {
                ActionOutcome::Done(_) | ActionOutcome::NoOp(_) => "",
                _ => "!",
            };
            out.push_str(&format!("{:<w$}  -> action {name}: {a}{mark}\n", ""));
        }
    }
    out
}

/// What `import-monit` says on standard error: the counts, then what was translated only
/// approximately and what was not translated at all.
pub fn import_report(imported: &Imported) -> String {
    let mut out = format!(
        "import-monit: {} file{}, {} rule{}, {} action{}\n",
        imported.files.len(),
        plural(imported.files.len()),
        imported.rules,
        plural(imported.rules),
        imported.actions,
        plural(imported.actions)
    );
    for a in &imported.approximate {
        out.push_str(&format!("  approximately: {a}\n"));
    }
    for u in &imported.untranslated {
        out.push_str(&format!("  NOT TRANSLATED: {u}\n"));
    }
    out
}

/// What `--once` prints: the summary, then the alerts SNS did not take, if any.
pub fn once_report(done: &crate::daemon::OnceReport) -> String {
    let mut out = summary(&done.reports);
    if done.undelivered > 0 {
        out.push_str(&format!(
            "{} alert(s) could not be delivered to SNS\n",
            done.undelivered
        ));
    }
    out
}

/// What `validate` prints for a valid configuration.
pub fn config_ok(c: &crate::config::Config) -> String {
    format!(
        "configuration OK: {} rule{}, {} action{} from {} file{}\n",
        c.rules.len(),
        plural(c.rules.len()),
        c.actions.len(),
        plural(c.actions.len()),
        c.sources.len(),
        plural(c.sources.len())
    )
}
