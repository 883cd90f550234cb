//! The daemon's Prometheus metrics as typed families, each declared once with its `# HELP`
//! text and labels (so `/metrics` passes `promtool check metrics`). The `prometheus` crate
//! (TiKV's) keeps them and writes the text exposition format. One [`Metrics`] is made at start
//! and handed to what counts (the daemon's `Deps` own it); tests make their own.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// One rule's handles on the series each of its checks counts ([`Metrics::rule_series`]).
#[derive(Clone)]
pub struct RuleSeries {
    rule: String,
    run: IntCounter,
    took: Histogram,
}

/// What `/metrics` answers with.
pub const EXPOSITION_CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Every series the daemon exposes, all prefixed `watchdog_`. Counting goes through the
/// methods, whose label sets are fixed by their arguments.
pub struct Metrics {
    registry: Registry,
    checks_run: IntCounterVec,
    checks_failed: IntCounterVec,
    rule_transitions: IntCounterVec,
    claims: IntCounterVec,
    claims_refused: IntCounterVec,
    egress_check_failures: IntCounterVec,
    alerts_sent: IntCounterVec,
    alert_failures: IntCounterVec,
    alerts_undelivered: IntCounterVec,
    aws_api_calls: IntCounterVec,
    aws_api_errors: IntCounterVec,
    backend_sync_changes: IntCounterVec,
    backend_sync_events: IntCounterVec,
    backend_sync_lifecycle_completions: IntCounterVec,
    backend_sync_peer_updates: IntCounterVec,
    backend_sync_slot_growths: IntCounterVec,
    haproxy_reloads: IntCounterVec,
    haproxy_reload_failures: IntCounterVec,
    haproxy_config_installs: IntCounterVec,
    rule_up: IntGaugeVec,
    rule_failures: IntGaugeVec,
    paused: IntGaugeVec,
    pauses: IntCounterVec,
    takeovers: IntCounterVec,
    drills: IntCounterVec,
    check_duration: HistogramVec,
    claim_duration: HistogramVec,
    failover_duration: HistogramVec,
}

/// One rule's health for the `watchdog_rule_up` and `watchdog_rule_consecutive_failures`
/// gauges.
pub struct RuleGauge<'a> {
    pub rule: &'a str,
    pub check: &'a str,
    pub up: bool,
    pub consecutive_failures: u32,
}

fn vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

