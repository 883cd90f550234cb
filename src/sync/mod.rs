//! Backend sync: keep a HAProxy backend's servers equal to what a discovery source lists.
//!
//! A [`Syncer`] runs one `backend_sync` rule. Each round waits for its next poll (Auto Scaling)
//! or for Consul to report a change, asks the source, refuses answers that would empty or
//! gut the backend, lets [`plan`] decide the commands, and applies them: live through the
//! stats socket with the config file's managed block rewritten to match (`runtime`), or by
//! rendering the template and reloading (`reload`). A round's [`Outcome`] feeds the rule's
//! threshold like any check, so a sync that keeps failing raises the rule's `on_fail` alert.

pub mod asg;
pub mod events;
pub mod membership;
pub mod plan;
pub mod queues;

mod apply_peers;
mod apply_reload;
mod apply_runtime;
mod consul_source;
mod drain;
mod error;

pub use error::SyncError;

use crate::checks::Outcome;
use crate::config::{ApplyMode, BackendSyncSpec, SourceSpec};
use crate::engine::Pacing;
use crate::haproxy::configfile::{self, ConfigFileError};
use crate::haproxy::reload::{self, ReloadError};
use crate::haproxy::runtime::{self, ExecError, RuntimeError};
use crate::haproxy::template::{self, TemplateError};
use crate::haproxy::{Slot, Target};
use crate::providers::aws::imds::{IdentityError, IdentitySource};
use crate::providers::consul::{Consul, ConsulError};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Where a rule's servers come from, with the clients it needs.
pub enum Source {
    // Both boxed: the two differ in size by hundreds of bytes, and a Syncer holds one.
    Asg(Box<asg::AsgSource>),
    Consul(Box<Consul>),
}

/// What a source listed, and what it had to leave out.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// Every server HAProxy keeps, including those draining.
    pub targets: BTreeSet<Target>,
    /// The servers of terminating instances: kept, in drain.
    pub drain: BTreeSet<Target>,
    /// Serving instances by id (Auto Scaling only): the names of `peers` lines.
    pub names: BTreeMap<String, Target>,
    /// `4 InService and Healthy; left out: i-0abc (Pending, Healthy)`.
    pub note: String,
}

pub struct Syncer {
    rule: String,
    spec: BackendSyncSpec,
    interval: Duration,
    timeout: Duration,
    source: Source,
    stopping: watch::Receiver<bool>,
    dry_run: bool,
    reloader: Arc<reload::Reloader>,
    /// Changes, peer updates and slot growths are counted here.
    metrics: Arc<crate::telemetry::metrics::Metrics>,
    /// The lock of `spec.haproxy_config`, shared with every rule that writes that file, with
    /// what `haproxy -c` accepted of it.
    file_lock: configfile::FileLock,
    started: bool,
    /// Set after a failed round: wait this long, then try again.
    backoff: Option<Duration>,
    /// The failed round got a good answer and failed applying it.
    apply_failed: bool,
    /// The source's entries left out at the last good round, as logged (logged again only
    /// when they change).
    left_out: Option<String>,
    /// The last good answer and when it came, reused when only the apply has to be retried.
    last_answer: Option<(Instant, BTreeSet<Target>)>,
    /// A configuration was installed that HAProxy has not been seen to load (its reload
    /// failed): the next round reloads even when the file does not change again.
    reload_owed: AtomicBool,
    /// Slots whose address change HAProxy refused: no free slots until HAProxy reloads the
    /// block (which writes them as ordinary free slots).
    refused_slots: BTreeSet<String>,
    /// When the first of `refused_slots` was refused, and how long HAProxy had run then: a
    /// HAProxy reloaded since (by anyone) has read the rewritten block, so they are retried.
    refused_when: Option<(Instant, Duration)>,
    /// This node's identity (`[node]` or instance metadata): peers mode writes its own line.
    identity: Option<Arc<IdentitySource>>,
    /// Reload mode: reloads of one rendering that did not bring the wanted servers.
    attempts: reload::Attempts,
    /// Reload mode: the wanted servers last seen in maintenance (kept: the operator's).
    seen_maint: BTreeSet<Target>,
    /// Reload mode: whether the file was compared with the running HAProxy's start yet.
    checked_loaded: bool,
}

/// A backend sync goes round again at once (each round waits for its next poll, or for
/// Consul to report a change); this short floor only keeps a misbehaving source from spinning.
const MIN_SELF_PACED_GAP: Duration = Duration::from_millis(50);

