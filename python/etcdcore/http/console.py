"""The web console (``--enable-console``): static pages under ``/console/``.

The pages call the ``/v3/`` JSON gateway themselves, with the logged-in
user's token in the ``Authorization`` header, so every key read or write,
lease revocation or membership query passes the same auth checks as a gRPC
call. Only what the gateway has no call for is served here, as JSON:

- ``POST /console/api/metrics``: a few figures parsed from this member's own
  ``/metrics`` (puts, watchers and watch streams, fsync and commit latency sums), which
  the pages turn into live charts;
- ``POST /console/api/members``: each member's ``Status`` (leader, raft
  term and index, db size) asked on its own client URL, as ``etcdctl endpoint
  status --cluster`` does, or the error that made it unhealthy.

With auth enabled both need a token: a request without one is refused with
the error a gRPC call without one gets, and the token is checked by passing
it on to this member's gRPC listener.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import grpc
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from etcdcore._core import Core
from etcdcore.http.gateway import (
    CHANNEL_OPTIONS,
    Loopback,
    error_response,
    metadata_of,
    plain_error,
    rpc_error,
)
from etcdcore.http.metrics import ServerMetrics
from etcdcore.proto.etcdserverpb import rpc_pb2

#: The files of the console, shipped in this package (no build step).
ASSETS = "console_assets"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
#: etcd's error for a call that needs a user and carries no token.
ERR_USER_EMPTY = "etcdserver: user name is empty"
INVALID_ARGUMENT = 3
#: How long one member's Status may take before it counts as unhealthy.
STATUS_TIMEOUT = 2.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STATUS = "/etcdserverpb.Maintenance/Status"
_MEMBER_LIST = "/etcdserverpb.Cluster/MemberList"


def load_assets() -> dict[str, tuple[bytes, str]]:
    """name -> (content, content type) of every console file: only these
    names are served, so no request path reaches the file system."""
    out: dict[str, tuple[bytes, str]] = {}
    for entry in resources.files("etcdcore.http").joinpath(ASSETS).iterdir():
        suffix = entry.name[entry.name.rfind(".") :]
        if entry.is_file() and suffix in _TYPES:
            out[entry.name] = (entry.read_bytes(), _TYPES[suffix])
    return out


def metric_figures(text: str) -> dict[str, float]:
    """The figures the console charts, from a Prometheus text exposition."""
    out = {
        "puts_total": 0.0,
        "writes_total": 0.0,
        "watch_streams": 0.0,
        "wal_fsync_seconds_sum": 0.0,
        "wal_fsync_count": 0.0,
        "backend_commit_seconds_sum": 0.0,
        "backend_commit_count": 0.0,
        "proposals_applied_total": 0.0,
        "keys_total": 0.0,
        "watchers": 0.0,
        "db_total_size_bytes": 0.0,
        "db_in_use_bytes": 0.0,
    }
    watch_started = watch_handled = 0.0
    simple = {
        "etcd_server_proposals_applied_total": "proposals_applied_total",
        "etcd_debugging_mvcc_keys_total": "keys_total",
        "etcd_debugging_mvcc_watcher_total": "watchers",
        "etcd_mvcc_db_total_size_in_bytes": "db_total_size_bytes",
        "etcd_mvcc_db_total_size_in_use_in_bytes": "db_in_use_bytes",
        "etcd_disk_wal_fsync_duration_seconds_sum": "wal_fsync_seconds_sum",
        "etcd_disk_wal_fsync_duration_seconds_count": "wal_fsync_count",
        "etcd_disk_backend_commit_duration_seconds_sum": "backend_commit_seconds_sum",
        "etcd_disk_backend_commit_duration_seconds_count": "backend_commit_count",
    }
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in simple:
                out[simple[sample.name]] = float(sample.value)
                continue
            method = sample.labels.get("grpc_method")
            if sample.labels.get("grpc_service") == "etcdserverpb.KV" and method in (
                "Put",
                "DeleteRange",
                "Txn",
            ):
                if sample.name == "grpc_server_handled_total":
                    out["writes_total"] += sample.value
                    if method == "Put":
                        out["puts_total"] += sample.value
            elif method == "Watch" and sample.labels.get("grpc_service") == "etcdserverpb.Watch":
                # Open watch streams: started and not yet ended.
                if sample.name == "grpc_server_started_total":
                    watch_started += sample.value
                elif sample.name == "grpc_server_handled_total":
                    watch_handled += sample.value
    out["watch_streams"] = max(0.0, watch_started - watch_handled)
    return out


def _status_json(resp: rpc_pb2.StatusResponse) -> dict[str, Any]:
    return {
        "healthy": True,
        "version": resp.version,
        "leader": str(resp.leader),
        "raftTerm": str(resp.raftTerm),
        "raftIndex": str(resp.raftIndex),
        "raftAppliedIndex": str(resp.raftAppliedIndex),
        "dbSize": str(resp.dbSize),
        "dbSizeInUse": str(resp.dbSizeInUse),
        "isLearner": resp.isLearner,
        "errors": list(resp.errors),
    }


class Console:
    """The console's pages and its two JSON calls."""

    def __init__(
        self,
        core: Core,
        loopback: Loopback,
        metrics: ServerMetrics,
        credentials: grpc.ChannelCredentials | None,
    ) -> None:
        self.core = core
        self.loopback = loopback
        self.metrics = metrics
        self.credentials = credentials
        self.assets = load_assets()
        #: Channels to the other members' client URLs, by URL.
        self._channels: dict[str, grpc.aio.Channel] = {}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("GET", "/console", self.redirect)
        for path, handler in (
            ("/console/api/metrics", self.api_metrics),
            ("/console/api/members", self.api_members),
        ):
            app.router.add_route("*", path, self._post_only(handler))
        app.router.add_route("*", "/console/api/{tail:.*}", self.not_found)
        app.router.add_route("GET", "/console/{name:[^/]*}", self.asset)

    def _post_only(self, handler: Handler) -> Handler:
        """POST, as the gateway's calls; another method is refused as there."""

        async def handle(request: web.Request) -> web.StreamResponse:
            if request.method != "POST":
                return plain_error(405, "Method Not Allowed")
            return await handler(request)

        return handle

    async def redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently("/console/")

    async def not_found(self, request: web.Request) -> web.Response:
        return plain_error(404, "404 page not found")

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"] or "index.html"
        found = self.assets.get(name)
        if found is None:
            return plain_error(404, "404 page not found")
        body, content_type = found
        return web.Response(
            body=body,
            headers={
                "Content-Type": content_type,
                "Cache-Control": "no-cache",
                # The pages load nothing from elsewhere.
                "Content-Security-Policy": "default-src 'self'; img-src 'self' data:",
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def _refused(self, request: web.Request) -> web.Response | None:
        """The auth check of a console call: with auth on, a token is needed
        and this member's gRPC listener must accept it; the error response
        when not, else None."""
        enabled, _ = self.core.auth_status()
        if not enabled:
            return None
        metadata = metadata_of(request)
        if not any(k == "authorization" for k, _ in metadata):
            return error_response(INVALID_ARGUMENT, ERR_USER_EMPTY)
        try:
            # Status needs no permission: this checks the token alone
            # (an expired or unknown one is refused as on any gRPC call).
            await self.loopback.unary(
                _STATUS,
                rpc_pb2.StatusRequest(),
                rpc_pb2.StatusResponse,
                metadata=metadata,
                timeout=STATUS_TIMEOUT,
            )
        except grpc.aio.AioRpcError as e:
            return error_response(*rpc_error(e))
        return None

    async def api_metrics(self, request: web.Request) -> web.Response:
        refused = await self._refused(request)
        if refused is not None:
            return refused
        figures: dict[str, Any] = metric_figures(self.metrics.render().decode())
        figures["time"] = time.time()
        return web.json_response(figures)

    async def api_members(self, request: web.Request) -> web.Response:
        refused = await self._refused(request)
        if refused is not None:
            return refused
        try:
            members = await self.loopback.unary(
                _MEMBER_LIST,
                rpc_pb2.MemberListRequest(linearizable=False),
                rpc_pb2.MemberListResponse,
                metadata=metadata_of(request),
                timeout=STATUS_TIMEOUT,
            )
        except grpc.aio.AioRpcError as e:
            return error_response(*rpc_error(e))
        assert isinstance(members, rpc_pb2.MemberListResponse)
        self_id = members.header.member_id
        rows = await asyncio.gather(
            *(self._member_status(m, m.ID == self_id) for m in members.members)
        )
        return web.json_response({"memberId": str(self_id), "members": rows})

    async def _member_status(self, member: rpc_pb2.Member, is_self: bool) -> dict[str, Any]:
        row: dict[str, Any] = {
            "ID": str(member.ID),
            "name": member.name,
            "peerURLs": list(member.peerURLs),
            "clientURLs": list(member.clientURLs),
            "isLearner": member.isLearner,
            "self": is_self,
        }
        try:
            if is_self:
                resp = await self.loopback.unary(
                    _STATUS, rpc_pb2.StatusRequest(), rpc_pb2.StatusResponse, timeout=STATUS_TIMEOUT
                )
            elif member.clientURLs:
                resp = await self._channel(member.clientURLs[0]).unary_unary(
                    _STATUS,
                    request_serializer=rpc_pb2.StatusRequest.SerializeToString,
                    response_deserializer=rpc_pb2.StatusResponse.FromString,
                )(rpc_pb2.StatusRequest(), timeout=STATUS_TIMEOUT)
            else:
                row.update(healthy=False, error="the member has not published its client URLs")
                return row
        except grpc.aio.AioRpcError as e:
            row.update(healthy=False, error=e.details() or e.code().name)
            return row
        assert isinstance(resp, rpc_pb2.StatusResponse)
        row.update(_status_json(resp))
        return row

    def _channel(self, url: str) -> grpc.aio.Channel:
        channel = self._channels.get(url)
        if channel is None:
            parts = urlsplit(url)
            target = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
            if parts.scheme == "https" and self.credentials is not None:
                channel = grpc.aio.secure_channel(target, self.credentials, options=CHANNEL_OPTIONS)
            else:
                channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
            self._channels[url] = channel
        return channel

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        await asyncio.gather(*(c.close() for c in channels))
