#!/usr/bin/env python3
"""Memory per watcher: etcdcore and etcd 3.5 each holding 100,000 idle watchers.

For each target and repeat: a fresh server on its default flags; its resident
memory (VmRSS) once it answers; the Rust loadgen (``--op watch-hold``) creates
``--watchers`` watchers (default 100,000), each on a key of its own, over
``--streams`` Watch streams (default 100) on 4 connections, and holds them;
once every watcher is created (and a 2 s settle), the RSS again. Memory per
watcher is the growth divided by the watchers. Medians over ``--repeat`` runs.

Prints a Markdown table (``--write-results`` appends it to bench/RESULTS.md).
Usage: ``pip install . && python bench/watch_memory.py [--watchers 100000]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import run as bench  # bench/run.py: servers, loadgen, machine facts
from scale import rss_mb


def hold(endpoint: str, args: argparse.Namespace) -> tuple[subprocess.Popen[str], dict]:
    """Starts the loadgen holding the watchers; returns it once all are created."""
    import json

    cmd = [
        str(bench.LOADGEN_BIN), "--endpoint", endpoint, "--op", "watch-hold",
        "--watchers", str(args.watchers), "--streams", str(args.streams),
        "--clients", "4", "--conns", "4", "--duration-secs", "600",
        # The per-call deadline would end the held streams.
        "--timeout-secs", "3600",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError(f"loadgen: {proc.stderr.read() if proc.stderr else ''}")
    return proc, json.loads(line)


def measure(target: str, argv0: list[str], workdir: Path, args: argparse.Namespace) -> dict:
    server = bench.Server(target, argv0, workdir)
    server.start(120)
    try:
        assert server.proc is not None
        time.sleep(1)
        before = rss_mb(server.proc.pid)
        started = time.monotonic()
        proc, created = hold(server.endpoint, args)
        create_s = time.monotonic() - started
        try:
            if created.get("errors"):
                raise RuntimeError(f"{target}: {created}")
            time.sleep(2)
            after = rss_mb(server.proc.pid)
        finally:
            proc.kill()
            proc.wait()
        return {
            "target": target,
            "rss_before_mb": before,
            "rss_after_mb": after,
            "bytes_per_watcher": (after - before) * 2**20 / args.watchers,
            "create_s": create_s,
        }
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--watchers", type=int, default=100_000)
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--targets", default="etcdcore,etcd")
    ap.add_argument("--write-results", action="store_true")
    args = ap.parse_args(argv)
    loadgen = bench.build_loadgen()
    assert loadgen == bench.LOADGEN_BIN
    etcd_bin = bench.etcd_binary()
    targets = args.targets.split(",")
    stamp = dt.datetime.now(dt.timezone.utc)
    runs: dict[str, list[dict]] = {t: [] for t in targets}
    for i in range(args.repeat):
        for t in targets:
            work = bench.OUT_DIR / f"watchmem-{stamp:%Y%m%d-%H%M%S}" / f"{t}-{i}"
            r = measure(t, bench.server_command(t, etcd_bin), work, args)
            bench.log(f"{t} run {i + 1}: {r}")
            runs[t].append(r)

    def med(t: str, k: str) -> float:
        return statistics.median(r[k] for r in runs[t])

    lines = [
        f"| target | RSS idle MB | RSS with {args.watchers:,} watchers MB "
        "| bytes per watcher | create all s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for t in targets:
        lines.append(
            f"| {t} | {med(t, 'rss_before_mb'):.1f} | {med(t, 'rss_after_mb'):.1f} "
            f"| {med(t, 'bytes_per_watcher'):,.0f} | {med(t, 'create_s'):.1f} |"
        )
    if "etcd" in targets and "etcdcore" in targets:
        ratio = med("etcdcore", "bytes_per_watcher") / med("etcd", "bytes_per_watcher")
        lines.append(f"\nmemory per watcher, etcdcore / etcd: {ratio:.2f}x")
    table = "\n".join(lines)
    print(table)
    if args.write_results:
        facts = bench.machine_facts()
        block = (
            f"\n## Watchers held: memory per watcher ({stamp:%Y-%m-%d %H:%M} UTC)\n\n"
            f"- commit: `{bench.git_commit()}`\n"
            f"- machine: {facts['nproc']} CPUs, {facts['cpu_model']}, kernel {facts['kernel']}\n"
            f"- `python bench/watch_memory.py`: {args.watchers:,} watchers, one key each, over "
            f"{args.streams} streams on 4 connections; median of {args.repeat} runs; "
            f"etcd {bench.etcd_version(etcd_bin)}\n\n{table}\n"
        )
        with open(bench.RESULTS_MD, "a", encoding="utf-8") as f:
            f.write(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
