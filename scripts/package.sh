#!/usr/bin/env bash
# Build the Debian and RPM packages of haproxy-watchdog into target/packages/:
#   scripts/package.sh                  # release build (what you ship)
#   scripts/package.sh --profile dev    # the test build (what scripts/test-packages.sh checks)
# Installs cargo-deb and cargo-generate-rpm (pinned) with cargo when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=release
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE="$2"; shift 2 ;;
    *) echo "usage: scripts/package.sh [--profile release|dev]" >&2; exit 2 ;;
  esac
done

CARGO_DEB_VERSION="3.8.0"
CARGO_RPM_VERSION="0.21.1"
have_version() { "$1" --version 2>/dev/null | grep -q "$2"; }
have_version cargo-deb "$CARGO_DEB_VERSION" || cargo install --locked --quiet "cargo-deb@$CARGO_DEB_VERSION"
have_version cargo-generate-rpm "$CARGO_RPM_VERSION" || cargo install --locked --quiet "cargo-generate-rpm@$CARGO_RPM_VERSION"

OUT=target/packages
rm -rf "$OUT" && mkdir -p "$OUT"
if [ "$PROFILE" = dev ]; then
  # The test build: the binary `cargo test` made (dev-dependency features included), so the
  # package tests do not rebuild the AWS SDK with another feature set.
  cargo build --locked --profile dev --bins --tests
else
  cargo build --locked --profile "$PROFILE" --bin watchdog
fi
# cargo-deb warns that the dev profile is unsupported; the pinned version builds it fine,
# and the package tests use it to avoid a second full build of every dependency.
cargo deb --no-build --profile "$PROFILE" --output "$OUT/" $([ "$PROFILE" = dev ] && echo --fast)
cargo generate-rpm --profile "$PROFILE" --output "$OUT/"
DIR=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
# The sizes docs/benchmarks.md quotes: the (stripped, for release) binary and both packages.
ls -l "target/$DIR/watchdog" "$OUT"/*
