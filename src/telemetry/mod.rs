//! Logs and counters. Logs are structured events with fixed field names (`event`, `rule`,
//! `action`, `eip`, ...) so tests, the demo and log pipelines can read them; counters are
//! process-wide and named like Prometheus series. Nothing here ever formats a credential.

pub mod events;

use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

/// Every counter the daemon keeps: its name (exposed with the `watchdog_` prefix), its
/// `# HELP` text and its label names. One place, so `/metrics` passes `promtool check metrics`.
pub const COUNTERS: &[(&str, &str, &[&str])] = &[
    ("checks_run_total", "Checks run, by rule", &["rule"]),
    (
        "checks_failed_total",
        "Checks that failed, by rule",
        &["rule"],
    ),
    (
        "rule_transitions_total",
        "Rules that flipped, by rule and new state (failed or recovered)",
        &["rule", "to"],
    ),
    ("claims_total", "Elastic IP claims made by this node", &[]),
    (
        "claims_refused_total",
        "Elastic IP claims refused by a gate, by reason",
        &["reason"],
    ),
    (
        "egress_check_failures_total",
        "Egress (checkip) verifications that failed, by reason",
        &["reason"],
    ),
    ("alerts_sent_total", "SNS alerts delivered", &[]),
    (
        "alert_failures_total",
        "SNS publish attempts that failed (each is retried)",
        &[],
    ),
    (
        "alerts_undelivered_total",
        "SNS alerts given up on at shutdown",
        &[],
    ),
    (
        "aws_api_calls_total",
        "AWS API calls made, by service and operation",
        &["service", "operation"],
    ),
    (
        "aws_api_errors_total",
        "AWS API calls that failed, by operation and error code",
        &["operation", "code"],
    ),
    (
        "backend_sync_changes_total",
        "Servers added to or removed from HAProxy, by rule and op (add, remove)",
        &["rule", "op"],
    ),
    (
        "backend_sync_events_total",
        "Membership events read from the events queue, by rule and kind",
        &["rule", "kind"],
    ),
    (
        "backend_sync_lifecycle_completions_total",
        "Lifecycle actions completed after a drain, by rule",
        &["rule"],
    ),
    (
        "backend_sync_peer_updates_total",
        "Rewrites of a peers section, by rule",
        &["rule"],
    ),
    (
        "backend_sync_slot_growths_total",
        "Reloads that added server slots, by rule",
        &["rule"],
    ),
    ("haproxy_reloads_total", "HAProxy reloads requested", &[]),
    (
        "haproxy_reload_failures_total",
        "HAProxy reloads that failed",
        &[],
    ),
];

struct Metrics {
    registry: Registry,
    counters: BTreeMap<&'static str, IntCounterVec>,
    rule_up: IntGaugeVec,
    rule_failures: IntGaugeVec,
}

/// Process-wide, as Prometheus counters are. The `prometheus` crate (TiKV's) keeps them and
/// writes the text exposition format.
static METRICS: LazyLock<Result<Metrics, prometheus::Error>> = LazyLock::new(|| {
    let registry = Registry::new_custom(Some("watchdog".into()), None)?;
    let mut counters = BTreeMap::new();
    for (name, help, labels) in COUNTERS {
        let c = IntCounterVec::new(Opts::new(*name, *help), labels)?;
        registry.register(Box::new(c.clone()))?;
        counters.insert(*name, c);
    }
    let rule_up = IntGaugeVec::new(
        Opts::new("rule_up", "1 while the rule is up, 0 once it has failed"),
        &["rule", "check"],
    )?;
    registry.register(Box::new(rule_up.clone()))?;
    let rule_failures = IntGaugeVec::new(
        Opts::new(
            "rule_consecutive_failures",
            "Failed checks in a row, by rule",
        ),
        &["rule"],
    )?;
    registry.register(Box::new(rule_failures.clone()))?;
    Ok(Metrics {
        registry,
        counters,
        rule_up,
        rule_failures,
    })
});

fn metrics() -> Option<&'static Metrics> {
    match &*METRICS {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::error!(event = events::METRICS_UNAVAILABLE, error = %e);
            None
        }
    }
}

/// `incr("claims_refused_total", &[("reason", "egress_timeout")])`.
pub fn incr(name: &str, labels: &[(&str, &str)]) {
    incr_by(name, labels, 1)
}

/// Add `n` to a counter (0 creates it, so the series shows up before it first moves). A name
/// or label set that [`COUNTERS`] does not declare is a bug: logged, and counted nowhere.
pub fn incr_by(name: &str, labels: &[(&str, &str)], n: u64) {
    let Some(m) = metrics() else { return };
    let labels: HashMap<&str, &str> = labels.iter().copied().collect();
    match m.counters.get(name).map(|c| c.get_metric_with(&labels)) {
        Some(Ok(c)) => c.inc_by(n),
        Some(Err(e)) => {
            tracing::error!(event = events::COUNTER_MISLABELLED, counter = name, error = %e)
        }
        None => tracing::error!(event = events::UNKNOWN_COUNTER, counter = name),
    }
}

