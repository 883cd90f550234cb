#!/usr/bin/env bash
# The backend-sync benchmark (examples/bench_sync.rs): source-to-HAProxy latency for Consul
# blocking queries and Auto Scaling polling, failed requests per 1,000 changes under wrk in
# runtime and reload mode, and the daemon's RSS/CPU with 1,000 servers. One part alone:
# `--only latency` (the latency table), `--only many` (100 Consul services, 1,000 servers,
# 10 changes a second; `--many-changes N` recorded, `--many-rate N` a second),
# `--only events` (Auto Scaling events through SQS; `--event-samples N`), or `--only resources`
# (alias `--resources-only`: only the CPU and RSS figures, 1,000 servers and Auto Scaling churn).
#   scripts/bench-sync.sh [--changes N] [--samples N] [--only latency|many|events|resources]
#                         [--many-changes N] [--many-rate N] [--many-without-port] [--event-samples N]
# Set WATCHDOG_BIN to measure another build of the daemon (default: the debug build's
# watchdog, in $CARGO_TARGET_DIR or target/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-deps.sh
cargo build --bin watchdog --example bench_sync
exec "${CARGO_TARGET_DIR:-target}/debug/examples/bench_sync" "$@"
