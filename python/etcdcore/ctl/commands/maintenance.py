"""alarm list/disarm, defrag, snapshot save, check perf, version."""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

import grpc
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from etcdcore import ETCD_VERSION, __version__, _core
from etcdcore.client.requests import prefix_end
from etcdcore.proto.etcdserverpb import rpc_pb2
from etcdcore.server.config import ConfigError, parse_initial_cluster, verify_bootstrap

from ..cli import Commands, Context, bad_args, bool_flag
from ..errors import (
    EXIT_BAD_FEATURE,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_INVALID_INPUT,
    CtlError,
    rpc_message,
)
from ..output import SnapshotStatus, write
from .cluster import cluster_endpoints

# -- alarm -------------------------------------------------------------------------


def alarm_list(ctx: Context, a: argparse.Namespace) -> None:
    if a.args:
        raise bad_args("alarm list command accepts no arguments")
    req = rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET)
    ctx.printer.alarm(ctx.conn.call("Maintenance", "Alarm", req))


def alarm_disarm(ctx: Context, a: argparse.Namespace) -> None:
    if a.args:
        raise bad_args("alarm disarm command accepts no arguments")
    # As etcd's client: disarming "everything" lists the alarms and
    # deactivates each one.
    listed = ctx.conn.call(
        "Maintenance", "Alarm", rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET)
    )
    resp = rpc_pb2.AlarmResponse(header=listed.header)
    for alarm in listed.alarms:
        req = rpc_pb2.AlarmRequest(
            action=rpc_pb2.AlarmRequest.DEACTIVATE, memberID=alarm.memberID, alarm=alarm.alarm
        )
        answer = ctx.conn.call("Maintenance", "Alarm", req)
        resp.header.CopyFrom(answer.header)
        resp.alarms.extend(answer.alarms)
    ctx.printer.alarm(resp)


# -- defrag ------------------------------------------------------------------------


def defrag(ctx: Context, a: argparse.Namespace) -> int:
    if a.data_dir:
        raise CtlError(
            EXIT_BAD_FEATURE,
            "defragmenting a data directory offline is not supported by etcdcorectl",
        )
    failures = 0
    for ep in cluster_endpoints(ctx, a.cluster):
        with ctx.conn.single(ep) as conn:
            try:
                conn.call("Maintenance", "Defragment", rpc_pb2.DefragmentRequest())
                write(f"Finished defragmenting etcd member[{ep}]")
            except CtlError as e:
                sys.stderr.write(f"Failed to defragment etcd member[{ep}] ({e.message})\n")
                failures += 1
    return EXIT_ERROR if failures else 0


# -- snapshot ----------------------------------------------------------------------


def snapshot_save(ctx: Context, a: argparse.Namespace) -> None:
    if len(a.args) != 1:
        raise bad_args("snapshot save expects one argument")
    endpoints = ctx.options.endpoints
    if len(endpoints) != 1:
        raise CtlError(
            EXIT_INTERRUPTED,
            "snapshot must be requested to one selected node, "
            f"not multiple [{' '.join(endpoints)}]",
        )
    path = Path(a.args[0])
    part = path.with_name(path.name + ".part")
    # etcdctl gives snapshot save no deadline unless --command-timeout is set.
    timeout = ctx.options.command_timeout if "--command-timeout" in " ".join(a.argv) else None
    digest = hashlib.sha256()
    received = 0
    try:
        stream = ctx.conn.stream(
            "Maintenance", "Snapshot", rpc_pb2.SnapshotRequest(), timeout=timeout
        )
        with part.open("wb") as f, _progress() as progress:
            task = progress.add_task("snapshot", total=None)
            last = b""
            for resp in stream:
                if last:
                    digest.update(last)
                f.write(resp.blob)
                received += len(resp.blob)
                last = resp.blob
                progress.update(task, completed=received, total=received + resp.remaining_bytes)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise CtlError(EXIT_INTERRUPTED, f"could not open {part} ({e.strerror})") from e
    except CtlError as e:
        raise CtlError(EXIT_INTERRUPTED, e.message) from e
    except grpc.RpcError as e:
        part.unlink(missing_ok=True)
        raise CtlError(EXIT_INTERRUPTED, rpc_message(e)) from e
    # The last message is the sha256 of everything before it.
    if len(last) != 32 or digest.digest() != last:
        part.unlink(missing_ok=True)
        raise CtlError(EXIT_INTERRUPTED, f"sha256 checksum not found [bytes: {received}]")
    part.rename(path)
    write(f"Snapshot saved at {path}")


