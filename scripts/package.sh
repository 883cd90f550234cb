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

CARGO_DEB_VERSION="3.6.2"
CARGO_RPM_VERSION="0.20.0"
have_version() { "$1" --version 2>/dev/null | grep -q "$2"; }
have_version cargo-deb "$CARGO_DEB_VERSION" || cargo install --locked --quiet "cargo-deb@$CARGO_DEB_VERSION"
have_version cargo-generate-rpm "$CARGO_RPM_VERSION" || cargo install --locked --quiet "cargo-generate-rpm@$CARGO_RPM_VERSION"

OUT=target/packages
rm -rf "$OUT" && mkdir -p "$OUT"
cargo build --locked --profile "$PROFILE" --bin watchdog
DIR=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
# The package metadata names target/release/watchdog; other profiles are staged there
# under a copy, so both tools see one layout.
if [ "$DIR" != release ]; then
  mkdir -p target/release
  cp "target/$DIR/watchdog" target/release/watchdog
fi
cargo deb --no-build --output "$OUT/" $([ "$PROFILE" = dev ] && echo --fast)
cargo generate-rpm --output "$OUT/"
ls -l "$OUT"
