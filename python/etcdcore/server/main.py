"""``etcdcore``: start one member with etcd's flags and serve until SIGTERM/SIGINT.

Exit codes follow etcd: 2 for a command line Go's flag package would reject
(unknown flag, bad value), 1 for a configuration etcd refuses or a member that
fails to start, 0 after a clean shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from etcdcore import ETCD_VERSION, __version__
from etcdcore._core import Core, CoreConfig, CoreError, JwtTokens
from etcdcore.bridge import Bridge
from etcdcore.http.client_port import ClientPortSocket, multiplexes_client_urls
from etcdcore.http.server import HttpServer
from etcdcore.server.config import (
    USAGE,
    ConfigError,
    HelpRequested,
    ServerConfig,
    UsageError,
    VersionRequested,
    help_text,
    parse_compaction_retention,
)
from etcdcore.server.corrupt_check import DataInconsistency, check_initial_hash
from etcdcore.server.logs import LEVELS, configure_logging
from etcdcore.server.tls import client_credentials, core_tls
from etcdcore.server.tls import resolve as resolve_tls
from etcdcore.services.auth import AuthService
from etcdcore.services.cluster import ClusterService
from etcdcore.services.compactor import Compactor
from etcdcore.services.election import ElectionService
from etcdcore.services.leader_client import LeaderClient
from etcdcore.services.lock import LockService
from etcdcore.services.loopback import LoopbackKV
from etcdcore.services.maintenance import MaintenanceService

log = logging.getLogger("etcdcore.server")

#: The cluster version etcd 3.5 logs (major.minor of the version spoken).
CLUSTER_VERSION = ".".join(ETCD_VERSION.split(".")[:2])
#: How long a proposal may take (etcd's request timeout), as etcd logs it.
PUBLISH_TIMEOUT = "7s"

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


def version_text() -> str:
    """What ``--version`` prints: etcd's lines, adapted to etcdcore."""
    arch = _ARCH.get(platform.machine().lower(), platform.machine().lower())
    return (
        f"etcdcore Version: {__version__}\n"
        f"etcd Version: {ETCD_VERSION}\n"
        f"Python Version: {platform.python_version()}\n"
        f"OS/Arch: {sys.platform}/{arch}\n"
    )


def _fields(**fields: object) -> dict[str, dict[str, object]]:
    return {"fields": fields}


def core_config(
    cfg: ServerConfig, jwt: JwtTokens | None = None, client_http_gateway: str | None = None
) -> CoreConfig:
    """The core's configuration from the parsed flags, the --auth-token jwt key
    (parsed by :func:`token_provider`) and, with ``client_http_gateway``, the
    socket the client URLs forward HTTP requests to."""
    return CoreConfig(
        name=cfg.name,
        data_dir=cfg.data_dir,
        client_listen=cfg.client_listen_addresses(),
        client_urls=cfg.advertise_client_urls,
        peer_listen=cfg.peer_listen_addresses(),
        peer_urls=cfg.initial_advertise_peer_urls,
        initial_cluster=cfg.initial_cluster,
        initial_cluster_state="existing" if cfg.initial_cluster_state == "existing" else "new",
        cluster_token=cfg.initial_cluster_token,
        snapshot_count=cfg.snapshot_count,
        max_request_bytes=cfg.max_request_bytes,
        max_txn_ops=cfg.max_txn_ops,
        max_concurrent_streams=cfg.max_concurrent_streams,
        quota_backend_bytes=cfg.effective_quota_bytes(),
        backend_batch_interval_ms=cfg.backend_batch_interval_ms(),
        backend_batch_limit=cfg.backend_batch_limit,
        watch_progress_notify_interval_ms=cfg.watch_progress_notify_interval_ms(),
        heartbeat_ms=cfg.heartbeat_interval,
        election_ms=cfg.election_timeout,
        client_tls=core_tls(cfg.client_tls, cfg) if cfg.client_tls_enabled() else None,
        peer_tls=core_tls(cfg.peer_tls, cfg) if cfg.peer_tls_enabled() else None,
        jwt=jwt,
        client_http_gateway=client_http_gateway,
        lease_checkpoint_interval_ms=cfg.lease_checkpoint_interval_ms(),
    )


