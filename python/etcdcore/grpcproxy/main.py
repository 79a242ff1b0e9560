"""``etcdcore grpc-proxy start``: parse etcd's flags, start the Rust proxy
(``_core.GrpcProxy``), serve until SIGTERM/SIGINT.

Exit codes and texts follow ``etcd grpc-proxy``: 1 with pflag's error and
the usage for a bad command line, 1 with etcd's message for settings it
refuses or a listener that cannot be had, 0 for ``--help``.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from etcdcore._core import GrpcProxy, GrpcProxyConfig
from etcdcore.grpcproxy.config import (
    CheckError,
    HelpRequested,
    ProxyConfig,
    UsageError,
    parse_metrics_addr,
    proxy_help,
    proxy_usage,
    start_help,
    start_usage,
)
from etcdcore.server.logs import configure_logging

log = logging.getLogger("etcdcore.grpcproxy")

#: etcd's proxy dials the cluster with clientv3's 5 s dial timeout.
DIAL_TIMEOUT = 5.0
#: How often the endpoints are refreshed from the member list.
AUTO_SYNC_INTERVAL = 30.0


def _fields(**fields: object) -> dict[str, dict[str, object]]:
    return {"fields": fields}


def _go_open_error(path: str) -> str | None:
    """Go's words when a file cannot be read, or None when it can."""
    try:
        with open(path, "rb"):
            return None
    except FileNotFoundError:
        return f"open {path}: no such file or directory"
    except PermissionError:
        return f"open {path}: permission denied"
    except OSError as e:
        return f"open {path}: {e.strerror}"


def _usage_error(message: str, usage: str) -> int:
    # cobra: the error and the usage, then etcd prints the error once more.
    sys.stderr.write(f"Error: {message}\n{usage}\n{message}")
    return 1


def run(argv: Sequence[str]) -> int:
    """``etcdcore grpc-proxy ...``; returns the exit code."""
    args = list(argv)
    command = next((a for a in args if not a.startswith("-")), None)
    if command != "start":
        for a in args:
            if a in ("-h", "--help") or not a.startswith("-"):
                continue
            return _usage_error(f"unknown flag: {a.split('=')[0]}", proxy_usage())
        sys.stdout.write(proxy_help())
        return 0
    args.remove("start")
    try:
        cfg = ProxyConfig.from_args(args)
    except HelpRequested:
        sys.stdout.write(start_help())
        return 0
    except UsageError as e:
        return _usage_error(str(e), start_usage())
    except CheckError as e:
        sys.stderr.write(f"{e}\n")
        return 1
    configure_logging("debug" if cfg.debug else "info")
    return serve(cfg)


def _listen_address_error(addr: str) -> str | None:
    """Go's net.Listen refusals that need no socket."""
    _, sep, port = addr.rpartition(":")
    if not sep:
        return f"listen tcp: address {addr}: missing port in address"
    if port and not port.isdigit():
        return f"listen tcp: address tcp/{port}: unknown port"
    return None


def serve(cfg: ProxyConfig) -> int:
    for name in cfg.ignored:
        log.warning("flag not supported by etcdcore; ignored", extra=_fields(flag=name))
    cert_file, key_file, ca_file = cfg.cert_file, cfg.key_file, cfg.trusted_ca_file
    if not cfg.listen_tls_given() and cfg.auto_tls:
        from etcdcore.server.tls import self_signed

        host = cfg.listen_addr.rsplit(":", 1)[0].strip("[]")
        directory = Path(cfg.data_dir) / "fixtures" / "proxy"
        try:
            cert_file, key_file = self_signed(directory, [host], cfg.self_signed_cert_validity)
        except OSError as e:
            log.warning("cannot create cert directory", extra=_fields(error=str(e)))
            sys.stderr.write(f"{e}\n")
            return 1
    if cert_file or key_file or ca_file:
        for path in (cert_file, key_file, ca_file):
            if path and (err := _go_open_error(path)):
                # zap's Fatal: the level says so (the formatter knows no "fatal").
                log.critical(
                    "failed to create TLS listener", extra=_fields(level="fatal", error=err)
                )
                return 1
        log.info(
            "gRPC proxy server TLS",
            extra=_fields(
                **{"tls-info": f"cert = {cert_file}, key = {key_file}, trusted-ca = {ca_file}"}
            ),
        )
    if err := _listen_address_error(cfg.listen_addr):
        sys.stderr.write(f"{err}\n")
        return 1
    for path in (cfg.cacert, cfg.cert, cfg.key):
        if path and (err := _go_open_error(path)):
            sys.stderr.write(f"{err}\n")
            return 1
    metrics_url = None
    if cfg.metrics_addr:
        try:
            scheme, hostport = parse_metrics_addr(cfg.metrics_addr)
        except ValueError as e:
            sys.stderr.write(str(e))
            return 1
        metrics_url = f"{scheme}://{hostport}"
    if cfg.insecure_skip_tls_verify:
        log.warning(
            "--insecure-skip-tls-verify was given, this grpc proxy process skips "
            "authentication of etcd server TLS certificates. This option should be enabled "
            "only for testing purposes."
        )
    proxy = GrpcProxy(
        GrpcProxyConfig(
            listen_addr=cfg.listen_addr,
            endpoints=cfg.endpoints,
            advertise_client_url=cfg.advertise_client_url,
            resolver_prefix=cfg.resolver_prefix,
            resolver_ttl=cfg.resolver_ttl,
            namespace=cfg.namespace.encode("utf-8", "surrogateescape"),
            metrics_addr=metrics_url,
            max_send_bytes=cfg.send_limit(),
            max_recv_bytes=cfg.recv_limit(),
            dial_timeout=DIAL_TIMEOUT,
            cert=cfg.cert,
            key=cfg.key,
            cacert=cfg.cacert,
            insecure_skip_tls_verify=cfg.insecure_skip_tls_verify,
            cert_file=cert_file,
            key_file=key_file,
            trusted_ca_file=ca_file,
            keepalive_interval=cfg.keepalive_interval,
            keepalive_timeout=cfg.keepalive_timeout,
            hostname=socket.gethostname(),
            auto_sync_interval=AUTO_SYNC_INTERVAL,
            debug=cfg.debug,
        )
    )
    try:
        proxy.start()
    except OSError as e:
        sys.stderr.write(f"{e}\n")
        return 1
    except RuntimeError as e:
        sys.stderr.write(f"{e}\n")
        return 1
    if metrics_url:
        log.info("gRPC proxy listening for metrics", extra=_fields(address=metrics_url))
    log.info("started gRPC proxy", extra=_fields(address=cfg.listen_addr))
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        while not received:
            if proxy.wait(0.2):
                log.error("gRPC proxy server stopped")
                code = 1
                break
    finally:
        if received:
            log.info(
                "received signal; shutting down",
                extra=_fields(signal=signal.Signals(received[0]).name),
            )
        proxy.stop()
        for s, h in old.items():
            signal.signal(s, h)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    return run(sys.argv[1:] if argv is None else list(argv))
