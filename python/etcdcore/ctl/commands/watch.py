"""watch: print events as they happen; ``-i`` reads watch/progress lines from
stdin; ``watch KEY -- CMD`` runs CMD per event with ETCD_WATCH_* set."""

from __future__ import annotations

import argparse
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import grpc

from etcdcore.client.requests import is_auth_refused_watch, is_invalid_token, prefix_end
from etcdcore.proto.etcdserverpb import rpc_pb2
from etcdcore.proto.mvccpb import kv_pb2

from ..cli import Commands, Context, Parser, bad_args, bool_flag
from ..errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_INVALID_INPUT, CtlError, rpc_message
from ..output import flush, go_quote, write
from .kv import _rewrite, argify
from .parsing import go_int


def add_watch_flags(p: argparse.ArgumentParser) -> None:
    bool_flag(p, "interactive", "Interactive mode", "-i")
    bool_flag(p, "prefix", "Watch on a prefix if prefix is set")
    p.add_argument("--rev", default="0", help="Revision to start watching")
    bool_flag(p, "prev-kv", "get the previous key-value pair before the event happens")
    bool_flag(p, "progress-notify", "get periodic watch progress notification from server")
    p.add_argument(
        "args", nargs="*", metavar="[key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]"
    )


class WatchStream:
    """One Watch stream carrying any number of watchers; requests are fed from
    a queue so the stream stays open while the ctl runs."""

    def __init__(self, ctx: Context) -> None:
        self._requests: queue.Queue[rpc_pb2.WatchRequest | None] = queue.Queue()
        # Like etcdctl's WithRequireLeader: a member cut off from the
        # cluster cancels the stream instead of going silent.
        md = [*ctx.conn.metadata(), ("hasleader", "true")]
        self._responses = ctx.conn.stub("Watch").Watch(self._iter(), metadata=md)

    def _iter(self) -> Iterator[rpc_pb2.WatchRequest]:
        while True:
            req = self._requests.get()
            if req is None:
                return
            yield req

    def send(self, req: rpc_pb2.WatchRequest) -> None:
        self._requests.put(req)

    def responses(self) -> Iterator[rpc_pb2.WatchResponse]:
        return iter(self._responses)

    def close(self) -> None:
        self._requests.put(None)
        self._responses.cancel()


def create_request(a: argparse.Namespace, args: list[str]) -> rpc_pb2.WatchRequest:
    key = args[0].encode()
    create = rpc_pb2.WatchCreateRequest(
        key=key,
        start_revision=go_int(a.rev, "rev"),
        prev_kv=a.prev_kv,
        progress_notify=a.progress_notify,
    )
    if len(args) == 2:
        if a.prefix:
            raise bad_args("`range_end` and `--prefix` are mutually exclusive")
        create.range_end = args[1].encode()
    if a.prefix:
        if key:
            create.range_end = prefix_end(key)
        else:
            create.key, create.range_end = b"\x00", b"\x00"
    return rpc_pb2.WatchRequest(create_request=create)


