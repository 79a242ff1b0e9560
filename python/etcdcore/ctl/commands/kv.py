"""Key-value commands: get, put, del, txn, compaction."""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Callable
from typing import TextIO, TypeVar

from etcdcore.client.requests import prefix_end
from etcdcore.proto.etcdserverpb import rpc_pb2

from ..cli import Commands, Context, Parser, bad_args, bool_flag
from ..errors import EXIT_BAD_FEATURE, EXIT_ERROR, EXIT_INVALID_INPUT, CtlError
from ..output import FieldsPrinter, SimplePrinter, write
from .parsing import go_int, hex_id

T = TypeVar("T")

# -- get ---------------------------------------------------------------------------


def add_get_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--consistency", default="l", help="Linearizable(l) or Serializable(s)")
    p.add_argument(
        "--order", default="", help="Order of results; ASCEND or DESCEND (ASCEND by default)"
    )
    p.add_argument(
        "--sort-by", default="", help="Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION"
    )
    p.add_argument("--limit", default="0", help="Maximum number of results")
    bool_flag(p, "prefix", "Get keys with matching prefix")
    bool_flag(
        p, "from-key", "Get keys that are greater than or equal to the given key using byte compare"
    )
    p.add_argument("--rev", default="0", help="Specify the kv revision")
    bool_flag(p, "keys-only", "Get only the keys")
    bool_flag(p, "count-only", "Get only the count")
    bool_flag(p, "print-value-only", 'Only write values when using the "simple" output format')
    p.add_argument("args", nargs="*", metavar="<key> [range_end]")


_SORT_ORDER = {"": rpc_pb2.RangeRequest.NONE, "ASCEND": rpc_pb2.RangeRequest.ASCEND}
_SORT_ORDER["DESCEND"] = rpc_pb2.RangeRequest.DESCEND
_SORT_TARGET = {
    "": rpc_pb2.RangeRequest.KEY,
    "KEY": rpc_pb2.RangeRequest.KEY,
    "CREATE": rpc_pb2.RangeRequest.CREATE,
    "MODIFY": rpc_pb2.RangeRequest.MOD,
    "VALUE": rpc_pb2.RangeRequest.VALUE,
    "VERSION": rpc_pb2.RangeRequest.VERSION,
}


def range_request(a: argparse.Namespace) -> rpc_pb2.RangeRequest:
    """The RangeRequest for get's flags, validated as etcdctl validates them."""
    args = a.args
    if not args:
        raise bad_args(
            "get command needs one argument as key and an optional argument as range_end"
        )
    if a.prefix and a.from_key:
        raise bad_args("`--prefix` and `--from-key` cannot be set at the same time, choose one")
    if a.keys_only and a.count_only:
        raise bad_args(
            "`--keys-only` and `--count-only` cannot be set at the same time, choose one"
        )
    if a.consistency not in ("l", "s"):
        raise CtlError(EXIT_BAD_FEATURE, f'unknown consistency flag "{a.consistency}"')
    req = rpc_pb2.RangeRequest(key=args[0].encode(), serializable=a.consistency == "s")
    if len(args) > 1:
        if a.prefix or a.from_key:
            raise bad_args(
                "too many arguments, only accept one argument when "
                "`--prefix` or `--from-key` is set"
            )
        req.range_end = args[1].encode()
    req.limit = go_int(a.limit, "limit")
    rev = go_int(a.rev, "rev")
    if rev > 0:
        req.revision = rev
    order, target = a.order.upper(), a.sort_by.upper()
    if order not in _SORT_ORDER:
        raise CtlError(EXIT_BAD_FEATURE, f"bad sort order {a.order}")
    if target not in _SORT_TARGET:
        raise CtlError(EXIT_BAD_FEATURE, f"bad sort target {a.sort_by}")
    req.sort_order, req.sort_target = _SORT_ORDER[order], _SORT_TARGET[target]
    # etcd's client: sorting by key ascending is the server's natural order.
    if (
        req.sort_target == rpc_pb2.RangeRequest.KEY
        and req.sort_order == rpc_pb2.RangeRequest.ASCEND
    ):
        req.sort_order = rpc_pb2.RangeRequest.NONE
    if a.prefix or a.from_key:
        if not req.key:
            req.key, req.range_end = b"\x00", b"\x00"
        else:
            req.range_end = prefix_end(req.key) if a.prefix else b"\x00"
    req.keys_only, req.count_only = a.keys_only, a.count_only
    return req


def get(ctx: Context, a: argparse.Namespace) -> None:
    req = range_request(a)
    resp = ctx.conn.call("KV", "Range", req)
    if a.count_only and not isinstance(ctx.printer, FieldsPrinter):
        raise bad_args("--count-only is only for `--write-out=fields`")
    if a.print_value_only:
        if not isinstance(ctx.printer, SimplePrinter):
            raise bad_args("print-value-only is only for `--write-out=simple`")
        ctx.printer.value_only = True
    ctx.printer.get(resp)


# -- put ---------------------------------------------------------------------------