def token_provider(cfg: ServerConfig) -> JwtTokens | None:
    """The --auth-token jwt key (None for simple tokens), logging what etcd
    logs; ValueError with etcd's message when etcd would refuse to start."""
    jwt, unknown = JwtTokens.from_flag(cfg.auth_token)
    if unknown:
        log.warning("unknown JWT options", extra=_fields(keys=unknown))
    return jwt


def loopback_target(listen_address: str) -> str:
    """Where this process reaches its own client listener."""
    host, _, port = listen_address.rpartition(":")
    if host in ("0.0.0.0", "[::]", "::", ""):
        host = "127.0.0.1"
    return f"{host}:{port}"


def member_initialized(data_dir: str) -> bool:
    """Whether the data dir already holds a member (etcd: WAL files exist)."""
    wal = Path(data_dir) / "member" / "wal"
    return wal.is_dir() and any(p.suffix == ".wal" for p in wal.iterdir())


async def serve(
    core: Core,
    cfg: ServerConfig,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[], None] | None = None,
    jwt: JwtTokens | None = None,
    client_port_socket: str | None = None,
) -> None:
    """Run the Python services on this loop until SIGTERM or SIGINT, or until
    ``stop`` is set when given (an embedded member, which owns no signals).
    ``jwt`` is the --auth-token jwt key the Auth service signs tokens with;
    ``client_port_socket`` is where the core forwards the client URLs' HTTP
    requests (the ``client_http_gateway`` of its configuration)."""
    loop = asyncio.get_running_loop()
    handle_signals = stop is None
    bridge = Bridge(core)
    credentials = client_credentials(cfg.client_tls) if cfg.client_tls_enabled() else None
    leader = LeaderClient(core, credentials)
    MaintenanceService(core).register(bridge)
    auth = AuthService(core, token_ttl=cfg.auth_token_ttl, bcrypt_cost=cfg.bcrypt_cost, jwt=jwt)
    auth.register(bridge)
    ClusterService(core, leader).register(bridge)
    loopback = LoopbackKV(
        loopback_target(cfg.client_listen_addresses()[0]), credentials, core.internal_token()
    )
    LockService(loopback).register(bridge)
    ElectionService(loopback).register(bridge)

    if stop is None:
        stop = asyncio.Event()
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        if received:
            log.info("already shutting down", extra=_fields(signal=sig.name))
            return
        received.append(sig.name)
        stop.set()

    def on_removed() -> None:
        log.warning("the member has been permanently removed from the cluster")
        received.append("removed")
        stop.set()

    def on_failed(reason: str) -> None:
        # etcd logs a fatal line and exits: a member that can no longer make
        # its state durable must not go on answering.
        log.error("the member stopped after a failure", extra=_fields(error=reason))
        received.append("failure")
        stop.set()

    bridge.on_removed(on_removed)
    # Registered before the bridge is attached: publish may finish at once.
    published = asyncio.Event()
    bridge.on_published(published.set)
    bridge.on_failed(on_failed)
    if handle_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
    bridge.attach(loop)
    compaction: asyncio.Task[None] | None = None
    retention = parse_compaction_retention(cfg.auto_compaction_mode, cfg.auto_compaction_retention)
    if retention > 0:
        compactor = Compactor(core, cfg.auto_compaction_mode or "periodic", retention)
        compaction = asyncio.ensure_future(compactor.run())
    # HTTP (gateway, health, metrics).
    http = HttpServer(
        core,
        cfg,
        loopback_target(cfg.client_listen_addresses()[0]),
        credentials,
        client_port_socket,
    )
    http.metrics.watcher_count = core.watcher_count
    await http.start()
    announce = asyncio.ensure_future(_log_when_published(published, core, cfg))
    if on_ready is not None:
        on_ready()
    try:
        await stop.wait()
        log.info(
            "received signal; shutting down",
            extra=_fields(signal=received[0] if received else "?"),
        )
        announce.cancel()
        await http.stop()
        if compaction is not None:
            compaction.cancel()
        await bridge.shutdown()
        await leader.close()
        await loopback.close()
    finally:
        bridge.detach(loop)
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)


