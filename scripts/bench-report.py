#!/usr/bin/env python3
"""Markdown tables from bench-compare.sh results: lines of `<key> <JSON summary>`
on stdin (keys: <server>-<rate>, <server>-idle-<n>, <server>-lat-<run>)."""
import json, sys
rows = {}
for line in sys.stdin:
    k, _, j = line.strip().partition(' ')
    if j: rows[k] = json.loads(j)
rates = sorted({int(k.split('-')[1]) for k in rows if k.split('-')[1].isdigit()})
print()
print('| updates/s per editor | server | updates/s | deliveries/s | p50 ms | p99 ms | p99.9 ms | server CPU (cores) | µs CPU per delivery | deliveries/s per core | converged |')
print('|---|---|---|---|---|---|---|---|---|---|---|')
for r in rates:
    for s in ('tandem', 'node'):
        d = rows.get(f'{s}-{r}')
        if not d:
            print(f'| {r} | {s} | (not run: saturated at a lower rate) | | | | | | | | |'); continue
        l, c, dps = d['latency_ms'], d['server_cpu_cores'] or 0, d['deliveries_per_sec']
        print(f"| {r} | {s} | {d['updates_per_sec']:.0f} | {dps:.0f} | {l['p50']:.2f} | {l['p99']:.2f} | {l['p999']:.2f} | {c:.2f} | {c*1e6/max(dps,1):.1f} | {dps/max(c,1e-9):.0f} | {d['converged']} |")
print()
print('| p99 budget | Tandem deliveries/s | Node deliveries/s | ratio |')
print('|---|---|---|---|')
for budget in (10, 50):
    best = {}
    for s in ('tandem', 'node'):
        ok = [d['deliveries_per_sec'] for k, d in rows.items() if k.startswith(s + '-') and k.split('-')[1].isdigit()
              and d['converged'] and d['latency_ms']['p99'] <= budget]
        best[s] = max(ok, default=0)
    ratio = f"{best['tandem']/best['node']:.1f}×" if best['node'] else 'Node met no step'
    print(f"| ≤ {budget} ms | {best['tandem']:.0f} | {best['node']:.0f} | {ratio} |")
lat = [(k, d) for k, d in sorted(rows.items()) if '-lat-' in k]
if lat:
    print()
    print('| run | server | updates/s | p50 ms | p90 ms | p99 ms | p99.9 ms | server CPU (cores) | converged |')
    print('|---|---|---|---|---|---|---|---|---|')
    for k, d in lat:
        l = d['latency_ms']
        print(f"| {k.split('-')[-1]} | {k.split('-')[0]} | {d['updates_per_sec']:.0f} | {l['p50']:.2f} | {l['p90']:.2f} | {l['p99']:.2f} | {l['p999']:.2f} | {d['server_cpu_cores'] or 0:.2f} | {d['converged']} |")
print()
print('| idle clients | server | RSS growth (KiB) | KiB per client | clients per GiB |')
print('|---|---|---|---|---|')
for n in (1000, 5000, 10000):
    for s in ('tandem', 'node'):
        d = rows.get(f'{s}-idle-{n}')
        if not d: continue
        g = (d['server_rss_kib_after'] or 0) - (d['server_rss_kib_before'] or 0)
        print(f"| {n} | {s} | {g} | {g/n:.1f} | {d['clients_per_gib'] or 0:.0f} |")
