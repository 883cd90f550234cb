#!/usr/bin/env bash
# systemd tests: the .deb installed with apt into a minimal Debian bookworm (debootstrap
# --variant=minbase plus systemd and dbus; no ca-certificates, no haproxy), booted with
# systemd-nspawn, and the unit driven with systemctl as an operator would: start, status,
# reload (valid and invalid), kill -9, ten restarts in a row, a crash loop, the watchdog
# restarting a wedged daemon, an invalid config and one that cannot run, HAProxy installed
# after us, reinstall, remove and purge.
# Needs root. Ends with a line "systemd: N passed, M failed". Measured here (2 cores): about
# 1m40s with the cached root (plus the package build), 3m20s when it builds the root first;
# the watchdog checks add about 20 s.
#
#   SYSTEMD_TEST_ROOT  the cached bookworm root (default /var/cache/haproxy-watchdog-test/bookworm;
#                      built once with debootstrap, about a minute; each run works on a copy)
#   SYSTEMD_TEST_DEB   test this .deb instead of building one with scripts/package.sh --profile dev
#   DEBIAN_MIRROR      default http://deb.debian.org/debian
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_commands debootstrap:debootstrap systemd-nspawn:systemd-container nsenter:util-linux dpkg-deb:dpkg

CACHE=${SYSTEMD_TEST_ROOT:-/var/cache/haproxy-watchdog-test/bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
READY_MARK=.haproxy-watchdog-test-root-complete   # written last: a root without it is rebuilt
UNIT=haproxy-watchdog.service
CONFD=/etc/haproxy-watchdog/conf.d

if [ -n "${SYSTEMD_TEST_DEB:-}" ]; then
  DEB=$SYSTEMD_TEST_DEB
else
  bash scripts/package.sh --profile dev >/dev/null
  DEB=$(ls target/packages/*.deb)
fi

PASS=0
FAIL=0
check() { # check DESCRIPTION COMMAND...
  local what="$1" out; shift
  if out=$("$@" 2>&1); then PASS=$((PASS + 1)); echo "ok   $what"
  else FAIL=$((FAIL + 1)); echo "FAIL $what"; [ -z "$out" ] || sed 's/^/     | /' <<<"$out" | tail -n 15; fi
}

# --- the cached root: minbase bookworm with what booting needs, nothing the package should pull
if [ ! -e "$CACHE/$READY_MARK" ]; then
  echo "building $CACHE with debootstrap (once; later runs copy it)"
  rm -rf "$CACHE"
  mkdir -p "$CACHE"
  if ! debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm "$CACHE" "$MIRROR" \
       >"$CACHE.debootstrap.log" 2>&1; then
    tail -n 20 "$CACHE.debootstrap.log"; exit 1
  fi
  rm -f "$CACHE.debootstrap.log"
  # Fetched, not installed: the tests install them with apt, from this cache when still current.
  if ! systemd-nspawn -q --register=no --keep-unit --as-pid2 -D "$CACHE" </dev/null >"$CACHE.prepare.log" 2>&1 \
       sh -c 'apt-get clean && apt-get update -qq && apt-get install -qq --download-only -y ca-certificates haproxy'; then
    tail -n 20 "$CACHE.prepare.log"; exit 1
  fi
  rm -f "$CACHE.prepare.log"
  touch "$CACHE/$READY_MARK"
fi
for p in ca-certificates haproxy; do
  if chroot "$CACHE" dpkg -s "$p" >/dev/null 2>&1; then
    echo "$CACHE has $p installed: it must not (delete it to rebuild)" >&2; exit 1
  fi
done

# --- a copy of it for this run, removed at exit with the container powered off
RUN=$(mktemp -d /var/tmp/haproxy-watchdog-systemd.XXXXXX)
ROOT=$RUN/root
NSPAWN=""
INIT=""
poweroff() {
  [ -n "$NSPAWN" ] || return 0
  kill -TERM "$NSPAWN" 2>/dev/null || true # systemd-nspawn asks the container to power off
  local i
  for i in $(seq 300); do kill -0 "$NSPAWN" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$NSPAWN" 2>/dev/null; then
    echo "the container did not power off in 30 s: killing it" >&2
    [ -z "$INIT" ] || kill -KILL "$INIT" 2>/dev/null || true
    sleep 1
    kill -KILL "$NSPAWN" 2>/dev/null || true
  fi
  wait "$NSPAWN" 2>/dev/null || true
  NSPAWN=""
  INIT=""
}
cleanup() {
  poweroff
  # Never delete through a mount (systemd-nspawn unmounts its own when it exits).
  if grep -qF " $RUN/" /proc/self/mountinfo; then
    echo "left $RUN in place: something is still mounted under it" >&2
  else
    rm -rf "$RUN"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

T0=$(date +%s)
cp -a "$CACHE" "$ROOT"
# No service starts while packages are installed outside the booted container.
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
cp "$DEB" "$ROOT/root/haproxy-watchdog.deb"

# Runs a command in the root before it is booted, with the host's network (for apt).
in_root() {
  systemd-nspawn -q --register=no --keep-unit --as-pid2 -D "$ROOT" \
    --setenv=DEBIAN_FRONTEND=noninteractive "$@" </dev/null
}
# Runs a command in the booted container.
ct() { nsenter -t "$INIT" -a -- /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
boot() {
  systemd-nspawn -q -b --private-network --register=no --keep-unit -D "$ROOT" --console=read-only \
    </dev/null >>"$RUN/console.log" 2>&1 &
  NSPAWN=$!
  local i
  for i in $(seq 200); do
    INIT=$(pgrep -P "$NSPAWN" -x systemd || true)
    [ -z "$INIT" ] || break
    sleep 0.1
  done
  [ -n "$INIT" ] || { echo "the container's systemd did not start" >&2; tail -n 30 "$RUN/console.log" >&2; exit 1; }
  # systemctl fails ("Failed to connect to bus") until the manager listens; then wait for the boot.
  wait_until 60 manager_answers || true
  local state
  state=$(timeout 120 nsenter -t "$INIT" -a -- systemctl is-system-running --wait 2>/dev/null || true)
  case "$state" in
    running) ;;
    *) echo "the container booted $state:" >&2; ct systemctl --failed --no-pager >&2 || true ;;
  esac
}
wait_until() { # wait_until SECONDS COMMAND...: true once COMMAND succeeds
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.2
  done
}
not() { ! "$@"; }
manager_answers() { [ -n "$(ct systemctl is-system-running 2>/dev/null)" ]; }
prop() { ct systemctl show -P "$1" "$UNIT"; }
prop_is() { [ "$(prop "$1")" = "$2" ]; }
main_pid() { prop MainPID; }
# The daemon's log since a time (from `now`), as the journal has it.
now() { ct date +%s; }
log_has() { ct journalctl -u "$UNIT" --since "@$1" --no-pager -o cat | grep -qF -- "$2"; }
# The rule's last check in `haproxy-watchdog status --json` (the config below has one rule).
rule_ok() { ct haproxy-watchdog status --json | grep -q '"ok": true'; }
in_haproxy_group() { ct id -Gn haproxy-watchdog | tr ' ' '\n' | grep -qx haproxy; }
# kill -9 of the main process, then wait for the outcome: prints "restarted" or the state.
crash() {
  local old state pid end=$((SECONDS + 20))
  old=$(main_pid)
  ct systemctl kill --kill-who=main --signal=KILL "$UNIT"
  while [ "$SECONDS" -lt "$end" ]; do
    state=$(prop ActiveState); pid=$(main_pid)
    if [ "$state" = active ] && [ "$pid" != 0 ] && [ "$pid" != "$old" ]; then echo restarted; return; fi
    if [ "$state" = failed ]; then echo failed; return; fi
    sleep 0.2
  done
  prop ActiveState
}
restarts_in_a_row() { # restarts_in_a_row N: every `systemctl restart` succeeds, active after each
  local i
  for i in $(seq "$1"); do
    ct systemctl restart "$UNIT" || { echo "restart $i failed"; return 1; }
    prop_is ActiveState active || { echo "not active after restart $i"; return 1; }
  done
}
# dpkg/apt output without adduser's chatter ("already exists", "already a member", warnings).
quiet() { if grep -iE 'adduser|already|warning' "$1"; then return 1; fi; }
logged() { # logged FILE COMMAND...: run it, its output in FILE
  local f=$1; shift
  "$@" >"$f" 2>&1 || { cat "$f"; return 1; }
}
write_conf() { # write_conf NAME CONTENT: a file in conf.d, root:haproxy-watchdog 640
  printf '%s\n' "$2" >"$ROOT$CONFD/$1"
  chroot "$ROOT" chown root:haproxy-watchdog "$CONFD/$1"
  chmod 640 "$ROOT$CONFD/$1"
}
installed() { chroot "$ROOT" dpkg -s "$1" >/dev/null 2>&1; }
no_unit_left() {
  ct systemctl daemon-reload
  not grep -q haproxy-watchdog < <(ct systemctl list-units --all --no-legend)
}
no_process_of_user() { [ -z "$(ct find /proc -maxdepth 1 -regex '/proc/[0-9]+' -user haproxy-watchdog)" ]; }
verify_clean() { local out; out=$(ct systemd-analyze verify "$1" 2>&1); echo "$out"; [ -z "$out" ]; }
has_group() { ct grep '^Groups:' "/proc/$1/status" | grep -qw "$2"; }

# One rule on the local HAProxy's stats socket and no action: nothing calls AWS, so the daemon
# runs without a network. It fails until HAProxy is installed (no socket, then no permission).
RULE='# scripts/test-systemd.sh: the local HAProxy, nothing that calls AWS.
[rules.local-haproxy]
check = { type = "haproxy", stats_socket = "/run/haproxy/admin.sock" }
interval = "1s"
timeout = "500ms"
fail_after = 1
recover_after = 1'
INVALID='[rules.broken]
intervall = "1s"'
INVALID_SAYS='unknown field `intervall`'
# Valid for `validate` (which makes no network call), but `run` needs an AWS region for the
# SNS action and finds none: no [aws] region, no instance metadata in the container.
NEEDS_AWS='[rules.page-on-fail]
check = { type = "http", url = "http://127.0.0.1:9/" }
on_fail = ["page"]
[actions.page]
type = "sns"
topic_arn = "arn:aws:sns:us-east-1:123456789012:haproxy-failover"'

# --- install with apt, as on a minimal system
check "the root has no ca-certificates before the install" not installed ca-certificates
in_root apt-get update -qq >"$RUN/apt-update.log" 2>&1 || { cat "$RUN/apt-update.log"; exit 1; }
check "apt installs the .deb into a minbase bookworm" \
  logged "$RUN/install.log" in_root apt-get install -y --no-install-recommends /root/haproxy-watchdog.deb
check "the install printed no adduser warning" quiet "$RUN/install.log"
check "Depends pulled in ca-certificates" installed ca-certificates
check "haproxy is not installed yet (Recommends only)" not installed haproxy
# Fetched now, installed later in the booted container (which has no network).
in_root apt-get install -y --download-only haproxy >/dev/null 2>&1 || true
rm -f "$ROOT$CONFD"/*.toml # the shipped examples need AWS; the tests write their own
write_conf 50-test.toml "$RULE"
rm -f "$ROOT/usr/sbin/policy-rc.d"

boot
echo "container booted ($(($(date +%s) - T0)) s after the copy began)"
check "systemd-analyze verify of the unit in the container is clean" verify_clean "$(prop FragmentPath)"
check "installed but not enabled" prop_is UnitFileState disabled
check "installed but not started" prop_is ActiveState inactive

# --- start, status
check "systemctl start succeeds" ct systemctl start "$UNIT"
check "the unit is active (Type=notify: ready after start-up)" prop_is ActiveState active
check "it runs as haproxy-watchdog" test "$(ct stat -c %U "/proc/$(main_pid)")" = haproxy-watchdog
check "systemctl status says active (running)" grep -q 'Active: active (running)' < <(ct systemctl status "$UNIT" --no-pager)
check "haproxy-watchdog status answers on the control socket" wait_until 10 ct haproxy-watchdog status
check "the haproxy check fails without HAProxy (no socket)" not rule_ok

# --- reload
PID=$(main_pid); T=$(now)
write_conf 50-test.toml "${RULE/interval = \"1s\"/interval = \"2s\"}"
check "systemctl reload with a valid changed config succeeds" ct systemctl reload "$UNIT"
check "the daemon logs the reload (config_reloaded)" wait_until 10 log_has "$T" config_reloaded
check "the reload keeps the process" prop_is MainPID "$PID"
write_conf 60-bad.toml "$INVALID"
T=$(now)
check "systemctl reload with an invalid config fails" not ct systemctl reload "$UNIT"
check "the failed reload says why in the journal" wait_until 5 log_has "$T" "$INVALID_SAYS"
check "the daemon keeps running after the failed reload" prop_is ActiveState active
check "... the same process" prop_is MainPID "$PID"
rm -f "$ROOT$CONFD/60-bad.toml"

# --- crashes and restarts
check "kill -9 of the main process: systemd restarts it" test "$(crash)" = restarted
check "10 manual restarts in a row all succeed" restarts_in_a_row 10
ct systemctl restart "$UNIT"
OUTCOMES=$(for i in 1 2 3 4 5; do crash; done | xargs)
check "5 crashes in a row are restarted ($OUTCOMES)" test "$OUTCOMES" = "restarted restarted restarted restarted restarted"
check "a manual restart right after 5 automatic ones succeeds" restarts_in_a_row 1
T=$(now)
OUTCOMES=$(for i in 1 2 3 4 5 6; do crash; done | xargs)
check "a crash loop is capped: 5 restarts, then failed ($OUTCOMES)" \
  test "$OUTCOMES" = "restarted restarted restarted restarted restarted failed"
check "the cap is systemd's start limit" log_has "$T" "Start request repeated too quickly"
sleep 6
check "and it stays down (no restart after RestartSec)" prop_is ActiveState failed
check "systemctl reset-failed, then start, brings it back" \
  ct sh -c "systemctl reset-failed $UNIT && systemctl start $UNIT"

# --- the watchdog (WatchdogSec=, sd_notify WATCHDOG=1): pings while the daemon makes progress;
# a wedged one (here stopped with SIGSTOP) is killed and restarted. A drop-in shortens the
# unit's 30 s to 4 s to keep the test short.
check "the unit arms systemd's watchdog (WatchdogUSec=30s)" prop_is WatchdogUSec 30s
mkdir -p "$ROOT/etc/systemd/system/$UNIT.d"
printf '[Service]\nWatchdogSec=4s\n' >"$ROOT/etc/systemd/system/$UNIT.d/watchdog-test.conf"
ct systemctl daemon-reload
T=$(now)
check "restarted with a drop-in WatchdogSec=4s" ct systemctl restart "$UNIT"
check "the daemon pings at half the interval (watchdog_enabled, every 2 s)" \
  wait_until 5 log_has "$T" "ping_every_ms=2000"
PID=$(main_pid)
sleep 10
check "a daemon that makes progress outlives its watchdog interval (same process 10 s later)" \
  prop_is MainPID "$PID"
NR=$(prop NRestarts); T=$(now)
ct systemctl kill --kill-who=main --signal=STOP "$UNIT"
check "a stopped (wedged) daemon is killed by the watchdog (Result=watchdog)" \
  wait_until 20 log_has "$T" "Failed with result 'watchdog'"
restarted_after() { [ "$(prop NRestarts)" -gt "$1" ] && prop_is ActiveState active && not prop_is MainPID "$2"; }
check "... and restarted (Restart=on-failure)" wait_until 20 restarted_after "$NR" "$PID"
rm -r "$ROOT/etc/systemd/system/$UNIT.d"
ct systemctl daemon-reload
check "without the drop-in, a manual restart is back to WatchdogSec=30s" \
  ct sh -c "systemctl restart $UNIT && [ \"\$(systemctl show -P WatchdogUSec $UNIT)\" = 30s ]"

# --- the private-claims drop-in (docs/private-addresses.md): CAP_NET_ADMIN, only it, and only
# with the drop-in installed.
DROPIN=/usr/share/doc/haproxy-watchdog/systemd/private-claims.conf
cap_eff_is() { [ "$(ct grep '^CapEff:' "/proc/$(main_pid)/status" | awk '{print $2}')" = "$1" ]; }
check "the package ships the private-claims drop-in" test -f "$ROOT$DROPIN"
check "without it, the daemon has no capability (CapEff 0)" cap_eff_is 0000000000000000
mkdir -p "$ROOT/etc/systemd/system/$UNIT.d"
cp "$ROOT$DROPIN" "$ROOT/etc/systemd/system/$UNIT.d/"
ct systemctl daemon-reload
check "restarted with the drop-in" ct systemctl restart "$UNIT"
check "with it, CAP_NET_ADMIN and nothing else (CapEff 1000)" cap_eff_is 0000000000001000
check "systemd-analyze verify of the unit with the drop-in is clean" verify_clean "$(prop FragmentPath)"
rm -r "$ROOT/etc/systemd/system/$UNIT.d"
ct systemctl daemon-reload
check "without the drop-in again, no capability after a restart" \
  ct sh -c "systemctl restart $UNIT && [ \"\$(grep '^CapEff:' /proc/\$(systemctl show -P MainPID $UNIT)/status | awk '{print \$2}')\" = 0000000000000000 ]"

# --- the process-checks drop-in: the unit's ProtectProc=invisible hides other users' processes,
# so a process check of a process of root's cannot read its name; with the drop-in it can.
PDROPIN=/usr/share/doc/haproxy-watchdog/systemd/process-checks.conf
check "the package ships the process-checks drop-in" test -f "$ROOT$PDROPIN"
ct systemd-run --quiet --unit=test-sleeper /bin/sleep 100000
ct sh -c 'systemctl show -P MainPID test-sleeper > /run/test-sleeper.pid'
write_conf 55-process.toml '[rules.sleeper]
check = { type = "process", pidfile = "/run/test-sleeper.pid", name = "sleep" }
interval = "1s"
timeout = "500ms"'
sleeper_says() { ct haproxy-watchdog status --json | grep -qF -- "$1"; }
check "restarted with a process check" ct systemctl restart "$UNIT"
check "under ProtectProc=invisible, the check says /proc hides root's process, and the fix" \
  wait_until 10 sleeper_says "install /usr/share/doc/haproxy-watchdog/systemd/process-checks.conf as a drop-in"
mkdir -p "$ROOT/etc/systemd/system/$UNIT.d"
cp "$ROOT$PDROPIN" "$ROOT/etc/systemd/system/$UNIT.d/"
ct systemctl daemon-reload
check "restarted with the process-checks drop-in" ct systemctl restart "$UNIT"
check "with it, the check sees the process run by name" \
  wait_until 10 sleeper_says "sleep running as PID $(ct cat /run/test-sleeper.pid)"
ct systemctl stop test-sleeper
check "the process stopped: its pidfile is stale" wait_until 10 sleeper_says "stale pidfile /run/test-sleeper.pid"
rm -r "$ROOT/etc/systemd/system/$UNIT.d" "$ROOT$CONFD/55-process.toml"
ct systemctl daemon-reload
ct systemctl restart "$UNIT"

# --- configurations that cannot start
ct systemctl stop "$UNIT"
write_conf 60-bad.toml "$INVALID"
T=$(now)
check "an invalid config: systemctl start fails" not ct systemctl start "$UNIT"
check "an invalid config: the daemon exited 2" prop_is ExecMainStatus 2
check "an invalid config: the journal says why" log_has "$T" "$INVALID_SAYS"
sleep 6
check "an invalid config is not restarted (RestartPreventExitStatus=2)" prop_is ActiveState failed
check "... NRestarts=0" prop_is NRestarts 0
rm -f "$ROOT$CONFD/60-bad.toml"
ct systemctl reset-failed "$UNIT"
write_conf 60-needs-aws.toml "$NEEDS_AWS"
check "a config that cannot run (no AWS region): validate passes" ct haproxy-watchdog validate
T=$(now)
check "... but systemctl start fails" not ct systemctl start "$UNIT"
check "... visibly: the journal says why" log_has "$T" "no AWS region"
# Exit 1, not 2: instance metadata may answer a moment later, so the unit restarts it.
check "... and it is restarted (exit 1: the region may come a moment later)" \
  wait_until 15 not prop_is NRestarts 0
ct systemctl stop "$UNIT"
# Stopped in the middle of its restarts the unit is inactive, not failed: nothing to reset.
ct systemctl reset-failed "$UNIT" 2>/dev/null || true
rm -f "$ROOT$CONFD/60-needs-aws.toml"
check "with the config fixed, it starts again" ct systemctl start "$UNIT"

# --- HAProxy installed after us, with the daemon running: the dpkg trigger
check "before HAProxy: the user is in no haproxy group" not in_haproxy_group
PID=$(main_pid)
check "apt installs haproxy (downloaded before: the container has no network)" \
  logged "$RUN/haproxy-install.log" ct env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-download haproxy
check "the trigger added haproxy-watchdog to the haproxy group" in_haproxy_group
check "installing haproxy printed no adduser warning" quiet "$RUN/haproxy-install.log"
check "HAProxy runs, with its stats socket" wait_until 10 ct test -S /run/haproxy/admin.sock
check "the trigger restarted the running daemon (for the new group)" not prop_is MainPID "$PID"
check "the daemon's haproxy check passes" wait_until 15 rule_ok
check "systemctl restart" ct systemctl restart "$UNIT"
check "the haproxy check passes after the restart" wait_until 15 rule_ok
check "the daemon has the haproxy group" has_group "$(main_pid)" "$(ct getent group haproxy | cut -d: -f3)"

# --- reinstall: silent, and the daemon comes back
check "reinstalling the .deb over itself (dpkg -i) succeeds" \
  logged "$RUN/reinstall.log" ct env DEBIAN_FRONTEND=noninteractive dpkg -i /root/haproxy-watchdog.deb
check "the reinstall printed no adduser warning" quiet "$RUN/reinstall.log"
check "the daemon is active after the reinstall" wait_until 10 prop_is ActiveState active

# --- remove, purge
check "apt-get remove succeeds" ct env DEBIAN_FRONTEND=noninteractive apt-get remove -y haproxy-watchdog
check "remove stops the daemon" no_process_of_user
check "remove keeps the configuration" ct test -e /etc/haproxy-watchdog/watchdog.toml
check "apt-get purge succeeds" ct env DEBIAN_FRONTEND=noninteractive apt-get purge -y haproxy-watchdog
check "purge removes the shipped configuration" not ct test -e /etc/haproxy-watchdog/watchdog.toml
check "purge removes the state" not ct test -e /var/lib/haproxy-watchdog
check "no haproxy-watchdog unit is left loaded or running" no_unit_left

# --- HAProxy and the package in one apt run. dpkg may unpack HAProxy first and configure it
# after us: neither our postinst (no group yet) nor the trigger (we were not installed when
# HAProxy's binary arrived) can add the group then; the unit joins it at start.
ct env DEBIAN_FRONTEND=noninteractive apt-get purge -y haproxy >/dev/null 2>&1 || true
ct sh -c 'if getent passwd haproxy >/dev/null; then deluser --quiet haproxy; fi; if getent group haproxy >/dev/null; then delgroup --quiet haproxy; fi' || true
# In the order apt may choose in one run (the breaker saw it with `apt-get install ./x.deb`
# pulling HAProxy in as a Recommends): both unpacked, then the package configured, then HAProxy.
check "HAProxy and the package unpacked together, the package configured first" \
  logged "$RUN/both.log" ct sh -c 'export DEBIAN_FRONTEND=noninteractive
    dpkg --unpack /var/cache/apt/archives/haproxy_*.deb /root/haproxy-watchdog.deb &&
    dpkg --configure haproxy-watchdog && dpkg --configure haproxy'
check "... so neither postinst nor the trigger could add the group" not in_haproxy_group
rm -f "$ROOT$CONFD"/*.toml
write_conf 50-test.toml "$RULE"
check "systemctl start after installing both at once" ct systemctl start "$UNIT"
check "... the unit's start joined the haproxy group" in_haproxy_group
check "... and the daemon's haproxy check passes" wait_until 15 rule_ok
ct env DEBIAN_FRONTEND=noninteractive apt-get purge -y haproxy-watchdog >/dev/null 2>&1 || true

if [ "$FAIL" -ne 0 ]; then
  echo "the daemon's journal:"; ct journalctl -u "$UNIT" -n 60 --no-pager | sed 's/^/     | /' || true
fi
BOOTED=$NSPAWN
poweroff
check "the container powered off" not kill -0 "$BOOTED"
echo "systemd: $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
