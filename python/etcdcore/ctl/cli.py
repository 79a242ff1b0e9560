"""The command line: etcdctl's global flags (also after the command, also
from ETCDCTL_* variables), its commands, its ``Error:`` line and exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc

from .connection import Connection, Security
from .durations import parse_duration
from .errors import EXIT_BAD_ARGS, EXIT_ERROR, EXIT_INTERRUPTED, CtlError, rpc_error
from .output import Printer, printer_for

#: Global flags: (name, kind, default, help). Each is settable as
#: ETCDCTL_<NAME> (upper case, dashes as underscores) unless given as a flag.
GLOBAL_FLAGS: list[tuple[str, str, Any, str]] = [
    ("endpoints", "list", ["127.0.0.1:2379"], "gRPC endpoints"),
    ("debug", "bool", False, "enable client-side debug logging"),
    ("write-out", "str", "simple", "set the output format (fields, json, protobuf, simple, table)"),
    ("hex", "bool", False, "print byte strings as hex encoded strings"),
    ("dial-timeout", "duration", 2.0, "dial timeout for client connections"),
    (
        "command-timeout",
        "duration",
        5.0,
        "timeout for short running command (excluding dial timeout)",
    ),
    ("keepalive-time", "duration", 2.0, "keepalive time for client connections"),
    ("keepalive-timeout", "duration", 6.0, "keepalive timeout for client connections"),
    ("insecure-transport", "bool", True, "disable transport security for client connections"),
    (
        "insecure-discovery",
        "bool",
        True,
        "accept insecure SRV records describing cluster endpoints",
    ),
    ("insecure-skip-tls-verify", "bool", False, "skip server certificate verification"),
    ("cert", "str", "", "identify secure client using this TLS certificate file"),
    ("key", "str", "", "identify secure client using this TLS key file"),
    ("cacert", "str", "", "verify certificates of TLS-enabled secure servers using this CA bundle"),
    (
        "user",
        "str",
        "",
        "username[:password] for authentication (prompt if password is not supplied)",
    ),
    (
        "password",
        "str",
        "",
        "password for authentication (if this option is used, --user shouldn't include password)",
    ),
    (
        "discovery-srv",
        "str",
        "",
        "domain name to query for SRV records describing cluster endpoints",
    ),
    ("discovery-srv-name", "str", "", "service name to query when using DNS discovery"),
]
_SHORT = {"write-out": "-w", "discovery-srv": "-d"}

#: Flags of any command that take no value; ``--flag=true|false`` is rewritten
#: for argparse, as Go's pflag accepts both forms.
BOOL_FLAGS: set[str] = {name for name, kind, _, _ in GLOBAL_FLAGS if kind == "bool"}


def bool_flag(
    parser: argparse.ArgumentParser, name: str, help: str, short: str | None = None
) -> None:
    """A pflag-style boolean flag: ``--name``, ``--name=true``, ``--name=false``."""
    BOOL_FLAGS.add(name)
    names = [f"--{name}"] + ([short] if short else [])
    parser.add_argument(*names, action=argparse.BooleanOptionalAction, default=False, help=help)


class Parser(argparse.ArgumentParser):
    """argparse that ends as cobra does: ``Error: ...`` and exit code 1."""

    def error(self, message: str) -> NoReturn:
        raise CtlError(EXIT_ERROR, message)


def _global_parser(suppress: bool) -> Parser:
    p = Parser(add_help=False)
    for name, kind, _default, help in GLOBAL_FLAGS:
        flags = [f"--{name}"] + ([_SHORT[name]] if name in _SHORT else [])
        kw: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help}
        if kind == "bool":
            kw["action"] = argparse.BooleanOptionalAction
        elif kind == "list":
            kw["action"] = "append"
        p.add_argument(*flags, **kw)
    return p


@dataclass
class Context:
    """What a command runs with: its options, the printer and (made on first
    use) the connection."""

    options: argparse.Namespace
    printer: Printer
    _conn: Connection | None = field(default=None)

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            o = self.options
            self._conn = Connection(
                endpoints=o.endpoints,
                dial_timeout=o.dial_timeout,
                command_timeout=o.command_timeout,
                security=Security(
                    cacert=o.cacert,
                    cert=o.cert,
                    key=o.key,
                    insecure_transport=o.insecure_transport,
                    insecure_skip_verify=o.insecure_skip_tls_verify,
                ),
                user=o.user,
                password=o.password,
            )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


Handler = Callable[[Context, argparse.Namespace], "int | None"]


class Commands:
    """Registers commands; every command parser also takes the global flags."""

    def __init__(
        self,
        sub: argparse._SubParsersAction[Parser],
        globals_: Parser,
    ) -> None:
        self._sub = sub
        self._globals = globals_

    def add(
        self, name: str, help: str, handler: Handler | None = None, **kw: Any
    ) -> argparse.ArgumentParser:
        p = self._sub.add_parser(name, help=help, parents=[self._globals], **kw)
        if handler is not None:
            p.set_defaults(handler=handler)
        return p

    def group(self, name: str, help: str) -> Commands:
        """A command with subcommands (``lease grant``, ``member list``...)."""
        p = self.add(name, help)
        sub = p.add_subparsers(dest=f"{name}_command", metavar="<subcommand>", parser_class=Parser)
        p.set_defaults(handler=lambda _c, _a, p=p: _missing_subcommand(p))
        return Commands(sub, self._globals)


def _missing_subcommand(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .commands import auth, cluster, concurrency, kv, lease, maintenance, watch

    globals_ = _global_parser(suppress=True)
    root = Parser(
        prog="etcdcorectl",
        description="A simple command line client for etcd3.",
        parents=[globals_],
    )
    sub = root.add_subparsers(dest="command", metavar="<command>", parser_class=Parser)
    commands = Commands(sub, globals_)
    for module in (kv, watch, lease, cluster, maintenance, concurrency, auth):
        module.register(commands)
    return root


def _rewrite_bools(argv: Sequence[str]) -> list[str]:
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            return out + list(argv[i:])
        if arg.startswith("--") and "=" in arg:
            name, value = arg[2:].split("=", 1)
            if name in BOOL_FLAGS and value.lower() in ("true", "false", "1", "0", "t", "f"):
                out.append(f"--{name}" if value.lower() in ("true", "1", "t") else f"--no-{name}")
                continue
        out.append(arg)
    return out


def _positional_extras(options: argparse.Namespace, extra: list[str]) -> None:
    """pflag takes positional arguments between flags (``put k --prev-kv v``);
    argparse leaves those over, so they are appended to the command's own."""
    for arg in extra:
        if arg.startswith("-") and arg != "-":
            raise CtlError(EXIT_ERROR, f"unknown flag: {arg.split('=', 1)[0]}")
        if not hasattr(options, "args"):
            raise CtlError(EXIT_ERROR, f'unknown command "{arg}" for "etcdcorectl"')
        options.args.append(arg)


