//! `type = "claim_eip"`: move an Elastic IP onto this node, safely. This file decides; the
//! calls that read and move the address live in one file per provider: `ec2.rs` (the default)
//! and `opsworks.rs`.
//!
//! In order, stopping at the first gate that does not pass:
//! 1. hold-down: this node moved the EIP, or lost a race for it, or saw another node take it
//!    over while this rule was failing, less than `hold_down` ago; unless nobody holds the
//!    EIP now (e.g. a claim cut between releasing and associating): with no holder there is
//!    nobody to ping-pong with, so the other gates decide alone;
//! 2. the local HAProxy must be ready (a node that cannot serve must not take the traffic);
//! 3. read the current owner; if the EIP is already here: done; if it changed since the rule
//!    started failing (read then, in the background), another node has taken over: leave it;
//! 4. verify egress through checkip: a well-formed address that is not the EIP itself;
//! 5. probe the local HAProxy again and run the rule's check once more: if it passes now,
//!    someone else fixed it;
//! 6. claim through the provider; a node that loses a race starts a hold-down instead of
//!    fighting back;
//! 7. verify (the provider shows the EIP here) and queue one SNS alert.
//!
//! The claim is saved in the state directory before its first mutating call and forgotten,
//! together with queueing its alert, once settled. A claim the process died in is settled at
//! the next start ([`ClaimEip::reconcile`]): the owner is read, and a move that completed is
//! announced then; so every move is announced exactly once, across crashes.

mod ec2;
mod opsworks;

use super::alerts::{Alert, Alerter};
use super::notify::sns_subject;
use super::{ActionContext, ActionOutcome};
use crate::checks::{self, checkip, haproxy};
use crate::config::{ClaimEipSpec, ClaimProvider, EgressSettings, EipRef, HaproxyProbeSpec};
use crate::providers::aws::ec2::{AddressState, Ec2};
use crate::providers::aws::imds::{IdentityError, IdentitySource};
use crate::providers::aws::opsworks::{ElasticIpState, OpsWorks, OpsworksIdentity};
use crate::providers::aws::AwsError;
use crate::state::{PendingClaim, StateStore};
use crate::telemetry;
use crate::telemetry::events;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// What a claim needs from the rest of the daemon; shared by every claim action.
pub struct ClaimEnv {
    /// None in dry-run mode: every AWS call is logged instead of made.
    pub ec2: Option<Ec2>,
    /// None in dry-run mode.
    pub opsworks: Option<OpsWorks>,
    pub opsworks_identity: Arc<OpsworksIdentity>,
    pub http: reqwest::Client,
    pub egress: EgressSettings,
    pub haproxy: HaproxyProbeSpec,
    pub identity: Arc<IdentitySource>,
    pub alerter: Alerter,
    pub subject_prefix: String,
    /// How long to wait for DescribeAddresses to show a new association (EC2 reads are
    /// eventually consistent).
    pub verify_for: Duration,
    /// True once the daemon is stopping: no new claim starts then.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Claims that have started changing EC2; the daemon waits for them before it exits.
    pub in_flight: InFlight,
}

/// When each Elastic IP last moved, by this node's hand or under its eyes: the hold-downs.
/// Kept by the daemon across configuration reloads, so a reload never resets one.
/// Saved in the state directory too, so a restart (even after `kill -9`) keeps them.
#[derive(Clone, Default)]
pub struct HoldDowns {
    map: Arc<std::sync::Mutex<std::collections::HashMap<EipRef, Arc<Mutex<Option<Instant>>>>>>,
    store: StateStore,
}

impl HoldDowns {
    pub fn new(store: StateStore) -> Self {
        HoldDowns {
            map: Arc::default(),
            store,
        }
    }