async def _log_when_published(published: asyncio.Event, core: Core, cfg: ServerConfig) -> None:
    await published.wait()
    log_ready(core, cfg)


def log_ready(core: Core, cfg: ServerConfig) -> None:
    """What etcd 3.5 logs once its publish is applied (its ReadyNotify): the
    published member, the cluster version and its capabilities, then that
    clients are served. Operators and wrappers wait for these lines."""
    cluster_id, member_id, _, _ = core.header()
    member, cluster = f"{member_id:x}", f"{cluster_id:x}"
    log.info(
        "published local member to cluster through raft",
        extra=_fields(
            **{
                "local-member-id": member,
                "local-member-attributes": (
                    f"{{Name:{cfg.name} ClientURLs:[{' '.join(cfg.advertise_client_urls)}]}}"
                ),
                "request-path": f"/0/members/{member}/attributes",
                "cluster-id": cluster,
                "publish-timeout": PUBLISH_TIMEOUT,
            }
        ),
    )
    # Every etcdcore member runs the same version, so the cluster's is known
    # as soon as the member is part of it.
    log.info(
        "set initial cluster version",
        extra=_fields(
            **{"cluster-id": cluster, "local-member-id": member, "cluster-version": CLUSTER_VERSION}
        ),
    )
    log.info(
        "enabled capabilities for version", extra=_fields(**{"cluster-version": CLUSTER_VERSION})
    )
    log.info("ready to serve client requests")
    for addr in cfg.client_listen_addresses():
        if cfg.client_tls_enabled():
            log.info("serving client traffic securely", extra=_fields(address=addr))
        else:
            log.info(
                "serving client traffic insecurely; this is strongly discouraged!",
                extra=_fields(address=addr),
            )


