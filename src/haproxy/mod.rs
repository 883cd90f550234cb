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
pub struct Shared {
    pub reloaders: reload::Reloaders,
    pub files: configfile::FileLocks,
    /// The daemon's metrics (reloads, backend-sync changes), for what these rules count.
    pub metrics: std::sync::Arc<crate::telemetry::metrics::Metrics>,
}

impl Shared {
    /// Nothing shared yet; reloads are counted in `metrics`.
    pub fn new(metrics: std::sync::Arc<crate::telemetry::metrics::Metrics>) -> Self {
        Shared {
            reloaders: reload::Reloaders::new(metrics.clone()),
            files: configfile::FileLocks::default(),
            metrics,
        }
    }
}
