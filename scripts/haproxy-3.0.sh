#!/usr/bin/env bash
# HAProxy 3.0 LTS (Debian trixie's) for the tests, without touching the host's packages:
#   - a minimal Debian trixie root made with debootstrap, with `haproxy` installed in it, at
#     ${HAPROXY3_ROOT:-/var/cache/haproxy-watchdog-test/trixie} (cached: made once);
#   - a wrapper, ${HAPROXY3_WRAPPER:-<root>/../haproxy-3.0}, that runs the root's haproxy like
#     a host binary: same PID (so tests can signal it), same stdout/stderr, same working
#     directory, same network namespace (`ip netns exec NS wrapper ...` works), and the host's
#     /tmp, /run, /work, the repository and $TMPDIR at the same paths (configs, sockets, pid
#     files). Master-worker reloads (master CLI `reload`, SIGUSR2) re-execute the chroot's
#     /usr/sbin/haproxy.
# Then: WATCHDOG_TEST_HAPROXY=<wrapper> cargo test --test integration
#
# The wrapper's bind mounts live in a private mount namespace of its own (unshare -m), made
# on each call and gone with the process: the host's mount table never changes, so nothing
# stacks, nothing needs re-creating after a reboot, and deleting the root can never reach
# through a bind mount into /tmp or /work.
# Needs root (debootstrap, chroot, mount). Safe to run again: the second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd -P)"

. scripts/lib.sh

if [ "$(id -u)" -ne 0 ]; then
  echo "haproxy-3.0: needs root (debootstrap, chroot, mount namespaces)" >&2
  exit 1
fi
need_commands debootstrap:debootstrap unshare:util-linux flock:util-linux