/// What a round's AWS calls (a resync, lifecycle actions, each bounded by the SDK's timeouts)
/// may add to its deadline.
pub const SYNC_AWS_SLACK: Duration = Duration::from_secs(60);

/// A backend sync's pacing: it paces itself, and one round may take its wait for the next
/// poll or change (`interval`), the source's answer (`timeout`), two reloads (an apply, then
/// taking drained servers out), each waiting out the reload window, and its AWS calls.
pub fn pacing(rule: &crate::config::Rule, spec: &BackendSyncSpec) -> Pacing {
    let reload = spec.reload.window + spec.reload.timeout;
    Pacing {
        period: MIN_SELF_PACED_GAP,
        deadline: rule.interval + rule.timeout + reload * 2 + SYNC_AWS_SLACK,
    }
}

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// A failing round is retried at least this often: drains, heartbeats and events wait on it.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const VERIFY_EVERY: Duration = Duration::from_millis(100);

impl Syncer {
    /// `haproxy`: the daemon's reloaders and file locks, shared by every rule of every
    /// configuration it runs, so rules on one HAProxy share its reload window and file.
    pub fn new(
        rule: &crate::config::Rule,
        spec: BackendSyncSpec,
        source: Source,
        stopping: watch::Receiver<bool>,
        dry_run: bool,
        haproxy: &crate::haproxy::Shared,
    ) -> Self {
        Syncer {
            rule: rule.name.clone(),
            interval: rule.interval,
            timeout: rule.timeout,
            reloader: haproxy.reloaders.for_method(&spec.reload.method),
            metrics: haproxy.metrics.clone(),
            file_lock: haproxy.files.lock_for(&spec.haproxy_config),
            spec,
            source,
            stopping,
            dry_run,
            started: false,
            backoff: None,
            apply_failed: false,
            left_out: None,
            last_answer: None,
            reload_owed: AtomicBool::new(false),
            refused_slots: BTreeSet::new(),
            refused_when: None,
            identity: None,
            attempts: reload::Attempts::default(),
            seen_maint: BTreeSet::new(),
            checked_loaded: false,
        }
    }

    /// Where this node's private IP comes from (peers mode needs it for its own line).
    pub fn with_identity(mut self, identity: Arc<IdentitySource>) -> Self {
        self.identity = Some(identity);
        self
    }

