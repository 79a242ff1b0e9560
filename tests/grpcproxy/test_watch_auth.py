"""Watch coalescing with auth: users share one cluster watcher, and each is
checked for read permission on the range first (as etcd's proxy checks), so
a shared watcher never shows a user what it may not read."""

from __future__ import annotations

from pathlib import Path

import grpc
from watchers import WatchStream

from etcdcore.client import Client
from harness import GrpcProxy, Member, metric_value

SETUP = [
    ["user", "add", "root:rootpw"],
    ["user", "add", "alice:a"],
    ["user", "add", "bob:b"],
    ["role", "add", "cfg-reader"],
    ["role", "grant-permission", "cfg-reader", "read", "cfg"],
    ["user", "grant-role", "alice", "cfg-reader"],
    ["user", "grant-role", "bob", "cfg-reader"],
    ["auth", "enable"],
]


def stream_as(proxy: GrpcProxy, user: str, password: str) -> WatchStream:
    with Client([proxy.endpoint], user=user, password=password) as c:
        c.get("cfg")  # logs in
        token = c.token or ""
    return WatchStream(grpc.insecure_channel(proxy.endpoint), (("token", token),))


def test_users_share_a_watcher_but_only_on_what_they_may_read(
    tmp_path: Path, member: Member
) -> None:
    p = GrpcProxy(endpoints=member.endpoint, log_dir=tmp_path).start()
    try:
        for args in SETUP:
            p.etcdctl(*args)
        alice = stream_as(p, "alice", "a")
        bob = stream_as(p, "bob", "b")
        a_id = alice.create(b"cfg").watch_id
        b_id = bob.create(b"cfg").watch_id
        refused = bob.create(b"secret")
        assert (refused.watch_id, refused.created, refused.canceled) == (-1, True, True)
        assert refused.cancel_reason == "etcdserver: permission denied"
        on_cluster = metric_value(
            f"http://{member.endpoint}/metrics", "etcd_debugging_mvcc_watcher_total"
        )
        assert on_cluster == 1
        with Client([p.endpoint], user="root", password="rootpw") as root:
            revs = [root.put("cfg", str(i)).revision for i in range(3)]
        alice.wait_for(lambda: alice.revisions(a_id) == revs)
        bob.wait_for(lambda: bob.revisions(b_id) == revs)
    finally:
        p.stop()
