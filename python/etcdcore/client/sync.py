"""The blocking client."""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any, BinaryIO, TypeVar

import grpc

from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdcore.proto.v3election import v3election_pb2, v3election_pb2_grpc
from etcdcore.proto.v3lock import v3lock_pb2, v3lock_pb2_grpc

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
    LeaseInfo,
    Member,
    PutResult,
    TxnResult,
)

T = TypeVar("T")


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class _TokenInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the client's current auth token to every call's metadata."""

    def __init__(self, token: Callable[[], str | None]) -> None:
        self._token = token

    def _details(self, d: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _CallDetails(
            d.method,
            d.timeout,
            rq.with_token(d.metadata, self._token(), d.method),
            d.credentials,
            getattr(d, "wait_for_ready", None),
            getattr(d, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def _open_channel(
    target: str,
    credentials: grpc.ChannelCredentials | None,
    token: Callable[[], str | None] | None,
) -> grpc.Channel:
    if credentials is not None:
        ch = grpc.secure_channel(target, credentials)
    else:
        ch = grpc.insecure_channel(target)
    if token is not None:
        ch = grpc.intercept_channel(ch, _TokenInterceptor(token))
    return ch


LostCallback = Callable[["KeptLease"], object]


class KeptLease:
    """A lease that :meth:`Client.lease` keeps alive on a thread of its own.

    ``lost`` is set (and ``on_lost`` called, once, on the keep-alive thread)
    when the lease is gone: the server says so, or no renewal got through
    before it would have expired. Nothing held under it may be relied on
    after that; leaving the ``with`` block then raises :class:`LeaseLostError`.
    """

    def __init__(self, client: Client, lease: Lease, on_lost: LostCallback | None) -> None:
        self.id = lease.id
        self.ttl = lease.ttl
        self.lost = threading.Event()
        self._client = client
        self._on_lost = on_lost
        self._renewals = Renewals(lease.ttl, time.monotonic())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep, daemon=True, name=f"lease-{lease.id:x}")
        self._thread.start()

    @property
    def alive(self) -> bool:
        """False once the lease is lost."""
        return not self.lost.is_set()

    def _keep(self) -> None:
        wait = self._renewals.interval()
        while not self._stop.wait(wait):
            sent = time.monotonic()
            try:
                ttl = self._client.lease_keep_alive_once(self.id)
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

    def stop(self) -> None:
        """Stop renewing (the lease then expires unless revoked)."""
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join()


class Watch:
    """An open watch: iterate over it for batches of events, forever.

    A broken stream is reopened (on the next endpoint, logging in again when
    the token was refused) from the revision after the last one seen, so no
    event is lost or repeated; :class:`CompactedError` when that revision is
    gone. :meth:`cancel` (alias :meth:`close`) ends it from any thread: a
    thread blocked waiting for events then sees the iteration end.
    """

    def __init__(
        self,
        client: Client,
        key: bytes,
        range_end: bytes,
        start_revision: int,
        prev_kv: bool,
    ) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._cancelled = False
        self._call: Any = None
        self._done: threading.Event | None = None
        self._gen = self._run(key, range_end, start_revision, prev_kv)
        next(self._gen)  # runs until the server confirmed the watch

    def __iter__(self) -> Watch:
        return self

    def __next__(self) -> list[Event]:
        events = next(self._gen)
        assert events is not None
        return events

    def cancel(self) -> None:
        """Stop watching; safe from any thread, and more than once."""
        with self._lock:
            self._cancelled = True
            if self._done is not None:
                self._done.set()
            if self._call is not None:
                self._call.cancel()

    close = cancel

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()

    def _open(self, create: rpc_pb2.WatchRequest) -> Any:
        """Opens one stream, unless cancelled meanwhile (then None)."""
        done = threading.Event()

        def requests() -> Iterator[rpc_pb2.WatchRequest]:
            yield create
            done.wait()

        channel = self._client._channel()
        with self._lock:
            if self._cancelled:
                return None
            self._done = done
            self._call = rpc_pb2_grpc.WatchStub(channel).Watch(requests())
            return self._call

    def _run(
        self, key: bytes, range_end: bytes, start_revision: int, prev_kv: bool
    ) -> Generator[list[Event] | None, None, None]:
        client = self._client
        confirmed = False
        next_rev = start_revision
        relogged = False
        while True:
            create = rq.watch_create_request(key, range_end, next_rev, prev_kv)
            token = client.token
            call = self._open(create)
            if call is None:
                return
            try:
                for resp in call:
                    if client._auth_refused_watch(resp) and not relogged:
                        relogged = True
                        client._login(token)
                        break
                    resp = client.namespace.watch_response(resp)
                    events, next_rev = rq.watch_step(resp, next_rev)
                    if resp.created:
                        relogged = False
                        if not confirmed:
                            confirmed = True
                            yield None
                    if events:
                        yield events
            except grpc.RpcError as e:
                if self._cancelled:
                    return
                if client._may_login_again(e) and not relogged:
                    relogged = True
                    client._login(token)
                    continue
                if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL):
                    raise from_rpc_error(e) from None
                client._conn.rotate()
                time.sleep(0.1)
            finally:
                with self._lock:
                    if self._done is not None:
                        self._done.set()
                call.cancel()
            if self._cancelled:
                return


class Client:
    """A blocking etcd v3 client with failover over several endpoints.

    ``Client(["127.0.0.1:2379", "127.0.0.1:22379"], timeout=5.0)``; every
    method raises :class:`EtcdError` (or a subclass) with etcd's status and text.

    TLS: give ``https://`` endpoints and/or ``ca_cert`` (verifies the server;
    the system's roots when omitted), ``cert`` and ``key`` (this client's
    certificate, for servers with ``--client-cert-auth``); each a PEM file's
    path or its bytes. Auth: with ``user`` and ``password`` the client logs in
    on its first call and sends the token with every call, logging in again
    (once per call, and when a watch stream is refused) when the server says
    the token is no longer valid, as clientv3 does.
    Namespace: ``namespace="/tenant-a/"`` puts every key under that prefix and
    takes it off every key answered (see :mod:`.namespace`).
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
        self._conn: Connection[grpc.Channel] = Connection(
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
        self._auth_lock = threading.Lock()

    # -- plumbing ------------------------------------------------------------------
    def _channel(self) -> grpc.Channel:
        if self._conn.needs_login:
            self._login(None)
        return self._conn.channel_to(self._conn.current())

    def _login(self, rejected: str | None) -> None:
        """Authenticate (unless another thread already replaced the token the
        server ``rejected``)."""
        conn = self._conn
        with self._auth_lock:
            if not conn.login_needed_after(rejected):
                return
            req = conn.authenticate_request()
            last: grpc.RpcError | None = None
            for target in conn.login_targets():
                stub = rpc_pb2_grpc.AuthStub(conn.channel_to(target))
                try:
                    r = stub.Authenticate(req, timeout=self.timeout)
                except grpc.RpcError as e:
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

    def _may_login_again(self, e: grpc.RpcError) -> bool:
        return self._conn.auth is not None and rq.is_invalid_token(e)

    def _auth_refused_watch(self, resp: rpc_pb2.WatchResponse) -> bool:
        return self._conn.auth is not None and rq.is_auth_refused_watch(resp)

    def _call(
        self, fn: Callable[[grpc.Channel], T], idempotent: bool, endpoint: str | None = None
    ) -> T:
        """``fn`` on the current endpoint, then on the next ones while it may
        be retried there; only on ``endpoint`` when given. A rejected auth token
        is renewed and the call retried once."""
        attempt = self._conn.attempt(idempotent, endpoint)
        while True:
            if self._conn.needs_login:
                self._login(None)
            ch = self._conn.channel_to(attempt.target())
            try:
                return fn(ch)
            except grpc.RpcError as e:
                step = attempt.failed(e)
                if step is Next.LOGIN:
                    self._login(attempt.token)
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

    def close(self) -> None:
        """Close every connection; the client cannot be used afterwards."""
        for ch in self._conn.close():
            ch.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- KV ------------------------------------------------------------------------
    def get(self, key: rq.Bytesish, **options: Any) -> GetResult:
        """Range: one key, a prefix (``prefix=True``) or ``range_end``; see
        :func:`requests.range_request` for every option."""
        req = self.namespace.range(rq.range_request(key, **options))
        r = self._call(lambda ch: rpc_pb2_grpc.KVStub(ch).Range(req, timeout=self.timeout), True)
        return rq.get_result(self.namespace.range_response(r))

    def put(self, key: rq.Bytesish, value: rq.Bytesish, **options: Any) -> PutResult:
        """Put ``value`` at ``key`` (``lease=``, ``prev_kv=``)."""
        req = self.namespace.put(rq.put_request(key, value, **options))
        r = self._call(lambda ch: rpc_pb2_grpc.KVStub(ch).Put(req, timeout=self.timeout), False)
        return rq.put_result(self.namespace.put_response(r))

    def delete(self, key: rq.Bytesish, **options: Any) -> DeleteResult:
        """Delete a key, a prefix (``prefix=True``) or a range (``prev_kv=``)."""
        req = self.namespace.delete(rq.delete_request(key, **options))
        r = self._call(
            lambda ch: rpc_pb2_grpc.KVStub(ch).DeleteRange(req, timeout=self.timeout), False
        )
        return rq.delete_result(self.namespace.delete_response(r))

    def txn(self) -> rq.TxnBuilder[TxnResult]:
        """``client.txn().if_(...).then(...).else_(...).commit()``."""

        def commit(req: rpc_pb2.TxnRequest) -> TxnResult:
            req = self.namespace.txn(req)
            r = self._call(lambda ch: rpc_pb2_grpc.KVStub(ch).Txn(req, timeout=self.timeout), False)
            return rq.txn_result(self.namespace.txn_response(r))

        return rq.TxnBuilder(commit)

    def compact(self, revision: int, physical: bool = False) -> None:
        """Forget history before ``revision``."""
        req = rpc_pb2.CompactionRequest(revision=revision, physical=physical)
        self._call(lambda ch: rpc_pb2_grpc.KVStub(ch).Compact(req, timeout=self.timeout), False)

    # -- watch ---------------------------------------------------------------------
    def watch(
        self,
        key: rq.Bytesish,
        *,
        prefix: bool = False,
        range_end: rq.Bytesish | None = None,
        start_revision: int = 0,
        prev_kv: bool = False,
    ) -> Watch:
        """Batches of events, forever: see :class:`Watch`. The watch exists when
        this returns (a write made after it is seen). Cancel it (from any
        thread), close it or break out of the loop to stop watching."""
        k, end = self.namespace.watch(*rq.key_range(key, prefix, range_end))
        return Watch(self, k, end, start_revision, prev_kv)

    # -- leases --------------------------------------------------------------------
    def lease_grant(self, ttl: int, lease_id: int = 0) -> Lease:
        req = rpc_pb2.LeaseGrantRequest(TTL=ttl, ID=lease_id)
        r = self._call(
            lambda ch: rpc_pb2_grpc.LeaseStub(ch).LeaseGrant(req, timeout=self.timeout), False
        )
        return Lease(r.ID, r.TTL)

    def lease_revoke(self, lease_id: int) -> None:
        req = rpc_pb2.LeaseRevokeRequest(ID=lease_id)
        self._call(
            lambda ch: rpc_pb2_grpc.LeaseStub(ch).LeaseRevoke(req, timeout=self.timeout), False
        )

    def lease_time_to_live(self, lease_id: int, keys: bool = False) -> LeaseInfo:
        """Remaining TTL (-1 when the lease is gone) and, with ``keys``, its keys."""
        req = rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id, keys=keys)
        r = self._call(
            lambda ch: rpc_pb2_grpc.LeaseStub(ch).LeaseTimeToLive(req, timeout=self.timeout), True
        )
        return LeaseInfo(r.ID, r.TTL, r.grantedTTL, self.namespace.lease_keys(list(r.keys)))

    def lease_keep_alive_once(self, lease_id: int) -> int:
        """Renew once; returns the TTL (0 when the lease is gone)."""
        req = rpc_pb2.LeaseKeepAliveRequest(ID=lease_id)

        def once(ch: grpc.Channel) -> int:
            call = rpc_pb2_grpc.LeaseStub(ch).LeaseKeepAlive(iter([req]), timeout=self.timeout)
            for resp in call:
                return int(resp.TTL)
            return 0

        return self._call(once, True)

    @contextlib.contextmanager
    def lease(self, ttl: int, on_lost: LostCallback | None = None) -> Iterator[KeptLease]:
        """A lease kept alive (renewed every ttl/3 s) while the block runs, then
        revoked. Its ``lost`` event is set, and ``on_lost(lease)`` called, when
        the lease is lost meanwhile; the block then ends with
        :class:`LeaseLostError` (unless it raised something else)."""
        kept = KeptLease(self, self.lease_grant(ttl), on_lost)
        failed = True
        try:
            yield kept
            failed = False
        finally:
            kept.stop()
            with contextlib.suppress(EtcdError):
                self.lease_revoke(kept.id)
        if kept.lost.is_set() and not failed:
            raise LeaseLostError(kept.id)

    # -- locks ---------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(
        self,
        name: rq.Bytesish,
        ttl: int = 60,
        *,
        timeout: float | None = None,
        on_lost: LostCallback | None = None,
    ) -> Iterator[bytes]:
        """Hold the distributed lock ``name`` while the block runs; yields the
        lock key. Waits at most ``timeout`` seconds for it (None: as long as it
        takes), then raises :class:`DeadlineExceededError` and withdraws. The
        lock is bound to a lease kept alive meanwhile, so a crashed holder
        releases it within ``ttl`` seconds; should this holder's lease be lost,
        ``on_lost`` is called and the block ends with :class:`LeaseLostError`."""
        with self.lease(ttl, on_lost) as lease:
            req = v3lock_pb2.LockRequest(name=self.namespace.key(rq.to_bytes(name)), lease=lease.id)
            r = self._call(
                lambda ch: v3lock_pb2_grpc.LockStub(ch).Lock(req, timeout=timeout), False
            )
            try:
                yield self.namespace.strip_key(r.key)
            finally:
                unlock = v3lock_pb2.UnlockRequest(key=r.key)
                with contextlib.suppress(EtcdError):
                    self._call(
                        lambda ch: v3lock_pb2_grpc.LockStub(ch).Unlock(
                            unlock, timeout=self.timeout
                        ),
                        False,
                    )

    # -- elections -----------------------------------------------------------------
    def election(
        self, name: rq.Bytesish, ttl: int = 60, on_lost: LostCallback | None = None
    ) -> Election:
        """A campaigner in the election ``name``: see :class:`Election`."""
        return Election(self, name, ttl, on_lost)

    # -- cluster -------------------------------------------------------------------
    def member_list(self) -> list[Member]:
        """Every member of the cluster."""
        req = rpc_pb2.MemberListRequest()
        r = self._call(
            lambda ch: rpc_pb2_grpc.ClusterStub(ch).MemberList(req, timeout=self.timeout), True
        )
        return rq.members(r.members)

    def member_add(self, peer_urls: Sequence[str], is_learner: bool = False) -> Member:
        """Add a member reachable at ``peer_urls`` (a non-voting learner with
        ``is_learner``); returns it, still without name, until it starts."""
        req = rpc_pb2.MemberAddRequest(peerURLs=list(peer_urls), isLearner=is_learner)
        r = self._call(
            lambda ch: rpc_pb2_grpc.ClusterStub(ch).MemberAdd(req, timeout=self.timeout), False
        )
        return Member.from_pb(r.member)

    def member_remove(self, member_id: int) -> list[Member]:
        """Remove a member; returns the members left."""
        req = rpc_pb2.MemberRemoveRequest(ID=member_id)
        r = self._call(
            lambda ch: rpc_pb2_grpc.ClusterStub(ch).MemberRemove(req, timeout=self.timeout), False
        )
        return rq.members(r.members)

    def member_update(self, member_id: int, peer_urls: Sequence[str]) -> list[Member]:
        """Change a member's peer URLs; returns every member."""
        req = rpc_pb2.MemberUpdateRequest(ID=member_id, peerURLs=list(peer_urls))
        r = self._call(
            lambda ch: rpc_pb2_grpc.ClusterStub(ch).MemberUpdate(req, timeout=self.timeout), False
        )
        return rq.members(r.members)

    def member_promote(self, member_id: int) -> list[Member]:
        """Make a learner (caught up with the leader) a voting member."""
        req = rpc_pb2.MemberPromoteRequest(ID=member_id)
        r = self._call(
            lambda ch: rpc_pb2_grpc.ClusterStub(ch).MemberPromote(req, timeout=self.timeout), False
        )
        return rq.members(r.members)

    # -- maintenance ----------------------------------------------------------------
    def status(self, endpoint: str | None = None) -> rpc_pb2.StatusResponse:
        """Maintenance.Status of the current endpoint (or of ``endpoint``)."""
        req = rpc_pb2.StatusRequest()
        return self._call(
            lambda ch: rpc_pb2_grpc.MaintenanceStub(ch).Status(req, timeout=self.timeout),
            True,
            endpoint,
        )

    def _alarm(self, req: rpc_pb2.AlarmRequest) -> rpc_pb2.AlarmResponse:
        return self._call(
            lambda ch: rpc_pb2_grpc.MaintenanceStub(ch).Alarm(req, timeout=self.timeout),
            req.action == rpc_pb2.AlarmRequest.GET,
        )

    def alarm_list(self) -> list[Alarm]:
        """The alarms raised on any member."""
        return rq.alarms(self._alarm(rq.alarm_get_request()))

    def alarm_disarm(
        self, member_id: int | None = None, alarm: rq.AlarmType | None = None
    ) -> list[Alarm]:
        """Clear the raised alarms of ``member_id`` and type ``alarm`` (None:
        any); returns the alarms cleared."""
        cleared = rq.alarms_matching(self.alarm_list(), member_id, alarm)
        for a in cleared:
            self._alarm(rq.alarm_disarm_request(a))
        return cleared

    def defragment(self, endpoint: str | None = None, timeout: float | None = None) -> None:
        """Defragment the storage of the current endpoint's member (or of
        ``endpoint``'s); ``timeout`` defaults to the client's."""
        req = rpc_pb2.DefragmentRequest()
        t = timeout or self.timeout
        self._call(
            lambda ch: rpc_pb2_grpc.MaintenanceStub(ch).Defragment(req, timeout=t), True, endpoint
        )

    def hash_kv(self, revision: int = 0, endpoint: str | None = None) -> HashKVResult:
        """The hash of the key space up to ``revision`` (0: the latest) on the
        current endpoint's member (or ``endpoint``'s): equal on members in sync."""
        req = rpc_pb2.HashKVRequest(revision=revision)
        r = self._call(
            lambda ch: rpc_pb2_grpc.MaintenanceStub(ch).HashKV(req, timeout=self.timeout),
            True,
            endpoint,
        )
        return rq.hash_kv_result(r)

    def move_leader(self, target_id: int) -> None:
        """Hand leadership to member ``target_id``; sent to the leader (found
        among the endpoints by their status), returns once the target leads."""
        req = rpc_pb2.MoveLeaderRequest(targetID=target_id)
        self._call(
            lambda ch: rpc_pb2_grpc.MaintenanceStub(ch).MoveLeader(req, timeout=self.timeout),
            False,
            self._leader_endpoint(),
        )

    def _leader_endpoint(self) -> str | None:
        for e in self.endpoints:
            with contextlib.suppress(EtcdError):
                s = self.status(e)
                if s.leader and s.leader == s.header.member_id:
                    return e
        return None

    def snapshot(self, out: BinaryIO, endpoint: str | None = None) -> int:
        """Stream a snapshot of the current endpoint's member (or ``endpoint``'s)
        into ``out``, as ``etcdctl snapshot save`` writes it; returns the bytes
        written. A stream broken midway raises (nothing is retried then)."""
        req = rpc_pb2.SnapshotRequest()

        def stream(ch: grpc.Channel) -> int:
            written = 0
            try:
                for r in rpc_pb2_grpc.MaintenanceStub(ch).Snapshot(req):
                    out.write(r.blob)
                    written += len(r.blob)
            except grpc.RpcError as e:
                if written:
                    raise from_rpc_error(e) from None
                raise
            return written

        return self._call(stream, True, endpoint)