/// One rule's health for the `watchdog_rule_up` and `watchdog_rule_consecutive_failures`
/// gauges.
pub struct RuleGauge<'a> {
    pub rule: &'a str,
    pub check: &'a str,
    pub up: bool,
    pub consecutive_failures: u32,
}

/// The text exposition (Prometheus 0.0.4, with `# HELP` and `# TYPE` for every family) of
/// every counter and of `rules`' gauges, which replace the previous set (rules removed by a
/// reload disappear). Serve it as [`EXPOSITION_CONTENT_TYPE`].
pub fn exposition(rules: &[RuleGauge<'_>]) -> String {
    let Some(m) = metrics() else {
        return String::new();
    };
    m.rule_up.reset();
    m.rule_failures.reset();
    for r in rules {
        m.rule_up
            .with_label_values(&[r.rule, r.check])
            .set(i64::from(r.up));
        m.rule_failures
            .with_label_values(&[r.rule])
            .set(i64::from(r.consecutive_failures));
    }
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&m.registry.gather(), &mut out) {
        tracing::error!(event = events::METRICS_UNENCODABLE, error = %e);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What `/metrics` answers with.
pub const EXPOSITION_CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Every counter series and its value (`name{labels}`, sorted), for the log line at exit.
pub fn snapshot() -> Vec<(String, u64)> {
    let Some(m) = metrics() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for family in m.registry.gather() {
        if family.get_field_type() != prometheus::proto::MetricType::COUNTER {
            continue;
        }
        let name = family.name().trim_start_matches("watchdog_");
        for metric in family.get_metric() {
            let labels: Vec<String> = metric
                .get_label()
                .iter()
                .map(|l| format!("{}=\"{}\"", l.name(), l.value()))
                .collect();
            let series = if labels.is_empty() {
                name.to_owned()
            } else {
                format!("{name}{{{}}}", labels.join(","))
            };
            out.push((series, metric.get_counter().get_value() as u64));
        }
    }
    out.sort();
    out
}

/// An error and every cause under it, joined with ": " (what anyhow prints for `{:#}`), so a
/// message never stops at a bare "builder error". A cause whose text the previous one
/// already ends with is not repeated.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !text.is_empty() && !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

/// Log to stderr (the journal under systemd). `filter` is a `RUST_LOG`-style directive;
/// `RUST_LOG` itself wins when set.
pub fn init_logging(format: LogFormat, filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = match format {
        LogFormat::Plain => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("haproxy-watchdog: logging already initialised: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every counter name the code counts (a string literal ending in `_total`) is declared
    /// in COUNTERS, so none is silently dropped at run time.
    #[test]
    fn every_counter_in_the_code_is_declared() {
        let declared: Vec<&str> = COUNTERS.iter().map(|c| c.0).collect();
        let mut files = vec![std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")];
        let here = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/telemetry");
        let mut seen = 0;
        while let Some(p) = files.pop() {
            if p.is_dir() {
                files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            if p.extension().is_none_or(|e| e != "rs") || p.starts_with(&here) {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for piece in text.split('"').skip(1).step_by(2) {
                if piece.ends_with("_total") && !piece.contains(' ') {
                    seen += 1;
                    assert!(
                        declared.contains(&piece),
                        "{piece} in {} is not in COUNTERS",
                        p.display()
                    );
                }
            }
        }
        assert!(seen >= 10, "the scan found the counters ({seen})");
    }

    #[test]
    fn counters_and_gauges_are_exposed_with_help_and_type() {
        incr("claims_refused_total", &[("reason", "unit_test")]);
        incr("claims_refused_total", &[("wrong", "label")]);
        incr("no_such_total", &[]);
        let text = exposition(&[RuleGauge {
            rule: "r",
            check: "http",
            up: false,
            consecutive_failures: 4,
        }]);
        assert!(
            text.contains("# HELP watchdog_claims_refused_total "),
            "{text}"
        );
        assert!(
            text.contains("# TYPE watchdog_claims_refused_total counter"),
            "{text}"
        );
        assert!(
            text.contains("watchdog_claims_refused_total{reason=\"unit_test\"} 1"),
            "{text}"
        );
        assert!(!text.contains("wrong="), "{text}");
        assert!(
            text.contains("watchdog_rule_up{check=\"http\",rule=\"r\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("watchdog_rule_consecutive_failures{rule=\"r\"} 4"),
            "{text}"
        );
        assert!(snapshot().contains(&("claims_refused_total{reason=\"unit_test\"}".into(), 1)));
        // A reload that drops the rule drops its gauges.
        assert!(!exposition(&[]).contains("rule=\"r\""));
    }
}
