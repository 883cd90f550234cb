//! HAProxy's view of a backend's servers: the pre-allocated server slots `show servers state`
//! reports, the address a server points at, and the runtime commands that change a slot
//! (HAProxy management guide, "9.3. Unix Socket commands": `set server`).

use std::fmt;
use std::net::Ipv4Addr;

/// One server the source wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    pub ip: Ipv4Addr,
    pub port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ip, self.port)
    }
}

/// One pre-allocated server slot as HAProxy reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub name: String,
    /// None when the slot has no usable address (`0.0.0.0`, a name, or port 0).
    pub target: Option<Target>,
    /// HAProxy can point it at a new address at runtime (`set server addr`): it has an IP
    /// address. A slot whose address is `-` (a name with `init-addr none`, a unix socket) has
    /// no address family, and HAProxy refuses ("Update for the current server address family
    /// is only supported through configuration file"); the caller also clears this for a slot
    /// whose address change HAProxy refused. Such a slot is never a free slot.
    pub addressable: bool,
    /// In maintenance (forced, inherited or by DNS resolution). A slot that only carries the
    /// "disabled in the configuration" bit is *not* in maintenance once set ready.
    pub maint: bool,
    pub draining: bool,
}

impl Slot {
    pub fn serving(&self) -> bool {
        !self.maint && self.target.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Point the slot at the target and put it in service.
    Enable { slot: String, target: Target },
    /// Put a serving slot (which already points at the target) back to ready from drain.
    Undrain { slot: String },
    /// Let the slot finish its sessions and take no new ones (a terminating instance).
    Drain { slot: String },
    /// Take the slot out of service.
    Disable { slot: String },
}

impl Command {
    /// The stats socket command lines that carry this out in `backend`.
    pub fn lines(&self, backend: &str) -> Vec<String> {
        match self {
            Command::Enable { slot, target } => vec![
                format!(
                    "set server {backend}/{slot} addr {} port {}",
                    target.ip, target.port
                ),
                format!("set server {backend}/{slot} state ready"),
            ],
            Command::Undrain { slot } => vec![format!("set server {backend}/{slot} state ready")],
            Command::Drain { slot } => vec![format!("set server {backend}/{slot} state drain")],
            Command::Disable { slot } => vec![format!("set server {backend}/{slot} state maint")],
        }
    }
}
