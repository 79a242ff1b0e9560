"""The asyncio client: the same requests and results as :class:`Client`, on
grpc.aio."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, BinaryIO, TypeVar

import grpc

from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdcore.proto.v3election import v3election_pb2, v3election_pb2_grpc

from . import requests as rq
from .errors import EtcdError, NotLeaderError, from_rpc_error
from .namespace import Namespace
from .sync import may_retry_elsewhere, normalize_endpoint
from .types import (
    Alarm,
    DeleteResult,
    Event,
    GetResult,
    HashKVResult,
    KeyValue,
    LeaderKey,
    Lease,
    Member,
    PutResult,
    TxnResult,
)

T = TypeVar("T")


class _WithToken:
    """Adds the client's current auth token to a call's metadata."""

    def __init__(self, token: Callable[[], str | None]) -> None:
        self._token = token

    def _details(self, d: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        method = d.method.decode() if isinstance(d.method, bytes) else d.method
        metadata = rq.with_token(
            list(d.metadata) if d.metadata is not None else None, self._token(), method
        )
        return grpc.aio.ClientCallDetails(
            d.method,
            d.timeout,
            grpc.aio.Metadata(*metadata) if metadata is not None else None,
            d.credentials,
            d.wait_for_ready,
        )


# grpc.aio files each interceptor under one kind of call only: one class per kind.
class _UnaryUnaryToken(_WithToken, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, details, request):  # noqa: ANN001, ANN201
        return await continuation(self._details(details), request)


class _UnaryStreamToken(_WithToken, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, details, request):  # noqa: ANN001, ANN201
        return await continuation(self._details(details), request)


class _StreamUnaryToken(_WithToken, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, details, requests):  # noqa: ANN001, ANN201
        return await continuation(self._details(details), requests)


class _StreamStreamToken(_WithToken, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, details, requests):  # noqa: ANN001, ANN201
        return await continuation(self._details(details), requests)


def _token_interceptors(token: Callable[[], str | None]) -> list[grpc.aio.ClientInterceptor]:
    return [
        _UnaryUnaryToken(token),
        _UnaryStreamToken(token),
        _StreamUnaryToken(token),
        _StreamStreamToken(token),
    ]


class _KeepAlive:
    """Renews a lease every ttl/3 seconds on a task until stopped."""

    def __init__(self, client: AsyncClient, lease_id: int, ttl: int) -> None:
        async def keep() -> None:
            while True:
                await asyncio.sleep(max(ttl / 3, 0.5))
                with contextlib.suppress(EtcdError):
                    await client.lease_keep_alive_once(lease_id)

        self._task = asyncio.create_task(keep())

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class AsyncClient:
    """``async with AsyncClient(["127.0.0.1:2379"]) as c: await c.put("k", "v")``.

    Takes the same TLS (``ca_cert``, ``cert``, ``key``, ``https://``
    endpoints), auth (``user``, ``password``) and ``namespace`` options as
    :class:`Client`.
    """

    def __init__(
        self,
        endpoints: Sequence[str] = ("127.0.0.1:2379",),
        timeout: float = 5.0,
        *,
        ca_cert: rq.PemSource | None = None,
        cert: rq.PemSource | None = None,
        key: rq.PemSource | None = None,
        user: str | None = None,
        password: str | None = None,
        namespace: bytes | str = b"",
    ):
        tls = ca_cert is not None or cert is not None
        self.namespace = Namespace(namespace)
        self.endpoints, tls = rq.parse_endpoints(endpoints, tls)
        self.timeout = timeout
        self._credentials = rq.channel_credentials(ca_cert, cert, key) if tls else None
        if (user is None) != (password is None):
            raise ValueError("user and password go together")
        self._auth = (user, password) if user is not None else None
        self._token: str | None = None
        self._logged_in = False
        self._auth_lock: asyncio.Lock | None = None
        self._current = 0
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._closed = False

    def _channel_to(self, target: str) -> grpc.aio.Channel:
        if self._closed:
            raise ValueError("the client is closed")
        ch = self._channels.get(target)
        if ch is None:
            interceptors = _token_interceptors(lambda: self._token) if self._auth else None
            if self._credentials is not None:
                ch = grpc.aio.secure_channel(target, self._credentials, interceptors=interceptors)
            else:
                ch = grpc.aio.insecure_channel(target, interceptors=interceptors)
            self._channels[target] = ch
        return ch

    async def _channel(self) -> grpc.aio.Channel:
        if self._auth is not None and not self._logged_in:
            await self._login(None)
        return self._channel_to(self.endpoints[self._current])

    async def _login(self, rejected: str | None) -> None:
        """Authenticate (unless another task already replaced the token the
        server ``rejected``)."""
        assert self._auth is not None
        if self._auth_lock is None:
            self._auth_lock = asyncio.Lock()
        async with self._auth_lock:
            if self._logged_in and self._token != rejected:
                return
            user, password = self._auth
            req = rpc_pb2.AuthenticateRequest(name=user, password=password)
            last: grpc.aio.AioRpcError | None = None
            for _ in range(len(self.endpoints)):
                ch = self._channel_to(self.endpoints[self._current])
                try:
                    r = await rpc_pb2_grpc.AuthStub(ch).Authenticate(req, timeout=self.timeout)
                    self._token, self._logged_in = r.token, True
                    return
                except grpc.aio.AioRpcError as e:
                    if rq.is_auth_not_enabled(e):
                        self._token, self._logged_in = None, True
                        return
                    last = e
                    if not may_retry_elsewhere(e, True):
                        break
                    self._current = (self._current + 1) % len(self.endpoints)
            assert last is not None
            raise from_rpc_error(last) from None

    async def _call(
        self,
        fn: Callable[[grpc.aio.Channel], Awaitable[T]],
        idempotent: bool,
        endpoint: str | None = None,
    ) -> T:
        """As :meth:`Client._call`: failover, or only ``endpoint``; a rejected
        auth token is renewed and the call retried once."""
        tries = 0
        renewed = False
        while True:
            ch = await self._channel()
            if endpoint is not None:
                ch = self._channel_to(normalize_endpoint(endpoint))
            token = self._token
            try:
                return await fn(ch)
            except grpc.aio.AioRpcError as e:
                if self._auth is not None and not renewed and rq.is_invalid_token(e):
                    renewed = True
                    await self._login(token)
                    continue
                tries += 1
                if (
                    endpoint is not None
                    or tries >= len(self.endpoints)
                    or not may_retry_elsewhere(e, idempotent)
                ):
                    raise from_rpc_error(e) from None
                self._current = (self._current + 1) % len(self.endpoints)

    @property
    def token(self) -> str | None:
        """The auth token calls carry (None before logging in or without auth)."""
        return self._token

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (calls then raise ValueError)."""
        return self._closed

    async def close(self) -> None:
        """Close every connection; the client cannot be used afterwards."""
        self._closed = True
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def get(self, key: rq.Bytesish, **options: Any) -> GetResult:
        req = self.namespace.range(rq.range_request(key, **options))
        r = await self._call(
            lambda ch: rpc_pb2_grpc.KVStub(ch).Range(req, timeout=self.timeout), True
        )
        return rq.get_result(self.namespace.range_response(r))

    async def put(self, key: rq.Bytesish, value: rq.Bytesish, **options: Any) -> PutResult:
        req = self.namespace.put(rq.put_request(key, value, **options))
        r = await self._call(
            lambda ch: rpc_pb2_grpc.KVStub(ch).Put(req, timeout=self.timeout), False
        )
        return rq.put_result(self.namespace.put_response(r))

    async def delete(self, key: rq.Bytesish, **options: Any) -> DeleteResult:
        req = self.namespace.delete(rq.delete_request(key, **options))
        r = await self._call(
            lambda ch: rpc_pb2_grpc.KVStub(ch).DeleteRange(req, timeout=self.timeout), False
        )
        return rq.delete_result(self.namespace.delete_response(r))

    def txn(self) -> rq.TxnBuilder:
        """``await client.txn().if_(...).then(...).else_(...).commit()``."""

        async def commit(req: rpc_pb2.TxnRequest) -> TxnResult:
            req = self.namespace.txn(req)
            r = await self._call(
                lambda ch: rpc_pb2_grpc.KVStub(ch).Txn(req, timeout=self.timeout), False
            )
            return rq.txn_result(self.namespace.txn_response(r))

        return rq.TxnBuilder(commit)

    async def lease_grant(self, ttl: int, lease_id: int = 0) -> Lease:
        req = rpc_pb2.LeaseGrantRequest(TTL=ttl, ID=lease_id)
        r = await self._call(
            lambda ch: rpc_pb2_grpc.LeaseStub(ch).LeaseGrant(req, timeout=self.timeout), False
        )
        return Lease(r.ID, r.TTL)

    async def lease_revoke(self, lease_id: int) -> None:
        req = rpc_pb2.LeaseRevokeRequest(ID=lease_id)
        await self._call(
            lambda ch: rpc_pb2_grpc.LeaseStub(ch).LeaseRevoke(req, timeout=self.timeout), False
        )

    async def lease_keep_alive_once(self, lease_id: int) -> int:
        async def once(ch: grpc.aio.Channel) -> int:
            call = rpc_pb2_grpc.LeaseStub(ch).LeaseKeepAlive(timeout=self.timeout)
            await call.write(rpc_pb2.LeaseKeepAliveRequest(ID=lease_id))
            resp = await call.read()
            call.cancel()
            return 0 if resp is grpc.aio.EOF else int(resp.TTL)

        return await self._call(once, True)

    @contextlib.asynccontextmanager
    async def lease(self, ttl: int) -> AsyncIterator[Lease]:
        """A lease kept alive (every ttl/3 s) while the block runs, then revoked."""
        lease = await self.lease_grant(ttl)
        keep = _KeepAlive(self, lease.id, ttl)
        try:
            yield lease
        finally:
            await keep.stop()
            with contextlib.suppress(EtcdError):
                await self.lease_revoke(lease.id)

    async def watch(
        self,
        key: rq.Bytesish,
        *,
        prefix: bool = False,
        range_end: rq.Bytesish | None = None,
        start_revision: int = 0,
        prev_kv: bool = False,
    ) -> AsyncIterator[list[Event]]:
        """Batches of events, as :meth:`Client.watch` (resumes after a broken
        stream; :class:`CompactedError` when the revision is gone)."""
        k, end = self.namespace.watch(*rq.key_range(key, prefix, range_end))
        next_rev = start_revision
        while True:
            call = rpc_pb2_grpc.WatchStub(await self._channel()).Watch()
            try:
                await call.write(
                    rpc_pb2.WatchRequest(
                        create_request=rpc_pb2.WatchCreateRequest(
                            key=k, range_end=end, start_revision=next_rev, prev_kv=prev_kv
                        )
                    )
                )
                async for resp in call:
                    resp = self.namespace.watch_response(resp)
                    events, next_rev = rq.watch_step(resp, next_rev)
                    if events:
                        yield events
            except grpc.aio.AioRpcError as e:
                if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL):
                    raise from_rpc_error(e) from None
                self._current = (self._current + 1) % len(self.endpoints)
                await asyncio.sleep(0.1)
            finally:
                call.cancel()

    # -- elections -----------------------------------------------------------------
    def election(self, name: rq.Bytesish, ttl: int = 60) -> AsyncElection:
        """A campaigner in the election ``name``: see :class:`AsyncElection`."""
        return AsyncElection(self, name, ttl)

    # -- cluster -------------------------------------------------------------------
    async def member_list(self) -> list[Member]:
        """Every member of the cluster."""
        req = rpc_pb2.MemberListRequest()
        r = await self._call(
            lambda ch: rpc_pb2_grpc.ClusterStub(ch).MemberList(req, timeout=self.timeout), True
        )
        return rq.members(r.members)

    async def member_add(self, peer_urls: Sequence[str], is_learner: bool = False) -> Member:
        """As :meth:`Client.member_add`."""
        req = rpc_pb2.MemberAddRequest(peerURLs=list(peer_urls), isLearner=is_learner)
        r = await self._call(
            lambda ch: rpc_pb2_grpc.ClusterStub(ch).MemberAdd(req, timeout=self.timeout), False
        )
        return Member.from_pb(r.member)

    async def member_remove(self, member_id: int) -> list[Member]:
        """Remove a member; returns the members left."""
        req = rpc_pb2.MemberRemoveRequest(ID=member_id)
        r = await self._call(
            lambda ch: rpc_pb2_grpc.ClusterStub(ch).MemberRemove(req, timeout=self.timeout), False
        )
        return rq.members(r.members)

    async def member_update(self, member_id: int, peer_urls: Sequence[str]) -> list[Member]:
        """Change a member's peer URLs; returns every member."""
        req = rpc_pb2.MemberUpdateRequest(ID=member_id, peerURLs=list(peer_urls))
        r = await self._call(
            lambda ch: rpc_pb2_grpc.ClusterStub(ch).MemberUpdate(req, timeout=self.timeout), False
        )
        return rq.members(r.members)

    async def member_promote(self, member_id: int) -> list[Member]:
        """Make a learner (caught up with the leader) a voting member."""
        req = rpc_pb2.MemberPromoteRequest(ID=member_id)
        r = await self._call(
            lambda ch: rpc_pb2_grpc.ClusterStub(ch).MemberPromote(req, timeout=self.timeout),
            False,
        )
        return rq.members(r.members)

    # -- maintenance ----------------------------------------------------------------
    async def status(self, endpoint: str | None = None) -> rpc_pb2.StatusResponse:
        """Maintenance.Status of the current endpoint (or of ``endpoint``)."""
        req = rpc_pb2.StatusRequest()
        return await self._call(
            lambda ch: rpc_pb2_grpc.MaintenanceStub(ch).Status(req, timeout=self.timeout),
            True,
            endpoint,
        )

    async def alarm_list(self) -> list[Alarm]:
        """The alarms raised on any member."""
        req = rq.alarm_get_request()
        r = await self._call(
            lambda ch: rpc_pb2_grpc.MaintenanceStub(ch).Alarm(req, timeout=self.timeout), True
        )
        return rq.alarms(r)

    async def alarm_disarm(
        self, member_id: int | None = None, alarm: rq.AlarmType | None = None
    ) -> list[Alarm]:
        """As :meth:`Client.alarm_disarm`."""
        cleared = rq.alarms_matching(await self.alarm_list(), member_id, alarm)
        for a in cleared:
            req = rq.alarm_disarm_request(a)
            await self._call(
                lambda ch, req=req: rpc_pb2_grpc.MaintenanceStub(ch).Alarm(
                    req, timeout=self.timeout
                ),
                False,
            )
        return cleared

    async def defragment(self, endpoint: str | None = None, timeout: float | None = None) -> None:
        """As :meth:`Client.defragment`."""
        req = rpc_pb2.DefragmentRequest()
        t = timeout or self.timeout
        await self._call(
            lambda ch: rpc_pb2_grpc.MaintenanceStub(ch).Defragment(req, timeout=t), True, endpoint
        )

    async def hash_kv(self, revision: int = 0, endpoint: str | None = None) -> HashKVResult:
        """As :meth:`Client.hash_kv`."""
        req = rpc_pb2.HashKVRequest(revision=revision)
        r = await self._call(
            lambda ch: rpc_pb2_grpc.MaintenanceStub(ch).HashKV(req, timeout=self.timeout),
            True,
            endpoint,
        )
        return rq.hash_kv_result(r)

    async def move_leader(self, target_id: int) -> None:
        """As :meth:`Client.move_leader`."""
        req = rpc_pb2.MoveLeaderRequest(targetID=target_id)
        leader: str | None = None
        for e in self.endpoints:
            with contextlib.suppress(EtcdError):
                s = await self.status(e)
                if s.leader and s.leader == s.header.member_id:
                    leader = e
                    break
        await self._call(
            lambda ch: rpc_pb2_grpc.MaintenanceStub(ch).MoveLeader(req, timeout=self.timeout),
            False,
            leader,
        )

    async def snapshot(self, out: BinaryIO, endpoint: str | None = None) -> int:
        """As :meth:`Client.snapshot` (``out`` is written synchronously)."""
        req = rpc_pb2.SnapshotRequest()

        async def stream(ch: grpc.aio.Channel) -> int:
            written = 0
            try:
                async for r in rpc_pb2_grpc.MaintenanceStub(ch).Snapshot(req):
                    out.write(r.blob)
                    written += len(r.blob)
            except grpc.aio.AioRpcError as e:
                if written:
                    raise from_rpc_error(e) from None
                raise
            return written

        return await self._call(stream, True, endpoint)