    /// The last move of `eip`: this run's, or the saved one from before a restart.
    pub fn for_eip(&self, eip: &EipRef) -> Arc<Mutex<Option<Instant>>> {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(eip.clone())
            .or_insert_with(|| {
                let saved = self
                    .store
                    .moved_ago(&eip.to_string())
                    .map(|ago| Instant::now().checked_sub(ago).unwrap_or_else(Instant::now));
                Arc::new(Mutex::new(saved))
            })
            .clone()
    }

    /// Save that `eip` moved now (the caller sets the in-memory time under its lock).
    fn record(&self, eip: &EipRef) {
        self.store.moved(&eip.to_string());
    }

    /// Save that a claim of `eip` is about to change the provider (its hold-down starts too).
    fn claim_started(&self, eip: &EipRef, claim: PendingClaim) {
        self.store.claim_started(&eip.to_string(), claim);
    }

    /// Forget the claim of `eip`, queueing `alert` in the same write; the saved alert's id.
    fn claim_settled(&self, eip: &EipRef, alert: Option<&Alert>) -> u64 {
        self.store.claim_settled(
            &eip.to_string(),
            alert.map(|a| (a.topic_arn.as_str(), a.subject.as_str(), a.message.as_str())),
        )
    }
}

/// Counts tasks that must run to completion; shutdown waits until none is left.
#[derive(Clone, Default)]
pub struct InFlight(Arc<(std::sync::atomic::AtomicUsize, tokio::sync::Notify)>);

impl InFlight {
    fn enter(&self) -> InFlightGuard {
        self.0 .0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlightGuard(self.clone())
    }

    /// Wait until no guarded task is running.
    pub async fn idle(&self) {
        loop {
            let notified = self.0 .1.notified();
            if self.0 .0.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

struct InFlightGuard(InFlight);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self
            .0
             .0
             .0
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.0 .0 .1.notify_waiters();
        }
    }
}

pub struct ClaimEip {
    spec: ClaimEipSpec,
    env: Arc<ClaimEnv>,
    /// None in dry-run mode.
    api: Option<Api>,
    /// Serializes claims of this EIP on this node; holds the time it last moved.
    last_move: Arc<Mutex<Option<Instant>>>,
    holds: HoldDowns,
    /// The owner seen when the rule started failing (or at the last attempt): if it has
    /// changed by the time we claim, another node took over meanwhile.
    seen: Arc<std::sync::Mutex<Option<Option<String>>>>,
}

/// The API a claim goes through.
#[derive(Clone)]
enum Api {
    Ec2(Ec2),
    OpsWorks(OpsWorks),
}

/// Who holds the EIP, in the terms every provider shares.
#[derive(Debug, Clone)]
pub(crate) struct Owner {
    /// Changes whenever the EIP moves: EC2's AssociationId, or the OpsWorks instance id.
    token: Option<String>,
    /// For logs and alerts: `i-0abc (eni-0def, 10.0.0.5)`, `OpsWorks instance ...`, `nobody`.
    holder: String,
    public_ip: Option<Ipv4Addr>,
    state: Read,
}

/// A provider's own answer, which its move needs.
#[derive(Debug, Clone)]
pub(crate) enum Read {
    Ec2(AddressState),
    OpsWorks(ElasticIpState),
}

/// Where this node would put the EIP.
#[derive(Debug, Clone)]
enum Target {
    Ec2(ec2::Target),
    /// This node's OpsWorks instance id.
    OpsWorks(String),
}

impl Target {
    fn describe(&self) -> String {
        match self {
            Target::Ec2(t) => t.describe(),
            Target::OpsWorks(id) => format!("OpsWorks instance {id}"),
        }
    }

    fn instance_id(&self) -> &str {
        match self {
            Target::Ec2(t) => &t.instance_id,
            Target::OpsWorks(id) => id,
        }
    }

    fn holds(&self, owner: &Owner) -> bool {
        match (self, &owner.state) {
            (Target::Ec2(t), Read::Ec2(a)) => ec2::is_on(a, t),
            (Target::OpsWorks(id), Read::OpsWorks(e)) => e.instance_id.as_deref() == Some(id),
            _ => false,
        }
    }
}

