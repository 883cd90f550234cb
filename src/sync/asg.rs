//! An Auto Scaling group as a backend-sync source: a full resync from the Auto Scaling and EC2
//! APIs on start and every `interval`, and, with an events queue, the EventBridge events in
//! between (read by a long-polling task, applied as hints through [`Membership`]). Lifecycle
//! actions are completed here, after the Syncer has taken the drained servers out.

use super::events::{self, Hint};
use super::membership::{Membership, Snapshot};
use super::queues::{EventQueues, Handed, QueueReceiver};
use crate::config::AsgSourceSpec;
use crate::haproxy::Target;
use crate::providers::aws::autoscaling::{AutoScaling, LifecycleAction};
use crate::providers::aws::ec2::Ec2;
use crate::providers::aws::sqs::{Message, Sqs};
use crate::providers::aws::AwsError;
use crate::telemetry::metrics::Metrics;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Why the Auto Scaling source could not say who serves, or could not finish what it owes
/// the group (lifecycle actions, the events queue). Each wraps the failed AWS call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AsgError {
    /// The resync's `DescribeAutoScalingGroups` or `DescribeInstances` failed.
    #[error(transparent)]
    Resync(AwsError),
    /// Looking up the addresses of instances events said are in service failed (they are
    /// looked up again next round).
    #[error("looking up new instances: {0}")]
    Lookup(AwsError),
    /// `CompleteLifecycleAction` refused the hook or group (`ValidationError`): retrying
    /// cannot help.
    #[error("completing the lifecycle action of {instance} through hook {hook:?}: {err} (check `lifecycle_hook`)")]
    CompleteRefused {
        instance: String,
        hook: String,
        err: AwsError,
    },
    /// `CompleteLifecycleAction` failed otherwise; it is retried next round.
    #[error("completing the lifecycle action of {instance}: {err}")]
    Complete { instance: String, err: AwsError },
    /// Receiving from the events queue failed; the receiver asks the queue again after
    /// `retry_in` (its own backoff, 1 s doubling to 60 s: not the round's `retry_in` that a
    /// `backend_sync_failed` line gives).
    #[error("events queue: {err}; the queue is asked again in {}", humantime::format_duration(*retry_in))]
    Queue { err: AwsError, retry_in: Duration },
    /// An events-queue failure, reported once a round's work is done: until the queue works
    /// again, only the resync every `resync_every` keeps HAProxy current.
    #[error("{queue}; until it works again HAProxy follows only the resync every {}", humantime::format_duration(*resync_every))]
    QueueFailing {
        queue: Box<AsgError>,
        resync_every: Duration,
    },
}

/// While a server drains, its sessions are read this often.
pub const DRAIN_POLL: Duration = Duration::from_millis(250);

pub struct AsgSource {
    pub spec: AsgSourceSpec,
    asg: AutoScaling,
    ec2: Ec2,
    sqs: Option<Sqs>,
    metrics: Arc<Metrics>,
    pub membership: Membership,
    /// The events queue's receiver, shared with this rule's successor across a reload.
    receiver: Option<QueueReceiver>,
    /// Where the receiver came from, to start it again should it end.
    queues: EventQueues,
    /// The rule and port of the last round (None before the first, which takes what a reload
    /// handed on, `sync::queues`).
    ran: Option<(String, u16)>,
    next_resync: Option<Instant>,
    /// Messages received and not yet applied.
    inbox: Vec<Message>,
    /// An events-queue failure, reported after the next round's work is done (the round
    /// fails, but still applies what the resync knows).
    /// (Boxed: an error is rare, and the source is held by value in every sync rule.)
    queue_error: Option<Box<AsgError>>,
    /// What the last resync left out, and why (`i-0abc (Pending, Healthy)`), for the note.
    left_out: Vec<String>,
    /// Other groups whose events came on this rule's queue (logged loudly once each).
    other_groups: std::collections::BTreeSet<String>,
}