def snapshot_status(ctx: Context, a: argparse.Namespace) -> None:
    if len(a.args) != 1:
        raise bad_args("snapshot status requires exactly one argument")
    path = _snapshot_file(a.args[0])
    try:
        hash_, revision, keys, size = _core.snapshot_status(path)
    except _core.CoreError as e:
        raise CtlError(EXIT_ERROR, e.args[1]) from e
    ctx.printer.snapshot_status(SnapshotStatus(hash_, revision, keys, size))


def snapshot_restore(ctx: Context, a: argparse.Namespace) -> None:
    if len(a.args) != 1:
        raise bad_args("snapshot restore requires exactly one argument")
    path = _snapshot_file(a.args[0])
    peer_urls = a.initial_advertise_peer_urls.split(",")
    try:
        cluster = parse_initial_cluster(a.initial_cluster)
        verify_bootstrap(a.name, peer_urls, cluster, "new")
    except ConfigError as e:
        raise bad_args(str(e)) from e
    data_dir = a.data_dir or f"{a.name}.etcd"
    with _progress() as progress:
        task = progress.add_task("restore", total=None)
        try:
            _core.snapshot_restore(
                path,
                data_dir=data_dir,
                name=a.name,
                initial_cluster=cluster,
                cluster_token=a.initial_cluster_token,
                skip_hash_check=a.skip_hash_check,
            )
        except _core.CoreError as e:
            raise CtlError(EXIT_ERROR, e.args[1]) from e
        progress.update(task, total=1, completed=1)


def _snapshot_file(path: str) -> str:
    """``path`` if it can be opened for reading (the core reads it in pieces)."""
    try:
        with Path(path).open("rb"):
            return path
    except OSError as e:
        raise CtlError(EXIT_ERROR, f"open {path}: {(e.strerror or str(e)).lower()}") from e


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=None,
        transient=True,
        disable=not sys.stderr.isatty(),
        redirect_stdout=False,
        redirect_stderr=False,
    )


# -- check perf --------------------------------------------------------------------

#: etcdctl's check perf loads: write rate limit, clients, seconds.
PERF_LOADS = {
    "s": (150, 50, 60),
    "m": (1000, 200, 60),
    "l": (8000, 500, 60),
    "xl": (15000, 1000, 60),
}
_PERF_ALIASES = {"small": "s", "medium": "m", "large": "l", "xLarge": "xl"}


def check_perf(ctx: Context, a: argparse.Namespace) -> int:
    model = _PERF_ALIASES.get(a.load, a.load)
    if model not in PERF_LOADS:
        raise CtlError(EXIT_BAD_FEATURE, f"unknown load option {a.load}")
    limit, clients, duration = PERF_LOADS[model]
    duration = a.duration or duration
    prefix = a.prefix.encode()
    found = ctx.conn.call(
        "KV", "Range", rpc_pb2.RangeRequest(key=prefix, range_end=prefix_end(prefix), limit=1)
    )
    if found.kvs:
        raise CtlError(
            EXIT_INVALID_INPUT,
            f"prefix \"{a.prefix}\" has keys. Delete with 'etcdctl del --prefix {a.prefix}' first",
        )
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + duration
    interval = 1.0 / limit
    next_slot = [time.monotonic()]
    value = bytes(1024)

    def worker() -> None:
        while True:
            with lock:
                slot = next_slot[0]
                next_slot[0] = slot + interval
            if slot >= deadline:
                return
            time.sleep(max(0.0, slot - time.monotonic()))
            key = prefix + random.getrandbits(63).to_bytes(8, "little") + bytes(248)
            start = time.monotonic()
            try:
                ctx.conn.call("KV", "Put", rpc_pb2.PutRequest(key=key, value=value))
                with lock:
                    latencies.append(time.monotonic() - start)
            except CtlError as e:
                with lock:
                    errors[e.message] = errors.get(e.message, 0) + 1

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(clients, 64))]
    started = time.monotonic()
    with _perf_bar() as progress:
        task = progress.add_task("check perf", total=duration)
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            time.sleep(0.2)
            progress.update(task, completed=min(duration, time.monotonic() - started))
    elapsed = time.monotonic() - started
    ctx.conn.call(
        "KV", "DeleteRange", rpc_pb2.DeleteRangeRequest(key=prefix, range_end=prefix_end(prefix))
    )
    if a.auto_compact:
        rev = ctx.conn.call(
            "KV", "Range", rpc_pb2.RangeRequest(key=b"\x00", limit=1)
        ).header.revision
        ctx.conn.call("KV", "Compact", rpc_pb2.CompactionRequest(revision=rev, physical=True))
    if a.auto_defrag:
        for ep in ctx.options.endpoints:
            with ctx.conn.single(ep) as conn:
                conn.call("Maintenance", "Defragment", rpc_pb2.DefragmentRequest())
    ok = True
    if errors:
        write("FAIL: too many errors")
        for msg, n in errors.items():
            write(f"FAIL: ERROR({msg}) -> {n}")
        ok = False
    rps = len(latencies) / elapsed if elapsed else 0.0
    if rps / limit <= 0.9:
        write(f"FAIL: Throughput too low: {int(rps) + 1} writes/s")
        ok = False
    else:
        write(f"PASS: Throughput is {int(rps) + 1} writes/s")
    slowest = max(latencies, default=0.0)
    if slowest > 0.5:
        write(f"Slowest request took too long: {slowest:f}s")
        ok = False
    else:
        write(f"PASS: Slowest request took {slowest:f}s")
    stddev = statistics.pstdev(latencies) if len(latencies) > 1 else 0.0
    if stddev > 0.1:
        write(f"Stddev too high: {stddev:f}s")
        ok = False
    else:
        write(f"PASS: Stddev is {stddev:f}s")
    write("PASS" if ok else "FAIL")
    return 0 if ok else EXIT_ERROR