impl Api {
    async fn read(&self, eip: &EipRef) -> Result<Owner, AwsError> {
        match self {
            Api::Ec2(c) => ec2::read(c, eip).await,
            Api::OpsWorks(c) => opsworks::read(c, eip).await,
        }
    }

    async fn take(
        &self,
        eip: &EipRef,
        before: &Owner,
        target: &Target,
        verify_for: Duration,
    ) -> MoveResult {
        match (self, &before.state, target) {
            (Api::Ec2(c), Read::Ec2(a), Target::Ec2(t)) => {
                ec2::take(c, eip, a, t, verify_for).await
            }
            (Api::OpsWorks(c), Read::OpsWorks(e), Target::OpsWorks(id)) => {
                opsworks::take(c, e, id, verify_for).await
            }
            _ => MoveResult::Failed("internal error: provider, owner and target disagree".into()),
        }
    }
}

/// What the state directory keeps of a claim about to change the provider.
fn pending_claim(target: &Target, alert: Option<&Alert>) -> PendingClaim {
    let (eni, ip) = match target {
        Target::Ec2(t) => (Some(t.eni.clone()), Some(t.private_ip.to_string())),
        Target::OpsWorks(_) => (None, None),
    };
    PendingClaim {
        provider: match target {
            Target::Ec2(_) => "ec2",
            Target::OpsWorks(_) => "opsworks",
        }
        .to_owned(),
        instance_id: target.instance_id().to_owned(),
        network_interface_id: eni,
        private_ip: ip,
        alert: alert.map(|a| (a.topic_arn.clone(), a.subject.clone(), a.message.clone())),
        started_at: 0,
    }
}

/// The address as alerts name it: with its allocation id where EC2 gave one.
fn address_label(eip: &EipRef, owner: &Owner) -> String {
    match &owner.state {
        Read::Ec2(a) => format!("{eip} ({})", a.allocation_id),
        Read::OpsWorks(_) => eip.to_string(),
    }
}

fn refused(reason: &'static str, detail: String) -> ActionOutcome {
    telemetry::incr("claims_refused_total", &[("reason", reason)]);
    ActionOutcome::Refused { reason, detail }
}

impl ClaimEip {
    pub fn new(spec: ClaimEipSpec, env: Arc<ClaimEnv>, holds: &HoldDowns) -> Self {
        let api = match spec.provider {
            ClaimProvider::Ec2 => env.ec2.clone().map(Api::Ec2),
            ClaimProvider::OpsWorks => env.opsworks.clone().map(Api::OpsWorks),
        };
        ClaimEip {
            last_move: holds.for_eip(&spec.eip),
            holds: holds.clone(),
            spec,
            env,
            api,
            seen: Arc::default(),
        }
    }

    /// Note who holds the EIP now, in the background: the rule guarding it just started failing.
    pub fn note_owner(&self) {
        let Some(api) = self.api.clone() else {
            return;
        };
        let (eip, seen) = (self.spec.eip.clone(), self.seen.clone());
        tokio::spawn(async move {
            if let Ok(now) = api.read(&eip).await {
                *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(now.token);
            }
        });
    }

