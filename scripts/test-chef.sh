#!/usr/bin/env bash
# Chef cookbook tests (packaging/chef/haproxy_watchdog), without Chef: every .rb file and
# template compiles; packaging/chef/test/render.rb runs the setup recipe in a fake DSL over
# several node attribute sets, records its resources and renders its templates into a
# directory laid out like /etc/haproxy-watchdog (seeded with the package's shipped files);
# the result must pass `watchdog validate` and say what the attributes asked for.
# WATCHDOG_BIN overrides the binary (default target/debug/watchdog; not rebuilt here).
# Ends with a line "chef: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_commands ruby:ruby python3:python3

WATCHDOG=${WATCHDOG_BIN:-target/debug/watchdog}
CB=packaging/chef/haproxy_watchdog
HARNESS=packaging/chef/test
PASS=0
FAIL=0
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

check() { # check DESCRIPTION COMMAND...
  local what="$1"; shift
  if "$@" >/dev/null 2>&1; then PASS=$((PASS + 1)); echo "ok   $what"
  else FAIL=$((FAIL + 1)); echo "FAIL $what"; fi
}
fails() { ! "$@"; }
# q DIR 'ruby expression over the recorded resources' (see packaging/chef/test/query.rb)
q() { ruby "$HARNESS/query.rb" "$1/resources.json" "$2"; }
# t FILE 'python expression': d is FILE parsed by Python's tomllib, j the variation's JSON
t() {
  python3 - "$1" "$2" "${3:-/dev/null}" <<'PY'
import json, sys, tomllib
with open(sys.argv[1], "rb") as f:
    d = tomllib.load(f)
raw = open(sys.argv[3]).read()
j = json.loads(raw) if raw.strip() else {}
sys.exit(0 if eval(sys.argv[2]) else 1)
PY
}
json() { cat > "$TMP/$1.json"; echo "$TMP/$1.json"; }

