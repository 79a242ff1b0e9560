"""etcd's grpc-gateway: the ``/v3/...`` JSON API over HTTP.

Every call is made on this member's own gRPC client listener (a loopback
channel, TLS when the listener is), so request limits, auth and error texts
are exactly gRPC's. The routes are etcd 3.5's ``google.api.http`` bindings
(all ``POST`` with the whole body as the request); grpc-gateway v1.16's
behaviour is followed for everything around them:

- ``Authorization`` becomes the ``authorization`` metadata, ``Grpc-Metadata-X``
  headers become ``x``; ``Grpc-Timeout`` sets the call's deadline;
- a unary answer is the response message; a streaming one is chunked, one
  ``{"result": ...}`` line per message, a failure ending it with an
  ``{"error": ...}`` chunk (see :mod:`.jsonpb`);
- the body of a client-streaming call (``/v3/watch``, ``/v3/lease/keepalive``)
  is read as successive JSON objects, each sent as it is complete;
- another HTTP method on a route is ``405 Method Not Allowed``, an unknown
  ``/v3/`` path ``404 Not Found`` (plain text, as Go's ``http.Error``).

At the end of a request body the gateway half-closes its gRPC stream, as
grpc-gateway does: a watch goes on (the watch server ignores a half-close), a
keep-alive stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message

from etcdcore.http import jsonpb
from etcdcore.proto.etcdserverpb import rpc_pb2  # noqa: F401 - registers the services
from etcdcore.proto.v3election import v3election_pb2  # noqa: F401
from etcdcore.proto.v3lock import v3lock_pb2  # noqa: F401

log = logging.getLogger("etcdcore.http")

#: etcd 3.5's HTTP bindings: path -> (gRPC service, method).
BINDINGS: tuple[tuple[str, str, str], ...] = (
    ("/v3/kv/range", "etcdserverpb.KV", "Range"),
    ("/v3/kv/put", "etcdserverpb.KV", "Put"),
    ("/v3/kv/deleterange", "etcdserverpb.KV", "DeleteRange"),
    ("/v3/kv/txn", "etcdserverpb.KV", "Txn"),
    ("/v3/kv/compaction", "etcdserverpb.KV", "Compact"),
    ("/v3/watch", "etcdserverpb.Watch", "Watch"),
    ("/v3/lease/grant", "etcdserverpb.Lease", "LeaseGrant"),
    ("/v3/lease/revoke", "etcdserverpb.Lease", "LeaseRevoke"),
    ("/v3/kv/lease/revoke", "etcdserverpb.Lease", "LeaseRevoke"),
    ("/v3/lease/keepalive", "etcdserverpb.Lease", "LeaseKeepAlive"),
    ("/v3/lease/timetolive", "etcdserverpb.Lease", "LeaseTimeToLive"),
    ("/v3/kv/lease/timetolive", "etcdserverpb.Lease", "LeaseTimeToLive"),
    ("/v3/lease/leases", "etcdserverpb.Lease", "LeaseLeases"),
    ("/v3/kv/lease/leases", "etcdserverpb.Lease", "LeaseLeases"),
    ("/v3/cluster/member/add", "etcdserverpb.Cluster", "MemberAdd"),
    ("/v3/cluster/member/remove", "etcdserverpb.Cluster", "MemberRemove"),
    ("/v3/cluster/member/update", "etcdserverpb.Cluster", "MemberUpdate"),
    ("/v3/cluster/member/list", "etcdserverpb.Cluster", "MemberList"),
    ("/v3/cluster/member/promote", "etcdserverpb.Cluster", "MemberPromote"),
    ("/v3/maintenance/alarm", "etcdserverpb.Maintenance", "Alarm"),
    ("/v3/maintenance/status", "etcdserverpb.Maintenance", "Status"),
    ("/v3/maintenance/defragment", "etcdserverpb.Maintenance", "Defragment"),
    # Hash and HashKV share this path; grpc-gateway's last registration (HashKV) wins.
    ("/v3/maintenance/hash", "etcdserverpb.Maintenance", "HashKV"),
    ("/v3/maintenance/snapshot", "etcdserverpb.Maintenance", "Snapshot"),
    ("/v3/maintenance/transfer-leadership", "etcdserverpb.Maintenance", "MoveLeader"),
    ("/v3/maintenance/downgrade", "etcdserverpb.Maintenance", "Downgrade"),
    ("/v3/auth/enable", "etcdserverpb.Auth", "AuthEnable"),
    ("/v3/auth/disable", "etcdserverpb.Auth", "AuthDisable"),
    ("/v3/auth/status", "etcdserverpb.Auth", "AuthStatus"),
    ("/v3/auth/authenticate", "etcdserverpb.Auth", "Authenticate"),
    ("/v3/auth/user/add", "etcdserverpb.Auth", "UserAdd"),
    ("/v3/auth/user/get", "etcdserverpb.Auth", "UserGet"),
    ("/v3/auth/user/list", "etcdserverpb.Auth", "UserList"),
    ("/v3/auth/user/delete", "etcdserverpb.Auth", "UserDelete"),
    ("/v3/auth/user/changepw", "etcdserverpb.Auth", "UserChangePassword"),
    ("/v3/auth/user/grant", "etcdserverpb.Auth", "UserGrantRole"),
    ("/v3/auth/user/revoke", "etcdserverpb.Auth", "UserRevokeRole"),
    ("/v3/auth/role/add", "etcdserverpb.Auth", "RoleAdd"),
    ("/v3/auth/role/get", "etcdserverpb.Auth", "RoleGet"),
    ("/v3/auth/role/list", "etcdserverpb.Auth", "RoleList"),
    ("/v3/auth/role/delete", "etcdserverpb.Auth", "RoleDelete"),
    ("/v3/auth/role/grant", "etcdserverpb.Auth", "RoleGrantPermission"),
    ("/v3/auth/role/revoke", "etcdserverpb.Auth", "RoleRevokePermission"),
    ("/v3/lock/lock", "v3lockpb.Lock", "Lock"),
    ("/v3/lock/unlock", "v3lockpb.Lock", "Unlock"),
    ("/v3/election/campaign", "v3electionpb.Election", "Campaign"),
    ("/v3/election/proclaim", "v3electionpb.Election", "Proclaim"),
    ("/v3/election/leader", "v3electionpb.Election", "Leader"),
    ("/v3/election/observe", "v3electionpb.Election", "Observe"),
    ("/v3/election/resign", "v3electionpb.Election", "Resign"),
)

_TIMEOUT = re.compile(r"^(\d{1,8})([HMSmun])$")
_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
#: Channel options: no client-side size limits, the server's apply (etcd's
#: gateway dials with MaxCallRecvMsgSize(math.MaxInt32)).
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


@dataclass(frozen=True)
class Route:
    """One HTTP binding of a gRPC method."""

    path: str
    method: str  # the gRPC path, "/etcdserverpb.KV/Range"
    request: type[Message]
    response: type[Message]
    client_streaming: bool
    server_streaming: bool


def routes() -> list[Route]:
    pool = descriptor_pool.Default()
    out = []
    for path, service, name in BINDINGS:
        m = pool.FindServiceByName(service).FindMethodByName(name)
        out.append(
            Route(
                path=path,
                method=f"/{service}/{name}",
                request=message_factory.GetMessageClass(m.input_type),
                response=message_factory.GetMessageClass(m.output_type),
                client_streaming=m.client_streaming,
                server_streaming=m.server_streaming,
            )
        )
    return out


def plain_error(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    """Go's ``http.Error``: the text and a newline, as text/plain."""
    resp = web.Response(status=status, body=(text + "\n").encode(), headers=headers)
    resp.headers["Content-Type"] = "text/plain; charset=utf-8"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


