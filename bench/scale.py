#!/usr/bin/env python3
"""etcd's real working sizes: etcdcore and etcd 3.5 loaded with 1M keys, side by side.

For each target, one fresh server on its default flags, then:

1. load: ``--keys`` distinct keys (default 1,000,000) of ``--value-size`` bytes
   (default 512), written by the Rust loadgen;
2. overwrite: ``--overwrites`` puts (default 500,000) of random existing keys;
3. RSS and data-dir size after the load;
4. Maintenance.Snapshot streamed to a file by ``etcdctl snapshot save``;
5. compaction at the current revision (``--physical``, so it returns when the
   versions are gone) while the loadgen keeps writing: its time, and the p99
   and worst latency of the puts that ran meanwhile;
6. restart: kill -9, start again, time until a linearizable read is answered.

Prints a Markdown table (``--write-results`` appends it to bench/RESULTS.md).
Usage: ``pip install . && python bench/scale.py [--keys 1000000] [--targets etcdcore,etcd]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import run as bench  # bench/run.py: servers, loadgen, machine facts

OUT = bench.OUT_DIR


def loadgen(endpoint: str, *extra: str, timeout: float = 7200) -> dict[str, Any]:
    cmd = [str(bench.LOADGEN_BIN), "--endpoint", endpoint, "--op", "put", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen: {proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children (etcdcore is one process)."""
    total = 0
    for p in [pid, *children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def children(pid: int) -> list[int]:
    try:
        out = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(x) for x in out]