impl Drop for AsgSource {
    /// A reload builds a new source before it drops this one: messages taken and not applied
    /// go to the new one, which reads the same receiver (`sync::queues`).
    fn drop(&mut self) {
        if let Some(r) = &self.receiver {
            r.give_back(std::mem::take(&mut self.inbox));
        }
        // A source that never ran a round knows nothing, and left what it was handed in place.
        let Some((rule, port)) = self.ran.take() else {
            return;
        };
        let fresh = Membership::new(&self.spec.group, self.spec.lifecycle_hook.as_deref());
        self.queues.hand_on(Handed {
            rule,
            group: self.spec.group.clone(),
            membership: std::mem::replace(&mut self.membership, fresh),
            next_resync: self.next_resync,
            port,
            left_out: std::mem::take(&mut self.left_out),
            at: Instant::now(),
        });
    }
}

/// What one discovery found, for the Syncer.
pub struct Found {
    pub serving: BTreeMap<String, Target>,
    pub note: String,
}

impl AsgSource {
    /// `metrics`: counts the API calls, the events read and the lifecycle actions completed.
    /// `queues`: the daemon's events-queue receivers and what sources hand on across reloads;
    /// the source takes its queue's receiver (started now if no rule reads that queue yet),
    /// so a reload's new source carries on from the old one's long poll, and its first round
    /// takes what its predecessor knew of the group.
    pub fn new(
        spec: AsgSourceSpec,
        sdk: &aws_config::SdkConfig,
        dry_run: bool,
        metrics: Arc<Metrics>,
        queues: &EventQueues,
    ) -> Self {
        let sqs = match (&spec.events_queue, dry_run) {
            (Some(q), true) => {
                tracing::info!(event = crate::telemetry::events::DRY_RUN, queue = %q, would = "read Auto Scaling events from the queue; a dry run leaves the queue to the daemon that owns it and resyncs only");
                None
            }
            (Some(_), false) => Some(Sqs::new(sdk, metrics.clone())),
            (None, _) => None,
        };
        let receiver = match (&sqs, &spec.events_queue) {
            (Some(sqs), Some(q)) => Some(queues.subscribe(q, sqs)),
            _ => None,
        };
        AsgSource {
            membership: Membership::new(&spec.group, spec.lifecycle_hook.as_deref()),
            spec,
            asg: AutoScaling::new(sdk, metrics.clone()),
            ec2: Ec2::new(sdk, metrics.clone()),
            metrics,
            sqs,
            receiver,
            queues: queues.clone(),
            ran: None,
            next_resync: None,
            inbox: Vec::new(),
            queue_error: None,
            left_out: Vec::new(),
            other_groups: Default::default(),
        }
    }

    /// Wait for the next resync, an event, or (while draining) the next session count.
    /// False on shutdown.
    pub async fn wait(&mut self, stopping: &watch::Receiver<bool>) -> bool {
        self.restart_receiver();
        let mut until = self.next_resync.unwrap_or_else(Instant::now);
        if self.membership.drains().next().is_some() {
            until = until.min(Instant::now() + DRAIN_POLL);
        }
        if !self.inbox.is_empty() || self.queue_error.is_some() {
            return true;
        }
        let mut stop = stopping.clone();
        let got = match &self.receiver {
            Some(r) => tokio::select! {
                _ = tokio::time::sleep_until(until) => None,
                m = r.recv() => m,
                _ = stop.wait_for(|s| *s) => return false,
            },
            None => tokio::select! {
                _ = tokio::time::sleep_until(until) => None,
                _ = stop.wait_for(|s| *s) => return false,
            },
        };
        match got {
            Some(Ok(m)) => self.inbox.extend(m),
            Some(Err(e)) => self.queue_error = Some(Box::new(e)),
            // Woken by the timer; or the receiver ended: restarted next round.
            None => {}
        }
        !*stopping.borrow()
    }

