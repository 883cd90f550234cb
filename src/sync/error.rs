//! Why a backend-sync round failed, one variant per cause; the text is the round's failed
//! outcome and its log line.

use super::*;

/// Why a backend sync round failed: the source's answer was not had or not safe to apply, or
/// applying it to HAProxy failed. The text is the round's failed outcome and its log line.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The stats socket, or reading its reply (`show servers state`, `show stat`).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Runtime commands HAProxy refused or did not answer.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// Reading, editing or installing the HAProxy configuration file.
    #[error(transparent)]
    ConfigFile(#[from] ConfigFileError),
    /// Rendering the reload-mode template.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// Reloading HAProxy.
    #[error(transparent)]
    Reload(#[from] ReloadError),
    /// The Auto Scaling source (its AWS calls, lifecycle actions, events queue).
    #[error(transparent)]
    Asg(#[from] asg::AsgError),
    /// The Consul source.
    #[error(transparent)]
    Consul(#[from] ConsulError),
    /// This node's identity (peers mode writes its own line).
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The source could not be asked; nothing was applied.
    #[error("discovery failed: {source}; HAProxy keeps the servers it has")]
    Discovery { source: Box<SyncError> },
    /// The source lists no servers and `allow_empty` is off; `note` says what it listed.
    #[error("the source lists no servers ({note}); HAProxy keeps the servers it has (set allow_empty = true to let an empty answer empty the backend)")]
    Empty { note: String },
    /// The source lists fewer than `min_servers`.
    #[error("the source lists {n} servers, fewer than min_servers = {min} ({note}); HAProxy keeps the servers it has")]
    TooFew { n: usize, min: usize, note: String },
    /// An Auto Scaling source without `port` (configuration validation prevents it).
    #[error("no port for the Auto Scaling group's servers")]
    NoAsgPort,
    /// Shutdown came while waiting out the reload window.
    #[error("stopping before the reload")]
    StoppingBeforeReload,
    /// After a reload (or a slot growth), HAProxy did not come to serve the wanted servers
    /// by `reload.timeout`. `last` is a composed explanation of the last look: which
    /// servers are missing and which others serve, or why the look failed.
    #[error("after the reload, backend {backend} does not match: {last}")]
    NotMatching { backend: String, last: String },
    /// Reload mode: the template file could not be read.
    #[error("template {}: {source}", path.display())]
    TemplateRead {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Reload mode: this rendering was reloaded [`reload::MAX_ATTEMPTS`] times or more
    /// without bringing the wanted servers, and waits `next_in` (whole seconds) before the
    /// next attempt; `last` is the last attempt's error.
    #[error("{attempts} reloads of this configuration did not bring HAProxy to the wanted servers (last: {last}); next attempt in {}", humantime::format_duration(*next_in))]
    HeldBack {
        attempts: u32,
        last: String,
        next_in: Duration,
    },
    /// Runtime mode: after the commands, a new plan still has commands.
    #[error("HAProxy did not keep the changes: {left} command(s) still needed after applying")]
    NotKept { left: usize },
    /// Runtime mode: HAProxy took the changes live but the file's block could not follow.
    #[error("HAProxy runs the new servers, but {} was not updated: {source}", path.display())]
    BlockNotUpdated {
        path: PathBuf,
        source: ConfigFileError,
    },
    /// Runtime mode: after the block grew and HAProxy reloaded, it did not serve the wanted
    /// servers.
    #[error("after growing the slots of {prefix}: {source}")]
    AfterGrowing {
        prefix: String,
        source: Box<SyncError>,
    },
    /// Peers mode: no `localpeer` and no host name to stand for it.
    #[error(
        "the peers section needs this node's peer name: no `localpeer` in global, and {source}"
    )]
    NoPeerName { source: Box<SyncError> },
    /// `/proc/sys/kernel/hostname` could not be read.
    #[error("the host name cannot be read: {0}")]
    HostNameUnreadable(std::io::Error),
    /// `/proc/sys/kernel/hostname` is empty.
    #[error("the host name is empty")]
    HostNameEmpty,
    /// Peers mode without `port`.
    #[error("no port for the peers section's lines (set `port`)")]
    NoPeersPort,
    /// Peers mode: this node's private IP is not known, so its own line cannot be written.
    #[error("cannot write this node's own peer line ({local}): {source}; the peers section is left as it is")]
    OwnPeerLine {
        local: String,
        source: Box<SyncError>,
    },
    /// Peers mode: the rule was built without this node's identity.
    #[error("this node's identity is not known here")]
    NoIdentity,
    /// Peers mode: the lines would leave out this node's own (HAProxy drops such a section).
    #[error("refusing to write a peers section without its local peer {local}")]
    NoLocalPeer { local: String },
}

impl SyncError {
    /// The round stopped because the daemon is stopping or reloading, not because anything
    /// failed: the engine counts it neither way ([`Outcome::cancelled()`]).
    pub fn stopped_short(&self) -> bool {
        match self {
            SyncError::StoppingBeforeReload => true,
            SyncError::AfterGrowing { source, .. } | SyncError::Discovery { source } => {
                source.stopped_short()
            }
            _ => false,
        }
    }
}
