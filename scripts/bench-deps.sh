#!/usr/bin/env bash
# What the failover benchmark needs beyond the tests: the seed's own stack to compare with.
#   - monit and curl from Debian's packages,
#   - the AWS CLI (PyPI awscli) in its own virtualenv, .venv-awscli/ (its botocore pin must
#     not move moto's).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-deps.sh
. scripts/lib.sh
need_commands monit:monit curl:curl
if [ ! -x .venv-awscli/bin/aws ]; then
  echo "bench-deps: installing awscli into .venv-awscli"
  python3 -m venv .venv-awscli
  .venv-awscli/bin/pip install --quiet --disable-pip-version-check awscli
fi
echo "bench-deps: $(monit -V | head -1), $(.venv-awscli/bin/aws --version 2>&1)"
