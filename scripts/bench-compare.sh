#!/usr/bin/env bash
# Side-by-side comparison, one run: the same tandem-load workload against
# Tandem (y-socket.io dialect) and the original Node y-socket.io server.
#  1. A rate sweep: 10 sessions x (2 editors + 8 observers), each editor
#     replaying sveltecomponent at 25..1600 updates/s, alternating servers at
#     each step. A server's sweep stops once its p99 passes 2 s or its
#     replicas fail to converge (it is saturated; higher rates only queue).
#  2. Throughput at equal p99: the most deliveries/s each server sustained
#     with p99 within 10 ms and within 50 ms, and the ratio.
#  3. Idle-connection capacity at 1k/5k/10k clients.
#  4. The latency target's workload: one session, 2 editors + 8 observers,
#     200 updates/s in all, three runs per server.
# Prints every JSON summary, then Markdown tables (see BENCHMARKS.md).
# Usage: scripts/bench-compare.sh [seconds per step]   (loopback only)
#   PARTS="sweep idle latency" (default all three), RATES="25 50 ..." narrow a run.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
RATES=${RATES:-25 50 100 200 300 400 600 800 1200 1600}
PARTS=${PARTS:-sweep idle latency}
has() { [[ " $PARTS " == *" $1 "* ]]; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --bins --quiet
(cd benches/ysocketio-server && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
LOAD=./target/release/tandem-load

start_tandem() {
  rm -rf "$WORK/tandem.log" "$WORK/t" # never read the previous server's "listening on"
  ./target/release/tandem serve --bind 127.0.0.1:3100 --max-connections-per-ip 0 --data-dir "$WORK/t" --database-url "sqlite://$WORK/t/tandem.db" \
    --on-demand-sessions --anonymous editor --updates-per-second 5000 --update-burst 10000 >"$WORK/tandem.log" 2>&1 &
  PID=$!
  until grep -qs "listening on" "$WORK/tandem.log"; do sleep 0.1; done
}
start_node() {
  rm -rf "$WORK/node.log" "$WORK/level"
  PORT=3200 PERSIST_DIR="$WORK/level" node benches/ysocketio-server/server.mjs >"$WORK/node.log" 2>&1 &
  PID=$!
  until grep -qs "listening on" "$WORK/node.log"; do sleep 0.1; done
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; }
port() { [ "$1" = tandem ] && echo 3100 || echo 3200; }

run() { # server rate [sessions] -> JSON summary (also when replicas diverged)
  "$LOAD" --url "http://127.0.0.1:$(port "$1")" --dialect ysocketio --sessions "${3:-10}" --editors 2 --observers 8 \
    --rate "$2" --duration-secs "$SECS" --server-pid "$PID" --session-prefix "$1-$2-${3:-10}" 2>/dev/null || true
}
idle() { # server n
  "$LOAD" --url "http://127.0.0.1:$(port "$1")" --dialect ysocketio --sessions 100 --idle "$2" --server-pid "$PID" --session-prefix idle 2>/dev/null
}
saturated() { # JSON -> exit 0 if p99 > 2 s or not converged
  python3 -c "import json,sys; d=json.loads(sys.argv[1] or '{}'); sys.exit(0 if (not d or not d['converged'] or d['latency_ms']['p99'] > 2000) else 1)" "$1"
}

declare -A R
declare -A DONE
has sweep && for rate in $RATES; do
  for s in tandem node; do
    [ -n "${DONE[$s]:-}" ] && continue
    "start_$s"; R[$s-$rate]=$(run "$s" "$rate"); stop
    echo "$s-$rate ${R[$s-$rate]}"
    if saturated "${R[$s-$rate]}"; then DONE[$s]=1; fi
  done
done
has idle && for n in 1000 5000 10000; do
  for s in tandem node; do
    "start_$s"; R[$s-idle-$n]=$(idle "$s" "$n"); stop
    echo "$s-idle-$n ${R[$s-idle-$n]}"
  done
done
has latency && for i in 1 2 3; do
  for s in tandem node; do
    "start_$s"; R[$s-lat-$i]=$(run "$s" 100 1); stop
    echo "$s-lat-$i ${R[$s-lat-$i]}"
  done
done

{ for k in "${!R[@]}"; do echo "$k ${R[$k]}"; done; } | python3 scripts/bench-report.py