    /// A failed round's backoff: wait until `until`, or until an event arrives (it may be
    /// what mends the failure, and it is what HAProxy should run once the failure passes).
    /// A queue error meanwhile does not end the wait: it is reported with the next round.
    /// False on shutdown.
    pub async fn wait_backoff(&mut self, stopping: &watch::Receiver<bool>, until: Instant) -> bool {
        self.restart_receiver();
        let mut stop = stopping.clone();
        while self.inbox.is_empty() {
            let Some(r) = &self.receiver else {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    _ = stop.wait_for(|s| *s) => return false,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                m = r.recv() => match m {
                    Some(Ok(m)) => self.inbox.extend(m),
                    Some(Err(e)) => self.queue_error = Some(Box::new(e)),
                    // The receiver ended: the backoff runs out without it, and the next
                    // round starts it again.
                    None => self.receiver = None,
                },
                _ = stop.wait_for(|s| *s) => return false,
            }
        }
        !*stopping.borrow()
    }

    /// A receiver that ended (it only does when aborted) is started again.
    fn restart_receiver(&mut self) {
        let (Some(sqs), Some(queue)) = (&self.sqs, &self.spec.events_queue) else {
            return;
        };
        if self.receiver.as_ref().is_none_or(|r| r.is_finished()) {
            self.receiver = Some(self.queues.subscribe(queue, sqs));
        }
    }

    /// Apply what arrived, then ask AWS what is due: the whole group when the resync is due
    /// (or `force`), else only the addresses of instances events said are in service.
    pub async fn discover(
        &mut self,
        rule: &str,
        port: u16,
        interval: Duration,
        force: bool,
    ) -> Result<Found, AsgError> {
        let mut force = force;
        if self.ran.is_none() {
            if let Some(h) = self.queues.take_handed(rule, &self.spec.group) {
                self.membership = h.membership;
                self.membership
                    .set_hook(self.spec.lifecycle_hook.as_deref());
                // The same servers: the resync stays when it was due. A new port: now.
                if h.port == port {
                    // No later than a resync period of this configuration's `interval`, which
                    // bounds the round (a reload from 5m to 20s would otherwise wait 5m).
                    let latest = Instant::now() + self.resync_period(interval);
                    self.next_resync = h.next_resync.map(|t| t.min(latest));
                    self.left_out = h.left_out;
                    force = false;
                }
            }
        }
        self.ran = Some((rule.to_owned(), port));
        self.take_events(rule).await;
        let now = Instant::now();
        if force || self.next_resync.is_none_or(|t| now >= t) {
            // A failed resync stays due: the round's backoff paces the retries.
            let (snap, left_out) = self.snapshot(port).await?;
            self.left_out = left_out;
            self.next_resync = Some(now + self.resync_period(interval));
            for id in self.membership.resync(&snap, Instant::now()) {
                tracing::warn!(event = crate::telemetry::events::MEMBERSHIP_EVENT_CONTRADICTED, rule, instance = %id,
                    "an event took this instance out, and the group still lists it InService, Healthy and running: it serves again");
            }
        } else {
            let ids = self.membership.take_lookups();
            if !ids.is_empty() {
                match self.ec2.private_ips(&ids).await {
                    Ok(found) => {
                        let found: BTreeMap<String, Target> = found
                            .into_iter()
                            .map(|(id, ip)| (id, Target { ip, port }))
                            .collect();
                        for a in self.membership.looked_up(&found) {
                            tracing::info!(event = crate::telemetry::events::MEMBERSHIP_EVENT_APPLIED, rule, change = %format!("{a} is in service"));
                        }
                    }
                    Err(e) => {
                        self.membership.requeue_lookups(ids);
                        return Err(AsgError::Lookup(e));
                    }
                }
            }
        }
        let serving = self.membership.serving().clone();
        let draining = self.membership.drains().count();
        let mut note = super::note(serving.len(), "InService and Healthy", &self.left_out);
        if draining > 0 {
            note.push_str(&format!(", {draining} draining"));
        }
        Ok(Found { serving, note })
    }

