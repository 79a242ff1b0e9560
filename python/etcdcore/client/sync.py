"""The blocking client."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any, TypeVar

import grpc

from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdcore.proto.v3lock import v3lock_pb2, v3lock_pb2_grpc

from . import requests as rq
from .errors import EtcdError, from_rpc_error
from .types import DeleteResult, Event, GetResult, Lease, LeaseInfo, PutResult, TxnResult

T = TypeVar("T")


def normalize_endpoint(e: str) -> str:
    """``host:port`` from ``host:port`` or ``http://host:port``."""
    return e.split("://", 1)[-1].rstrip("/")


def may_retry_elsewhere(e: grpc.RpcError, idempotent: bool) -> bool:
    """Whether a failed call may be sent to the next endpoint: always for
    reads; for writes only when the server never saw them (no etcd answer)."""
    if e.code() != grpc.StatusCode.UNAVAILABLE:
        return False
    return idempotent or not (e.details() or "").startswith("etcdserver:")


class Client:
    """A blocking etcd v3 client with failover over several endpoints.

    ``Client(["127.0.0.1:2379", "127.0.0.1:22379"], timeout=5.0)``; every
    method raises :class:`EtcdError` (or a subclass) with etcd's status and text.
    """

    def __init__(self, endpoints: Sequence[str] = ("127.0.0.1:2379",), timeout: float = 5.0):
        if not endpoints:
            raise ValueError("at least one endpoint is needed")
        self.endpoints = [normalize_endpoint(e) for e in endpoints]
        self.timeout = timeout
        self._current = 0
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()

    # -- plumbing ------------------------------------------------------------------
    def _channel(self) -> grpc.Channel:
        with self._lock:
            target = self.endpoints[self._current]
            ch = self._channels.get(target)
            if ch is None:
                ch = self._channels[target] = grpc.insecure_channel(target)
            return ch

    def _next_endpoint(self) -> None:
        with self._lock:
            self._current = (self._current + 1) % len(self.endpoints)

    def _call(self, fn: Callable[[grpc.Channel], T], idempotent: bool) -> T:
        last: grpc.RpcError | None = None
        for _ in range(len(self.endpoints)):
            try:
                return fn(self._channel())
            except grpc.RpcError as e:
                last = e
                if not may_retry_elsewhere(e, idempotent):
                    break
                self._next_endpoint()
        assert last is not None
        raise from_rpc_error(last) from None

    def close(self) -> None:
        """Close every connection."""
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- KV ------------------------------------------------------------------------
    def get(self, key: rq.Bytesish, **options: Any) -> GetResult:
        """Range: one key, a prefix (``prefix=True``) or ``range_end``; see
        :func:`requests.range_request` for every option."""
        req = rq.range_request(key, **options)
        r = self._call(lambda ch: rpc_pb2_grpc.KVStub(ch).Range(req, timeout=self.timeout), True)
        return rq.get_result(r)

    def put(self, key: rq.Bytesish, value: rq.Bytesish, **options: Any) -> PutResult:
        """Put ``value`` at ``key`` (``lease=``, ``prev_kv=``)."""
        req = rq.put_request(key, value, **options)
        r = self._call(lambda ch: rpc_pb2_grpc.KVStub(ch).Put(req, timeout=self.timeout), False)
        return rq.put_result(r)

    def delete(self, key: rq.Bytesish, **options: Any) -> DeleteResult:
        """Delete a key, a prefix (``prefix=True``) or a range (``prev_kv=``)."""
        req = rq.delete_request(key, **options)
        r = self._call(
            lambda ch: rpc_pb2_grpc.KVStub(ch).DeleteRange(req, timeout=self.timeout), False
        )
        return rq.delete_result(r)

    def txn(self) -> rq.TxnBuilder:
        """``client.txn().if_(...).then(...).else_(...).commit()``."""

        def commit(req: rpc_pb2.TxnRequest) -> TxnResult:
            r = self._call(lambda ch: rpc_pb2_grpc.KVStub(ch).Txn(req, timeout=self.timeout), False)
            return rq.txn_result(r)

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
    ) -> Generator[list[Event], None, None]:
        """Batches of events, forever. The watch exists when this returns (a
        write made after it is seen). A broken stream is reopened (on the next
        endpoint) from the revision after the last one seen, so no event is lost
        or repeated. Raises :class:`CompactedError` when that revision is gone.
        Close the generator (or break out of the loop) to stop watching."""
        gen = self._watch(key, prefix, range_end, start_revision, prev_kv)
        next(gen)  # runs until the server confirmed the watch
        return gen  # type: ignore[return-value]

    def _watch(
        self,
        key: rq.Bytesish,
        prefix: bool,
        range_end: rq.Bytesish | None,
        start_revision: int,
        prev_kv: bool,
    ) -> Generator[list[Event] | None, None, None]:
        k, end = rq.key_range(key, prefix, range_end)
        confirmed = False
        next_rev = start_revision
        while True:
            done = threading.Event()
            create = rpc_pb2.WatchRequest(
                create_request=rpc_pb2.WatchCreateRequest(
                    key=k, range_end=end, start_revision=next_rev, prev_kv=prev_kv
                )
            )

            def requests(create: rpc_pb2.WatchRequest = create, done: threading.Event = done):
                yield create
                done.wait()

            call = rpc_pb2_grpc.WatchStub(self._channel()).Watch(requests())
            try:
                for resp in call:
                    events, next_rev = rq.watch_step(resp, next_rev)
                    if resp.created and not confirmed:
                        confirmed = True
                        yield None
                    if events:
                        yield events
            except grpc.RpcError as e:
                if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL):
                    raise from_rpc_error(e) from None
                self._next_endpoint()
                time.sleep(0.1)
            finally:
                done.set()
                call.cancel()

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
        return LeaseInfo(r.ID, r.TTL, r.grantedTTL, list(r.keys))

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
    def lease(self, ttl: int) -> Iterator[Lease]:
        """A lease kept alive (every ttl/3 s) while the block runs, then revoked."""
        lease = self.lease_grant(ttl)
        stop = threading.Event()

        def keep() -> None:
            while not stop.wait(max(ttl / 3, 0.5)):
                with contextlib.suppress(EtcdError):
                    self.lease_keep_alive_once(lease.id)

        t = threading.Thread(target=keep, daemon=True, name=f"lease-{lease.id:x}")
        t.start()
        try:
            yield lease
        finally:
            stop.set()
            t.join()
            with contextlib.suppress(EtcdError):
                self.lease_revoke(lease.id)

    # -- locks ---------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, name: rq.Bytesish, ttl: int = 60) -> Iterator[bytes]:
        """Hold the distributed lock ``name`` while the block runs; yields the
        lock key. The lock is bound to a lease kept alive meanwhile, so a crashed
        holder releases it within ``ttl`` seconds."""
        with self.lease(ttl) as lease:
            req = v3lock_pb2.LockRequest(name=rq.to_bytes(name), lease=lease.id)
            r = self._call(lambda ch: v3lock_pb2_grpc.LockStub(ch).Lock(req), False)
            try:
                yield r.key
            finally:
                unlock = v3lock_pb2.UnlockRequest(key=r.key)
                self._call(
                    lambda ch: v3lock_pb2_grpc.LockStub(ch).Unlock(unlock, timeout=self.timeout),
                    False,
                )

    # -- cluster -------------------------------------------------------------------
    def status(self) -> rpc_pb2.StatusResponse:
        """Maintenance.Status of the current endpoint."""
        req = rpc_pb2.StatusRequest()
        return self._call(
            lambda ch: rpc_pb2_grpc.MaintenanceStub(ch).Status(req, timeout=self.timeout), True
        )

    def member_list(self) -> list[rpc_pb2.Member]:
        req = rpc_pb2.MemberListRequest()
        r = self._call(
            lambda ch: rpc_pb2_grpc.ClusterStub(ch).MemberList(req, timeout=self.timeout), True
        )
        return list(r.members)