def run(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """Parse, start, serve, stop; returns the exit code."""
    if argv and argv[0] == "grpc-proxy":
        # etcd dispatches its proxy subcommand on the first argument alone.
        from etcdcore.grpcproxy.main import run as run_grpc_proxy

        return run_grpc_proxy(argv[1:])
    if argv and argv[0] == "gateway":
        from etcdcore.gateway import main as gateway_main

        return gateway_main(argv[1:])
    try:
        cfg = ServerConfig.from_args(argv, environ)
    except HelpRequested:
        sys.stdout.write(help_text())
        return 0
    except VersionRequested:
        sys.stdout.write(version_text())
        return 0
    except UsageError as e:
        sys.stderr.write(f"{e}\n{USAGE}")
        return e.exit_code
    except ConfigError as e:
        configure_logging()
        log.info("Running: ", extra=_fields(args=[sys.argv[0], *argv]))
        log.warning("failed to verify flags", extra=_fields(error=str(e)))
        return e.exit_code

    try:
        configure_logging(cfg.log_level, cfg.log_outputs)
    except OSError as e:
        configure_logging()
        log.warning("failed to verify flags", extra=_fields(error=f"cannot open log output: {e}"))
        return 1
    log.info("Running: ", extra=_fields(args=[sys.argv[0], *argv]))
    for notice in cfg.notices:
        log.log(LEVELS.get(notice.level, logging.INFO), notice.msg, extra=_fields(**notice.fields))

    initial_cluster = ",".join(f"{n}={u}" for n, urls in cfg.initial_cluster for u in urls)
    log.info(
        "starting an etcd server",
        extra=_fields(
            **{
                "etcd-version": ETCD_VERSION,
                "etcdcore-version": __version__,
                "python-version": platform.python_version(),
                "name": cfg.name,
                "data-dir": cfg.data_dir,
                "member-initialized": member_initialized(cfg.data_dir),
                "heartbeat-interval": f"{cfg.heartbeat_interval}ms",
                "election-timeout": f"{cfg.election_timeout}ms",
                "snapshot-count": cfg.snapshot_count,
                "initial-advertise-peer-urls": cfg.initial_advertise_peer_urls,
                "listen-peer-urls": cfg.listen_peer_urls,
                "advertise-client-urls": cfg.advertise_client_urls,
                "listen-client-urls": cfg.listen_client_urls,
                "initial-cluster": initial_cluster,
                "initial-cluster-state": cfg.initial_cluster_state,
                "initial-cluster-token": cfg.initial_cluster_token,
                "quota-size-bytes": cfg.effective_quota_bytes(),
                "max-request-bytes": cfg.max_request_bytes,
                "max-txn-ops": cfg.max_txn_ops,
            }
        ),
    )

    try:
        cfg = resolve_tls(cfg)
    except OSError as e:
        log.warning("cannot create the self-signed certificate", extra=_fields(error=str(e)))
        return 1
    try:
        jwt = token_provider(cfg)
    except ValueError as e:
        log.warning("failed to create token provider", extra=_fields(error=str(e)))
        log.warning("failed to start etcd", extra=_fields(error=str(e)))
        return 1
    client_port = ClientPortSocket() if multiplexes_client_urls(cfg) else None
    try:
        return _run_core(cfg, jwt, client_port.path if client_port else None)
    finally:
        if client_port is not None:
            client_port.remove()


def _run_core(cfg: ServerConfig, jwt: JwtTokens | None, client_port_socket: str | None) -> int:
    """Start the core, serve until told to stop, stop it; the exit code."""
    initialized = member_initialized(cfg.data_dir)
    core = Core(core_config(cfg, jwt, client_port_socket))
    try:
        core.start()
    except CoreError as e:
        message = e.args[1] if len(e.args) > 1 else str(e)
        log.error("failed to start", extra=_fields(error=message))
        _stop_quietly(core)
        return 1
    # etcd checks a member that has data; a new one has nothing to compare.
    if cfg.initial_corrupt_check and initialized:
        credentials = client_credentials(cfg.client_tls) if cfg.client_tls_enabled() else None
        try:
            asyncio.run(check_initial_hash(core, cfg.election_timeout, credentials))
        except DataInconsistency as e:
            log.error("checkInitialHashKV failed", extra=_fields(error=str(e)))
            # etcd 3.5 reports every start-up failure under this message.
            log.critical("discovery failed", extra=_fields(error=str(e)))
            _stop_quietly(core)
            return 1
    cluster_id, member_id, _, _ = core.header()
    log.info(
        "started etcdcore member",
        extra=_fields(
            **{
                "local-member-id": f"{member_id:x}",
                "cluster-id": f"{cluster_id:x}",
                "name": cfg.name,
                "advertise-client-urls": cfg.advertise_client_urls,
                "listen-client-urls": cfg.listen_client_urls,
                "listen-peer-urls": cfg.listen_peer_urls,
            }
        ),
    )
    code = 0
    try:
        asyncio.run(serve(core, cfg, jwt=jwt, client_port_socket=client_port_socket))
    except Exception:  # noqa: BLE001 - log, then still stop the core cleanly
        log.exception("serving failed")
        code = 1
    finally:
        log.info("stopping server", extra=_fields(**{"local-member-id": f"{member_id:x}"}))
        _stop_quietly(core)
    if core.failure() is not None:
        code = 1
    log.info("stopped server", extra=_fields(**{"local-member-id": f"{member_id:x}"}))
    return code


def _stop_quietly(core: Core) -> None:
    try:
        core.stop()
    except CoreError as e:
        log.error("failed to stop cleanly", extra=_fields(error=str(e)))


def main(argv: Sequence[str] | None = None) -> int:
    """The ``etcdcore`` console script."""
    return run(sys.argv[1:] if argv is None else list(argv), os.environ)


if __name__ == "__main__":
    sys.exit(main())
