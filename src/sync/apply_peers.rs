//! Peers mode: the `peers` section follows the group, one `peer <instance-id> <ip>:<port>`
//! line per serving instance and always this node's own, installed and reloaded.

use super::*;

impl Syncer {
    /// Peers mode: one `peer <instance-id> <ip>:<port>` line per serving instance in the
    /// `peers` section's managed block, and always this node's own line (`localpeer`, or the
    /// host name as HAProxy defaults to, at this node's private IP): HAProxy drops a peers
    /// section without its local peer, so a change that would leave it out is never
    /// installed. A change is checked, installed and reloaded.
    pub(super) async fn apply_peers(
        &mut self,
        names: &BTreeMap<String, Target>,
    ) -> Result<String, SyncError> {
        let spec = self.spec.clone();
        // Held from reading the file to installing its next text, not over the reload.
        let file = self.file_lock.clone().lock_owned().await;
        let text = configfile::read(&spec.haproxy_config).await?;
        let block = configfile::find_peers_block(&text, &spec.backend)?;
        let local = match configfile::local_peer_name(&text) {
            Some(l) => l,
            None => host_name().map_err(|e| SyncError::NoPeerName {
                source: Box::new(e),
            })?,
        };
        let port = spec.port.ok_or(SyncError::NoPeersPort)?;
        let own = self.own_ip().await.map_err(|e| SyncError::OwnPeerLine {
            local: local.clone(),
            source: Box::new(e),
        })?;
        let own = Target { ip: own, port };
        let lines = configfile::peer_lines(names, &local, own);
        if !lines
            .iter()
            .any(|l| l.starts_with(&format!("peer {local} ")))
        {
            return Err(SyncError::NoLocalPeer { local });
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
            tracing::info!(event = crate::telemetry::events::DRY_RUN, rule = %self.rule, would = %format!("write {} peers into peers {} and reload", lines.len(), spec.backend));
            return Ok(format!(
                "dry run: would write {} peers and reload",
                lines.len()
            ));
        }
        self.install_and_reload(file, &text, &new_text).await?;
        self.metrics.peers_updated(&self.rule);
        tracing::info!(event = crate::telemetry::events::PEERS_APPLIED, rule = %self.rule, peers_section = %spec.backend, peers = lines.len(), localpeer = %local);
        Ok(format!("{} peers (reloaded){outside}", lines.len()))
    }

    /// This node's private IP: `[node] private_ip`, else instance metadata.
    pub(super) async fn own_ip(&self) -> Result<std::net::Ipv4Addr, SyncError> {
        let identity = self.identity.as_ref().ok_or(SyncError::NoIdentity)?;
        Ok(identity.get().await?.private_ip)
    }
}

/// The host name, which HAProxy uses as the local peer's name when `localpeer` is not set.
fn host_name() -> Result<String, SyncError> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_err(SyncError::HostNameUnreadable)?;
    let name = name.trim();
    if name.is_empty() {
        return Err(SyncError::HostNameEmpty);
    }
    Ok(name.to_owned())
}
