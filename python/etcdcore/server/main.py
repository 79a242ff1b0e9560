"""``etcdcore``: start one member with etcd's flags and serve until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import signal
import sys

from etcdcore import ETCD_VERSION, __version__
from etcdcore._core import Core, CoreConfig, CoreError
from etcdcore.bridge import Bridge
from etcdcore.server import logs
from etcdcore.server.config import ConfigError, ServerConfig, VersionRequested
from etcdcore.services.cluster import ClusterService
from etcdcore.services.lessor import LeaseService, Lessor
from etcdcore.services.maintenance import MaintenanceService
from etcdcore.services.watch_hub import GRPC_OVERHEAD_BYTES, WatchHub

log = logging.getLogger("etcdcore.server")


def version_text() -> str:
    return (
        f"etcdcore Version: {__version__}\n"
        f"etcd Version: {ETCD_VERSION}\n"
        f"Python Version: {platform.python_version()}\n"
        f"OS/Arch: {sys.platform}/{platform.machine()}\n"
    )


def core_config(cfg: ServerConfig) -> CoreConfig:
    return CoreConfig(
        name=cfg.name,
        data_dir=cfg.data_dir,
        client_listen=cfg.client_listen_addresses(),
        client_urls=cfg.advertise_client_urls,
        peer_urls=cfg.initial_advertise_peer_urls,
        initial_cluster=cfg.initial_cluster,
        cluster_token=cfg.initial_cluster_token,
        snapshot_count=cfg.snapshot_count,
        max_request_bytes=cfg.max_request_bytes,
        max_txn_ops=cfg.max_txn_ops,
        quota_backend_bytes=cfg.quota_backend_bytes,
        heartbeat_ms=cfg.heartbeat_interval,
        election_ms=cfg.election_timeout,
    )


async def serve(core: Core, cfg: ServerConfig) -> None:
    """Run the Python services on this loop until a stop signal."""
    loop = asyncio.get_running_loop()
    bridge = Bridge(core)
    lessor = Lessor(core, election_timeout_ms=cfg.election_timeout)
    WatchHub(core, max_response_bytes=cfg.max_request_bytes + GRPC_OVERHEAD_BYTES).register(bridge)
    LeaseService(core, lessor).register(bridge)
    MaintenanceService(core).register(bridge)
    ClusterService(core).register(bridge)
    bridge.attach(loop)
    lessor.start()

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "ready to serve client requests",
        extra={"fields": {"listen-client-urls": cfg.listen_client_urls}},
    )
    await stop.wait()
    log.info("received stop signal, shutting down")
    await lessor.stop()
    await bridge.shutdown()
    bridge.detach(loop)


def main(argv: list[str] | None = None) -> int:
    """The ``etcdcore`` console script."""
    try:
        cfg = ServerConfig.from_args(sys.argv[1:] if argv is None else argv, dict(os.environ))
    except VersionRequested:
        sys.stdout.write(version_text())
        return 0
    except ConfigError as e:
        sys.stderr.write(f"etcdcore: {e}\n")
        return 2
    logs.configure(cfg.log_level)
    for flag in cfg.ignored:
        log.warning("flag --%s is accepted for compatibility but not supported yet", flag)
    try:
        core = Core(core_config(cfg))
        core.start()
    except CoreError as e:
        log.error("failed to start", extra={"fields": {"error": e.args[1]}})
        sys.stderr.write(f"etcdcore: {e.args[1]}\n")
        return 1
    cluster_id, member_id, _, _ = core.header()
    log.info(
        "started member",
        extra={
            "fields": {
                "name": cfg.name,
                "data-dir": cfg.data_dir,
                "member-id": f"{member_id:x}",
                "cluster-id": f"{cluster_id:x}",
                "advertise-client-urls": cfg.advertise_client_urls,
            }
        },
    )
    try:
        asyncio.run(serve(core, cfg))
    finally:
        core.stop()
    log.info("stopped member")
    return 0


if __name__ == "__main__":
    sys.exit(main())