def _apply_globals(options: argparse.Namespace) -> None:
    """Flag, else ETCDCTL_* variable, else etcdctl's default."""
    for name, kind, default, _help in GLOBAL_FLAGS:
        dest = name.replace("-", "_")
        value = getattr(options, dest, None)
        if value is None:
            env = os.environ.get("ETCDCTL_" + dest.upper())
            if env is not None:
                value = _from_env(kind, env, name)
            else:
                value = default
        elif kind == "list":
            value = [e for item in value for e in item.split(",") if e]
        if kind == "duration" and isinstance(value, str):
            value = _duration(value, name)
        setattr(options, dest, value)


def _from_env(kind: str, text: str, name: str) -> Any:
    if kind == "bool":
        return text.lower() in ("1", "t", "true")
    if kind == "list":
        return [e for e in text.split(",") if e]
    if kind == "duration":
        return _duration(text, name)
    return text


def _duration(text: str, name: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise CtlError(EXIT_ERROR, f'invalid argument "{text}" for "--{name}" flag: {e}') from e


def main(argv: Sequence[str] | None = None) -> int:
    """Run one etcdcorectl command; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    ctx: Context | None = None
    try:
        parser = build_parser()
        options, extra = parser.parse_known_args(_rewrite_bools(args))
        _positional_extras(options, extra)
        options.argv = args
        _apply_globals(options)
        handler = getattr(options, "handler", None)
        if handler is None:
            parser.print_help()
            return 0
        ctx = Context(options, printer_for(options.write_out, options.hex))
        code = handler(ctx, options)
        return code or 0
    except CtlError as e:
        sys.stdout.flush()
        sys.stderr.write(f"Error: {e.message}\n")
        return e.code
    except grpc.RpcError as e:
        sys.stderr.write(f"Error: {rpc_error(e).message}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_ERROR
    finally:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            pass
        if ctx is not None:
            ctx.close()


def bad_args(message: str) -> CtlError:
    """etcdctl's usage errors exit with 128."""
    return CtlError(EXIT_BAD_ARGS, message)
