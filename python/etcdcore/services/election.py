"""The v3election service: leader election as etcd serves it.

A candidate's key is ``NAME/<lease id in hex>`` holding its proposal, bound to
its lease. The leader is the candidate with the smallest create revision;
Campaign returns once every older candidate is gone. Proclaim changes the
leader's value while it still leads; Resign deletes its key; Observe streams the
leader's value each time the leader or its value changes. This is clientv3's
concurrency.Election, which etcd's v3election server runs against itself.
"""

from __future__ import annotations

import asyncio

from etcdcore.bridge import INVALID_ARGUMENT, UNKNOWN, Bridge, EtcdError, Stream
from etcdcore.client.requests import prefix_end
from etcdcore.proto.etcdserverpb import rpc_pb2
from etcdcore.proto.mvccpb import kv_pb2
from etcdcore.proto.v3election import v3election_pb2
from etcdcore.services import decode_stream_message
from etcdcore.services.lock import acquire
from etcdcore.services.loopback import LoopbackKV

SERVICE = "/v3electionpb.Election/"
ERR_NOT_LEADER = "election: not leader"
ERR_NO_LEADER = "election: no leader"
ERR_MISSING_LEADER_KEY = '"leader" field must be provided'


class ElectionService:
    """v3electionpb.Election over the bridge."""

    def __init__(self, kv: LoopbackKV) -> None:
        self.kv = kv

    def register(self, bridge: Bridge) -> None:
        bridge.unary(SERVICE + "Campaign", self.campaign)
        bridge.unary(SERVICE + "Proclaim", self.proclaim)
        bridge.unary(SERVICE + "Leader", self.leader)
        bridge.unary(SERVICE + "Resign", self.resign)
        bridge.streaming(SERVICE + "Observe", self.observe)

    async def campaign(self, data: bytes) -> bytes:
        """Campaign: returns once the caller leads NAME."""
        req = v3election_pb2.CampaignRequest.FromString(data)
        prefix = req.name + b"/"
        key, rev, resp = await acquire(self.kv, prefix, req.lease, req.value)
        if not resp.succeeded and resp.responses[0].response_range.kvs[0].value != req.value:
            # Campaigning again with a new value proclaims it.
            if not await self._proclaim(key, rev, req.lease, req.value):
                raise EtcdError(UNKNOWN, ERR_NOT_LEADER)
        try:
            await self.kv.wait_deletes(prefix, rev - 1)
        except BaseException:
            await self._resign(key, rev)
            raise
        out = v3election_pb2.CampaignResponse(
            leader=v3election_pb2.LeaderKey(name=req.name, key=key, rev=rev, lease=req.lease)
        )
        out.header.CopyFrom(resp.header)
        return out.SerializeToString()

    async def _proclaim(self, key: bytes, rev: int, lease: int, value: bytes) -> bool:
        resp = await self.kv.txn(
            rpc_pb2.TxnRequest(
                compare=[_still_leader(key, rev)],
                success=[
                    rpc_pb2.RequestOp(
                        request_put=rpc_pb2.PutRequest(key=key, value=value, lease=lease)
                    )
                ],
            )
        )
        return resp.succeeded

    async def _resign(self, key: bytes, rev: int) -> rpc_pb2.TxnResponse:
        return await self.kv.txn(
            rpc_pb2.TxnRequest(
                compare=[_still_leader(key, rev)],
                success=[
                    rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=key))
                ],
            )
        )

    async def proclaim(self, data: bytes) -> bytes:
        """Proclaim: a new value for the leader, if it still leads."""
        req = v3election_pb2.ProclaimRequest.FromString(data)
        if not req.HasField("leader"):
            raise EtcdError(UNKNOWN, ERR_MISSING_LEADER_KEY)
        lk = req.leader
        if not await self._proclaim(lk.key, lk.rev, lk.lease, req.value):
            raise EtcdError(UNKNOWN, ERR_NOT_LEADER)
        out = v3election_pb2.ProclaimResponse()
        out.header.CopyFrom((await self.kv.range(rpc_pb2.RangeRequest(key=lk.key))).header)
        return out.SerializeToString()

    async def leader(self, data: bytes) -> bytes:
        """Leader: the current leader's key and value."""
        req = v3election_pb2.LeaderRequest.FromString(data)
        resp = await self.kv.first_created(req.name + b"/")
        if not resp.kvs:
            raise EtcdError(UNKNOWN, ERR_NO_LEADER)
        out = v3election_pb2.LeaderResponse(kv=resp.kvs[0])
        out.header.CopyFrom(resp.header)
        return out.SerializeToString()

    async def resign(self, data: bytes) -> bytes:
        """Resign: the leader gives up (deletes its key if it still leads)."""
        req = v3election_pb2.ResignRequest.FromString(data)
        if not req.HasField("leader"):
            raise EtcdError(INVALID_ARGUMENT, ERR_MISSING_LEADER_KEY)
        resp = await self._resign(req.leader.key, req.leader.rev)
        out = v3election_pb2.ResignResponse()
        out.header.CopyFrom(resp.header)
        return out.SerializeToString()

    async def observe(self, stream: Stream) -> None:
        """Observe: the leader now, then each new leader or new leader value,
        until the client leaves (noticed even while nothing changes)."""
        follow = asyncio.ensure_future(self._observe(stream))
        gone = asyncio.ensure_future(stream.wait_gone())
        try:
            await asyncio.wait((follow, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            follow.cancel()
        if follow.done() and not follow.cancelled():
            follow.result()

    async def _observe(self, stream: Stream) -> None:
        data = await stream.recv()
        if data is None:
            return
        prefix = decode_stream_message(v3election_pb2.LeaderRequest, data).name + b"/"
        while not stream.closed:
            resp = await self.kv.first_created(prefix)
            if not resp.kvs:
                # Nobody leads: wait for the first candidate.
                async for event in self.kv.watch(
                    prefix, prefix_end(prefix), resp.header.revision + 1
                ):
                    if event.type == kv_pb2.Event.PUT:
                        break
                continue
            leader = resp.kvs[0]
            if not self._send(stream, resp.header, leader):
                return
            # Follow the leader's key: value changes are sent, deletion means
            # the next candidate (if any) leads.
            async for event in self.kv.watch(leader.key, b"", resp.header.revision + 1):
                if event.type == kv_pb2.Event.DELETE:
                    break
                header = rpc_pb2.ResponseHeader(revision=event.kv.mod_revision)
                if not self._send(stream, header, event.kv):
                    return

    @staticmethod
    def _send(stream: Stream, header: rpc_pb2.ResponseHeader, kv: kv_pb2.KeyValue) -> bool:
        out = v3election_pb2.LeaderResponse(kv=kv)
        out.header.CopyFrom(header)
        return stream.send(out.SerializeToString())


def _still_leader(key: bytes, rev: int) -> rpc_pb2.Compare:
    return rpc_pb2.Compare(
        result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.CREATE, key=key, create_revision=rev
    )
