"""Maintenance.Alarm against the real etcd 3.5.1: every (action, memberID, alarm
type) request answers and leaves the same alarms on etcdcore as on etcd, and a
raised CORRUPT alarm refuses the same requests with the same error.

Both servers run side by side for the module; before each test every alarm is
cleared on both, and each scenario is replayed on both and the answers compared.
Member ids differ between the two servers, so each server's own id is written
``SELF`` in what is compared.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from etcdcore.client import Client
from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from harness import Member, etcd_bin

pytestmark = pytest.mark.timeout(120)

GET, ACTIVATE, DEACTIVATE = (
    rpc_pb2.AlarmRequest.GET,
    rpc_pb2.AlarmRequest.ACTIVATE,
    rpc_pb2.AlarmRequest.DEACTIVATE,
)
NONE, NOSPACE, CORRUPT = rpc_pb2.NONE, rpc_pb2.NOSPACE, rpc_pb2.CORRUPT
#: A type etcd 3.5 does not know: GET and DEACTIVATE of it are harmless there.
UNKNOWN_TYPE = 9
SELF = "SELF"
#: A member id that is neither 0 nor the server's own.
OTHER = 42
#: What is raised before each grid request: a bit of everything.
PRESET = [(0, NOSPACE), (SELF, CORRUPT), (OTHER, NOSPACE)]


class Server:
    """One member and its Maintenance stub; answers are normalized for comparing."""

    def __init__(self, member: Member) -> None:
        self.member = member
        self.channel = member.channel()
        self.maintenance = rpc_pb2_grpc.MaintenanceStub(self.channel)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.lease = rpc_pb2_grpc.LeaseStub(self.channel)
        self.id = self.maintenance.Status(rpc_pb2.StatusRequest(), timeout=10).header.member_id

    def member_id(self, member: int | str) -> int:
        return self.id if member == SELF else int(member)

    def alarm(self, action: int, member: int | str, alarm: int) -> list[tuple[int | str, int]]:
        """The alarms an Alarm request answers, sorted (etcd answers in map order)."""
        req = rpc_pb2.AlarmRequest(action=action, memberID=self.member_id(member), alarm=alarm)
        resp = self.maintenance.Alarm(req, timeout=10)
        return sorted(
            (((SELF if a.memberID == self.id else a.memberID), a.alarm) for a in resp.alarms),
            key=str,
        )

    def raised(self) -> list[tuple[int | str, int]]:
        return self.alarm(GET, 0, NONE)

    def clear(self) -> None:
        for member, alarm in self.raised():
            self.alarm(DEACTIVATE, member, alarm)
        assert self.raised() == []


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    """(etcdcore, etcd 3.5.1), one each for the module."""
    base: Path = tmp_path_factory.mktemp("alarms")
    ours = Member(data_dir=base / "etcdcore.etcd")
    theirs = Member(data_dir=base / "etcd.etcd", command=[etcd_bin("etcd")])
    try:
        ours.start()
        theirs.start()
        yield Server(ours), Server(theirs)
    finally:
        ours.stop()
        theirs.stop()


@pytest.fixture
def pair(servers: tuple[Server, Server]) -> tuple[Server, Server]:
    for s in servers:
        s.clear()
    return servers


def both(pair: tuple[Server, Server], scenario: Callable[[Server], object]) -> object:
    """Runs ``scenario`` on both servers, asserts equal results, returns ours."""
    ours, theirs = (scenario(s) for s in pair)
    assert ours == theirs
    return ours


def name(value: int, names: dict[int, str]) -> str:
    return names.get(value, str(value))


GRID = [
    (action, member, alarm)
    for action, member, alarm in itertools.product(
        (GET, ACTIVATE, DEACTIVATE), (0, SELF, OTHER), (NONE, NOSPACE, CORRUPT, UNKNOWN_TYPE)
    )
    # Activating a type etcd 3.5.1 does not know panics its applier.
    if not (action == ACTIVATE and alarm == UNKNOWN_TYPE)
]
ACTIONS = {GET: "GET", ACTIVATE: "ACTIVATE", DEACTIVATE: "DEACTIVATE"}
TYPES = {NONE: "NONE", NOSPACE: "NOSPACE", CORRUPT: "CORRUPT"}


@pytest.mark.parametrize(
    ("action", "member", "alarm"),
    GRID,
    ids=[f"{ACTIONS[a]}-member{m}-{name(t, TYPES)}" for a, m, t in GRID],
)
def test_alarm_request_answers_and_leaves_what_etcd_does(
    pair: tuple[Server, Server], action: int, member: int | str, alarm: int
) -> None:
    def scenario(s: Server) -> tuple[object, object]:
        for preset in PRESET:
            s.alarm(ACTIVATE, *preset)
        return s.alarm(action, member, alarm), s.raised()

    both(pair, scenario)


def test_deactivating_member_zero_clears_what_activating_member_zero_raised(
    pair: tuple[Server, Server],
) -> None:
    def scenario(s: Server) -> tuple[object, ...]:
        return (
            s.alarm(ACTIVATE, 0, NOSPACE),
            s.alarm(DEACTIVATE, 0, NOSPACE),
            s.raised(),
        )

    assert both(pair, scenario) == ([(0, NOSPACE)], [(0, NOSPACE)], [])


def test_client_disarm_after_member_zero_alarm_lists_nothing(
    pair: tuple[Server, Server],
) -> None:
    """The user's view: an alarm raised for member 0 is listed, then disarmed by
    the client library's disarm-everything, as with etcd."""
    for s in pair:
        s.alarm(ACTIVATE, 0, NOSPACE)
        with Client([s.member.endpoint]) as c:
            assert [(a.member_id, a.type) for a in c.alarm_list()] == [(0, "NOSPACE")]
            c.alarm_disarm()
            assert c.alarm_list() == []


