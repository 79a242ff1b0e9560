"""``etcdcore gateway start``: etcd's L4 gateway, a TCP proxy in front of the
cluster's client URLs for clients that cannot be told every member.

This module is the command (etcd's flags, texts and exit codes); the proxy
itself runs in the core (``_core.Gateway``, tokio), since every byte of the
clients' traffic goes through it. Each client connection is handed to one
live endpoint; an endpoint that refuses a connection is taken out of the
rotation and dialed again every ``--retry-delay`` until it answers.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from etcdcore._core import Gateway
from etcdcore.ctl.durations import parse_duration
from etcdcore.server.logs import configure_logging

log = logging.getLogger("etcdcore.gateway")

GATEWAY_HELP = """gateway related command

Usage:
  etcd gateway [command]

Available Commands:
  start       start the gateway

Flags:
  -h, --help   help for gateway

Use "etcd gateway [command] --help" for more information about a command.
"""

START_USAGE = """Usage:
  etcd gateway start [flags]

Flags:
      --discovery-srv string        DNS domain used to bootstrap initial cluster
      --discovery-srv-name string   service name to query when using DNS discovery
      --endpoints strings           comma separated etcd cluster endpoints (default [127.0.0.1:2379])
  -h, --help                        help for start
      --insecure-discovery          accept insecure SRV records
      --listen-addr string          listen address (default "127.0.0.1:23790")
      --retry-delay duration        duration of delay before retrying failed endpoints (default 1m0s)
      --trusted-ca-file string      path to the client server TLS CA file for verifying the discovered endpoints when discovery-srv is provided.
"""  # noqa: E501 - etcd's help text, as printed

START_HELP = "start the gateway\n\n" + START_USAGE

#: Flag -> kind (etcd 3.5.1's `etcd gateway start` flags).
_FLAGS = {
    "discovery-srv": "string",
    "discovery-srv-name": "string",
    "endpoints": "strings",
    "insecure-discovery": "bool",
    "listen-addr": "string",
    "retry-delay": "duration",
    "trusted-ca-file": "string",
}


class FlagError(Exception):
    """A command line cobra refuses (usage printed, exit 1)."""


class Refused(Exception):
    """A configuration etcd's gateway refuses: the message goes to stdout,
    or to stderr when ``stderr``, and the exit code is 1."""

    def __init__(self, message: str, stderr: bool = False, newline: bool = True) -> None:
        super().__init__(message)
        self.stderr = stderr
        self.newline = newline


@dataclass
class Options:
    endpoints: list[str] = field(default_factory=lambda: ["127.0.0.1:2379"])
    listen_addr: str = "127.0.0.1:23790"
    retry_delay: float = 60.0
    discovery_srv: str = ""
    discovery_srv_name: str = ""
    insecure_discovery: bool = False
    trusted_ca_file: str = ""
    help: bool = False


def parse_args(argv: Sequence[str]) -> Options:
    """pflag's parsing of ``etcd gateway start``'s flags (positional
    arguments are ignored, as cobra does here)."""
    opts = Options()
    endpoints: list[str] | None = None
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--":
            break
        if arg in ("-h", "--help"):
            opts.help = True
            continue
        if not arg.startswith("-") or arg == "-":
            continue
        if not arg.startswith("--"):
            raise FlagError(f"unknown shorthand flag: {arg[1]!r} in {arg}")
        name, eq, value = arg[2:].partition("=")
        kind = _FLAGS.get(name)
        if kind is None:
            raise FlagError(f"unknown flag: --{name}")
        if not eq:
            if kind == "bool":
                value = "true"
            elif args:
                value = args.pop(0)
            else:
                raise FlagError(f"flag needs an argument: --{name}")
        try:
            converted = _convert(kind, value)
        except ValueError as e:
            raise FlagError(f'invalid argument "{value}" for "--{name}" flag: {e}') from None
        if name == "endpoints":
            assert isinstance(converted, list)
            endpoints = (endpoints or []) + [str(e) for e in converted]
        else:
            setattr(opts, name.replace("-", "_"), converted)
    if endpoints is not None:
        opts.endpoints = endpoints
    return opts


def _convert(kind: str, value: str) -> object:
    if kind == "bool":
        if value in ("1", "t", "T", "true", "TRUE", "True"):
            return True
        if value in ("0", "f", "F", "false", "FALSE", "False"):
            return False
        raise ValueError(f'strconv.ParseBool: parsing "{value}": invalid syntax')
    if kind == "duration":
        if re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)", value) and value.lstrip("+-") != "0":
            raise ValueError(f'time: missing unit in duration "{value}"')
        return parse_duration(value)
    if kind == "strings":
        # pflag reads a string slice as one CSV record.
        return value.split(",") if value else []
    return value


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{_bracket(self.host)}:{self.port}"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def split_host_port(address: str) -> tuple[str, str]:
    """Go's net.SplitHostPort; ValueError when ``address`` is not host:port."""
    if address.startswith("["):
        end = address.find("]")
        if end < 0 or address[end + 1 : end + 2] != ":":
            raise ValueError(address)
        host, port = address[1:end], address[end + 2 :]
        if "[" in host or "]" in port or ":" in port:
            raise ValueError(address)
        return host, port
    host, sep, port = address.rpartition(":")
    if not sep or ":" in host or "[" in address or "]" in address:
        raise ValueError(address)
    return host, port