def json_response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(status=status, body=body, headers={"Content-Type": "application/json"})


def error_response(code: int, message: str) -> web.Response:
    return json_response(jsonpb.error_body(code, message), jsonpb.http_status(code))


def metadata_of(request: web.Request) -> list[tuple[str, str]]:
    """grpc-gateway's incoming header matcher."""
    md: list[tuple[str, str]] = []
    for key, value in request.headers.items():
        lower = key.lower()
        if lower == "authorization":
            md.append(("authorization", value))
        elif lower.startswith("grpc-metadata-") and len(lower) > len("grpc-metadata-"):
            md.append((lower[len("grpc-metadata-") :], value))
    return md


def timeout_of(request: web.Request) -> float | None:
    """The deadline a ``Grpc-Timeout`` header asks for."""
    value = request.headers.get("Grpc-Timeout")
    if not value:
        return None
    m = _TIMEOUT.match(value)
    if m is None:
        return None
    return int(m.group(1)) * _UNITS[m.group(2)]


def rpc_error(e: grpc.aio.AioRpcError) -> tuple[int, str]:
    return e.code().value[0], e.details() or ""


class Loopback:
    """The asyncio gRPC channel to this member's client listener."""

    def __init__(self, target: str, credentials: grpc.ChannelCredentials | None) -> None:
        self.target = target
        self._credentials = credentials
        self._channel: grpc.aio.Channel | None = None

    @property
    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            if self._credentials is None:
                self._channel = grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS)
            else:
                self._channel = grpc.aio.secure_channel(
                    self.target, self._credentials, options=CHANNEL_OPTIONS
                )
        return self._channel

    async def unary(
        self,
        method: str,
        request: Message,
        response: type[Message],
        *,
        metadata: list[tuple[str, str]] | None = None,
        timeout: float | None = None,
    ) -> Message:
        call = self.channel.unary_unary(
            method,
            request_serializer=type(request).SerializeToString,
            response_deserializer=response.FromString,
        )
        return await call(request, metadata=metadata or None, timeout=timeout)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


