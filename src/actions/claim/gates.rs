//! The gate sequence of a claim, written once for every [`Provider`]: the order in which a
//! node convinces itself that taking the EIP is right, then takes it, verifies, damps and
//! announces (the list is in the module above). The safety of the whole daemon rests on this
//! order; the tests below pin it against a fake provider under paused time.

use super::{
    fmt_secs, refused, ClaimEnv, ClaimSpec, Gated, HoldDowns, InFlight, LastMove, MoveResult,
    Owner, Provider, Spot, Verified,
};
use crate::actions::alerts::{Alert, Alerter};
use crate::actions::notify::sns_subject;
use crate::actions::{ActionContext, ActionOutcome, GroupRole};
use crate::checks::checkip::{self, EgressError};
use crate::checks::{self, haproxy, Outcome};
use crate::config::{EgressSettings, HaproxyProbeSpec, ReachSpec};
use crate::history::{Entry, History, Kind, Timeline};
use crate::state::PendingClaim;
use crate::telemetry::events;
use crate::telemetry::metrics::Metrics;
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Where a failed move left the address.
enum AfterFailure {
    /// On the move's target after all (the call landed after the SDK gave up): its token.
    Here(Option<String>),
    /// Not there: what to say, and the alert to queue when nobody holds it.
    Not(String, Option<(u64, Alert)>),
}

/// What the gates look at on this node besides the provider, and where the alert goes.
pub(crate) trait Local: Send + Sync + 'static {
    /// Probe `[haproxy]` fresh: a node that cannot serve must not take the traffic.
    fn haproxy(&self) -> impl Future<Output = Outcome> + Send;
    /// Which public address this node's traffic leaves from (`[egress] checkip_url`).
    fn egress(&self) -> impl Future<Output = Result<Ipv4Addr, EgressError>> + Send;
    /// Whether this node reaches the VPC: the first target of `reach` that answered, or
    /// why none did ([`checks::reach::any`]).
    fn reach(&self, reach: &ReachSpec) -> impl Future<Output = Result<String, String>> + Send;
    /// The rule's check, run once more within its timeout; None when it timed out.
    fn recheck(
        &self,
        check: &crate::config::CheckSpec,
        timeout: Duration,
    ) -> impl Future<Output = Option<Outcome>> + Send;
    /// True once the daemon is stopping: no claim starts then.
    fn stopping(&self) -> bool;
    /// Why this node is paused (`watchdog pause`, the maintenance file), if it is.
    fn paused(&self) -> Option<String>;
    /// Queue `alert`, already saved in the state file as `id`.
    fn announce(&self, id: u64, alert: Alert);
}

/// The last look's runs of the rule's check (gate 5). The first starts when the gates do and
/// runs alongside gates 2 to 4, so that on a target that does not answer (each run takes the
/// rule's whole timeout) its wait overlaps the other gates instead of following them. A
/// planned takeover and a group's commit do not run it (they are not about a failure), nor
/// does a dry run. At the last look ([`Recheck::outcome`]):
///
/// - a first run that passed refuses the claim, whatever a later run says;
/// - a first run that ended without passing (a refused connection, a 503: a quick answer) is
///   followed by a fresh run, awaited whole, as the last look always did;
/// - a first run still waiting (a hung target) is joined by a fresh run, so that a repair
///   made while the other gates ran is seen on a new connection (a restarted or reloaded
///   HAProxy answers new connections, not the one stuck in the old process). Either passing
///   refuses the claim. The wait ends when the first run ends (its timeout), and at least a
///   quarter of the rule's timeout after the fresh run started ([`FRESH_AT_LEAST`]): a
///   repaired target answers a new connection within that, and a hung one costs one
///   timeout in all, not one after the other gates.
pub(super) struct Recheck(Option<Early>);

/// The first run: its task and when it started.
struct Early {
    task: AbortOnDrop<Option<Outcome>>,
    started: Instant,
}

/// The least share of the rule's timeout a fresh run at the last look gets while the first
/// run is still waiting on a hung target.
pub(super) const FRESH_AT_LEAST: u32 = 4;

impl Recheck {
    fn start<P: Provider, L: Local>(gates: &Gates<P, L>, ctx: &ActionContext) -> Recheck {
        let wanted = ctx.recheck.clone().filter(|_| {
            !P::DRY_RUN && ctx.planned.is_none() && ctx.group != Some(GroupRole::Commit)
        });
        Recheck(wanted.map(|(check, timeout)| {
            let local = gates.local.clone();
            Early {
                task: AbortOnDrop(tokio::spawn(
                    async move { local.recheck(&check, timeout).await },
                )),
                started: Instant::now(),
            }
        }))
    }

    /// A run that passed, if any did (None: no run passed, or none was wanted).
    async fn outcome<P: Provider, L: Local>(
        self,
        gates: &Gates<P, L>,
        ctx: &ActionContext,
    ) -> Option<Outcome> {
        let early = self.0?;
        let (check, timeout) = ctx.recheck.as_ref()?;
        let passed = |r: Result<Option<Outcome>, tokio::task::JoinError>| match r {
            Ok(o) => o.filter(|o| o.ok),
            Err(e) => {
                // A bug in the check (it panicked): the fresh run still looks.
                tracing::error!(event = events::RULE_TASK_CRASHED, rule = %ctx.rule, error = %e,
                    "the last look's first run of the rule's check stopped");
                None
            }
        };
        if early.task.0.is_finished() {
            if let Some(o) = passed(early.task.await) {
                return Some(o);
            }
            return gates.local.recheck(check, *timeout).await.filter(|o| o.ok);
        }
        let until = (early.started + *timeout).max(Instant::now() + *timeout / FRESH_AT_LEAST);
        let mut early_task = std::pin::pin!(early.task);
        let mut early_ended = false;
        let mut fresh = std::pin::pin!(gates.local.recheck(check, *timeout));
        let give_up = tokio::time::sleep_until(until);
        tokio::pin!(give_up);
        loop {
            tokio::select! {
                r = &mut early_task, if !early_ended => {
                    early_ended = true;
                    if let Some(o) = passed(r) {
                        return Some(o);
                    }
                }
                o = &mut fresh => return o.filter(|o| o.ok),
                _ = &mut give_up => return None,
            }
        }
    }
}

/// A task that is aborted when this is dropped: a claim refused before its last look, or
/// abandoned, stops its recheck (a program check's process group is killed with it).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The real node: HTTP probes, checkip, the daemon's stop signal and its alert outbox.
pub(crate) struct LiveLocal {
    http: reqwest::Client,
    egress: EgressSettings,
    haproxy: HaproxyProbeSpec,
    stopping: watch::Receiver<bool>,
    alerter: Alerter,
    pause: crate::pause::Pause,
}

