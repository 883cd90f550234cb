//! Backend sync: keep a HAProxy backend's servers equal to what a discovery source lists.
//!
//! A [`Syncer`] runs one `backend_sync` rule. Each round waits for its next poll (Auto Scaling)
//! or for Consul to report a change, asks the source, refuses answers that would empty or
//! gut the backend, lets [`plan`] decide the commands, and applies them: live through the
//! stats socket with the config file's managed block rewritten to match (`runtime`), or by
//! rendering the template and reloading (`reload`). A round's [`Outcome`] feeds the rule's
//! threshold like any check, so a sync that keeps failing raises the rule's `on_fail` alert.

pub mod asg;
pub mod configfile;
pub mod events;
pub mod membership;
pub mod plan;
pub mod reload;
pub mod runtime;
pub mod template;

use crate::checks::Outcome;
use crate::config::{ApplyMode, BackendSyncSpec, SourceSpec};
use crate::providers::aws::imds::IdentitySource;
use crate::providers::consul::{self, Consul};
use crate::telemetry;
use plan::{Slot, Target};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Where a rule's servers come from, with the clients it needs.
pub enum Source {
    Asg(asg::AsgSource),
    Consul(Consul),
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

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// A failing round is retried at least this often: drains, heartbeats and events wait on it.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const VERIFY_EVERY: Duration = Duration::from_millis(100);

impl Syncer {
    pub fn new(
        rule: &crate::config::Rule,
        spec: BackendSyncSpec,
        source: Source,
        stopping: watch::Receiver<bool>,
        dry_run: bool,
    ) -> Self {
        Syncer {
            rule: rule.name.clone(),
            interval: rule.interval,
            timeout: rule.timeout,
            reloader: reload::for_method(&spec.reload.method),
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
        if let Some(b) = self.backoff {
            if !self.sleep_until(Instant::now() + b).await {
                return Outcome::ok("stopping");
            }
        } else if !first {
            if let Source::Asg(a) = &mut self.source {
                if !a.wait(&self.stopping).await {
                    return Outcome::ok("stopping");
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
        let discovered = match cached {
            Some(d) => Ok(d),
            None => {
                let block = !first && !retrying;
                let mut stop = self.stopping.clone();
                tokio::select! {
                    d = self.discover(block, first) => d,
                    _ = stop.wait_for(|s| *s) => return Outcome::ok("stopping"),
                }
            }
        };
        self.apply_failed = false;
        let outcome = match discovered {
            Err(e) => Err(format!(
                "discovery failed: {e}; HAProxy keeps the servers it has"
            )),
            Ok(d) => match self.gate(&d) {
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
                                tracing::warn!(event = "servers_left_out", rule = %self.rule, left_out = %left);
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
            Err(e) => {
                let next = self
                    .backoff
                    .map_or(FIRST_BACKOFF, |b| b * 2)
                    .min(self.interval)
                    .min(MAX_BACKOFF);
                self.backoff = Some(next);
                tracing::warn!(event = "backend_sync_failed", rule = %self.rule, backend = %self.spec.backend, error = %e,
                    retry_in = %humantime::format_duration(next));
                Outcome::fail(e)
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
    async fn discover(&mut self, block: bool, first: bool) -> Result<Discovered, String> {
        let port = self.spec.port;
        match &mut self.source {
            Source::Asg(a) => {
                // Config validation makes `port` required for an Auto Scaling source.
                let port = port.ok_or("no port for the Auto Scaling group's servers")?;
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
                let mut targets = BTreeSet::new();
                let mut left_out = Vec::new();
                for i in &list {
                    let p = port.unwrap_or(i.port);
                    match consul::ipv4(i) {
                        Some(ip) if p != 0 => {
                            targets.insert(Target { ip, port: p });
                        }
                        Some(_) => left_out.push(format!("{} (no port)", i.id)),
                        None => {
                            left_out.push(format!("{} (address {:?} is not IPv4)", i.id, i.address))
                        }
                    }
                }
                Ok(Discovered {
                    note: note(targets.len(), "passing", &left_out),
                    targets,
                    drain: BTreeSet::new(),
                    names: BTreeMap::new(),
                })
            }
        }
    }

    /// A bad answer (empty, or fewer than `min_servers`) never reaches HAProxy.
    fn gate(&self, d: &Discovered) -> Result<(), String> {
        let n = d.targets.len();
        if n == 0 && self.spec.allow_empty {
            return Ok(());
        }
        if n == 0 {
            return Err(format!(
                "the source lists no servers ({}); HAProxy keeps the servers it has (set allow_empty = true to let an empty answer empty the backend)",
                d.note
            ));
        }
        if n < self.spec.min_servers as usize {
            return Err(format!(
                "the source lists {n} servers, fewer than min_servers = {} ({}); HAProxy keeps the servers it has",
                self.spec.min_servers, d.note
            ));
        }
        Ok(())
    }

    async fn apply(&mut self, d: &Discovered) -> Result<String, String> {
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

    /// Reload mode: the servers of `drain` are put in drain through the stats socket.
    async fn hold_drains(&self, drain: &BTreeSet<Target>) -> Result<(), String> {
        if drain.is_empty() || self.dry_run {
            return Ok(());
        }
        let all =
            runtime::servers(&self.spec.stats_socket, &self.spec.backend, self.timeout).await?;
        let commands: Vec<plan::Command> = all
            .iter()
            .filter(|s| s.serving() && !s.draining && s.target.is_some_and(|t| drain.contains(&t)))
            .map(|s| plan::Command::Drain {
                slot: s.name.clone(),
            })
            .collect();
        if commands.is_empty() {
            return Ok(());
        }
        runtime::execute(
            &self.spec.stats_socket,
            &self.spec.backend,
            &commands,
            self.timeout,
        )
        .await
        .map_err(String::from)
    }

    /// Auto Scaling only: follow the drains (finish those whose sessions reached zero or
    /// that timed out, and apply again to take them out), keep their lifecycle actions
    /// alive, and complete the actions of servers HAProxy no longer has.
    async fn after_apply(&mut self, applied: Result<String, String>) -> Result<String, String> {
        let Source::Asg(a) = &mut self.source else {
            return applied;
        };
        let mut detail = applied?;
        if self.spec.apply == ApplyMode::Peers {
            // A leaving node's peer line went with the apply; nothing to drain.
            let ids: Vec<String> = a.membership.drains().map(|(id, _)| id.clone()).collect();
            for id in ids {
                a.membership.finish_drain(&id);
            }
        } else if a.membership.drains().next().is_some() {
            let sessions =
                runtime::sessions(&self.spec.stats_socket, &self.spec.backend, self.timeout)
                    .await?;
            let servers =
                runtime::servers(&self.spec.stats_socket, &self.spec.backend, self.timeout).await?;
            let now = Instant::now();
            let mut finished = Vec::new();
            for (id, d) in a.membership.drains() {
                let left: u64 = servers
                    .iter()
                    .filter(|s| s.target == Some(d.target) && !s.maint)
                    .map(|s| sessions.get(&s.name).copied().unwrap_or(0))
                    .sum();
                let waited = now.duration_since(d.since);
                if left == 0 {
                    finished.push((id.clone(), "drained", d.target, waited, left));
                } else if waited >= a.spec.drain_timeout {
                    finished.push((id.clone(), "timed out", d.target, waited, left));
                }
            }
            for (id, why, target, waited, left) in &finished {
                let waited =
                    humantime::format_duration(Duration::from_millis(waited.as_millis() as u64));
                if *why == "drained" {
                    tracing::info!(event = "drain_finished", rule = %self.rule, instance = %id, server = %target, waited = %waited);
                } else {
                    tracing::warn!(event = "drain_timed_out", rule = %self.rule, instance = %id, server = %target, waited = %waited, sessions = left,
                        "taking it out with sessions still open");
                }
                a.membership.finish_drain(id);
            }
            if !finished.is_empty() {
                let d = Discovered {
                    names: a.membership.serving().clone(),
                    targets: a.membership.wanted(),
                    drain: a.membership.draining_targets(),
                    note: format!("{} InService and Healthy", a.membership.serving().len()),
                };
                // Taking the drained servers out must not empty or gut the backend either.
                self.gate(&d)?;
                detail = self.apply(&d).await?;
            }
        }
        let Source::Asg(a) = &mut self.source else {
            return Ok(detail);
        };
        if let Some(every) = a.heartbeat_every() {
            for h in a.membership.heartbeats_due(every, Instant::now()) {
                a.heartbeat(&self.rule, &h, self.dry_run).await;
            }
        }
        let mut failed = None;
        for c in a.membership.take_completions() {
            if let Err(e) = a.complete(&self.rule, c, self.dry_run).await {
                failed = Some(e);
            }
        }
        if let Some(e) = failed.or_else(|| a.take_queue_error(self.interval)) {
            return Err(e);
        }
        let draining = a.membership.drains().count();
        if draining > 0 {
            detail.push_str(&format!(", {draining} draining"));
        }
        Ok(detail)
    }

    /// Peers mode: one `peer <instance-id> <ip>:<port>` line per serving instance in the
    /// `peers` section's managed block, and always this node's own line (`localpeer`, or the
    /// host name as HAProxy defaults to, at this node's private IP): HAProxy drops a peers
    /// section without its local peer, so a change that would leave it out is never
    /// installed. A change is checked, installed and reloaded.
    async fn apply_peers(&mut self, names: &BTreeMap<String, Target>) -> Result<String, String> {
        let spec = self.spec.clone();
        let lock = configfile::lock_for(&spec.haproxy_config);
        let _file = lock.lock().await;
        let text = configfile::read(&spec.haproxy_config).await?;
        let block = configfile::find_peers_block(&text, &spec.backend)?;
        let local = match configfile::local_peer_name(&text) {
            Some(l) => l,
            None => host_name().map_err(|e| {
                format!("the peers section needs this node's peer name: no `localpeer` in global, and {e}")
            })?,
        };
        let port = spec
            .port
            .ok_or("no port for the peers section's lines (set `port`)")?;
        let own = self.own_ip().await.map_err(|e| {
            format!("cannot write this node's own peer line ({local}): {e}; the peers section is left as it is")
        })?;
        let own = Target { ip: own, port };
        let lines = configfile::peer_lines(names, &local, own);
        if !lines
            .iter()
            .any(|l| l.starts_with(&format!("peer {local} ")))
        {
            return Err(format!(
                "refusing to write a peers section without its local peer {local}"
            ));
        }
        let new_text = configfile::replace_block(&text, &block, &lines);
        let owed = self.reload_owed.load(Ordering::Relaxed);
        let outside = if names.contains_key(&local) {
            ""
        } else {
            " (this node is not InService yet: its own line is kept)"
        };
        if new_text == text && !owed {
            return Ok(format!("in step: {} peers{outside}", lines.len()));
        }
        if self.dry_run {
            tracing::info!(event = "dry_run", rule = %self.rule, would = %format!("write {} peers into peers {} and reload", lines.len(), spec.backend));
            return Ok(format!(
                "dry run: would write {} peers and reload",
                lines.len()
            ));
        }
        self.install_and_reload(&new_text).await?;
        telemetry::incr("backend_sync_peer_updates_total", &[("rule", &self.rule)]);
        tracing::info!(event = "peers_applied", rule = %self.rule, peers_section = %spec.backend, peers = lines.len(), localpeer = %local);
        Ok(format!("{} peers (reloaded){outside}", lines.len()))
    }

    /// This node's private IP: `[node] private_ip`, else instance metadata.
    async fn own_ip(&self) -> Result<std::net::Ipv4Addr, String> {
        let identity = self
            .identity
            .as_ref()
            .ok_or("this node's identity is not known here")?;
        Ok(identity.get().await.map_err(|e| e.to_string())?.private_ip)
    }

    /// Runtime mode: slots refused before HAProxy was reloaded (by anyone) are tried again:
    /// the reload read them from the rewritten block, as ordinary free slots.
    async fn forget_refusals_after_a_reload(&mut self) {
        let Some((at, up_then)) = self.refused_when else {
            return;
        };
        if let Ok(up_now) = runtime::uptime(&self.spec.stats_socket, self.timeout).await {
            if runtime::restarted_since(up_then, at.elapsed(), up_now) {
                self.refused_slots.clear();
                self.refused_when = None;
            }
        }
    }

    /// The backend's slots: its servers named `<prefix><number>`, in order. A slot whose
    /// address change HAProxy refused counts as not addressable.
    /// The slots: the servers HAProxy runs whose lines are in the managed block of the file
    /// (an operator's `server web7` outside the block is never one, even when its name looks
    /// like a slot's), and whose names are the prefix and a number.
    async fn slots(&self) -> Result<Vec<Slot>, String> {
        let all =
            runtime::servers(&self.spec.stats_socket, &self.spec.backend, self.timeout).await?;
        let text = configfile::read(&self.spec.haproxy_config).await?;
        let block = configfile::find_block(&text, &self.spec.backend)?;
        let ours = configfile::block_server_names(&text, &block);
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

    async fn apply_runtime(
        &mut self,
        desired: &BTreeSet<Target>,
        drain: &BTreeSet<Target>,
    ) -> Result<String, String> {
        let spec = self.spec.clone();
        let spec = &spec;
        let lock = configfile::lock_for(&spec.haproxy_config);
        let _file = lock.lock().await;
        let text = configfile::read(&spec.haproxy_config).await?;
        let block = configfile::find_block(&text, &spec.backend)?;
        self.forget_refusals_after_a_reload().await;
        let mut slots = self.slots().await?;
        let mut plan = plan::plan_draining(&slots, desired, drain);
        // Runtime mode: the source wins over a maintenance set by hand on a wanted server
        // (reload mode keeps it; docs/backend-sync.md). Say so by name when it happens.
        for c in &plan.commands {
            if let plan::Command::Enable { slot, target } = c {
                if slots
                    .iter()
                    .any(|s| &s.name == slot && s.maint && s.target == Some(*target))
                {
                    tracing::warn!(event = "server_back_in_service", rule = %self.rule, backend = %spec.backend,
                        slot = %slot, server = %target, "a server the source lists goes back into service in the slot it had; had an operator put it in maintenance, runtime mode undoes that (the source wins): take it out of the source to keep it out");
                }
            }
        }
        if self.dry_run {
            for c in &plan.commands {
                tracing::info!(event = "dry_run", rule = %self.rule, would = %c.lines(&spec.backend).join("; "));
            }
            return Ok(format!(
                "dry run: would add {}, remove {}, keep {}",
                plan.added(),
                plan.removed(),
                plan.kept
            ));
        }
        // Nothing to change (most rounds): no second read of the stats socket.
        let after = if plan.commands.is_empty() {
            slots
        } else {
            // A slot that refuses its new address stays in maintenance and is left out; the
            // plan is made again without it (each pass leaves out one more slot, so this ends).
            loop {
                match runtime::execute(
                    &spec.stats_socket,
                    &spec.backend,
                    &plan.commands,
                    self.timeout,
                )
                .await
                {
                    Ok(()) => break,
                    Err(runtime::ExecError::AddrRefused { slot, reply })
                        if !self.refused_slots.contains(&slot) =>
                    {
                        tracing::warn!(event = "slot_unusable", rule = %self.rule, backend = %spec.backend, slot = %slot, reply = %reply,
                            "HAProxy refused a new address for this slot: it stays in maintenance and is not used until HAProxy reloads the block");
                        self.refused_slots.insert(slot);
                        if self.refused_when.is_none() {
                            if let Ok(up) = runtime::uptime(&spec.stats_socket, self.timeout).await
                            {
                                self.refused_when = Some((Instant::now(), up));
                            }
                        }
                        slots = self.slots().await?;
                        plan = plan::plan_draining(&slots, desired, drain);
                        if plan.commands.is_empty() {
                            break;
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            self.count(&plan);
            let after = self.slots().await?;
            let left = plan::plan_draining(&after, desired, drain);
            if !left.commands.is_empty() {
                return Err(format!(
                    "HAProxy did not keep the changes: {} command(s) still needed after applying",
                    left.commands.len()
                ));
            }
            after
        };
        let default_port = spec.port.unwrap_or(0);
        if plan.unplaced.is_empty() {
            let lines: Vec<String> = after
                .iter()
                .map(|s| configfile::server_line(s, default_port, &spec.server_options))
                .collect();
            let new_text = configfile::replace_block(&text, &block, &lines);
            if new_text != text {
                configfile::install(
                    &spec.haproxy_config,
                    &new_text,
                    &spec.haproxy_bin,
                    spec.reload.timeout,
                )
                .await
                .map_err(|e| {
                    format!(
                        "HAProxy runs the new servers, but {} was not updated: {e}",
                        spec.haproxy_config.display()
                    )
                })?;
            }
            return Ok(self.summary(&plan, desired.len(), None));
        }

        // Out of slots: grow the block (half again what is needed, at least `slots`), and
        // reload once to create them.
        let have = after.len();
        let want = ((desired.len() * 3).div_ceil(2))
            .max(spec.slots as usize)
            .max(have + plan.unplaced.len());
        tracing::warn!(event = "slots_exhausted", rule = %self.rule, backend = %spec.backend, slots = have,
            servers = desired.len(), growing_to = want, "not enough server slots: growing them with one reload");
        telemetry::incr("backend_sync_slot_growths_total", &[("rule", &self.rule)]);
        let mut layout = after.clone();
        // Numbered after every server of the backend with a slot-like name, the operator's
        // outside the block too: a new `web2` beside the operator's `web2` would not load.
        let mut next_n = runtime::servers(&spec.stats_socket, &spec.backend, self.timeout)
            .await?
            .iter()
            .filter_map(|s| self.slot_number(&s.name))
            .max()
            .unwrap_or(0)
            + 1;
        let mut unplaced = plan.unplaced.iter();
        while layout.len() < want {
            let target = unplaced.next().copied();
            layout.push(Slot {
                name: format!("{}{next_n}", spec.server_prefix),
                target,
                addressable: true,
                maint: target.is_none(),
                draining: false,
            });
            next_n += 1;
        }
        let lines: Vec<String> = layout
            .iter()
            .map(|s| configfile::server_line(s, default_port, &spec.server_options))
            .collect();
        let new_text = configfile::replace_block(&text, &block, &lines);
        self.install_and_reload(&new_text).await?;
        // The block wrote every slot afresh: refused ones are ordinary free slots now.
        self.refused_slots.clear();
        self.refused_when = None;
        let prefix = spec.server_prefix.clone();
        self.wait_live(desired, true)
            .await
            .map_err(|e| format!("after growing the slots of {prefix}: {e}"))?;
        Ok(self.summary(
            &plan,
            desired.len(),
            Some(format!("grew slots from {have} to {want} with one reload")),
        ))
    }

    async fn apply_reload(
        &mut self,
        desired: &BTreeSet<Target>,
        template: &std::path::Path,
    ) -> Result<String, String> {
        let spec = self.spec.clone();
        let source = tokio::fs::read_to_string(template)
            .await
            .map_err(|e| format!("template {}: {e}", template.display()))?;
        let targets: Vec<Target> = desired.iter().copied().collect();
        let text = template::render(
            &source,
            &spec.backend,
            &spec.server_prefix,
            &spec.server_options,
            &targets,
        )?;
        let current = match tokio::fs::read_to_string(&spec.haproxy_config).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(format!(
                    "HAProxy configuration {}: {e}",
                    spec.haproxy_config.display()
                ))
            }
        };
        let live = self.live_targets().await.ok();
        if !std::mem::replace(&mut self.checked_loaded, true) && text == current {
            self.owed_since_before_start().await;
        }
        self.note_maintenance(desired).await;
        let kept = if self.seen_maint.is_empty() {
            String::new()
        } else {
            format!(
                ", {} in maintenance (kept: {})",
                self.seen_maint.len(),
                list(&self.seen_maint)
            )
        };
        let owed = self.reload_owed.load(Ordering::Relaxed);
        if text == current && !owed && live.as_ref() == Some(desired) {
            self.attempts.succeeded();
            return Ok(format!("in step: {} servers{kept}", desired.len()));
        }
        // A rendering whose reloads did not bring HAProxy to it is not reloaded over and
        // over: after a few attempts it waits, and the round says why.
        let key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            text.hash(&mut h);
            h.finish()
        };
        if let Some((left, n, last)) = self.attempts.held(key, Instant::now()) {
            return Err(format!(
                "{n} reloads of this configuration did not bring HAProxy to the wanted servers (last: {last}); next attempt in {}",
                humantime::format_duration(Duration::from_secs(left.as_secs().max(1)))
            ));
        }
        if self.dry_run {
            tracing::info!(event = "dry_run", rule = %self.rule, would = "install the rendered configuration and reload");
            return Ok(format!(
                "dry run: would render {} servers and reload",
                desired.len()
            ));
        }
        if text != current {
            configfile::install(
                &spec.haproxy_config,
                &text,
                &spec.haproxy_bin,
                spec.reload.timeout,
            )
            .await?;
            self.reload_owed.store(true, Ordering::Relaxed);
        }
        self.coalesced_reload().await?;
        if let Err(e) = self.wait_live(desired, false).await {
            if let Some(hold) = self.attempts.failed(key, Instant::now(), &e) {
                tracing::warn!(event = "reload_held_back", rule = %self.rule, backend = %spec.backend,
                    attempts = reload::MAX_ATTEMPTS, hold = %humantime::format_duration(hold), error = %e,
                    "reloading again would not help: holding this configuration back");
            }
            return Err(e);
        }
        self.attempts.succeeded();
        self.note_maintenance(desired).await;
        let before = live.unwrap_or_default();
        let added = desired.difference(&before).count();
        let removed = before.difference(desired).count();
        self.count_changes(added, removed);
        tracing::info!(event = "backend_sync_applied", rule = %self.rule, backend = %spec.backend, mode = "reload",
            added, removed, servers = desired.len());
        let kept = if self.seen_maint.is_empty() {
            String::new()
        } else {
            format!(", {} in maintenance (kept)", self.seen_maint.len())
        };
        Ok(format!(
            "{} servers: +{added} -{removed} (reloaded){kept}",
            desired.len()
        ))
    }

    /// Reload mode, once after start: a file written after the running HAProxy started (a
    /// reload that failed before this daemon ran) is not what HAProxy runs: reload it.
    async fn owed_since_before_start(&self) {
        let (Ok(meta), Ok(up)) = (
            tokio::fs::metadata(&self.spec.haproxy_config).await,
            runtime::uptime(&self.spec.stats_socket, self.timeout).await,
        ) else {
            return;
        };
        let Ok(mtime) = meta.modified() else { return };
        if runtime::written_after_start(mtime, std::time::SystemTime::now(), up) {
            tracing::warn!(event = "config_not_loaded", rule = %self.rule, file = %self.spec.haproxy_config.display(),
                "the file was written after the running HAProxy started: reloading it");
            self.reload_owed.store(true, Ordering::Relaxed);
        }
    }

    /// Reload mode: the wanted servers HAProxy holds in maintenance (an operator's `set
    /// server ... state maint`, which a server-state file carries across reloads). They
    /// count as present (no reload brings them back) and are left as they are: the
    /// operator's maintenance wins. Logged when the set changes.
    async fn note_maintenance(&mut self, desired: &BTreeSet<Target>) {
        let Ok(all) =
            runtime::servers(&self.spec.stats_socket, &self.spec.backend, self.timeout).await
        else {
            return;
        };
        let maint: BTreeSet<Target> = all
            .iter()
            .filter(|s| s.maint && self.named_by_us(s))
            .filter_map(|s| s.target)
            .filter(|t| desired.contains(t))
            .collect();
        if maint != self.seen_maint {
            if !maint.is_empty() {
                tracing::warn!(event = "servers_in_maintenance", rule = %self.rule, backend = %self.spec.backend,
                    servers = %list(&maint), "kept in maintenance: an operator's maintenance wins over the source");
            }
            self.seen_maint = maint;
        }
    }

    /// Reload mode: the server has the name the template gave this target.
    fn named_by_us(&self, s: &Slot) -> bool {
        s.target
            .is_some_and(|t| s.name == template::server_name(&self.spec.server_prefix, &t))
    }

    /// Check and install `text` as the HAProxy configuration (unless the file already is
    /// `text`), then reload (coalesced).
    async fn install_and_reload(&self, text: &str) -> Result<(), String> {
        let spec = &self.spec;
        let current = tokio::fs::read_to_string(&spec.haproxy_config)
            .await
            .unwrap_or_default();
        if current != text {
            configfile::install(
                &spec.haproxy_config,
                text,
                &spec.haproxy_bin,
                spec.reload.timeout,
            )
            .await?;
            self.reload_owed.store(true, Ordering::Relaxed);
        }
        self.coalesced_reload().await
    }

    /// Wait out the reload window (other changes meanwhile fold into this reload), then reload.
    async fn coalesced_reload(&self) -> Result<(), String> {
        let wait = self.reloader.wait_needed(self.spec.reload.window);
        if !wait.is_zero() {
            tracing::info!(event = "reload_coalesced", rule = %self.rule, wait = %humantime::format_duration(wait));
            if !self.sleep_until(Instant::now() + wait).await {
                return Err("stopping before the reload".into());
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
    async fn live_targets(&self) -> Result<BTreeSet<Target>, String> {
        let all =
            runtime::servers(&self.spec.stats_socket, &self.spec.backend, self.timeout).await?;
        Ok(all
            .iter()
            .filter(|s| s.serving() || (s.maint && self.named_by_us(s)))
            .filter_map(|s| s.target)
            .collect())
    }

    /// After a reload: wait until the new HAProxy serves exactly `desired`.
    async fn wait_live(&self, desired: &BTreeSet<Target>, slots: bool) -> Result<(), String> {
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
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "after the reload, backend {} does not match: {last}",
                    self.spec.backend
                ));
            }
            tokio::time::sleep(VERIFY_EVERY).await;
        }
    }

    fn count_changes(&self, added: usize, removed: usize) {
        for (op, n) in [("add", added), ("remove", removed)] {
            telemetry::incr_by(
                "backend_sync_changes_total",
                &[("rule", &self.rule), ("op", op)],
                n as u64,
            );
        }
    }

    fn count(&self, plan: &plan::Plan) {
        let (added, removed) = (plan.added(), plan.removed());
        self.count_changes(added, removed);
        if added + removed > 0 {
            tracing::info!(event = "backend_sync_applied", rule = %self.rule, backend = %self.spec.backend, mode = "runtime",
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

/// The host name, which HAProxy uses as the local peer's name when `localpeer` is not set.
fn host_name() -> Result<String, String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_err(|e| format!("the host name cannot be read: {e}"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err("the host name is empty".into());
    }
    Ok(name.to_owned())
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

/// Build the source a rule names (`asg` needs the AWS SDK configuration).
pub fn source(
    spec: &BackendSyncSpec,
    http: &reqwest::Client,
    sdk: Option<&aws_config::SdkConfig>,
    dry_run: bool,
) -> Option<Source> {
    match &spec.source {
        SourceSpec::Asg(a) => {
            sdk.map(|sdk| Source::Asg(asg::AsgSource::new(a.clone(), sdk, dry_run)))
        }
        SourceSpec::Consul(c) => Some(Source::Consul(Consul::new(c.clone(), http.clone()))),
    }
}