class Gateway:
    """The aiohttp handlers of the ``/v3/`` API."""

    def __init__(self, loopback: Loopback) -> None:
        self.loopback = loopback
        self.routes = routes()

    def add_routes(self, app: web.Application) -> None:
        for route in self.routes:
            handler = self._handler(route)
            app.router.add_route("*", route.path, handler)
            # etcd still answers the 3.3 beta prefix.
            app.router.add_route("*", route.path.replace("/v3/", "/v3beta/", 1), handler)
        app.router.add_route("*", "/v3/{tail:.*}", self.not_found)
        app.router.add_route("*", "/v3beta/{tail:.*}", self.not_found)

    async def not_found(self, request: web.Request) -> web.Response:
        return plain_error(404, "Not Found")

    def _handler(self, route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            if request.method != "POST":
                return plain_error(405, "Method Not Allowed")
            if route.client_streaming:
                return await self._client_stream(route, request)
            try:
                req = jsonpb.decode(await request.read(), route.request)
            except jsonpb.DecodeError as e:
                return error_response(3, str(e))
            if route.server_streaming:
                return await self._server_stream(route, request, req)
            return await self._unary(route, request, req)

        return handle

    async def _unary(self, route: Route, request: web.Request, req: Message) -> web.Response:
        try:
            resp = await self.loopback.unary(
                route.method,
                req,
                route.response,
                metadata=metadata_of(request),
                timeout=timeout_of(request),
            )
        except grpc.aio.AioRpcError as e:
            return error_response(*rpc_error(e))
        return json_response(jsonpb.encode(resp))

    async def _server_stream(
        self, route: Route, request: web.Request, req: Message
    ) -> web.StreamResponse:
        call = self.loopback.channel.unary_stream(
            route.method,
            request_serializer=route.request.SerializeToString,
            response_deserializer=route.response.FromString,
        )(req, metadata=metadata_of(request) or None, timeout=timeout_of(request))
        return await _forward_stream(request, call)

    async def _client_stream(self, route: Route, request: web.Request) -> web.StreamResponse:
        decoder = jsonpb.StreamDecoder()
        first: list[Any] = []
        eof = False
        queue: asyncio.Queue[Message | None] = asyncio.Queue()
        try:
            while not first and not eof:
                chunk = await request.content.readany()
                if chunk:
                    first = decoder.feed(chunk)
                else:
                    eof = True
                    first = decoder.finish()
            # The first message must decode (else the call fails as a whole).
            if first:
                queue.put_nowait(jsonpb.decode(first[0], route.request))
        except jsonpb.DecodeError as e:
            return error_response(3, str(e))
        with contextlib.suppress(jsonpb.DecodeError):
            for value in first[1:]:
                queue.put_nowait(jsonpb.decode(value, route.request))

        async def feed() -> None:
            """Send the rest of the body as it comes; half-close at its end."""
            try:
                if not eof:
                    while chunk := await request.content.readany():
                        for value in decoder.feed(chunk):
                            queue.put_nowait(jsonpb.decode(value, route.request))
                    for value in decoder.finish():
                        queue.put_nowait(jsonpb.decode(value, route.request))
            except (jsonpb.DecodeError, ConnectionError) as e:
                log.debug("gateway stream body: %s", e)
            queue.put_nowait(None)

        async def requests() -> AsyncIterator[Message]:
            while (msg := await queue.get()) is not None:
                yield msg

        feeder = asyncio.ensure_future(feed())
        try:
            if route.server_streaming:
                call = self.loopback.channel.stream_stream(
                    route.method,
                    request_serializer=route.request.SerializeToString,
                    response_deserializer=route.response.FromString,
                )(requests(), metadata=metadata_of(request) or None, timeout=timeout_of(request))
                return await _forward_stream(request, call)
            unary = self.loopback.channel.stream_unary(
                route.method,
                request_serializer=route.request.SerializeToString,
                response_deserializer=route.response.FromString,
            )(requests(), metadata=metadata_of(request) or None, timeout=timeout_of(request))
            try:
                resp = await unary
            except grpc.aio.AioRpcError as e:
                return error_response(*rpc_error(e))
            return json_response(jsonpb.encode(resp))
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder


async def _forward_stream(request: web.Request, call: Any) -> web.StreamResponse:
    """grpc-gateway's ForwardResponseStream: the status line goes out with
    the first message (or with the error when there was none)."""
    resp: web.StreamResponse | None = None

    async def write(data: bytes, status: int = 200) -> None:
        nonlocal resp
        if resp is None:
            resp = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
        await resp.write(data)

    try:
        try:
            async for msg in call:
                await write(jsonpb.stream_result(msg) + b"\n")
        except grpc.aio.AioRpcError as e:
            code, message = rpc_error(e)
            await write(jsonpb.stream_error(code, message), jsonpb.http_status(code))
        except (ConnectionError, RuntimeError) as e:
            # The HTTP client went away while we wrote to it.
            log.debug("gateway stream to %s ended: %s", request.remote, e)
            call.cancel()
            raise
    finally:
        call.cancel()
    if resp is None:
        await write(b"")
    assert resp is not None
    with contextlib.suppress(ConnectionError, RuntimeError):
        await resp.write_eof()
    return resp
