#!/usr/bin/env bash
# Run the whole test suite: unit tests, the integration tests on real components
# (moto_server, HAProxy, the OpsWorks and Consul stand-ins), the Chef cookbook tests
# (scripts/test-chef.sh: templates rendered with Ruby's ERB, then `watchdog validate`), then
# the package tests (build the .deb and .rpm, install the .deb
# with dpkg, remove and purge it; scripts/test-packages.sh), then the .deb under a real
# systemd in a booted minimal Debian container (scripts/test-systemd.sh). The integration
# tests run twice: against Debian's HAProxy 2.6 on the host, then against HAProxy 3.0 LTS
# (Debian trixie's, from a cached debootstrap root: scripts/haproxy-3.0.sh). Installs what
# they need first. Needs root (network namespaces, dpkg, chroot, systemd-nspawn).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-deps.sh
cargo test --locked "$@"
if [ $# -eq 0 ]; then
  HAPROXY3=$(bash scripts/haproxy-3.0.sh | tail -n 1)
  VERSION=$("$HAPROXY3" -v)
  echo "test: the integration tests again, against ${VERSION%%$'\n'*}"
  WATCHDOG_TEST_HAPROXY="$HAPROXY3" cargo test --locked --test integration
fi
bash scripts/test-chef.sh
bash scripts/test-packages.sh
# The .deb test-packages.sh has just built.
SYSTEMD_TEST_DEB=$(ls target/packages/*.deb) bash scripts/test-systemd.sh
