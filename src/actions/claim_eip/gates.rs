//! The gate sequence of a claim, written once for every [`Provider`]: the order in which a
//! node convinces itself that taking the EIP is right, then takes it, verifies, damps and
//! announces (the list is in the module above). The safety of the whole daemon rests on this
//! order; the tests below pin it against a fake provider under paused time.

use super::{
    fmt_secs, refused, Claim, ClaimEnv, HoldDowns, InFlight, LastMove, MoveResult, Owner, Provider,
    Spot, Verified,
};
use crate::actions::alerts::{Alert, Alerter};
use crate::actions::notify::sns_subject;
use crate::actions::{ActionContext, ActionOutcome};
use crate::checks::checkip::{self, EgressError};
use crate::checks::{self, haproxy, Outcome};
use crate::config::{ClaimEipSpec, EgressSettings, HaproxyProbeSpec};
use crate::state::PendingClaim;
use crate::telemetry;
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// What the gates look at on this node besides the provider, and where the alert goes.
pub(crate) trait Local: Send + Sync + 'static {
    /// Probe `[haproxy]` fresh: a node that cannot serve must not take the traffic.
    fn haproxy(&self) -> impl Future<Output = Outcome> + Send;
    /// Which public address this node's traffic leaves from (`[egress] checkip_url`).
    fn egress(&self) -> impl Future<Output = Result<Ipv4Addr, EgressError>> + Send;
    /// The rule's check, run once more within its timeout; None when it timed out.
    fn recheck(
        &self,
        check: &crate::config::CheckSpec,
        timeout: Duration,
    ) -> impl Future<Output = Option<Outcome>> + Send;
    /// True once the daemon is stopping: no claim starts then.
    fn stopping(&self) -> bool;
    /// Queue `alert`, already saved in the state file as `id`.
    fn announce(&self, id: u64, alert: Alert);
}

/// The real node: HTTP probes, checkip, the daemon's stop signal and its alert outbox.
pub(crate) struct LiveLocal {
    http: reqwest::Client,
    egress: EgressSettings,
    haproxy: HaproxyProbeSpec,
    stopping: watch::Receiver<bool>,
    alerter: Alerter,
}

impl LiveLocal {
    pub(crate) fn new(env: &ClaimEnv) -> Self {
        LiveLocal {
            http: env.http.clone(),
            egress: env.egress.clone(),
            haproxy: env.haproxy.clone(),
            stopping: env.stopping.clone(),
            alerter: env.alerter.clone(),
        }
    }
}

impl Local for LiveLocal {
    async fn haproxy(&self) -> Outcome {
        haproxy::probe(&self.haproxy, &self.http).await
    }

    async fn egress(&self) -> Result<Ipv4Addr, EgressError> {
        checkip::egress_ip(&self.http, &self.egress.checkip_url, self.egress.timeout).await
    }

    async fn recheck(
        &self,
        check: &crate::config::CheckSpec,
        timeout: Duration,
    ) -> Option<Outcome> {
        tokio::time::timeout(timeout, checks::run(check, &self.http))
            .await
            .ok()
    }

    fn stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    fn announce(&self, id: u64, alert: Alert) {
        self.alerter.resend(id, alert);
    }
}

/// One `claim_eip` action: its gates, its provider and what it remembers between runs.
pub(crate) struct Gates<P, L> {
    spec: ClaimEipSpec,
    provider: Arc<P>,
    local: Arc<L>,
    subject_prefix: String,
    /// How long the provider may take to show the move (its reads are eventually consistent).
    verify_for: Duration,
    in_flight: InFlight,
    /// Serializes claims of this EIP on this node; holds the time it last moved.
    last_move: LastMove,
    holds: HoldDowns,
    /// The owner seen when the rule started failing (or at the last attempt): if it has
    /// changed by the time we claim, another node took over meanwhile.
    seen: Arc<std::sync::Mutex<Option<Option<String>>>>,
}

impl<P: Provider, L: Local> Gates<P, L> {
    pub(crate) fn new(
        spec: ClaimEipSpec,
        provider: P,
        local: Arc<L>,
        env: &ClaimEnv,
        holds: &HoldDowns,
    ) -> Self {
        Self::with(
            spec,
            provider,
            local,
            env.subject_prefix.clone(),
            env.verify_for,
            env.in_flight.clone(),
            holds,
        )
    }

    fn with(
        spec: ClaimEipSpec,
        provider: P,
        local: Arc<L>,
        subject_prefix: String,
        verify_for: Duration,
        in_flight: InFlight,
        holds: &HoldDowns,
    ) -> Self {
        Gates {
            last_move: holds.for_eip(&spec.eip),
            holds: holds.clone(),
            spec,
            provider: Arc::new(provider),
            local,
            subject_prefix,
            verify_for,
            in_flight,
            seen: Arc::default(),
        }
    }

    fn note_owner(&self) {
        let (provider, eip, seen) = (
            self.provider.clone(),
            self.spec.eip.clone(),
            self.seen.clone(),
        );
        tokio::spawn(async move {
            if let Some(token) = provider.glance(&eip).await {
                *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(token);
            }
        });
    }