ROOT="${HAPROXY3_ROOT:-/var/cache/haproxy-watchdog-test/trixie}"
case "$ROOT" in /*) ;; *) ROOT="$(pwd -P)/$ROOT" ;; esac
ROOT="${ROOT%/}"
CACHE="$(dirname "$ROOT")"
WRAPPER="${HAPROXY3_WRAPPER:-$CACHE/haproxy-3.0}"
MIRROR="${HAPROXY3_MIRROR:-http://deb.debian.org/debian}"
MARKER="$ROOT/.haproxy-watchdog-ready"
# Host directories the wrapper shows inside the root at the same paths.
BINDS=(/proc /sys /dev /run /tmp /work)
case "$REPO/" in /tmp/* | /work/* | /run/*) ;; *) BINDS+=("$REPO") ;; esac

mkdir -p "$CACHE"
# One run at a time (a second one waits, then finds the root made).
exec 9>"$CACHE/.haproxy-3.0.lock"
flock 9

# Mounts under the root in *this* mount namespace: none, unless debootstrap was killed while
# it had /proc or /sys mounted there. Deepest first.
unmount_under() {
  local m
  awk -v r="$1" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo |
    sort -r | while read -r m; do umount -l "$m"; done
}

# Run a command inside the root with /proc and /dev, in a mount namespace of its own.
in_root() {
  unshare --mount --propagation private -- /bin/bash -c '
    set -e; r="$1"; shift
    mount -t proc proc "$r/proc"
    mount --rbind /dev "$r/dev"
    if [ -f "$r/etc/resolv.conf" ] && [ ! -L "$r/etc/resolv.conf" ]; then
      mount --bind /etc/resolv.conf "$r/etc/resolv.conf"
    fi
    exec chroot "$r" "$@"' in_root "$ROOT" \
    /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C DEBIAN_FRONTEND=noninteractive "$@"
}

build_root() {
  echo "haproxy-3.0: making a Debian trixie root at $ROOT (debootstrap, a few minutes)"
  unmount_under "$ROOT"
  rm -rf --one-file-system "$ROOT"
  mkdir -p "$ROOT"
  local script=() keyring=()
  # Debian's debootstrap makes trixie with sid's script; older ones lack the trixie link.
  [ -e /usr/share/debootstrap/scripts/trixie ] || script=(/usr/share/debootstrap/scripts/sid)
  [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] &&
    keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
  if ! debootstrap --variant=minbase "${keyring[@]}" trixie "$ROOT" "$MIRROR" "${script[@]}" \
    >"$ROOT.debootstrap.log" 2>&1; then
    tail -n 30 "$ROOT.debootstrap.log" >&2
    echo "haproxy-3.0: debootstrap failed, full log: $ROOT.debootstrap.log" >&2
    unmount_under "$ROOT"
    exit 1
  fi
  unmount_under "$ROOT"
  # Packages must not start services in the root (HAProxy would bind the host's port 80).
  printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
  chmod 755 "$ROOT/usr/sbin/policy-rc.d"
  # minbase has no /etc/hosts (the wrapper binds the host's over it).
  [ -e "$ROOT/etc/hosts" ] || cp /etc/hosts "$ROOT/etc/hosts"
  echo "haproxy-3.0: installing haproxy in the root"
  in_root apt-get update -qq
  in_root apt-get install -y -qq --no-install-recommends haproxy >/dev/null
  in_root apt-get clean
}

write_wrapper() {
  local tmp="$WRAPPER.new.$$"
  {
    echo '#!/bin/bash'
    echo "# HAProxy 3.0 from the Debian trixie root below, run like a host binary. Written by"
    echo "# $REPO/scripts/haproxy-3.0.sh: run that again rather than editing this."
    echo "# Same PID (a chain of execs), stdout/stderr, working directory and network namespace;"
    echo "# the host directories in BINDS, \$TMPDIR and the working directory are bind-mounted"
    echo "# at the same paths, in a private mount namespace that lives as long as the process."
    echo "# Other paths (e.g. /etc/haproxy) are the root's own. Needs root."
    printf 'ROOT=%q\n' "$ROOT"
    printf 'BINDS=(%s)\n' "$(printf '%q ' "${BINDS[@]}")"
    cat <<'EOF'
set -eu
if [ "$EUID" -ne 0 ]; then
  echo "haproxy-3.0: needs root (chroot and bind mounts)" >&2
  exit 126
fi
if [ ! -x "$ROOT/usr/sbin/haproxy" ]; then
  echo "haproxy-3.0: no haproxy in $ROOT: run scripts/haproxy-3.0.sh" >&2
  exit 127
fi
if [ -z "${_HAPROXY3_IN_NS:-}" ]; then
  # unshare without --fork execs in place: this PID becomes HAProxy's.
  export _HAPROXY3_IN_NS=1
  exec unshare --mount --propagation private -- "$BASH" "$0" "$@"
fi
unset _HAPROXY3_IN_NS
cwd="$(pwd -P)"
inside() { # is $1 one of the BINDS or below one?
  local b
  for b in "${BINDS[@]}"; do
    case "$1/" in "$b"/*) return 0 ;; esac
  done
  return 1
}
[ -z "${TMPDIR:-}" ] || [ ! -d "$TMPDIR" ] || inside "$(cd "$TMPDIR" && pwd -P)" ||
  BINDS+=("$(cd "$TMPDIR" && pwd -P)")
[ "$cwd" = / ] || inside "$cwd" || BINDS+=("$cwd")
for d in "${BINDS[@]}"; do
  [ -d "$d" ] || continue
  [ -d "$ROOT$d" ] || mkdir -p "$ROOT$d"
  mount --rbind "$d" "$ROOT$d"
done
# Name resolution as on the host (or as `ip netns exec` set it up in /etc/netns/NS).
# (trixie's minbase root has no /etc/hosts of its own: `localhost` would not resolve.)
for f in /etc/hosts /etc/resolv.conf; do
  if [ -f "$f" ] && [ ! -L "$ROOT$f" ]; then
    [ -e "$ROOT$f" ] || : >"$ROOT$f"
    mount --bind "$f" "$ROOT$f"
  fi
done
exec unshare --root="$ROOT" --wd="$cwd" -- /usr/sbin/haproxy "$@"
EOF
  } >"$tmp"
  chmod 755 "$tmp"
  mv -f "$tmp" "$WRAPPER"
}

# Does the wrapper run HAProxy 3.0, and does `-c` read a file in a host temp dir?
works() {
  local v t rc=0
  # (Not `| head -1`: with pipefail, HAProxy dying of SIGPIPE would fail the check.)
  v="$("$WRAPPER" -v 2>/dev/null)" || return 1
  case "$v" in "HAProxy version 3.0."*) ;; *) return 1 ;; esac
  t="$(mktemp -d)"
  printf 'global\n  stats socket %s/s.sock level admin\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 1s\n  timeout server 1s\nfrontend f\n  bind 127.0.0.1:65000\n' "$t" >"$t/h.cfg"
  (cd "$t" && "$WRAPPER" -c -q -f h.cfg) >/dev/null 2>&1 || rc=1
  rm -rf "$t"
  return $rc
}

write_wrapper
if [ -f "$MARKER" ] && works; then
  echo "haproxy-3.0: reusing $ROOT"
else
  [ ! -e "$ROOT" ] || echo "haproxy-3.0: $ROOT is unfinished or broken: making it again"
  build_root
  for d in "${BINDS[@]}"; do mkdir -p "$ROOT$d"; done
  if ! works; then
    echo "haproxy-3.0: the wrapper $WRAPPER does not run HAProxy 3.0:" >&2
    "$WRAPPER" -v >&2 || true
    exit 1
  fi
  date -u +%FT%TZ >"$MARKER"
fi
v="$("$WRAPPER" -v)"
echo "haproxy-3.0: ${v%%$'\n'*}"
echo "$WRAPPER"
