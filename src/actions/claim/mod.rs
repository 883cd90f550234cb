//! `type = "claim_eip"`: move an Elastic IP onto this node, safely.
//!
//! The gates are written once, in `gates.rs`, against two narrow traits: `Provider` reads
//! and moves the address (`ec2.rs`, the default; `opsworks.rs`; and `dry_run.rs`, which logs
//! the calls it would make and makes none), and `gates::Local` looks at this node (HAProxy,
//! egress, the rule's check, shutdown, the alert outbox).
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
//!    someone else fixed it (the check starts with gate 2 and runs alongside gates 2 to 4:
//!    `gates::Recheck`);
//! 6. claim through the provider; a node that loses a race starts a hold-down instead of
//!    fighting back;
//! 7. verify (the provider shows the EIP here) and queue one SNS alert.
//!
//! The claim is saved in the state directory before its first mutating call and forgotten,
//! together with queueing its alert, once settled. A claim the process died in is settled at
//! the next start ([`ClaimAction::reconcile`]): the owner is read, and a move that completed is
//! announced then; so every move is announced exactly once, across crashes.

mod dry_run;
mod ec2;
mod gates;
pub mod group;
pub use group::ClaimGroup;
pub mod local_address;
mod opsworks;
mod private;
pub use private::SETTLE;

use super::alerts::{Alert, Alerter};
use super::{ActionContext, ActionOutcome};
use crate::config::{
    AddressRef, ClaimEipSpec, ClaimPrivateIpSpec, ClaimProvider, ClaimRouteSpec, EgressSettings,
    HaproxyProbeSpec, ReachSpec,
};
use crate::providers::aws::ec2::Ec2;
use crate::providers::aws::imds::{IdentityError, IdentitySource};
use crate::providers::aws::opsworks::{AgentIdentityError, OpsWorks, OpsworksIdentity};
use crate::providers::aws::AwsError;
use crate::state::{PendingClaim, StateStore};
use std::future::Future;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// What a claim needs from the rest of the daemon; shared by every claim action.
pub struct ClaimEnv {
    /// None in dry-run mode: the claim then logs every AWS call instead of making it.
    pub ec2: Option<Ec2>,
    /// None in dry-run mode, and when no claim goes through OpsWorks.
    pub opsworks: Option<OpsWorks>,
    /// This node's OpsWorks instance id (`[opsworks]` or the agent's file).
    pub opsworks_identity: Arc<OpsworksIdentity>,
    /// The probes' HTTP client (HAProxy `health_url`, checkip, the rule's check).
    pub http: reqwest::Client,
    /// `[egress]`: the checkip URL and its timeout.
    pub egress: EgressSettings,
    /// `[haproxy]`: what makes the local HAProxy ready.
    pub haproxy: HaproxyProbeSpec,
    /// This node's instance id, ENI and private IPs (`[node]` or instance metadata).
    pub identity: Arc<IdentitySource>,
    /// The alert outbox: one alert per move.
    pub alerter: Alerter,
    /// `[alerts] subject_prefix`, put before each alert's subject.
    pub subject_prefix: String,
    /// How long to wait for DescribeAddresses to show a new association (EC2 reads are
    /// eventually consistent).
    pub verify_for: Duration,
    /// True once the daemon is stopping: no new claim starts then.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Claims that have started changing EC2; the daemon waits for them before it exits.
    pub in_flight: InFlight,
    /// The daemon's metrics: claims made and refused, egress verifications failed.
    pub metrics: Arc<crate::telemetry::metrics::Metrics>,
    /// `watchdog pause` and the maintenance file: no claim starts while paused.
    pub pause: crate::pause::Pause,
    /// Where each claim's outcome and timings are recorded (`status --history`).
    pub history: crate::history::History,
}

/// What the gates need of a claim action's configuration, whatever its kind.
#[derive(Debug, Clone)]
pub(crate) struct ClaimSpec {
    /// The action's name.
    pub name: String,
    /// The address it moves.
    pub address: AddressRef,
    /// No new claim for this long after this node moved the address or lost a race for it.
    pub hold_down: Duration,
    /// Where the one alert of each move goes.
    pub sns_topic_arn: Option<String>,
    /// A private address's proof of the VPC path (gate 4); None: checkip, for an EIP.
    pub reach: Option<ReachSpec>,
}

