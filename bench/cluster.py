#!/usr/bin/env python3
"""3-member cluster benchmark: etcdcore against real etcd 3.5 in the same run.

Starts a fresh 3-member cluster of each (same flags, data dirs on the same
disk, members on 127.0.0.11-13), runs the Rust loadgen against the leader or a
follower, and measures failover: with one client writing every 10 ms over all
members, the time from kill -9 of the leader to the next acknowledged write.

Usage: ``python bench/cluster.py [--quick] [--write-results]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent / "tests"))

from run import (  # noqa: E402
    RESULTS_MD,
    Scenario,
    build_loadgen,
    etcd_binary,
    git_commit,
    log,
    machine_facts,
    run_loadgen,
)

from cluster import Cluster  # noqa: E402
from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc  # noqa: E402

TARGETS = ("etcdcore", "etcd")
#: (scenario, which member the load goes to)
SCENARIOS: tuple[tuple[Scenario, str], ...] = (
    (Scenario("put-16", "put", 16, 4, "durable puts to the leader"), "leader"),
    (Scenario("put-256", "put", 256, 16, "durable puts to the leader"), "leader"),
    (Scenario("put-16-via-follower", "put", 16, 4, "puts forwarded by a follower"), "follower"),
    (Scenario("get-linearizable-16", "get-linearizable", 16, 4, "ReadIndex on a follower"),
     "follower"),
    (Scenario("get-serializable-16", "get-serializable", 16, 4, "local reads on a follower"),
     "follower"),
)  # fmt: skip


def command(target: str) -> list[str] | None:
    return [str(etcd_binary())] if target == "etcd" else None


def measure_failover(c: Cluster) -> float:
    """Seconds from kill -9 of the leader to the next acknowledged write."""
    channels = [grpc.insecure_channel(m.endpoint) for m in c.members]
    stop = threading.Event()
    acked: list[float] = []

    def writer() -> None:
        i = 0
        while not stop.is_set():
            ch = channels[i % len(channels)]
            i += 1
            try:
                rpc_pb2_grpc.KVStub(ch).Put(
                    rpc_pb2.PutRequest(key=b"failover", value=str(i).encode()), timeout=1
                )
                acked.append(time.monotonic())
            except grpc.RpcError:
                pass
            time.sleep(0.01)

    t = threading.Thread(target=writer)
    t.start()
    try:
        time.sleep(1)
        leader = c.leader()
        killed_at = time.monotonic()
        leader.kill9()
        deadline = killed_at + 30
        while time.monotonic() < deadline and not any(a > killed_at for a in acked):
            time.sleep(0.005)
        first = next((a for a in acked if a > killed_at), None)
    finally:
        stop.set()
        t.join()
        for ch in channels:
            ch.close()
    leader.start(wait=False)
    leader.wait_ready(30)
    if first is None:
        raise RuntimeError("no write was acknowledged within 30 s of the kill")
    return first - killed_at


def bench_target(target: str, args: argparse.Namespace, loadgen: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for sc, where in SCENARIOS:
        runs = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory(dir=args.workdir) as d:
                c = Cluster.create(Path(d), 3, command=command(target)).start()
                try:
                    m = c.leader() if where == "leader" else c.followers()[0]
                    runs.append(run_loadgen(loadgen, m.endpoint, sc, args.duration, args))
                finally:
                    c.stop()
        out[sc.name] = {
            "ops_per_sec": statistics.median(r["ops_per_sec"] for r in runs),
            "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        }
        log(f"{target} {sc.name}: {out[sc.name]['ops_per_sec']:.0f}/s")
    with tempfile.TemporaryDirectory(dir=args.workdir) as d:
        c = Cluster.create(Path(d), 3, command=command(target)).start()
        try:
            times = [measure_failover(c) for _ in range(args.failovers)]
        finally:
            c.stop()
    out["failover"] = {"median_s": statistics.median(times), "max_s": max(times)}
    log(f"{target} failover: {times}")
    return out


def table(results: dict[str, dict[str, Any]]) -> str:
    rows = ["| scenario | etcdcore | etcd | ratio |", "|---|---:|---:|---:|"]
    for sc, where in SCENARIOS:
        a, b = results["etcdcore"][sc.name], results["etcd"][sc.name]
        rows.append(
            f"| {sc.name} ({where}) | {a['ops_per_sec']:,.0f}/s (p50 {a['p50_ms']:.2f} ms) | "
            f"{b['ops_per_sec']:,.0f}/s (p50 {b['p50_ms']:.2f} ms) | "
            f"{a['ops_per_sec'] / b['ops_per_sec']:.2f}x |"
        )
    fa, fb = results["etcdcore"]["failover"], results["etcd"]["failover"]
    rows.append(
        f"| failover: kill -9 leader -> next acked write | median {fa['median_s']:.2f} s, "
        f"max {fa['max_s']:.2f} s | median {fb['median_s']:.2f} s, max {fb['max_s']:.2f} s | "
        f"{fa['median_s'] / fb['median_s']:.2f}x time |"
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one 4 s run per scenario, 2 failovers")
    p.add_argument("--write-results", action="store_true", help="append to bench/RESULTS.md")
    p.add_argument("--workdir", default=None, help="where the data dirs go (default: tmp)")
    args = p.parse_args(argv)
    args.repeats, args.duration, args.failovers = (1, 4.0, 2) if args.quick else (3, 8.0, 5)
    args.value_size, args.key_space, args.range_keys = 256, 100_000, 1000
    loadgen = build_loadgen()
    results = {t: bench_target(t, args, loadgen) for t in TARGETS}
    md = table(results)
    print(md)
    if args.write_results:
        facts = machine_facts()
        with open(RESULTS_MD, "a") as f:
            f.write(
                f"\n## 3-member cluster ({time.strftime('%Y-%m-%d')}, commit {git_commit()})\n\n"
                f"`python bench/cluster.py`: median of {args.repeats} x {args.duration:.0f} s "
                f"per scenario, {args.failovers} failovers; "
                f"{facts['nproc']} CPUs ({facts['cpu_model']}). "
                "Members on 127.0.0.11-13, default heartbeat/election (100/1000 ms).\n\n"
                f"{md}\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
