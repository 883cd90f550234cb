//! The only place that talks to HAProxy: its stats socket and the runtime commands and replies
//! on it, the servers of a backend, the configuration file's managed blocks, the reload-mode
//! template, and hitless reloads.

pub mod configfile;
pub mod reload;
pub mod runtime;
pub mod server;
pub mod socket;
pub mod template;

pub use server::{Command, Slot, Target};

/// What rules managing the same HAProxy share, across configuration reloads: each HAProxy's
/// reload window and each configuration file's write lock.
#[derive(Default)]
pub struct Shared {
    pub reloaders: reload::Reloaders,
    pub files: configfile::FileLocks,
}