    /// Where this node would put the EIP: from `[node]` or instance metadata for EC2, from
    /// `[opsworks]` or the agent's file for OpsWorks.
    async fn target(&self) -> Result<Target, ActionOutcome> {
        match self.spec.provider {
            ClaimProvider::OpsWorks => match self.env.opsworks_identity.get().await {
                Ok(id) => Ok(Target::OpsWorks(id.to_owned())),
                Err(e) => Err(ActionOutcome::Error(format!(
                    "cannot tell which OpsWorks instance this is: {e}"
                ))),
            },
            ClaimProvider::Ec2 => {
                let me = self.env.identity.get().await.map_err(|e| match e {
                    // Already reported when the lookup failed; not an error every cycle.
                    IdentityError::BackingOff(e) => refused(
                        "identity_unavailable",
                        format!("cannot tell which node this is: {e}"),
                    ),
                    IdentityError::Lookup(e) => {
                        ActionOutcome::Error(format!("cannot tell which node this is: {e}"))
                    }
                })?;
                let target = ec2::Target {
                    instance_id: me.instance_id.clone(),
                    eni: me.network_interface_id.clone(),
                    private_ip: self.spec.private_ip.unwrap_or(me.private_ip),
                };
                if !me.private_ips.is_empty() && !me.private_ips.contains(&target.private_ip) {
                    return Err(ActionOutcome::Error(format!(
                        "private_ip {} is not assigned to {} (it has {:?}): assign it as a secondary private IP first",
                        target.private_ip, target.eni, me.private_ips
                    )));
                }
                Ok(Target::Ec2(target))
            }
        }
    }