impl From<&ClaimEipSpec> for ClaimSpec {
    fn from(c: &ClaimEipSpec) -> Self {
        ClaimSpec {
            name: c.name.clone(),
            address: AddressRef::Eip(c.eip.clone()),
            hold_down: c.hold_down,
            sns_topic_arn: c.sns_topic_arn.clone(),
            reach: None,
        }
    }
}

/// When one address last moved; its lock also serializes the claims of that address.
pub type LastMove = Arc<Mutex<Option<Instant>>>;

/// When each address last moved, by this node's hand or under its eyes: the hold-downs.
/// Kept by the daemon across configuration reloads, so a reload never resets one.
/// Saved in the state directory too, so a restart (even after `kill -9`) keeps them.
#[derive(Clone, Default)]
pub struct HoldDowns {
    map: Arc<std::sync::Mutex<std::collections::HashMap<AddressRef, LastMove>>>,
    store: StateStore,
}

impl HoldDowns {
    /// Hold-downs saved in `store` (kept in memory only when it has no directory).
    pub fn new(store: StateStore) -> Self {
        HoldDowns {
            map: Arc::default(),
            store,
        }
    }

    /// The last move of `eip`: this run's, or the saved one from before a restart.
    pub fn for_address(&self, eip: &AddressRef) -> LastMove {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(eip.clone())
            .or_insert_with(|| {
                let saved = self
                    .store
                    .moved_ago(&eip.key())
                    .map(|ago| Instant::now().checked_sub(ago).unwrap_or_else(Instant::now));
                Arc::new(Mutex::new(saved))
            })
            .clone()
    }

    /// Save that `eip` moved now (the caller sets the in-memory time under its lock).
    fn record(&self, eip: &AddressRef) {
        self.store.moved(&eip.key());
    }

    /// Who held `eip` when the rule guarding it started failing, as saved before a restart.
    fn owner_seen(&self, eip: &AddressRef) -> Option<Option<String>> {
        self.store.owner_seen(&eip.key())
    }

    /// Save who held `eip` when the rule guarding it started failing (None: forget it).
    fn owner_noted(&self, eip: &AddressRef, token: Option<Option<String>>) {
        self.store.owner_noted(&eip.key(), token);
    }

    /// Forget the saved hold-down of `eip` (the caller clears the in-memory time under its
    /// lock): this node handed it away on purpose.
    fn forget(&self, eip: &AddressRef) {
        self.store.move_forgotten(&eip.key());
    }

    /// A group's moved members' claims are settled and its `alert` queued, in one write (see
    /// [`StateStore::claims_settled`]); the alert's id.
    pub(crate) fn group_settled(&self, members: &[AddressRef], alert: Option<&Alert>) -> u64 {
        let keys: Vec<String> = members.iter().map(AddressRef::key).collect();
        self.store.claims_settled(
            &keys,
            alert.map(|a| (a.topic_arn.as_str(), a.subject.as_str(), a.message.as_str())),
        )
    }

    /// Keep `alert` in the state file until it is delivered; its id.
    fn store_alert(&self, alert: &Alert) -> u64 {
        self.store
            .alert_queued(&alert.topic_arn, &alert.subject, &alert.message)
    }

    /// Save that a claim of `eip` is about to change the provider (its hold-down starts too).
    fn claim_started(&self, eip: &AddressRef, claim: PendingClaim) {
        self.store.claim_started(&eip.key(), claim);
    }

    /// Forget the claim of `eip`, queueing `alert` in the same write; the saved alert's id.
    fn claim_settled(&self, eip: &AddressRef, alert: Option<&Alert>) -> u64 {
        self.store.claim_settled(
            &eip.key(),
            alert.map(|a| (a.topic_arn.as_str(), a.subject.as_str(), a.message.as_str())),
        )
    }
}

/// Counts tasks that must run to completion; shutdown waits until none is left.
#[derive(Clone, Default)]
pub struct InFlight(Arc<(std::sync::atomic::AtomicUsize, tokio::sync::Notify)>);

