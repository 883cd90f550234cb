//! Backend sync: keep a HAProxy backend's servers equal to what a discovery source lists.
//!
//! A [`Syncer`] runs one `backend_sync` rule. Each round waits for its next poll (Auto Scaling)
//! or for Consul to report a change, asks the source, refuses answers that would empty or
//! gut the backend, lets [`plan`] decide the commands, and applies them: live through the
//! stats socket with the config file's managed block rewritten to match (`runtime`), or by
//! rendering the template and reloading (`reload`). A round's [`Outcome`] feeds the rule's
//! threshold like any check, so a sync that keeps failing raises the rule's `on_fail` alert.

pub mod configfile;
pub mod plan;
pub mod reload;
pub mod runtime;
pub mod template;

use crate::checks::Outcome;
use crate::config::{ApplyMode, BackendSyncSpec, SourceSpec};
use crate::providers::aws::autoscaling::AutoScaling;
use crate::providers::aws::ec2::Ec2;
use crate::providers::consul::{self, Consul};
use crate::telemetry;
use plan::{Slot, Target};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Where a rule's servers come from, with the clients it needs.
pub enum Source {
    Asg {
        group: String,
        asg: AutoScaling,
        ec2: Ec2,
    },
    Consul(Consul),
}

/// What a source listed, and what it had to leave out.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub targets: BTreeSet<Target>,
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
    next_poll: Instant,
    /// Set after a failed round: wait this long, then try again.
    backoff: Option<Duration>,
    /// The failed round got a good answer and failed applying it.
    apply_failed: bool,
    /// The last good answer and when it came, reused when only the apply has to be retried.
    last_answer: Option<(Instant, BTreeSet<Target>)>,
}

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
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
            next_poll: Instant::now(),
            backoff: None,
            apply_failed: false,
            last_answer: None,
        }
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
        } else if !first && matches!(self.source, Source::Asg { .. }) {
            if !self.sleep_until(self.next_poll).await {
                return Outcome::ok("stopping");
            }
        }

        // After a failed apply, a recent answer is reused rather than asked for again: a
        // HAProxy that is down must not turn into extra AWS calls.
        let cached = self
            .last_answer
            .as_ref()
            .filter(|(at, _)| retrying && self.apply_failed && at.elapsed() < self.interval)
            .map(|(_, t)| Discovered {
                targets: t.clone(),
                note: "the last answer, reused".into(),
            });
        let discovered = match cached {
            Some(d) => Ok(d),
            None => {
                let block = !first && !retrying;
                let mut stop = self.stopping.clone();
                tokio::select! {
                    d = self.discover(block) => d,
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
                    let applied = self.apply(&d.targets).await;
                    self.apply_failed = applied.is_err();
                    applied
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
                    .min(self.interval);
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

    async fn discover(&mut self, block: bool) -> Result<Discovered, String> {
        let port = self.spec.port;
        match &mut self.source {
            Source::Asg { group, asg, ec2 } => {
                self.next_poll = Instant::now() + self.interval;
                let members = asg.members(group).await.map_err(|e| e.to_string())?;
                let ips = if members.serving.is_empty() {
                    Vec::new()
                } else {
                    ec2.private_ips(&members.serving)
                        .await
                        .map_err(|e| e.to_string())?
                };
                // Config validation makes `port` required for an Auto Scaling source.
                let port = port.ok_or("no port for the Auto Scaling group's servers")?;
                let mut left_out = members.others.clone();
                for id in &members.serving {
                    if !ips.iter().any(|(i, _)| i == id) {
                        left_out.push(format!("{id} (not running or no private IP)"));
                    }
                }
                let targets: BTreeSet<Target> =
                    ips.iter().map(|(_, ip)| Target { ip: *ip, port }).collect();
                Ok(Discovered {
                    note: note(targets.len(), "InService and Healthy", &left_out),
                    targets,
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

    async fn apply(&mut self, desired: &BTreeSet<Target>) -> Result<String, String> {
        match self.spec.apply.clone() {
            ApplyMode::Runtime => self.apply_runtime(desired).await,
            ApplyMode::Reload { template } => self.apply_reload(desired, &template).await,
        }
    }

    /// The backend's slots: its servers named `<prefix><number>`, in order.
    async fn slots(&self) -> Result<Vec<Slot>, String> {
        let all =
            runtime::servers(&self.spec.stats_socket, &self.spec.backend, self.timeout).await?;
        let prefix = &self.spec.server_prefix;
        let mut slots: Vec<Slot> = all
            .into_iter()
            .filter(|s| {
                s.name
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
            })
            .collect();
        plan::sort_slots(&mut slots);
        Ok(slots)
    }

    async fn apply_runtime(&mut self, desired: &BTreeSet<Target>) -> Result<String, String> {
        let spec = &self.spec;
        let lock = configfile::lock_for(&spec.haproxy_config);
        let _file = lock.lock().await;
        let text = configfile::read(&spec.haproxy_config).await?;
        let block = configfile::find_block(&text, &spec.backend)?;
        let slots = self.slots().await?;
        let plan = plan::plan(&slots, desired);
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
            runtime::execute(
                &spec.stats_socket,
                &spec.backend,
                &plan.commands,
                self.timeout,
            )
            .await?;
            self.count(&plan);
            let after = self.slots().await?;
            let left = plan::plan(&after, desired);
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
        let mut next_n = after
            .iter()
            .filter_map(|s| s.name[spec.server_prefix.len()..].parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let mut unplaced = plan.unplaced.iter();
        while layout.len() < want {
            let target = unplaced.next().copied();
            layout.push(Slot {
                name: format!("{}{next_n}", spec.server_prefix),
                target,
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
        configfile::install(
            &spec.haproxy_config,
            &new_text,
            &spec.haproxy_bin,
            spec.reload.timeout,
        )
        .await?;
        self.coalesced_reload().await?;
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
        if text == current && live.as_ref() == Some(desired) {
            return Ok(format!("in step: {} servers", desired.len()));
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
        }
        self.coalesced_reload().await?;
        self.wait_live(desired, false).await?;
        let before = live.unwrap_or_default();
        let added = desired.difference(&before).count();
        let removed = before.difference(desired).count();
        self.count_changes(added, removed);
        tracing::info!(event = "backend_sync_applied", rule = %self.rule, backend = %spec.backend, mode = "reload",
            added, removed, servers = desired.len());
        Ok(format!(
            "{} servers: +{added} -{removed} (reloaded)",
            desired.len()
        ))
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
        self.reloader.reload(&self.spec.reload).await
    }

    /// The targets the backend serves right now (reload mode: every server in it).
    async fn live_targets(&self) -> Result<BTreeSet<Target>, String> {
        let all =
            runtime::servers(&self.spec.stats_socket, &self.spec.backend, self.timeout).await?;
        Ok(all
            .iter()
            .filter(|s| s.serving())
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
                    last = format!(
                        "HAProxy serves {} of the {} servers wanted, and {} others",
                        t.intersection(desired).count(),
                        desired.len(),
                        t.difference(desired).count()
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

/// Build the source a rule names (`asg` needs the AWS clients).
pub fn source(
    spec: &BackendSyncSpec,
    http: &reqwest::Client,
    aws: Option<(&AutoScaling, &Ec2)>,
) -> Option<Source> {
    match &spec.source {
        SourceSpec::Asg { group } => aws.map(|(asg, ec2)| Source::Asg {
            group: group.clone(),
            asg: asg.clone(),
            ec2: ec2.clone(),
        }),
        SourceSpec::Consul(c) => Some(Source::Consul(Consul::new(c.clone(), http.clone()))),
    }
}