def split_exec(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """Everything after the first ``--`` following ``watch`` is the command."""
    try:
        start = argv.index("watch") + 1
    except ValueError:
        start = 0
    rest = argv[start:]
    if "--" not in rest:
        return rest, None
    i = rest.index("--")
    return rest[:i], rest[i + 1 :]


def run_events(resp: rpc_pb2.WatchResponse, exec_args: list[str]) -> None:
    for ev in resp.events:
        env = dict(os.environ)
        env["ETCD_WATCH_REVISION"] = str(resp.header.revision)
        env["ETCD_WATCH_EVENT_TYPE"] = f'"{kv_pb2.Event.EventType.Name(ev.type)}"'
        env["ETCD_WATCH_KEY"] = go_quote(ev.kv.key)
        env["ETCD_WATCH_VALUE"] = go_quote(ev.kv.value)
        flush()
        try:
            done = subprocess.run(exec_args, env=env, check=False)
        except OSError as e:
            sys.stderr.write(f"command {exec_args!r} error ({e.strerror})\n")
            raise SystemExit(EXIT_ERROR) from e
        if done.returncode != 0:
            sys.stderr.write(f"command {exec_args!r} error (exit status {done.returncode})\n")
            raise SystemExit(EXIT_ERROR)


def print_response(ctx: Context, resp: rpc_pb2.WatchResponse, exec_args: list[str] | None) -> bool:
    """Prints one response as etcdctl does; False when it cancels the watch."""
    if resp.created and not resp.events and not resp.canceled:
        return True
    if resp.canceled:
        reason = resp.cancel_reason
        if resp.compact_revision:
            reason = "etcdserver: mvcc: required revision has been compacted"
        sys.stderr.write(f"watch was canceled ({reason})\n")
        return False
    if not resp.events and not resp.created:
        write(f"progress notify: {resp.header.revision}")
    ctx.printer.watch(resp)
    flush()
    if exec_args:
        run_events(resp, exec_args)
    return True


def print_responses(ctx: Context, stream: WatchStream, exec_args: list[str] | None) -> None:
    try:
        for resp in stream.responses():
            if not print_response(ctx, resp, exec_args):
                return
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.CANCELLED:
            raise CtlError(EXIT_ERROR, rpc_message(e)) from e


#: How long a broken watch waits before it opens a stream again, seconds.
REOPEN_DELAY = 0.5


def follow(ctx: Context, create: rpc_pb2.WatchRequest, exec_args: list[str] | None) -> None:
    """One watch, printed until the server cancels it. As etcdctl's client
    does, a stream that breaks (the member restarted, the connection dropped)
    is opened again, on the next endpoint, from the revision after the last
    one printed, and a refused token is replaced by logging in again once."""
    start = create.create_request.start_revision
    relogged = False
    while True:
        create.create_request.start_revision = start
        stream = WatchStream(ctx)
        stream.send(create)
        try:
            for resp in stream.responses():
                if ctx.conn.user and is_auth_refused_watch(resp) and not relogged:
                    relogged = True
                    ctx.conn.forget_token()
                    break
                if resp.created and not resp.canceled:
                    relogged = False
                    if start == 0:
                        start = resp.header.revision + 1
                if not print_response(ctx, resp, exec_args):
                    return
                if resp.events:
                    start = resp.events[-1].kv.mod_revision + 1
            else:
                return  # the server ended the stream
        except grpc.RpcError as e:
            if ctx.conn.user and is_invalid_token(e) and not relogged:
                relogged = True
                ctx.conn.forget_token()
                continue
            if e.code() == grpc.StatusCode.CANCELLED:
                return
            if e.code() != grpc.StatusCode.UNAVAILABLE:
                raise CtlError(EXIT_ERROR, rpc_message(e)) from e
            ctx.conn.next_endpoint()
            time.sleep(REOPEN_DELAY)
        finally:
            stream.close()


def watch(ctx: Context, a: argparse.Namespace) -> None:
    env_key = os.environ.get("ETCDCTL_WATCH_KEY", "")
    env_range = os.environ.get("ETCDCTL_WATCH_RANGE_END", "")
    if not env_key and env_range:
        raise bad_args(f'ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END="{env_range}"')
    if a.interactive:
        interactive(ctx, a, env_key, env_range)
        return
    _, exec_args = split_exec(a.argv)
    args = list(a.args)
    if exec_args is not None:
        args = a.args[: len(a.args) - len(exec_args)]
        if not exec_args:
            raise bad_args("bad number of arguments (found separator --, but no commands)")
    if env_key:
        if args:
            raise bad_args("bad number of arguments (found conflicting environment key)")
        args = [env_key] + ([env_range] if env_range else [])
    if not args:
        raise bad_args("bad number of arguments")
    follow(ctx, create_request(a, args), exec_args)
    raise CtlError(EXIT_INTERRUPTED, "watch is canceled by the server")


def interactive(ctx: Context, a: argparse.Namespace, env_key: str, env_range: str) -> None:
    stream = WatchStream(ctx)
    printer = threading.Thread(target=print_responses, args=(ctx, stream, None), daemon=True)
    printer.start()
    parser = Parser(prog="watch", add_help=False)
    add_watch_flags(parser)
    for line in sys.stdin:
        line = line.rstrip("\n")
        args = argify(line)
        if not args:
            sys.stderr.write(f"Invalid command: {line} (watch and progress supported)\n")
            continue
        if args[0] == "watch":
            if len(args) < 2 and not env_key:
                sys.stderr.write(f"Invalid command {line} (command type or key is not provided)\n")
                continue
            try:
                sub = parser.parse_args(_rewrite(args[1:]))
                keys = sub.args or [env_key] + ([env_range] if env_range else [])
                stream.send(create_request(sub, keys))
            except CtlError as e:
                sys.stderr.write(f"Invalid command {line} ({e.message})\n")
        elif args[0] == "progress":
            stream.send(rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()))
        else:
            sys.stderr.write(f"Invalid command {line} (only support watch)\n")
    raise CtlError(EXIT_INVALID_INPUT, "error reading watch request line: EOF")


def register(commands: Commands) -> None:
    add_watch_flags(commands.add("watch", "Watches events stream on keys or prefixes", watch))