impl InFlight {
    /// Count a task in until the guard is dropped.
    pub(crate) fn enter(&self) -> InFlightGuard {
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

/// Counts its task in [`InFlight`] while it lives.
pub(crate) struct InFlightGuard(InFlight);

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

/// A configured `claim_eip` action: the gates, bound to the provider the configuration names
/// (or to a dry run of it when the daemon has no AWS client).
#[derive(Clone)]
pub struct ClaimAction(Arc<dyn Gated>, AddressRef, bool);

impl ClaimAction {
    /// Bind `spec` to its provider. Without a client for it (`--dry-run`), the claim is a
    /// dry run: everything up to the first AWS call runs for real, the AWS calls are logged.
    pub fn new(spec: ClaimEipSpec, env: Arc<ClaimEnv>, holds: &HoldDowns) -> Self {
        let gate_spec = ClaimSpec::from(&spec);
        let address = gate_spec.address.clone();
        let eip = spec.eip.clone();
        // OpsWorks associates with the instance (its primary private IP); EC2 with the
        // configured address, or the ENI's primary one when none is set.
        let on_primary = proves_egress(spec.provider, spec.private_ip);
        let local = Arc::new(gates::LiveLocal::new(&env));
        let ec2_here = || ec2::Here::new(env.identity.clone(), spec.private_ip);
        let ow_here = || opsworks::Here::new(env.opsworks_identity.clone());
        let topic = spec.sns_topic_arn.clone();
        let claim: Arc<dyn Gated> = match (spec.provider, &env.ec2, &env.opsworks) {
            (ClaimProvider::Ec2, Some(c), _) => {
                let p = ec2::Claims::new(c.clone(), ec2_here(), eip);
                Arc::new(gates::Gates::new(gate_spec, p, local, &env, holds))
            }
            (ClaimProvider::Ec2, None, _) => {
                let p = dry_run::DryRun::new(ec2_here(), address.clone(), topic);
                Arc::new(gates::Gates::new(gate_spec, p, local, &env, holds))
            }
            (ClaimProvider::OpsWorks, _, Some(c)) => {
                let p = opsworks::Claims::new(c.clone(), ow_here(), eip);
                Arc::new(gates::Gates::new(gate_spec, p, local, &env, holds))
            }
            (ClaimProvider::OpsWorks, _, None) => {
                let p = dry_run::DryRun::new(ow_here(), address.clone(), topic);
                Arc::new(gates::Gates::new(gate_spec, p, local, &env, holds))
            }
        };
        ClaimAction(claim, address, on_primary)
    }

    /// `claim_private_ip`: bound to EC2, or a dry run without a client. Starts the owner
    /// poll that keeps the local interface in step (it ends with the action).
    pub fn private_ip(spec: &ClaimPrivateIpSpec, env: Arc<ClaimEnv>, holds: &HoldDowns) -> Self {
        let gate_spec = ClaimSpec {
            name: spec.name.clone(),
            address: AddressRef::SecondaryIp(spec.private_ip),
            hold_down: spec.hold_down,
            sns_topic_arn: spec.sns_topic_arn.clone(),
            reach: Some(spec.reachability.clone()),
        };
        let here = || private::EniHere(env.identity.clone());
        Self::private(gate_spec, spec.owner_poll, env.clone(), holds, |ec2| {
            private::PrivateIpClaims::new(ec2, here(), spec.private_ip, spec.interface.clone())
        })
    }

    /// `claim_route`: as [`ClaimAction::private_ip`].
    pub fn route(spec: &ClaimRouteSpec, env: Arc<ClaimEnv>, holds: &HoldDowns) -> Self {
        let gate_spec = ClaimSpec {
            name: spec.name.clone(),
            address: AddressRef::Overlay(spec.destination),
            hold_down: spec.hold_down,
            sns_topic_arn: spec.sns_topic_arn.clone(),
            reach: Some(spec.reachability.clone()),
        };
        let here = || private::EniHere(env.identity.clone());
        Self::private(gate_spec, spec.owner_poll, env.clone(), holds, |ec2| {
            private::RouteClaims::new(
                ec2,
                here(),
                spec.destination,
                spec.route_table_ids.clone(),
                spec.interface.clone(),
            )
        })
    }

    fn private<P: Provider<Spot = private::Eni>>(
        spec: ClaimSpec,
        poll: Duration,
        env: Arc<ClaimEnv>,
        holds: &HoldDowns,
        provider: impl FnOnce(Ec2) -> P,
    ) -> Self {
        let address = spec.address.clone();
        let local = Arc::new(gates::LiveLocal::new(&env));
        let claim: Arc<dyn Gated> = match &env.ec2 {
            Some(ec2) => {
                let gates = gates::Gates::new(spec, provider(ec2.clone()), local, &env, holds);
                gates.poll_owner(poll, env.stopping.clone());
                Arc::new(gates)
            }
            None => {
                let here = private::EniHere(env.identity.clone());
                let p = dry_run::DryRun::new(here, address.clone(), spec.sns_topic_arn.clone());
                Arc::new(gates::Gates::new(spec, p, local, &env, holds))
            }
        };
        ClaimAction(claim, address, false)
    }

    /// Note who holds the EIP now, in the background: the rule guarding it just started failing.
    pub fn note_owner(&self) {
        self.0.note_owner();
    }

    /// Run the gates and, if they all pass, move the EIP onto this node.
    pub async fn run(&self, ctx: &ActionContext) -> ActionOutcome {
        self.0.run(ctx).await.0
    }

    /// [`ClaimAction::run`], with the time of each step it took: what `watchdog takeover` and
    /// `drill` print (with `ctx.planned` set).
    pub async fn run_timed(
        &self,
        ctx: &ActionContext,
    ) -> (ActionOutcome, crate::history::Timeline) {
        self.0.run(ctx).await
    }

    /// `drill --back`: return the EIP to the node this action's last planned takeover took
    /// it from (see `Gates::give_back` for its gates), with the time of each step.
    pub async fn give_back(
        &self,
        ctx: &ActionContext,
    ) -> (ActionOutcome, crate::history::Timeline) {
        self.0.give_back(ctx).await
    }

    /// Whether the provider shows the EIP on this node now, and who holds it (a fresh read).
    /// Errors: this node's identity or the read failed (the message says which).
    pub async fn is_here(&self) -> Result<(bool, String), String> {
        self.0.is_here().await
    }

    /// The address this action moves.
    pub fn address(&self) -> AddressRef {
        self.1.clone()
    }

    /// Whether the address goes to the ENI's primary private IP, where this node's own
    /// traffic leaves from it (so checkip can prove the public path after a move).
    pub fn on_primary_ip(&self) -> bool {
        self.2
    }

    /// Settle a claim the previous run had under way when it died: read who holds the EIP
    /// (retrying with backoff until a read succeeds or the daemon stops); if the move
    /// completed, queue the alert it never sent. Runs in the background until settled or
    /// `stopping` turns true (the daemon stops; a reload does not stop it).
    pub fn reconcile(&self, claim: PendingClaim, stopping: tokio::sync::watch::Receiver<bool>) {
        self.0.reconcile(claim, stopping);
    }
}

/// Whether this node's own traffic leaves from the address once a claim has moved it, so
/// that a drill can prove the public path through checkip: OpsWorks associates with the
/// instance (its primary private IP); EC2 with the node's private IP (`[node] private_ip`,
/// else the ENI's primary one) unless the action names its own `private_ip`, a secondary
/// address by design.
pub fn proves_egress(provider: ClaimProvider, action_private_ip: Option<Ipv4Addr>) -> bool {
    match provider {
        ClaimProvider::OpsWorks => true,
        ClaimProvider::Ec2 => action_private_ip.is_none(),
    }
}

/// A boxed future, so that [`ClaimAction`] can hold the gates of any provider.
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`gates::Gates`] with its provider type erased.
trait Gated: Send + Sync {
    fn run<'a>(
        &'a self,
        ctx: &'a ActionContext,
    ) -> BoxFuture<'a, (ActionOutcome, crate::history::Timeline)>;
    fn give_back<'a>(
        &'a self,
        ctx: &'a ActionContext,
    ) -> BoxFuture<'a, (ActionOutcome, crate::history::Timeline)>;
    fn is_here(&self) -> BoxFuture<'_, Result<(bool, String), String>>;
    fn note_owner(&self);
    fn reconcile(&self, claim: PendingClaim, stopping: tokio::sync::watch::Receiver<bool>);
}

