//! `type = "claim_eip"`: move an Elastic IP onto this node, safely.
//!
//! In order, stopping at the first gate that does not pass:
//! 1. hold-down: this node moved the EIP, or lost a race for it, or saw another node take it
//!    over while this rule was failing, less than `hold_down` ago;
//! 2. the local HAProxy must be ready (a node that cannot serve must not take the traffic);
//! 3. read the current association; if the EIP is already on our ENI and private IP: done; if
//!    it changed since the rule started failing (read then, in the background), another node
//!    has taken over: leave it;
//! 4. verify egress through checkip: a well-formed address that is not the EIP itself;
//! 5. probe the local HAProxy again and run the rule's check once more: if it passes now,
//!    someone else fixed it;
//! 6. claim: release the association we read *by its AssociationId*, then associate with
//!    `AllowReassociation=false`. Of two nodes racing, the second release fails with
//!    `InvalidAssociationID.NotFound` or the second associate with `Resource.AlreadyAssociated`:
//!    exactly one wins, and the loser starts a hold-down instead of fighting back;
//! 7. verify (DescribeAddresses shows our AssociationId) and queue one SNS alert.

use super::alerts::{Alert, Alerter};
use super::notify::sns_subject;
use super::{ActionContext, ActionOutcome};
use crate::checks::{self, checkip, haproxy};
use crate::config::{ClaimEipSpec, EgressSettings, EipRef, HaproxyProbeSpec};
use crate::providers::aws::ec2::{AddressState, Ec2};
use crate::providers::aws::imds::IdentitySource;
use crate::state::StateStore;
use crate::telemetry;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// What a claim needs from the rest of the daemon; shared by every claim action.
pub struct ClaimEnv {
    /// None in dry-run mode: every AWS call is logged instead of made.
    pub ec2: Option<Ec2>,
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
    /// Serializes claims of this EIP on this node; holds the time it last moved.
    last_move: Arc<Mutex<Option<Instant>>>,
    holds: HoldDowns,
    /// The association seen when the rule started failing (or at the last attempt): if it has
    /// changed by the time we claim, another node took over meanwhile.
    seen: Arc<std::sync::Mutex<Option<Option<String>>>>,
}

/// Where the EIP should end up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub instance_id: String,
    pub eni: String,
    pub private_ip: Ipv4Addr,
}

impl Target {
    fn describe(&self) -> String {
        format!("{} ({}, {})", self.instance_id, self.eni, self.private_ip)
    }
}

/// Is the address already where we want it?
pub fn is_on(addr: &AddressState, target: &Target) -> bool {
    addr.network_interface_id.as_deref() == Some(target.eni.as_str())
        && addr.private_ip == Some(target.private_ip)
}

fn refused(reason: &'static str, detail: String) -> ActionOutcome {
    telemetry::incr("claims_refused_total", &[("reason", reason)]);
    ActionOutcome::Refused { reason, detail }
}

impl ClaimEip {
    pub fn new(spec: ClaimEipSpec, env: Arc<ClaimEnv>, holds: &HoldDowns) -> Self {
        ClaimEip {
            last_move: holds.for_eip(&spec.eip),
            holds: holds.clone(),
            spec,
            env,
            seen: Arc::default(),
        }
    }

    /// Note who holds the EIP now, in the background: the rule guarding it just started failing.
    pub fn note_owner(&self) {
        let Some(ec2) = self.env.ec2.clone() else {
            return;
        };
        let (eip, seen) = (self.spec.eip.clone(), self.seen.clone());
        tokio::spawn(async move {
            if let Ok(now) = ec2.describe(&eip).await {
                *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(now.association_id);
            }
        });
    }

