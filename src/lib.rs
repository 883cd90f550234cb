//! haproxy-watchdog: keeps a pair or fleet of HAProxy load balancers on AWS highly available.
//!
//! `cli` parses the command line; `daemon` builds what runs from a configuration and runs it
//! (`run`, `once`); `config` reads and validates; `checks` probe; `engine` decides when a rule flips;
//! `actions` carry out what was decided; `providers::aws` is the only door to AWS; `monit`
//! converts monit rules (`watchdog import-monit`), `keepalived` keepalived.conf
//! (`watchdog import-keepalived`); `preflight` checks online, read-only, what
//! `validate` cannot know (`watchdog preflight`).

pub mod actions;
pub mod checks;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod engine;
pub mod haproxy;
pub mod history;
pub mod keepalived;
pub mod monit;
pub mod pause;
pub mod preflight;
pub mod providers;
pub mod state;
pub mod sync;
pub mod telemetry;
