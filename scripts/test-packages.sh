#!/usr/bin/env bash
# Package tests: build the .deb and .rpm (test build), then check them as an operator's
# machine would see them. The .deb is really installed with dpkg, upgraded over a local
# edit, removed and purged; the .rpm is inspected with rpm -qp (Debian's rpm). Needs root.
# Ends with a line "packages: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_commands rpm:rpm dpkg-deb:dpkg systemd-analyze:systemd runuser:util-linux adduser:adduser

bash scripts/package.sh --profile dev >/dev/null
DEB=$(ls target/packages/*.deb)
RPM=$(ls target/packages/*.rpm)
PASS=0
FAIL=0
check() { # check DESCRIPTION COMMAND...
  local what="$1"; shift
  if "$@" >/dev/null 2>&1; then PASS=$((PASS + 1)); echo "ok   $what"
  else FAIL=$((FAIL + 1)); echo "FAIL $what"; fi
}
has_line() { grep -qxF -- "$2" <<<"$1"; }
not() { ! "$@"; }
purge() { dpkg -P haproxy-watchdog >/dev/null 2>&1 || true; }
trap purge EXIT
purge

# --- .deb contents
FIELDS=$(dpkg-deb -f "$DEB" Package Depends)
FILES=$(dpkg-deb -c "$DEB" | awk '{print $6}' | sed 's|^\./|/|')
CONFFILES=$(dpkg-deb -I "$DEB" conffiles)
check "deb: package name" grep -q "^Package: haproxy-watchdog$" <<<"$FIELDS"
DEPENDS=$(dpkg-deb -f "$DEB" Depends | tr ',' '\n' | sed 's/^ *//; s/ .*//')
check "deb: depends on adduser" has_line "$DEPENDS" adduser
check "deb: depends on ca-certificates (TLS roots)" has_line "$DEPENDS" ca-certificates
check "deb: a trigger on HAProxy's binary (our user joins the haproxy group HAProxy creates later)" \
  has_line "$(dpkg-deb -I "$DEB" triggers 2>/dev/null)" "interest-noawait /usr/sbin/haproxy"
check "deb: postinst handles that trigger" grep -q '^ *triggered)' <<<"$(dpkg-deb -I "$DEB" postinst 2>/dev/null)"
for f in /usr/bin/haproxy-watchdog /etc/haproxy-watchdog/watchdog.toml \
         /etc/haproxy-watchdog/conf.d/10-eip-failover.toml /etc/haproxy-watchdog/conf.d/20-local-haproxy.toml \
         /usr/share/doc/haproxy-watchdog/copyright /usr/share/doc/haproxy-watchdog/CHANGELOG.md \
         /usr/share/doc/haproxy-watchdog/iam/ec2-failover-policy.json \
         /usr/share/doc/haproxy-watchdog/iam/backend-sync-asg-policy.json \
         /usr/share/doc/haproxy-watchdog/iam/opsworks-failover-policy.json \
         /usr/share/doc/haproxy-watchdog/iam/backend-sync-events-policy.json \
         /usr/share/doc/haproxy-watchdog/eventbridge/asg-membership-rule.json \
         /usr/share/doc/haproxy-watchdog/eventbridge/README.md \
         /usr/share/doc/haproxy-watchdog/examples/backend-sync.toml; do
  check "deb: ships $f" has_line "$FILES" "$f"
done
UNIT=$(grep -E '/systemd/system/haproxy-watchdog\.service$' <<<"$FILES" || true)
check "deb: ships the systemd unit" test -n "$UNIT"
for f in /etc/haproxy-watchdog/watchdog.toml /etc/haproxy-watchdog/conf.d/10-eip-failover.toml; do
  check "deb: $f is a conffile" has_line "$CONFFILES" "$f"
done

# No file in common with Debian's unrelated `watchdog` package (it owns /usr/sbin/watchdog).
TMP=$(mktemp -d)
if (cd "$TMP" && apt-get download watchdog >/dev/null 2>&1); then
  THEIRS=$(dpkg-deb -c "$TMP"/watchdog_*.deb | awk '$1 !~ /^d/ {print $6}' | sed 's|^\./|/|')
  OURS=$(dpkg-deb -c "$DEB" | awk '$1 !~ /^d/ {print $6}' | sed 's|^\./|/|')
  check "deb: no file conflicts with Debian's watchdog package" test -z "$(comm -12 <(sort <<<"$THEIRS") <(sort <<<"$OURS"))"
else
  check "deb: Debian's watchdog package could be downloaded to compare" false
fi
rm -rf "$TMP"

# --- install, run, upgrade, remove, purge
check "deb: installs with dpkg" dpkg -i "$DEB"
check "deb: a system user haproxy-watchdog exists" getent passwd haproxy-watchdog
check "deb: config readable by that user only (root:haproxy-watchdog 640)" \
  test "$(stat -c '%U:%G %a' /etc/haproxy-watchdog/watchdog.toml)" = "root:haproxy-watchdog 640"
check "deb: --help documents every command" sh -c '/usr/bin/haproxy-watchdog --help | grep -q validate && /usr/bin/haproxy-watchdog --help | grep -q run'
check "deb: the shipped config validates as the service user" \
  runuser -u haproxy-watchdog -- /usr/bin/haproxy-watchdog validate --config /etc/haproxy-watchdog/watchdog.toml
check "deb: systemd-analyze verify passes" systemd-analyze verify "$UNIT"
check "deb: the unit validates before reload" grep -qx 'ExecReload=/usr/bin/haproxy-watchdog validate' "$UNIT"
check "deb: the unit reloads with SIGHUP, with the shell's kill (no procps needed)" \
  grep -qxF "ExecReload=/bin/sh -c 'kill -HUP \"\$\$MAINPID\"'" "$UNIT"
check "deb: the unit never retries an invalid config" grep -qx 'RestartPreventExitStatus=2' "$UNIT"
check "deb: the unit resets its start limit at a start that is not an automatic restart" \
  grep -q '^ExecStartPre=-+.*NRestarts.*reset-failed' "$UNIT"
check "deb: ... and after a clean stop (only crash loops count)" grep -q '^ExecStopPost=-+.*SERVICE_RESULT.*reset-failed' "$UNIT"
check "deb: the unit has no SupplementaryGroups (it fails where a group does not exist)" not grep -q '^SupplementaryGroups=' "$UNIT"
for k in 'Type=notify$' 'NotifyAccess=main$' 'TimeoutStartSec=' 'NoNewPrivileges=yes' 'ProtectSystem=strict' 'CapabilityBoundingSet=$' 'PrivateTmp=yes' \
         'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' 'User=haproxy-watchdog' 'StateDirectory=haproxy-watchdog' \
         'Restart=on-failure' 'StartLimitBurst=5$' 'StartLimitIntervalSec=300$' 'WatchdogSec=30s$'; do
  check "deb: unit has $k" grep -q "^$k" "$UNIT"
done
check "deb: not enabled at install (the shipped rules name example addresses)" \
  test ! -e /etc/systemd/system/multi-user.target.wants/haproxy-watchdog.service
echo "# local edit" >> /etc/haproxy-watchdog/watchdog.toml
REINSTALL=$(mktemp)
check "deb: reinstalls over a locally edited conffile" sh -c "dpkg -i --force-confold '$DEB' >'$REINSTALL' 2>&1"
check "deb: the reinstall prints no adduser warning (already exists, already a member)" \
  not grep -iE 'adduser|already|warning' "$REINSTALL"
rm -f "$REINSTALL"
check "deb: the local edit survives the upgrade" grep -q "^# local edit$" /etc/haproxy-watchdog/watchdog.toml
check "deb: removes" dpkg -r haproxy-watchdog
check "deb: remove drops the binary" test ! -e /usr/bin/haproxy-watchdog
check "deb: remove keeps the configuration" test -e /etc/haproxy-watchdog/watchdog.toml
check "deb: purges" dpkg -P haproxy-watchdog
check "deb: purge drops the configuration" test ! -e /etc/haproxy-watchdog
check "deb: purge drops the state directory" test ! -e /var/lib/haproxy-watchdog

# --- .rpm (listed and inspected; this is a Debian machine)
RPMFILES=$(rpm -qlp "$RPM" 2>/dev/null)
RPMCONF=$(rpm -qcp "$RPM" 2>/dev/null)
check "rpm: package name" test "$(rpm -qp --qf '%{NAME}' "$RPM" 2>/dev/null)" = haproxy-watchdog
for f in /usr/bin/haproxy-watchdog /etc/haproxy-watchdog/watchdog.toml /etc/haproxy-watchdog/conf.d/10-eip-failover.toml \
         /usr/lib/systemd/system/haproxy-watchdog.service /usr/share/doc/haproxy-watchdog/CHANGELOG.md \
         /usr/share/doc/haproxy-watchdog/iam/ec2-failover-policy.json /usr/share/licenses/haproxy-watchdog/LICENSE; do
  check "rpm: ships $f" has_line "$RPMFILES" "$f"
done
check "rpm: configuration files are marked %config" has_line "$RPMCONF" /etc/haproxy-watchdog/watchdog.toml
check "rpm: configuration is root:haproxy-watchdog 640" grep -q "^-rw-r----- root haproxy-watchdog /etc/haproxy-watchdog/watchdog.toml$" \
  <<<"$(rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILENAMES}\n]' "$RPM" 2>/dev/null)"
RPMSCRIPTS=$(rpm -qp --scripts "$RPM" 2>/dev/null)
check "rpm: creates its system user before install" grep -q "useradd -r" <<<"$RPMSCRIPTS"
check "rpm: joins the haproxy group after the transaction (posttrans)" \
  grep -q "usermod -a -G haproxy" <<<"$(sed -n '/^posttrans scriptlet/,/^[a-z]* scriptlet/p' <<<"$RPMSCRIPTS")"
check "rpm: requires ca-certificates (TLS roots)" grep -qx "ca-certificates" <<<"$(rpm -qpR "$RPM" 2>/dev/null)"

echo "packages: $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
