#!/usr/bin/env bash
# Run the whole test suite: unit tests and the integration tests on real components
# (moto_server, HAProxy). Installs what they need first (scripts/test-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-deps.sh
cargo test --locked "$@"
