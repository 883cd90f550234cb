#!/usr/bin/env bash
# The private-claim failover benchmark (examples/bench_private.rs): claim_route and
# claim_private_ip on the VPC bed, claim_eip on the EIP bed for comparison, at 1 s and 250 ms
# checks (3 failures each): failure to the first mutating AWS call, to the verified claim and
# to the client's first good request. Needs root (network namespaces).
#   scripts/bench-private.sh [--runs K] [--quick]      # K = 20 runs per case; --quick: 3
# Set WATCHDOG_BIN to measure another build of the daemon (default: the debug build's
# watchdog, in $CARGO_TARGET_DIR or target/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-deps.sh
cargo build --bin watchdog --example bench_private
exec "${CARGO_TARGET_DIR:-target}/debug/examples/bench_private" "$@"
