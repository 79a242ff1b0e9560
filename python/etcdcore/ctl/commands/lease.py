"""lease grant / revoke / timetolive / list / keep-alive."""

from __future__ import annotations

import argparse
import queue
import time
from collections.abc import Iterator

import grpc

from etcdcore.proto.etcdserverpb import rpc_pb2

from ..cli import Commands, Context, bad_args, bool_flag
from ..errors import EXIT_BAD_CONNECTION, EXIT_ERROR, CtlError, rpc_message
from ..output import flush, write
from .parsing import go_int, hex_id


def _lease_id(text: str) -> int:
    return hex_id(text, "bad lease ID arg ({}), expecting ID in Hex")


def grant(ctx: Context, a: argparse.Namespace) -> None:
    if len(a.args) != 1:
        raise bad_args("lease grant command needs TTL argument")
    try:
        ttl = go_int(a.args[0], None)
    except CtlError as e:
        raise bad_args(f"bad TTL ({e.message})") from e
    try:
        resp = ctx.conn.call("Lease", "LeaseGrant", rpc_pb2.LeaseGrantRequest(TTL=ttl))
    except CtlError as e:
        raise CtlError(EXIT_ERROR, f"failed to grant lease ({e.message})") from e
    ctx.printer.grant(resp)


def revoke(ctx: Context, a: argparse.Namespace) -> None:
    if len(a.args) != 1:
        raise bad_args("lease revoke command needs 1 argument")
    lease_id = _lease_id(a.args[0])
    try:
        resp = ctx.conn.call("Lease", "LeaseRevoke", rpc_pb2.LeaseRevokeRequest(ID=lease_id))
    except CtlError as e:
        raise CtlError(EXIT_ERROR, f"failed to revoke lease ({e.message})") from e
    ctx.printer.revoke(lease_id, resp)


def timetolive(ctx: Context, a: argparse.Namespace) -> None:
    if len(a.args) != 1:
        raise bad_args("lease timetolive command needs lease ID as argument")
    req = rpc_pb2.LeaseTimeToLiveRequest(ID=_lease_id(a.args[0]), keys=a.keys)
    try:
        resp = ctx.conn.call("Lease", "LeaseTimeToLive", req)
    except CtlError as e:
        raise CtlError(EXIT_BAD_CONNECTION, e.message) from e
    ctx.printer.time_to_live(resp, a.keys)


def list_leases(ctx: Context, a: argparse.Namespace) -> None:
    try:
        resp = ctx.conn.call("Lease", "LeaseLeases", rpc_pb2.LeaseLeasesRequest())
    except CtlError as e:
        raise CtlError(EXIT_BAD_CONNECTION, e.message) from e
    ctx.printer.leases(resp)


def keep_alive(ctx: Context, a: argparse.Namespace) -> None:
    if len(a.args) != 1:
        raise bad_args("lease keep-alive command needs lease ID as argument")
    lease_id = _lease_id(a.args[0])
    requests: queue.Queue[int | None] = queue.Queue()

    def feed() -> Iterator[rpc_pb2.LeaseKeepAliveRequest]:
        while requests.get() is not None:
            yield rpc_pb2.LeaseKeepAliveRequest(ID=lease_id)

    requests.put(lease_id)
    stream = ctx.conn.stub("Lease").LeaseKeepAlive(feed(), metadata=ctx.conn.metadata())
    try:
        for resp in stream:
            if resp.TTL <= 0:
                if a.once:
                    raise CtlError(EXIT_BAD_CONNECTION, "etcdserver: requested lease not found")
                break
            ctx.printer.keep_alive(resp)
            flush()
            if a.once:
                requests.put(None)
                return
            # etcd's client renews at a third of the TTL.
            time.sleep(max(resp.TTL / 3.0, 0.5))
            requests.put(lease_id)
    except grpc.RpcError as e:
        raise CtlError(EXIT_BAD_CONNECTION, rpc_message(e)) from e
    finally:
        requests.put(None)
        stream.cancel()
    write(f"lease {lease_id:016x} expired or revoked.")


def register(commands: Commands) -> None:
    g = commands.group("lease", "Lease related commands")
    g.add("grant", "Creates leases", grant).add_argument("args", nargs="*", metavar="<ttl>")
    g.add("revoke", "Revokes leases", revoke).add_argument("args", nargs="*", metavar="<leaseID>")
    p = g.add("timetolive", "Get lease information", timetolive)
    bool_flag(p, "keys", "Get keys attached to this lease")
    p.add_argument("args", nargs="*", metavar="<leaseID>")
    g.add("list", "List all active leases", list_leases)
    p = g.add("keep-alive", "Keeps leases alive (renew)", keep_alive)
    bool_flag(p, "once", "Resets the keep-alive time to its original value and exits immediately")
    p.add_argument("args", nargs="*", metavar="<leaseID>")