impl LiveLocal {
    pub(crate) fn new(env: &ClaimEnv) -> Self {
        LiveLocal {
            http: env.http.clone(),
            egress: env.egress.clone(),
            haproxy: env.haproxy.clone(),
            stopping: env.stopping.clone(),
            alerter: env.alerter.clone(),
            pause: env.pause.clone(),
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

    async fn reach(&self, reach: &ReachSpec) -> Result<String, String> {
        checks::reach::any(reach, &self.http).await
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

    fn paused(&self) -> Option<String> {
        self.pause.now().map(|p| p.to_string())
    }

    fn announce(&self, id: u64, alert: Alert) {
        self.alerter.resend(id, alert);
    }
}

/// One claim action (`claim_eip`, `claim_private_ip`, `claim_route`): its gates, its provider and what it remembers between runs.
pub(crate) struct Gates<P: Provider, L> {
    spec: ClaimSpec,
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
    /// Claims made, refused (by reason) and egress verifications failed.
    metrics: Arc<Metrics>,
    /// Where each run's outcome and timings are recorded.
    history: History,
    /// Who held the EIP before this node's last planned takeover moved it here: where
    /// `drill --back` returns it.
    taken_from: std::sync::Mutex<Option<Owner<P::State>>>,
    /// When this node last claimed the address, and onto what: the owner poll of a private
    /// claim corrects the record when a rival's write lands after this claim said verified.
    claimed: Arc<std::sync::Mutex<Option<(Instant, String)>>>,
}

impl<P: Provider, L: Local> Gates<P, L> {
    pub(crate) fn new(
        spec: ClaimSpec,
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
            env.metrics.clone(),
            env.history.clone(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn with(
        spec: ClaimSpec,
        provider: P,
        local: Arc<L>,
        subject_prefix: String,
        verify_for: Duration,
        in_flight: InFlight,
        holds: &HoldDowns,
        metrics: Arc<Metrics>,
        history: History,
    ) -> Self {
        // Saved before a restart: the rule may be failing still (its state is restored too).
        let seen = holds.owner_seen(&spec.address);
        Gates {
            metrics,
            history,
            last_move: holds.for_address(&spec.address),
            holds: holds.clone(),
            spec,
            provider: Arc::new(provider),
            local,
            subject_prefix,
            verify_for,
            in_flight,
            seen: Arc::new(std::sync::Mutex::new(seen)),
            taken_from: std::sync::Mutex::new(None),
            claimed: Arc::default(),
        }
    }

    /// The rule guarding the address started failing: note who holds it now, in the
    /// background, and save it with the hold-downs (a restart mid-outage keeps the "moved
    /// meanwhile" gate). What an earlier streak noted is dropped at once.
    fn note_owner(&self) {
        self.set_seen(None);
        let (provider, seen, holds, address) = (
            self.provider.clone(),
            self.seen.clone(),
            self.holds.clone(),
            self.spec.address.clone(),
        );
        tokio::spawn(async move {
            if let Some(token) = provider.glance().await {
                *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.clone());
                holds.owner_noted(&address, Some(token));
            }
        });
    }

    /// Set the owner seen (in memory and in the state file); the one it replaces.
    fn set_seen(&self, token: Option<Option<String>>) -> Option<Option<String>> {
        let old = std::mem::replace(
            &mut *self.seen.lock().unwrap_or_else(|p| p.into_inner()),
            token.clone(),
        );
        self.holds.owner_noted(&self.spec.address, token);
        old
    }

    /// Read the owner every `every` and let the provider keep this node's local interface
    /// in step ([`Provider::keep_local`]), until the daemon stops or this action is dropped
    /// (a reload builds a new one). Each look holds the address's claim lock, so it never
    /// interleaves with a claim of it.
    pub(crate) fn poll_owner(&self, every: Duration, mut stopping: watch::Receiver<bool>) {
        let provider = Arc::downgrade(&self.provider);
        let lock = self.last_move.clone();
        let address = self.spec.address.clone();
        let (claimed, hold_down, name) = (
            self.claimed.clone(),
            self.spec.hold_down,
            self.spec.name.clone(),
        );
        let (history, local, holds, topic, prefix) = (
            self.history.clone(),
            self.local.clone(),
            self.holds.clone(),
            self.spec.sns_topic_arn.clone(),
            self.subject_prefix.clone(),
        );
        tokio::spawn(async move {
            loop {
                {
                    let Some(provider) = provider.upgrade() else {
                        return;
                    };
                    let _claims_wait = lock.lock().await;
                    match (provider.here().await, provider.read().await) {
                        (Ok(spot), Ok(owner)) => {
                            provider.keep_local(&owner, &spot).await;
                            // A rival's write that landed after this node's claim said
                            // verified (a write slower than the settling reads): say so, once.
                            let recent = claimed
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .take_if(|(at, _)| at.elapsed() < hold_down);
                            if let (Some((_, onto)), false) = (
                                recent.clone(),
                                P::holds(&spot, &owner) || P::partly_holds(&spot, &owner),
                            ) {
                                let detail = format!(
                                    "{address} moved to {} right after this node's claim onto {onto} said verified: another node claimed it at the same time, and its write landed last",
                                    owner.holder
                                );
                                tracing::warn!(event = events::CLAIM_OVERTAKEN, action = %name, address = %address, holder = %owner.holder, "{detail}");
                                let mut entry = Entry::new(Kind::ClaimRefused, detail.clone());
                                entry.action = Some(name.clone());
                                entry.reason = Some("lost_race".into());
                                history.record(entry);
                                if let Some(topic) = &topic {
                                    let alert = Alert {
                                        topic_arn: topic.clone(),
                                        subject: sns_subject(&prefix, &format!("{address} went on to {} (correction)", owner.holder)),
                                        message: format!("{detail}.\nThe earlier alert of this node's claim no longer holds.\nTime: {}\n", humantime::format_rfc3339_seconds(std::time::SystemTime::now())),
                                    };
                                    local.announce(holds.store_alert(&alert), alert);
                                }
                            } else if recent.is_some() {
                                // Still here: keep watching for the rest of the hold-down.
                                *claimed.lock().unwrap_or_else(|p| p.into_inner()) = recent;
                            }
                        }
                        (Err(e), _) => {
                            tracing::debug!(address = %address, error = %e, "owner poll: this node's identity is not known yet")
                        }
                        (_, Err(e)) => {
                            tracing::warn!(event = events::ACTION_ERROR, address = %address, error = %e,
                            "owner poll: cannot read who holds the address; the local interface is left as it is")
                        }
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopping.wait_for(|s| *s) => return,
                }
            }
        });
    }

    async fn here(&self) -> Result<P::Spot, ActionOutcome> {
        self.provider.here().await.map_err(|e| e.outcome())
    }

    /// Run the gates and, if they all pass, move the EIP here. Each refusal is counted in
    /// `claims_refused_total` by its reason; a move in `claim_duration_seconds` and, when a
    /// failing rule asked for it, `failover_duration_seconds`. Every run is recorded in the
    /// history with its timings, and its alert queued after that (so the alert's delivery
    /// finds its entry). Returns the steps as they happened.
    async fn run_timed(&self, ctx: &ActionContext) -> (ActionOutcome, Timeline) {
        let mut tl = Timeline::default();
        tl.mark("claim_started", ctx.planned.as_ref().map_or("", |p| p.kind));
        let mut alert = None;
        let out = self.gated(ctx, &mut tl, &mut alert).await;
        if let ActionOutcome::Refused { reason, .. } = &out {
            self.metrics.claim_refused(reason);
        }
        if let Some(took) = tl.between("claim_started", "verified") {
            self.metrics.claim_took(took);
        }
        let verified = tl.at("verified");
        if let (Some(first), Some(verified), None) =
            (ctx.times.first_failed_check, verified, &ctx.planned)
        {
            self.metrics
                .failover_took(Duration::from_millis(verified.saturating_sub(first)));
        }
        let (kind, reason) = match &out {
            ActionOutcome::Done(_) => (Kind::Claimed, None),
            ActionOutcome::NoOp(_) => (Kind::ClaimNoop, None),
            ActionOutcome::Refused { reason, .. } => (Kind::ClaimRefused, Some(reason.to_string())),
            ActionOutcome::Error(_) => (Kind::ClaimError, None),
        };
        let detail = match &out {
            ActionOutcome::Done(d)
            | ActionOutcome::NoOp(d)
            | ActionOutcome::Error(d)
            | ActionOutcome::Refused { detail: d, .. } => d.clone(),
        };
        let mut entry = Entry::new(kind, detail);
        entry.rule = (ctx.planned.is_none()).then(|| ctx.rule.clone());
        entry.action = Some(self.spec.name.clone());
        entry.reason = reason;
        entry.by = ctx.planned.as_ref().map(|p| p.by.clone());
        entry.planned = ctx.planned.as_ref().map(|p| p.kind.to_owned());
        if ctx.planned.is_none() {
            entry.timings.first_failed_check = ctx.times.first_failed_check;
            entry.timings.rule_failed = ctx.times.rule_failed;
        }
        entry.timings.claim_started = tl.at("claim_started");
        entry.timings.first_mutating_call = tl.at("first_mutating_call");
        entry.timings.verified = verified;
        entry.alert_id = alert.as_ref().map(|(id, _)| *id).filter(|id| *id != 0);
        self.history.record(entry);
        if let Some((id, alert)) = alert {
            self.local.announce(id, alert);
            tl.mark("alert_queued", "");
        }
        (out, tl)
    }

    /// [`Gates::run_timed`] without the steps.
    #[cfg(test)]
    async fn run(&self, ctx: &ActionContext) -> ActionOutcome {
        self.run_timed(ctx).await.0
    }

    async fn gated(
        &self,
        ctx: &ActionContext,
        tl: &mut Timeline,
        announce: &mut Option<(u64, Alert)>,
    ) -> ActionOutcome {
        let mut last_move = self.last_move.lock().await;
        let eip = &self.spec.address;
        let planned = ctx.planned.as_ref();
        // A claim_group's member, moved once the group decided (see `GroupRole::Commit`).
        let commit = ctx.group == Some(GroupRole::Commit);

        // 0. Paused: no claim of any kind, planned or not.
        if let Some(why) = self.local.paused() {
            return refused("paused", format!("this node is {why}; not claiming {eip}"));
        }

        // 1. Hold-down; an operator's takeover overrides it on purpose.
        // A group decided, or finishes what is partly here already (`GroupRole`).
        let group_decided = matches!(ctx.group, Some(GroupRole::Finish | GroupRole::Commit));
        if let Some(at) = (*last_move).filter(|_| planned.is_none() && !group_decided) {
            let since = at.elapsed();
            if since < self.spec.hold_down {
                // A hold-down damps ping-pong between nodes; with nobody holding the EIP there
                // is no one to ping-pong with, and waiting only prolongs the outage.
                let now = self.provider.read().await.ok();
                if let (Some(owner), Ok(spot)) = (&now, self.here().await) {
                    if P::holds(&spot, owner) {
                        tl.mark("already_here", spot.describe());
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
                tracing::warn!(event = events::HOLD_DOWN_SKIPPED, rule = %ctx.rule, action = %self.spec.name, address = %eip,
                    "nobody holds the EIP: claiming despite the hold-down");
            }
        }

        // The last look's recheck of the rule's check starts now and runs alongside gates 2
        // to 4: a hung target's recheck takes the rule's whole timeout, which then overlaps
        // the other gates instead of coming after them. Gate 5 uses it (see `Recheck`).
        let recheck = Recheck::start(self, ctx);

        // 2. Local HAProxy.
        let local = self.local.haproxy().await;
        if !local.ok {
            return refused(
                "local_haproxy_unhealthy",
                format!("local HAProxy is not ready: {}", local.detail),
            );
        }
        tl.mark("local_haproxy_ready", local.detail);

        let spot = match self.here().await {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };

        // 3. Current owner.
        let before = match self.provider.read().await {
            Ok(a) => a,
            Err(e) => return ActionOutcome::Error(e.to_string()),
        };
        tl.mark("owner_read", before.holder.clone());
        tl.public_ip = before.public_ip;
        if P::holds(&spot, &before) {
            tl.mark("already_here", spot.describe());
            return ActionOutcome::NoOp(format!(
                "{eip} is already on this node, {}",
                spot.describe()
            ));
        }
        // Moved since our failures began? Then they were about the previous holder, and another
        // node has just taken over: moving it again would only add an outage. An operator's
        // takeover is not about a failure: it moves the address wherever it is.
        let earlier = self.set_seen(Some(before.token.clone()));
        // Nobody holding it now is no takeover (our own cut claim, or a release): the other
        // gates decide, and a hold-down would only keep the address dark.
        if let Some(earlier) = earlier.filter(|_| before.token.is_some() && planned.is_none()) {
            if earlier != before.token {
                *last_move = Some(Instant::now());
                self.holds.record(&self.spec.address);
                return refused("moved_meanwhile", format!(
                    "{eip} moved to {} after this rule started failing: another node took over; leaving it there for the hold-down",
                    before.holder
                ));
            }
        }

        // 3b. What the provider itself requires (`claim_route`: source/destination checking
        // off on this node's ENI, the destination outside the VPC; `claim_private_ip`: the
        // address in this node's subnet). Read-only; a refusal names the fix.
        if let Err((reason, detail)) = self.provider.precondition(&spot, &before).await {
            return refused(reason, detail);
        }

        // 4. The path the address's clients use: checkip (the internet) for an Elastic IP,
        // the claim's `reachability` (the VPC) for a private one.
        let proof = if commit {
            "Path verified for the whole group before it moved.".to_owned()
        } else {
            match self.proof(ctx, &before, tl).await {
                Ok(p) => p,
                Err(outcome) => return outcome,
            }
        };

        // 5. Last look before the mutation: our own HAProxy may have died while we asked
        // around, and if another node fixed things since our check failed, taking the EIP from
        // it would turn its repair into a new outage. A dry run changes nothing to guard.
        if !P::DRY_RUN {
            if let Some(outcome) = self.last_look(ctx, &before, recheck).await {
                return outcome;
            }
            tl.mark("last_look", "");
        }
        if matches!(ctx.group, Some(GroupRole::Check | GroupRole::Finish)) {
            tl.mark("ready", spot.describe());
            return ActionOutcome::NoOp(format!(
                "ready: {eip} would move from {} onto {}",
                before.holder,
                spot.describe()
            ));
        }

        // 6. The move. From the first mutating call to the verified association the claim runs
        // in its own task: a shutdown must not cut it between releasing the EIP and taking it.
        // Saved before the first mutating call: if the process dies mid-claim, the restarted
        // daemon is in hold-down (unless nobody holds the EIP) and reads who holds it, to
        // announce a move that completed (`reconcile`).
        // A group member's move is announced by the group, in one alert for all members; its
        // own alert is still saved with the claim, so a move the process died in is announced
        // after the restart all the same.
        let topic = self.spec.sns_topic_arn.clone();
        // The public IP, also when the configuration names the address by allocation id.
        let shown = before
            .public_ip
            .map_or_else(|| eip.to_string(), |ip| ip.to_string());
        let subject = sns_subject(
            &self.subject_prefix,
            &match planned {
                None => format!("{} took over {shown}", spot.instance_id()),
                Some(p) => format!(
                    "{} took over {shown} (planned {})",
                    spot.instance_id(),
                    p.kind
                ),
            },
        );
        let draft = |association: &str, verified: &str| {
            topic.as_ref().map(|t| Alert {
                topic_arn: t.clone(),
                subject: subject.clone(),
                message: alert_text(
                    eip.noun(),
                    P::MOVED_AS,
                    &self.provider.address_label(&before),
                    &before.holder,
                    &spot,
                    association,
                    &proof,
                    ctx,
                    verified,
                ),
            })
        };
        self.holds.claim_started(
            eip,
            PendingClaim {
                from: Some(crate::state::SeenOwner {
                    token: before.token.clone(),
                }),
                ..spot.pending(
                    draft(
                        "",
                        "found on this node after the daemon restarted mid-claim",
                    )
                    .as_ref(),
                )
            },
        );
        let task = self.spawn_move(&before, &spot, tl);

        // 7. Verify, damp, announce.
        let (association, verified) = match task.await {
            Ok(MoveResult::Moved(a, v)) => (a, v),
            Ok(MoveResult::Lost(detail)) => {
                *last_move = Some(Instant::now());
                self.holds.record(&self.spec.address);
                self.holds.claim_settled(eip, None);
                return refused("lost_race", detail);
            }
            Ok(MoveResult::Failed(e)) => match self.after_failed_move(e, &spot).await {
                // The call landed after the SDK gave up on it: the holder decides.
                AfterFailure::Here(token) => (token, Verified::Yes),
                AfterFailure::Not(detail, dark) => {
                    self.holds.claim_settled(eip, None);
                    *announce = dark;
                    return ActionOutcome::Error(detail);
                }
            },
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
        self.holds.record(&self.spec.address);
        self.set_seen(None);
        if planned.is_some() {
            *self.taken_from.lock().unwrap_or_else(|p| p.into_inner()) = Some(before.clone());
        }
        // The alert says why a move is not verified (a breaker's find: it said only that).
        let mut unverified = None;
        let verified = match verified {
            Verified::Yes => {
                tl.mark("verified", spot.describe());
                "verified"
            }
            Verified::Lost(holder) => {
                self.holds.claim_settled(eip, None);
                return refused(
                    "lost_race",
                    format!("{eip} was associated with {holder} right after our claim"),
                );
            }
            Verified::Unknown(why) => {
                tracing::warn!(event = events::CLAIM_UNVERIFIED, rule = %ctx.rule, address = %eip, detail = %why);
                unverified = Some(format!("not verified: {why}"));
                "not verified"
            }
        };
        self.metrics.claimed();
        let association = association.unwrap_or_default();
        let event = if eip.is_private() {
            events::ADDRESS_CLAIMED
        } else {
            events::EIP_CLAIMED
        };
        tracing::info!(event, rule = %ctx.rule, action = %self.spec.name, address = %eip,
            provider = P::Spot::PROVIDER, from = %before.holder, to = %spot.describe(),
            association = %association, verified);

        let alert = if commit {
            None
        } else {
            draft(&association, unverified.as_deref().unwrap_or(verified))
        };
        *self.claimed.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), spot.describe()));
        // A group member's claim stays saved, with its own alert, until the group settles
        // every member together with its one alert (`ClaimGroup::run`).
        let id = if commit {
            0
        } else {
            self.holds.claim_settled(eip, alert.as_ref())
        };
        *announce = alert.map(|a| (id, a));
        ActionOutcome::Done(format!(
            "claimed {eip} from {} onto {} ({verified})",
            before.holder,
            spot.describe()
        ))
    }

    /// Gate 4: proof that this node is on the path the address's clients use. An Elastic
    /// IP's clients come from the internet: checkip must answer a well-formed address that is
    /// not the EIP itself. A private address's clients are in the VPC: one of the claim's
    /// `reachability` targets must answer. Ok: the sentence the alert carries; Err: the
    /// refusal (or the no-op when checkip shows the EIP already ours).
    async fn proof(
        &self,
        ctx: &ActionContext,
        before: &Owner<P::State>,
        tl: &mut Timeline,
    ) -> Result<String, ActionOutcome> {
        let eip = &self.spec.address;
        if let Some(reach) = &self.spec.reach {
            return match self.local.reach(reach).await {
                Ok(which) => {
                    tl.mark("reachability_verified", which.clone());
                    tracing::info!(event = events::REACHABILITY_VERIFIED, rule = %ctx.rule, action = %self.spec.name,
                        reached = %which, dry_run = P::DRY_RUN);
                    Ok(format!(
                        "Reachability verified: this node reached {which} in the VPC."
                    ))
                }
                Err(e) => {
                    if !P::DRY_RUN {
                        self.metrics.egress_failed("vpc_unreachable");
                    }
                    Err(refused(
                        "vpc_unreachable",
                        format!(
                            "{}none of `reachability` answered, not claiming {eip}: {e}",
                            if P::DRY_RUN { "dry run: " } else { "" }
                        ),
                    ))
                }
            };
        }
        let egress = match self.local.egress().await {
            Ok(ip) => ip,
            Err(e) if P::DRY_RUN => {
                return Err(refused(
                    e.reason(),
                    format!("dry run: egress not verified, would not claim {eip}: {e}"),
                ))
            }
            Err(e) => {
                self.metrics.egress_failed(e.reason());
                return Err(refused(
                    e.reason(),
                    format!("egress not verified, not claiming {eip}: {e}"),
                ));
            }
        };
        tl.mark("egress_verified", egress.to_string());
        if P::DRY_RUN {
            tracing::info!(event = events::EGRESS_VERIFIED, egress_ip = %egress, dry_run = true);
        } else {
            tracing::info!(event = events::EGRESS_VERIFIED, rule = %ctx.rule, action = %self.spec.name, egress_ip = %egress);
        }
        if before.public_ip == Some(egress) {
            // EC2 (read in gate 3) says another node holds it, yet our traffic leaves from it:
            // a NAT or proxy in this node's path, or a checkip that answers wrong. Neither is
            // "ours": moving it could take it off the NAT, and calling it done would leave a
            // failing rule silent for the whole outage (a breaker's find). A refusal is
            // logged, counted and tried again at the rule's next failed check.
            return Err(refused(
                "egress_is_the_eip",
                format!(
                    "checkip says this node's traffic leaves from {egress}, the EIP itself, but EC2 says it is on {}: \
                     a NAT or proxy in this node's path, or a wrong checkip answer? not moving it",
                    before.holder
                ),
            ));
        }

        Ok(format!(
            "Egress verified: this node's traffic leaves from {egress}."
        ))
    }

    /// A move failed (`error`): read where the address is now, for up to the verification
    /// window, since a call the SDK gave up on (a timeout) may still land. On `to`: the move
    /// happened after all, and is settled as a claim ([`AfterFailure::Here`], with the
    /// association the read shows). With nobody holding it (released, not associated): say so
    /// and draft an alert, the address is dark until a claim takes it. Elsewhere: say where.
    async fn after_failed_move(&self, error: String, to: &P::Spot) -> AfterFailure {
        let eip = &self.spec.address;
        let deadline = Instant::now() + self.verify_for;
        let now = loop {
            match self.provider.read().await {
                Ok(o) if P::holds(to, &o) => {
                    tracing::warn!(event = events::CLAIM_UNVERIFIED, address = %eip, error = %error,
                        "the call failed, but the EIP is on this node's target now: the move landed after all");
                    return AfterFailure::Here(o.token);
                }
                Ok(o) if Instant::now() >= deadline => break o,
                Ok(_) => {}
                Err(e) if Instant::now() >= deadline => {
                    return AfterFailure::Not(
                        format!("{error}; then reading who holds {eip} failed too: {e}"),
                        None,
                    )
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        if now.token.is_some() {
            return AfterFailure::Not(format!("{error}; {eip} is still on {}", now.holder), None);
        }
        tracing::error!(event = events::EIP_UNASSOCIATED, address = %eip, error = %error,
            "the move released the EIP but could not associate it: nobody holds it now");
        let detail = format!(
            "{error}; {eip} is now associated with NOBODY (released, not associated): it is dark until a claim takes it"
        );
        let dark = self.spec.sns_topic_arn.as_ref().map(|topic| {
            let alert = Alert {
                topic_arn: topic.clone(),
                subject: sns_subject(
                    &self.subject_prefix,
                    &format!("{eip} is associated with nobody after a failed move"),
                ),
                message: format!(
                    "{} {eip} was released but could not be associated: {error}.\n\
                     Nobody holds it now; the next claim (this node's next cycle, or another node's) takes it.\n\
                     Time: {}\n",
                    eip.noun(),
                    humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
                ),
            };
            (self.holds.store_alert(&alert), alert)
        });
        AfterFailure::Not(detail, dark)
    }

    /// The move itself, from `from` onto `to`, in its own task: from the first mutating call
    /// to the verified association nothing may cut it (a shutdown waits for it through
    /// `in_flight`; a client hanging up does not drop it).
    fn spawn_move(
        &self,
        from: &Owner<P::State>,
        to: &P::Spot,
        tl: &mut Timeline,
    ) -> tokio::task::JoinHandle<MoveResult> {
        let guard = self.in_flight.enter();
        tl.mark("first_mutating_call", to.describe());
        let (provider, from, to, verify_for) = (
            self.provider.clone(),
            from.clone(),
            to.clone(),
            self.verify_for,
        );
        tokio::spawn(async move {
            let _guard = guard;
            provider.take(&from, &to, verify_for).await
        })
    }

    /// `drill --back`: move the EIP from this node back to where this action's last planned
    /// takeover found it. The gates that apply to giving an address away: not while stopping
    /// or paused; the owner read first, and only while the EIP is still on this node (if it
    /// moved since, someone else has decided: leave it); the same race-safe move and
    /// verification as a claim, saved first so a crash is settled at the next start; a
    /// hold-down after it, so this node does not take it straight back; one alert. The other
    /// node's own readiness is its business: its rules run as usual.
    async fn give_back(&self, ctx: &ActionContext) -> (ActionOutcome, Timeline) {
        let mut tl = Timeline::default();
        tl.mark("claim_started", "back");
        let mut alert = None;
        let out = self.given_back(ctx, &mut tl, &mut alert).await;
        if let Some(took) = tl.between("claim_started", "verified") {
            self.metrics.claim_took(took);
        }
        let (kind, reason, detail) = match &out {
            ActionOutcome::Done(d) => (Kind::Returned, None, d.clone()),
            ActionOutcome::NoOp(d) => (Kind::ClaimNoop, None, d.clone()),
            ActionOutcome::Refused { reason, detail } => {
                (Kind::ClaimRefused, Some(reason.to_string()), detail.clone())
            }
            ActionOutcome::Error(d) => (Kind::ClaimError, None, d.clone()),
        };
        let mut entry = Entry::new(kind, detail);
        entry.action = Some(self.spec.name.clone());
        entry.reason = reason;
        entry.by = ctx.planned.as_ref().map(|p| p.by.clone());
        entry.planned = Some("drill --back".into());
        entry.timings.claim_started = tl.at("claim_started");
        entry.timings.first_mutating_call = tl.at("first_mutating_call");
        entry.timings.verified = tl.at("verified");
        entry.alert_id = alert.as_ref().map(|(id, _)| *id).filter(|id| *id != 0);
        self.history.record(entry);
        if let Some((id, alert)) = alert {
            self.local.announce(id, alert);
            tl.mark("alert_queued", "");
        }
        (out, tl)
    }

    async fn given_back(
        &self,
        ctx: &ActionContext,
        tl: &mut Timeline,
        announce: &mut Option<(u64, Alert)>,
    ) -> ActionOutcome {
        let mut last_move = self.last_move.lock().await;
        let eip = &self.spec.address;
        if self.local.stopping() {
            return refused(
                "shutting_down",
                format!("the daemon is stopping; not moving {eip}"),
            );
        }
        if let Some(why) = self.local.paused() {
            return refused("paused", format!("this node is {why}; not moving {eip}"));
        }
        let Some(previous) = self
            .taken_from
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return refused(
                "nothing_to_return",
                format!("no planned takeover of {eip} by this daemon to return"),
            );
        };
        let Some(back_to) = P::spot_of(&previous) else {
            return refused(
                "nothing_to_return",
                format!(
                    "{eip} was held by {} before the takeover: there is nowhere to return it",
                    previous.holder
                ),
            );
        };
        let here = match self.here().await {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };
        let now = match self.provider.read().await {
            Ok(a) => a,
            Err(e) => return ActionOutcome::Error(e.to_string()),
        };
        tl.mark("owner_read", now.holder.clone());
        if !P::holds(&here, &now) {
            return refused(
                "moved_meanwhile",
                format!(
                    "{eip} is on {} now, not on this node: leaving it there",
                    now.holder
                ),
            );
        }
        let topic = self.spec.sns_topic_arn.clone();
        let by = ctx
            .planned
            .as_ref()
            .map_or("", |p| p.by.as_str())
            .to_owned();
        let subject = sns_subject(
            &self.subject_prefix,
            &format!("{eip} returned to {} (drill)", back_to.instance_id()),
        );
        let draft = |verified: &str| {
            topic.as_ref().map(|t| Alert {
                topic_arn: t.clone(),
                subject: subject.clone(),
                message: format!(
                    "{} {} returned from {} to {} ({verified}).\n\
                     Why: the end of a drill requested by {by} (drill --back; not a failure).\n\
                     Time: {}\n",
                    eip.noun(),
                    self.provider.address_label(&now),
                    here.describe(),
                    back_to.describe(),
                    humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
                ),
            })
        };
        // With who holds it now (this node), like a claim: a restart that finds the return
        // still on its way (nobody holds the address yet) gives it time to land.
        self.holds.claim_started(
            eip,
            PendingClaim {
                from: Some(crate::state::SeenOwner {
                    token: now.token.clone(),
                }),
                ..back_to.pending(draft("found there after the daemon restarted mid-move").as_ref())
            },
        );
        let task = self.spawn_move(&now, &back_to, tl);
        let result = task.await;
        // Handed away on purpose: this node must be free to take it back at once if the
        // other node fails (a hold-down would keep the address dark for its length), and this
        // move is no other node's takeover for the moved-meanwhile gate.
        *last_move = None;
        self.holds.forget(eip);
        self.set_seen(None);
        let verified = match result {
            Ok(MoveResult::Moved(_, Verified::Yes)) => {
                tl.mark("verified", back_to.describe());
                "verified"
            }
            Ok(MoveResult::Moved(_, Verified::Unknown(why))) => {
                tracing::warn!(event = events::CLAIM_UNVERIFIED, address = %eip, detail = %why);
                "not verified"
            }
            Ok(MoveResult::Moved(_, Verified::Lost(holder))) | Ok(MoveResult::Lost(holder)) => {
                self.holds.claim_settled(eip, None);
                return refused(
                    "lost_race",
                    format!("{eip} went to {holder}, not back to {}", back_to.describe()),
                );
            }
            Ok(MoveResult::Failed(e)) => match self.after_failed_move(e, &back_to).await {
                AfterFailure::Here(_) => {
                    tl.mark("verified", back_to.describe());
                    "verified"
                }
                AfterFailure::Not(detail, dark) => {
                    self.holds.claim_settled(eip, None);
                    *announce = dark;
                    return ActionOutcome::Error(detail);
                }
            },
            Ok(MoveResult::Rehearsed) => {
                self.holds.claim_settled(eip, None);
                return ActionOutcome::NoOp(format!(
                    "dry run: would return {eip} to {}",
                    back_to.describe()
                ));
            }
            Err(e) => return ActionOutcome::Error(format!("move task failed: {e}")),
        };
        tracing::info!(event = events::EIP_RETURNED, action = %self.spec.name, address = %eip,
            from = %here.describe(), to = %back_to.describe(), verified);
        let alert = draft(verified);
        let id = self.holds.claim_settled(eip, alert.as_ref());
        *announce = alert.map(|a| (id, a));
        ActionOutcome::Done(format!(
            "returned {eip} from {} to {} ({verified})",
            here.describe(),
            back_to.describe()
        ))
    }

    /// Gate 5: not while stopping, not without a ready HAProxy, not once the rule's check
    /// passes again (`recheck`, started with the gates). Some(outcome) refuses the claim.
    async fn last_look(
        &self,
        ctx: &ActionContext,
        before: &Owner<P::State>,
        recheck: Recheck,
    ) -> Option<ActionOutcome> {
        let eip = &self.spec.address;
        if self.local.stopping() {
            return Some(refused(
                "shutting_down",
                format!("the daemon is stopping; not claiming {eip}"),
            ));
        }
        if let Some(why) = self.local.paused() {
            return Some(refused(
                "paused",
                format!("this node is {why}; not claiming {eip}"),
            ));
        }
        let local = self.local.haproxy().await;
        if !local.ok {
            return Some(refused(
                "local_haproxy_unhealthy",
                format!("local HAProxy is not ready: {}", local.detail),
            ));
        }
        // The rule's check passing again says someone else fixed a failure.
        if let Some(o) = recheck.outcome(self, ctx).await.filter(|o| o.ok) {
            return Some(refused(
                "check_passes_again",
                format!(
                    "the rule's check passes again ({}); {eip} stays on {}",
                    o.detail, before.holder
                ),
            ));
        }
        None
    }

    fn reconcile(&self, claim: PendingClaim, mut stopping: watch::Receiver<bool>) {
        if P::DRY_RUN {
            return; // a dry run changes nothing, the state file included
        }
        let provider_name = P::Spot::PROVIDER;
        if claim.provider != provider_name {
            tracing::warn!(event = events::CLAIM_UNSETTLED, address = %self.spec.address, saved = %claim.provider,
                now = provider_name, "the claim was made through another provider; forgetting it");
            self.holds.claim_settled(&self.spec.address, None);
            return;
        }
        let Some(spot) = P::Spot::from_pending(&claim) else {
            tracing::error!(event = events::CLAIM_UNSETTLED, address = %self.spec.address,
                "the saved claim lacks its ENI or private IP; forgetting it");
            self.holds.claim_settled(&self.spec.address, None);
            return;
        };
        let verify_for = self.verify_for;
        let (provider, eip, holds, local, history, action) = (
            self.provider.clone(),
            self.spec.address.clone(),
            self.holds.clone(),
            self.local.clone(),
            self.history.clone(),
            self.spec.name.clone(),
        );
        // What the last run did not live to record: the history says how its claim ended.
        let started_ms = claim.started_at.saturating_mul(1000);
        let record = move |kind: Kind, detail: String, alert_id: Option<u64>| {
            let mut entry = Entry::new(kind, detail);
            entry.action = Some(action);
            entry.timings.claim_started = Some(started_ms);
            entry.alert_id = alert_id.filter(|id| *id != 0);
            history.record(entry);
        };
        // Claims of this EIP wait until the saved one is settled: otherwise a claim of the
        // restarted rule and this settling could both announce the same move.
        let claims_wait = self.last_move.clone().try_lock_owned().ok();
        tokio::spawn(async move {
            let read = |provider: Arc<P>, mut stopping: watch::Receiver<bool>, eip: String| async move {
                let mut backoff = Duration::from_secs(1);
                loop {
                    match provider.read().await {
                        Ok(o) => return Some(o),
                        Err(e) => {
                            tracing::warn!(event = events::CLAIM_UNSETTLED, address = %eip, error = %e,
                                retry_in_s = backoff.as_secs(), "cannot read who holds the EIP yet");
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stopping.wait_for(|s| *s) => return None,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            };
            let Some(mut owner) = read(provider.clone(), stopping.clone(), eip.to_string()).await
            else {
                return;
            };
            // Nobody holds it, and somebody did as the claim started: with a provider that
            // applies moves after answering (OpsWorks detaches first, then attaches), the move
            // may be on its way. It gets the verification window to land before it is judged,
            // so that a move that does land is announced with the holder it was taken from,
            // not as a claim from nobody. (EC2's calls are done when they answer.)
            let in_transit = |o: &Owner<P::State>| {
                o.token.is_none() && claim.from.as_ref().is_some_and(|f| f.token.is_some())
            };
            let until = Instant::now()
                + if P::MOVES_LAND_LATE {
                    verify_for
                } else {
                    Duration::ZERO
                };
            while in_transit(&owner) && Instant::now() < until {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stopping.wait_for(|s| *s) => return,
                }
                match read(provider.clone(), stopping.clone(), eip.to_string()).await {
                    Some(o) => owner = o,
                    None => return,
                }
            }
            let partly = P::partly_holds(&spot, &owner);
            if partly {
                // Part of the move landed (a route in some tables): traffic already comes
                // here, so the move is announced, and the owner poll finishes the rest.
                provider.resume(&owner, &spot);
            }
            if P::holds(&spot, &owner) || partly {
                let alert = claim.alert.map(|(topic_arn, subject, message)| Alert {
                    topic_arn,
                    subject,
                    message,
                });
                let id = holds.claim_settled(&eip, alert.as_ref());
                tracing::info!(event = events::CLAIM_FOUND_AFTER_RESTART, address = %eip, to = %spot.describe(),
                    alert = alert.is_some(), partly, "the claim the last run had under way completed (or partly, and the owner poll finishes it); announcing it now");
                record(
                    Kind::Claimed,
                    format!(
                        "{eip} moved onto this node, {}: the claim the last run had under way completed{} (found after the restart)",
                        spot.describe(),
                        if partly { " in part, and the owner poll finishes it" } else { "" }
                    ),
                    alert.as_ref().map(|_| id),
                );
                if let Some(alert) = alert {
                    local.announce(id, alert);
                }
            } else {
                holds.claim_settled(&eip, None);
                // Still with the holder the claim started from: nothing moved, so the hold-down
                // the claim started (saved before its first call) does not apply; the gates
                // decide the next claim as if the crash had not happened.
                let unmoved = claim.from.as_ref().is_some_and(|f| f.token == owner.token);
                if unmoved {
                    if let Some(mut last_move) = claims_wait {
                        *last_move = None;
                        holds.forget(&eip);
                    }
                }
                tracing::info!(event = events::CLAIM_NOT_COMPLETED, address = %eip, holder = %owner.holder,
                    hold_down = !unmoved, "the claim the last run had under way did not complete");
                record(
                    Kind::ClaimError,
                    format!(
                        "the claim of {eip} the last run had under way did not complete (found after the restart); {eip} is with {}",
                        owner.holder
                    ),
                    None,
                );
            }
        });
    }
}

impl<P: Provider, L: Local> Gated for Gates<P, L> {
    fn run<'a>(
        &'a self,
        ctx: &'a ActionContext,
    ) -> super::BoxFuture<'a, (ActionOutcome, Timeline)> {
        Box::pin(Gates::run_timed(self, ctx))
    }

    fn give_back<'a>(
        &'a self,
        ctx: &'a ActionContext,
    ) -> super::BoxFuture<'a, (ActionOutcome, Timeline)> {
        Box::pin(Gates::give_back(self, ctx))
    }

    fn is_here(&self) -> super::BoxFuture<'_, Result<(bool, String), String>> {
        Box::pin(async move {
            let spot = self.provider.here().await.map_err(|e| e.to_string())?;
            let owner = self.provider.read().await.map_err(|e| e.to_string())?;
            Ok((P::holds(&spot, &owner), owner.holder))
        })
    }

    fn note_owner(&self) {
        Gates::note_owner(self);
    }

    fn reconcile(&self, claim: PendingClaim, stopping: watch::Receiver<bool>) {
        Gates::reconcile(self, claim, stopping);
    }
}

#[allow(clippy::too_many_arguments)]
fn alert_text<S: Spot>(
    noun: &str,
    moved_as: &str,
    address: &str,
    from: &str,
    spot: &S,
    association: &str,
    proof: &str,
    ctx: &ActionContext,
    verified: &str,
) -> String {
    let now_on = match association {
        "" => format!("{} ({verified})", spot.describe()),
        a => format!("{} ({moved_as} {a}, {verified})", spot.describe()),
    };
    let why = match &ctx.planned {
        None => format!(
            "rule {} failed {} consecutive checks; last: {}",
            ctx.rule, ctx.consecutive, ctx.detail
        ),
        Some(p) => format!("planned {} requested by {} (not a failure)", p.kind, p.by),
    };
    format!(
        "Instance {} took over {noun} {address} from {from}.\n\
         Now on: {now_on}.\n\
         Why: {why}.\n\
         {proof}\n\
         Time: {}\n",
        spot.instance_id(),
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
    )
}

#[cfg(test)]
mod tests {
    //! The gate order against a fake provider and a fake node, under paused time: every call
    //! the gates make is recorded, in order, in one list.

    use super::super::dry_run::DryRun;
    use super::super::{verify_until, HereError, Locate};
    use super::*;
    use crate::config::{AddressRef, CheckSpec, EipRef};
    use crate::engine::threshold::Transition;
    use crate::providers::aws::AwsError;
    use crate::state::StateStore;
    use std::collections::VecDeque;
    use std::sync::Mutex as StdMutex;

    const EIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
    const EGRESS: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
    const HOLD_DOWN: Duration = Duration::from_secs(60);

    /// Every call the gates made, in order.
    #[derive(Clone, Default)]
    struct Calls(Arc<StdMutex<Vec<&'static str>>>);

    impl Calls {
        fn push(&self, c: &'static str) {
            self.0.lock().unwrap().push(c);
        }
        /// The calls since the last `take`, which empties the list.
        fn take(&self) -> Vec<&'static str> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    /// This node, as the fake provider names it.
    #[derive(Debug, Clone)]
    struct Me;

    impl Spot for Me {
        const PROVIDER: &'static str = "fake";
        fn read_call(_: &AddressRef) -> &'static str {
            "fake:Read"
        }
        fn describe(&self) -> String {
            "me".into()
        }
        fn instance_id(&self) -> &str {
            "i-me"
        }
        fn pending(&self, alert: Option<&Alert>) -> PendingClaim {
            PendingClaim {
                provider: Self::PROVIDER.into(),
                instance_id: "i-me".into(),
                network_interface_id: None,
                private_ip: None,
                alert: alert.map(|a| (a.topic_arn.clone(), a.subject.clone(), a.message.clone())),
                started_at: 0,
                from: None,
            }
        }
        fn from_pending(_: &PendingClaim) -> Option<Self> {
            Some(Me)
        }
        fn rehearse(&self, _address: &AddressRef) {}
    }

    /// Finds [`Me`], recording the lookup.
    struct FakeHere(Calls);

    impl Locate for FakeHere {
        type Spot = Me;
        async fn here(&self) -> Result<Me, HereError> {
            self.0.push("here");
            Ok(Me)
        }
    }

    /// A provider whose EIP is held by `holder` (None: nobody; `me`: this node). A `take`
    /// answers the next scripted result, or moves the EIP here and verifies.
    struct Fake {
        calls: Calls,
        holder: Arc<StdMutex<Option<&'static str>>>,
        next_take: Arc<StdMutex<VecDeque<MoveResult>>>,
        /// When set, `take` records `saved` first if the claim is already in the state.
        store: Option<StateStore>,
        /// When set, `take` leaves the EIP on this holder whatever it answers (a call the SDK
        /// gave up on that landed all the same).
        lands_on: Arc<StdMutex<Option<Option<&'static str>>>>,
        /// When set, the provider's precondition refuses with it.
        refuse: Arc<StdMutex<Option<(&'static str, String)>>>,
        /// The `from` of the claim saved in `store` as each `take` ran.
        saved_from: Arc<StdMutex<Vec<Option<crate::state::SeenOwner>>>>,
    }

    impl Provider for Fake {
        type Spot = Me;
        type State = Option<&'static str>;
        const MOVES_LAND_LATE: bool = true;

        async fn here(&self) -> Result<Me, HereError> {
            self.calls.push("here");
            Ok(Me)
        }

        async fn read(&self) -> Result<Owner<Self::State>, AwsError> {
            self.calls.push("read");
            let h = *self.holder.lock().unwrap();
            Ok(Owner {
                token: h.map(str::to_owned),
                holder: h.unwrap_or("nobody").to_owned(),
                public_ip: Some(EIP),
                state: h,
            })
        }

        fn spot_of(owner: &Owner<Self::State>) -> Option<Me> {
            owner.token.as_ref().map(|_| Me)
        }

        fn holds(_: &Me, owner: &Owner<Self::State>) -> bool {
            owner.state == Some("me")
        }

        async fn precondition(
            &self,
            _: &Me,
            _: &Owner<Self::State>,
        ) -> Result<(), (&'static str, String)> {
            match self.refuse.lock().unwrap().clone() {
                Some(r) => {
                    self.calls.push("precondition");
                    Err(r)
                }
                None => Ok(()),
            }
        }

        fn address_label(&self, _: &Owner<Self::State>) -> String {
            EIP.to_string()
        }

        async fn take(
            &self,
            _before: &Owner<Self::State>,
            _spot: &Me,
            _verify_for: Duration,
        ) -> MoveResult {
            if let Some(s) = &self.store {
                if s.moved_ago(&EIP.to_string()).is_some() {
                    self.calls.push("saved");
                }
                if let Some(c) = s.pending_claim(&EIP.to_string()) {
                    self.saved_from.lock().unwrap().push(c.from);
                }
            }
            self.calls.push("take");
            if let Some(h) = self.lands_on.lock().unwrap().take() {
                *self.holder.lock().unwrap() = h;
            }
            match self.next_take.lock().unwrap().pop_front() {
                Some(r) => r,
                None => {
                    *self.holder.lock().unwrap() = Some("me");
                    MoveResult::Moved(Some("eipassoc-me".into()), Verified::Yes)
                }
            }
        }
    }

    /// This node: HAProxy answers from a script (ready once the script runs out), checkip
    /// answers `egress`, the rule's check answers `recheck_ok`.
    struct FakeLocal {
        calls: Calls,
        haproxy: StdMutex<VecDeque<bool>>,
        egress: StdMutex<Result<Ipv4Addr, EgressError>>,
        recheck_ok: StdMutex<bool>,
        stopping: StdMutex<bool>,
        alerts: StdMutex<Vec<Alert>>,
        paused: StdMutex<Option<String>>,
        /// Set as the pause when checkip is asked: a pause that lands mid-claim.
        pause_at_egress: StdMutex<Option<String>>,
        /// What the reachability probe answers.
        reach: StdMutex<Result<String, String>>,
        /// How long checkip takes to answer.
        egress_takes: StdMutex<Duration>,
        /// The rule's check starts passing once checkip has answered: a repair mid-claim.
        repaired_at_egress: StdMutex<bool>,
        /// How long the rule's check takes; from its timeout on, it times out (a hung target).
        recheck_takes: StdMutex<Duration>,
        /// Rechecks that ran to their end.
        rechecks_ended: StdMutex<u32>,
        /// Each recheck in turn, before the settings above: how long it takes and whether it
        /// passes (it times out from the rule's timeout on).
        recheck_plan: StdMutex<VecDeque<(Duration, bool)>>,
    }

    impl Local for FakeLocal {
        async fn haproxy(&self) -> Outcome {
            self.calls.push("haproxy");
            match self.haproxy.lock().unwrap().pop_front().unwrap_or(true) {
                true => Outcome::ok("ready"),
                false => Outcome::fail("backend web has no server up"),
            }
        }
        async fn egress(&self) -> Result<Ipv4Addr, EgressError> {
            self.calls.push("egress");
            let takes = *self.egress_takes.lock().unwrap();
            tokio::time::sleep(takes).await;
            if *self.repaired_at_egress.lock().unwrap() {
                *self.recheck_ok.lock().unwrap() = true;
            }
            if let Some(p) = self.pause_at_egress.lock().unwrap().take() {
                *self.paused.lock().unwrap() = Some(p);
            }
            self.egress.lock().unwrap().clone()
        }
        async fn reach(&self, _: &ReachSpec) -> Result<String, String> {
            self.calls.push("reach");
            self.reach.lock().unwrap().clone()
        }
        async fn recheck(&self, _: &CheckSpec, timeout: Duration) -> Option<Outcome> {
            self.calls.push("recheck");
            let planned = self.recheck_plan.lock().unwrap().pop_front();
            let takes = planned.map_or(*self.recheck_takes.lock().unwrap(), |p| p.0);
            tokio::time::sleep(takes.min(timeout)).await;
            *self.rechecks_ended.lock().unwrap() += 1;
            if takes >= timeout {
                return None;
            }
            let ok = planned.map_or(*self.recheck_ok.lock().unwrap(), |p| p.1);
            Some(match ok {
                true => Outcome::ok("HTTP 200"),
                false => Outcome::fail("HTTP 503"),
            })
        }
        fn stopping(&self) -> bool {
            *self.stopping.lock().unwrap()
        }
        fn paused(&self) -> Option<String> {
            self.paused.lock().unwrap().clone()
        }
        fn announce(&self, _id: u64, alert: Alert) {
            self.calls.push("announce");
            self.alerts.lock().unwrap().push(alert);
        }
    }

    struct Bed {
        calls: Calls,
        holder: Arc<StdMutex<Option<&'static str>>>,
        next_take: Arc<StdMutex<VecDeque<MoveResult>>>,
        local: Arc<FakeLocal>,
        gates: Gates<Fake, FakeLocal>,
        history: History,
        lands_on: Arc<StdMutex<Option<Option<&'static str>>>>,
        refuse: Arc<StdMutex<Option<(&'static str, String)>>>,
        saved_from: Arc<StdMutex<Vec<Option<crate::state::SeenOwner>>>>,
    }

    fn spec() -> ClaimSpec {
        ClaimSpec {
            name: "claim".into(),
            address: AddressRef::Eip(EipRef::PublicIp(EIP)),
            hold_down: HOLD_DOWN,
            sns_topic_arn: Some("arn:aws:sns:us-east-1:123456789012:ops".into()),
            reach: None,
        }
    }

    fn local(calls: &Calls) -> Arc<FakeLocal> {
        Arc::new(FakeLocal {
            calls: calls.clone(),
            haproxy: StdMutex::default(),
            egress: StdMutex::new(Ok(EGRESS)),
            recheck_ok: StdMutex::new(false),
            stopping: StdMutex::new(false),
            alerts: StdMutex::default(),
            paused: StdMutex::default(),
            pause_at_egress: StdMutex::default(),
            reach: StdMutex::new(Ok("10.0.0.2:53 (TCP)".into())),
            egress_takes: StdMutex::new(Duration::ZERO),
            repaired_at_egress: StdMutex::new(false),
            recheck_takes: StdMutex::new(Duration::ZERO),
            rechecks_ended: StdMutex::new(0),
            recheck_plan: StdMutex::default(),
        })
    }

    /// The EIP is on node `a`; this node is healthy and its egress verifies.
    fn bed_with(store: StateStore) -> Bed {
        bed_of(store, spec())
    }

    fn bed_of(store: StateStore, spec: ClaimSpec) -> Bed {
        let calls = Calls::default();
        let holder = Arc::new(StdMutex::new(Some("a")));
        let next_take = Arc::new(StdMutex::new(VecDeque::new()));
        let lands_on = Arc::new(StdMutex::new(None));
        let refuse = Arc::new(StdMutex::new(None));
        let saved_from = Arc::new(StdMutex::new(Vec::new()));
        let fake = Fake {
            calls: calls.clone(),
            holder: holder.clone(),
            next_take: next_take.clone(),
            store: Some(store.clone()),
            lands_on: lands_on.clone(),
            refuse: refuse.clone(),
            saved_from: saved_from.clone(),
        };
        let local = local(&calls);
        let history = History::in_memory();
        let gates = Gates::with(
            spec,
            fake,
            local.clone(),
            "[watchdog]".into(),
            Duration::from_secs(10),
            InFlight::default(),
            &HoldDowns::new(store),
            Arc::new(Metrics::new().expect("metrics")),
            history.clone(),
        );
        Bed {
            refuse,
            history,
            lands_on,
            saved_from,
            calls,
            holder,
            next_take,
            local,
            gates,
        }
    }

    fn bed() -> Bed {
        bed_with(StateStore::default())
    }

    fn ctx() -> ActionContext {
        let check = CheckSpec::Haproxy(HaproxyProbeSpec {
            stats_socket: None,
            health_url: None,
            frontend: None,
            backend: None,
            timeout: Duration::from_secs(1),
            min_up: None,
            min_up_ratio: None,
        });
        ActionContext {
            rule: "peer".into(),
            transition: Transition::Failed,
            detail: "HTTP 503".into(),
            consecutive: 3,
            retry: false,
            recheck: Some((check, Duration::from_secs(1))),
            times: Default::default(),
            planned: None,
            group: None,
        }
    }

    fn reason(o: &ActionOutcome) -> &'static str {
        match o {
            ActionOutcome::Refused { reason, .. } => reason,
            other => panic!("not refused: {other:?}"),
        }
    }

    /// Every gate, in order: nothing changes before the owner is read, egress verified and
    /// the last look taken; then the move, and exactly one alert.
    const FULL_CLAIM: [&str; 8] = [
        "haproxy", "here", "read", "egress", "haproxy", "recheck", "take", "announce",
    ];

    /// A private address (claim_private_ip, claim_route): the reachability probe into the
    /// VPC takes checkip's place, and the alert says which target answered.
    fn private_bed() -> Bed {
        let mut s = spec();
        s.address = AddressRef::Overlay(Ipv4Addr::new(192, 168, 100, 10));
        s.reach = Some(ReachSpec {
            targets: vec![crate::config::ReachTarget::Tcp(
                "10.0.0.2:53".parse().unwrap(),
            )],
            timeout: Duration::from_secs(1),
        });
        bed_of(StateStore::default(), s)
    }

    #[tokio::test(start_paused = true)]
    async fn a_private_claim_proves_the_vpc_path_not_the_internet_one() {
        let b = private_bed();
        let out = b.gates.run(&ctx()).await;
        assert!(matches!(&out, ActionOutcome::Done(_)), "{out:?}");
        let calls = b.calls.take();
        assert!(
            calls.contains(&"reach") && !calls.contains(&"egress"),
            "{calls:?}"
        );
        let alerts = b.local.alerts.lock().unwrap();
        assert!(
            alerts[0].message.contains("took over overlay IP")
                && alerts[0]
                    .message
                    .contains("Reachability verified: this node reached 10.0.0.2:53"),
            "{:?}",
            alerts[0]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_cut_off_from_the_vpc_does_not_take_a_private_address() {
        let b = private_bed();
        *b.local.reach.lock().unwrap() = Err("10.0.0.2:53: no connection within 1s".into());
        let out = b.gates.run(&ctx()).await;
        assert!(
            matches!(&out, ActionOutcome::Refused { reason: "vpc_unreachable", detail } if detail.contains("10.0.0.2:53")),
            "{out:?}"
        );
        assert!(!b.calls.take().contains(&"take"));
        assert!(b.local.alerts.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_provider_precondition_refuses_before_any_change() {
        let b = private_bed();
        *b.refuse.lock().unwrap() = Some((
            "source_dest_check",
            "source/destination checking is on".into(),
        ));
        let out = b.gates.run(&ctx()).await;
        assert!(
            matches!(
                &out,
                ActionOutcome::Refused {
                    reason: "source_dest_check",
                    ..
                }
            ),
            "{out:?}"
        );
        let calls = b.calls.take();
        assert!(
            calls.contains(&"precondition")
                && !calls.contains(&"reach")
                && !calls.contains(&"take"),
            "{calls:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_gates_run_in_order_and_the_move_comes_last_with_one_alert() {
        let b = bed();
        let out = b.gates.run(&ctx()).await;
        assert!(
            matches!(&out, ActionOutcome::Done(d) if d.contains("claimed 203.0.113.10 from a onto me (verified)")),
            "{out:?}"
        );
        assert_eq!(b.calls.take(), FULL_CLAIM);
        let alerts = b.local.alerts.lock().unwrap();
        assert_eq!(alerts.len(), 1);
        assert!(
            alerts[0].subject.contains("i-me took over 203.0.113.10"),
            "{:?}",
            alerts[0]
        );
        assert!(
            alerts[0]
                .message
                .contains("association eipassoc-me, verified"),
            "{:?}",
            alerts[0]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_claim_is_saved_before_the_first_mutating_call_and_its_alert_with_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = StateStore::open(dir.path()).unwrap();
        let b = bed_with(store);
        assert!(matches!(b.gates.run(&ctx()).await, ActionOutcome::Done(_)));
        let calls = b.calls.take();
        let saved = calls.iter().position(|c| *c == "saved");
        assert_eq!(saved.map(|i| calls[i + 1]), Some("take"), "{calls:?}");
        drop(b);
        // The claim's own task may still be dropping its copy of the store (and with it the
        // directory's lock) for a moment after the run returned.
        let mut reopened = StateStore::open(dir.path());
        for _ in 0..100 {
            if !matches!(reopened, Err(crate::state::OpenError::Busy(_))) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            reopened = StateStore::open(dir.path());
        }
        let (_, recovered) = reopened.unwrap();
        assert!(
            recovered.claims.is_empty(),
            "settled: {:?}",
            recovered.claims
        );
        assert_eq!(recovered.alerts.len(), 1, "queued in the settling write");
    }

    #[tokio::test(start_paused = true)]
    async fn no_read_and_no_move_while_the_local_haproxy_is_not_ready() {
        let b = bed();
        b.local.haproxy.lock().unwrap().push_back(false);
        let out = b.gates.run(&ctx()).await;
        assert_eq!(reason(&out), "local_haproxy_unhealthy");
        assert_eq!(b.calls.take(), ["haproxy"]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_eip_already_here_is_left_alone() {
        let b = bed();
        *b.holder.lock().unwrap() = Some("me");
        let out = b.gates.run(&ctx()).await;
        assert!(
            matches!(&out, ActionOutcome::NoOp(d) if d.contains("already on this node")),
            "{out:?}"
        );
        assert_eq!(b.calls.take(), ["haproxy", "here", "read"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_takeover_while_the_rule_was_failing_is_left_alone_for_the_hold_down() {
        let b = bed();
        b.gates.note_owner(); // the rule starts failing: `a` holds the EIP
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(b.calls.take(), ["read"]);
        *b.holder.lock().unwrap() = Some("b"); // another standby took over meanwhile
        let out = b.gates.run(&ctx()).await;
        assert_eq!(reason(&out), "moved_meanwhile");
        assert_eq!(
            b.calls.take(),
            ["haproxy", "here", "read"],
            "no egress check, no move"
        );

        // The takeover starts the hold-down: `b` holds it, so nothing moves within it.
        tokio::time::advance(HOLD_DOWN - Duration::from_secs(1)).await;
        assert_eq!(reason(&b.gates.run(&ctx()).await), "hold_down");
        assert_eq!(b.calls.take(), ["read", "here"]);

        // After it, `b` is what the rule fails about: claimed, once.
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(matches!(b.gates.run(&ctx()).await, ActionOutcome::Done(_)));
        assert_eq!(b.calls.take(), FULL_CLAIM);
    }

    #[tokio::test(start_paused = true)]
    async fn no_move_without_verified_egress() {
        let b = bed();
        *b.local.egress.lock().unwrap() = Err(EgressError::Timeout("3s".into()));
        let out = b.gates.run(&ctx()).await;
        assert_eq!(reason(&out), "egress_timeout");
        assert_eq!(b.calls.take(), ["haproxy", "here", "read", "egress"]);
        assert!(b.local.alerts.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn egress_from_the_eip_while_ec2_shows_it_elsewhere_is_refused_every_time() {
        let b = bed();
        *b.local.egress.lock().unwrap() = Ok(EIP);
        for _ in 0..2 {
            let out = b.gates.run(&ctx()).await;
            assert_eq!(reason(&out), "egress_is_the_eip", "{out:?}");
            assert_eq!(
                b.calls.take(),
                ["haproxy", "here", "read", "egress"],
                "no move"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_recheck_overlaps_the_other_gates_instead_of_adding_its_timeout() {
        // The target hangs: the rule's check times out after its 1 s; checkip takes 600 ms.
        let b = bed();
        *b.local.recheck_takes.lock().unwrap() = Duration::from_secs(5);
        *b.local.egress_takes.lock().unwrap() = Duration::from_millis(600);
        let started = Instant::now();
        let out = b.gates.run(&ctx()).await;
        assert!(matches!(out, ActionOutcome::Done(_)), "{out:?}");
        // One timeout, not checkip's 600 ms followed by the timeout.
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        // The recheck's task first runs when the claim first waits (on checkip here); a fresh
        // one joins it at the last look, and both wait out the first one's timeout.
        assert_eq!(
            b.calls.take(),
            [
                "haproxy", "here", "read", "egress", "recheck", "haproxy", "recheck", "take",
                "announce"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_repair_while_the_gates_ran_is_seen_on_a_fresh_connection_though_the_first_is_stuck()
    {
        // The first recheck hangs on the stuck process; meanwhile the target was restarted,
        // and a fresh check passes at once.
        let b = bed();
        b.local
            .recheck_plan
            .lock()
            .unwrap()
            .extend([(Duration::from_secs(5), false), (Duration::ZERO, true)]);
        *b.local.egress_takes.lock().unwrap() = Duration::from_millis(300);
        let started = Instant::now();
        assert_eq!(reason(&b.gates.run(&ctx()).await), "check_passes_again");
        assert_eq!(started.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_recheck_that_passed_refuses_the_claim_whatever_the_next_says() {
        let b = bed();
        b.local
            .recheck_plan
            .lock()
            .unwrap()
            .extend([(Duration::ZERO, true), (Duration::ZERO, false)]);
        *b.local.egress_takes.lock().unwrap() = Duration::from_millis(300);
        assert_eq!(reason(&b.gates.run(&ctx()).await), "check_passes_again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_fresh_recheck_gets_a_quarter_timeout_when_the_gates_took_nearly_all_of_it() {
        // Gates take 950 ms of the 1 s timeout; the fresh run would pass after 200 ms: it
        // gets 250 ms, and refuses.
        let b = bed();
        b.local.recheck_plan.lock().unwrap().extend([
            (Duration::from_secs(5), false),
            (Duration::from_millis(200), true),
        ]);
        *b.local.egress_takes.lock().unwrap() = Duration::from_millis(950);
        let started = Instant::now();
        assert_eq!(reason(&b.gates.run(&ctx()).await), "check_passes_again");
        assert_eq!(started.elapsed(), Duration::from_millis(1150));
    }

    #[tokio::test(start_paused = true)]
    async fn a_recheck_answered_before_the_gates_passed_runs_again_at_the_last_look() {
        // The check fails at once (a stopped target) while checkip is asked; meanwhile the
        // target is repaired: the check that counts is the one after checkip, as before.
        let b = bed();
        *b.local.egress_takes.lock().unwrap() = Duration::from_millis(600);
        *b.local.repaired_at_egress.lock().unwrap() = true;
        assert_eq!(reason(&b.gates.run(&ctx()).await), "check_passes_again");
        assert_eq!(
            b.calls.take(),
            ["haproxy", "here", "read", "egress", "recheck", "haproxy", "recheck"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_refused_before_its_last_look_stops_its_recheck() {
        let b = bed();
        *b.local.recheck_takes.lock().unwrap() = Duration::from_millis(900);
        *b.local.egress_takes.lock().unwrap() = Duration::from_millis(100);
        *b.local.egress.lock().unwrap() = Err(EgressError::Garbage("<html>".into()));
        assert_eq!(reason(&b.gates.run(&ctx()).await), "egress_garbage");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(*b.local.rechecks_ended.lock().unwrap(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_look_stops_the_claim() {
        // The rule's check passes again: someone fixed it.
        let b = bed();
        *b.local.recheck_ok.lock().unwrap() = true;
        assert_eq!(reason(&b.gates.run(&ctx()).await), "check_passes_again");
        assert_eq!(b.calls.take(), &FULL_CLAIM[..6]);

        // Our HAProxy died while we asked around.
        let b = bed();
        b.local.haproxy.lock().unwrap().extend([true, false]);
        assert_eq!(
            reason(&b.gates.run(&ctx()).await),
            "local_haproxy_unhealthy"
        );
        assert_eq!(b.calls.take(), &FULL_CLAIM[..5]);

        // The daemon is stopping: no claim starts.
        let b = bed();
        *b.local.stopping.lock().unwrap() = true;
        assert_eq!(reason(&b.gates.run(&ctx()).await), "shutting_down");
        assert_eq!(b.calls.take(), &FULL_CLAIM[..4]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_starts_a_hold_down_unless_nobody_holds_the_eip() {
        let b = bed();
        assert!(matches!(b.gates.run(&ctx()).await, ActionOutcome::Done(_)));
        b.calls.take();

        // Another node takes it back: within the hold-down we only look.
        *b.holder.lock().unwrap() = Some("b");
        tokio::time::advance(HOLD_DOWN / 2).await;
        let out = b.gates.run(&ctx()).await;
        assert_eq!(reason(&out), "hold_down");
        assert!(
            matches!(&out, ActionOutcome::Refused { detail, .. } if detail.contains("moved 30s ago") && detail.contains("next claim in 30s")),
            "{out:?}"
        );
        assert_eq!(b.calls.take(), ["read", "here"]);

        // Nobody holds it (a release): there is nobody to ping-pong with.
        *b.holder.lock().unwrap() = None;
        assert!(matches!(b.gates.run(&ctx()).await, ActionOutcome::Done(_)));
        let calls = b.calls.take();
        assert_eq!(calls[..2], ["read", "here"]);
        assert_eq!(calls[2..], FULL_CLAIM);

        // After the hold-down, the gates alone decide.
        *b.holder.lock().unwrap() = Some("b");
        tokio::time::advance(HOLD_DOWN).await;
        assert!(matches!(b.gates.run(&ctx()).await, ActionOutcome::Done(_)));
        assert_eq!(b.calls.take(), FULL_CLAIM);
        assert_eq!(
            b.local.alerts.lock().unwrap().len(),
            3,
            "one alert per move"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_race_backs_off_for_the_hold_down_and_announces_nothing() {
        let b = bed();
        b.next_take
            .lock()
            .unwrap()
            .push_back(MoveResult::Lost("b associated it first".into()));
        assert_eq!(reason(&b.gates.run(&ctx()).await), "lost_race");
        assert_eq!(b.calls.take(), &FULL_CLAIM[..7]);
        *b.holder.lock().unwrap() = Some("b");
        assert_eq!(reason(&b.gates.run(&ctx()).await), "hold_down");
        assert_eq!(b.calls.take(), ["read", "here"], "no fighting back");
        assert!(b.local.alerts.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn verification_decides_what_a_move_counts_as() {
        // Another node shows up right after our move: lost, no alert.
        let b = bed();
        b.next_take.lock().unwrap().push_back(MoveResult::Moved(
            Some("eipassoc-me".into()),
            Verified::Lost("b".into()),
        ));
        assert_eq!(reason(&b.gates.run(&ctx()).await), "lost_race");
        assert!(b.local.alerts.lock().unwrap().is_empty());

        // Never shown in time: the move stands, announced once as not verified.
        let b = bed();
        b.next_take.lock().unwrap().push_back(MoveResult::Moved(
            Some("eipassoc-me".into()),
            Verified::Unknown("DescribeAddresses did not show it".into()),
        ));
        let out = b.gates.run(&ctx()).await;
        assert!(
            matches!(&out, ActionOutcome::Done(d) if d.ends_with("(not verified)")),
            "{out:?}"
        );
        assert_eq!(b.calls.take(), FULL_CLAIM);
        {
            let alerts = b.local.alerts.lock().unwrap();
            assert_eq!(alerts.len(), 1);
            assert!(
                alerts[0]
                    .message
                    .contains("not verified: DescribeAddresses did not show it"),
                "the alert says why: {}",
                alerts[0].message
            );
        }

        // The provider failed: an error to retry, nothing announced, no hold-down.
        let b = bed();
        b.next_take
            .lock()
            .unwrap()
            .push_back(MoveResult::Failed("ec2:AssociateAddress failed".into()));
        assert!(matches!(b.gates.run(&ctx()).await, ActionOutcome::Error(_)));
        b.calls.take();
        assert!(matches!(b.gates.run(&ctx()).await, ActionOutcome::Done(_)));
        assert_eq!(b.calls.take(), FULL_CLAIM, "retried at once");
    }

    #[tokio::test(start_paused = true)]
    async fn two_runs_at_once_move_the_eip_once() {
        let b = bed();
        let c = ctx();
        let (x, y) = tokio::join!(b.gates.run(&c), b.gates.run(&c));
        let done = [&x, &y]
            .iter()
            .filter(|o| matches!(o, ActionOutcome::Done(_)))
            .count();
        assert_eq!(done, 1, "{x:?} {y:?}");
        assert!(
            matches!(&y, ActionOutcome::NoOp(d) if d.contains("already on this node")),
            "{y:?}"
        );
        assert_eq!(b.calls.take().iter().filter(|c| **c == "take").count(), 1);
        assert_eq!(b.local.alerts.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dry_run_runs_the_gates_up_to_egress_and_changes_nothing() {
        let calls = Calls::default();
        let local = local(&calls);
        let gates = Gates::with(
            spec(),
            DryRun::new(
                FakeHere(calls.clone()),
                spec().address,
                spec().sns_topic_arn,
            ),
            local.clone(),
            "[watchdog]".into(),
            Duration::from_secs(10),
            InFlight::default(),
            &HoldDowns::default(),
            Arc::new(Metrics::new().expect("metrics")),
            History::in_memory(),
        );
        gates.note_owner();
        tokio::time::sleep(Duration::from_millis(1)).await;
        let out = gates.run(&ctx()).await;
        assert!(
            matches!(&out, ActionOutcome::NoOp(d) if d == "dry run: would claim 203.0.113.10 onto me"),
            "{out:?}"
        );
        // No last look and no alert: there is no change to guard or to announce.
        assert_eq!(calls.take(), ["haproxy", "here", "egress"]);
        assert!(local.alerts.lock().unwrap().is_empty());
        let out = gates.run(&ctx()).await;
        assert!(
            matches!(out, ActionOutcome::NoOp(_)),
            "no hold-down after a dry run: {out:?}"
        );

        *local.egress.lock().unwrap() = Err(EgressError::Status(503));
        let out = gates.run(&ctx()).await;
        assert!(
            matches!(&out, ActionOutcome::Refused { reason: "egress_bad_status", detail } if detail.starts_with("dry run: egress not verified, would not claim")),
            "{out:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_saved_claim_is_announced_only_if_it_completed() {
        for (holder, announced) in [(Some("me"), 1), (Some("b"), 0), (None, 0)] {
            let b = bed();
            *b.holder.lock().unwrap() = holder;
            let (_stop, stopping) = watch::channel(false);
            let mut claim = Me.pending(None);
            claim.alert = Some(("arn:t".into(), "subject".into(), "message".into()));
            b.gates.reconcile(claim, stopping);
            tokio::time::sleep(Duration::from_millis(1)).await;
            let want: &[&str] = match announced {
                1 => &["read", "announce"],
                _ => &["read"],
            };
            assert_eq!(b.calls.take(), want, "{holder:?}");
            assert_eq!(
                b.local.alerts.lock().unwrap().len(),
                announced,
                "{holder:?}"
            );
            if announced == 1 {
                assert!(matches!(b.gates.run(&ctx()).await, ActionOutcome::NoOp(_)));
                assert_eq!(b.local.alerts.lock().unwrap().len(), 1, "never twice");
            }
        }

        // Saved through another provider: forgotten without a read.
        let b = bed();
        let (_stop, stopping) = watch::channel(false);
        let mut claim = Me.pending(None);
        claim.provider = "ec2".into();
        b.gates.reconcile(claim, stopping);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(b.calls.take().is_empty());
    }

    /// Breaker's find: a `drill --back` return cut by kill -9 was saved without who held the
    /// address as it started, so the restart judged it at once ("with nobody") and the move
    /// that landed 6 s later was never announced. Every saved move names its starting holder.
    #[tokio::test(start_paused = true)]
    async fn every_move_saved_in_flight_names_who_held_the_address_as_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let b = bed_with(StateStore::open(dir.path()).unwrap().0);
        *b.local.recheck_ok.lock().unwrap() = true;
        let (out, _) = b.gates.run_timed(&planned()).await;
        assert!(matches!(&out, ActionOutcome::Done(_)), "{out:?}");
        // (The fake moves everything onto this node: the return's outcome says nothing here.)
        let _ = Gated::give_back(&b.gates, &planned()).await;
        let saved: Vec<Option<String>> = b
            .saved_from
            .lock()
            .unwrap()
            .iter()
            .map(|f| f.as_ref().and_then(|f| f.token.clone()))
            .collect();
        // The takeover started from `a`; the return from this node.
        assert_eq!(saved, [Some("a".to_string()), Some("me".to_string())]);
    }

    /// Breaker's find: a claim killed while its move was on its way (OpsWorks detaches the
    /// address first, then attaches it, asynchronously) was judged on one read showing nobody:
    /// not completed; the next claim then announced a move "from nobody" (or the move landed
    /// unannounced). The move now gets the verification window to land.
    #[tokio::test(start_paused = true)]
    async fn a_move_still_on_its_way_after_a_restart_is_given_time_to_land() {
        let b = bed();
        *b.holder.lock().unwrap() = None; // detached from `a`, not attached here yet
        let (_stop, stopping) = watch::channel(false);
        let mut claim = Me.pending(None);
        claim.alert = Some(("arn:t".into(), "subject".into(), "from a".into()));
        claim.from = Some(crate::state::SeenOwner {
            token: Some("a".into()),
        });
        b.gates.reconcile(claim, stopping);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(b.local.alerts.lock().unwrap().is_empty(), "not judged yet");
        *b.holder.lock().unwrap() = Some("me"); // it lands
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            b.local.alerts.lock().unwrap().len(),
            1,
            "announced once, with the saved text"
        );
        let h = b.history.entries();
        assert!(
            h.last()
                .is_some_and(|e| e.kind == crate::history::Kind::Claimed),
            "{h:?}"
        );

        // Nobody held it as the claim started either: nothing is on its way; judged at once.
        let b = bed();
        *b.holder.lock().unwrap() = None;
        let (_stop, stopping) = watch::channel(false);
        let mut claim = Me.pending(None);
        claim.from = Some(crate::state::SeenOwner { token: None });
        b.gates.reconcile(claim, stopping);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(b.calls.take(), ["read"]);
    }

    /// Breaker's find: a claim the killed process had under way, found completed (or not)
    /// after the restart, was announced but missing from `status --history`.
    #[tokio::test(start_paused = true)]
    async fn a_claim_settled_after_a_restart_is_in_the_history() {
        for (holder, kind) in [
            (Some("me"), crate::history::Kind::Claimed),
            (Some("b"), crate::history::Kind::ClaimError),
        ] {
            let b = bed();
            *b.holder.lock().unwrap() = holder;
            let (_stop, stopping) = watch::channel(false);
            let mut claim = Me.pending(None);
            claim.alert = Some(("arn:t".into(), "subject".into(), "message".into()));
            let started = claim.started_at;
            b.gates.reconcile(claim, stopping);
            tokio::time::sleep(Duration::from_millis(1)).await;
            let h = b.history.entries();
            let e = h.last().expect("recorded");
            assert_eq!(e.kind, kind, "{holder:?}: {e:?}");
            assert!(e.detail.contains("found after the restart"), "{e:?}");
            assert_eq!(e.timings.claim_started, Some(started * 1000));
            assert_eq!(e.action.as_deref(), Some("claim"), "{e:?}");
        }
    }

    /// A store in `dir`, waiting out a lock a dropped bed's tasks may hold for a moment.
    async fn reopen(dir: &std::path::Path) -> (StateStore, crate::state::Recovered) {
        let mut reopened = StateStore::open(dir);
        for _ in 0..100 {
            if !matches!(reopened, Err(crate::state::OpenError::Busy(_))) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            reopened = StateStore::open(dir);
        }
        reopened.expect("the state directory")
    }

    #[tokio::test(start_paused = true)]
    async fn the_owner_noted_as_the_rule_started_failing_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let b = bed_with(StateStore::open(dir.path()).unwrap().0);
        b.gates.note_owner(); // the rule starts failing: `a` holds the EIP
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(b.calls.take(), ["read"]);
        drop(b); // the daemon stops, mid-outage

        // Meanwhile another standby takes over; the restarted daemon's rule is still failing.
        let b = bed_with(reopen(dir.path()).await.0);
        *b.holder.lock().unwrap() = Some("b");
        let out = b.gates.run(&ctx()).await;
        assert_eq!(reason(&out), "moved_meanwhile");
        assert_eq!(b.calls.take(), ["haproxy", "here", "read"], "no move");
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_cut_before_anything_moved_leaves_no_hold_down_after_the_restart() {
        // (holder as the claim started, holder found after the restart, a hold-down applies)
        for (from, found, held) in [
            (Some(Some("a")), "a", false), // nothing moved: the claim is made again at once
            (Some(Some("a")), "b", true),  // another node took it meanwhile
            (None, "a", true),             // a file of an older version: as before
        ] {
            let dir = tempfile::tempdir().unwrap();
            let (store, _) = StateStore::open(dir.path()).unwrap();
            let mut claim = Me.pending(None);
            claim.from = from.map(|t: Option<&str>| crate::state::SeenOwner {
                token: t.map(str::to_owned),
            });
            store.claim_started(&EIP.to_string(), claim);
            drop(store); // kill -9 before the first call reached the provider

            let (store, recovered) = reopen(dir.path()).await;
            let claim = recovered
                .claims
                .into_values()
                .next()
                .expect("the saved claim");
            let b = bed_with(store);
            *b.holder.lock().unwrap() = Some(found);
            let (_stop, stopping) = watch::channel(false);
            b.gates.reconcile(claim, stopping);
            tokio::time::sleep(Duration::from_millis(1)).await;
            assert_eq!(b.calls.take(), ["read"], "{from:?} {found}");
            let out = b.gates.run(&ctx()).await;
            if held {
                assert_eq!(reason(&out), "hold_down", "{from:?} {found}");
            } else {
                assert!(matches!(out, ActionOutcome::Done(_)), "{out:?}");
                let calls = b.calls.take();
                assert!(calls.contains(&"take"), "{calls:?}");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn verification_looks_for_its_whole_window_then_gives_its_reason() {
        let start = Instant::now();
        let v = verify_until(
            Duration::from_secs(10),
            "not shown in time",
            || async { Ok::<_, AwsError>(()) },
            |_| None,
        )
        .await;
        assert!(matches!(&v, Verified::Unknown(w) if w == "not shown in time"));
        let took = start.elapsed();
        assert!(
            took >= Duration::from_secs(10) && took < Duration::from_secs(11),
            "{took:?}"
        );

        let mut reads = 0;
        let v = verify_until(
            Duration::from_secs(10),
            "not shown in time",
            || {
                reads += 1;
                let n = reads;
                async move {
                    match n {
                        1 => Err(AwsError {
                            operation: "ec2:DescribeAddresses",
                            code: Some("Throttling".into()),
                            message: "slow down".into(),
                        }),
                        _ => Ok(n),
                    }
                }
            },
            |n| (n == 3).then_some(Verified::Yes),
        )
        .await;
        assert!(
            matches!(v, Verified::Yes),
            "settles as soon as a read shows it"
        );
        assert_eq!(reads, 3);
    }

    fn planned() -> ActionContext {
        ActionContext {
            planned: Some(crate::actions::Planned {
                by: "alice (uid 1000)".into(),
                kind: "takeover",
            }),
            ..ctx()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_node_makes_no_claim_and_no_call() {
        let b = bed();
        *b.local.paused.lock().unwrap() = Some("paused by root (\"patching\")".into());
        let out = b.gates.run(&ctx()).await;
        assert_eq!(reason(&out), "paused");
        assert!(b.calls.take().is_empty(), "no probe, no read, no move");
        assert_eq!(reason(&b.gates.run(&ctx()).await), "paused");
        // A planned takeover is refused the same way.
        assert_eq!(reason(&b.gates.run(&planned()).await), "paused");
        assert!(b.calls.take().is_empty());
        let h = b.history.entries();
        assert_eq!(h.len(), 2, "the same refusal twice is one entry: {h:?}");
        assert_eq!((h[0].reason.as_deref(), h[0].repeats), (Some("paused"), 1));
        assert_eq!(h[1].planned.as_deref(), Some("takeover"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_that_lands_during_a_claim_stops_it_at_the_last_look() {
        let b = bed();
        *b.local.pause_at_egress.lock().unwrap() = Some("paused by bob".into());
        let out = b.gates.run(&ctx()).await;
        assert_eq!(reason(&out), "paused");
        assert_eq!(b.calls.take(), ["haproxy", "here", "read", "egress"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_planned_takeover_overrides_the_hold_down_and_the_recheck_but_keeps_the_safety_gates()
    {
        let b = bed();
        assert!(matches!(b.gates.run(&ctx()).await, ActionOutcome::Done(_)));
        b.calls.take();
        // Back on `a`, inside the hold-down: a failing rule would be refused...
        *b.holder.lock().unwrap() = Some("a");
        assert_eq!(reason(&b.gates.run(&ctx()).await), "hold_down");
        b.calls.take();
        // ...an operator's takeover is not, and does not ask whether the rule still fails.
        *b.local.recheck_ok.lock().unwrap() = true;
        let (out, tl) = b.gates.run_timed(&planned()).await;
        assert!(matches!(&out, ActionOutcome::Done(_)), "{out:?}");
        assert_eq!(
            b.calls.take(),
            ["haproxy", "here", "read", "egress", "haproxy", "take", "announce"]
        );
        let names: Vec<&str> = tl.steps.iter().map(|s| s.step.as_str()).collect();
        assert_eq!(
            names,
            [
                "claim_started",
                "local_haproxy_ready",
                "owner_read",
                "egress_verified",
                "last_look",
                "first_mutating_call",
                "verified",
                "alert_queued"
            ]
        );
        assert!(tl.steps.windows(2).all(|w| w[0].at <= w[1].at), "{tl:?}");
        let alerts = b.local.alerts.lock().unwrap();
        let last = alerts.last().expect("one alert");
        assert!(last.subject.contains("(planned takeover)"), "{last:?}");
        assert!(
            last.message
                .contains("planned takeover requested by alice (uid 1000)"),
            "{last:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_planned_takeover_is_refused_without_a_ready_haproxy_or_verified_egress() {
        let b = bed();
        b.local.haproxy.lock().unwrap().push_back(false);
        assert_eq!(
            reason(&b.gates.run(&planned()).await),
            "local_haproxy_unhealthy"
        );
        *b.local.egress.lock().unwrap() = Err(EgressError::Timeout("3s".into()));
        let out = b.gates.run(&planned()).await;
        assert!(matches!(out, ActionOutcome::Refused { .. }), "{out:?}");
        assert!(!b.calls.take().contains(&"take"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_is_recorded_in_the_history_with_ordered_timings() {
        let b = bed();
        let mut c = ctx();
        c.times.first_failed_check = Some(crate::history::now_ms().saturating_sub(3000));
        c.times.rule_failed = Some(crate::history::now_ms().saturating_sub(1000));
        assert!(matches!(b.gates.run(&c).await, ActionOutcome::Done(_)));
        let h = b.history.entries();
        let e = h.last().expect("recorded");
        assert_eq!(e.kind, crate::history::Kind::Claimed);
        let t = &e.timings;
        let order = [
            t.first_failed_check,
            t.rule_failed,
            t.claim_started,
            t.first_mutating_call,
            t.verified,
        ];
        assert!(order.iter().all(Option::is_some), "{t:?}");
        assert!(order.windows(2).all(|w| w[0] <= w[1]), "{t:?}");
    }

    /// A tester's find: checkip answering the EIP made a planned takeover say "nothing to do,
    /// it is on this node" (exit 0) while EC2 showed it on the other node.
    #[tokio::test(start_paused = true)]
    async fn a_planned_takeover_trusts_the_api_over_checkip() {
        let b = bed();
        *b.local.egress.lock().unwrap() = Ok(EIP);
        let (out, tl) = b.gates.run_timed(&planned()).await;
        assert_eq!(reason(&out), "egress_is_the_eip");
        assert!(tl.at("already_here").is_none(), "{tl:?}");
        assert!(!b.calls.take().contains(&"take"));
    }

    /// A tester's find: a move that released the EIP and failed to associate it left the
    /// address on nobody without a word.
    #[tokio::test(start_paused = true)]
    async fn a_move_that_fails_after_the_release_says_the_address_is_dark() {
        let b = bed();
        *b.holder.lock().unwrap() = None;
        b.next_take.lock().unwrap().push_back(MoveResult::Failed(
            "ec2:AssociateAddress: InternalError".into(),
        ));
        let out = b.gates.run(&planned()).await;
        assert!(
            matches!(&out, ActionOutcome::Error(d) if d.contains("NOBODY") && d.contains("InternalError")),
            "{out:?}"
        );
        let alerts = b.local.alerts.lock().unwrap();
        assert_eq!(alerts.len(), 1, "one alert says the address is dark");
        assert!(
            alerts[0].subject.contains("associated with nobody"),
            "{:?}",
            alerts[0]
        );
    }

    /// A tester's find: an AssociateAddress that timed out but landed was reported as a
    /// failure ("dark", or "still on" this very node) and the move was never announced.
    #[tokio::test(start_paused = true)]
    async fn a_move_the_sdk_gave_up_on_that_landed_is_a_claim_announced_once() {
        let b = bed();
        *b.lands_on.lock().unwrap() = Some(Some("me"));
        b.next_take
            .lock()
            .unwrap()
            .push_back(MoveResult::Failed("ec2:AssociateAddress: timed out".into()));
        let (out, tl) = b.gates.run_timed(&planned()).await;
        assert!(matches!(&out, ActionOutcome::Done(_)), "{out:?}");
        assert!(tl.at("verified").is_some(), "{tl:?}");
        let alerts = b.local.alerts.lock().unwrap();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert!(alerts[0].subject.contains("took over"), "{:?}", alerts[0]);
    }
}
