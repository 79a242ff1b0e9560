"""Response headers, filled exactly as etcd fills them."""

from __future__ import annotations

from etcdcore._core import Core
from etcdcore.proto.etcdserverpb import rpc_pb2


def fill_header(core: Core, header: rpc_pb2.ResponseHeader, *, with_revision: bool = True) -> None:
    """Set cluster_id, member_id, revision and raft_term from the core's state now.

    ``with_revision=False`` leaves the revision 0, as etcd's cluster API does.
    """
    cluster_id, member_id, revision, raft_term = core.header()
    header.cluster_id = cluster_id
    header.member_id = member_id
    if with_revision:
        header.revision = revision
    header.raft_term = raft_term
