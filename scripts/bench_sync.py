#!/usr/bin/env python3
"""Benchmark of `tandem sync` (BENCHMARKS.md, "Folder sync").

Starts a release server on a free port with a fresh SQLite database, then:

1. initial sync of a generated tree of FILES files: `tandem sync A --create`
   (upload) and a second agent on an empty folder B (download), each timed
   from process start to its "synced N files" line;
2. save-to-other-folder latency: SAVES saves of one file in A (each an
   editor-style atomic save: temp file + rename), timed from the rename to
   the moment B's copy holds the new text (polled every 0.5 ms).

Usage: scripts/bench_sync.py [--files 1000] [--saves 200] [--debounce-ms 50]
Needs target/release/tandem (`make build`). Standard library only.
"""

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "tandem")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    sys.exit("server did not start")


class Agent:
    """A `tandem sync` process whose stdout lines are collected."""

    def __init__(self, args):
        self.lines = []
        self.proc = subprocess.Popen(
            [BIN, "sync", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, needle, timeout=600):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for line in self.lines:
                if needle in line:
                    return line
            if self.proc.poll() is not None:
                sys.exit("agent exited:\n" + "\n".join(self.lines))
            time.sleep(0.005)
        sys.exit(f"no '{needle}' from the agent")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def make_tree(root, n, rng):
    """n source-like files in nested folders, 0.5-6 KiB each."""
    words = "let mut self fn return match Some None Ok Err impl pub struct enum use".split()
    total = 0
    for i in range(n):
        depth = rng.randint(0, 3)
        folders = [f"mod{rng.randint(0, 9)}" for _ in range(depth)]
        path = os.path.join(root, *folders, f"file{i}.rs")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        lines = []
        for _ in range(rng.randint(10, 150)):
            lines.append("    " + " ".join(rng.choice(words) for _ in range(rng.randint(2, 8))))
        text = f"// file {i}\n" + "\n".join(lines) + "\n"
        total += len(text)
        with open(path, "w") as f:
            f.write(text)
    return total


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--saves", type=int, default=200)
    ap.add_argument("--debounce-ms", type=int, default=50)
    a = ap.parse_args()
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} missing: run `make build` first")

    work = tempfile.mkdtemp(prefix="tandem-bench-sync-")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [BIN, "--bind", f"127.0.0.1:{port}", "--data-dir", os.path.join(work, "data"),
         "--secret", "bench", "--max-files-per-session", str(max(5000, a.files + 10))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    agents = []
    try:
        wait_http(url)
        token = subprocess.check_output(
            [BIN, "token", "--user", "bench", "--name", "Bench", "--secret", "bench",
             "--data-dir", os.path.join(work, "data")], text=True).strip()
        rng = random.Random(42)
        dir_a, dir_b = os.path.join(work, "a"), os.path.join(work, "b")
        size = make_tree(dir_a, a.files, rng)
        common = ["--server", url, "--token", token, "--debounce-ms", str(a.debounce_ms)]

        t0 = time.perf_counter()
        agent_a = Agent([dir_a, "--create", "bench", *common])
        agents.append(agent_a)
        agent_a.wait_for("synced ")
        upload = time.perf_counter() - t0
        sid = agent_a.wait_for("created session ").split("created session ")[1].split()[0]

        t0 = time.perf_counter()
        agent_b = Agent([dir_b, "--session", sid, *common])
        agents.append(agent_b)
        agent_b.wait_for("synced ")
        download = time.perf_counter() - t0

        target = "file0.rs"
        path_a = next(os.path.join(d, target) for d, _, fs in os.walk(dir_a) if target in fs)
        rel = os.path.relpath(path_a, dir_a)
        path_b = os.path.join(dir_b, rel)
        base = open(path_a).read()
        lat = []
        for i in range(a.saves):
            text = base + f"// save {i}\n"
            tmp = path_a + ".tmp~"
            with open(tmp, "w") as f:
                f.write(text)
            t0 = time.perf_counter()
            os.replace(tmp, path_a)
            deadline = t0 + 10
            while True:
                try:
                    with open(path_b) as f:
                        if f.read() == text:
                            break
                except OSError:
                    pass
                if time.perf_counter() > deadline:
                    sys.exit(f"save {i} did not arrive within 10 s")
                time.sleep(0.0005)
            lat.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.05)

        print(f"tree: {a.files} files, {size / 1024:.0f} KiB; debounce {a.debounce_ms} ms")
        print(f"initial sync, upload (--create):     {upload:.2f} s")
        print(f"initial sync, download (empty dir):  {download:.2f} s")
        print(
            f"save -> other folder ({a.saves} saves): p50 {statistics.median(lat):.1f} ms, "
            f"p99 {pct(lat, 99):.1f} ms, max {max(lat):.1f} ms"
        )
    finally:
        for ag in agents:
            ag.stop()
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
