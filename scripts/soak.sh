#!/usr/bin/env bash
# Soak (issue 10; `make soak`, not in CI): a release server on loopback with
# a small document cache and a short idle unload, driven by tandem-load for
# SOAK_MINUTES (default 30) across many sessions whose clients periodically
# all leave and come back (`--churn-secs`), so documents are evicted,
# unloaded and reloaded all along. Every 10 s the server's RSS, CPU and
# document counters go into a CSV. At the end: RSS over time (after warm-up
# vs end), latency percentiles, and the convergence checks (every observer
# equals the merge of all updates sent, and `GET /api/sessions/{id}/text`
# equals it too). Exits non-zero if replicas diverged.
#
# Knobs (environment): SOAK_MINUTES, SOAK_SESSIONS (24), SOAK_EDITORS (2),
# SOAK_OBSERVERS (3), SOAK_RATE (updates/s per editor, 5), SOAK_CHURN_SECS
# (60), SOAK_AWAY_SECS (8), SOAK_MAX_DOCS (8), SOAK_IDLE_UNLOAD_SECS (3),
# SOAK_PORT (3300), SOAK_OUT (results directory, target/soak).
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${SOAK_MINUTES:-30}
SESSIONS=${SOAK_SESSIONS:-24}
EDITORS=${SOAK_EDITORS:-2}
OBSERVERS=${SOAK_OBSERVERS:-3}
RATE=${SOAK_RATE:-5}
CHURN=${SOAK_CHURN_SECS:-60}
AWAY=${SOAK_AWAY_SECS:-8}
MAX_DOCS=${SOAK_MAX_DOCS:-8}
IDLE=${SOAK_IDLE_UNLOAD_SECS:-3}
PORT=${SOAK_PORT:-3300}
OUT=${SOAK_OUT:-target/soak}
SECRET=soak-secret
URL="http://127.0.0.1:$PORT"

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --bins --quiet
mkdir -p "$OUT"
rm -f "$OUT"/{server.log,load.log,load.json,rss.csv,report.md}
WORK=$(mktemp -d)
SAMPLER=
cleanup() {
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null || true
  [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

./target/release/tandem serve --bind "127.0.0.1:$PORT" --secret "$SECRET" \
  --data-dir "$WORK" --database-url "sqlite://$WORK/tandem.db" --web-dir "$WORK/no-web" \
  --on-demand-sessions --max-loaded-documents "$MAX_DOCS" --idle-unload-secs "$IDLE" \
  --max-connections-per-ip 0 >"$OUT/server.log" 2>&1 &
PID=$!
for _ in $(seq 300); do grep -qs "listening on" "$OUT/server.log" && break; sleep 0.1; done
grep -qs "listening on" "$OUT/server.log" || { echo "server did not start:"; cat "$OUT/server.log"; exit 1; }

# One sample every 10 s: seconds, RSS (KiB), CPU seconds, documents loaded,
# documents unloaded so far, document loads so far.
metric() { # name -> sum of the series (0 if absent)
  awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%d", s }' "$WORK/metrics"
}
sample() {
  local t=$1 rss cpu
  rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$PID/status")
  cpu=$(awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$PID/stat" 2>/dev/null | tr -d ')')
  curl -s "$URL/metrics" >"$WORK/metrics" || : >"$WORK/metrics"
  echo "$t,$rss,$cpu,$(metric tandem_documents_loaded),$(metric tandem_documents_unloaded_total),$(metric tandem_document_load_seconds_count)"
}
echo "seconds,rss_kib,cpu_seconds,documents_loaded,documents_unloaded_total,document_loads_total" >"$OUT/rss.csv"
T0=$(date +%s) # seconds in the CSV count from here (server ready)
(
  while kill -0 "$PID" 2>/dev/null; do
    sample $(($(date +%s) - T0)) >>"$OUT/rss.csv"
    sleep 10
  done
) &
SAMPLER=$!

CHURNING="all of a session's clients leave every ${CHURN}s for ${AWAY}s"
[ "$CHURN" = 0 ] && CHURNING="no churn"
echo "soak: $MINUTES min, $SESSIONS sessions x ($EDITORS editors + $OBSERVERS observers), $RATE updates/s per editor," \
  "$CHURNING; --max-loaded-documents $MAX_DOCS --idle-unload-secs $IDLE"
STATUS=0
LOAD_AT=$(($(date +%s) - T0)) # tandem-load connects its clients, then sends
./target/release/tandem-load --url "$URL" --secret "$SECRET" --sessions "$SESSIONS" \
  --editors "$EDITORS" --observers "$OBSERVERS" --rate "$RATE" --duration-secs $((MINUTES * 60)) \
  --churn-secs "$CHURN" --churn-away-secs "$AWAY" --check-http --session-prefix soak \
  --trace "${TANDEM_TRACES:-$(pwd)/tests/data/traces}/rustcode.json.gz" --server-pid "$PID" \
  >"$OUT/load.json" 2>"$OUT/load.log" || STATUS=$?
sleep 10
sample "end" >>"$OUT/rss.csv" || true
kill "$SAMPLER" 2>/dev/null || true
SAMPLER=
kill -0 "$PID" 2>/dev/null || { echo "the server died:"; tail -20 "$OUT/server.log"; STATUS=1; }

python3 - "$OUT" "$MINUTES" "$STATUS" "$LOAD_AT" <<'EOF' | tee "$OUT/report.md"
import csv, json, sys
out, minutes, status, load_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rows = [r for r in csv.DictReader(open(f"{out}/rss.csv")) if r["seconds"] != "end" and r["rss_kib"]]
end_row = [r for r in csv.DictReader(open(f"{out}/rss.csv")) if r["seconds"] == "end"]
try:
    load = json.loads(open(f"{out}/load.json").read().strip().splitlines()[-1])
except Exception:
    load = {}
mib = lambda r: int(r["rss_kib"]) / 1024
t = lambda r: int(r["seconds"]) - load_at  # seconds since tandem-load started
rows = [r for r in rows if t(r) >= 0]
run = minutes * 60
warm = min(120, run // 5)  # warm-up: the first 2 minutes (or 20% of a short run)
after = [r for r in rows if warm <= t(r) <= run]
print(f"## Soak: {minutes} min")
print()
print("Times count from the start of tandem-load (its clients connect during the first seconds).")
print()
if after:
    w, e = after[0], after[-1]
    xs, ys = [t(r) for r in after], [mib(r) for r in after]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var * 3600 if var else 0.0
    print(f"- server RSS: {mib(rows[0]):.1f} MiB at start, {mib(w):.1f} MiB after warm-up ({t(w)} s), "
          f"{mib(e):.1f} MiB at the end ({t(e)} s), max {max(mib(r) for r in rows):.1f} MiB; "
          f"trend after warm-up {slope:+.1f} MiB/h (least squares over {n} samples)")
    if end_row:
        print(f"- 10 s after the load stopped (clients gone): {mib(end_row[0]):.1f} MiB")
    last = end_row[0] if end_row else rows[-1]
    cpu = float(last["cpu_seconds"] or 0)
    print(f"- documents: {last['document_loads_total']} loads, {last['documents_unloaded_total']} unloads "
          f"in all; {last['documents_loaded']} still loaded 10 s after the clients left; "
          f"server CPU {cpu:.0f} s in all ({cpu / max(t(rows[-1]), 1):.2f} cores on average)")
print()
print("| minute | RSS MiB | documents loaded | unloads so far | loads so far |")
print("|---|---|---|---|---|")
for r in rows:
    if t(r) % 60 < 10:
        print(f"| {t(r) // 60} | {mib(r):.1f} | {r['documents_loaded']} | {r['documents_unloaded_total']} | {r['document_loads_total']} |")
print()
if load:
    l = load["latency_ms"]
    print(f"- load: {load['updates_sent']} updates ({load['updates_per_sec']:.0f}/s), "
          f"{load['deliveries']} deliveries, {load['reconnects']} deliberate reconnects, "
          f"{load['disconnects']} unexpected disconnects, {load['errors']} error events")
    print(f"- edit-to-peer latency ms: p50 {l['p50']:.2f}, p90 {l['p90']:.2f}, p99 {l['p99']:.2f}, "
          f"p99.9 {l['p999']:.2f}, max {l['max']:.2f} ({l['samples']} samples)")
    print(f"- convergence: observers {load['converged']}, "
          f"GET /api/sessions/{{id}}/text {load.get('http_converged')} ({load.get('http_checked')} sessions)")
else:
    print("- tandem-load produced no summary (see load.log)")
print(f"- tandem-load exit status: {status}")
EOF
echo "(CSV: $OUT/rss.csv, load: $OUT/load.json, $OUT/load.log, server log: $OUT/server.log)"
exit "$STATUS"