class AsyncElection:
    """One campaigner in the election ``name``: :class:`Election` for asyncio
    (``async with`` resigns on exit)."""

    def __init__(self, client: AsyncClient, name: rq.Bytesish, ttl: int = 60) -> None:
        self.client = client
        self.name = rq.to_bytes(name)
        self.ttl = ttl
        self._key: LeaderKey | None = None
        self._keep: _KeepAlive | None = None

    @property
    def key(self) -> LeaderKey | None:
        """This campaigner's leadership, while it leads."""
        return self._key

    async def campaign(self, value: rq.Bytesish, timeout: float | None = None) -> LeaderKey:
        """As :meth:`Election.campaign`; cancelling it withdraws the candidacy."""
        if self._key is not None:
            await self.proclaim(value)
            return self._key
        lease = await self.client.lease_grant(self.ttl)
        keep = _KeepAlive(self.client, lease.id, self.ttl)
        ns = self.client.namespace
        req = rq.campaign_request(ns.key(self.name), lease.id, value)
        try:
            r = await self.client._call(
                lambda ch: v3election_pb2_grpc.ElectionStub(ch).Campaign(req, timeout=timeout),
                False,
            )
        except BaseException:
            await keep.stop()
            with contextlib.suppress(EtcdError):
                await self.client.lease_revoke(lease.id)
            raise
        self._key, self._keep = rq.leader_key(ns.strip_leader_key(r.leader)), keep
        return self._key

    async def proclaim(self, value: rq.Bytesish) -> None:
        """As :meth:`Election.proclaim`."""
        if self._key is None:
            raise NotLeaderError(grpc.StatusCode.FAILED_PRECONDITION, "election: not leader")
        req = rq.proclaim_request(self._key, value)
        self.client.namespace.leader_key(req.leader)
        await self.client._call(
            lambda ch: v3election_pb2_grpc.ElectionStub(ch).Proclaim(
                req, timeout=self.client.timeout
            ),
            False,
        )

    async def leader(self) -> KeyValue | None:
        """The current leader's key and value, or None when nobody leads."""
        ns = self.client.namespace
        req = v3election_pb2.LeaderRequest(name=ns.key(self.name))
        try:
            r = await self.client._call(
                lambda ch: v3election_pb2_grpc.ElectionStub(ch).Leader(
                    req, timeout=self.client.timeout
                ),
                True,
            )
        except EtcdError as e:
            if e.message == rq.ERR_ELECTION_NO_LEADER:
                return None
            raise
        return rq.leader_value(ns.leader_response(r))

    async def observe(self) -> AsyncGenerator[KeyValue, None]:
        """As :meth:`Election.observe`."""
        ns = self.client.namespace
        req = v3election_pb2.LeaderRequest(name=ns.key(self.name))
        call = v3election_pb2_grpc.ElectionStub(await self.client._channel()).Observe(req)
        try:
            async for r in call:
                kv = rq.leader_value(ns.leader_response(r))
                if kv is not None:
                    yield kv
        except grpc.aio.AioRpcError as e:
            raise from_rpc_error(e) from None
        finally:
            call.cancel()

    async def resign(self) -> None:
        """As :meth:`Election.resign`."""
        key, keep = self._key, self._keep
        if key is None or keep is None:
            return
        self._key = self._keep = None
        req = rq.resign_request(key)
        self.client.namespace.leader_key(req.leader)
        try:
            await self.client._call(
                lambda ch: v3election_pb2_grpc.ElectionStub(ch).Resign(
                    req, timeout=self.client.timeout
                ),
                False,
            )
        finally:
            await keep.stop()
            with contextlib.suppress(EtcdError):
                await self.client.lease_revoke(key.lease)

    async def __aenter__(self) -> AsyncElection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.resign()
