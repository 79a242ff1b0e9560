"""The Maintenance service: status, alarms, hashes, snapshot, defragment."""

from __future__ import annotations

import asyncio

from etcdcore import ETCD_VERSION
from etcdcore._core import Core
from etcdcore.bridge import FAILED_PRECONDITION, UNIMPLEMENTED, Bridge, EtcdError, Stream
from etcdcore.proto.etcdserverpb import rpc_pb2
from etcdcore.services.header import fill_header

SERVICE = "/etcdserverpb.Maintenance/"
SNAPSHOT_CHUNK = 32 * 1024
ERR_BAD_TRANSFEREE = "etcdserver: bad leader transferee"

# What Status.errors says per raised alarm, as etcd words it.
ALARM_ERRORS = {
    rpc_pb2.NOSPACE: "memberID:{member:d} alarm:NOSPACE ",
    rpc_pb2.CORRUPT: "memberID:{member:d} alarm:CORRUPT ",
}


class MaintenanceService:
    """etcdserverpb.Maintenance over the bridge."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def register(self, bridge: Bridge) -> None:
        for name in ("Status", "Alarm", "Hash", "HashKV", "Defragment", "MoveLeader", "Downgrade"):
            bridge.unary(SERVICE + name, getattr(self, name.lower()))
        bridge.streaming(SERVICE + "Snapshot", self.snapshot)

    async def status(self, _data: bytes) -> bytes:
        s = self.core.status()
        resp = rpc_pb2.StatusResponse(
            version=ETCD_VERSION,
            dbSize=int(s["db_size"]),
            leader=int(s["leader"]),
            raftIndex=int(s["raft_index"]),
            raftTerm=int(s["raft_term"]),
            raftAppliedIndex=int(s["raft_applied_index"]),
            dbSizeInUse=int(s["db_size_in_use"]),
            isLearner=bool(s["is_learner"]),
            errors=[
                ALARM_ERRORS[alarm].format(member=member)
                for member, alarm in self.core.alarms()
                if alarm in ALARM_ERRORS
            ],
        )
        fill_header(self.core, resp.header)
        return resp.SerializeToString()

    async def alarm(self, data: bytes) -> bytes:
        req = rpc_pb2.AlarmRequest.FromString(data)
        if req.action == rpc_pb2.AlarmRequest.GET:
            alarms = [
                (m, a)
                for m, a in self.core.alarms()
                if req.alarm in (rpc_pb2.NONE, a) and req.memberID in (0, m)
            ]
        else:
            loop = asyncio.get_running_loop()
            alarms = await loop.run_in_executor(
                None, self.core.alarm, req.action, req.memberID, req.alarm
            )
        resp = rpc_pb2.AlarmResponse(
            alarms=[rpc_pb2.AlarmMember(memberID=m, alarm=a) for m, a in alarms]
        )
        fill_header(self.core, resp.header)
        return resp.SerializeToString()

    async def hash(self, _data: bytes) -> bytes:
        resp = rpc_pb2.HashResponse(hash=self.core.hash_kv(0)[0])
        fill_header(self.core, resp.header)
        return resp.SerializeToString()

    async def hashkv(self, data: bytes) -> bytes:
        req = rpc_pb2.HashKVRequest.FromString(data)
        h, compact_revision, hash_revision = self.core.hash_kv(req.revision)
        resp = rpc_pb2.HashKVResponse(hash=h, compact_revision=compact_revision)
        fill_header(self.core, resp.header)
        resp.header.revision = hash_revision
        return resp.SerializeToString()

    async def defragment(self, _data: bytes) -> bytes:
        # The store is in memory: compaction already returned what it freed.
        resp = rpc_pb2.DefragmentResponse()
        fill_header(self.core, resp.header)
        return resp.SerializeToString()

    async def moveleader(self, data: bytes) -> bytes:
        req = rpc_pb2.MoveLeaderRequest.FromString(data)
        member_ids = {m[0] for m in self.core.members()}
        if req.targetID not in member_ids:
            raise EtcdError(FAILED_PRECONDITION, ERR_BAD_TRANSFEREE)
        if req.targetID != self.core.header()[1]:
            raise EtcdError(UNIMPLEMENTED, "etcdserver: move-leader arrives with clustering")
        resp = rpc_pb2.MoveLeaderResponse()
        fill_header(self.core, resp.header)
        return resp.SerializeToString()

    async def downgrade(self, _data: bytes) -> bytes:
        raise EtcdError(UNIMPLEMENTED, "etcdserver: downgrade is not supported")

    async def snapshot(self, stream: Stream) -> None:
        if await stream.recv() is None:
            return
        blob = self.core.snapshot()
        total = len(blob)
        for start in range(0, max(total, 1), SNAPSHOT_CHUNK):
            chunk = blob[start : start + SNAPSHOT_CHUNK]
            resp = rpc_pb2.SnapshotResponse(remaining_bytes=total - start - len(chunk), blob=chunk)
            fill_header(self.core, resp.header)
            if not stream.send(resp.SerializeToString()):
                return
