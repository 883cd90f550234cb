//! Reload mode: the whole HAProxy configuration is rendered from the rule's template, checked
//! with `haproxy -c`, installed and reloaded hitlessly (at most once per reload window); the
//! servers of terminating instances are then put back in drain through the stats socket.

use super::*;

impl Syncer {
    /// Reload mode: the servers of `drain` are put in drain through the stats socket.
    pub(super) async fn hold_drains(&self, drain: &BTreeSet<Target>) -> Result<(), SyncError> {
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
        .map_err(SyncError::from)
    }

    pub(super) async fn apply_reload(
        &mut self,
        desired: &BTreeSet<Target>,
        template: &std::path::Path,
    ) -> Result<String, SyncError> {
        let spec = self.spec.clone();
        let source = tokio::fs::read_to_string(template)
            .await
            .map_err(|source| SyncError::TemplateRead {
                path: template.to_owned(),
                source,
            })?;
        let targets: Vec<Target> = desired.iter().copied().collect();
        let text = template::render(
            &source,
            &spec.backend,
            &spec.server_prefix,
            &spec.server_options,
            &targets,
        )?;
        let current = read_or_empty(&spec.haproxy_config).await?;
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
            return Err(SyncError::HeldBack {
                attempts: n,
                last: last.to_owned(),
                next_in: Duration::from_secs(left.as_secs().max(1)),
            });
        }
        if self.dry_run {
            tracing::info!(event = crate::telemetry::events::DRY_RUN, rule = %self.rule, would = "install the rendered configuration and reload");
            return Ok(format!(
                "dry run: would render {} servers and reload",
                desired.len()
            ));
        }
        if text != current {
            // Under the file's lock, as every rule that writes it: read again, then installed.
            let mut file = self.file_lock.clone().lock_owned().await;
            let now = read_or_empty(&spec.haproxy_config).await?;
            if text != now {
                self.install(&mut file, configfile::CheckPolicy::Always, &now, &text)
                    .await?;
                self.reload_owed.store(true, Ordering::Relaxed);
            }
        }
        self.coalesced_reload().await?;
        if let Err(e) = self.wait_live(desired, false).await {
            if let Some(hold) = self.attempts.failed(key, Instant::now(), &e.to_string()) {
                tracing::warn!(event = crate::telemetry::events::RELOAD_HELD_BACK, rule = %self.rule, backend = %spec.backend,
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
        tracing::info!(event = crate::telemetry::events::BACKEND_SYNC_APPLIED, rule = %self.rule, backend = %spec.backend, mode = "reload",
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
    pub(super) async fn owed_since_before_start(&self) {
        let (Ok(meta), Ok(up)) = (
            tokio::fs::metadata(&self.spec.haproxy_config).await,
            runtime::uptime(&self.spec.stats_socket, self.timeout).await,
        ) else {
            return;
        };
        let Ok(mtime) = meta.modified() else { return };
        if runtime::written_after_start(mtime, std::time::SystemTime::now(), up) {
            tracing::warn!(event = crate::telemetry::events::CONFIG_NOT_LOADED, rule = %self.rule, file = %self.spec.haproxy_config.display(),
                "the file was written after the running HAProxy started: reloading it");
            self.reload_owed.store(true, Ordering::Relaxed);
        }
    }

    /// Reload mode: the wanted servers HAProxy holds in maintenance (an operator's `set
    /// server ... state maint`, which a server-state file carries across reloads). They
    /// count as present (no reload brings them back) and are left as they are: the
    /// operator's maintenance wins. Logged when the set changes.
    pub(super) async fn note_maintenance(&mut self, desired: &BTreeSet<Target>) {
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
                tracing::warn!(event = crate::telemetry::events::SERVERS_IN_MAINTENANCE, rule = %self.rule, backend = %self.spec.backend,
                    servers = %list(&maint), "kept in maintenance: an operator's maintenance wins over the source");
            }
            self.seen_maint = maint;
        }
    }
}

/// The configuration file's text; empty when there is none yet (reload mode writes it whole).
async fn read_or_empty(path: &std::path::Path) -> Result<String, SyncError> {
    match tokio::fs::read_to_string(path).await {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(ConfigFileError::Read {
            path: path.to_owned(),
            source,
        }
        .into()),
    }
}
