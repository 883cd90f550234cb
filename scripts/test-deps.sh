#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine, and nothing else:
#   - HAProxy 2.6, wrk and promtool (package prometheus, for the /metrics lint) from
#     Debian's packages,
#   - moto_server (the AWS API emulator) in a virtualenv at .venv/.
# Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib.sh
need_commands haproxy:haproxy wrk:wrk ip:iproute2 sysctl:procps promtool:prometheus setpriv:util-linux

MOTO_VERSION="5.2.5"
moto_version() { .venv/bin/python -c 'import moto; print(moto.__version__)' 2>/dev/null || true; }
if [ "$(moto_version)" != "$MOTO_VERSION" ] || [ ! -x .venv/bin/moto_server ]; then
  echo "test-deps: installing moto[server]==$MOTO_VERSION into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi
echo "test-deps: haproxy $(haproxy -v 2>/dev/null | head -1 | awk '{print $3}'), moto $(moto_version), wrk: $(command -v wrk)"