# render NAME [render.rb options]: DIR=$TMP/NAME, seeded with the package's shipped config.
render() {
  local name="$1"; shift
  DIR="$TMP/$name"
  mkdir -p "$DIR/conf.d"
  cp packaging/watchdog.toml "$DIR/watchdog.toml"
  cp conf.d/*.toml "$DIR/conf.d/"
  ruby "$HARNESS/render.rb" --cookbook "$CB" --out "$DIR" "$@" 2>"$DIR.err"
}

validates() { # validates LABEL DIR
  local out
  if out=$("$WATCHDOG" validate --config "$2/watchdog.toml" 2>&1); then
    PASS=$((PASS + 1)); echo "ok   $1"
  else
    FAIL=$((FAIL + 1)); echo "FAIL $1"; sed 's/^/     /' <<<"$out"
  fi
}

SEED="$HARNESS/fixtures/seed-opsworks.json"
ETC=/etc/haproxy-watchdog
MAIN=$ETC/watchdog.toml
EIP_CONF=$ETC/conf.d/10-eip-failover.toml
LOCAL_CONF=$ETC/conf.d/20-local-haproxy.toml
VALIDATE="haproxy-watchdog validate --config $MAIN"
MONITRC=/etc/monit.d/haproxywatch.monitrc
MONITRC_DEB=/etc/monit/conf.d/haproxywatch.monitrc

# --- syntax
check "the binary under test exists ($WATCHDOG)" test -x "$WATCHDOG"
while IFS= read -r f; do
  check "ruby -c $f" ruby -c "$f"
done < <(find "$CB" "$HARNESS" -name '*.rb' | sort)
for f in "$CB"/templates/default/*.erb; do
  check "template compiles: $f" bash -o pipefail -c "ruby -rerb -e 'puts ERB.new(File.read(ARGV[0]), trim_mode: \"-\").src' '$f' | ruby -c"
done
check "templates do not read node attributes" fails grep -q 'node\[' "$CB"/templates/default/*.erb
check "no unified_mode (Chef 12 compatibility)" fails grep -rq unified_mode "$CB" --include=*.rb
check "no Ruby 2.3+ safe navigation or Hash#dig (Chef 12's Ruby)" fails grep -rqE '&\.[a-z_]|\]\.dig\(' "$CB" --include=*.rb --include=*.erb
check "the OpsWorks IAM policy is valid JSON" python3 -m json.tool packaging/iam/opsworks-failover-policy.json
check "the OpsWorks IAM policy allows only the three calls the claim makes and preflight's topic read" python3 -c '
import json
p = json.load(open("packaging/iam/opsworks-failover-policy.json"))
acts = sorted(a for s in p["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))
assert acts == ["opsworks:AssociateElasticIp", "opsworks:DescribeElasticIps", "sns:GetTopicAttributes", "sns:Publish"], acts
assert all(s["Effect"] == "Allow" and s["Resource"] != "*" for s in p["Statement"])'

# --- (1) the seed's custom JSON on OpsWorks, default provider (ec2)
check "seed JSON: the recipe runs" render seed --json "$SEED"
D=$DIR
check "seed JSON: installs the package" q "$D" 'res("package", "haproxy-watchdog")["actions"] == ["install"]'
for f in $MAIN $EIP_CONF $LOCAL_CONF; do
  check "seed JSON: renders $f root:haproxy-watchdog 0640" \
    q "$D" "r = res('template', '$f'); r && r['actions'] == ['create'] && r['properties'].values_at('owner', 'group', 'mode') == ['root', 'haproxy-watchdog', '0640']"
  check "seed JSON: $f notifies service[haproxy-watchdog] to reload" \
    q "$D" "notifies?('template', '$f', 'reload', 'service[haproxy-watchdog]')"
done
check "seed JSON: 10-eip-failover gets the EIP, check URL, topic and provider" q "$D" \
  "v = vars('$EIP_CONF'); v['eip'] == '54.173.141.243' && v['check_url'] == 'http://54.173.141.243:80/' && v['topic_arn'] == 'arn:aws:sns:us-west-2:123456789012:haproxy-failover' && v['provider'] == 'ec2' && v['fail_after'] == 3"
check "seed JSON: watchdog.toml gets the instance's region and no OpsWorks instance id" q "$D" \
  "v = vars('$MAIN'); v['region'] == 'us-west-2' && v['opsworks_instance_id'].nil? && v['stats_socket'] == '/run/haproxy/admin.sock'"
check "seed JSON: validates the whole config after writing it, before the service" q "$D" \
  "i = idx('execute', '$VALIDATE'); i && i > idx('template', '$LOCAL_CONF') && i < idx('service', 'haproxy-watchdog')"
check "seed JSON: enables and starts the service" q "$D" 'res("service", "haproxy-watchdog")["actions"] == %w(enable start)'
for f in $MONITRC $MONITRC_DEB; do
  check "seed JSON: deletes $f and reloads monit only then" q "$D" \
    "res('file', '$f')['actions'] == ['delete'] && notifies?('file', '$f', 'reload', 'service[monit]')"
  check "seed JSON: starts the watchdog before deleting $f" q "$D" "idx('service', 'haproxy-watchdog') < idx('file', '$f')"
done
check "seed JSON: deletes /etc/failtome.sh after the monit rule" q "$D" \
  "res('file', '/etc/failtome.sh')['actions'] == ['delete'] && idx('file', '/etc/failtome.sh') > idx('file', '$MONITRC')"
check "seed JSON: service[monit] does nothing unless notified" q "$D" 'res("service", "monit")["actions"] == ["nothing"]'
for f in watchdog.toml conf.d/10-eip-failover.toml conf.d/20-local-haproxy.toml; do
  check "seed JSON: $f says it is managed by Chef" grep -q '^# .*managed by Chef' "$D/$f"
done
check "seed JSON: rendered provider = \"ec2\"" grep -qx 'provider = "ec2"' "$D/conf.d/10-eip-failover.toml"
check "seed JSON: rendered eip and check url" sh -c "grep -qx 'eip = \"54.173.141.243\"' '$D/conf.d/10-eip-failover.toml' && grep -q 'url = \"http://54.173.141.243:80/\"' '$D/conf.d/10-eip-failover.toml'"
check "seed JSON: rendered fail_after = 3, interval 10s, hold_down 5m" sh -c "grep -qx 'fail_after = 3' '$D/conf.d/10-eip-failover.toml' && grep -qx 'interval = \"10s\"' '$D/conf.d/10-eip-failover.toml' && grep -qx 'hold_down = \"5m\"' '$D/conf.d/10-eip-failover.toml'"
check "seed JSON: rendered [aws] region us-west-2 and the topic in [alerts]" \
  t "$D/watchdog.toml" 'd["aws"]["region"] == "us-west-2" and d["alerts"]["sns_topic_arn"] == "arn:aws:sns:us-west-2:123456789012:haproxy-failover"'
check "seed JSON: no [opsworks] section with provider ec2" t "$D/watchdog.toml" '"opsworks" not in d'
check "seed JSON: the local HAProxy rule alerts through SNS on the node's socket" t "$D/conf.d/20-local-haproxy.toml" \
  'd["rules"]["local-haproxy"]["check"] == {"type": "haproxy", "stats_socket": "/run/haproxy/admin.sock"} and d["actions"]["page-ops"]["type"] == "sns" and d["actions"]["page-ops"]["topic_arn"].endswith(":haproxy-failover")'
validates "seed JSON: watchdog validate accepts the result" "$D"
check "recipe default includes setup (same resources)" sh -c \
  "ruby '$HARNESS/render.rb' --cookbook '$CB' --out '$TMP/default' --json '$SEED' --recipe default && cmp -s '$TMP/default/resources.json' '$D/resources.json'"

# --- (2) the same stack with provider "opsworks" (what /etc/failtome.sh did)
OPSWORKS=$(json opsworks <<'EOF'
{"haproxy_watchdog": {"provider": "opsworks"}}
EOF
)
check "provider opsworks: the recipe runs" render opsworks --json "$SEED" --json "$OPSWORKS"
D=$DIR
check "provider opsworks: rendered provider = \"opsworks\"" grep -qx 'provider = "opsworks"' "$D/conf.d/10-eip-failover.toml"
check "provider opsworks: [opsworks] has the OpsWorks instance id and the us-east-1 API region" t "$D/watchdog.toml" \
  'd["opsworks"] == {"region": "us-east-1", "instance_id": "4d6d1710-ded9-42a1-b08e-b043ad7af1e2"} and d["aws"]["region"] == "us-west-2"'
check "provider opsworks: the instance id is in the file as written" grep -qx 'instance_id = "4d6d1710-ded9-42a1-b08e-b043ad7af1e2"' "$D/watchdog.toml"
validates "provider opsworks: watchdog validate accepts the result" "$D"

# --- (3) plain Chef/Cinc outside OpsWorks: no node['opsworks'], overrides set
PLAIN=$(json plain <<'EOF'
{"haproxy_watchdog": {"eip": "203.0.113.10", "topic_arn": "arn:aws:sns:eu-west-1:123456789012:failover", "region": "eu-west-1"}}
EOF
)
check "plain Chef: the recipe runs" render plain --json "$PLAIN"
D=$DIR
plain_values() {
  python3 - "$1" <<'PY'
import sys, tomllib
d = sys.argv[1]
main = tomllib.load(open(d + "/watchdog.toml", "rb"))
eip = tomllib.load(open(d + "/conf.d/10-eip-failover.toml", "rb"))
assert main["aws"]["region"] == "eu-west-1" and "opsworks" not in main
a = eip["actions"]["claim-eip"]
assert a == {"type": "claim_eip", "provider": "ec2", "eip": "203.0.113.10", "hold_down": "5m",
             "sns_topic_arn": "arn:aws:sns:eu-west-1:123456789012:failover"}, a
assert eip["rules"]["eip"]["check"]["url"] == "http://203.0.113.10:80/"
PY
}
check "plain Chef: EIP, topic and region come from node['haproxy_watchdog']" plain_values "$D"
validates "plain Chef: watchdog validate accepts the result" "$D"
NOREGION=$(json noregion <<'EOF'
{"haproxy_watchdog": {"eip": "203.0.113.10", "topic_arn": "arn:aws:sns:eu-west-1:123456789012:failover"}}
EOF
)
check "plain Chef without a region: [aws] leaves it to AWS_REGION/instance metadata" sh -c \
  "ruby '$HARNESS/render.rb' --cookbook '$CB' --out '$TMP/noregion' --json '$NOREGION' && python3 -c 'import tomllib,sys; d=tomllib.load(open(sys.argv[1],\"rb\")); sys.exit(\"region\" in d[\"aws\"])' '$TMP/noregion/watchdog.toml'"
RPM=$(json rpm <<'EOF'
{"haproxy_watchdog": {"package_source": "/tmp/haproxy-watchdog-0.1.0-1.x86_64.rpm"}}
EOF
)
check "package_source on rhel: rpm_package from that file" sh -c \
  "ruby '$HARNESS/render.rb' --cookbook '$CB' --out '$TMP/rpm' --json '$PLAIN' --json '$RPM' --platform-family rhel &&
   ruby '$HARNESS/query.rb' '$TMP/rpm/resources.json' 'res(\"rpm_package\", \"haproxy-watchdog\")[\"properties\"][\"source\"] == \"/tmp/haproxy-watchdog-0.1.0-1.x86_64.rpm\" && res(\"package\", \"haproxy-watchdog\").nil?'"
DEBURL=$(json deburl <<'EOF'
{"haproxy_watchdog": {"package_source": "https://example.com/dl/haproxy-watchdog_0.1.0_amd64.deb"}}
EOF
)
check "package_source URL on debian: remote_file, then dpkg_package from the cache" sh -c \
  "ruby '$HARNESS/render.rb' --cookbook '$CB' --out '$TMP/deburl' --json '$PLAIN' --json '$DEBURL' &&
   ruby '$HARNESS/query.rb' '$TMP/deburl/resources.json' 'f = \"/var/chef/cache/haproxy-watchdog_0.1.0_amd64.deb\"; res(\"remote_file\", f) && res(\"dpkg_package\", \"haproxy-watchdog\")[\"properties\"][\"source\"] == f && idx(\"remote_file\", f) < idx(\"dpkg_package\", \"haproxy-watchdog\")'"

# --- (4) custom timing, backend, port; no local HAProxy alert; monit left alone
CUSTOM=$(json custom <<'EOF'
{"haproxy_watchdog": {"interval": "30s", "timeout": "10s", "fail_after": 5, "recover_after": "4",
  "haproxy_backend": "app", "check_port": 8080, "check_path": "health", "check_host": "www.example.com",
  "local_haproxy_alert": false, "remove_monit": false}}
EOF
)
check "custom attributes: the recipe runs" render custom --json "$SEED" --json "$CUSTOM"
D=$DIR
check "custom attributes: rendered interval, timeout, fail_after, recover_after" t "$D/conf.d/10-eip-failover.toml" \
  '[d["rules"]["eip"][k] for k in ("interval", "timeout", "fail_after", "recover_after")] == ["30s", "10s", 5, 4]'
check "custom attributes: fail_after = 5 as written" grep -qx 'fail_after = 5' "$D/conf.d/10-eip-failover.toml"
check "custom attributes: check on port 8080, path /health, Host header" t "$D/conf.d/10-eip-failover.toml" \
  'd["rules"]["eip"]["check"]["url"] == "http://54.173.141.243:8080/health" and d["rules"]["eip"]["check"]["host"] == "www.example.com"'
check "custom attributes: [haproxy] backend = \"app\"" t "$D/watchdog.toml" 'd["haproxy"]["backend"] == "app"'
check "custom attributes: 20-local-haproxy.toml is deleted, not rendered" q "$D" \
  "res('template', '$LOCAL_CONF').nil? && res('file', '$LOCAL_CONF')['actions'] == ['delete'] && notifies?('file', '$LOCAL_CONF', 'reload', 'service[haproxy-watchdog]')"
check "custom attributes: the package's 20-local-haproxy.toml is gone from conf.d" test ! -e "$D/conf.d/20-local-haproxy.toml"
check "custom attributes: remove_monit false leaves monit alone" q "$D" \
  "res('file', '$MONITRC').nil? && res('file', '/etc/failtome.sh').nil? && res('service', 'monit').nil?"
validates "custom attributes: watchdog validate accepts the result" "$D"

# --- (5) quotes, backslashes and control characters stay inside their TOML strings
ODD=$(json odd <<'EOF'
{"stack": {"failover_topic": "arn:aws:sns:us-west-2:123456789012:odd\"topic\\name"},
 "haproxy_watchdog": {"haproxy_backend": "app\"b\\e", "stats_socket": "/run/haproxy/a\"b\\c\td é\u007f.sock"}}
EOF
)
check "escaping: the recipe runs" render odd --json "$SEED" --json "$ODD"
D=$DIR
for f in watchdog.toml conf.d/10-eip-failover.toml conf.d/20-local-haproxy.toml; do
  check "escaping: $f parses as TOML" t "$D/$f" 'True'
done
odd_topic() {
  python3 - "$1" "$2" <<'PY'
import json, sys, tomllib
d, j = sys.argv[1], json.load(open(sys.argv[2]))
topic = j["stack"]["failover_topic"]
assert '"' in topic and "\\" in topic
main = tomllib.load(open(d + "/watchdog.toml", "rb"))
eip = tomllib.load(open(d + "/conf.d/10-eip-failover.toml", "rb"))
local = tomllib.load(open(d + "/conf.d/20-local-haproxy.toml", "rb"))
assert main["alerts"]["sns_topic_arn"] == topic
assert eip["actions"]["claim-eip"]["sns_topic_arn"] == topic
assert local["actions"]["page-ops"]["topic_arn"] == topic
PY
}
check "escaping: the topic reads back exactly (alerts, claim, sns action)" odd_topic "$D" "$ODD"
check "escaping: backend and socket path (tab, DEL, non-ASCII) read back exactly" t "$D/conf.d/20-local-haproxy.toml" \
  'd["rules"]["local-haproxy"]["check"] == {"type": "haproxy", "stats_socket": j["haproxy_watchdog"]["stats_socket"], "backend": j["haproxy_watchdog"]["haproxy_backend"]}' "$ODD"
check "escaping: [haproxy] in watchdog.toml reads back exactly" t "$D/watchdog.toml" \
  'd["haproxy"]["stats_socket"] == j["haproxy_watchdog"]["stats_socket"] and d["haproxy"]["backend"] == j["haproxy_watchdog"]["haproxy_backend"]' "$ODD"
validates "escaping: watchdog validate accepts the result" "$D"

# --- (6) errors: the run stops before any resource, with a message that says what to set
fails_with() { # fails_with LABEL MESSAGE render-args...
  local label="$1" msg="$2"; shift 2
  if render "$@" >/dev/null 2>&1; then
    FAIL=$((FAIL + 1)); echo "FAIL $label (the recipe ran)"
  elif grep -qF -- "$msg" "$DIR.err" && test ! -e "$DIR/resources.json"; then
    PASS=$((PASS + 1)); echo "ok   $label"
  else
    FAIL=$((FAIL + 1)); echo "FAIL $label"; sed 's/^/     /' "$DIR.err"
  fi
}
NOEIP=$(json noeip <<'EOF'
{"stack": {"primary_ip": null}}
EOF
)
fails_with "error: no EIP" "haproxy_watchdog: no Elastic IP: set \"primary_ip\" in the stack's custom JSON" \
  err-noeip --json "$SEED" --json "$NOEIP"
NOTOPIC=$(json notopic <<'EOF'
{"stack": {"failover_topic": "  "}}
EOF
)
fails_with "error: no SNS topic" "haproxy_watchdog: no SNS topic for failover alerts" err-notopic --json "$SEED" --json "$NOTOPIC"
fails_with "error: provider opsworks without an OpsWorks instance id" \
  "haproxy_watchdog: provider \"opsworks\" needs this node's OpsWorks instance id" err-noid --json "$PLAIN" --json "$OPSWORKS"
UNKNOWN=$(json unknown <<'EOF'
{"haproxy_watchdog": {"provider": "gcp"}}
EOF
)
fails_with "error: unknown provider" "haproxy_watchdog: provider \"gcp\" is not supported" err-provider --json "$SEED" --json "$UNKNOWN"
BADINT=$(json badint <<'EOF'
{"haproxy_watchdog": {"fail_after": "three"}}
EOF
)
fails_with "error: fail_after not a number" "haproxy_watchdog: fail_after = \"three\": not a whole number" err-int --json "$SEED" --json "$BADINT"

echo "chef: $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
