#!/usr/bin/env python3
"""Leases at scale: etcdcore against real etcd 3.5 in the same run.

For each target, on one member and through a follower of a 3-member cluster
(members on 127.0.0.11-13, the load sent to a follower, which forwards
keep-alives to the leader), a fresh server and the Rust loadgen's ``--op
lease``: ``--leases`` leases (default 100,000) granted with one key each, every
lease renewed ``--rounds`` times over 64 keep-alive streams, then every lease
revoked. Reports the median of ``--repeats`` runs of each phase's rate and
latency, and the ratio to etcd.

Usage: ``pip install . && python bench/leases.py [--leases 100000] [--write-results]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent / "tests"))

from run import (  # noqa: E402
    RESULTS_MD,
    build_loadgen,
    etcd_binary,
    etcdcore_command,
    git_commit,
    log,
    machine_facts,
    running_server,
)

from cluster import Cluster  # noqa: E402

TARGETS = ("etcdcore", "etcd")
TOPOLOGIES = ("one member", "via follower")
PHASES = ("lease-grant", "lease-keepalive", "lease-revoke")
#: Concurrent callers (grant, revoke) and keep-alive streams, over 4 connections.
CLIENTS, CONNS = 64, 4


def loadgen_phases(loadgen: Path, endpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        str(loadgen),
        "--endpoint", endpoint,
        "--op", "lease",
        "--leases", str(args.leases),
        "--clients", str(CLIENTS),
        "--conns", str(CONNS),
        "--keepalive-rounds", str(args.rounds),
        "--timeout-secs", "60",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen exited {proc.returncode}: {proc.stderr.strip()}")
    phases = {}
    for line in proc.stdout.splitlines():
        if line.strip():
            r = json.loads(line)
            if r["errors"]:
                raise RuntimeError(f"{r['op']}: {r['errors']} errors, first: {r['first_error']}")
            phases[r["op"]] = r
    return phases


def one_run(target: str, topology: str, loadgen: Path, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=args.workdir) as d:
        if topology == "one member":
            argv0 = [str(etcd_binary())] if target == "etcd" else etcdcore_command()
            with running_server(target, argv0, Path(d), 60, False) as srv:
                return loadgen_phases(loadgen, srv.endpoint, args)
        command = [str(etcd_binary())] if target == "etcd" else None
        c = Cluster.create(Path(d), 3, command=command).start()
        try:
            return loadgen_phases(loadgen, c.followers()[0].endpoint, args)
        finally:
            c.stop()


def bench(args: argparse.Namespace, loadgen: Path) -> dict[tuple[str, str, str], dict[str, float]]:
    """(target, topology, phase) -> medians of ops_per_sec, p50_ms, p99_ms."""
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for _ in range(args.repeats):
        # Interleaved, so that a noisy minute on the machine hits both targets.
        for topology in TOPOLOGIES:
            for target in TARGETS:
                r = one_run(target, topology, loadgen, args)
                runs.setdefault((target, topology), []).append(r)
                log(
                    f"{target} {topology}: "
                    + ", ".join(f"{p} {r[p]['ops_per_sec']:,.0f}/s" for p in PHASES)
                )
    out = {}
    for (target, topology), rs in runs.items():
        for p in PHASES:
            out[(target, topology, p)] = {
                k: statistics.median(r[p][k] for r in rs)
                for k in ("ops_per_sec", "p50_ms", "p99_ms")
            }
    return out


def table(res: dict[tuple[str, str, str], dict[str, float]]) -> str:
    rows = [
        "| scenario | etcdcore ops/s | etcd ops/s | ratio "
        "| etcdcore p50/p99 ms | etcd p50/p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for topology in TOPOLOGIES:
        for p in PHASES:
            a, b = res[("etcdcore", topology, p)], res[("etcd", topology, p)]
            rows.append(
                f"| {p} ({topology}) | {a['ops_per_sec']:,.0f} | {b['ops_per_sec']:,.0f} | "
                f"{a['ops_per_sec'] / b['ops_per_sec']:.2f}x | "
                f"{a['p50_ms']:.2f} / {a['p99_ms']:.2f} | {b['p50_ms']:.2f} / {b['p99_ms']:.2f} |"
            )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--leases", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=3, help="keep-alives per lease")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--write-results", action="store_true", help="append to bench/RESULTS.md")
    p.add_argument("--workdir", default=None, help="where the data dirs go (default: tmp)")
    args = p.parse_args(argv)
    loadgen = build_loadgen()
    started = time.monotonic()
    res = bench(args, loadgen)
    md = table(res)
    print(md)
    if args.write_results:
        facts = machine_facts()
        with open(RESULTS_MD, "a", encoding="utf-8") as f:
            f.write(
                f"\n## Leases ({time.strftime('%Y-%m-%d')}, commit {git_commit()})\n\n"
                f"`python bench/leases.py`: {args.leases:,} leases, one key each, granted and "
                f"revoked by {CLIENTS} callers, each renewed {args.rounds} times over "
                f"{CLIENTS} keep-alive streams (64 unanswered each); {CONNS} connections; "
                f"median of {args.repeats} runs ({time.monotonic() - started:.0f} s in all); "
                f'{facts["nproc"]} CPUs ({facts["cpu_model"]}), etcd 3.5.1. "via follower": '
                "the load goes to a follower of a 3-member cluster on 127.0.0.11-13.\n\n"
                f"{md}\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