    /// One round: wait, discover, check the answer, apply. Never blocks past the engine's
    /// cycle deadline by itself (every wait is bounded), and returns at once on shutdown.
    pub async fn round(&mut self) -> Outcome {
        let first = !std::mem::replace(&mut self.started, true);
        let retrying = self.backoff.is_some();
        // A change at the source ends a failed round's backoff at once: it may be what mends
        // the failure (an entry HAProxy cannot take, fixed in Consul), and it is what HAProxy
        // should run as soon as the failure passes.
        let mut changed = None;
        if let Some(b) = self.backoff {
            let until = Instant::now() + b;
            let waited = match &mut self.source {
                Source::Asg(a) => a.wait_backoff(&self.stopping, until).await,
                Source::Consul(_) if self.apply_failed => match self.consul_change(until).await {
                    None => !*self.stopping.borrow(),
                    Some(d) => {
                        changed = Some(d);
                        true
                    }
                },
                Source::Consul(_) => self.sleep_until(until).await,
            };
            if !waited {
                return Outcome::cancelled("stopping");
            }
        } else if !first {
            if let Source::Asg(a) = &mut self.source {
                if !a.wait(&self.stopping).await {
                    return Outcome::cancelled("stopping");
                }
            }
        }

        // After a failed apply, a recent answer is reused rather than asked for again: a
        // HAProxy that is down must not turn into extra calls. (An Auto Scaling source keeps
        // its membership and asks only when a resync or lookup is due.)
        let cached = self
            .last_answer
            .as_ref()
            .filter(|(at, _)| retrying && self.apply_failed && at.elapsed() < self.interval)
            .filter(|_| matches!(self.source, Source::Consul(_)))
            .map(|(_, t)| Discovered {
                targets: t.clone(),
                drain: BTreeSet::new(),
                names: BTreeMap::new(),
                note: "the last answer, reused".into(),
            });
        let discovered = match (changed, cached) {
            (Some(d), _) => d,
            (None, Some(d)) => Ok(d),
            (None, None) => {
                let block = !first && !retrying;
                let mut stop = self.stopping.clone();
                tokio::select! {
                    d = self.discover(block, first) => d,
                    _ = stop.wait_for(|s| *s) => return Outcome::cancelled("stopping"),
                }
            }
        };
        self.apply_failed = false;
        let outcome = match discovered {
            Err(e) => Err(SyncError::Discovery {
                source: Box::new(e),
            }),
            Ok(d) => match gate(&self.spec, &d) {
                Err(e) => Err(e),
                Ok(()) => {
                    self.last_answer = Some((Instant::now(), d.targets.clone()));
                    let mut applied = self.apply(&d).await;
                    if applied.is_ok() {
                        applied = self.after_apply(applied).await;
                    }
                    self.apply_failed = applied.is_err();
                    // What the source listed and the backend cannot take (no IPv4 address, no
                    // port) is named on a good round too, not only when it empties one.
                    applied.map(|detail| match d.note.split_once("; left out: ") {
                        Some((_, left)) => {
                            if self.left_out.as_deref() != Some(left) {
                                tracing::warn!(event = crate::telemetry::events::SERVERS_LEFT_OUT, rule = %self.rule, left_out = %left);
                                self.left_out = Some(left.to_owned());
                            }
                            format!("{detail}; left out: {left}")
                        }
                        None => {
                            self.left_out = None;
                            detail
                        }
                    })
                }
            },
        };
        match outcome {
            Ok(detail) => {
                self.backoff = None;
                Outcome::ok(detail)
            }
            // Cut short by a reload or shutdown: nothing to count either way.
            Err(e) if e.stopped_short() => Outcome::cancelled(e.to_string()),
            Err(e) => {
                let next = self
                    .backoff
                    .map_or(FIRST_BACKOFF, |b| b * 2)
                    .min(self.interval)
                    .min(MAX_BACKOFF);
                self.backoff = Some(next);
                tracing::warn!(event = crate::telemetry::events::BACKEND_SYNC_FAILED, rule = %self.rule, backend = %self.spec.backend, error = %e,
                    retry_in = %humantime::format_duration(next));
                Outcome::fail(e.to_string())
            }
        }
    }