def add_put_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lease", default="0", help="lease ID (in hexadecimal) to attach to the key")
    bool_flag(p, "prev-kv", "return the previous key-value pair before modification")
    bool_flag(p, "ignore-value", "updates the key using its current value")
    bool_flag(p, "ignore-lease", "updates the key using its current lease")
    p.add_argument("args", nargs="*", metavar="<key> <value>")


def put_request(a: argparse.Namespace, stdin: TextIO | None) -> rpc_pb2.PutRequest:
    """The PutRequest for put's arguments; the value may come from stdin."""
    usage = "put command needs 1 argument and input from stdin or 2 arguments"
    args = a.args
    if not args:
        raise bad_args(usage)
    if a.ignore_value and len(args) > 1:
        raise bad_args("put command needs only 1 argument when 'ignore-value' is set")
    value = ""
    if not a.ignore_value:
        if len(args) > 1:
            value = args[1]
        else:
            value = stdin.read() if stdin is not None else ""
            if not value:
                raise bad_args(usage)
    lease = hex_id(a.lease, "bad lease ID ({}), expecting ID in Hex")
    return rpc_pb2.PutRequest(
        key=args[0].encode(),
        value=value.encode(),
        lease=lease,
        prev_kv=a.prev_kv,
        ignore_value=a.ignore_value,
        ignore_lease=a.ignore_lease,
    )


def put(ctx: Context, a: argparse.Namespace) -> None:
    ctx.printer.put(ctx.conn.call("KV", "Put", put_request(a, sys.stdin)))


# -- del ---------------------------------------------------------------------------


def add_del_flags(p: argparse.ArgumentParser) -> None:
    bool_flag(p, "prefix", "delete keys with matching prefix")
    bool_flag(p, "prev-kv", "return deleted key-value pairs")
    bool_flag(
        p,
        "from-key",
        "delete keys that are greater than or equal to the given key using byte compare",
    )
    bool_flag(p, "range", "delete range of keys")
    p.add_argument("args", nargs="*", metavar="<key> [range_end]")


def delete_request(a: argparse.Namespace) -> rpc_pb2.DeleteRangeRequest:
    args = a.args
    if not args:
        raise bad_args(
            "del command needs one argument as key and an optional argument as range_end"
        )
    if a.prefix and a.from_key:
        raise bad_args("`--prefix` and `--from-key` cannot be set at the same time, choose one")
    req = rpc_pb2.DeleteRangeRequest(key=args[0].encode(), prev_kv=a.prev_kv)
    if len(args) > 1:
        if a.prefix or a.from_key:
            raise bad_args(
                "too many arguments, only accept one argument when "
                "`--prefix` or `--from-key` is set"
            )
        req.range_end = args[1].encode()
    if a.prefix or a.from_key:
        if not req.key:
            req.key, req.range_end = b"\x00", b"\x00"
        else:
            req.range_end = prefix_end(req.key) if a.prefix else b"\x00"
    return req


def delete(ctx: Context, a: argparse.Namespace) -> None:
    ctx.printer.delete(ctx.conn.call("KV", "DeleteRange", delete_request(a)))


# -- txn ---------------------------------------------------------------------------

_ARG = re.compile(r""""(?:[^"\\]|\\.)*"|'[^']*'|[^'"\s]\S*[^'"\s]?""")


def argify(line: str) -> list[str]:
    """Split a line into arguments as etcdctl's txn and interactive watch do:
    double-quoted (with Go escapes), single-quoted, or bare words."""
    out = []
    for tok in _ARG.findall(line):
        if tok.startswith("'") and tok.endswith("'") and len(tok) >= 2:
            tok = tok[1:-1]
        elif tok.startswith('"'):
            tok = go_unquote(tok)
        out.append(tok)
    return out


def go_unquote(tok: str) -> str:
    try:
        value = ast.literal_eval(tok)
    except (ValueError, SyntaxError) as e:
        raise CtlError(EXIT_INVALID_INPUT, "invalid syntax") from e
    if not isinstance(value, str):
        raise CtlError(EXIT_INVALID_INPUT, "invalid syntax")
    return value


_OP_PARSERS: dict[str, argparse.ArgumentParser] = {}


def _op_parser(name: str) -> argparse.ArgumentParser:
    if name not in _OP_PARSERS:
        p = Parser(prog=name, add_help=False)
        {"get": add_get_flags, "put": add_put_flags, "del": add_del_flags}[name](p)
        _OP_PARSERS[name] = p
    return _OP_PARSERS[name]


def parse_request_op(line: str) -> rpc_pb2.RequestOp:
    """One line of txn's success/failure sections: a get, put or del command."""
    args = argify(line)
    if len(args) < 2:
        raise CtlError(EXIT_INVALID_INPUT, f"invalid txn compare request: {line}")
    name, rest = args[0], args[1:]
    if name not in ("get", "put", "del"):
        raise CtlError(EXIT_INVALID_INPUT, f"invalid txn request: {line}")
    try:
        a = _op_parser(name).parse_args(_rewrite(rest))
        if name == "get":
            return rpc_pb2.RequestOp(request_range=range_request(a))
        if name == "put":
            return rpc_pb2.RequestOp(request_put=put_request(a, None))
        return rpc_pb2.RequestOp(request_delete_range=delete_request(a))
    except CtlError as e:
        raise CtlError(EXIT_INVALID_INPUT, f"invalid txn request: {line}") from e