/// A counter without labels. Kept as a family with no label names rather than a plain
/// counter so that, like every labelled series, it is exposed from its first count on (a
/// plain counter would be exposed at 0 from start-up).
fn one(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounterVec> {
    vec(r, name, help, &[])
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> prometheus::Result<HistogramVec> {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )?;
    r.register(Box::new(h.clone()))?;
    Ok(h)
}

/// Seconds, for a check: from HAProxy's own sub-millisecond answers to a check's longest timeout.
const CHECK_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Seconds, for a claim and a failover: sub-second to several minutes.
const FAILOVER_BUCKETS: &[f64] = &[
    0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

impl Metrics {
    /// Every family registered, every counter at zero. Errors: a family declared twice or
    /// with an invalid name (a bug; the daemon does not start).
    pub fn new() -> prometheus::Result<Metrics> {
        let r = Registry::new_custom(Some("watchdog".into()), None)?;
        Ok(Metrics {
            checks_run: vec(&r, "checks_run_total", "Checks run, by rule", &["rule"])?,
            checks_failed: vec(
                &r,
                "checks_failed_total",
                "Checks that failed, by rule",
                &["rule"],
            )?,
            rule_transitions: vec(
                &r,
                "rule_transitions_total",
                "Rules that flipped, by rule and new state (failed or recovered)",
                &["rule", "to"],
            )?,
            claims: one(&r, "claims_total", "Elastic IP claims made by this node")?,
            claims_refused: vec(
                &r,
                "claims_refused_total",
                "Elastic IP claims refused by a gate, by reason",
                &["reason"],
            )?,
            egress_check_failures: vec(
                &r,
                "egress_check_failures_total",
                "Egress (checkip) verifications that failed, by reason",
                &["reason"],
            )?,
            alerts_sent: one(&r, "alerts_sent_total", "SNS alerts delivered")?,
            alert_failures: one(
                &r,
                "alert_failures_total",
                "SNS publish attempts that failed (each is retried)",
            )?,
            alerts_undelivered: one(
                &r,
                "alerts_undelivered_total",
                "SNS alerts given up on at shutdown",
            )?,
            aws_api_calls: vec(
                &r,
                "aws_api_calls_total",
                "AWS API calls made, by service and operation",
                &["service", "operation"],
            )?,
            aws_api_errors: vec(
                &r,
                "aws_api_errors_total",
                "AWS API calls that failed, by operation and error code",
                &["operation", "code"],
            )?,
            backend_sync_changes: vec(
                &r,
                "backend_sync_changes_total",
                "Servers added to or removed from HAProxy, by rule and op (add, remove)",
                &["rule", "op"],
            )?,
            backend_sync_events: vec(
                &r,
                "backend_sync_events_total",
                "Membership events read from the events queue, by rule and kind",
                &["rule", "kind"],
            )?,
            backend_sync_lifecycle_completions: vec(
                &r,
                "backend_sync_lifecycle_completions_total",
                "Lifecycle actions completed after a drain, by rule",
                &["rule"],
            )?,
            backend_sync_peer_updates: vec(
                &r,
                "backend_sync_peer_updates_total",
                "Rewrites of a peers section, by rule",
                &["rule"],
            )?,
            backend_sync_slot_growths: vec(
                &r,
                "backend_sync_slot_growths_total",
                "Reloads that added server slots, by rule",
                &["rule"],
            )?,
            haproxy_reloads: one(&r, "haproxy_reloads_total", "HAProxy reloads requested")?,
            haproxy_reload_failures: one(
                &r,
                "haproxy_reload_failures_total",
                "HAProxy reloads that failed",
            )?,
            haproxy_config_installs: vec(
                &r,
                "haproxy_config_installs_total",
                "HAProxy configuration files installed, by rule and whether haproxy -c checked them (check: run, skipped)",
                &["rule", "check"],
            )?,
            rule_up: gauge(
                &r,
                "rule_up",
                "1 while the rule is up, 0 once it has failed",
                &["rule", "check"],
            )?,
            rule_failures: gauge(
                &r,
                "rule_consecutive_failures",
                "Failed checks in a row, by rule",
                &["rule"],
            )?,
            paused: gauge(
                &r,
                "paused",
                "1 while this node is paused (watchdog pause, or the maintenance file): no claim starts",
                &[],
            )?,
            pauses: vec(
                &r,
                "pauses_total",
                "Pauses begun, by source (command, maintenance_file)",
                &["source"],
            )?,
            takeovers: vec(
                &r,
                "takeovers_total",
                "Planned takeovers asked for (watchdog takeover), by result (done, noop, refused, error)",
                &["result"],
            )?,
            drills: vec(
                &r,
                "drills_total",
                "Drills run (watchdog drill), by result (passed, failed)",
                &["result"],
            )?,
            check_duration: histogram(
                &r,
                "check_duration_seconds",
                "How long each check took, by rule",
                &["rule"],
                CHECK_BUCKETS,
            )?,
            claim_duration: histogram(
                &r,
                "claim_duration_seconds",
                "From a claim's decision (its first gate) to the provider showing the address here",
                &[],
                FAILOVER_BUCKETS,
            )?,
            failover_duration: histogram(
                &r,
                "failover_duration_seconds",
                "From the first failed check of the streak to the provider showing the address here",
                &[],
                FAILOVER_BUCKETS,
            )?,
            registry: r,
        })
    }

    /// `rule`'s series that every check counts, looked up once: a label lookup hashes the
    /// rule's name and takes the family's lock on every call.
    pub fn rule_series(&self, rule: &str) -> RuleSeries {
        RuleSeries {
            rule: rule.to_owned(),
            run: self.checks_run.with_label_values(&[rule]),
            took: self.check_duration.with_label_values(&[rule]),
        }
    }

    /// One check ran, through its rule's [`RuleSeries`]: `checks_run_total`,
    /// `check_duration_seconds` and, unless `ok`, `checks_failed_total` (whose series appears
    /// with a rule's first failure).
    pub fn check_counted(&self, series: &RuleSeries, ok: bool, took: std::time::Duration) {
        series.run.inc();
        series.took.observe(took.as_secs_f64());
        if !ok {
            self.checks_failed.with_label_values(&[&series.rule]).inc();
        }
    }

    /// One check of `rule` ran (`checks_run_total`), and failed unless `ok`
    /// (`checks_failed_total`).
    pub fn check_ran(&self, rule: &str, ok: bool) {
        self.checks_run.with_label_values(&[rule]).inc();
        if !ok {
            self.checks_failed.with_label_values(&[rule]).inc();
        }
    }

    /// `rule` flipped `to` `failed` or `recovered`.
    pub fn rule_flipped(&self, rule: &str, to: &str) {
        self.rule_transitions.with_label_values(&[rule, to]).inc();
    }

    /// This node moved an Elastic IP to itself.
    pub fn claimed(&self) {
        self.claims.with_label_values::<&str>(&[]).inc();
    }

    /// A claim was refused by the gate named `reason`.
    pub fn claim_refused(&self, reason: &str) {
        self.claims_refused.with_label_values(&[reason]).inc();
    }

    /// checkip did not verify this node's egress (`reason`).
    pub fn egress_failed(&self, reason: &str) {
        self.egress_check_failures
            .with_label_values(&[reason])
            .inc();
    }

    /// SNS took an alert.
    pub fn alert_sent(&self) {
        self.alerts_sent.with_label_values::<&str>(&[]).inc();
    }

    /// An SNS publish attempt failed (it is retried).
    pub fn alert_failed(&self) {
        self.alert_failures.with_label_values::<&str>(&[]).inc();
    }

    /// `n` alerts were given up on at shutdown.
    pub fn alerts_undelivered(&self, n: u64) {
        self.alerts_undelivered
            .with_label_values::<&str>(&[])
            .inc_by(n);
    }

    /// One AWS API call is about to be made.
    pub fn aws_call(&self, service: &str, operation: &str) {
        self.aws_api_calls
            .with_label_values(&[service, operation])
            .inc();
    }

    /// An AWS API call failed with `code` (`none` when the service gave none).
    pub fn aws_error(&self, operation: &str, code: &str) {
        self.aws_api_errors
            .with_label_values(&[operation, code])
            .inc();
    }

    /// A backend sync of `rule` added or removed (`op`) `n` servers.
    pub fn sync_changes(&self, rule: &str, op: &str, n: u64) {
        self.backend_sync_changes
            .with_label_values(&[rule, op])
            .inc_by(n);
    }

    /// A membership event of `kind` was read for `rule`.
    pub fn sync_event(&self, rule: &str, kind: &str) {
        self.backend_sync_events
            .with_label_values(&[rule, kind])
            .inc();
    }

    /// A lifecycle action was completed after a drain.
    pub fn lifecycle_completed(&self, rule: &str) {
        self.backend_sync_lifecycle_completions
            .with_label_values(&[rule])
            .inc();
    }

    /// A peers section was rewritten.
    pub fn peers_updated(&self, rule: &str) {
        self.backend_sync_peer_updates
            .with_label_values(&[rule])
            .inc();
    }

    /// A reload added server slots.
    pub fn slots_grown(&self, rule: &str) {
        self.backend_sync_slot_growths
            .with_label_values(&[rule])
            .inc();
    }

    /// A HAProxy reload was requested.
    pub fn haproxy_reload(&self) {
        self.haproxy_reloads.with_label_values::<&str>(&[]).inc();
    }

    /// A HAProxy reload failed.
    pub fn haproxy_reload_failed(&self) {
        self.haproxy_reload_failures
            .with_label_values::<&str>(&[])
            .inc();
    }

    /// `rule` installed a HAProxy configuration file; `check` is `run` when `haproxy -c`
    /// checked it, `skipped` when only server addresses and `disabled` changed.
    pub fn config_installed(&self, rule: &str, check: &str) {
        self.haproxy_config_installs
            .with_label_values(&[rule, check])
            .inc();
    }

    /// Whether this node is paused now (`watchdog_paused`).
    pub fn set_paused(&self, paused: bool) {
        self.paused
            .with_label_values::<&str>(&[])
            .set(i64::from(paused));
    }

    /// A pause began, by `source` (`command` or `maintenance_file`).
    pub fn paused_by(&self, source: &str) {
        self.pauses.with_label_values(&[source]).inc();
    }

    /// A planned takeover ended with `result` (`done`, `noop`, `refused`, `error`).
    pub fn takeover(&self, result: &str) {
        self.takeovers.with_label_values(&[result]).inc();
    }

    /// A drill ended with `result` (`passed` or `failed`).
    pub fn drill(&self, result: &str) {
        self.drills.with_label_values(&[result]).inc();
    }

    /// One check of `rule` took `took`.
    pub fn check_took(&self, rule: &str, took: std::time::Duration) {
        self.check_duration
            .with_label_values(&[rule])
            .observe(took.as_secs_f64());
    }

    /// A claim took `took` from its decision to the verified move.
    pub fn claim_took(&self, took: std::time::Duration) {
        self.claim_duration
            .with_label_values::<&str>(&[])
            .observe(took.as_secs_f64());
    }

    /// A failover took `took` from the first failed check to the verified move.
    pub fn failover_took(&self, took: std::time::Duration) {
        self.failover_duration
            .with_label_values::<&str>(&[])
            .observe(took.as_secs_f64());
    }

    /// The text exposition (Prometheus 0.0.4, with `# HELP` and `# TYPE` for every family) of
    /// every counter and of `rules`' gauges, which replace the previous set (rules removed by
    /// a reload disappear). Serve it as [`EXPOSITION_CONTENT_TYPE`].
    pub fn exposition(&self, rules: &[RuleGauge<'_>]) -> String {
        self.rule_up.reset();
        self.rule_failures.reset();
        for r in rules {
            self.rule_up
                .with_label_values(&[r.rule, r.check])
                .set(i64::from(r.up));
            self.rule_failures
                .with_label_values(&[r.rule])
                .set(i64::from(r.consecutive_failures));
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(event = super::events::METRICS_UNENCODABLE, error = %e);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Every counter series that has been counted and its value (`name{labels}`, sorted), for
    /// the log line at exit.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for family in self.registry.gather() {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_are_exposed_with_help_and_type() {
        let m = Metrics::new().expect("the families register");
        m.claim_refused("unit_test");
        let text = m.exposition(&[RuleGauge {
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
        assert!(
            text.contains("watchdog_rule_up{check=\"http\",rule=\"r\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("watchdog_rule_consecutive_failures{rule=\"r\"} 4"),
            "{text}"
        );
        assert!(m
            .snapshot()
            .contains(&("claims_refused_total{reason=\"unit_test\"}".into(), 1)));
        // A reload that drops the rule drops its gauges.
        assert!(!m.exposition(&[]).contains("rule=\"r\""));
    }

    #[test]
    fn each_metrics_is_its_own_registry() {
        let a = Metrics::new().expect("a");
        let b = Metrics::new().expect("b");
        a.claimed();
        assert!(a.snapshot().contains(&("claims_total".into(), 1)));
        assert!(b.snapshot().is_empty(), "{:?}", b.snapshot());
    }

    /// The kind a tester found: typed families first exposed counters without labels at 0
    /// from start-up, where every series used to appear with its first count.
    #[test]
    fn a_series_appears_with_its_first_count_labelled_or_not() {
        let m = Metrics::new().expect("metrics");
        let text = m.exposition(&[]);
        assert!(!text.contains("watchdog_claims_total "), "{text}");
        assert!(!text.contains("watchdog_haproxy_reloads_total "), "{text}");
        assert!(m.snapshot().is_empty(), "{:?}", m.snapshot());
        m.claimed();
        m.haproxy_reload();
        let text = m.exposition(&[]);
        assert!(text.contains("watchdog_claims_total 1"), "{text}");
        assert!(text.contains("watchdog_haproxy_reloads_total 1"), "{text}");
        assert!(!text.contains("watchdog_alerts_sent_total "), "{text}");
    }
}
