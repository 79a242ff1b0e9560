"""The Maintenance service: status, alarms, hashes, snapshot, defragment, move-leader.

Answers are shaped as etcd 3.5.1 shapes them (api/v3rpc/maintenance.go, checked
against a running etcd 3.5.1):

- ``Status``: ``errors`` holds "etcdserver: no leader" when there is none, then
  one ``"memberID:<id> alarm:<TYPE> "`` per raised alarm (gogoproto's compact
  text, trailing space included).
- ``Alarm``: goes through Raft like etcd; the alarm store's rules (an alarm is
  a (memberID, type) pair, member 0 included; GET filters by type only;
  ACTIVATE of NONE and DEACTIVATE of an unraised pair change nothing) are the
  core's (``rust/src/alarms.rs``). An unknown action, or ACTIVATE of an unknown
  type, panics etcd 3.5.1's applier; here it is refused before it is proposed.
- ``HashKV``: etcd 3.5's hash, bit for bit: the core computes etcd's CRC-32C
  over the same bytes etcd's key bucket holds (``rust/src/mvcc/hash.rs``), so
  the same history hashes alike on etcdcore and etcd
  (``tests/integration/test_hashkv_parity.py`` checks it against etcd 3.5.1).
  Header revision is the current revision; ``compact_revision`` is -1 before
  the first compaction; a revision at or below it, or past the current one,
  fails with etcd's OutOfRange texts (from the core).
- ``Hash``: etcd hashes its whole bbolt file, which etcdcore does not have;
  here it is the HashKV hash at the current revision (equal across etcdcore
  members, not equal to etcd's Hash).
- ``Snapshot`` is served by the core itself (rust/src/server/snapshot.rs): the
  backend streamed from one read transaction, never through Python.
- ``Defragment`` and ``MoveLeader`` answer an empty response (no header), as
  etcd does. Defragment rewrites the backend file without the space compaction
  freed: ``dbSize`` (the file's size, which the quota is checked against)
  drops to about ``dbSizeInUse``.
- ``Downgrade``: Unimplemented for now.
"""

from __future__ import annotations

import asyncio
import logging

from etcdcore import ETCD_VERSION
from etcdcore._core import Core
from etcdcore.bridge import (
    INVALID_ARGUMENT,
    UNIMPLEMENTED,
    Bridge,
    EtcdError,
)
from etcdcore.proto.etcdserverpb import rpc_pb2
from etcdcore.services.header import fill_header

log = logging.getLogger("etcdcore.maintenance")

SERVICE = "/etcdserverpb.Maintenance/"

ERR_NO_LEADER = "etcdserver: no leader"
ERR_DOWNGRADE = "etcdserver: downgrade is not supported by etcdcore yet"
ERR_ALARM_ACTION = "etcdserver: unknown alarm action"
ERR_ALARM_TYPE = "etcdserver: unknown alarm type"

GET, ACTIVATE, DEACTIVATE = (
    rpc_pb2.AlarmRequest.GET,
    rpc_pb2.AlarmRequest.ACTIVATE,
    rpc_pb2.AlarmRequest.DEACTIVATE,
)
#: The alarm types etcd 3.5 knows (NONE included: activating it is a no-op).
ALARM_TYPES = frozenset(rpc_pb2.AlarmType.values())


def alarm_text(member_id: int, alarm: int) -> str:
    """An AlarmMember as etcd's Status lists it (gogoproto compact text)."""
    try:
        name = rpc_pb2.AlarmType.Name(rpc_pb2.AlarmType.ValueType(alarm))
    except ValueError:
        name = str(alarm)
    return f"memberID:{member_id} alarm:{name} "