    pub async fn run(&self, ctx: &ActionContext) -> ActionOutcome {
        let mut last_move = self.last_move.lock().await;
        let eip = &self.spec.eip;
        let env = &self.env;

        if let Some(at) = *last_move {
            let since = at.elapsed();
            if since < self.spec.hold_down {
                // A hold-down damps ping-pong between nodes; with nobody holding the EIP there
                // is no one to ping-pong with, and waiting only prolongs the outage.
                let now = match &self.api {
                    Some(api) => api.read(eip).await.ok(),
                    None => None,
                };
                if let (Some(owner), Ok(target)) = (&now, self.target().await) {
                    if target.holds(owner) {
                        return ActionOutcome::NoOp(format!(
                            "{eip} is already on this node, {}",
                            target.describe()
                        ));
                    }
                }
                if now.is_none_or(|o| o.token.is_some()) {
                    return refused(
                        "hold_down",
                        format!(
                            "{eip} moved {} ago; hold-down allows the next claim in {}",
                            fmt_secs(since),
                            fmt_secs(self.spec.hold_down - since)
                        ),
                    );
                }
                tracing::warn!(event = events::HOLD_DOWN_SKIPPED, rule = %ctx.rule, action = %self.spec.name, eip = %eip,
                    "nobody holds the EIP: claiming despite the hold-down");
            }
        }

        let local = haproxy::probe(&env.haproxy, &env.http).await;
        if !local.ok {
            return refused(
                "local_haproxy_unhealthy",
                format!("local HAProxy is not ready: {}", local.detail),
            );
        }

        let target = match self.target().await {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };

        let Some(api) = &self.api else {
            return self.dry_run(&target).await;
        };

        let before = match api.read(eip).await {
            Ok(a) => a,
            Err(e) => return ActionOutcome::Error(e.to_string()),
        };
        if target.holds(&before) {
            return ActionOutcome::NoOp(format!(
                "{eip} is already on this node, {}",
                target.describe()
            ));
        }
        // Moved since our failures began? Then they were about the previous holder, and another
        // node has just taken over: moving it again would only add an outage.
        let earlier = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(before.token.clone());
        // Nobody holding it now is no takeover (our own cut claim, or a release): the other
        // gates decide, and a hold-down would only keep the address dark.
        if let Some(earlier) = earlier.filter(|_| before.token.is_some()) {
            if earlier != before.token {
                *last_move = Some(Instant::now());
                self.holds.record(&self.spec.eip);
                return refused("moved_meanwhile", format!(
                    "{eip} moved to {} after this rule started failing: another node took over; leaving it there for the hold-down",
                    before.holder
                ));
            }
        }

        let egress = match checkip::egress_ip(
            &env.http,
            &env.egress.checkip_url,
            env.egress.timeout,
        )
        .await
        {
            Ok(ip) => ip,
            Err(e) => {
                telemetry::incr("egress_check_failures_total", &[("reason", e.reason())]);
                return refused(
                    e.reason(),
                    format!("egress not verified, not claiming {eip}: {e}"),
                );
            }
        };
        tracing::info!(event = events::EGRESS_VERIFIED, rule = %ctx.rule, action = %self.spec.name, egress_ip = %egress);
        if before.public_ip == Some(egress) {
            return ActionOutcome::NoOp(format!(
                "checkip says this node's traffic already leaves from {egress}: the EIP is ours (the API says it is on {})",
                before.holder
            ));
        }

        // Last look before the mutation: our own HAProxy may have died while we asked around,
        // and if another node fixed things since our check failed, taking the EIP from it
        // would turn its repair into a new outage.
        if *env.stopping.borrow() {
            return refused(
                "shutting_down",
                format!("the daemon is stopping; not claiming {eip}"),
            );
        }
        let local = haproxy::probe(&env.haproxy, &env.http).await;
        if !local.ok {
            return refused(
                "local_haproxy_unhealthy",
                format!("local HAProxy is not ready: {}", local.detail),
            );
        }
        if let Some((check, timeout)) = &ctx.recheck {
            if let Ok(o) = tokio::time::timeout(*timeout, checks::run(check, &env.http)).await {
                if o.ok {
                    return refused(
                        "check_passes_again",
                        format!(
                            "the rule's check passes again ({}); {eip} stays on {}",
                            o.detail, before.holder
                        ),
                    );
                }
            }
        }

        // From the first mutating call to the verified association the claim runs in its own
        // task: a shutdown must not cut it between releasing the EIP and taking it.
        // Saved before the first mutating call: if the process dies mid-claim, the restarted
        // daemon is in hold-down (unless nobody holds the EIP) and reads who holds it, to
        // announce a move that completed (`reconcile`).
        let topic = self.spec.sns_topic_arn.clone();
        let subject = sns_subject(
            &env.subject_prefix,
            &format!("{} took over {eip}", target.instance_id()),
        );
        let draft = |association: &str, verified: &str| {
            topic.as_ref().map(|t| Alert {
                topic_arn: t.clone(),
                subject: subject.clone(),
                message: alert_text(
                    &address_label(eip, &before),
                    &before.holder,
                    &target,
                    association,
                    egress,
                    ctx,
                    verified,
                ),
            })
        };
        self.holds.claim_started(
            eip,
            pending_claim(
                &target,
                draft(
                    "",
                    "found on this node after the daemon restarted mid-claim",
                )
                .as_ref(),
            ),
        );
        let guard = env.in_flight.enter();
        let task = tokio::spawn({
            let (api, eip, before, target, verify_for) = (
                api.clone(),
                eip.clone(),
                before.clone(),
                target.clone(),
                env.verify_for,
            );
            async move {
                let _guard = guard;
                api.take(&eip, &before, &target, verify_for).await
            }
        });
        let (association, verified) = match task.await {
            Ok(MoveResult::Moved(a, v)) => (a, v),
            Ok(MoveResult::Lost(detail)) => {
                *last_move = Some(Instant::now());
                self.holds.record(&self.spec.eip);
                self.holds.claim_settled(eip, None);
                return refused("lost_race", detail);
            }
            Ok(MoveResult::Failed(e)) => {
                self.holds.claim_settled(eip, None);
                return ActionOutcome::Error(e);
            }
            // Left saved: the next start reads the owner and settles it.
            Err(e) => return ActionOutcome::Error(format!("claim task failed: {e}")),
        };
        *last_move = Some(Instant::now());
        self.holds.record(&self.spec.eip);
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let verified = match verified {
            Verified::Yes => "verified",
            Verified::Lost(holder) => {
                self.holds.claim_settled(eip, None);
                return refused(
                    "lost_race",
                    format!("{eip} was associated with {holder} right after our claim"),
                );
            }
            Verified::Unknown(why) => {
                tracing::warn!(event = events::CLAIM_UNVERIFIED, rule = %ctx.rule, eip = %eip, detail = %why);
                "not verified"
            }
        };
        telemetry::incr("claims_total", &[]);
        let association = association.unwrap_or_default();
        tracing::info!(event = events::EIP_CLAIMED, rule = %ctx.rule, action = %self.spec.name, eip = %eip,
            provider = self.spec.provider.name(), from = %before.holder, to = %target.describe(),
            association = %association, verified);

        let alert = draft(&association, verified);
        let id = self.holds.claim_settled(eip, alert.as_ref());
        if let Some(alert) = alert {
            env.alerter.resend(id, alert);
        }
        ActionOutcome::Done(format!(
            "claimed {eip} from {} onto {} ({verified})",
            before.holder,
            target.describe()
        ))
    }

