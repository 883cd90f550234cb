#!/usr/bin/env bash
# Build the watchdog and run the failover demo on loopback (moto + two HAProxy nodes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-deps.sh
cargo build --bin watchdog --example demo
exec target/debug/examples/demo