class MaintenanceService:
    """etcdserverpb.Maintenance over the bridge."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def register(self, bridge: Bridge) -> None:
        """Bind every Maintenance method."""
        bridge.unary(SERVICE + "Status", self.status)
        bridge.unary(SERVICE + "Alarm", self.alarm)
        bridge.unary(SERVICE + "Hash", self.hash)
        bridge.unary(SERVICE + "HashKV", self.hash_kv)
        bridge.unary(SERVICE + "Defragment", self.defragment)
        bridge.unary(SERVICE + "MoveLeader", self.move_leader)
        bridge.unary(SERVICE + "Downgrade", self.downgrade)

    async def status(self, data: bytes) -> bytes:
        """Status: version, sizes, raft state and alarm errors of this member."""
        rpc_pb2.StatusRequest.FromString(data)
        resp = rpc_pb2.StatusResponse()
        fill_header(self.core, resp.header)
        s = self.core.status()
        resp.version = ETCD_VERSION
        resp.dbSize = int(s["db_size"])
        resp.dbSizeInUse = int(s["db_size_in_use"])
        resp.leader = int(s["leader"])
        resp.raftIndex = int(s["raft_index"])
        resp.raftTerm = int(s["raft_term"])
        resp.raftAppliedIndex = int(s["raft_applied_index"])
        resp.isLearner = bool(s["is_learner"])
        if resp.leader == 0:
            resp.errors.append(ERR_NO_LEADER)
        resp.errors.extend(alarm_text(m, a) for m, a in self.core.alarms())
        return resp.SerializeToString()

    async def alarm(self, data: bytes) -> bytes:
        """Alarm: GET / ACTIVATE / DEACTIVATE, applied through Raft."""
        req = rpc_pb2.AlarmRequest.FromString(data)
        if req.action not in (GET, ACTIVATE, DEACTIVATE):
            raise EtcdError(INVALID_ARGUMENT, f"{ERR_ALARM_ACTION} {req.action}")
        if req.action == ACTIVATE and req.alarm not in ALARM_TYPES:
            raise EtcdError(INVALID_ARGUMENT, f"{ERR_ALARM_TYPE} {req.alarm}")
        loop = asyncio.get_running_loop()
        alarms = await loop.run_in_executor(
            None, self.core.alarm, req.action, req.memberID, req.alarm
        )
        resp = rpc_pb2.AlarmResponse(
            alarms=[
                rpc_pb2.AlarmMember(memberID=m, alarm=rpc_pb2.AlarmType.ValueType(a))
                for m, a in alarms
            ]
        )
        fill_header(self.core, resp.header)
        return resp.SerializeToString()

    async def hash(self, data: bytes) -> bytes:
        """Hash: the HashKV hash at the current revision (etcd's is its bolt file's)."""
        rpc_pb2.HashRequest.FromString(data)
        h, _compact, revision = self.core.hash_kv(0)
        resp = rpc_pb2.HashResponse(hash=h)
        fill_header(self.core, resp.header)
        resp.header.revision = revision
        return resp.SerializeToString()

    async def hash_kv(self, data: bytes) -> bytes:
        """HashKV: the MVCC hash up to ``revision`` (0 = current)."""
        req = rpc_pb2.HashKVRequest.FromString(data)
        h, compact_revision, _hash_revision = self.core.hash_kv(req.revision)
        resp = rpc_pb2.HashKVResponse(hash=h, compact_revision=compact_revision)
        fill_header(self.core, resp.header)
        return resp.SerializeToString()

    async def defragment(self, data: bytes) -> bytes:
        """Defragment: rewrites the backend file without the space compaction
        freed; answers like etcd, without a header."""
        rpc_pb2.DefragmentRequest.FromString(data)
        log.info("starting defragment")
        loop = asyncio.get_running_loop()
        before, after = await loop.run_in_executor(None, self.core.defragment)
        log.info(
            "finished defragment",
            extra={
                "fields": {
                    "current-db-size-bytes-diff": after - before,
                    "current-db-size-bytes": after,
                }
            },
        )
        return rpc_pb2.DefragmentResponse().SerializeToString()

    async def move_leader(self, data: bytes) -> bytes:
        """MoveLeader: this member must lead; the target must be a voting member.
        Answers once the target leads (empty response, no header, as etcd)."""
        req = rpc_pb2.MoveLeaderRequest.FromString(data)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.core.move_leader, req.targetID)
        return rpc_pb2.MoveLeaderResponse().SerializeToString()

    async def downgrade(self, data: bytes) -> bytes:
        """Downgrade: not supported yet."""
        rpc_pb2.DowngradeRequest.FromString(data)
        raise EtcdError(UNIMPLEMENTED, ERR_DOWNGRADE)
