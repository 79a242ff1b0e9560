"""``--experimental-initial-corrupt-check``: before serving, a restarted member
compares the hash of its key space with its peers' at the same revision and
refuses to start when they differ (etcd 3.5's CheckInitialHashKV).

etcd asks its peers over their peer URLs; etcdcore's peer service speaks its
own protocol, so the peers are asked Maintenance.HashKV on their client URLs,
which runs the same hash. The messages and fields are etcd's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import grpc

from etcdcore._core import Core
from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdcore.services.channels import open_channel
from etcdcore.services.leader_client import grpc_target

log = logging.getLogger("etcdcore.server")

#: etcd's ReqTimeout for a 1 s election timeout: 5 s + 2 x election timeout.
REQUEST_TIMEOUT = 7.0
#: How long the member may take to re-apply its own log before the check.
REPLAY_WAIT = 10.0

ERR_FUTURE_REV = "etcdserver: mvcc: required revision is a future revision"
ERR_COMPACTED = "etcdserver: mvcc: required revision has been compacted"


@dataclass(frozen=True)
class LocalHash:
    member_id: str
    revision: int
    compact_revision: int
    hash: int

    def fields(self) -> dict[str, object]:
        return {
            "local-member-id": self.member_id,
            "local-member-revision": self.revision,
            "local-member-compact-revision": self.compact_revision,
            "local-member-hash": self.hash,
        }


class DataInconsistency(Exception):
    """This member's data differ from its peers' (etcd's error text)."""


def _fields(**fields: object) -> dict[str, dict[str, object]]:
    return {"fields": fields}


def wait_for_replay(core: Core, timeout: float = REPLAY_WAIT) -> None:
    """Until the member has re-applied the entries its log says are
    committed (the state etcd's check reads from its backend)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = core.status()
        commit, applied = int(s["raft_index"]), int(s["raft_applied_index"])
        if commit > 0 and applied >= commit:
            return
        time.sleep(0.01)


def local_hash(core: Core) -> LocalHash:
    h, compact, revision = core.hash_kv(0)
    _, member_id, _, _ = core.header()
    # etcd's compactMainRev starts at -1; the core counts from 0.
    return LocalHash(f"{member_id:x}", revision, compact or -1, h)


async def check_initial_hash(
    core: Core,
    election_timeout_ms: int,
    credentials: grpc.ChannelCredentials | None,
) -> None:
    """Raise :class:`DataInconsistency` when a peer's hash at this member's
    revision differs from ours while both share the compaction revision."""
    _, member_id, _, _ = core.header()
    timeout = 5.0 + 2 * election_timeout_ms / 1000.0
    log.info(
        "starting initial corruption check",
        extra=_fields(**{"local-member-id": f"{member_id:x}", "timeout": f"{timeout:g}s"}),
    )
    await asyncio.get_running_loop().run_in_executor(None, wait_for_replay, core)
    local = local_hash(core)
    mismatches = 0
    for peer_id, _name, _peers, client_urls, _learner in core.members():
        if peer_id == member_id or not client_urls:
            continue
        answer = await _peer_hash(local, f"{peer_id:x}", client_urls, credentials, timeout)
        if answer is None:
            continue
        fields = {
            **local.fields(),
            "remote-peer-id": f"{answer.header.member_id:x}",
            "remote-peer-endpoints": client_urls,
            "remote-peer-revision": answer.header.revision,
            "remote-peer-compact-revision": answer.compact_revision,
            "remote-peer-hash": answer.hash,
        }
        if answer.hash == local.hash:
            continue
        if answer.compact_revision == local.compact_revision:
            log.warning("found different hash values from remote peer", extra=_fields(**fields))
            mismatches += 1
        else:
            log.warning(
                "found different compact revision values from remote peer",
                extra=_fields(**fields),
            )
    if mismatches:
        raise DataInconsistency(f"{local.member_id} found data inconsistency with peers")
    log.info(
        "initial corruption checking passed; no corruption",
        extra=_fields(**{"local-member-id": local.member_id}),
    )


async def _peer_hash(
    local: LocalHash,
    peer_id: str,
    urls: list[str],
    credentials: grpc.ChannelCredentials | None,
    timeout: float,
) -> rpc_pb2.HashKVResponse | None:
    """The peer's HashKV at our revision from the first URL that answers;
    None (after etcd's warnings) when none does."""
    for url in urls:
        secure = url.startswith("https://")
        creds = (credentials or grpc.ssl_channel_credentials()) if secure else None
        channel = open_channel(grpc_target(url), creds)
        try:
            return await rpc_pb2_grpc.MaintenanceStub(channel).HashKV(
                rpc_pb2.HashKVRequest(revision=local.revision), timeout=timeout
            )
        except grpc.aio.AioRpcError as e:
            details = e.details() or ""
            peer = {"remote-peer-id": peer_id, "remote-peer-endpoints": urls, "error": details}
            if details == ERR_FUTURE_REV:
                log.warning(
                    "cannot fetch hash from slow remote peer",
                    extra=_fields(**local.fields(), **peer),
                )
                return None
            if details == ERR_COMPACTED:
                log.warning(
                    "cannot fetch hash from remote peer; local member is behind",
                    extra=_fields(**local.fields(), **peer),
                )
                return None
            log.warning(
                "failed hash kv request",
                extra=_fields(
                    **{
                        "local-member-id": local.member_id,
                        "requested-revision": local.revision,
                        "remote-peer-endpoint": url,
                        "error": details or e.code().name,
                    }
                ),
            )
        finally:
            await channel.close()
    return None
