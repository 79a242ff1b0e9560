"""Watch coalescing through etcdcore's proxy: client watchers of one key share
one watcher on the cluster (counted by the cluster itself, in its
etcd_debugging_mvcc_watcher_total), whether they start now or at a revision,
and each still gets every event once, in order, as it asked for them."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from backends import start_member
from watchers import WatchStream, put, puts

from cluster import wait_until
from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from harness import GrpcProxy, Member, metric_value

NOPUT, NODELETE = 0, 1


def cluster_watchers(m: Member) -> float:
    v = metric_value(f"http://{m.endpoint}/metrics", "etcd_debugging_mvcc_watcher_total")
    assert v is not None
    return v


@pytest.fixture(params=["etcdcore", "etcd"])
def setup(request: pytest.FixtureRequest, tmp_path) -> Iterator[tuple[Member, GrpcProxy]]:  # noqa: ANN001
    m = start_member(tmp_path, request.param)
    p = GrpcProxy(endpoints=m.endpoint, log_dir=tmp_path)
    try:
        p.start()
        yield m, p
    finally:
        p.stop()
        m.stop()


def test_thousands_of_watchers_of_one_key_share_one_cluster_watcher(setup) -> None:  # noqa: ANN001
    m, p = setup
    direct = m.channel()
    next_rev = put(direct, b"other", b"x") + 1
    streams = [WatchStream(grpc.insecure_channel(p.endpoint)) for _ in range(10)]
    ids: list[tuple[WatchStream, list[int]]] = []
    for i, s in enumerate(streams):
        # Half from "now", half from an explicit revision.
        kw = {"start_revision": next_rev} if i % 2 else {}
        ids.append((s, [r.watch_id for r in s.create_many(b"config", 200, **kw)]))
    assert cluster_watchers(m) == 1
    revs = puts(direct, b"config", 20)
    for s, wids in ids:
        s.wait_for(lambda s=s, wids=wids: all(len(s.revisions(w)) >= 20 for w in wids), 120)
        for w in wids:
            assert s.revisions(w) == revs
    assert cluster_watchers(m) == 1
    for s, _ in ids:
        s.close()
    wait_until(lambda: cluster_watchers(m) == 0)


def test_a_watcher_from_the_past_catches_up_then_shares_the_cluster_watcher(setup) -> None:  # noqa: ANN001
    m, p = setup
    direct = m.channel()
    first = put(direct, b"k", b"v0")
    live = WatchStream(p.channel())
    live_id = live.create(b"k").watch_id
    revs = [first, *puts(direct, b"k", 5)]
    late = WatchStream(p.channel())
    late_id = late.create(b"k", start_revision=first).watch_id
    late.wait_for(lambda: len(late.revisions(late_id)) >= 6)
    assert late.revisions(late_id) == revs
    # Once caught up it rides the shared watcher: back to one on the cluster.
    wait_until(lambda: cluster_watchers(m) == 1)
    more = puts(direct, b"k", 3)
    late.wait_for(lambda: len(late.revisions(late_id)) >= 9)
    live.wait_for(lambda: len(live.revisions(live_id)) >= 8)
    assert late.revisions(late_id) == revs + more
    assert live.revisions(live_id) == revs[1:] + more


def test_a_watcher_within_the_proxys_recent_events_needs_no_cluster_watcher(setup) -> None:  # noqa: ANN001
    m, p = setup
    direct = m.channel()
    live = WatchStream(p.channel())
    live.create(b"k")
    revs = puts(direct, b"k", 5)
    late = WatchStream(p.channel())
    late_id = late.create(b"k", start_revision=revs[2], prev_kv=True).watch_id
    late.wait_for(lambda: len(late.revisions(late_id)) >= 3)
    assert late.revisions(late_id) == revs[2:]
    assert [e.prev_kv.mod_revision for e in late.events[late_id]] == revs[1:4]
    assert cluster_watchers(m) == 1


def test_cancelling_the_last_watcher_cancels_the_cluster_watcher(setup) -> None:  # noqa: ANN001
    m, p = setup
    s = WatchStream(p.channel())
    ids = [r.watch_id for r in s.create_many(b"k", 50)]
    assert cluster_watchers(m) == 1
    for w in ids[:-1]:
        s.cancel(w)
    s.wait_for(lambda: sum(r.canceled for r in s.responses) == 49)
    assert cluster_watchers(m) == 1
    s.cancel(ids[-1])
    wait_until(lambda: cluster_watchers(m) == 0)
    # The cluster may drop its watcher before the last answer reaches us.
    s.wait_for(lambda: sum(r.canceled for r in s.responses) == 50)
    assert [r.watch_id for r in s.responses if r.canceled] == ids


def test_each_watcher_keeps_its_own_ids_filters_and_prev_kv(setup) -> None:  # noqa: ANN001
    m, p = setup
    direct = m.channel()
    s = WatchStream(p.channel())
    plain = s.create(b"k").watch_id
    with_prev = s.create(b"k", prev_kv=True).watch_id
    no_put = s.create(b"k", filters=[NOPUT]).watch_id
    no_delete = s.create(b"k", filters=[NODELETE], watch_id=100).watch_id
    assert no_delete == 100
    r1 = put(direct, b"k", b"1")
    r2 = put(direct, b"k", b"2")
    deleted = rpc_pb2_grpc.KVStub(direct).DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"k"))
    r3 = deleted.header.revision
    s.wait_for(
        lambda: [len(s.revisions(w)) for w in (plain, with_prev, no_put, no_delete)] == [3, 3, 1, 2]
    )
    assert s.revisions(plain) == [r1, r2, r3]
    assert not any(e.HasField("prev_kv") for e in s.events[plain])
    assert [e.prev_kv.value for e in s.events[with_prev]] == [b"", b"1", b"2"]
    assert s.revisions(no_put) == [r3]
    assert s.revisions(no_delete) == [r1, r2]
    assert cluster_watchers(m) == 1


def test_refusals_use_etcds_words(setup) -> None:  # noqa: ANN001
    _, p = setup
    s = WatchStream(p.channel())
    s.create(b"k", watch_id=7)
    dup = s.create(b"k", watch_id=7)
    assert (dup.watch_id, dup.created, dup.canceled) == (-1, True, True)
    assert dup.cancel_reason == "mvcc: duplicate watch ID provided on the WatchStream"
    empty = s.create(b"b", range_end=b"a")
    assert (empty.watch_id, empty.canceled, empty.cancel_reason) == (
        -1,
        True,
        "mvcc: watcher range is empty",
    )


def test_a_compacted_start_is_answered_as_the_cluster_answers_it(setup) -> None:  # noqa: ANN001
    m, p = setup
    direct = m.channel()
    revs = puts(direct, b"k", 3)
    rpc_pb2_grpc.KVStub(direct).Compact(rpc_pb2.CompactionRequest(revision=revs[-1]))
    s = WatchStream(p.channel())
    created = s.create(b"k", start_revision=revs[0])
    s.wait_for(lambda: any(r.canceled for r in s.responses))
    cancel = next(r for r in s.responses if r.canceled)
    assert created.watch_id == cancel.watch_id == 0
    assert cancel.compact_revision == revs[-1]


def test_progress_request_reports_a_revision_every_watcher_has_passed(setup) -> None:  # noqa: ANN001
    m, p = setup
    direct = m.channel()
    s = WatchStream(p.channel())
    s.create(b"a")
    w = s.create(b"b").watch_id
    rev = put(direct, b"b", b"1")
    s.wait_for(lambda: s.revisions(w) == [rev])
    s.progress()
    s.wait_for(lambda: any(r.watch_id == -1 and not r.created for r in s.responses))
    progress = next(r for r in s.responses if r.watch_id == -1 and not r.created)
    # Every event at or below it was delivered; it does not claim more than
    # the quieter watcher is known to have passed.
    assert not progress.events
    assert progress.header.revision <= rev
    assert progress.header.revision >= 1


def test_a_watcher_from_now_misses_nothing_beside_one_from_a_future_revision(setup) -> None:  # noqa: ANN001
    m, p = setup
    direct = m.channel()
    now = put(direct, b"k", b"0")
    s = WatchStream(p.channel())
    future = s.create(b"k", start_revision=now + 5).watch_id
    current = s.create(b"k").watch_id
    revs = puts(direct, b"k", 6)
    s.wait_for(lambda: len(s.revisions(current)) == 6 and len(s.revisions(future)) == 2)
    assert s.revisions(current) == revs
    assert s.revisions(future) == [r for r in revs if r >= now + 5]
