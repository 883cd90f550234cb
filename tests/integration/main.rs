//! Integration tests on real components: `moto_server` for EC2 and SNS (read back through an
//! SQS subscription), Debian's HAProxy, and the `watchdog` binary. See tests/support/.

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod events;
mod failover;
mod field;
mod field_sync;
mod import_monit;
mod opsworks;
mod sync;
mod testbed;
