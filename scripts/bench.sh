#!/usr/bin/env bash
# The failover benchmark (examples/bench.rs): the watchdog against the seed's monit +
# failtome.sh on the namespace test bed, each failure at a uniformly random point of the
# system's whole check cycle; then the idle cost (a real HAProxy counts the checks performed:
# CPU per check), the watchdog and monit measured in turns. Needs root (network namespaces).
#   scripts/bench.sh [--runs K] [--interval D] [--timeout D] [--fast-interval D] [--skip-monit]
#                    [--skip-watchdog] [--failure stopped|hung] [--monit-hung-runs K]
#                    [--monit-default] [--skip-idle | --idle-only] [--rules N[,N...]]
#                    [--idle-rounds K]
#   K = 20 runs per case; D = 1s interval, 500ms timeout (monit only at whole seconds);
#   idle at 10 and 1000 rules, 2 rounds.
# Set WATCHDOG_BIN to measure another build of the daemon (default: the debug build's
# watchdog, in $CARGO_TARGET_DIR or target/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bench-deps.sh
cargo build --bin watchdog --example bench
exec "${CARGO_TARGET_DIR:-target}/debug/examples/bench" "$@"