/// Where this node would put the EIP, in one provider's terms: EC2's ENI and private IP, or
/// an OpsWorks instance id.
pub(crate) trait Spot: Clone + Send + Sync + 'static {
    /// The provider's name in the configuration and the state file: `ec2`, `opsworks`.
    const PROVIDER: &'static str;
    /// The call that reads who holds `address`, as a dry run logs it (`ec2:DescribeAddresses`).
    fn read_call(address: &AddressRef) -> &'static str;
    /// For logs and alerts: `i-0abc (eni-0def, 10.0.0.5)`, `OpsWorks instance ...`.
    fn describe(&self) -> String;
    /// The instance the EIP goes to, for the alert's subject and text.
    fn instance_id(&self) -> &str;
    /// What the state directory keeps of a claim onto this spot (its `started_at` is set
    /// when saved).
    fn pending(&self, alert: Option<&Alert>) -> PendingClaim;
    /// The spot a saved claim was moving the EIP onto; None when the record lacks a part.
    fn from_pending(claim: &PendingClaim) -> Option<Self>;
    /// Log, as a dry run, the mutating calls a claim of `address` onto this spot would make.
    fn rehearse(&self, address: &AddressRef);
}

/// Finds this node's [`Spot`]: from `[node]` or instance metadata for EC2, from `[opsworks]`
/// or the agent's file for OpsWorks. Read once, on first need.
pub(crate) trait Locate: Send + Sync + 'static {
    type Spot: Spot;
    fn here(&self) -> impl Future<Output = Result<Self::Spot, HereError>> + Send;
}

