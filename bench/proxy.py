#!/usr/bin/env python3
"""The gRPC proxy benchmark: etcdcore's proxy against etcd 3.5.1's own proxy,
in front of the same kind of cluster, in one run.

Each measurement starts a fresh cluster member (etcd 3.5.1 by default, or
etcdcore with ``--backend etcdcore``) and a fresh proxy in front of it
(``etcdcore grpc-proxy start`` or ``etcd grpc-proxy start``), drives them
with bench/loadgen and stops both. Proxies alternate within a scenario, so
drift of the machine hits both alike; the median of ``--repeat`` runs is
reported.

- watch scenarios: W watchers on ONE key (10 per stream) connect to the
  proxy; writers put to that key directly on the member at a fixed rate
  (the same offered load for both proxies: W x rate events/s). events/s is
  every event delivered to every watcher over the time from the first put
  to the last delivery (the offered rate when a proxy keeps up); p50/p99 is from a
  put's send to a watcher receiving it; "lost" counts events never
  delivered (etcd's proxy cancels streams that fall 50 ms behind). The
  member's own etcd_debugging_mvcc_watcher_total is sampled during the run:
  "cluster watchers" is its peak.
  The burst scenarios put a fixed number of times as fast as the writers
  go, so both proxies deliver the same events and events/s is how fast
  they get them all out.
- kv scenarios: puts and gets through the proxy.

Also reported: the proxy's CPU time per million events (or per thousand
requests), from /proc.

Usage: ``pip install . && python bench/proxy.py [--quick] [--write-results]``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as base  # noqa: E402 - bench/run.py: loadgen build, servers, machine facts

PROXIES = ("etcdcore", "etcd")


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # "watch" or a loadgen op
    description: str
    watchers: int = 0
    rate: float = 0.0
    clients: int = 1
    conns: int = 1
    #: Puts in all (0: as many as the duration allows).
    puts: int = 0


SCENARIOS = (
    Scenario("watch-2000@100", "watch", "2,000 watchers on one key, 100 puts/s (200k events/s)",
             watchers=2000, rate=100),
    Scenario("watch-2000@500", "watch", "2,000 watchers on one key, 500 puts/s (1M events/s)",
             watchers=2000, rate=500, clients=2),
    Scenario("watch-2000@1000", "watch", "2,000 watchers on one key, 1000 puts/s (2M events/s)",
             watchers=2000, rate=1000, clients=4),
    Scenario("watch-20000@20", "watch", "20,000 watchers on one key, 20 puts/s (400k events/s)",
             watchers=20000, rate=20),
    Scenario("watch-20000@100", "watch", "20,000 watchers on one key, 100 puts/s (2M events/s)",
             watchers=20000, rate=100, clients=2),
    Scenario("watch-2000-burst", "watch",
             "2,000 watchers on one key, 2,000 puts at once: 4M events, time to deliver them all",
             watchers=2000, clients=4, puts=2000),
    Scenario("watch-20000-burst", "watch",
             "20,000 watchers on one key, 200 puts at once: 4M events, time to deliver them all",
             watchers=20000, clients=4, puts=200),
    Scenario("put-1", "put", "puts through the proxy, one client", clients=1, conns=1),
    Scenario("put-16", "put", "puts through the proxy, 16 clients", clients=16, conns=4),
    Scenario("get-serializable-1", "get-serializable",
             "serializable gets through the proxy (its cache), one client", clients=1, conns=1),
    Scenario("get-linearizable-16", "get-linearizable", "linearizable gets through the proxy",
             clients=16, conns=4),
    Scenario("get-serializable-16", "get-serializable",
             "serializable gets through the proxy (its cache)", clients=16, conns=4),
)  # fmt: skip


def proxy_cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / 100.0


def metric(url: str, name: str) -> float:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
    except OSError:
        pass
    return 0.0


class Proxy:
    def __init__(self, kind: str, cluster: str, workdir: Path, etcd_bin: Path) -> None:
        self.kind = kind
        self.port = base.free_port()
        argv0 = [str(etcd_bin)] if kind == "etcd" else base.etcdcore_command()
        self.argv = [
            *argv0, "grpc-proxy", "start",
            f"--endpoints={cluster}",
            f"--listen-addr={base.HOST}:{self.port}",
            f"--advertise-client-url={base.HOST}:{self.port}",
        ]  # fmt: skip
        self.log_path = workdir / f"proxy-{kind}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"{base.HOST}:{self.port}"

    def start(self) -> None:
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(self.argv, stdout=logf, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} proxy exited: {self.log_path.read_text()[-500:]}")
            if base.range_answers(self.endpoint):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.kind} proxy did not answer")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_loadgen(
    loadgen: Path, sc: Scenario, member: str, proxy: str, duration: float
) -> dict[str, Any]:
    if sc.kind == "watch":
        cmd = [
            str(loadgen), "--op", "watch", "--endpoint", member, "--watch-endpoint", proxy,
            "--watch-key", "bench/one", "--watchers", str(sc.watchers),
            "--watchers-per-stream", "10", "--watch-conns", "10", "--clients", str(sc.clients),
            "--rate", str(sc.rate), "--duration-secs", str(duration),
            "--total", str(sc.puts or 100_000_000),
        ]  # fmt: skip
    else:
        cmd = [
            str(loadgen), "--op", sc.kind, "--endpoint", proxy, "--clients", str(sc.clients),
            "--conns", str(sc.conns), "--total", "100000000", "--duration-secs", str(duration),
        ]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 180)
    if p.returncode != 0:
        raise RuntimeError(f"loadgen exited {p.returncode}: {p.stderr.strip()[-500:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_one(
    sc: Scenario, kind: str, backend: str, loadgen: Path, etcd_bin: Path, workdir: Path,
    duration: float,
) -> dict[str, Any]:  # fmt: skip
    argv0 = base.server_command(backend, etcd_bin)
    with base.running_server(backend, argv0, workdir, 60.0, False) as srv:
        proxy = Proxy(kind, srv.endpoint, workdir, etcd_bin)
        proxy.start()
        peak = [0.0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.5):
                url = f"http://{srv.endpoint}/metrics"
                peak[0] = max(peak[0], metric(url, "etcd_debugging_mvcc_watcher_total"))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            assert proxy.proc is not None
            cpu0 = proxy_cpu_seconds(proxy.proc.pid)
            result = run_loadgen(loadgen, sc, srv.endpoint, proxy.endpoint, duration)
            result["proxy_cpu_s"] = proxy_cpu_seconds(proxy.proc.pid) - cpu0
        finally:
            stop.set()
            sampler.join()
            proxy.stop()
        result["cluster_watchers"] = peak[0]
        return result


def summarize(runs: dict[tuple[str, str], list[dict]], sc: Scenario, kind: str) -> dict:
    ok = runs.get((sc.name, kind), [])
    if not ok:
        return {}
    med = statistics.median
    out = {
        "ops": med(r["ops_per_sec"] for r in ok),
        "p50": med(r["p50_ms"] for r in ok),
        "p99": med(r["p99_ms"] for r in ok),
        "lost": med(int(r["errors"]) for r in ok),
        "watchers": max(r["cluster_watchers"] for r in ok),
        "cpu": med(r["proxy_cpu_s"] for r in ok),
        "work": med(r["requests"] for r in ok),
    }
    return out


def table(scenarios: list[Scenario], runs: dict) -> str:
    lines = [
        "| scenario | etcdcore proxy | etcd proxy | ratio | etcdcore p50/p99 ms "
        "| etcd p50/p99 ms | cluster watchers (etcdcore / etcd) | proxy CPU s per 1M events "
        "or 1k requests (etcdcore / etcd) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def ops(s: dict, watch: bool) -> str:
        if not s:
            return "n/a"
        text = f"{s['ops']:,.0f} {'events/s' if watch else 'ops/s'}"
        if s["lost"]:
            text += f" ({s['lost']:,.0f} lost)" if watch else f" ({s['lost']} err)"
        return text

    def lat(s: dict) -> str:
        return f"{s['p50']:.2f} / {s['p99']:.2f}" if s else "n/a"

    def cpu(s: dict, watch: bool) -> str:
        if not s or not s["work"]:
            return "n/a"
        return f"{s['cpu'] / s['work'] * (1e6 if watch else 1e3):.2f}"

    for sc in scenarios:
        a, b = summarize(runs, sc, "etcdcore"), summarize(runs, sc, "etcd")
        watch = sc.kind == "watch"

        ratio = f"{a['ops'] / b['ops']:.2f}x" if a and b and b["ops"] else "n/a"
        watchers = (
            f"{a['watchers']:.0f} / {b['watchers']:.0f}" if sc.kind == "watch" and a and b else "-"
        )
        lines.append(
            f"| {sc.name} | {ops(a, watch)} | {ops(b, watch)} | {ratio} | {lat(a)} | {lat(b)} "
            f"| {watchers} | {cpu(a, watch)} / {cpu(b, watch)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="etcdcore's gRPC proxy against etcd's")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--quick", action="store_true", help="3 s runs, 1 repeat")
    ap.add_argument("--backend", choices=("etcd", "etcdcore"), default="etcd")
    ap.add_argument("--scenarios", default="")
    ap.add_argument("--write-results", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.duration, args.repeat = 3.0, 1
    wanted = {s for s in args.scenarios.split(",") if s}
    scenarios = [s for s in SCENARIOS if not wanted or s.name in wanted]
    loadgen = base.build_loadgen()
    etcd_bin = base.etcd_binary()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = base.OUT_DIR / f"proxy-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    runs: dict[tuple[str, str], list[dict]] = {}
    failures = 0
    for sc in scenarios:
        for rep in range(1, args.repeat + 1):
            for kind in PROXIES:
                workdir = run_dir / f"{sc.name}-{kind}-{rep}"
                try:
                    r = run_one(sc, kind, args.backend, loadgen, etcd_bin, workdir, args.duration)
                except Exception as e:  # one failed run must not end the benchmark
                    failures += 1
                    base.log(f"{sc.name} {kind} #{rep}: FAILED: {e}")
                    continue
                runs.setdefault((sc.name, kind), []).append(r)
                base.log(
                    f"{sc.name:20} {kind:8} #{rep}: {r['ops_per_sec']:>12,.0f}/s "
                    f"p50 {r['p50_ms']:.2f} p99 {r['p99_ms']:.2f} ms, errors {r['errors']}, "
                    f"cluster watchers {r['cluster_watchers']:.0f}, cpu {r['proxy_cpu_s']:.2f}s"
                )
    text = table(scenarios, runs)
    print(text)
    facts = base.machine_facts()
    commit = base.git_commit()
    (base.OUT_DIR / f"proxy-results-{stamp}.json").write_text(
        json.dumps({"machine": facts, "commit": commit, "backend": args.backend,
                    "runs": {f"{k[0]}/{k[1]}": v for k, v in runs.items()}}, indent=2)
    )  # fmt: skip
    if args.write_results:
        now = dt.datetime.now(dt.timezone.utc)
        block = (
            f"\n## gRPC proxy: etcdcore's against etcd's ({now:%Y-%m-%d %H:%M} UTC)\n\n"
            f"`python bench/proxy.py`\n\n"
            f"- commit: `{commit}`\n"
            f"- machine: {facts['nproc']} CPUs, {facts['cpu_model']}, kernel {facts['kernel']}\n"
            f"- cluster: one {args.backend} member (etcd 3.5.1's binary for etcd); "
            f"{args.duration:g} s per run, median of {args.repeat}\n\n"
            f"{text}\n"
        )
        with contextlib.suppress(OSError), open(base.RESULTS_MD, "a", encoding="utf-8") as f:
            f.write(block)
        base.log(f"appended to {base.RESULTS_MD}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
