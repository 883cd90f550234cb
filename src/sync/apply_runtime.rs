//! Runtime mode: the backend's pre-allocated server slots are pointed at the servers the
//! source wants through HAProxy's runtime API (`set server ... addr`, `state ready|drain|maint`),
//! no reload, and the managed block of the configuration file is kept equal to what was set
//! live so a later reload or restart serves the same servers.

use super::*;

impl Syncer {
    /// Runtime mode: slots refused before HAProxy was reloaded (by anyone) are tried again:
    /// the reload read them from the rewritten block, as ordinary free slots.
    pub(super) async fn forget_refusals_after_a_reload(&mut self) {
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

    pub(super) async fn apply_runtime(
        &mut self,
        desired: &BTreeSet<Target>,
        drain: &BTreeSet<Target>,
    ) -> Result<String, SyncError> {
        let spec = self.spec.clone();
        let spec = &spec;
        // Read without the file's lock: only the file's rewrite below takes it, so another
        // rule's rewrite of the same file (its `haproxy -c`) never holds up this rule's live
        // changes.
        let text = configfile::read(&spec.haproxy_config).await?;
        let block = configfile::find_block(&text, &spec.backend)?;
        self.forget_refusals_after_a_reload().await;
        let mut slots = self.slots_in(&text, &block).await?;
        let mut plan = plan::plan_draining(&slots, desired, drain);
        // Runtime mode: the source wins over a maintenance set by hand on a wanted server
        // (reload mode keeps it; docs/backend-sync.md). Say so by name when it happens.
        for c in &plan.commands {
            if let plan::Command::Enable { slot, target } = c {
                if slots
                    .iter()
                    .any(|s| &s.name == slot && s.maint && s.target == Some(*target))
                {
                    tracing::warn!(event = crate::telemetry::events::SERVER_BACK_IN_SERVICE, rule = %self.rule, backend = %spec.backend,
                        slot = %slot, server = %target, "a server the source lists goes back into service in the slot it had; had an operator put it in maintenance, runtime mode undoes that (the source wins): take it out of the source to keep it out");
                }
            }
        }
        if self.dry_run {
            for c in &plan.commands {
                tracing::info!(event = crate::telemetry::events::DRY_RUN, rule = %self.rule, would = %c.lines(&spec.backend).join("; "));
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
                        tracing::warn!(event = crate::telemetry::events::SLOT_UNUSABLE, rule = %self.rule, backend = %spec.backend, slot = %slot, reply = %reply,
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
                return Err(SyncError::NotKept {
                    left: left.commands.len(),
                });
            }
            after
        };
        if plan.unplaced.is_empty() {
            // Most rounds change nothing, and the file already says what HAProxy runs: the
            // file's lock is not taken.
            let in_step = plan.commands.is_empty()
                && configfile::replace_block(&text, &block, &self.server_lines(&after)) == text;
            if !in_step {
                self.write_block().await?;
            }
            return Ok(self.summary(&plan, desired.len(), None));
        }

        // Out of slots: grow the block (half again what is needed, at least `slots`), and
        // reload once to create them.
        let have = after.len();
        let want = ((desired.len() * 3).div_ceil(2))
            .max(spec.slots as usize)
            .max(have + plan.unplaced.len());
        tracing::warn!(event = crate::telemetry::events::SLOTS_EXHAUSTED, rule = %self.rule, backend = %spec.backend, slots = have,
            servers = desired.len(), growing_to = want, "not enough server slots: growing them with one reload");
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
        let lines = self.server_lines(&layout);
        // The file as it is now, under its lock: another rule may have rewritten it since.
        let file = self.file_lock.clone().lock_owned().await;
        let text = configfile::read(&spec.haproxy_config).await?;
        let block = configfile::find_block(&text, &spec.backend)?;
        let new_text = configfile::replace_block(&text, &block, &lines);
        self.install_and_reload(file, &text, &new_text).await?;
        // Counted once HAProxy runs the grown block, never for an attempt it rejected.
        self.metrics.slots_grown(&self.rule);
        // The block wrote every slot afresh: refused ones are ordinary free slots now.
        self.refused_slots.clear();
        self.refused_when = None;
        let prefix = spec.server_prefix.clone();
        self.wait_live(desired, true)
            .await
            .map_err(|e| SyncError::AfterGrowing {
                prefix,
                source: Box::new(e),
            })?;
        Ok(self.summary(
            &plan,
            desired.len(),
            Some(format!("grew slots from {have} to {want} with one reload")),
        ))
    }

    /// The managed block's lines for `slots`, as the file keeps them.
    fn server_lines(&self, slots: &[Slot]) -> Vec<String> {
        let default_port = self.spec.port.unwrap_or(0);
        slots
            .iter()
            .map(|s| configfile::server_line(s, default_port, &self.spec.server_options))
            .collect()
    }

    /// Runtime mode, once HAProxy runs what the round set: the managed block rewritten to
    /// what HAProxy runs now. Under the file's lock, the file is read again (another rule
    /// may have rewritten it) and so are the live slots, so the block written is HAProxy's
    /// state at that moment, not the one the round began with.
    async fn write_block(&self) -> Result<(), SyncError> {
        let spec = &self.spec;
        let mut file = self.file_lock.clone().lock_owned().await;
        let text = configfile::read(&spec.haproxy_config).await?;
        let block = configfile::find_block(&text, &spec.backend)?;
        let live = self.slots_in(&text, &block).await?;
        let new_text = configfile::replace_block(&text, &block, &self.server_lines(&live));
        if new_text == text {
            return Ok(());
        }
        // Only addresses and `disabled` of the block's servers changed, from a text HAProxy
        // accepted: no `haproxy -c` (docs/backend-sync.md, "When haproxy -c runs").
        self.install(
            &mut file,
            configfile::CheckPolicy::UnlessOnlyServersMoved,
            &text,
            &new_text,
        )
        .await
        .map_err(|source| SyncError::BlockNotUpdated {
            path: spec.haproxy_config.clone(),
            source,
        })
    }
}
