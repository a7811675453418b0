#!/usr/bin/env bash
# Side-by-side comparison, one run: the same tandem-load workload against
# Tandem (y-socket.io dialect) and the original Node y-socket.io server, then
# idle-connection capacity of both. Prints JSON lines and a Markdown table.
# Usage: scripts/bench-compare.sh [seconds]   (loopback only)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-15}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --bins --quiet
(cd benches/ysocketio-server && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
LOAD=./target/release/tandem-load

start_tandem() {
  rm -f "$WORK/tandem.log" # never read the previous server's "listening on"
  ./target/release/tandem serve --bind 127.0.0.1:3100 --data-dir "$WORK/t" --database-url "sqlite://$WORK/t/tandem.db" \
    --on-demand-sessions --anonymous editor --updates-per-second 1000 --update-burst 2000 >"$WORK/tandem.log" 2>&1 &
  PID=$!
  until grep -qs "listening on" "$WORK/tandem.log"; do sleep 0.1; done
}
start_node() {
  rm -f "$WORK/node.log"
  PORT=3200 PERSIST_DIR="$WORK/level" node benches/ysocketio-server/server.mjs >"$WORK/node.log" 2>&1 &
  PID=$!
  until grep -qs "listening on" "$WORK/node.log"; do sleep 0.1; done
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; }

# Workload: 10 sessions, 10 peers each (2 editors + 8 observers), each editor
# replaying sveltecomponent at the given rate; then a heavier step.
run() { # name port rate
  "$LOAD" --url "http://127.0.0.1:$2" --dialect ysocketio --sessions 10 --editors 2 --observers 8 \
    --rate "$3" --duration-secs "$SECS" --server-pid "$PID" --session-prefix "$1-$3" 2>/dev/null
}
idle() { # port n
  "$LOAD" --url "http://127.0.0.1:$1" --dialect ysocketio --sessions 100 --idle "$2" --server-pid "$PID" --session-prefix idle 2>/dev/null
}

declare -A R
for rate in 100 400; do
  start_tandem; R[tandem-$rate]=$(run tandem 3100 $rate); stop
  start_node;   R[node-$rate]=$(run node 3200 $rate);     stop
done
for n in 1000 5000 10000; do
  start_tandem; R[tandem-idle-$n]=$(idle 3100 $n); stop
  start_node;   R[node-idle-$n]=$(idle 3200 $n);   stop
done
for k in "${!R[@]}"; do echo "$k ${R[$k]}"; done | sort
echo
echo "| workload | server | updates/s | deliveries/s | p50 ms | p99 ms | p99.9 ms | server CPU (cores) | µs CPU per delivery | converged |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for rate in 100 400; do for s in tandem node; do
  echo "${R[$s-$rate]}" | python3 -c "
import json,sys; d=json.loads(sys.stdin.read()); l=d['latency_ms']; c=d['server_cpu_cores'] or 0
print(f\"| 10×(2+8), {int(d['rate_per_editor'])}/s per editor | $s | {d['updates_per_sec']:.0f} | {d['deliveries_per_sec']:.0f} | {l['p50']:.2f} | {l['p99']:.2f} | {l['p999']:.2f} | {c:.2f} | {c*1e6/max(d['deliveries_per_sec'],1):.1f} | {d['converged']} |\")"
done; done
echo
echo "| idle clients | server | RSS growth (KiB) | clients per GiB |"
echo "|---|---|---|---|"
for n in 1000 5000; do for s in tandem node; do
  echo "${R[$s-idle-$n]}" | python3 -c "
import json,sys; d=json.loads(sys.stdin.read()); b=d['server_rss_kib_before'] or 0; a=d['server_rss_kib_after'] or 0
print(f\"| $n | $s | {a-b} | {d['clients_per_gib'] or 0:.0f} |\")"
done; done
