#!/usr/bin/env bash
# Side-by-side, one run: the everyday workload of issues 13/16 — 10 sessions x
# (1 editor + 4 observers), each editor replaying sveltecomponent at RATE
# updates/s — against Tandem in each of its three dialects (durable log on,
# SQLite) and against the reference servers of the two npm providers: the
# Node y-socket.io server (benches/ysocketio-server, LevelDB) and
# @y/websocket-server (benches/ywebsocket-server, in memory) — and against
# Hocuspocus (benches/hocuspocus-server, no extensions: in memory); with
# SERVERS naming floor-ywebsocket, also a bare Rust relay on Tandem's stack
# (examples/ywebsocket_floor.rs: the floor, no document, no log). Servers
# alternate within each round. Prints every JSON summary, then a Markdown
# table: deliveries/s, server CPU per delivery, p50/p99 edit-to-peer latency.
# Usage: scripts/bench-dialects.sh [seconds per run]   (loopback only)
#   RATES="50 400" (default), ROUNDS=2 (default), SERVERS="..." narrow a run;
#   TANDEM_FLAGS="--update-log false" passes flags to Tandem's server;
#   IDLE="5000" also measures each server's RSS with that many idle clients
#   (100 sessions) and prints idle connections per GiB.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-8}
RATES=${RATES:-50 400}
ROUNDS=${ROUNDS:-2}
SERVERS=${SERVERS:-tandem-native tandem-ysocketio tandem-ywebsocket node-ysocketio node-ywebsocket hocuspocus}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --bins --quiet
[[ " $SERVERS " == *" floor-"* ]] && cargo build --release --example ywebsocket_floor --quiet
(cd benches/ysocketio-server && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
(cd benches/ywebsocket-server && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
(cd benches/hocuspocus-server && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
LOAD=./target/release/tandem-load

start() { # server -> PID, PORT, DIALECT
  rm -rf "$WORK/log" "$WORK/data"
  case "$1" in
    tandem-*)
      PORT=3100; DIALECT=${1#tandem-}
      ./target/release/tandem serve --bind 127.0.0.1:$PORT --max-connections-per-ip 0 --data-dir "$WORK/data" \
        --database-url "sqlite://$WORK/data/tandem.db" --on-demand-sessions --anonymous editor \
        --updates-per-second 5000 --update-burst 10000 ${TANDEM_FLAGS:-} >"$WORK/log" 2>&1 & ;;
    node-ysocketio)
      PORT=3200; DIALECT=ysocketio
      PORT=$PORT PERSIST_DIR="$WORK/data" node benches/ysocketio-server/server.mjs >"$WORK/log" 2>&1 & ;;
    node-ywebsocket)
      PORT=3300; DIALECT=ywebsocket
      PORT=$PORT node benches/ywebsocket-server/server.mjs >"$WORK/log" 2>&1 & ;;
    floor-ywebsocket)
      PORT=3500; DIALECT=ywebsocket
      ./target/release/examples/ywebsocket_floor 127.0.0.1:$PORT >"$WORK/log" 2>&1 & ;;
    hocuspocus)
      PORT=3400; DIALECT=hocuspocus
      PORT=$PORT node benches/hocuspocus-server/server.mjs >"$WORK/log" 2>&1 & ;;
  esac
  PID=$!
  until grep -qs "listening on" "$WORK/log"; do sleep 0.1; done
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; }

OUT="$WORK/results"
for round in $(seq 1 "$ROUNDS"); do
  for rate in $RATES; do
    for s in $SERVERS; do
      start "$s"
      r=$("$LOAD" --url "http://127.0.0.1:$PORT" --dialect "$DIALECT" --sessions 10 --editors 1 --observers 4 \
        --rate "$rate" --duration-secs "$SECS" --server-pid "$PID" --session-prefix "r$round-$rate" 2>/dev/null || true)
      stop
      echo "$s $rate $r" | tee -a "$OUT"
    done
  done
done

for n in ${IDLE:-}; do
  for s in $SERVERS; do
    start "$s"
    r=$("$LOAD" --url "http://127.0.0.1:$PORT" --dialect "$DIALECT" --sessions 100 --idle "$n" --server-pid "$PID" \
      --session-prefix idle 2>/dev/null || true)
    stop
    echo "$s idle $r" | tee -a "$OUT"
  done
done

python3 - "$OUT" <<'PY'
import json, sys, collections
rows = collections.defaultdict(list)
idle = []
for line in open(sys.argv[1]):
    server, rate, js = line.split(' ', 2)
    try:
        d = json.loads(js)
    except ValueError:
        continue
    if rate == 'idle':
        idle.append((server, d))
        continue
    rows[(int(rate), server)].append(d)
print('\n| rate/editor | server | deliveries/s | server CPU per delivery (µs) | p50 (ms) | p99 (ms) | converged |')
print('|---|---|---|---|---|---|---|')
for (rate, server), ds in sorted(rows.items()):
    per = [d['server_cpu_cores'] * d['seconds'] / d['deliveries'] * 1e6 for d in ds if d.get('server_cpu_cores') and d['deliveries']]
    fmt = lambda xs: '–'.join(f'{x:.1f}' if x < 100 else f'{x:.0f}' for x in (min(xs), max(xs))) if xs else 'n/a'
    print(f"| {rate} | {server} | {fmt([d['deliveries_per_sec'] for d in ds])} | {fmt(per)} | "
          f"{fmt([d['latency_ms']['p50'] for d in ds])} | {fmt([d['latency_ms']['p99'] for d in ds])} | "
          f"{all(d['converged'] for d in ds)} |")
if idle:
    print('\n| server | idle clients | RSS before → after (MiB) | KiB per client | clients per GiB |')
    print('|---|---|---|---|---|')
    for server, d in idle:
        before, after, n = d['server_rss_kib_before'], d['server_rss_kib_after'], d['idle_clients']
        per = (after - before) / n
        print(f"| {server} | {n} | {before/1024:.1f} → {after/1024:.1f} | {per:.1f} | {1024*1024/per:,.0f} |")
PY