    pub async fn run(&self, ctx: &ActionContext) -> ActionOutcome {
        let mut last_move = self.last_move.lock().await;
        let eip = &self.spec.eip;
        let env = &self.env;

        if let Some(at) = *last_move {
            let since = at.elapsed();
            if since < self.spec.hold_down {
                return refused(
                    "hold_down",
                    format!(
                        "{eip} moved {} ago; hold-down allows the next claim in {}",
                        fmt_secs(since),
                        fmt_secs(self.spec.hold_down - since)
                    ),
                );
            }
        }

        let local = haproxy::probe(&env.haproxy, &env.http).await;
        if !local.ok {
            return refused(
                "local_haproxy_unhealthy",
                format!("local HAProxy is not ready: {}", local.detail),
            );
        }

        let me = match env.identity.get().await {
            Ok(me) => me,
            Err(e) => return ActionOutcome::Error(format!("cannot tell which node this is: {e}")),
        };
        let target = Target {
            instance_id: me.instance_id.clone(),
            eni: me.network_interface_id.clone(),
            private_ip: self.spec.private_ip.unwrap_or(me.private_ip),
        };
        if !me.private_ips.is_empty() && !me.private_ips.contains(&target.private_ip) {
            return ActionOutcome::Error(format!(
                "private_ip {} is not assigned to {} (it has {:?}): assign it as a secondary private IP first",
                target.private_ip, target.eni, me.private_ips
            ));
        }

        let Some(ec2) = &env.ec2 else {
            return self.dry_run(&target).await;
        };

        let before = match ec2.describe(eip).await {
            Ok(a) => a,
            Err(e) => return ActionOutcome::Error(e.to_string()),
        };
        if is_on(&before, &target) {
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
            .replace(before.association_id.clone());
        if let Some(earlier) = earlier {
            if earlier != before.association_id {
                *last_move = Some(Instant::now());
                self.holds.record(&self.spec.eip);
                return refused("moved_meanwhile", format!(
                    "{eip} moved to {} after this rule started failing: another node took over; leaving it there for the hold-down",
                    before.holder()
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
        tracing::info!(event = "egress_verified", rule = %ctx.rule, action = %self.spec.name, egress_ip = %egress);
        if before.public_ip == Some(egress) {
            return ActionOutcome::NoOp(format!(
                "checkip says this node's traffic already leaves from {egress}: the EIP is ours (EC2 says it is on {})",
                before.holder()
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
                            o.detail,
                            before.holder()
                        ),
                    );
                }
            }
        }

        // From the first mutating call to the verified association the claim runs in its own
        // task: a shutdown must not cut it between releasing the EIP and taking it.
        // Saved before the first mutating call: if the process dies mid-claim, the restarted
        // daemon is in hold-down and does not claim a second time.
        self.holds.record(&self.spec.eip);
        let guard = env.in_flight.enter();
        let task = tokio::spawn({
            let (ec2, eip, before, target, verify_for) = (
                ec2.clone(),
                eip.clone(),
                before.clone(),
                target.clone(),
                env.verify_for,
            );
            async move {
                let _guard = guard;
                let result = move_eip(&ec2, &eip, &before, &target).await;
                match result {
                    Ok(association) => {
                        let verified = verify(&ec2, &eip, &association, &before, verify_for).await;
                        MoveResult::Moved(association, verified)
                    }
                    Err(e) => e,
                }
            }
        });
        let (association, verified) = match task.await {
            Ok(MoveResult::Moved(a, v)) => (a, v),
            Ok(MoveResult::Lost(detail)) => {
                *last_move = Some(Instant::now());
                self.holds.record(&self.spec.eip);
                return refused("lost_race", detail);
            }
            Ok(MoveResult::Failed(e)) => return ActionOutcome::Error(e),
            Err(e) => return ActionOutcome::Error(format!("claim task failed: {e}")),
        };
        *last_move = Some(Instant::now());
        self.holds.record(&self.spec.eip);
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let verified = match verified {
            Verified::Yes => "verified",
            Verified::Lost(holder) => {
                return refused(
                    "lost_race",
                    format!("{eip} was associated with {holder} right after our claim"),
                );
            }
            Verified::Unknown(why) => {
                tracing::warn!(event = "claim_unverified", rule = %ctx.rule, eip = %eip, detail = %why);
                "not verified"
            }
        };
        telemetry::incr("claims_total", &[]);
        tracing::info!(event = "eip_claimed", rule = %ctx.rule, action = %self.spec.name, eip = %eip,
            from = %before.holder(), to = %target.describe(), association = %association, verified);

        if let Some(topic) = &self.spec.sns_topic_arn {
            env.alerter.send(Alert {
                topic_arn: topic.clone(),
                subject: sns_subject(&format!(
                    "{}: {} took over {eip}",
                    env.subject_prefix, target.instance_id
                )),
                message: alert_text(eip, &before, &target, &association, egress, ctx, verified),
            });
        }
        ActionOutcome::Done(format!(
            "claimed {eip} from {} onto {} ({verified})",
            before.holder(),
            target.describe()
        ))
    }

    /// Everything up to the first AWS call runs for real; the AWS calls are logged.
    async fn dry_run(&self, target: &Target) -> ActionOutcome {
        let eip = &self.spec.eip;
        tracing::info!(event = "dry_run", call = "ec2:DescribeAddresses", eip = %eip);
        let egress = checkip::egress_ip(
            &self.env.http,
            &self.env.egress.checkip_url,
            self.env.egress.timeout,
        )
        .await;
        match &egress {
            Ok(ip) => tracing::info!(event = "egress_verified", egress_ip = %ip, dry_run = true),
            Err(e) => {
                return refused(
                    e.reason(),
                    format!("dry run: egress not verified, would not claim {eip}: {e}"),
                )
            }
        }
        tracing::info!(event = "dry_run", call = "ec2:DisassociateAddress", eip = %eip, note = "by the AssociationId read, if the EIP is associated elsewhere");
        tracing::info!(event = "dry_run", call = "ec2:AssociateAddress", eip = %eip, eni = %target.eni,
            private_ip = %target.private_ip, allow_reassociation = false);
        if let Some(topic) = &self.spec.sns_topic_arn {
            tracing::info!(event = "dry_run", call = "sns:Publish", topic = %topic);
        }
        ActionOutcome::NoOp(format!(
            "dry run: would claim {eip} onto {}",
            target.describe()
        ))
    }
}

enum Verified {
    Yes,
    Lost(String),
    Unknown(String),
}

enum MoveResult {
    Moved(String, Verified),
    /// Another node holds it now.
    Lost(String),
    Failed(String),
}

/// Release the association we read, then associate onto `target` without reassociation.
///
/// `InvalidAssociationID.NotFound` and `Resource.AlreadyAssociated` are ambiguous: another node
/// may have won, or our own call succeeded and the SDK retried it after a timeout. EC2 is asked
/// who holds the EIP now, and that decides.
async fn move_eip(
    ec2: &Ec2,
    eip: &EipRef,
    before: &AddressState,
    target: &Target,
) -> Result<String, MoveResult> {
    if let Some(assoc) = &before.association_id {
        match ec2.disassociate(assoc).await {
            Ok(()) => {}
            Err(e) if e.is_code("InvalidAssociationID.NotFound") => match ec2.describe(eip).await {
                // Released (by us or by a rival): associating without reassociation settles it.
                Ok(now) if now.association_id.is_none() => {}
                Ok(now) => {
                    return Err(MoveResult::Lost(format!(
                        "{eip} was moved to {} while we claimed it ({e})",
                        now.holder()
                    )))
                }
                Err(e2) => return Err(MoveResult::Failed(format!("{e}; then {e2}"))),
            },
            Err(e) => return Err(MoveResult::Failed(e.to_string())),
        }
    }
    match ec2
        .associate(&before.allocation_id, &target.eni, target.private_ip)
        .await
    {
        Ok(a) => Ok(a),
        Err(e) if e.is_code("Resource.AlreadyAssociated") => match ec2.describe(eip).await {
            Ok(now) if now.network_interface_id.as_deref() == Some(target.eni.as_str()) => now
                .association_id
                .ok_or_else(|| MoveResult::Failed(format!("{e}; and EC2 shows no association id"))),
            Ok(now) => Err(MoveResult::Lost(format!(
                "another node associated {eip} first: it is on {} ({e})",
                now.holder()
            ))),
            Err(e2) => Err(MoveResult::Failed(format!("{e}; then {e2}"))),
        },
        Err(e) => Err(MoveResult::Failed(e.to_string())),
    }
}

/// Wait until DescribeAddresses shows our association (reads are eventually consistent).
async fn verify(
    ec2: &Ec2,
    eip: &EipRef,
    association: &str,
    before: &AddressState,
    within: Duration,
) -> Verified {
    let deadline = Instant::now() + within;
    let mut last_error = String::new();
    loop {
        match ec2.describe(eip).await {
            Ok(now) if now.association_id.as_deref() == Some(association) => return Verified::Yes,
            // Still the old view: look again.
            Ok(now)
                if now.association_id.is_none() || now.association_id == before.association_id => {}
            Ok(now) => return Verified::Lost(now.holder()),
            Err(e) => last_error = e.to_string(),
        }
        if Instant::now() >= deadline {
            return Verified::Unknown(if last_error.is_empty() {
                "DescribeAddresses did not show the new association in time".into()
            } else {
                last_error
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn fmt_secs(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs().max(1))).to_string()
}

fn alert_text(
    eip: &EipRef,
    before: &AddressState,
    target: &Target,
    association: &str,
    egress: Ipv4Addr,
    ctx: &ActionContext,
    verified: &str,
) -> String {
    format!(
        "Instance {} took over Elastic IP {eip} ({}) from {}.\n\
         Now on: {} (association {association}, {verified}).\n\
         Why: rule {} failed {} consecutive checks; last: {}.\n\
         Egress verified: this node's traffic leaves from {egress}.\n\
         Time: {}\n",
        target.instance_id,
        before.allocation_id,
        before.holder(),
        target.describe(),
        ctx.rule,
        ctx.consecutive,
        ctx.detail,
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(eni: Option<&str>, ip: Option<[u8; 4]>) -> AddressState {
        AddressState {
            allocation_id: "eipalloc-1".into(),
            public_ip: Some(Ipv4Addr::new(203, 0, 113, 10)),
            association_id: eni.map(|_| "eipassoc-1".into()),
            instance_id: eni.map(|_| "i-1".into()),
            network_interface_id: eni.map(str::to_owned),
            private_ip: ip.map(Ipv4Addr::from),
        }
    }

    #[test]
    fn ours_only_on_the_same_eni_and_private_ip() {
        let t = Target {
            instance_id: "i-1".into(),
            eni: "eni-a".into(),
            private_ip: Ipv4Addr::new(10, 0, 0, 5),
        };
        assert!(is_on(&addr(Some("eni-a"), Some([10, 0, 0, 5])), &t));
        assert!(
            !is_on(&addr(Some("eni-a"), Some([10, 0, 0, 6])), &t),
            "secondary IP differs"
        );
        assert!(!is_on(&addr(Some("eni-b"), Some([10, 0, 0, 5])), &t));
        assert!(!is_on(&addr(None, None), &t));
        assert_eq!(addr(None, None).holder(), "nobody (unassociated)");
    }
}
