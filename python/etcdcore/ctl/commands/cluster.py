"""member add/remove/update/list/promote, endpoint health/status/hashkv
(``--cluster`` for every member's client URLs) and move-leader."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from google.protobuf.message import Message

from etcdcore.proto.etcdserverpb import rpc_pb2

from ..cli import Commands, Context, bad_args, bool_flag
from ..connection import Connection
from ..durations import format_duration
from ..errors import EXIT_ERROR, CtlError
from ..output import EpHashKV, EpHealth, EpStatus, SimplePrinter, write
from .parsing import go_int, hex_id

T = TypeVar("T")


def _member_id(args: list[str]) -> int:
    if not args:
        raise bad_args("member ID is not provided")
    return hex_id(args[0], "bad member ID arg ({}), expecting ID in Hex", unsigned=True)


def member_add(ctx: Context, a: argparse.Namespace) -> None:
    if len(a.args) < 1:
        raise bad_args("member name not provided")
    if len(a.args) > 1:
        ev = "too many arguments"
        for arg in a.args[1:]:
            if arg.startswith("http:"):
                ev += f", did you mean --peer-urls={arg}"
                break
        raise bad_args(ev)
    name = a.args[0]
    if not a.peer_urls:
        raise bad_args("member peer urls not provided")
    urls = a.peer_urls.split(",")
    req = rpc_pb2.MemberAddRequest(peerURLs=urls, isLearner=a.learner)
    resp = ctx.conn.call("Cluster", "MemberAdd", req)
    ctx.printer.member_add(resp)
    if isinstance(ctx.printer, SimplePrinter):
        conf = [
            f"{name if m.ID == resp.member.ID else m.name}={u}"
            for m in resp.members
            for u in m.peerURLs
        ]
        write("")
        write(f'ETCD_NAME="{name}"')
        write(f'ETCD_INITIAL_CLUSTER="{",".join(conf)}"')
        write(f'ETCD_INITIAL_ADVERTISE_PEER_URLS="{a.peer_urls}"')
        write('ETCD_INITIAL_CLUSTER_STATE="existing"')


def member_remove(ctx: Context, a: argparse.Namespace) -> None:
    member_id = _member_id(a.args)
    resp = ctx.conn.call("Cluster", "MemberRemove", rpc_pb2.MemberRemoveRequest(ID=member_id))
    ctx.printer.member_remove(member_id, resp)


def member_update(ctx: Context, a: argparse.Namespace) -> None:
    member_id = _member_id(a.args)
    if not a.peer_urls:
        raise bad_args("member peer urls not provided")
    req = rpc_pb2.MemberUpdateRequest(ID=member_id, peerURLs=a.peer_urls.split(","))
    ctx.printer.member_update(member_id, ctx.conn.call("Cluster", "MemberUpdate", req))


def member_promote(ctx: Context, a: argparse.Namespace) -> None:
    member_id = _member_id(a.args)
    resp = ctx.conn.call("Cluster", "MemberPromote", rpc_pb2.MemberPromoteRequest(ID=member_id))
    ctx.printer.member_promote(member_id, resp)


def member_list(ctx: Context, a: argparse.Namespace) -> None:
    ctx.printer.member_list(
        ctx.conn.call("Cluster", "MemberList", rpc_pb2.MemberListRequest(linearizable=True))
    )


# -- endpoint ----------------------------------------------------------------------


def cluster_endpoints(ctx: Context, use_cluster: bool) -> list[str]:
    """The endpoints to ask: the given ones, or with --cluster every member's
    client URLs (deduplicated, in member order)."""
    if not use_cluster:
        return list(ctx.options.endpoints)
    try:
        resp = ctx.conn.call("Cluster", "MemberList", rpc_pb2.MemberListRequest())
    except CtlError as e:
        raise CtlError(
            EXIT_ERROR, f"failed to fetch endpoints from etcd cluster member list: {e.message}"
        ) from e
    seen: list[str] = []
    for m in resp.members:
        for u in m.clientURLs:
            if u not in seen:
                seen.append(u)
    return seen


def _each(ctx: Context, endpoints: list[str], fn: Callable[[Connection, str], T]) -> list[T]:
    """``fn(connection, endpoint)`` for every endpoint, in parallel; the rows in order."""

    def run(ep: str) -> T:
        with ctx.conn.single(ep) as conn:
            return fn(conn, ep)

    with ThreadPoolExecutor(max_workers=max(1, len(endpoints))) as pool:
        return list(pool.map(run, endpoints))


def _health(conn: Connection, ep: str) -> EpHealth:
    start = time.monotonic()
    try:
        conn.call("KV", "Range", rpc_pb2.RangeRequest(key=b"health"))
        row = EpHealth(ep, True, format_duration(time.monotonic() - start))
    except CtlError as e:
        took = format_duration(time.monotonic() - start)
        if e.message == "etcdserver: permission denied":
            row = EpHealth(ep, True, took)
        else:
            return EpHealth(ep, False, took, e.message)
    try:
        alarms = conn.call(
            "Maintenance", "Alarm", rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET)
        )
    except CtlError:
        return EpHealth(ep, False, row.took, "Unable to fetch the alarm list")
    if alarms.alarms:
        names = {rpc_pb2.NOSPACE: "NOSPACE", rpc_pb2.CORRUPT: "CORRUPT"}
        text = "Active Alarm(s): " + "".join(
            names.get(x.alarm, "UNKNOWN") + " " for x in alarms.alarms
        )
        return EpHealth(ep, False, row.took, text)
    return row


def endpoint_health(ctx: Context, a: argparse.Namespace) -> int:
    rows = _each(ctx, cluster_endpoints(ctx, a.cluster), _health)
    ctx.printer.endpoint_health(rows)
    if any(r.error for r in rows):
        raise CtlError(EXIT_ERROR, "unhealthy cluster")
    return 0


def _ask_each(
    ctx: Context, use_cluster: bool, method: str, request: Message, what: str
) -> tuple[list[tuple[str, Any]], bool]:
    """(endpoint, answer) of each endpoint that answers a Maintenance call, and
    whether any failed; failures are reported on stderr as etcdctl does."""
    answers: list[tuple[str, Any]] = []
    failed = False
    for ep in cluster_endpoints(ctx, use_cluster):
        with ctx.conn.single(ep) as conn:
            try:
                answers.append((ep, conn.call("Maintenance", method, request)))
            except CtlError as e:
                sys.stderr.write(f"Failed to get the {what} of endpoint {ep} ({e.message})\n")
                failed = True
    return answers, failed


def endpoint_status(ctx: Context, a: argparse.Namespace) -> int:
    answers, failed = _ask_each(ctx, a.cluster, "Status", rpc_pb2.StatusRequest(), "status")
    ctx.printer.endpoint_status([EpStatus(ep, r) for ep, r in answers])
    return EXIT_ERROR if failed else 0


def endpoint_hashkv(ctx: Context, a: argparse.Namespace) -> int:
    request = rpc_pb2.HashKVRequest(revision=go_int(a.rev, "rev"))
    answers, failed = _ask_each(ctx, a.cluster, "HashKV", request, "hash")
    ctx.printer.endpoint_hashkv([EpHashKV(ep, r) for ep, r in answers])
    return EXIT_ERROR if failed else 0


def move_leader(ctx: Context, a: argparse.Namespace) -> None:
    if len(a.args) != 1:
        raise bad_args("move-leader command needs 1 argument")
    target = hex_id(a.args[0], "{}", unsigned=True)
    leader_ep, leader_id = None, 0
    for ep in ctx.options.endpoints:
        with ctx.conn.single(ep) as conn:
            status = conn.call("Maintenance", "Status", rpc_pb2.StatusRequest())
        if status.header.member_id == status.leader:
            leader_ep, leader_id = ep, status.leader
            break
    if leader_ep is None:
        raise bad_args(f"no leader endpoint given at [{' '.join(ctx.options.endpoints)}]")
    with ctx.conn.single(leader_ep) as conn:
        resp = conn.call("Maintenance", "MoveLeader", rpc_pb2.MoveLeaderRequest(targetID=target))
    ctx.printer.move_leader(leader_id, target, resp)


def register(commands: Commands) -> None:
    g = commands.group("member", "Membership related commands")
    p = g.add("add", "Adds a member into the cluster", member_add)
    p.add_argument("--peer-urls", default="", help="comma separated peer URLs for the new member.")
    bool_flag(p, "learner", "indicates if the new member is raft learner")
    p.add_argument("args", nargs="*", metavar="<memberName>")
    g.add("remove", "Removes a member from the cluster", member_remove).add_argument(
        "args", nargs="*"
    )
    p = g.add("update", "Updates a member in the cluster", member_update)
    p.add_argument(
        "--peer-urls", default="", help="comma separated peer URLs for the updated member."
    )
    p.add_argument("args", nargs="*", metavar="<memberID>")
    g.add("list", "Lists all members in the cluster", member_list)
    g.add("promote", "Promotes a non-voting member in the cluster", member_promote).add_argument(
        "args", nargs="*"
    )

    g = commands.group("endpoint", "Endpoint related commands")
    for name, help, fn in (
        (
            "health",
            "Checks the healthiness of endpoints specified in `--endpoints` flag",
            endpoint_health,
        ),
        (
            "status",
            "Prints out the status of endpoints specified in `--endpoints` flag",
            endpoint_status,
        ),
        ("hashkv", "Prints the KV history hash for each endpoint in --endpoints", endpoint_hashkv),
    ):
        p = g.add(name, help, fn)
        bool_flag(p, "cluster", "use all endpoints from the cluster member list")
        if name == "hashkv":
            p.add_argument(
                "--rev", default="0", help="maximum revision to hash (default: all revisions)"
            )
    p = commands.add(
        "move-leader", "Transfers leadership to another etcd cluster member.", move_leader
    )
    p.add_argument("args", nargs="*", metavar="<transferee-member-id>")