def _rewrite(args: list[str]) -> list[str]:
    from ..cli import _rewrite_bools

    return _rewrite_bools(args)


_C = rpc_pb2.Compare
#: txn's compare targets: the Compare field each sets and its target enum.
_CMP_TARGETS = {
    "ver": ("version", _C.VERSION),
    "version": ("version", _C.VERSION),
    "c": ("create_revision", _C.CREATE),
    "create": ("create_revision", _C.CREATE),
    "m": ("mod_revision", _C.MOD),
    "mod": ("mod_revision", _C.MOD),
    "val": ("value", _C.VALUE),
    "value": ("value", _C.VALUE),
    "lease": ("lease", _C.LEASE),
}
_CMP_RESULTS = {"=": rpc_pb2.Compare.EQUAL, "!=": rpc_pb2.Compare.NOT_EQUAL}
_CMP_RESULTS.update({"<": rpc_pb2.Compare.LESS, ">": rpc_pb2.Compare.GREATER})
_COMPARE = re.compile(r'^(?P<key>"(?:[^"\\]|\\.)*")\)\s+(?P<op>\S+)\s+(?P<val>"(?:[^"\\]|\\.)*")')


def parse_compare(line: str) -> rpc_pb2.Compare:
    """``target("key") op "value"``, e.g. ``mod("k") > "0"``."""
    if "(" not in line:
        raise CtlError(EXIT_INVALID_INPUT, f"malformed comparison: {line}")
    target, rest = line.split("(", 1)
    m = _COMPARE.match(rest)
    if m is None:
        raise CtlError(EXIT_INVALID_INPUT, f"malformed comparison: {line}")
    key, op, val = go_unquote(m["key"]), m["op"], go_unquote(m["val"])
    found = _CMP_TARGETS.get(target)
    if found is None:
        raise CtlError(
            EXIT_INVALID_INPUT, f"malformed comparison: {line} (unknown target {target})"
        )
    if op not in _CMP_RESULTS:
        raise CtlError(EXIT_INVALID_INPUT, f"malformed comparison: {line} (unknown op {op})")
    field, target_enum = found
    cmp = rpc_pb2.Compare(key=key.encode(), result=_CMP_RESULTS[op], target=target_enum)
    if field == "value":
        cmp.value = val.encode()
        return cmp
    try:
        number = int(val, 10)
    except ValueError as e:
        raise CtlError(EXIT_INVALID_INPUT, f"invalid txn compare request: {line}") from e
    setattr(cmp, field, number)
    return cmp


def _read_section(stdin: TextIO, parse: Callable[[str], T]) -> list[T]:
    """The lines up to an empty one, each parsed (parse_compare or parse_request_op)."""
    items: list[T] = []
    while True:
        line = stdin.readline()
        if not line:
            raise CtlError(EXIT_INVALID_INPUT, "EOF")
        line = line.strip()
        if not line:
            return items
        items.append(parse(line))


def txn(ctx: Context, a: argparse.Namespace) -> None:
    if a.args:
        raise bad_args("txn command does not accept argument")
    req = rpc_pb2.TxnRequest()
    if a.interactive:
        write("compares:")
    req.compare.extend(_read_section(sys.stdin, parse_compare))
    if a.interactive:
        write("success requests (get, put, del):")
    req.success.extend(_read_section(sys.stdin, parse_request_op))
    if a.interactive:
        write("failure requests (get, put, del):")
    req.failure.extend(_read_section(sys.stdin, parse_request_op))
    ctx.printer.txn(ctx.conn.call("KV", "Txn", req))


# -- compaction --------------------------------------------------------------------


def compaction(ctx: Context, a: argparse.Namespace) -> None:
    if len(a.args) != 1:
        raise bad_args("compaction command needs 1 argument")
    rev = go_int(a.args[0], None, EXIT_ERROR)
    ctx.conn.call("KV", "Compact", rpc_pb2.CompactionRequest(revision=rev, physical=a.physical))
    write(f"compacted revision {rev}")


def register(commands: Commands) -> None:
    add_get_flags(commands.add("get", "Gets the key or a range of keys", get))
    add_put_flags(commands.add("put", "Puts the given key into the store", put))
    add_del_flags(
        commands.add("del", "Removes the specified key or range of keys [key, range_end)", delete)
    )
    p = commands.add("txn", "Txn processes all the requests in one transaction", txn)
    bool_flag(p, "interactive", "Input transaction in interactive mode", "-i")
    p.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    p = commands.add("compaction", "Compacts the event history in etcd", compaction)
    bool_flag(p, "physical", "'true' to wait for compaction to physically remove all old revisions")
    p.add_argument("args", nargs="*", metavar="<revision>")
