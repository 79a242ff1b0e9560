"""The member's HTTP listeners.

- The gRPC client URLs (``--listen-client-urls``), as etcd 3.5 without
  ``--listen-client-http-urls``: the core keeps gRPC and forwards every other
  request to the client application (below), which listens on a private unix
  socket (:mod:`.client_port`).
- ``--listen-client-http-urls``: the client application on its own
  listeners; the gRPC client URLs then serve gRPC only, as in etcd.
- ``--listen-metrics-urls``: ``/metrics``, ``/health``, ``/livez``, ``/readyz``
  (and ``/version``).

The client application: the ``/v3/`` JSON gateway, ``/health``, ``/livez``,
``/readyz``, ``/version`` and ``/metrics``, with etcd's CORS headers
(``--cors`` ``*``); with ``--enable-console``, the web console under
``/console/`` (:mod:`.console`).

``https`` URLs use the client certificate (``--cert-file``/``--key-file``, or
the auto-TLS one) and, with ``--client-cert-auth``, require client
certificates signed by ``--trusted-ca-file``.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import grpc
from aiohttp import web

from etcdcore._core import Core
from etcdcore.http.console import Console
from etcdcore.http.gateway import Gateway, Loopback, plain_error
from etcdcore.http.health import Health
from etcdcore.http.metrics import CONTENT_TYPE, ServerMetrics
from etcdcore.server.config import ServerConfig, TlsFiles

log = logging.getLogger("etcdcore.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def request_timeout(election_ms: int) -> float:
    """etcd's ServerConfig.ReqTimeout: 5s plus two election timeouts."""
    return 5.0 + 2 * election_ms / 1000.0


def ssl_context(tls: TlsFiles, min_version: str = "TLS1.2") -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = (
        ssl.TLSVersion.TLSv1_3 if min_version == "TLS1.3" else ssl.TLSVersion.TLSv1_2
    )
    ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_cert_auth and tls.trusted_ca_file:
        ctx.load_verify_locations(tls.trusted_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


@web.middleware
async def _cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """etcd's accessController with the default ``--cors=*``."""
    headers = {
        "Access-Control-Allow-Methods": "POST, GET, OPTIONS, PUT, DELETE",
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Headers": "accept, content-type, authorization",
    }
    if request.method == "OPTIONS":
        return web.Response(status=200, headers=headers)
    resp = await handler(request)
    if not resp.prepared:
        resp.headers.update(headers)
    return resp


class HttpServer:
    """Starts and stops the HTTP listeners of one member."""

    def __init__(
        self,
        core: Core,
        cfg: ServerConfig,
        grpc_target: str,
        credentials: grpc.ChannelCredentials | None,
        client_port_socket: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.client_urls = list(cfg.listen_client_http_urls)
        #: Where the core forwards the client URLs' HTTP requests (None: it
        #: forwards none).
        self.client_port_socket = client_port_socket
        self.metrics_urls = list(cfg.listen_metrics_urls)
        self.loopback = Loopback(grpc_target, credentials)
        self.metrics = ServerMetrics(core, cfg.effective_quota_bytes())
        self.health = Health(
            core, self.loopback, self.metrics, request_timeout(cfg.election_timeout)
        )
        self.gateway = Gateway(self.loopback)
        self.console = (
            Console(core, self.loopback, self.metrics, credentials) if cfg.enable_console else None
        )
        self._runners: list[web.AppRunner] = []

    @property
    def enabled(self) -> bool:
        return bool(self.client_urls or self.metrics_urls or self.client_port_socket)

    # -- the applications ----------------------------------------------------------
    async def serve_metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def _go_not_found(self, request: web.Request) -> web.Response:
        return plain_error(404, "404 page not found")

    def client_app(self) -> web.Application:
        app = web.Application(
            middlewares=[_cors],
            client_max_size=max(64 * 1024 * 1024, 4 * self.cfg.max_request_bytes),
        )
        self.gateway.add_routes(app)
        if self.console is not None:
            self.console.add_routes(app)
        self._common_routes(app)
        return app

    def metrics_app(self) -> web.Application:
        app = web.Application()
        self._common_routes(app)
        return app

    def _common_routes(self, app: web.Application) -> None:
        self.health.add_routes(app)
        app.router.add_route("*", "/metrics", self.serve_metrics)
        app.router.add_route("*", "/{tail:.*}", self._go_not_found)

    # -- running -------------------------------------------------------------------
    async def start(self) -> None:
        """Bind every listener (OSError when one cannot be bound)."""
        try:
            if self.client_port_socket:
                await self._serve_client_port(self.client_port_socket)
            if self.client_urls:
                await self._serve(self.client_app(), self.client_urls, "client")
            if self.metrics_urls:
                await self._serve(self.metrics_app(), self.metrics_urls, "metrics")
        except BaseException:
            await self.stop()
            raise

    async def _runner(self, app: web.Application) -> web.AppRunner:
        runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        await runner.setup()
        self._runners.append(runner)
        return runner

    async def _serve_client_port(self, path: str) -> None:
        """The client application on the unix socket the core forwards to."""
        site = web.UnixSite(await self._runner(self.client_app()), path)
        await site.start()

    async def _serve(self, app: web.Application, urls: list[str], kind: str) -> None:
        runner = await self._runner(app)
        for url in urls:
            parts = urlsplit(url)
            secure = parts.scheme == "https"
            ctx = ssl_context(self.cfg.client_tls, self.cfg.tls_min_version) if secure else None
            host = parts.hostname or "127.0.0.1"
            site = web.TCPSite(runner, host, parts.port, ssl_context=ctx)
            await site.start()
            if kind == "metrics":
                log.info("serving metrics", extra={"fields": {"address": url}})
            elif secure:
                log.info("serving client HTTP traffic securely", extra={"fields": {"address": url}})
            else:
                log.info(
                    "serving client HTTP traffic insecurely; this is strongly discouraged!",
                    extra={"fields": {"address": url}},
                )

    async def stop(self) -> None:
        """Close the gateway's gRPC channel (ending its open streams), then the
        listeners."""
        await self.loopback.close()
        if self.console is not None:
            await self.console.close()
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()