    /// A Consul source after a failed apply: wait until `until` for Consul to list servers
    /// other than the answer that failed (blocking queries: one per change, or one for the
    /// whole wait). The new answer, or the error of the query; None when the wait ran out
    /// with the list unchanged (or shutdown came).
    async fn consul_change(&mut self, until: Instant) -> Option<Result<Discovered, SyncError>> {
        let failed = self.last_answer.as_ref().map(|(_, t)| t.clone());
        let port = self.spec.port;
        let timeout = self.timeout;
        let mut stop = self.stopping.clone();
        let Source::Consul(c) = &mut self.source else {
            return None;
        };
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || *stop.borrow() {
                return None;
            }
            if !c.can_block() {
                // No index to block on: wait the backoff out, as without a change.
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
                return None;
            }
            let answer = tokio::select! {
                a = c.instances(Some(left), timeout) => a,
                _ = stop.wait_for(|s| *s) => return None,
            };
            match answer {
                Err(e) => return Some(Err(e.into())),
                Ok(list) => {
                    let d = consul_source::discovered(&list, port);
                    if failed.as_ref() != Some(&d.targets) {
                        return Some(Ok(d));
                    }
                }
            }
        }
    }

    /// Sleep until `t` unless shutdown comes first (then false).
    async fn sleep_until(&self, t: Instant) -> bool {
        let mut stop = self.stopping.clone();
        tokio::select! {
            _ = tokio::time::sleep_until(t) => {}
            _ = stop.wait_for(|s| *s) => return false,
        }
        !*self.stopping.borrow()
    }

    /// `block`: Consul may wait for a change. `first`: an Auto Scaling source resyncs now
    /// (later it resyncs when due, and a retry asks AWS only for what is due).
    async fn discover(&mut self, block: bool, first: bool) -> Result<Discovered, SyncError> {
        let port = self.spec.port;
        match &mut self.source {
            Source::Asg(a) => {
                // Config validation makes `port` required for an Auto Scaling source.
                let port = port.ok_or(SyncError::NoAsgPort)?;
                let found = a.discover(&self.rule, port, self.interval, first).await?;
                let drain = a.membership.draining_targets();
                let mut targets: BTreeSet<Target> = found.serving.values().copied().collect();
                if self.spec.apply != ApplyMode::Peers {
                    targets.extend(drain.iter().copied());
                }
                Ok(Discovered {
                    targets,
                    drain,
                    names: found.serving,
                    note: found.note,
                })
            }
            Source::Consul(c) => {
                let wait = block.then_some(self.interval);
                let list = c.instances(wait, self.timeout).await?;
                Ok(consul_source::discovered(&list, port))
            }
        }
    }

    async fn apply(&mut self, d: &Discovered) -> Result<String, SyncError> {
        match self.spec.apply.clone() {
            ApplyMode::Runtime => self.apply_runtime(&d.targets, &d.drain).await,
            ApplyMode::Reload { template } => {
                let done = self.apply_reload(&d.targets, &template).await?;
                // A reload starts every server afresh: put the draining ones back in drain.
                self.hold_drains(&d.drain).await?;
                Ok(done)
            }
            ApplyMode::Peers => self.apply_peers(&d.names).await,
        }
    }

    /// The backend's slots: its servers named `<prefix><number>`, in order. A slot whose
    /// address change HAProxy refused counts as not addressable.
    /// The slots: the servers HAProxy runs whose lines are in the managed block of the file
    /// (an operator's `server web7` outside the block is never one, even when its name looks
    /// like a slot's), and whose names are the prefix and a number.
    async fn slots(&self) -> Result<Vec<Slot>, SyncError> {
        let text = configfile::read(&self.spec.haproxy_config).await?;
        let block = configfile::find_block(&text, &self.spec.backend)?;
        self.slots_in(&text, &block).await
    }

    /// [`Syncer::slots`], with the file already read as `text` (its managed block `block`).
    async fn slots_in(
        &self,
        text: &str,
        block: &configfile::Block,
    ) -> Result<Vec<Slot>, SyncError> {
        let all =
            runtime::servers(&self.spec.stats_socket, &self.spec.backend, self.timeout).await?;
        let ours = configfile::block_server_names(text, block);
        let mut slots: Vec<Slot> = all
            .into_iter()
            .filter(|s| ours.contains(&s.name) && self.slot_number(&s.name).is_some())
            .collect();
        plan::sort_slots(&mut slots);
        for s in &mut slots {
            if self.refused_slots.contains(&s.name) {
                s.addressable = false;
            }
        }
        Ok(slots)
    }

    /// `web12` -> 12 for the prefix `web`; None for a name that is no slot's.
    fn slot_number(&self, name: &str) -> Option<u64> {
        name.strip_prefix(self.spec.server_prefix.as_str())
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
            .and_then(|n| n.parse().ok())
    }

    /// Reload mode: the server has the name the template gave this target.
    fn named_by_us(&self, s: &Slot) -> bool {
        s.target
            .is_some_and(|t| s.name == template::server_name(&self.spec.server_prefix, &t))
    }

    /// Check and install `text` as the HAProxy configuration (unless the file, `current` as
    /// read under `file`, its lock, already is `text`); release the lock, then reload
    /// (coalesced): the reload window is never waited out holding the file.
    async fn install_and_reload(
        &self,
        mut file: tokio::sync::OwnedMutexGuard<configfile::FileState>,
        current: &str,
        text: &str,
    ) -> Result<(), SyncError> {
        if current != text {
            self.install(&mut file, configfile::CheckPolicy::Always, current, text)
                .await?;
            self.reload_owed.store(true, Ordering::Relaxed);
        }
        drop(file);
        self.coalesced_reload().await
    }

    /// Install `new` over `current`, the file as read while holding `file` (its lock's
    /// contents), with `haproxy -c` unless `policy` and what `file` knows allow going without
    /// ([`configfile::install_tracked`]). Counted in `watchdog_haproxy_config_installs_total`
    /// and logged (`config_installed`, debug level) with whether the check ran and why.
    async fn install(
        &self,
        file: &mut configfile::FileState,
        policy: configfile::CheckPolicy,
        current: &str,
        new: &str,
    ) -> Result<(), ConfigFileError> {
        let spec = &self.spec;
        let decision = configfile::install_tracked(
            file,
            policy,
            &spec.haproxy_config,
            current,
            new,
            &spec.haproxy_bin,
            spec.reload.timeout,
        )
        .await?;
        self.metrics.config_installed(&self.rule, decision.label());
        tracing::debug!(event = crate::telemetry::events::CONFIG_INSTALLED, rule = %self.rule,
            file = %spec.haproxy_config.display(), check = decision.label(), reason = %decision);
        Ok(())
    }

    /// Wait out the reload window (other changes meanwhile fold into this reload), then reload.
    async fn coalesced_reload(&self) -> Result<(), SyncError> {
        let wait = self.reloader.wait_needed(self.spec.reload.window);
        if !wait.is_zero() {
            tracing::info!(event = crate::telemetry::events::RELOAD_COALESCED, rule = %self.rule, wait = %humantime::format_duration(wait));
            if !self.sleep_until(Instant::now() + wait).await {
                return Err(SyncError::StoppingBeforeReload);
            }
        }
        // Until HAProxy shows the reload done, the file on disk is not what it runs.
        self.reloader
            .reload(&self.spec.reload, &self.spec.stats_socket)
            .await?;
        self.reload_owed.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// The targets the backend serves right now (reload mode: every server in it).
    /// A server of ours in maintenance counts: it is configured, and no reload changes that
    /// (the server-state file brings its state back).
    async fn live_targets(&self) -> Result<BTreeSet<Target>, SyncError> {
        let all =
            runtime::servers(&self.spec.stats_socket, &self.spec.backend, self.timeout).await?;
        Ok(all
            .iter()
            .filter(|s| s.serving() || (s.maint && self.named_by_us(s)))
            .filter_map(|s| s.target)
            .collect())
    }

    /// After a reload: wait until the new HAProxy serves exactly `desired`.
    async fn wait_live(&self, desired: &BTreeSet<Target>, slots: bool) -> Result<(), SyncError> {
        let deadline = Instant::now() + self.spec.reload.timeout;
        let mut last;
        loop {
            let seen = if slots {
                self.slots().await.map(|s| {
                    s.iter()
                        .filter(|s| s.serving())
                        .filter_map(|s| s.target)
                        .collect()
                })
            } else {
                self.live_targets().await
            };
            match seen {
                Ok(t) if &t == desired => return Ok(()),
                Ok(t) => {
                    let missing: BTreeSet<Target> = desired.difference(&t).copied().collect();
                    let others: BTreeSet<Target> = t.difference(desired).copied().collect();
                    last = format!(
                        "HAProxy serves {} of the {} servers wanted (missing: {}), and {} others ({})",
                        t.intersection(desired).count(),
                        desired.len(),
                        list(&missing),
                        others.len(),
                        list(&others)
                    )
                }
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(SyncError::NotMatching {
                    backend: self.spec.backend.clone(),
                    last,
                });
            }
            tokio::time::sleep(VERIFY_EVERY).await;
        }
    }

    fn count_changes(&self, added: usize, removed: usize) {
        for (op, n) in [("add", added), ("remove", removed)] {
            self.metrics.sync_changes(&self.rule, op, n as u64);
        }
    }

    fn count(&self, plan: &plan::Plan) {
        let (added, removed) = (plan.added(), plan.removed());
        self.count_changes(added, removed);
        if added + removed > 0 {
            tracing::info!(event = crate::telemetry::events::BACKEND_SYNC_APPLIED, rule = %self.rule, backend = %self.spec.backend, mode = "runtime",
                added, removed, kept = plan.kept, unplaced = plan.unplaced.len());
        }
    }

    fn summary(&self, plan: &plan::Plan, servers: usize, extra: Option<String>) -> String {
        let mut s = if plan.commands.is_empty() && extra.is_none() {
            format!("in step: {servers} servers")
        } else {
            format!(
                "{servers} servers: +{} -{}",
                plan.added() + plan.unplaced.len(),
                plan.removed()
            )
        };
        if let Some(e) = extra {
            s.push_str(", ");
            s.push_str(&e);
        }
        s
    }
}