def du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def etcdctl(endpoint: str, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    exe = str(Path(bench.etcd_binary()).parent / "etcdctl")
    return subprocess.run(
        [exe, f"--endpoints={endpoint}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=True,
    )


def current_revision(endpoint: str) -> int:
    out = etcdctl(endpoint, "endpoint", "status", "-w", "json").stdout
    return int(json.loads(out)[0]["Status"]["header"]["revision"])


def wait_read(endpoint: str, timeout: float = 600) -> float:
    """Seconds until a linearizable Range is answered."""
    import grpc

    started = time.monotonic()
    request = b"\x0a\x01a"  # RangeRequest{key: "a"}
    while time.monotonic() - started < timeout:
        with grpc.insecure_channel(endpoint) as ch:
            call = ch.unary_unary("/etcdserverpb.KV/Range")
            try:
                call(request, timeout=1)
                return time.monotonic() - started
            except grpc.RpcError:
                time.sleep(0.02)
    raise TimeoutError("no read answered")


def measure(target: str, argv0: list[str], workdir: Path, args: argparse.Namespace) -> dict:
    r: dict[str, Any] = {"target": target}
    server = bench.Server(target, argv0, workdir)
    server.start(120)
    try:
        ep = server.endpoint
        common = ["--clients", str(args.clients), "--conns", str(args.conns)]
        common += ["--value-size", str(args.value_size), "--duration-secs", "36000"]
        bench.log(f"{target}: loading {args.keys} keys")
        load = loadgen(ep, *common, "--total", str(args.keys), "--sequential")
        r["load_rate"] = load["ops_per_sec"]
        r["load_p99_ms"] = load["p99_ms"]
        r["load_max_ms"] = load["max_ms"]
        bench.log(f"{target}: {args.overwrites} overwrites")
        over = loadgen(ep, *common, "--total", str(args.overwrites), "--key-space", str(args.keys))
        r["overwrite_rate"] = over["ops_per_sec"]
        r["overwrite_p99_ms"] = over["p99_ms"]
        r["overwrite_max_ms"] = over["max_ms"]
        r["worst_put_ms"] = max(load["max_ms"], over["max_ms"])
        time.sleep(2)  # the batched backend commits land
        assert server.proc is not None
        r["rss_mb"] = rss_mb(server.proc.pid)
        r["data_dir_mb"] = du_mb(server.data_dir)

        bench.log(f"{target}: snapshot")
        snap = workdir / "snapshot.db"
        started = time.monotonic()
        etcdctl(ep, "snapshot", "save", str(snap))
        r["snapshot_s"] = time.monotonic() - started
        r["snapshot_mb"] = snap.stat().st_size / 2**20
        r["rss_after_snapshot_mb"] = rss_mb(server.proc.pid)
        snap.unlink()

        bench.log(f"{target}: compaction under writes")
        rev = current_revision(ep)
        during: dict[str, Any] = {}

        def writes() -> None:
            during.update(
                loadgen(
                    ep,
                    "--clients", "16", "--conns", "4",
                    "--value-size", str(args.value_size),
                    "--key-space", str(args.keys),
                    "--total", "100000000",
                    "--duration-secs", str(args.compaction_writes_secs),
                )
            )  # fmt: skip

        writer = threading.Thread(target=writes)
        writer.start()
        time.sleep(1)
        started = time.monotonic()
        etcdctl(ep, "compact", str(rev), "--physical", "--command-timeout=3600s")
        r["compaction_s"] = time.monotonic() - started
        writer.join()
        r["compaction_put_p99_ms"] = during["p99_ms"]
        r["compaction_put_max_ms"] = during["max_ms"]
        r["compaction_put_rate"] = during["ops_per_sec"]

        bench.log(f"{target}: kill -9 and restart")
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        with open(server.log_path, "ab") as logf:
            server.proc = subprocess.Popen(
                server.argv(), stdout=logf, stderr=subprocess.STDOUT, cwd=server.workdir
            )
        r["restart_s"] = wait_read(ep)
        r["rss_after_restart_mb"] = rss_mb(server.proc.pid)
    finally:
        server.stop()
        if not args.keep_data:
            shutil.rmtree(server.data_dir, ignore_errors=True)
    return r


P99_WORST = "{:,.1f} / {:,.0f}"
ROWS = [
    ("load rate (puts/s)", "load_rate", "{:,.0f}", True),
    ("load p99 / worst put (ms)", ("load_p99_ms", "load_max_ms"), P99_WORST, False),
    ("overwrite rate (puts/s)", "overwrite_rate", "{:,.0f}", True),
    ("overwrite p99 / worst (ms)", ("overwrite_p99_ms", "overwrite_max_ms"), P99_WORST, False),
    ("RSS after load (MB)", "rss_mb", "{:,.0f}", False),
    ("data dir (MB)", "data_dir_mb", "{:,.0f}", False),
    ("snapshot stream (s)", "snapshot_s", "{:,.1f}", False),
    ("snapshot file (MB)", "snapshot_mb", "{:,.0f}", False),
    ("compaction (s)", "compaction_s", "{:,.1f}", False),
    (
        "puts during compaction p99 / worst (ms)",
        ("compaction_put_p99_ms", "compaction_put_max_ms"),
        P99_WORST,
        False,
    ),
    ("kill -9 -> first read (s)", "restart_s", "{:,.1f}", False),
    ("RSS after restart (MB)", "rss_after_restart_mb", "{:,.0f}", False),
]


def table(results: dict[str, dict]) -> str:
    core, etcd = results.get("etcdcore"), results.get("etcd")
    lines = ["| figure | etcdcore | etcd 3.5.1 | ratio |", "|---|---:|---:|---:|"]
    for label, key, fmt, higher_better in ROWS:
        keys = key if isinstance(key, tuple) else (key,)

        def cell(r: dict | None, keys: tuple = keys, fmt: str = fmt) -> str:
            return fmt.format(*(r[k] for k in keys)) if r else "-"

        ratio = "-"
        if core and etcd and etcd[keys[-1]]:
            x = core[keys[-1]] / etcd[keys[-1]]
            ratio = f"{x:.2f}x" if higher_better else f"{x:.2f}x etcd's"
        lines.append(f"| {label} | {cell(core)} | {cell(etcd)} | {ratio} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--overwrites", type=int, default=500_000)
    ap.add_argument("--value-size", type=int, default=512)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--compaction-writes-secs", type=float, default=15)
    ap.add_argument("--targets", default="etcdcore,etcd")
    ap.add_argument("--keep-data", action="store_true")
    ap.add_argument("--write-results", action="store_true")
    args = ap.parse_args()
    bench.build_loadgen()
    etcd_bin = bench.etcd_binary()
    run_dir = OUT / f"scale-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}"
    results = {}
    for target in args.targets.split(","):
        argv0 = bench.server_command(target, etcd_bin)
        results[target] = measure(target, argv0, run_dir / target, args)
        bench.log(json.dumps(results[target]))
    text = table(results)
    print(text)
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    if args.write_results:
        facts = bench.machine_facts()
        with open(bench.RESULTS_MD, "a") as f:
            now = dt.datetime.now(dt.timezone.utc)
            f.write(
                f"\n## Scale: {args.keys:,} keys x {args.value_size} B, "
                f"{args.overwrites:,} overwrites ({now:%Y-%m-%d %H:%M} UTC)\n\n"
                f"- commit: `{bench.git_commit()}`\n"
                f"- machine: {facts.get('nproc')} CPUs, {facts.get('cpu_model')}\n"
                f"- `python bench/scale.py`: one run per target, default flags for both, "
                f"loadgen {args.clients} clients over {args.conns} connections\n\n"
                f"{text}\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
