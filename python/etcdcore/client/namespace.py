"""A key namespace for the client, as clientv3's ``namespace`` package: with
``Client(..., namespace="/tenant-a/")`` every key, range end, compare,
watch, lock and election name a call sends is put under the prefix, and
every key an answer carries loses it again (keys, prev_kv, events, a
lease's keys), so the program sees a keyspace of its own.

A request can never reach outside the prefix: a prefixed key starts with
it, a prefixed range end is the prefix plus the caller's end (which sorts
before the end of the prefix's range) or, for ``"\\0"`` (from-key and
whole-keyspace ranges), the end of the prefix's range itself. Keys outside
the prefix in answers are dropped, never shown. Leases, compaction and
maintenance stay cluster-wide.

The requests given to these functions are rewritten in place (the clients
build a fresh one for every call).
"""

from __future__ import annotations

import grpc
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

from etcdcore.proto.etcdserverpb import rpc_pb2
from etcdcore.proto.mvccpb import kv_pb2
from etcdcore.proto.v3election import v3election_pb2

from .errors import EtcdError
from .requests import prefix_end

#: etcd's refusal of an empty key (clientv3's namespace gives it itself).
ERR_EMPTY_KEY = "etcdserver: key is not provided"


class Namespace:
    """The prefix ``prefix`` (bytes or str); ``Namespace(b"")`` changes nothing."""

    def __init__(self, prefix: bytes | str) -> None:
        self.prefix = prefix.encode() if isinstance(prefix, str) else bytes(prefix)
        self.end = prefix_end(self.prefix) if self.prefix else b""

    def __bool__(self) -> bool:
        return bool(self.prefix)

    # -- keys ------------------------------------------------------------------------
    def key(self, key: bytes) -> bytes:
        return self.prefix + key

    def range_end(self, end: bytes) -> bytes:
        if not end or not self.prefix:
            return end
        if end == b"\0":
            return self.end
        return self.prefix + end

    def strip(self, key: bytes) -> bytes | None:
        """The caller's spelling of a key, or None for one outside."""
        if key.startswith(self.prefix):
            return key[len(self.prefix) :]
        return None

    def _check(self, key: bytes, end: bytes = b"") -> None:
        if not key and not end:
            raise EtcdError(grpc.StatusCode.INVALID_ARGUMENT, ERR_EMPTY_KEY)

    def _strip_kvs(self, kvs: RepeatedCompositeFieldContainer[kv_pb2.KeyValue]) -> None:
        keep = []
        for kv in kvs:
            k = self.strip(kv.key)
            if k is not None:
                kv.key = k
                keep.append(kv)
        if len(keep) != len(kvs):
            copies = [kv_pb2.KeyValue() for _ in keep]
            for c, kv in zip(copies, keep, strict=True):
                c.CopyFrom(kv)
            del kvs[:]
            kvs.extend(copies)

    # -- requests --------------------------------------------------------------------
    def range(self, r: rpc_pb2.RangeRequest) -> rpc_pb2.RangeRequest:
        if self.prefix:
            self._check(r.key, r.range_end)
            r.key, r.range_end = self.key(r.key), self.range_end(r.range_end)
        return r

    def put(self, r: rpc_pb2.PutRequest) -> rpc_pb2.PutRequest:
        if self.prefix:
            self._check(r.key)
            r.key = self.key(r.key)
        return r

    def delete(self, r: rpc_pb2.DeleteRangeRequest) -> rpc_pb2.DeleteRangeRequest:
        if self.prefix:
            self._check(r.key, r.range_end)
            r.key, r.range_end = self.key(r.key), self.range_end(r.range_end)
        return r

    def txn(self, t: rpc_pb2.TxnRequest) -> rpc_pb2.TxnRequest:
        if not self.prefix:
            return t
        for c in t.compare:
            c.key, c.range_end = self.key(c.key), self.range_end(c.range_end)
        for op in [*t.success, *t.failure]:
            kind = op.WhichOneof("request")
            if kind == "request_range":
                self.range(op.request_range)
            elif kind == "request_put":
                self.put(op.request_put)
            elif kind == "request_delete_range":
                self.delete(op.request_delete_range)
            elif kind == "request_txn":
                self.txn(op.request_txn)
        return t

    def watch(self, key: bytes, end: bytes) -> tuple[bytes, bytes]:
        if not self.prefix:
            return key, end
        # etcd's watch server reads an empty key as "\0".
        return self.key(key or b"\0"), self.range_end(end)

    def leader_key(self, lk: v3election_pb2.LeaderKey) -> v3election_pb2.LeaderKey:
        if self.prefix:
            lk.name, lk.key = self.key(lk.name), self.key(lk.key)
        return lk

    # -- answers ---------------------------------------------------------------------
    def range_response(self, r: rpc_pb2.RangeResponse) -> rpc_pb2.RangeResponse:
        if self.prefix:
            self._strip_kvs(r.kvs)
        return r

    def put_response(self, r: rpc_pb2.PutResponse) -> rpc_pb2.PutResponse:
        if self.prefix and r.HasField("prev_kv"):
            k = self.strip(r.prev_kv.key)
            if k is None:
                r.ClearField("prev_kv")
            else:
                r.prev_kv.key = k
        return r

    def delete_response(self, r: rpc_pb2.DeleteRangeResponse) -> rpc_pb2.DeleteRangeResponse:
        if self.prefix:
            self._strip_kvs(r.prev_kvs)
        return r

    def txn_response(self, t: rpc_pb2.TxnResponse) -> rpc_pb2.TxnResponse:
        if not self.prefix:
            return t
        for op in t.responses:
            kind = op.WhichOneof("response")
            if kind == "response_range":
                self.range_response(op.response_range)
            elif kind == "response_put":
                self.put_response(op.response_put)
            elif kind == "response_delete_range":
                self.delete_response(op.response_delete_range)
            elif kind == "response_txn":
                self.txn_response(op.response_txn)
        return t

    def watch_response(self, r: rpc_pb2.WatchResponse) -> rpc_pb2.WatchResponse:
        if not self.prefix or not r.events:
            return r
        keep = []
        for ev in r.events:
            k = self.strip(ev.kv.key)
            if k is None:
                continue
            ev.kv.key = k
            if ev.HasField("prev_kv"):
                pk = self.strip(ev.prev_kv.key)
                if pk is None:
                    ev.ClearField("prev_kv")
                else:
                    ev.prev_kv.key = pk
            keep.append(ev)
        if len(keep) != len(r.events):
            copies = [kv_pb2.Event() for _ in keep]
            for c, ev in zip(copies, keep, strict=True):
                c.CopyFrom(ev)
            del r.events[:]
            r.events.extend(copies)
        return r

    def lease_keys(self, keys: list[bytes]) -> list[bytes]:
        if not self.prefix:
            return keys
        return [k[len(self.prefix) :] for k in keys if k.startswith(self.prefix)]

    def strip_key(self, key: bytes) -> bytes:
        """A lock or leader key from the cluster (empty when outside)."""
        if not self.prefix:
            return key
        k = self.strip(key)
        return k if k is not None else b""

    def strip_leader_key(self, lk: v3election_pb2.LeaderKey) -> v3election_pb2.LeaderKey:
        if self.prefix:
            lk.name, lk.key = self.strip_key(lk.name), self.strip_key(lk.key)
        return lk

    def leader_response(self, r: v3election_pb2.LeaderResponse) -> v3election_pb2.LeaderResponse:
        if self.prefix and r.HasField("kv"):
            k = self.strip(r.kv.key)
            if k is None:
                r.ClearField("kv")
            else:
                r.kv.key = k
        return r
