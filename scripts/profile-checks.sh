#!/usr/bin/env bash
# Where a check's time goes (docs/benchmarks.md, "Where the time goes"): the daemon built with
# the `profiling` profile (release code, symbols kept) runs N HTTP rules at 1 s against a real
# HAProxy on loopback that answers each with a static 200; over WINDOW seconds after a
# warm-up it is measured three times, the checks it performed counted by HAProxy's CumReq:
#   1. `perf stat`: task-clock and context switches per check;
#   2. `strace -c -f`: system calls per check, by call (strace slows the daemon: its own
#      pass, not the others');
#   3. `perf record -g` + `perf report`: the functions the samples fall in, kernel and user.
#   scripts/profile-checks.sh [--rules N] [--window SECONDS] [--bin PATH] [--keep-alive D]
# --bin profiles another build (it should keep its symbols); --keep-alive gives every rule
# `keep_alive = "D"` (a connection kept between checks). Needs root (perf, strace).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

rules=1000 window=20 bin="" keep=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rules) rules="$2"; shift 2 ;;
    --window) window="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --keep-alive) keep=", keep_alive = \"$2\""; shift 2 ;;
    *) echo "usage: $0 [--rules N] [--window SECONDS] [--bin PATH] [--keep-alive DURATION]" >&2; exit 2 ;;
  esac
done
need_commands perf:linux-perf strace:strace haproxy:haproxy socat:socat
if [ -z "$bin" ]; then
  cargo build --locked --profile profiling --bin watchdog
  bin="${CARGO_TARGET_DIR:-target}/profiling/watchdog"
fi

dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$dir/haproxy.cfg" <<EOF
global
  stats socket $dir/stats.sock mode 600 level admin
  maxconn 8000
defaults
  mode http
  timeout connect 1s
  timeout client 10s
  timeout server 10s
frontend checks
  bind 127.0.0.1:$port
  maxconn 8000
  http-request return status 200 content-type text/plain string ok
EOF
haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
pids+=($!)

{
  printf '[control]\nsocket = "%s/control.sock"\n' "$dir"
  for i in $(seq 0 $((rules - 1))); do
    printf '[rules.r%d]\ncheck = { type = "http", url = "http://127.0.0.1:%d/r%d"%s }\ninterval = "1s"\ntimeout = "500ms"\n' "$i" "$port" "$i" "$keep"
  done
} >"$dir/watchdog.toml"
for _ in $(seq 50); do [ -S "$dir/stats.sock" ] && break; sleep 0.1; done
# No AWS: every AWS and metadata endpoint is a closed loopback port, as in the benchmarks.
WATCHDOG_STATE_DIR="$dir" AWS_ENDPOINT_URL=http://127.0.0.1:9 \
  AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:9 AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  "$bin" run --log-level warn --config "$dir/watchdog.toml" >"$dir/watchdog.log" 2>&1 &
wd=$!
pids+=("$wd")
sleep 5

cumreq() { echo "show info" | socat - "UNIX-CONNECT:$dir/stats.sock" | sed -n 's/^CumReq: //p'; }
# Runs "$@" for the window; prints the checks HAProxy counted meanwhile.
measured() {
  local before after
  before=$(cumreq)
  "$@"
  after=$(cumreq)
  echo $((after - before))
}

echo "watchdog $bin, $rules HTTP rules at 1 s, HAProxy $(haproxy -v | head -1 | cut -d' ' -f3), window ${window} s, $(nproc) cores"
checks=$(measured perf stat -x, -e task-clock,context-switches -p "$wd" -o "$dir/stat" -- sleep "$window")
awk -F, -v n="$checks" '
  $3 == "task-clock" { printf "perf stat: %d checks; task-clock %.1f µs per check\n", n, $1 * 1000 / n }
  $3 == "context-switches" { printf "perf stat: context switches %.2f per check\n", $1 / n }' "$dir/stat"

checks=$(measured timeout -s INT "$window" strace -c -f -p "$wd" -o "$dir/strace" || true)
checks=${checks##*$'\n'}
awk -v n="$checks" '
  $NF == "total" { printf "strace: %d checks; %.1f system calls per check\n", n, $4 / n }
  NF >= 5 && $1 ~ /^[0-9.]+$/ && $NF != "total" { calls[$NF] = $4 }
  END { for (c in calls) if (calls[c] / n >= 0.05) printf "  %-16s %.2f per check\n", c, calls[c] / n }' "$dir/strace" | sort -k2 -rn

perf record -q -g -p "$wd" -o "$dir/perf.data" -- sleep "$window" >/dev/null 2>&1
echo "perf report: share of samples by object"
perf report -i "$dir/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -E "^ +[0-9.]+%" | head -6
echo "perf report: share of samples, top entries without children"
perf report -i "$dir/perf.data" --no-children --sort sym --stdio 2>/dev/null \
  | grep -E '^ +[0-9.]+%' | head -25
