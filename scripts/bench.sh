#!/usr/bin/env bash
# The failover benchmark (examples/bench.rs): the watchdog against the seed's monit +
# failtome.sh on the namespace test bed, then idle RSS/CPU. Needs root (network namespaces).
#   scripts/bench.sh [--runs K] [--monit-default] [--skip-idle]
# Set WATCHDOG_BIN to measure another build of the daemon (default: target/debug/watchdog).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bench-deps.sh
cargo build --bin watchdog --example bench
exec target/debug/examples/bench "$@"