def parse_endpoints(raw: Sequence[str]) -> list[Endpoint]:
    """etcd's endpoint list: the scheme and path of a URL dropped, then
    host:port; a port that is not a 16-bit number reads as 0 (Go's Sscanf)."""
    out = []
    for ep in raw:
        parts = urlsplit(ep) if "://" in ep else None
        if parts is not None and parts.netloc:
            ep = parts.netloc
        try:
            host, port = split_host_port(ep)
        except ValueError:
            raise Refused(f'error parsing endpoint "{ep}"', newline=False) from None
        digits = re.match(r"[+-]?\d+", port)
        number = int(digits.group()) if digits else 0
        out.append(Endpoint(host, number if 0 <= number <= 0xFFFF else 0))
    return out


def _resolve(host: str) -> set[str]:
    if not host:
        raise OSError("empty host")
    return {str(info[4][0]) for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)}


def check_no_loop(listen_addr: str, endpoints: Sequence[Endpoint]) -> None:
    """etcd refuses a gateway that would forward to itself."""
    try:
        lhost, lport = split_host_port(listen_addr)
    except ValueError:
        raise Refused(f"failed to validate listen address: {listen_addr}") from None
    try:
        laddrs = _resolve(lhost)
    except OSError:
        raise Refused(f"failed to resolve listen host: {lhost}") from None
    for ep in endpoints:
        try:
            eaddrs = _resolve(ep.host)
        except OSError:
            raise Refused(f"failed to resolve endpoint host: {ep.host}") from None
        shared = sorted(laddrs & eaddrs)
        if shared and lport == str(ep.port):
            raise Refused(
                f"SRV or endpoint ({ep}->{_bracket(shared[0])}:{ep.port}) should not "
                f"resolve to the gateway listen addr ({listen_addr})"
            )


def bind(listen_addr: str) -> socket.socket:
    """The listening socket, or Go's net.Listen error text."""
    host, port = split_host_port(listen_addr)
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise Refused(f"listen tcp: address tcp/{port}: unknown port", stderr=True) from e
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(sockaddr)
        sock.listen(socket.SOMAXCONN)
    except OSError as e:
        sock.close()
        text = (e.strerror or str(e))[:1].lower() + (e.strerror or str(e))[1:]
        raise Refused(f"listen tcp {listen_addr}: bind: {text}", stderr=True) from e
    return sock


def _on_event(kind: str, address: str, error: str, interval: float) -> None:
    fields: dict[str, object] = {"address": address}
    if kind == "activated":
        log.info("activated", extra={"fields": fields})
        return
    fields.update(interval=interval, error=error)
    if kind == "deactivated":
        log.warning("deactivated endpoint", extra={"fields": fields})
    else:
        log.warning(
            "failed to activate endpoint (stay inactive for another interval)",
            extra={"fields": fields},
        )


def start(argv: Sequence[str]) -> int:
    """``etcd gateway start``; returns the exit code."""
    try:
        opts = parse_args(argv)
    except FlagError as e:
        sys.stderr.write(f"Error: {e}\n{START_USAGE}\n{e}")
        return 1
    if opts.help:
        sys.stdout.write(START_HELP)
        return 0
    configure_logging(epoch_ts=True)
    log.info("Running: ", extra={"fields": {"args": [sys.argv[0], "gateway", "start", *argv]}})
    try:
        if opts.discovery_srv:
            raise Refused(
                "--discovery-srv is not supported by etcdcore's gateway: "
                "give the members with --endpoints",
                stderr=True,
            )
        endpoints = parse_endpoints(opts.endpoints)
        check_no_loop(opts.listen_addr, endpoints)
        if not endpoints:
            raise Refused("no endpoints found")
        listener = bind(opts.listen_addr)
    except Refused as e:
        (sys.stderr if e.stderr else sys.stdout).write(f"{e}\n" if e.newline else str(e))
        return 1
    return serve(listener, endpoints, opts.retry_delay)


def serve(listener: socket.socket, endpoints: Sequence[Endpoint], retry_delay: float) -> int:
    """Proxy until SIGTERM or SIGINT, then die of that signal as etcd does."""
    received: list[int] = []
    wake = threading.Event()

    def on_signal(sig: int, _frame: object) -> None:
        received.append(sig)
        wake.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    # Below a millisecond the core's monitor would spin; etcd's would too.
    interval = max(retry_delay, 0.001)
    gateway = Gateway(
        listener.detach(),
        [(str(e), 0, 0) for e in endpoints],
        interval,
        lambda kind, address, error: _on_event(kind, address, error, retry_delay),
    )
    log.info(
        "ready to proxy client requests",
        extra={"fields": {"endpoints": [str(e) for e in endpoints]}},
    )
    while not received:
        wake.wait(1.0)
    gateway.stop()
    first = received[0]
    signal.signal(first, signal.SIG_DFL)
    os.kill(os.getpid(), first)
    return 128 + first


def main(argv: Sequence[str]) -> int:
    """``etcdcore gateway ...`` (``argv`` after ``gateway``)."""
    if argv and argv[0] == "start":
        return start(argv[1:])
    sys.stdout.write(GATEWAY_HELP)
    return 0