    async fn here(&self) -> Result<P::Spot, ActionOutcome> {
        self.provider.here().await.map_err(|e| e.outcome())
    }

    async fn run(&self, ctx: &ActionContext) -> ActionOutcome {
        let mut last_move = self.last_move.lock().await;
        let eip = &self.spec.eip;

        // 1. Hold-down.
        if let Some(at) = *last_move {
            let since = at.elapsed();
            if since < self.spec.hold_down {
                // A hold-down damps ping-pong between nodes; with nobody holding the EIP there
                // is no one to ping-pong with, and waiting only prolongs the outage.
                let now = self.provider.read(eip).await.ok();
                if let (Some(owner), Ok(spot)) = (&now, self.here().await) {
                    if P::holds(&spot, owner) {
                        return ActionOutcome::NoOp(format!(
                            "{eip} is already on this node, {}",
                            spot.describe()
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
                tracing::warn!(event = "hold_down_skipped", rule = %ctx.rule, action = %self.spec.name, eip = %eip,
                    "nobody holds the EIP: claiming despite the hold-down");
            }
        }

        // 2. Local HAProxy.
        let local = self.local.haproxy().await;
        if !local.ok {
            return refused(
                "local_haproxy_unhealthy",
                format!("local HAProxy is not ready: {}", local.detail),
            );
        }

        let spot = match self.here().await {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };

        // 3. Current owner.
        let before = match self.provider.read(eip).await {
            Ok(a) => a,
            Err(e) => return ActionOutcome::Error(e.to_string()),
        };
        if P::holds(&spot, &before) {
            return ActionOutcome::NoOp(format!(
                "{eip} is already on this node, {}",
                spot.describe()
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

        // 4. Egress.
        let egress = match self.local.egress().await {
            Ok(ip) => ip,
            Err(e) if P::DRY_RUN => {
                return refused(
                    e.reason(),
                    format!("dry run: egress not verified, would not claim {eip}: {e}"),
                )
            }
            Err(e) => {
                telemetry::incr("egress_check_failures_total", &[("reason", e.reason())]);
                return refused(
                    e.reason(),
                    format!("egress not verified, not claiming {eip}: {e}"),
                );
            }
        };
        if P::DRY_RUN {
            tracing::info!(event = "egress_verified", egress_ip = %egress, dry_run = true);
        } else {
            tracing::info!(event = "egress_verified", rule = %ctx.rule, action = %self.spec.name, egress_ip = %egress);
        }
        if before.public_ip == Some(egress) {
            return ActionOutcome::NoOp(format!(
                "checkip says this node's traffic already leaves from {egress}: the EIP is ours (the API says it is on {})",
                before.holder
            ));
        }

        // 5. Last look before the mutation: our own HAProxy may have died while we asked
        // around, and if another node fixed things since our check failed, taking the EIP from
        // it would turn its repair into a new outage. A dry run changes nothing to guard.
        if !P::DRY_RUN {
            if let Some(outcome) = self.last_look(ctx, &before).await {
                return outcome;
            }
        }

        // 6. The move. From the first mutating call to the verified association the claim runs
        // in its own task: a shutdown must not cut it between releasing the EIP and taking it.
        // Saved before the first mutating call: if the process dies mid-claim, the restarted
        // daemon is in hold-down (unless nobody holds the EIP) and reads who holds it, to
        // announce a move that completed (`reconcile`).
        let topic = self.spec.sns_topic_arn.clone();
        let subject = sns_subject(
            &self.subject_prefix,
            &format!("{} took over {eip}", spot.instance_id()),
        );
        let draft = |association: &str, verified: &str| {
            topic.as_ref().map(|t| Alert {
                topic_arn: t.clone(),
                subject: subject.clone(),
                message: alert_text(
                    &P::address_label(eip, &before),
                    &before.holder,
                    &spot,
                    association,
                    egress,
                    ctx,
                    verified,
                ),
            })
        };
        self.holds.claim_started(
            eip,
            spot.pending(
                draft(
                    "",
                    "found on this node after the daemon restarted mid-claim",
                )
                .as_ref(),
            ),
        );
        let guard = self.in_flight.enter();
        let task = tokio::spawn({
            let (provider, eip, before, spot, verify_for) = (
                self.provider.clone(),
                eip.clone(),
                before.clone(),
                spot.clone(),
                self.verify_for,
            );
            async move {
                let _guard = guard;
                provider.take(&eip, &before, &spot, verify_for).await
            }
        });

        // 7. Verify, damp, announce.
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
            Ok(MoveResult::Rehearsed) => {
                self.holds.claim_settled(eip, None);
                return ActionOutcome::NoOp(format!(
                    "dry run: would claim {eip} onto {}",
                    spot.describe()
                ));
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
                tracing::warn!(event = "claim_unverified", rule = %ctx.rule, eip = %eip, detail = %why);
                "not verified"
            }
        };
        telemetry::incr("claims_total", &[]);
        let association = association.unwrap_or_default();
        tracing::info!(event = "eip_claimed", rule = %ctx.rule, action = %self.spec.name, eip = %eip,
            provider = P::Spot::PROVIDER, from = %before.holder, to = %spot.describe(),
            association = %association, verified);

        let alert = draft(&association, verified);
        let id = self.holds.claim_settled(eip, alert.as_ref());
        if let Some(alert) = alert {
            self.local.announce(id, alert);
        }
        ActionOutcome::Done(format!(
            "claimed {eip} from {} onto {} ({verified})",
            before.holder,
            spot.describe()
        ))
    }

    /// Gate 5: not while stopping, not without a ready HAProxy, not once the rule's check
    /// passes again. Some(outcome) refuses the claim.
    async fn last_look(
        &self,
        ctx: &ActionContext,
        before: &Owner<P::State>,
    ) -> Option<ActionOutcome> {
        let eip = &self.spec.eip;
        if self.local.stopping() {
            return Some(refused(
                "shutting_down",
                format!("the daemon is stopping; not claiming {eip}"),
            ));
        }
        let local = self.local.haproxy().await;
        if !local.ok {
            return Some(refused(
                "local_haproxy_unhealthy",
                format!("local HAProxy is not ready: {}", local.detail),
            ));
        }
        if let Some((check, timeout)) = &ctx.recheck {
            if let Some(o) = self.local.recheck(check, *timeout).await {
                if o.ok {
                    return Some(refused(
                        "check_passes_again",
                        format!(
                            "the rule's check passes again ({}); {eip} stays on {}",
                            o.detail, before.holder
                        ),
                    ));
                }
            }
        }
        None
    }

    fn reconcile(&self, claim: PendingClaim, mut stopping: watch::Receiver<bool>) {
        if P::DRY_RUN {
            return; // a dry run changes nothing, the state file included
        }
        let provider_name = P::Spot::PROVIDER;
        if claim.provider != provider_name {
            tracing::warn!(event = "claim_unsettled", eip = %self.spec.eip, saved = %claim.provider,
                now = provider_name, "the claim was made through another provider; forgetting it");
            self.holds.claim_settled(&self.spec.eip, None);
            return;
        }
        let Some(spot) = P::Spot::from_pending(&claim) else {
            tracing::error!(event = "claim_unsettled", eip = %self.spec.eip,
                "the saved claim lacks its ENI or private IP; forgetting it");
            self.holds.claim_settled(&self.spec.eip, None);
            return;
        };
        let (provider, eip, holds, local) = (
            self.provider.clone(),
            self.spec.eip.clone(),
            self.holds.clone(),
            self.local.clone(),
        );
        // Claims of this EIP wait until the saved one is settled: otherwise a claim of the
        // restarted rule and this settling could both announce the same move.
        let claims_wait = self.last_move.clone().try_lock_owned().ok();
        tokio::spawn(async move {
            let _claims_wait = claims_wait;
            let mut backoff = Duration::from_secs(1);
            let owner = loop {
                match provider.read(&eip).await {
                    Ok(o) => break o,
                    Err(e) => {
                        tracing::warn!(event = "claim_unsettled", eip = %eip, error = %e,
                            retry_in_s = backoff.as_secs(), "cannot read who holds the EIP yet");
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopping.wait_for(|s| *s) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            };
            if P::holds(&spot, &owner) {
                let alert = claim.alert.map(|(topic_arn, subject, message)| Alert {
                    topic_arn,
                    subject,
                    message,
                });
                let id = holds.claim_settled(&eip, alert.as_ref());
                tracing::info!(event = "claim_found_after_restart", eip = %eip, to = %spot.describe(),
                    alert = alert.is_some(), "the claim the last run had under way completed; announcing it now");
                if let Some(alert) = alert {
                    local.announce(id, alert);
                }
            } else {
                holds.claim_settled(&eip, None);
                tracing::info!(event = "claim_not_completed", eip = %eip, holder = %owner.holder,
                    "the claim the last run had under way did not complete");
            }
        });
    }
}

impl<P: Provider, L: Local> Claim for Gates<P, L> {
    fn run<'a>(&'a self, ctx: &'a ActionContext) -> super::BoxFuture<'a, ActionOutcome> {
        Box::pin(Gates::run(self, ctx))
    }

    fn note_owner(&self) {
        Gates::note_owner(self);
    }

    fn reconcile(&self, claim: PendingClaim, stopping: watch::Receiver<bool>) {
        Gates::reconcile(self, claim, stopping);
    }
}

fn alert_text<S: Spot>(
    address: &str,
    from: &str,
    spot: &S,
    association: &str,
    egress: Ipv4Addr,
    ctx: &ActionContext,
    verified: &str,
) -> String {
    let now_on = match association {
        "" => format!("{} ({verified})", spot.describe()),
        a => format!("{} (association {a}, {verified})", spot.describe()),
    };
    format!(
        "Instance {} took over Elastic IP {address} from {from}.\n\
         Now on: {now_on}.\n\
         Why: rule {} failed {} consecutive checks; last: {}.\n\
         Egress verified: this node's traffic leaves from {egress}.\n\
         Time: {}\n",
        spot.instance_id(),
        ctx.rule,
        ctx.consecutive,
        ctx.detail,
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
    )
}
