//! Turns a validated [`Config`] into what runs: its probes, actions and syncers, built with the
//! clients the [`Deps`] hold (vector's `SourceConfig::build`). `--once` and `run` share it.

use super::deps::Deps;
use super::probe::Probe;
use crate::actions::claim::{ClaimAction, ClaimEnv, ClaimGroup};
use crate::actions::exec::Exec;
use crate::actions::notify::SnsNotify;
use crate::actions::{Action, ActionContext, ActionOutcome};
use crate::checks::{self, Outcome};
use crate::config::{ActionSpec, CheckSpec, ClaimProvider, Config, Rule, SourceSpec};
use crate::control::StatusBoard;
use crate::engine::threshold::Transition;
use crate::engine::{CycleReport, Effects, Pacing, RuleState};
use crate::history::{Entry, History, Kind};
use crate::providers::aws::{
    ec2::Ec2,
    imds::IdentitySource,
    opsworks::{OpsWorks, OpsworksIdentity},
};
use crate::state::StateStore;
use crate::sync::{self, Syncer};
use crate::telemetry::events;
use crate::telemetry::metrics::{Metrics, RuleSeries};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long a claim watches the EIP stay on this node after moving it.
pub(super) const VERIFY_FOR: Duration = Duration::from_secs(10);

/// The live world: real probes and real actions.
pub struct Live {
    pub(super) http: reqwest::Client,
    pub(super) actions: BTreeMap<String, Action>,
    /// One per rule, by rule name, with the rule's metric series (looked up on every check).
    probes: HashMap<String, (Probe, RuleSeries)>,
    board: StatusBoard,
    store: StateStore,
    /// Checks run and failed, and rule transitions, by rule.
    metrics: Arc<Metrics>,
    /// Rule transitions, and operators' takeovers and drills, are recorded here.
    pub(super) history: History,
    /// The rules, for `takeover` and `drill` to find the rule behind a claim.
    pub(super) rules: Vec<Rule>,
    /// `[egress]`, for a drill's proof that traffic leaves from the address.
    pub(super) egress: crate::config::EgressSettings,
    /// Planned moves are waited for at shutdown, like claims.
    pub(super) in_flight: crate::actions::claim::InFlight,
}

impl Effects for Live {
    async fn check(&self, rule: &Rule) -> Outcome {
        match self.probes.get(&rule.name) {
            Some((p, _)) => p.run(&self.http).await,
            // `build` makes one for every rule of the configuration this runs.
            None => Outcome::fail(format!("no probe for rule {}", rule.name)),
        }
    }

    fn pacing(&self, rule: &Rule) -> Pacing {
        match self.probes.get(&rule.name) {
            Some((p, _)) => p.pacing(rule),
            None => Pacing::every_interval(rule),
        }
    }

    fn report(&self, report: &CycleReport) {
        match self.probes.get(&report.rule) {
            Some((_, series)) => self
                .metrics
                .check_counted(series, report.outcome.ok, report.took),
            None => {
                self.metrics.check_ran(&report.rule, report.outcome.ok);
                self.metrics.check_took(&report.rule, report.took);
            }
        }
        if let Some(t) = report.transition {
            self.metrics.rule_flipped(&report.rule, t.as_str());
        }
        self.board.record(report);
    }

    fn transitioned(&self, rule: &str, t: Transition, detail: &str) {
        let kind = match t {
            Transition::Failed => Kind::RuleFailed,
            Transition::Recovered => Kind::RuleRecovered,
        };
        let mut e = Entry::new(kind, detail);
        e.rule = Some(rule.to_owned());
        self.history.record(e);
    }

    fn persist(&self, rule: &str, state: &RuleState) {
        match serde_json::to_value(state) {
            Ok(v) => self.store.rule_saved(rule, v),
            Err(e) => tracing::error!(event = events::STATE_NOT_SAVED, rule = %rule, error = %e),
        }
    }

