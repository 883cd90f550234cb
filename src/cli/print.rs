//! What the command line prints: the `status` table, the history, takeover and drill
//! reports, and the `--once` summary.

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
    if let Some(p) = &s.paused {
        out.push_str(&format!(
            "PAUSED: {} since {}{}: no claim starts\n",
            p,
            ms_rfc3339(p.since),
            p.until
                .map(|u| format!(", until {}", ms_rfc3339(u)))
                .unwrap_or_default()
        ));
    }
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

/// What an importer (`command`: `import-monit`, `import-keepalived`) says on standard error:
/// the counts, then what was translated only approximately, what to set by hand in the main
/// file and what was not translated at all.
pub fn import_report(command: &str, imported: &Imported) -> String {
    let mut out = format!(
        "{command}: {} file{}, {} rule{}, {} action{}\n",
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
    for b in &imported.by_hand {
        out.push_str(&format!(
            "  SET BY HAND in {}: {b}\n",
            crate::monit::MAIN_FILE
        ));
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

/// What `validate` prints for a valid configuration: the counts, then each rule's pacing as
/// it will run, defaults filled in (a `timeout` not written is the interval when that is
/// shorter than 5 s, and shows here).
pub fn config_ok(c: &crate::config::Config) -> String {
    let mut out = format!(
        "configuration OK: {} rule{}, {} action{} from {} file{}\n",
        c.rules.len(),
        plural(c.rules.len()),
        c.actions.len(),
        plural(c.actions.len()),
        c.sources.len(),
        plural(c.sources.len())
    );
    let d = |d: std::time::Duration| humantime::format_duration(d).to_string();
    for r in &c.rules {
        use crate::config::CheckSpec;
        // A `haproxy` probe's own `timeout` bounds it within the rule's.
        let timeout = match &r.check {
            CheckSpec::Haproxy(h) => h.timeout.min(r.timeout),
            _ => r.timeout,
        };
        let line = match &r.check {
            // A sync paces itself: `interval` is its poll (or longest wait), and a failed
            // round counts toward `fail_after` (docs/backend-sync.md).
            CheckSpec::BackendSync(b) => format!(
                "backend_sync of {} every {}, fails after {} failed rounds",
                b.backend,
                d(r.interval),
                r.fail_after
            ),
            check => {
                let fast = r
                    .fast_interval
                    .map(|f| format!(" (fast_interval {})", d(f)))
                    .unwrap_or_default();
                format!(
                    "{} every {}{fast}, timeout {}, fails after {}, recovers after {}",
                    check.kind(),
                    d(r.interval),
                    d(timeout),
                    r.fail_after,
                    r.recover_after
                )
            }
        };
        out.push_str(&format!("  rule {}: {line}\n", r.name));
    }
    out
}

/// Milliseconds since the Unix epoch as RFC 3339, to the millisecond.
fn ms_rfc3339(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// `+1.234s` from `t0` to `t`.
fn plus(t0: u64, t: u64) -> String {
    format!("+{:.3}s", t.saturating_sub(t0) as f64 / 1000.0)
}

/// What `watchdog pause` says.
pub fn paused(a: &crate::control::PauseAnswer) -> String {
    let p = &a.pause;
    let until = p
        .until
        .map(|u| format!(" until {}", ms_rfc3339(u)))
        .unwrap_or_else(|| " until `haproxy-watchdog resume`".into());
    let replaced = match &a.replaced {
        Some(r) => format!(
            "\n(it replaces the pause {} set{}; paused since {})",
            r.by,
            if r.reason.is_empty() {
                String::new()
            } else {
                format!(" for \"{}\"", r.reason)
            },
            ms_rfc3339(p.since)
        ),
        None => String::new(),
    };
    format!(
        "paused by {}{until}: checks go on, no claim starts{}{replaced}",
        p.by,
        if p.reason.is_empty() {
            String::new()
        } else {
            format!(" (\"{}\")", p.reason)
        }
    )
}

/// What `watchdog resume` says.
pub fn resumed(a: &crate::control::ResumeAnswer) -> String {
    match &a.ended {
        Some(p) => format!(
            "resumed: the pause {} set at {} has ended; claims may start again",
            p.by,
            ms_rfc3339(p.since)
        ),
        None => "this node was not paused; nothing to do".into(),
    }
}

fn steps(out: &mut String, m: &crate::control::MoveReport, t0: u64) {
    let w = m.steps.iter().map(|s| s.step.len()).max().unwrap_or(4);
    for s in &m.steps {
        out.push_str(&format!(
            "  {:>9}  {:<w$}  {}\n",
            plus(t0, s.at),
            s.step,
            s.detail
        ));
    }
    let label = match &m.reason {
        Some(r) => format!("{} ({r})", m.outcome),
        None => m.outcome.clone(),
    };
    out.push_str(&format!("  {label}: {}\n", m.detail));
}

/// `watchdog takeover` and `drill`: each step with its time from the command, then one line.
pub fn takeover_report(r: &crate::control::TakeoverReport) -> String {
    let t0 = r.takeover.steps.first().map_or(0, |s| s.at);
    let mut out = format!(
        "{} of {} ({}), asked by {} at {}\n",
        r.takeover.kind,
        r.eip,
        r.action,
        r.by,
        ms_rfc3339(t0)
    );
    steps(&mut out, &r.takeover, t0);
    if let Some(b) = &r.back {
        let tb = b.steps.first().map_or(t0, |s| s.at);
        out.push_str(&format!("back, at {}\n", ms_rfc3339(tb)));
        steps(&mut out, b, tb);
    }
    out.push_str(&r.summary);
    out.push('\n');
    out
}

/// `watchdog status --history`: one line per entry, oldest first, then its timings.
pub fn history_table(entries: &[crate::history::Entry]) -> String {
    if entries.is_empty() {
        return "no history yet\n".into();
    }
    let mut out = String::new();
    for e in entries {
        let kind = serde_json::to_value(e.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut what = vec![kind];
        if let Some(p) = &e.planned {
            what.push(format!("planned {p}"));
        }
        if let Some(r) = &e.rule {
            what.push(format!("rule {r}"));
        }
        if let Some(a) = &e.action {
            what.push(format!("action {a}"));
        }
        if let Some(r) = &e.reason {
            what.push(format!("reason {r}"));
        }
        if let Some(b) = &e.by {
            what.push(format!("by {b}"));
        }
        if e.repeats > 0 {
            what.push(format!("{} more times", e.repeats));
        }
        out.push_str(&format!(
            "{}  {}: {}\n",
            ms_rfc3339(e.at),
            what.join(", "),
            e.detail
        ));
        let t = &e.timings;
        let marks = [
            ("first failed check", t.first_failed_check),
            ("rule failed", t.rule_failed),
            ("claim started", t.claim_started),
            ("first mutating call", t.first_mutating_call),
            ("verified", t.verified),
            ("check passes", t.check_passes),
            ("egress from the EIP", t.egress_from_eip),
            ("alert sent", t.alert_sent),
        ];
        let Some(t0) = marks.iter().find_map(|(_, t)| *t) else {
            continue;
        };
        let line: Vec<String> = marks
            .iter()
            .filter_map(|(n, t)| t.map(|t| format!("{n} {}", plus(t0, t))))
            .collect();
        out.push_str(&format!("    {}\n", line.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    /// Breaker 13: the timeout a rule runs with (a default one is the interval when that is
    /// shorter than 5 s) showed nowhere but in a `timed out after` detail.
    #[test]
    fn validate_shows_each_rules_pacing_with_its_defaults() {
        let text = "[rules.a]\ninterval = \"1s\"\nfast_interval = \"250ms\"\ncheck = { type = \"tcp\", host = \"127.0.0.1\", port = 80 }\n[rules.b]\ninterval = \"30s\"\nfail_after = 5\ncheck = { type = \"file\", path = \"/run/x\" }\n[rules.h]\ncheck = { type = \"haproxy\", stats_socket = \"/run/haproxy.sock\", timeout = \"500ms\" }\n[rules.s]\ncheck = { type = \"backend_sync\", backend = \"app\", port = 80, source = { type = \"asg\", group = \"g\" } }\n";
        let c = crate::config::from_sources(&[("a.toml".into(), text.into())])
            .unwrap_or_else(|e| panic!("{e}"));
        let out = super::config_ok(&c);
        assert!(
            out.contains("  rule a: tcp every 1s (fast_interval 250ms), timeout 1s, fails after 3, recovers after 2\n"),
            "{out}"
        );
        assert!(
            out.contains("  rule b: file every 30s, timeout 5s, fails after 5, recovers after 2\n"),
            "{out}"
        );
        // The probe's own timeout, within the rule's.
        assert!(
            out.contains("  rule h: haproxy every 10s, timeout 500ms,"),
            "{out}"
        );
        assert!(
            out.contains("  rule s: backend_sync of app every 30s, fails after 3 failed rounds\n"),
            "{out}"
        );
    }
}