    /// Settle a claim the previous run had under way when it died: read who holds the EIP
    /// (retrying with backoff until a read succeeds or the daemon stops); if the move
    /// completed, queue the alert it never sent. Runs in the background until settled or
    /// `stopping` turns true (the daemon stops; a reload does not stop it).
    pub fn reconcile(&self, claim: PendingClaim, mut stopping: tokio::sync::watch::Receiver<bool>) {
        let Some(api) = self.api.clone() else {
            return; // a dry run changes nothing, the state file included
        };
        if claim.provider != self.spec.provider.name() {
            tracing::warn!(event = events::CLAIM_UNSETTLED, eip = %self.spec.eip, saved = %claim.provider,
                now = self.spec.provider.name(), "the claim was made through another provider; forgetting it");
            self.holds.claim_settled(&self.spec.eip, None);
            return;
        }
        let target = match (&self.spec.provider, &claim) {
            (ClaimProvider::OpsWorks, c) => Target::OpsWorks(c.instance_id.clone()),
            (ClaimProvider::Ec2, c) => match (
                &c.network_interface_id,
                c.private_ip.as_deref().and_then(|p| p.parse().ok()),
            ) {
                (Some(eni), Some(private_ip)) => Target::Ec2(ec2::Target {
                    instance_id: c.instance_id.clone(),
                    eni: eni.clone(),
                    private_ip,
                }),
                _ => {
                    tracing::error!(event = events::CLAIM_UNSETTLED, eip = %self.spec.eip,
                        "the saved claim lacks its ENI or private IP; forgetting it");
                    self.holds.claim_settled(&self.spec.eip, None);
                    return;
                }
            },
        };
        let (eip, holds, alerter) = (
            self.spec.eip.clone(),
            self.holds.clone(),
            self.env.alerter.clone(),
        );
        // Claims of this EIP wait until the saved one is settled: otherwise a claim of the
        // restarted rule and this settling could both announce the same move.
        let claims_wait = self.last_move.clone().try_lock_owned().ok();
        tokio::spawn(async move {
            let _claims_wait = claims_wait;
            let mut backoff = Duration::from_secs(1);
            let owner = loop {
                match api.read(&eip).await {
                    Ok(o) => break o,
                    Err(e) => {
                        tracing::warn!(event = events::CLAIM_UNSETTLED, eip = %eip, error = %e,
                            retry_in_s = backoff.as_secs(), "cannot read who holds the EIP yet");
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopping.wait_for(|s| *s) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            };
            if target.holds(&owner) {
                let alert = claim.alert.map(|(topic_arn, subject, message)| Alert {
                    topic_arn,
                    subject,
                    message,
                });
                let id = holds.claim_settled(&eip, alert.as_ref());
                tracing::info!(event = events::CLAIM_FOUND_AFTER_RESTART, eip = %eip, to = %target.describe(),
                    alert = alert.is_some(), "the claim the last run had under way completed; announcing it now");
                if let Some(alert) = alert {
                    alerter.resend(id, alert);
                }
            } else {
                holds.claim_settled(&eip, None);
                tracing::info!(event = events::CLAIM_NOT_COMPLETED, eip = %eip, holder = %owner.holder,
                    "the claim the last run had under way did not complete");
            }
        });
    }

    /// Everything up to the first AWS call runs for real; the AWS calls are logged.
    async fn dry_run(&self, target: &Target) -> ActionOutcome {
        let eip = &self.spec.eip;
        let read = match target {
            Target::Ec2(_) => "ec2:DescribeAddresses",
            Target::OpsWorks(_) => "opsworks:DescribeElasticIps",
        };
        tracing::info!(event = events::DRY_RUN, call = read, eip = %eip);
        let egress = checkip::egress_ip(
            &self.env.http,
            &self.env.egress.checkip_url,
            self.env.egress.timeout,
        )
        .await;
        match &egress {
            Ok(ip) => {
                tracing::info!(event = events::EGRESS_VERIFIED, egress_ip = %ip, dry_run = true)
            }
            Err(e) => {
                return refused(
                    e.reason(),
                    format!("dry run: egress not verified, would not claim {eip}: {e}"),
                )
            }
        }
        match target {
            Target::Ec2(t) => {
                tracing::info!(event = events::DRY_RUN, call = "ec2:DisassociateAddress", eip = %eip, note = "by the AssociationId read, if the EIP is associated elsewhere");
                tracing::info!(event = events::DRY_RUN, call = "ec2:AssociateAddress", eip = %eip, eni = %t.eni,
                    private_ip = %t.private_ip, allow_reassociation = false);
            }
            Target::OpsWorks(id) => {
                tracing::info!(event = events::DRY_RUN, call = "opsworks:AssociateElasticIp", eip = %eip, instance_id = %id);
            }
        }
        if let Some(topic) = &self.spec.sns_topic_arn {
            tracing::info!(event = events::DRY_RUN, call = "sns:Publish", topic = %topic);
        }
        ActionOutcome::NoOp(format!(
            "dry run: would claim {eip} onto {}",
            target.describe()
        ))
    }
}

pub(crate) enum Verified {
    Yes,
    Lost(String),
    Unknown(String),
}

/// Read the provider until `judge` settles the claim (Some) or `within` runs out; reads are
/// eventually consistent, so None means "look again". The last read error, if any, explains
/// an unsettled end; `unseen` does otherwise.
async fn verify_until<S, F, Fut>(
    within: Duration,
    unseen: &str,
    mut read: F,
    mut judge: impl FnMut(S) -> Option<Verified>,
) -> Verified
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<S, AwsError>>,
{
    let deadline = Instant::now() + within;
    let mut last_error = None;
    loop {
        match read().await {
            Ok(state) => {
                if let Some(v) = judge(state) {
                    return v;
                }
            }
            Err(e) => last_error = Some(e.to_string()),
        }
        if Instant::now() >= deadline {
            return Verified::Unknown(last_error.unwrap_or_else(|| unseen.to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub(crate) enum MoveResult {
    /// Moved: EC2's new AssociationId (OpsWorks gives none), and whether a read confirmed it.
    Moved(Option<String>, Verified),
    /// Another node holds it now.
    Lost(String),
    Failed(String),
}

fn fmt_secs(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs().max(1))).to_string()
}

fn alert_text(
    address: &str,
    from: &str,
    target: &Target,
    association: &str,
    egress: Ipv4Addr,
    ctx: &ActionContext,
    verified: &str,
) -> String {
    let now_on = match association {
        "" => format!("{} ({verified})", target.describe()),
        a => format!("{} (association {a}, {verified})", target.describe()),
    };
    format!(
        "Instance {} took over Elastic IP {address} from {from}.\n\
         Now on: {now_on}.\n\
         Why: rule {} failed {} consecutive checks; last: {}.\n\
         Egress verified: this node's traffic leaves from {egress}.\n\
         Time: {}\n",
        target.instance_id(),
        ctx.rule,
        ctx.consecutive,
        ctx.detail,
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
    )
}
