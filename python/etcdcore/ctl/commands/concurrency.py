"""lock and elect over the v3lock / v3election services, each holding a
session lease kept alive until the ctl ends (SIGINT/SIGTERM) or the command
it runs exits."""

from __future__ import annotations

import argparse
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import grpc

from etcdcore.proto.etcdserverpb import rpc_pb2
from etcdcore.proto.v3election import v3election_pb2
from etcdcore.proto.v3lock import v3lock_pb2

from ..cli import Commands, Context, bad_args, bool_flag
from ..errors import EXIT_ERROR, CtlError, rpc_message
from ..output import flush


class Session:
    """A lease kept alive in the background (etcd's concurrency.Session);
    ``expired`` is set when the server stops renewing it."""

    def __init__(self, ctx: Context, ttl: int) -> None:
        self._ctx = ctx
        grant = ctx.conn.call("Lease", "LeaseGrant", rpc_pb2.LeaseGrantRequest(TTL=ttl))
        self.lease_id: int = grant.ID
        self.ttl = grant.TTL
        self.expired = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep_alive, daemon=True)
        self._thread.start()

    def _keep_alive(self) -> None:
        ticks: queue.Queue[bool] = queue.Queue()

        def feed() -> Iterator[rpc_pb2.LeaseKeepAliveRequest]:
            while ticks.get():
                yield rpc_pb2.LeaseKeepAliveRequest(ID=self.lease_id)

        stream = self._ctx.conn.stub("Lease").LeaseKeepAlive(
            feed(), metadata=self._ctx.conn.metadata()
        )
        try:
            ticks.put(True)
            for resp in stream:
                if resp.TTL <= 0:
                    break
                if self._stop.wait(max(resp.TTL / 3.0, 0.5)):
                    return
                ticks.put(True)
        except grpc.RpcError:
            pass
        finally:
            ticks.put(False)
            stream.cancel()
        if not self._stop.is_set():
            self.expired.set()

    def close(self) -> None:
        """Stop renewing and revoke the lease (releasing what it holds)."""
        self._stop.set()
        try:
            self._ctx.conn.call(
                "Lease", "LeaseRevoke", rpc_pb2.LeaseRevokeRequest(ID=self.lease_id)
            )
        except CtlError:
            pass


def _until_signal() -> threading.Event:
    """An event set by SIGINT or SIGTERM (which then no longer kill the ctl)."""
    done = threading.Event()

    def handler(_sig: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return done


def _wait(*events: threading.Event) -> None:
    while not any(e.is_set() for e in events):
        events[0].wait(0.1)


def _blocking(call: grpc.Future[Any], done: threading.Event) -> Any:
    """Wait for a blocking RPC (a future), cancelling it when a signal arrives;
    its answer."""
    while not call.done():
        if done.wait(0.05):
            call.cancel()
            raise KeyboardInterrupt
    return call.result()


def lock(ctx: Context, a: argparse.Namespace) -> int:
    if not a.args:
        raise bad_args("lock takes a lock name argument and an optional command to execute")
    name, command = a.args[0], a.args[1:]
    done = _until_signal()
    session = Session(ctx, a.ttl)
    try:
        req = v3lock_pb2.LockRequest(name=name.encode(), lease=session.lease_id)
        future = ctx.conn.stub("Lock").Lock.future(req, metadata=ctx.conn.metadata())
        try:
            resp = _blocking(future, done)
        except KeyboardInterrupt:
            return 0
        except grpc.RpcError as e:
            raise CtlError(EXIT_ERROR, rpc_message(e)) from e
        if command:
            env = {**os.environ, "ETCD_LOCK_KEY": resp.key.decode(errors="replace")}
            env["ETCD_LOCK_REV"] = str(resp.header.revision)
            flush()
            try:
                code = subprocess.run(command, env=env, check=False).returncode
            except OSError as e:
                raise CtlError(EXIT_ERROR, f'exec: "{command[0]}": {e.strerror}') from e
            _unlock(ctx, resp.key)
            if code != 0:
                raise CtlError(code, f"exit status {code}")
            return 0
        got = ctx.conn.call("KV", "Range", rpc_pb2.RangeRequest(key=resp.key))
        if not got.kvs:
            raise CtlError(EXIT_ERROR, "lock lost on init")
        ctx.printer.get(got)
        flush()
        _wait(done, session.expired)
        if session.expired.is_set() and not done.is_set():
            raise CtlError(EXIT_ERROR, "session expired")
        _unlock(ctx, resp.key)
        return 0
    finally:
        session.close()


def _unlock(ctx: Context, key: bytes) -> None:
    ctx.conn.call("Lock", "Unlock", v3lock_pb2.UnlockRequest(key=key))


def elect(ctx: Context, a: argparse.Namespace) -> int:
    if len(a.args) not in (1, 2):
        raise bad_args("elect takes one election name argument and an optional proposal argument")
    if len(a.args) == 1 and not a.listen:
        raise bad_args("no proposal argument but -l not set")
    if len(a.args) == 2 and a.listen:
        raise bad_args("proposal given but -l is set")
    name = a.args[0].encode()
    done = _until_signal()
    if a.listen:
        return _observe(ctx, name, done)
    session = Session(ctx, 60)
    try:
        req = v3election_pb2.CampaignRequest(
            name=name, lease=session.lease_id, value=a.args[1].encode()
        )
        future = ctx.conn.stub("Election").Campaign.future(req, metadata=ctx.conn.metadata())
        try:
            leader = _blocking(future, done).leader
        except KeyboardInterrupt:
            return 0
        except grpc.RpcError as e:
            raise CtlError(EXIT_ERROR, rpc_message(e)) from e
        ctx.printer.get(ctx.conn.call("KV", "Range", rpc_pb2.RangeRequest(key=leader.key)))
        flush()
        _wait(done, session.expired)
        if session.expired.is_set() and not done.is_set():
            raise CtlError(EXIT_ERROR, "elect: session expired")
        ctx.conn.call("Election", "Resign", v3election_pb2.ResignRequest(leader=leader))
        return 0
    finally:
        session.close()


def _observe(ctx: Context, name: bytes, done: threading.Event) -> int:
    stream = ctx.conn.stub("Election").Observe(
        v3election_pb2.LeaderRequest(name=name), metadata=ctx.conn.metadata()
    )
    lost = threading.Event()

    def follow() -> None:
        try:
            for resp in stream:
                ctx.printer.get(rpc_pb2.RangeResponse(header=resp.header, kvs=[resp.kv], count=1))
                flush()
        except grpc.RpcError:
            pass
        lost.set()

    threading.Thread(target=follow, daemon=True).start()
    _wait(done, lost)
    stream.cancel()
    if not done.is_set():
        raise CtlError(EXIT_ERROR, "elect: observer lost")
    return 0


def register(commands: Commands) -> None:
    p = commands.add("lock", "Acquires a named lock", lock)
    p.add_argument("--ttl", type=int, default=10, help="timeout for session")
    p.add_argument(
        "args", nargs=argparse.REMAINDER, metavar="<lockname> [exec-command arg1 arg2 ...]"
    )
    p = commands.add("elect", "Observes and participates in leader election", elect)
    bool_flag(p, "listen", "observation mode", "-l")
    p.add_argument("args", nargs="*", metavar="<election-name> [proposal]")