    fn persist_soon(&self, rule: &str, state: &RuleState) {
        match serde_json::to_value(state) {
            Ok(v) => self.store.rule_saved_soon(rule, v),
            Err(e) => tracing::error!(event = events::STATE_NOT_SAVED, rule = %rule, error = %e),
        }
    }

    fn streak_started(&self, action: &str) {
        match self.actions.get(action) {
            Some(Action::Claim(c)) => c.note_owner(),
            Some(Action::Group(g)) => g.note_owner(),
            _ => {}
        }
    }

    async fn act(&self, action: &str, ctx: &ActionContext) -> ActionOutcome {
        match self.actions.get(action) {
            Some(a) => a.run(ctx).await,
            // Config validation guarantees every reference resolves.
            None => ActionOutcome::Error(format!("no action named {action}")),
        }
    }
}

/// One configuration's effects. Sending `true` on `stop` ends its rules (and keeps new claims
/// from starting); claims already changing EC2 finish on their own.
pub struct Generation<E = Live> {
    pub live: Arc<E>,
    pub stop: watch::Sender<bool>,
}

/// Why a configuration cannot run (start-up exits 1; a reload keeps the running one).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The whole cause chain is in the message: a bare "builder error" tells nobody anything.
    #[error("cannot build the HTTP client: {}{}", crate::telemetry::chain(.0),
        if crate::telemetry::chain(.0).contains("CA certificates") {
            " (the configuration has https URLs: install the CA certificates, Debian's and RHEL's package ca-certificates)"
        } else { "" })]
    Http(reqwest::Error),
    #[error("no CA certificates on this machine, and the AWS SDK needs them for every call: install them (Debian's and RHEL's package ca-certificates; SSL_CERT_FILE or SSL_CERT_DIR point elsewhere)")]
    NoCaStore,
    /// Another process holds the state directory's lock (the message names it).
    #[error("{0}")]
    StateBusy(String),
    #[error("no AWS region: set [aws] region or AWS_REGION (or run on EC2, where instance metadata gives it; it may have been unavailable for a moment)")]
    NoRegion,
    #[error("this configuration calls AWS, which the daemon did not set up at start (its first configuration needed no AWS call): restart to apply it")]
    AwsNotStarted,
    /// The metric families could not be registered (a bug).
    #[error("cannot set up the metrics: {0}")]
    Metrics(prometheus::Error),
}

/// Which clients a configuration needs, read from it once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// The AWS SDK: claims and alerts unless in a dry run; Auto Scaling sources even then
    /// (they only read).
    pub aws: bool,
    /// An Auto Scaling group is a backend-sync source.
    pub asg: bool,
    /// A claim goes through OpsWorks.
    pub opsworks: bool,
    /// A `claim_eip` action exists.
    pub claims: bool,
}

impl Needs {
    pub fn of(config: &Config, dry_run: bool) -> Needs {
        let mut n = Needs {
            aws: false,
            asg: false,
            opsworks: false,
            claims: false,
        };
        let mut aws_actions = false;
        for a in config.actions.values() {
            match a {
                ActionSpec::ClaimEip(c) => {
                    n.claims = true;
                    aws_actions = true;
                    n.opsworks |= c.provider == ClaimProvider::OpsWorks;
                }
                ActionSpec::ClaimPrivateIp(_)
                | ActionSpec::ClaimRoute(_)
                | ActionSpec::ClaimGroup(_) => {
                    n.claims = true;
                    aws_actions = true;
                }
                ActionSpec::Sns(_) => aws_actions = true,
                ActionSpec::Exec(_) => {}
            }
        }
        n.asg = config.rules.iter().any(
            |r| matches!(&r.check, CheckSpec::BackendSync(b) if matches!(b.source, SourceSpec::Asg(_))),
        );
        n.aws = (aws_actions && !dry_run) || n.asg;
        n
    }
}