def test_etcdctl_alarm_disarm_clears_a_member_zero_alarm(pair: tuple[Server, Server]) -> None:
    def scenario(s: Server) -> tuple[str, str, str]:
        s.alarm(ACTIVATE, 0, CORRUPT)
        listed = s.member.etcdctl("alarm", "list").stdout
        disarmed = s.member.etcdctl("alarm", "disarm").stdout
        return listed, disarmed, s.member.etcdctl("alarm", "list").stdout

    # gogoproto's compact text leaves out the zero memberID.
    assert both(pair, scenario) == ("alarm:CORRUPT \n",) * 2 + ("",)


def outcome(call: Callable[[], object]) -> str:
    try:
        call()
        return "ok"
    except grpc.RpcError as e:
        return f"{e.code().name}: {e.details()}"


def requests(s: Server) -> dict[str, Callable[[], object]]:
    """One of each request a raised alarm may refuse, by name."""
    delete = rpc_pb2.DeleteRangeRequest(key=b"gone")
    read = rpc_pb2.RangeRequest(key=b"k")
    return {
        "put": lambda: s.kv.Put(rpc_pb2.PutRequest(key=b"k", value=b"v"), timeout=10),
        "range": lambda: s.kv.Range(read, timeout=10),
        "delete": lambda: s.kv.DeleteRange(delete, timeout=10),
        "txn read": lambda: s.kv.Txn(
            rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(request_range=read)]), timeout=10
        ),
        "txn delete": lambda: s.kv.Txn(
            rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(request_delete_range=delete)]),
            timeout=10,
        ),
        "compact": lambda: s.kv.Compact(rpc_pb2.CompactionRequest(revision=1), timeout=10),
        "lease grant": lambda: s.lease.LeaseGrant(
            rpc_pb2.LeaseGrantRequest(ID=77, TTL=600), timeout=10
        ),
        "lease time-to-live": lambda: s.lease.LeaseTimeToLive(
            rpc_pb2.LeaseTimeToLiveRequest(ID=76), timeout=10
        ),
        "lease revoke": lambda: s.lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=76), timeout=10),
    }


def test_raised_corrupt_alarm_refuses_the_requests_etcd_refuses(
    pair: tuple[Server, Server],
) -> None:
    def scenario(s: Server) -> dict[str, str]:
        # Lease 76 exists (for the revoke and time-to-live), lease 77 does not.
        outcome(lambda: s.lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=76), timeout=10))
        s.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(ID=76, TTL=600), timeout=10)
        s.alarm(ACTIVATE, SELF, CORRUPT)
        return {what: outcome(call) for what, call in requests(s).items()}

    answers = both(pair, scenario)
    assert answers["put"] == "DATA_LOSS: etcdserver: corrupt cluster"
    assert answers["range"] == "ok"


def test_disarming_corrupt_serves_writes_again(pair: tuple[Server, Server]) -> None:
    def scenario(s: Server) -> tuple[str, str]:
        s.alarm(ACTIVATE, OTHER, CORRUPT)
        put = requests(s)["put"]
        refused = outcome(put)
        s.alarm(DEACTIVATE, OTHER, CORRUPT)
        return refused, outcome(put)

    assert both(pair, scenario) == ("DATA_LOSS: etcdserver: corrupt cluster", "ok")


@pytest.mark.parametrize(
    ("action", "alarm", "message"),
    [
        (7, NOSPACE, "etcdserver: unknown alarm action 7"),
        (ACTIVATE, UNKNOWN_TYPE, "etcdserver: unknown alarm type 9"),
    ],
    ids=["unknown-action", "activate-unknown-type"],
)
def test_alarm_request_that_panics_etcd_is_refused_and_the_member_serves_on(
    pair: tuple[Server, Server], action: int, alarm: int, message: str
) -> None:
    ours = pair[0]
    with pytest.raises(grpc.RpcError) as refused:
        ours.alarm(action, SELF, alarm)
    assert (refused.value.code(), refused.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        message,
    )
    assert ours.raised() == []
    assert outcome(requests(ours)["put"]) == "ok"
