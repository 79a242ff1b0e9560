"""Beyond the walkthrough: txn, history, output formats, endpoint and member
commands, and etcd's error texts, all through the real etcdctl 3.5."""

from __future__ import annotations

import json
import time

from harness import Member


def out(m: Member, *args: str, input: str | None = None) -> str:
    return m.etcdctl(*args, input=input).stdout


def test_txn_takes_success_branch_when_compare_holds(member: Member) -> None:
    member.etcdctl("put", "k", "v1")
    script = 'value("k") = "v1"\n\nput k v2\nput other x\n\n\n'
    assert out(member, "txn", input=script) == "SUCCESS\n\nOK\n\nOK\n"
    assert out(member, "get", "k", "--print-value-only") == "v2\n"


def test_txn_takes_failure_branch_when_compare_fails(member: Member) -> None:
    member.etcdctl("put", "k", "v1")
    script = 'value("k") = "nope"\n\nput k v2\n\nget k\n\n'
    assert out(member, "txn", input=script) == "FAILURE\n\nk\nv1\n"


def test_get_at_old_revision_sees_old_value(member: Member) -> None:
    member.etcdctl("put", "k", "old")
    rev = json.loads(out(member, "get", "k", "-w", "json"))["header"]["revision"]
    member.etcdctl("put", "k", "new")
    assert out(member, "get", "k", f"--rev={rev}", "--print-value-only") == "old\n"


def test_json_output_has_header_and_base64_kvs(member: Member) -> None:
    member.etcdctl("put", "k", "v")
    doc = json.loads(out(member, "get", "k", "-w", "json"))
    header = doc["header"]
    assert header["cluster_id"] > 0 and header["member_id"] > 0
    assert header["revision"] == 2 and header["raft_term"] >= 1
    kv = doc["kvs"][0]
    assert (kv["key"], kv["value"]) == ("aw==", "dg==")
    assert (kv["create_revision"], kv["mod_revision"], kv["version"]) == (2, 2, 1)
    assert doc["count"] == 1


def test_fields_output(member: Member) -> None:
    member.etcdctl("put", "k", "v")
    text = out(member, "get", "k", "-w", "fields")
    assert '"Key" : "k"' in text and '"Value" : "v"' in text and '"Version" : 1' in text


def test_empty_server_reports_revision_one(member: Member) -> None:
    doc = json.loads(out(member, "get", "nothing", "-w", "json"))
    assert doc["header"]["revision"] == 1
    assert "kvs" not in doc


def test_endpoint_health(member: Member) -> None:
    text = out(member, "endpoint", "health")
    assert text.startswith(
        f"{member.endpoint} is healthy: successfully committed proposal: took = "
    )


def test_endpoint_status_table(member: Member) -> None:
    member.etcdctl("put", "k", "v")
    text = out(member, "endpoint", "status", "-w", "table")
    assert "ENDPOINT" in text and "IS LEADER" in text
    row = next(line for line in text.splitlines() if member.endpoint in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == member.endpoint
    assert cells[2] == "3.5.1"  # version
    assert cells[4] == "true"  # is leader
    assert cells[5] == "false"  # is learner


def test_endpoint_status_json_counts_raft_index(member: Member) -> None:
    doc = json.loads(out(member, "endpoint", "status", "-w", "json"))[0]
    status = doc["Status"]
    assert status["leader"] == status["header"]["member_id"]
    assert status["raftIndex"] >= 1 and status["raftTerm"] >= 1


def test_member_list(member: Member) -> None:
    text = out(member, "member", "list")
    fields = [f.strip() for f in text.strip().split(",")]
    assert fields[1:] == [
        "started",
        "default",
        f"http://127.0.0.1:{member.peer_port}",
        f"http://127.0.0.1:{member.client_port}",
        "false",
    ]


def test_compaction_then_old_revision_read_is_refused(member: Member) -> None:
    for i in range(3):
        member.etcdctl("put", "k", f"v{i}")
    assert out(member, "compaction", "3") == "compacted revision 3\n"
    proc = member.etcdctl("get", "k", "--rev=2", check=False)
    assert proc.returncode != 0
    assert "etcdserver: mvcc: required revision has been compacted" in proc.stderr


def test_future_revision_is_refused(member: Member) -> None:
    proc = member.etcdctl("get", "k", "--rev=100", check=False)
    assert proc.returncode != 0
    assert "etcdserver: mvcc: required revision is a future revision" in proc.stderr


def test_put_with_unknown_lease_is_refused(member: Member) -> None:
    proc = member.etcdctl("put", "k", "v", "--lease=1234", check=False)
    assert proc.returncode != 0
    assert "etcdserver: requested lease not found" in proc.stderr


def test_watch_from_old_revision_replays_history(member: Member) -> None:
    member.etcdctl("put", "w", "1")
    member.etcdctl("put", "w", "2")
    w = member.etcdctl_popen("watch", "w", "--rev=2")
    try:
        lines = [w.stdout.readline().rstrip("\n") for _ in range(6)]
        assert lines == ["PUT", "w", "1", "PUT", "w", "2"]
    finally:
        w.kill()


def test_watch_of_compacted_revision_is_canceled(member: Member) -> None:
    for i in range(3):
        member.etcdctl("put", "w", str(i))
    member.etcdctl("compaction", "3")
    w = member.etcdctl_popen("watch", "w", "--rev=2")
    try:
        deadline = time.monotonic() + 10
        err = ""
        while time.monotonic() < deadline and w.poll() is None:
            time.sleep(0.1)
        if w.poll() is None:
            w.kill()
        err = w.stderr.read() + w.stdout.read()
        assert "etcdserver: mvcc: required revision has been compacted" in err
    finally:
        w.kill()


def test_watch_prev_kv(member: Member) -> None:
    member.etcdctl("put", "p", "old")
    w = member.etcdctl_popen("watch", "p", "--prev-kv")
    try:
        time.sleep(0.7)
        member.etcdctl("put", "p", "new")
        lines = [w.stdout.readline().rstrip("\n") for _ in range(5)]
        assert lines == ["PUT", "p", "old", "p", "new"]
    finally:
        w.kill()


def test_lease_list(member: Member) -> None:
    lease = out(member, "lease", "grant", "100").split()[1]
    text = out(member, "lease", "list")
    assert text == f"found 1 leases\n{lease}\n"