/// Up to five servers, for messages.
fn list(t: &BTreeSet<Target>) -> String {
    if t.is_empty() {
        return "none".into();
    }
    let mut s: Vec<String> = t.iter().take(5).map(Target::to_string).collect();
    if t.len() > 5 {
        s.push("...".into());
    }
    s.join(", ")
}

fn note(n: usize, what: &str, left_out: &[String]) -> String {
    if left_out.is_empty() {
        format!("{n} {what}")
    } else {
        let mut shown: Vec<&str> = left_out.iter().take(5).map(String::as_str).collect();
        if left_out.len() > 5 {
            shown.push("...");
        }
        format!("{n} {what}; left out: {}", shown.join(", "))
    }
}

/// A bad answer (empty, or fewer than `min_servers`) never reaches HAProxy.
fn gate(spec: &BackendSyncSpec, d: &Discovered) -> Result<(), SyncError> {
    let n = d.targets.len();
    if n == 0 && spec.allow_empty {
        return Ok(());
    }
    if n == 0 {
        return Err(SyncError::Empty {
            note: d.note.clone(),
        });
    }
    if n < spec.min_servers as usize {
        return Err(SyncError::TooFew {
            n,
            min: spec.min_servers as usize,
            note: d.note.clone(),
        });
    }
    Ok(())
}