    /// The resync period, spread over its last fifth when events keep membership current,
    /// so a fleet started together does not resync together (never later than `interval`,
    /// which bounds the engine's cycle deadline).
    fn resync_period(&self, interval: Duration) -> Duration {
        if self.spec.events_queue.is_none() {
            return interval;
        }
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0);
        let spread = (h.finish() % 2001) as f64 / 10_000.0; // 0 ..= 0.2
        interval.mul_f64(0.8 + spread)
    }

    /// The group as the API has it, and the instances left out of service, with why.
    async fn snapshot(&self, port: u16) -> Result<(Snapshot, Vec<String>), AsgError> {
        let members = self
            .asg
            .members(&self.spec.group)
            .await
            .map_err(AsgError::Resync)?;
        // Waiting instances too: after a restart their servers may still be in HAProxy.
        let wanted: Vec<String> = members
            .serving
            .iter()
            .chain(&members.terminating)
            .cloned()
            .collect();
        let ips: BTreeMap<String, Target> = if wanted.is_empty() {
            BTreeMap::new()
        } else {
            self.ec2
                .private_ips(&wanted)
                .await
                .map_err(AsgError::Resync)?
                .into_iter()
                .map(|(id, ip)| (id, Target { ip, port }))
                .collect()
        };
        let mut left_out = members.others;
        for id in &members.serving {
            if !ips.contains_key(id) {
                left_out.push(format!(
                    "{id} (not running, unknown to EC2, or no private IP)"
                ));
            }
        }
        let snap = Snapshot {
            serving: members
                .serving
                .iter()
                .filter_map(|id| ips.get(id).map(|t| (id.clone(), *t)))
                .collect(),
            terminating: members
                .terminating
                .iter()
                .map(|id| (id.clone(), ips.get(id).copied()))
                .collect(),
        };
        Ok((snap, left_out))
    }

    /// Parse and apply the received messages, then delete them from the queue: the
    /// membership holds what they said, and the resync covers a restart.
    async fn take_events(&mut self, rule: &str) {
        if let Some(r) = &self.receiver {
            while let Some(m) = r.try_recv() {
                match m {
                    Ok(m) => self.inbox.extend(m),
                    Err(e) => self.queue_error = Some(Box::new(e)),
                }
            }
        }
        if self.inbox.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut handles = Vec::new();
        for m in std::mem::take(&mut self.inbox) {
            handles.push(m.receipt_handle);
            let kind = match events::parse(&m.body) {
                Err(e) => {
                    tracing::warn!(event = crate::telemetry::events::MEMBERSHIP_EVENT_UNREADABLE, rule, message_id = %m.id, error = %e,
                        "deleted from the queue; the resync covers whatever it meant");
                    "unreadable"
                }
                Ok(None) => "ignored",
                Ok(Some(ev)) => {
                    let ours = match &ev.group {
                        Some(g) => *g == self.spec.group,
                        None => self.membership.knows(ev.hint.instance()),
                    };
                    if !ours {
                        self.other_group(rule, &ev);
                        "other_group"
                    } else {
                        if let Some(change) = self.membership.hint(&ev.hint, now) {
                            tracing::info!(event = crate::telemetry::events::MEMBERSHIP_EVENT_APPLIED, rule, kind = ev.kind, change = %change);
                        } else {
                            tracing::debug!(
                                event = crate::telemetry::events::MEMBERSHIP_EVENT_NO_CHANGE,
                                rule,
                                kind = ev.kind,
                                instance = ev.hint.instance()
                            );
                        }
                        if let Hint::Terminating { hook, .. } = &ev.hint {
                            if self.spec.lifecycle_hook.as_deref() != Some(hook.as_str()) {
                                tracing::info!(event = crate::telemetry::events::LIFECYCLE_HOOK_NOT_OURS, rule, hook = %hook,
                                    "draining the server; the action is left to whoever owns that hook");
                            }
                        }
                        ev.kind
                    }
                }
            };
            self.metrics.sync_event(rule, kind);
        }
        if let (Some(sqs), Some(q)) = (&self.sqs, &self.spec.events_queue) {
            match sqs.delete(q, &handles).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(event = crate::telemetry::events::EVENTS_NOT_DELETED, rule, count = n, "they come back after their visibility timeout; applying them twice is harmless"),
                Err(e) => tracing::warn!(event = crate::telemetry::events::EVENTS_NOT_DELETED, rule, error = %e, "they come back after their visibility timeout; applying them twice is harmless"),
            }
        }
    }

    /// An event on this rule's queue that is not about its group: deleted like every message
    /// read. Another group's is logged at WARN the first time (for each group, since start
    /// or reload): a queue the two groups share loses events to whichever reader takes them,
    /// so each group wants a queue of its own (docs/backend-sync.md). An event naming no
    /// group (an EC2 state change) for an instance the group does not hold is routine: DEBUG.
    fn other_group(&mut self, rule: &str, ev: &events::Event) {
        let instance = ev.hint.instance();
        match &ev.group {
            Some(g) if self.other_groups.insert(g.clone()) => {
                tracing::warn!(event = crate::telemetry::events::MEMBERSHIP_EVENT_OTHER_GROUP, rule, group = %g, kind = ev.kind, instance,
                    follows = %self.spec.group, "deleted from the queue: a reader of the same queue for that group loses it; give each group a queue of its own");
            }
            group => {
                tracing::debug!(event = crate::telemetry::events::MEMBERSHIP_EVENT_OTHER_GROUP, rule, group = group.as_deref().unwrap_or(""), kind = ev.kind, instance,
                    follows = %self.spec.group);
            }
        }
    }

    /// An events-queue failure since the last round, to report once its work is done.
    pub fn take_queue_error(&mut self, interval: Duration) -> Option<AsgError> {
        self.queue_error.take().map(|queue| AsgError::QueueFailing {
            queue,
            resync_every: interval,
        })
    }

    pub fn heartbeat_every(&self) -> Option<Duration> {
        self.spec.heartbeat_interval
    }

    pub async fn heartbeat(&self, rule: &str, a: &LifecycleAction, dry_run: bool) {
        if dry_run {
            tracing::info!(event = crate::telemetry::events::DRY_RUN, rule, instance = %a.instance, would = "RecordLifecycleActionHeartbeat");
            return;
        }
        match self.asg.record_heartbeat(a).await {
            Ok(()) => {
                tracing::info!(event = crate::telemetry::events::LIFECYCLE_HEARTBEAT, rule, instance = %a.instance, hook = %a.hook)
            }
            Err(e) => {
                tracing::warn!(event = crate::telemetry::events::LIFECYCLE_HEARTBEAT_FAILED, rule, instance = %a.instance, error = %e)
            }
        }
    }

    /// Let the instance terminate. An action that is no longer open (completed by another
    /// node, or timed out) is not an error; any other failure is retried at the next round.
    pub async fn complete(
        &mut self,
        rule: &str,
        a: LifecycleAction,
        dry_run: bool,
    ) -> Result<(), AsgError> {
        if dry_run {
            tracing::info!(event = crate::telemetry::events::DRY_RUN, rule, instance = %a.instance, would = "CompleteLifecycleAction CONTINUE");
            return Ok(());
        }
        match self.asg.complete_lifecycle_action(&a).await {
            Ok(()) => {
                tracing::info!(event = crate::telemetry::events::LIFECYCLE_COMPLETED, rule, instance = %a.instance, hook = %a.hook);
                self.metrics.lifecycle_completed(rule);
                Ok(())
            }
            Err(e)
                if e.is_code("ValidationError")
                    && e.message.contains("No active Lifecycle Action") =>
            {
                tracing::info!(event = crate::telemetry::events::LIFECYCLE_ALREADY_CLOSED, rule, instance = %a.instance, hook = %a.hook, detail = %e.message);
                Ok(())
            }
            // A wrong hook or group name: retrying cannot help; say so and go on.
            Err(err) if err.is_code("ValidationError") => Err(AsgError::CompleteRefused {
                instance: a.instance,
                hook: a.hook,
                err,
            }),
            Err(err) => {
                let msg = AsgError::Complete {
                    instance: a.instance.clone(),
                    err,
                };
                self.membership.retry_completion(a);
                Err(msg)
            }
        }
    }
}