class Election:
    """One campaigner in the election ``name`` (over the v3election service).

    ``campaign(value)`` blocks until this campaigner leads, holding a lease of
    ``ttl`` seconds kept alive meanwhile (a crashed leader loses leadership
    within ``ttl``); ``resign()`` gives leadership up and revokes the lease.
    ``leader()`` and ``observe()`` work without campaigning. As a context
    manager it resigns on exit. Should the lease be lost while leading (no
    renewal got through in time), ``lost`` turns True and ``on_lost`` is
    called with the lease: leadership may have passed to another campaigner.
    """

    def __init__(
        self,
        client: Client,
        name: rq.Bytesish,
        ttl: int = 60,
        on_lost: LostCallback | None = None,
    ) -> None:
        self.client = client
        self.name = rq.to_bytes(name)
        self.ttl = ttl
        self._key: LeaderKey | None = None
        self._on_lost = on_lost
        self._keep: KeptLease | None = None

    @property
    def key(self) -> LeaderKey | None:
        """This campaigner's leadership, while it leads."""
        return self._key

    @property
    def lost(self) -> bool:
        """Whether the lease of the leadership won was lost since."""
        return self._keep is not None and self._keep.lost.is_set()

    def campaign(self, value: rq.Bytesish, timeout: float | None = None) -> LeaderKey:
        """Become leader with ``value``: blocks until every earlier candidate
        is gone (at most ``timeout`` seconds, then raises and withdraws).
        Campaigning again while leading proclaims ``value``."""
        if self._key is not None:
            self.proclaim(value)
            return self._key
        lease = self.client.lease_grant(self.ttl)
        keep = KeptLease(self.client, lease, self._on_lost)
        ns = self.client.namespace
        req = rq.campaign_request(ns.key(self.name), lease.id, value)
        try:
            r = self.client._call(
                lambda ch: v3election_pb2_grpc.ElectionStub(ch).Campaign(req, timeout=timeout),
                False,
            )
        except BaseException:
            keep.stop()
            with contextlib.suppress(EtcdError):
                self.client.lease_revoke(lease.id)
            raise
        self._key, self._keep = rq.leader_key(ns.strip_leader_key(r.leader)), keep
        return self._key

    def proclaim(self, value: rq.Bytesish) -> None:
        """Publish a new value as leader, without an election; raises
        :class:`NotLeaderError` when this campaigner does not lead."""
        if self._key is None:
            raise NotLeaderError(grpc.StatusCode.FAILED_PRECONDITION, "election: not leader")
        req = rq.proclaim_request(self._key, value)
        self.client.namespace.leader_key(req.leader)
        self.client._call(
            lambda ch: v3election_pb2_grpc.ElectionStub(ch).Proclaim(
                req, timeout=self.client.timeout
            ),
            False,
        )

    def leader(self) -> KeyValue | None:
        """The current leader's key and value, or None when nobody leads."""
        ns = self.client.namespace
        req = v3election_pb2.LeaderRequest(name=ns.key(self.name))
        try:
            r = self.client._call(
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

    def observe(self) -> Generator[KeyValue, None, None]:
        """The leader's key-value now (once somebody leads), then each time
        the leader or its value changes, forever. Close the generator (or break
        out of the loop) to stop; a broken stream raises :class:`EtcdError`."""
        ns = self.client.namespace
        req = v3election_pb2.LeaderRequest(name=ns.key(self.name))
        call = v3election_pb2_grpc.ElectionStub(self.client._channel()).Observe(req)

        def values() -> Generator[KeyValue, None, None]:
            try:
                for r in call:
                    kv = rq.leader_value(ns.leader_response(r))
                    if kv is not None:
                        yield kv
            except grpc.RpcError as e:
                raise from_rpc_error(e) from None
            finally:
                call.cancel()

        return values()

    def resign(self) -> None:
        """Give leadership up (the next candidate leads) and revoke the lease;
        nothing to do when not leading."""
        key, keep = self._key, self._keep
        if key is None or keep is None:
            return
        self._key = self._keep = None
        req = rq.resign_request(key)
        self.client.namespace.leader_key(req.leader)
        try:
            self.client._call(
                lambda ch: v3election_pb2_grpc.ElectionStub(ch).Resign(
                    req, timeout=self.client.timeout
                ),
                False,
            )
        finally:
            keep.stop()
            with contextlib.suppress(EtcdError):
                self.client.lease_revoke(key.lease)

    def __enter__(self) -> Election:
        return self

    def __exit__(self, *exc: object) -> None:
        self.resign()