def _perf_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f}s"),
        transient=True,
        disable=not sys.stderr.isatty(),
    )


# -- version -----------------------------------------------------------------------


def version(ctx: Context, a: argparse.Namespace) -> None:
    write(f"etcdctl version: {ETCD_VERSION}")
    write(f"API version: {'.'.join(ETCD_VERSION.split('.')[:2])}")
    write(f"etcdcorectl version: {__version__}")


def register(commands: Commands) -> None:
    g = commands.group("alarm", "Alarm related commands")
    g.add("list", "Lists all alarms", alarm_list).add_argument(
        "args", nargs="*", help=argparse.SUPPRESS
    )
    g.add("disarm", "Disarms all alarms", alarm_disarm).add_argument(
        "args", nargs="*", help=argparse.SUPPRESS
    )

    p = commands.add(
        "defrag", "Defragments the storage of the etcd members with given endpoints", defrag
    )
    bool_flag(p, "cluster", "use all endpoints from the cluster member list")
    p.add_argument(
        "--data-dir",
        default="",
        help="Optional. If present, defragments a data directory not in use.",
    )

    g = commands.group("snapshot", "Manages etcd node snapshots")
    p = g.add("save", "Stores an etcd node backend snapshot to a given file", snapshot_save)
    p.add_argument("args", nargs="*", metavar="<filename>")
    p = g.add("status", "Gets backend snapshot status of a given file", snapshot_status)
    p.add_argument("args", nargs="*", metavar="<filename>")
    p = g.add("restore", "Restores an etcd member snapshot to an etcd directory", snapshot_restore)
    p.add_argument("--data-dir", default="", help="Path to the data directory")
    p.add_argument("--wal-dir", default="", help=argparse.SUPPRESS)
    p.add_argument(
        "--initial-cluster",
        default="default=http://localhost:2380",
        help="Initial cluster configuration for restore bootstrap",
    )
    p.add_argument(
        "--initial-cluster-token",
        default="etcd-cluster",
        help="Initial cluster token for the etcd cluster during restore bootstrap",
    )
    p.add_argument(
        "--initial-advertise-peer-urls",
        default="http://localhost:2380",
        help="List of this member's peer URLs to advertise to the rest of the cluster",
    )
    p.add_argument("--name", default="default", help="Human-readable name for this member")
    bool_flag(
        p,
        "skip-hash-check",
        "Ignore snapshot integrity hash value (required if copied from data directory)",
    )
    p.add_argument("args", nargs="*", metavar="<filename>")

    g = commands.group("check", "commands for checking properties of the etcd cluster")
    p = g.add("perf", "Check the performance of the etcd cluster", check_perf)
    p.add_argument(
        "--load", default="s", help="The performance check's workload model. Accepted: s, m, l, xl"
    )
    p.add_argument(
        "--prefix",
        default="/etcdctl-check-perf/",
        help="The prefix for writing the performance check's keys.",
    )
    bool_flag(p, "auto-compact", "Compact storage with last revision after test is finished.")
    bool_flag(p, "auto-defrag", "Defragment storage after test is finished.")
    # Not an etcdctl flag: lets tests run the check in seconds rather than a minute.
    p.add_argument("--duration", type=int, default=0, help=argparse.SUPPRESS)

    commands.add("version", "Prints the version of etcdctl", version)