/// What a claim reads and moves the EIP through. Real providers call AWS; the dry run logs.
///
/// Only [`Provider::take`] changes anything: the gates call it last, once every other gate
/// has passed.
pub(crate) trait Provider: Send + Sync + 'static {
    type Spot: Spot;
    /// The provider's own answer about the EIP, which its move needs.
    type State: Clone + Send + Sync + 'static;
    /// A dry run: its refusals say what it would not do, and it skips the last look, which
    /// guards a change it will not make.
    const DRY_RUN: bool = false;

    /// Where this node would put the EIP.
    fn here(&self) -> impl Future<Output = Result<Self::Spot, HereError>> + Send;

    /// How the alert names what a move made (`association eipassoc-...`).
    const MOVED_AS: &'static str = "association";
    /// The provider applies a move after answering the call (OpsWorks detaches, then
    /// attaches, on its own time): a restart that finds nobody holding the address, where
    /// somebody did as its claim started, reads it again for the verification window before
    /// judging the claim. EC2's calls are done when they answer: judged at once.
    const MOVES_LAND_LATE: bool = false;

    /// Who holds the address now. No side effect.
    fn read(&self) -> impl Future<Output = Result<Owner<Self::State>, AwsError>> + Send;

    /// The owner's token (see [`Owner::token`]) when the rule starts failing, for the
    /// moved-meanwhile gate; None when it cannot be read.
    fn glance(&self) -> impl Future<Output = Option<Option<String>>> + Send {
        async move { self.read().await.ok().map(|o| o.token) }
    }

    /// What this provider requires of this node before a claim (read-only): Err with the
    /// refusal's reason and detail. Default: nothing.
    /// `owner` is what gate 3 read.
    fn precondition(
        &self,
        _spot: &Self::Spot,
        _owner: &Owner<Self::State>,
    ) -> impl Future<Output = Result<(), (&'static str, String)>> + Send {
        async { Ok(()) }
    }

    /// Is the EIP already on `spot`?
    fn holds(spot: &Self::Spot, owner: &Owner<Self::State>) -> bool;

    /// Where `owner` has the EIP, as a spot it could be moved back onto (`drill --back`);
    /// None when nobody holds it or the provider does not say enough.
    fn spot_of(_owner: &Owner<Self::State>) -> Option<Self::Spot> {
        None
    }

    /// Move the EIP from `before` onto `spot`, then verify for up to `verify_for`.
    fn take(
        &self,
        before: &Owner<Self::State>,
        spot: &Self::Spot,
        verify_for: Duration,
    ) -> impl Future<Output = MoveResult> + Send;

    /// The address as alerts name it (EC2 adds an EIP's allocation id).
    fn address_label(&self, owner: &Owner<Self::State>) -> String;

    /// Whether `owner` shows a move onto `spot` that got part of the way (a route in some of
    /// its tables, not all): a restart finishes it ([`Provider::resume`]).
    fn partly_holds(_spot: &Self::Spot, _owner: &Owner<Self::State>) -> bool {
        false
    }

    /// Let the owner poll finish a move onto this node that `owner` shows part of the way,
    /// found after a restart.
    fn resume(&self, _owner: &Owner<Self::State>, _spot: &Self::Spot) {}

    /// After each owner poll of a private claim: keep this node's local interface in step
    /// with `owner` (the address on it while EC2 shows it here, off it otherwise), and
    /// finish an unfinished move. Default: nothing (an Elastic IP needs no local address).
    fn keep_local(
        &self,
        _owner: &Owner<Self::State>,
        _spot: &Self::Spot,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Why this node's [`Spot`] is not known.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HereError {
    /// Instance metadata did not answer (or is in its backoff after failing).
    #[error("cannot tell which node this is: {0}")]
    Identity(#[from] IdentityError),
    /// `private_ip` names an address the ENI does not have.
    #[error("private_ip {ip} is not assigned to {eni} (it has {have:?}): assign it as a secondary private IP first")]
    NotAssigned {
        ip: Ipv4Addr,
        eni: String,
        have: Vec<Ipv4Addr>,
    },
    /// Neither `[opsworks] instance_id` nor the agent's file says.
    #[error("cannot tell which OpsWorks instance this is: {0}")]
    OpsWorks(#[from] AgentIdentityError),
    /// The ENI this node would take the address onto is attached to another instance
    /// (`[node] network_interface_id` naming another node's): every read and move would be
    /// about that node.
    #[error("{eni} is attached to {attached_to}, not to this node ({instance}): check [node] network_interface_id and instance_id")]
    NotThisInstance {
        eni: String,
        attached_to: String,
        instance: String,
    },
}

impl HereError {
    fn outcome(self) -> ActionOutcome {
        match self {
            // Already reported when the lookup failed; not an error every cycle.
            HereError::Identity(IdentityError::BackingOff(_)) => {
                refused("identity_unavailable", self.to_string())
            }
            HereError::NotThisInstance { .. } => refused("eni_not_this_instance", self.to_string()),
            e => ActionOutcome::Error(e.to_string()),
        }
    }
}

/// Who holds the EIP, in the terms every provider shares.
#[derive(Debug, Clone)]
pub(crate) struct Owner<S> {
    /// Changes whenever the EIP moves: EC2's AssociationId, or the OpsWorks instance id.
    token: Option<String>,
    /// For logs and alerts: `i-0abc (eni-0def, 10.0.0.5)`, `OpsWorks instance ...`, `nobody`.
    holder: String,
    /// The EIP's public address, when the provider says (checked against our egress).
    public_ip: Option<Ipv4Addr>,
    /// The provider's own answer.
    state: S,
}

/// What reading the provider after a move showed.
pub(crate) enum Verified {
    /// The EIP is on this node.
    Yes,
    /// Another holder (named) showed up: a rival's move landed after ours.
    Lost(String),
    /// Not shown within the window (why); the move stands, announced as not verified.
    Unknown(String),
}

pub(crate) enum MoveResult {
    /// Moved: EC2's new AssociationId (OpsWorks gives none), and whether a read confirmed it.
    Moved(Option<String>, Verified),
    /// Another node holds it now (how we know).
    Lost(String),
    /// The provider failed (the error); nothing is known to have moved.
    Failed(String),
    /// A dry run logged the calls it would make.
    Rehearsed,
}

/// Read the provider until `judge` settles the claim (Some) or `within` runs out; reads are
/// eventually consistent, so None means "look again" (every 500 ms). The last read error, if
/// any, explains an unsettled end; `unseen` does otherwise.
async fn verify_until<S, F, Fut>(
    within: Duration,
    unseen: &str,
    mut read: F,
    mut judge: impl FnMut(S) -> Option<Verified>,
) -> Verified
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<S, AwsError>>,
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

/// A gate's refusal (counted by [`gates::Gates`] when the claim returns it).
fn refused(reason: &'static str, detail: String) -> ActionOutcome {
    ActionOutcome::Refused { reason, detail }
}

fn fmt_secs(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs().max(1))).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tester's find: with `[node] private_ip` set, a drill skipped its checkip proof and
    /// passed without it.
    #[test]
    fn a_drill_proves_the_public_path_whenever_the_address_goes_to_the_nodes_own_ip() {
        assert!(proves_egress(ClaimProvider::Ec2, None));
        assert!(proves_egress(ClaimProvider::OpsWorks, None));
        assert!(!proves_egress(
            ClaimProvider::Ec2,
            Some(Ipv4Addr::new(10, 0, 1, 200))
        ));
    }
}
