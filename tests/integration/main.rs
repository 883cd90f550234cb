//! Integration tests on real components: `moto_server` for EC2 and SNS (read back through an
//! SQS subscription), Debian's HAProxy, and the `watchdog` binary. The harness that starts
//! them is the `testkit` crate (testkit/).

mod checks;
mod cli;
mod consul;
mod day2;
mod events;
mod failover;
mod field;
mod field_sync;
mod import_keepalived;
mod import_monit;
mod opsworks;
mod preflight;
mod private;
mod sync;
mod testbed;

/// The harness runs the binary cargo built for these tests (unless `WATCHDOG_BIN` names
/// another): it finds it beside the test executable, where cargo put it.
#[test]
fn the_harness_runs_the_binary_cargo_built() {
    if std::env::var_os("WATCHDOG_BIN").is_none() {
        assert_eq!(
            testkit::watchdog::bin(),
            std::path::PathBuf::from(env!("CARGO_BIN_EXE_watchdog"))
        );
    }
}
