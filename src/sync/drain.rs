//! Graceful scale-in (Auto Scaling only): servers of terminating instances are drained
//! (`Terminating:Wait`), taken out at zero sessions or at the drain timeout, and only then is
//! the lifecycle action completed; heartbeats keep it alive meanwhile.

use super::*;

impl Syncer {
    /// Auto Scaling only: follow the drains (finish those whose sessions reached zero or
    /// that timed out, and apply again to take them out), keep their lifecycle actions
    /// alive, and complete the actions of servers HAProxy no longer has.
    pub(super) async fn after_apply(
        &mut self,
        applied: Result<String, SyncError>,
    ) -> Result<String, SyncError> {
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
                    tracing::info!(event = crate::telemetry::events::DRAIN_FINISHED, rule = %self.rule, instance = %id, server = %target, waited = %waited);
                } else {
                    tracing::warn!(event = crate::telemetry::events::DRAIN_TIMED_OUT, rule = %self.rule, instance = %id, server = %target, waited = %waited, sessions = left,
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
                gate(&self.spec, &d)?;
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
            return Err(e.into());
        }
        let draining = a.membership.drains().count();
        if draining > 0 {
            detail.push_str(&format!(", {draining} draining"));
        }
        Ok(detail)
    }
}