/// Build the source a rule names (`asg` needs the AWS SDK configuration; with an events queue
/// it reads the queue through `queues`, the daemon's receivers kept across reloads).
pub fn source(
    spec: &BackendSyncSpec,
    http: &reqwest::Client,
    sdk: Option<&aws_config::SdkConfig>,
    dry_run: bool,
    metrics: &Arc<crate::telemetry::metrics::Metrics>,
    queues: &queues::EventQueues,
) -> Option<Source> {
    match &spec.source {
        SourceSpec::Asg(a) => sdk.map(|sdk| {
            Source::Asg(Box::new(asg::AsgSource::new(
                a.clone(),
                sdk,
                dry_run,
                metrics.clone(),
                queues,
            )))
        }),
        SourceSpec::Consul(c) => Some(Source::Consul(Box::new(Consul::new(
            c.clone(),
            http.clone(),
        )))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CheckSpec;

    fn spec(extra: &str) -> BackendSyncSpec {
        let toml = format!(
            "[rules.app]\n[rules.app.check]\ntype = \"backend_sync\"\nbackend = \"app\"\nport = 8080\n{extra}\n[rules.app.check.source]\ntype = \"asg\"\ngroup = \"web\"\n"
        );
        let c = crate::config::from_sources(&[("s.toml".into(), toml)])
            .unwrap_or_else(|e| panic!("test config invalid: {e}"));
        match &c.rules[0].check {
            CheckSpec::BackendSync(b) => (**b).clone(),
            other => panic!("not a backend sync: {}", other.kind()),
        }
    }

    fn answer(n: u8) -> Discovered {
        Discovered {
            targets: (1..=n)
                .map(|i| Target {
                    ip: std::net::Ipv4Addr::new(10, 0, 0, i),
                    port: 8080,
                })
                .collect(),
            drain: BTreeSet::new(),
            names: BTreeMap::new(),
            note: format!("{n} InService"),
        }
    }

    #[test]
    fn a_backend_sync_paces_itself_and_its_deadline_covers_two_reloads() {
        let toml = "[rules.app]\n[rules.app.check]\ntype = \"backend_sync\"\nbackend = \"app\"\nport = 8080\n[rules.app.check.source]\ntype = \"asg\"\ngroup = \"web\"\n";
        let c = crate::config::from_sources(&[("s.toml".into(), toml.into())])
            .unwrap_or_else(|e| panic!("test config invalid: {e}"));
        let r = &c.rules[0];
        let b = spec("");
        let p = pacing(r, &b);
        assert_eq!(p.period, MIN_SELF_PACED_GAP, "paces itself");
        assert_eq!(
            p.deadline,
            r.interval + r.timeout + (b.reload.window + b.reload.timeout) * 2 + SYNC_AWS_SLACK
        );
    }

    #[test]
    fn an_empty_answer_never_reaches_haproxy_unless_allowed() {
        let e = gate(&spec(""), &answer(0))
            .expect_err("empty is refused")
            .to_string();
        assert!(e.contains("lists no servers (0 InService)"), "{e}");
        assert!(e.contains("allow_empty = true"), "{e}");
        gate(&spec("allow_empty = true"), &answer(0)).expect("allowed");
    }

    #[test]
    fn fewer_than_min_servers_is_refused() {
        let s = spec("min_servers = 3");
        let e = gate(&s, &answer(2)).expect_err("2 < 3").to_string();
        assert!(
            e.contains("lists 2 servers, fewer than min_servers = 3"),
            "{e}"
        );
        gate(&s, &answer(3)).expect("3 is enough");
    }

    #[test]
    fn left_out_entries_are_named_up_to_five() {
        let many: Vec<String> = (1..=7).map(|i| format!("i-{i}")).collect();
        assert_eq!(note(2, "passing", &[]), "2 passing");
        assert_eq!(
            note(2, "passing", &many),
            "2 passing; left out: i-1, i-2, i-3, i-4, i-5, ..."
        );
    }
}
