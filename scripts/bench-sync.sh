#!/usr/bin/env bash
# The backend-sync benchmark (examples/bench_sync.rs): source-to-HAProxy latency for Consul
# blocking queries and Auto Scaling polling, failed requests per 1,000 changes under wrk in
# runtime and reload mode, and the daemon's RSS/CPU with 1,000 servers.
#   scripts/bench-sync.sh [--changes N] [--samples N] [--resources-only]
# (--resources-only: only the CPU and RSS figures, 1,000 servers and Auto Scaling churn)
# Set WATCHDOG_BIN to measure another build of the daemon (default: the debug build's
# watchdog, in $CARGO_TARGET_DIR or target/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-deps.sh
cargo build --bin watchdog --example bench_sync
exec "${CARGO_TARGET_DIR:-target}/debug/examples/bench_sync" "$@"