/// The effects of `config`: its probes, actions and syncers, on the clients `deps` holds.
/// Claims the last run died in are handed to the `claim_eip` action of their EIP here, which
/// settles them (`reconcile`).
pub fn build(deps: &Deps, config: &Config) -> Result<Generation, BuildError> {
    let dry_run = deps.dry_run;
    let needs = Needs::of(config, dry_run);
    let http = checks::http_client(config.needs_tls()).map_err(BuildError::Http)?;
    // What the configuration before the running one handed on and nobody took is stale.
    deps.queues.new_generation();
    let (stop, stop_rx) = watch::channel(false);
    if needs.aws && deps.sdk.is_none() {
        return Err(BuildError::AwsNotStarted);
    }
    let metrics = deps.metrics.clone();
    let ec2 = deps
        .sdk
        .as_ref()
        .filter(|_| !dry_run)
        .map(|sdk| Ec2::new(sdk, metrics.clone()));
    let opsworks = deps
        .sdk
        .as_ref()
        .filter(|_| !dry_run && needs.opsworks)
        .map(|sdk| OpsWorks::new(sdk, &config.opsworks, metrics.clone()));
    let discovery = deps.sdk.as_ref().filter(|_| needs.asg);
    if needs.claims
        && config.haproxy.health_url.is_none()
        && config.haproxy.frontend.is_none()
        && config.haproxy.backend.is_none()
    {
        tracing::warn!(event = events::WEAK_READINESS_CHECK, "[haproxy] only checks that the process answers on its stats socket; \
            set `backend` (or `frontend`, or `health_url`) so a node whose backends are all down never claims");
    }
    let claim_env = Arc::new(ClaimEnv {
        ec2,
        opsworks,
        opsworks_identity: Arc::new(OpsworksIdentity::new(&config.opsworks)),
        http: http.clone(),
        egress: config.egress.clone(),
        haproxy: config.haproxy.clone(),
        identity: Arc::new(IdentitySource::new(config.node.clone())),
        alerter: deps.alerter.clone(),
        subject_prefix: config.alerts.subject_prefix.clone(),
        verify_for: VERIFY_FOR,
        stopping: stop_rx.clone(),
        in_flight: deps.in_flight.clone(),
        metrics: metrics.clone(),
        pause: deps.pause.clone(),
        history: deps.history.clone(),
    });
    // An address the last configuration (this run's, or the one before a restart) put on an
    // interface and this one no longer claims would stay there forever, answering this node's
    // own connections to it: taken off.
    let claimed_now: Vec<std::net::Ipv4Addr> = config
        .actions
        .values()
        .filter_map(|a| match a {
            ActionSpec::ClaimPrivateIp(c) => Some(c.private_ip),
            ActionSpec::ClaimRoute(c) => Some(c.destination),
            _ => None,
        })
        .collect();
    if !dry_run {
        for ip in deps.store.private_addresses() {
            if !claimed_now.contains(&ip) {
                tokio::spawn(async move {
                    match crate::actions::claim::local_address::remove(ip).await {
                        Ok(true) => {
                            tracing::info!(event = events::LOCAL_ADDRESS_REMOVED, address = %ip,
                            "no claim of the configuration claims it any more")
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::error!(event = events::LOCAL_ADDRESS_FAILED, address = %ip, error = %e)
                        }
                    }
                });
            }
        }
        deps.store.private_addresses_saved(claimed_now);
    }
    // A claim the last run had under way is settled by the action that now owns its address.
    let settled = |claim: ClaimAction| {
        let pending = deps
            .pending_claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&claim.address().key());
        if let Some(p) = pending {
            claim.reconcile(p, deps.alert_stop.subscribe());
        }
        Action::Claim(claim)
    };
    let mut actions: BTreeMap<String, Action> = config
        .actions
        .iter()
        .filter_map(|(name, spec)| {
            let action = match spec {
                ActionSpec::ClaimEip(c) => {
                    settled(ClaimAction::new(c.clone(), claim_env.clone(), &deps.holds))
                }
                ActionSpec::ClaimPrivateIp(c) => {
                    settled(ClaimAction::private_ip(c, claim_env.clone(), &deps.holds))
                }
                ActionSpec::ClaimRoute(c) => {
                    settled(ClaimAction::route(c, claim_env.clone(), &deps.holds))
                }
                ActionSpec::Sns(s) => Action::Sns(SnsNotify::new(
                    s.clone(),
                    deps.alerter.clone(),
                    config.alerts.subject_prefix.clone(),
                )),
                ActionSpec::Exec(x) => Action::Exec(Exec::new(x.clone(), dry_run)),
                // Built below, once their members are.
                ActionSpec::ClaimGroup(_) => return None,
            };
            Some((name.clone(), action))
        })
        .collect();
    // A group runs its members' claim actions (validation: each is a claim action).
    for (name, spec) in &config.actions {
        if let ActionSpec::ClaimGroup(g) = spec {
            let members = g
                .members
                .iter()
                .filter_map(|m| match actions.get(m) {
                    Some(Action::Claim(c)) => Some((m.clone(), c.clone())),
                    _ => None,
                })
                .collect();
            let group = ClaimGroup::new(g.clone(), members, claim_env.clone(), deps.holds.clone());
            actions.insert(name.clone(), Action::Group(group));
        }
    }
    let mut probes = HashMap::new();
    for rule in &config.rules {
        let probe = match &rule.check {
            CheckSpec::Http(h) => Probe::http(h.clone(), rule.recover_after),
            CheckSpec::Haproxy(h) => Probe::Haproxy(h.clone()),
            CheckSpec::Egress(e) => Probe::Egress(e.clone()),
            c @ (CheckSpec::Tcp(_)
            | CheckSpec::Program(_)
            | CheckSpec::Process(_)
            | CheckSpec::File(_)) => Probe::Plain(c.clone()),
            CheckSpec::BackendSync(spec) => {
                let source = sync::source(spec, &http, discovery, dry_run, &metrics, &deps.queues)
                    .ok_or(BuildError::AwsNotStarted)?;
                let syncer = Syncer::new(
                    rule,
                    (**spec).clone(),
                    source,
                    stop_rx.clone(),
                    dry_run,
                    &deps.haproxy,
                )
                .with_identity(claim_env.identity.clone());
                Probe::sync(rule, spec, syncer)
            }
        };
        probes.insert(rule.name.clone(), (probe, metrics.rule_series(&rule.name)));
    }
    Ok(Generation {
        live: Arc::new(Live {
            http,
            actions,
            probes,
            board: deps.board.clone(),
            store: deps.store.clone(),
            metrics,
            history: deps.history.clone(),
            rules: config.rules.clone(),
            egress: config.egress.clone(),
            in_flight: deps.in_flight.clone(),
        }),
        stop,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needs(toml: &str, dry_run: bool) -> Needs {
        let config = crate::config::from_sources(&[("t.toml".into(), toml.to_string())])
            .unwrap_or_else(|e| panic!("test config invalid: {e}"));
        Needs::of(&config, dry_run)
    }

    #[test]
    fn only_claims_alerts_and_auto_scaling_sources_need_aws() {
        let exec_only = r#"
            [rules.web]
            check = { type = "http", url = "http://127.0.0.1:1/" }
            on_fail = ["hook"]
            [actions.hook]
            type = "exec"
            command = ["/bin/true"]
        "#;
        assert!(!needs(exec_only, false).aws);
        let sns = r#"
            [rules.web]
            check = { type = "http", url = "http://127.0.0.1:1/" }
            on_fail = ["page"]
            [actions.page]
            type = "sns"
            topic_arn = "arn:aws:sns:us-east-1:123456789012:t"
        "#;
        assert!(needs(sns, false).aws);
        // A dry run makes no call for an alert.
        assert!(!needs(sns, true).aws);
    }
}
