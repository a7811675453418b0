#!/usr/bin/env python3
"""Benchmark of cluster mode (BENCHMARKS.md, "Cluster mode").

In one run, on one PostgreSQL and a redis-server of its own (free port, no
persistence), with release builds:

1. `single`: one node without Redis; editors and observers on it;
2. `same-node`: two cluster nodes A and B; editors and observers on A;
3. `cross-node`: the same two nodes; editors on A, observers on B.

Each run is `tandem-load` with the same workload (fresh sessions, the
durable log on). Reported per run: edit-to-peer latency p50/p99 as the
observers see it, Tandem CPU (both nodes summed in cluster runs) per
update sent, Redis CPU per update, and convergence.

Usage: scripts/bench_cluster.py [--sessions 10] [--rate 50] [--secs 20]
Needs target/release/{tandem,tandem-load} (`make build`), PostgreSQL at
$TANDEM_TEST_POSTGRES (scripts/services.sh) and redis-server.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "tandem")
LOAD = os.path.join(ROOT, "target", "release", "tandem-load")
SECRET = "bench-cluster-secret"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, path="/readyz", timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + path, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"{url} not ready")


def cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def psql(server_url, sql):
    subprocess.run(["psql", server_url, "-qc", sql], check=True, stdout=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--editors", type=int, default=1)
    ap.add_argument("--observers", type=int, default=1)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--secs", type=int, default=20)
    a = ap.parse_args()

    pg = os.environ.get("TANDEM_TEST_POSTGRES")
    if not pg:
        sys.exit("set TANDEM_TEST_POSTGRES (eval \"$(bash scripts/services.sh)\")")
    base = pg.rsplit("/", 1)[0]
    for name in ("tandem_bench_cluster", "tandem_bench_single"):
        psql(pg, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        psql(pg, f"CREATE DATABASE {name}")
    redis_bin = shutil.which("redis-server") or sys.exit("redis-server not installed")

    tmp = tempfile.mkdtemp(prefix="tandem-bench-cluster-")
    procs = []
    try:
        rport = free_port()
        redis = subprocess.Popen(
            [redis_bin, "--bind", "127.0.0.1", "--port", str(rport), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        procs.append(redis)
        time.sleep(0.3)

        def node(name, db, redis_url=None):
            port = free_port()
            args = [BIN, "serve", "--bind", f"127.0.0.1:{port}", "--secret", SECRET,
                    "--database-url", f"{base}/{db}", "--data-dir", os.path.join(tmp, name),
                    "--on-demand-sessions", "--web-dir", os.path.join(tmp, "no-web")]
            if redis_url:
                args += ["--redis-url", redis_url, "--node-id", name]
            p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 env={**os.environ, "RUST_LOG": "warn"})
            procs.append(p)
            url = f"http://127.0.0.1:{port}"
            wait_http(url)
            return p, url

        single, single_url = node("single", "tandem_bench_single")
        na, url_a = node("A", "tandem_bench_cluster", f"redis://127.0.0.1:{rport}")
        nb, url_b = node("B", "tandem_bench_cluster", f"redis://127.0.0.1:{rport}")

        runs = [
            ("single", single_url, single_url, [single.pid]),
            ("same-node", url_a, url_a, [na.pid, nb.pid]),
            ("cross-node", url_a, url_b, [na.pid, nb.pid]),
        ]
        results = []
        for name, url, obs_url, pids in runs:
            cmd = [LOAD, "--url", url, "--observer-url", obs_url, "--secret", SECRET,
                   "--session-prefix", f"bc-{name}", "--sessions", str(a.sessions),
                   "--editors", str(a.editors), "--observers", str(a.observers),
                   "--rate", str(a.rate), "--duration-secs", str(a.secs), "--check-http"]
            for p in pids:
                cmd += ["--server-pid", str(p)]
            r0 = cpu_secs(redis.pid)
            out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            r1 = cpu_secs(redis.pid)
            if out.returncode != 0:
                sys.exit(f"{name}: tandem-load failed:\n{out.stdout}")
            s = json.loads(out.stdout.strip().splitlines()[-1])
            ups = s["updates_per_sec"]
            s["run"] = name
            s["tandem_cpu_us_per_update"] = s["server_cpu_cores"] * 1e6 / ups
            s["redis_cpu_us_per_update"] = (r1 - r0) / s["seconds"] * 1e6 / ups
            results.append(s)
            print(json.dumps(s), file=sys.stderr)

        single_cpu = results[0]["tandem_cpu_us_per_update"]
        print(f"\n{a.sessions} sessions x ({a.editors} editor + {a.observers} observer), "
              f"{a.rate:g} updates/s per editor, {a.secs} s per run, durable log on (PostgreSQL)\n")
        print("| run | updates/s | p50 ms | p99 ms | Tandem CPU µs/update | vs single | Redis CPU µs/update | converged |")
        print("|---|---|---|---|---|---|---|---|")
        for s in results:
            lat = s["latency_ms"]
            print(f"| {s['run']} | {s['updates_per_sec']:.0f} | {lat['p50']:.2f} | {lat['p99']:.2f} | "
                  f"{s['tandem_cpu_us_per_update']:.0f} | {s['tandem_cpu_us_per_update'] / single_cpu:.2f}× | "
                  f"{s['redis_cpu_us_per_update']:.1f} | {s['converged'] and s['http_converged']} |")
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
