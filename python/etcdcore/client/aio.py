"""The asyncio client: the same requests and results as :class:`Client`, on
grpc.aio."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, BinaryIO, TypeVar

import grpc

from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdcore.proto.v3election import v3election_pb2, v3election_pb2_grpc

from . import requests as rq
from .connection import Connection, Next
from .errors import EtcdError, LeaseLostError, LeaseNotFoundError, NotLeaderError, from_rpc_error
from .keepalive import RETRY_INTERVAL, Renewals
from .namespace import Namespace
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
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _UnaryStreamToken(_WithToken, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _StreamUnaryToken(_WithToken, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


class _StreamStreamToken(_WithToken, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


def _token_interceptors(token: Callable[[], str | None]) -> list[grpc.aio.ClientInterceptor]:
    return [
        _UnaryUnaryToken(token),
        _UnaryStreamToken(token),
        _StreamUnaryToken(token),
        _StreamStreamToken(token),
    ]


def _open_channel(
    target: str,
    credentials: grpc.ChannelCredentials | None,
    token: Callable[[], str | None] | None,
) -> grpc.aio.Channel:
    interceptors = _token_interceptors(token) if token is not None else None
    if credentials is not None:
        return grpc.aio.secure_channel(target, credentials, interceptors=interceptors)
    return grpc.aio.insecure_channel(target, interceptors=interceptors)


AsyncLostCallback = Callable[["AsyncKeptLease"], object]


class AsyncKeptLease:
    """A lease that :meth:`AsyncClient.lease` keeps alive on a task:
    :class:`KeptLease` for asyncio (``lost`` is an :class:`asyncio.Event`)."""

    def __init__(
        self, client: AsyncClient, lease: Lease, on_lost: AsyncLostCallback | None
    ) -> None:
        self.id = lease.id
        self.ttl = lease.ttl
        self.lost = asyncio.Event()
        self._client = client
        self._on_lost = on_lost
        self._renewals = Renewals(lease.ttl, time.monotonic())
        self._task = asyncio.create_task(self._keep())

    @property
    def alive(self) -> bool:
        return not self.lost.is_set()

    async def _keep(self) -> None:
        wait = self._renewals.interval()
        while True:
            await asyncio.sleep(wait)
            sent = time.monotonic()
            try:
                ttl = await self._client.lease_keep_alive_once(self.id)
            except LeaseNotFoundError:
                ttl = 0
            except EtcdError:
                if self._renewals.failed(time.monotonic()):
                    return self._lose()
                wait = RETRY_INTERVAL
                continue
            if self._renewals.renewed(sent, ttl):
                return self._lose()
            wait = self._renewals.interval()

    def _lose(self) -> None:
        self.lost.set()
        if self._on_lost is not None:
            self._on_lost(self)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class AsyncClient:
    """``async with AsyncClient(["127.0.0.1:2379"]) as c: await c.put("k", "v")``.

    Takes the same TLS (``ca_cert``, ``cert``, ``key``, ``https://``
    endpoints), auth (``user``, ``password``) and ``namespace`` options as
    :class:`Client`,
    and shares its connection set-up, login and retry rules
    (:mod:`etcdcore.client.connection`).
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
        self.namespace = Namespace(namespace)
        self._conn: Connection[grpc.aio.Channel] = Connection(
            endpoints,
            timeout,
            _open_channel,
            ca_cert=ca_cert,
            cert=cert,
            key=key,
            user=user,
            password=password,
        )
        self.endpoints = self._conn.endpoints
        self.timeout = timeout
        self._auth_lock: asyncio.Lock | None = None

    async def _channel(self) -> grpc.aio.Channel:
        if self._conn.needs_login:
            await self._login(None)
        return self._conn.channel_to(self._conn.current())

    async def _login(self, rejected: str | None) -> None:
        """Authenticate (unless another task already replaced the token the
        server ``rejected``)."""
        conn = self._conn
        if self._auth_lock is None:
            self._auth_lock = asyncio.Lock()
        async with self._auth_lock:
            if not conn.login_needed_after(rejected):
                return
            req = conn.authenticate_request()
            last: grpc.RpcError | None = None
            for target in conn.login_targets():
                stub = rpc_pb2_grpc.AuthStub(conn.channel_to(target))
                try:
                    r = await stub.Authenticate(req, timeout=self.timeout)
                except grpc.aio.AioRpcError as e:
                    last = e
                    step = conn.login_failed(e)
                    if step is Next.DONE:
                        return
                    if step is Next.RAISE:
                        break
                    continue
                conn.logged_in_as(r.token)
                return
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
        attempt = self._conn.attempt(idempotent, endpoint)
        while True:
            if self._conn.needs_login:
                await self._login(None)
            ch = self._conn.channel_to(attempt.target())
            try:
                return await fn(ch)
            except grpc.aio.AioRpcError as e:
                step = attempt.failed(e)
                if step is Next.LOGIN:
                    await self._login(attempt.token)
                elif step is Next.RAISE:
                    raise from_rpc_error(e) from None

    @property
    def token(self) -> str | None:
        """The auth token calls carry (None before logging in or without auth)."""
        return self._conn.token

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (calls then raise ValueError)."""
        return self._conn.closed

    async def close(self) -> None:
        """Close every connection; the client cannot be used afterwards."""
        for ch in self._conn.close():
            await ch.close()

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

    def txn(self) -> rq.TxnBuilder[Awaitable[TxnResult]]:
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
            if not isinstance(resp, rpc_pb2.LeaseKeepAliveResponse):
                return 0  # the stream ended: no answer
            return int(resp.TTL)

        return await self._call(once, True)

    @contextlib.asynccontextmanager
    async def lease(
        self, ttl: int, on_lost: AsyncLostCallback | None = None
    ) -> AsyncIterator[AsyncKeptLease]:
        """As :meth:`Client.lease`: kept alive while the block runs, then
        revoked; :class:`LeaseLostError` on exit when it was lost meanwhile."""
        kept = AsyncKeptLease(self, await self.lease_grant(ttl), on_lost)
        failed = True
        try:
            yield kept
            failed = False
        finally:
            await kept.stop()
            with contextlib.suppress(EtcdError):
                await self.lease_revoke(kept.id)
        if kept.lost.is_set() and not failed:
            raise LeaseLostError(kept.id)

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
        relogged = False
        while True:
            token = self._conn.token
            create = rq.watch_create_request(k, end, next_rev, prev_kv)
            done = asyncio.Event()

            # The create request goes with the call: a server that refuses the
            # stream at once (etcdcore, on a rejected token) then fails the
            # iteration, with its status, instead of the write.
            async def requests(
                create: rpc_pb2.WatchRequest = create, done: asyncio.Event = done
            ) -> AsyncIterator[rpc_pb2.WatchRequest]:
                yield create
                await done.wait()

            call = rpc_pb2_grpc.WatchStub(await self._channel()).Watch(requests())
            try:
                async for resp in call:
                    if self._auth_refused_watch(resp) and not relogged:
                        relogged = True
                        await self._login(token)
                        break
                    resp = self.namespace.watch_response(resp)
                    events, next_rev = rq.watch_step(resp, next_rev)
                    if resp.created:
                        relogged = False
                    if events:
                        yield events
            except grpc.aio.AioRpcError as e:
                if self._may_login_again(e) and not relogged:
                    relogged = True
                    await self._login(token)
                    continue
                if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL):
                    raise from_rpc_error(e) from None
                self._conn.rotate()
                await asyncio.sleep(0.1)
            finally:
                done.set()
                call.cancel()

    def _may_login_again(self, e: grpc.RpcError) -> bool:
        return self._conn.auth is not None and rq.is_invalid_token(e)

    def _auth_refused_watch(self, resp: rpc_pb2.WatchResponse) -> bool:
        return self._conn.auth is not None and rq.is_auth_refused_watch(resp)

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

    async def _alarm(self, req: rpc_pb2.AlarmRequest) -> rpc_pb2.AlarmResponse:
        return await self._call(
            lambda ch: rpc_pb2_grpc.MaintenanceStub(ch).Alarm(req, timeout=self.timeout),
            req.action == rpc_pb2.AlarmRequest.GET,
        )

    async def alarm_list(self) -> list[Alarm]:
        """The alarms raised on any member."""
        return rq.alarms(await self._alarm(rq.alarm_get_request()))

    async def alarm_disarm(
        self, member_id: int | None = None, alarm: rq.AlarmType | None = None
    ) -> list[Alarm]:
        """As :meth:`Client.alarm_disarm`."""
        cleared = rq.alarms_matching(await self.alarm_list(), member_id, alarm)
        for a in cleared:
            await self._alarm(rq.alarm_disarm_request(a))
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
        self._keep: AsyncKeptLease | None = None

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
        keep = AsyncKeptLease(self.client, lease, None)
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
