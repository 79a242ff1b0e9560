"""The seed walkthrough (../shared/seed-etcd-guide.txt), command by command, with
the real etcdctl 3.5 against a real etcdcore process: same commands, same output."""

from __future__ import annotations

import re
import time

from harness import Member


def out(m: Member, *args: str) -> str:
    return m.etcdctl(*args).stdout


def test_put_prints_ok_and_get_prints_key_and_value(member: Member) -> None:
    assert out(member, "put", "/test/foo", "hello etcd") == "OK\n"
    assert out(member, "get", "/test/foo") == "/test/foo\nhello etcd\n"


def test_get_print_value_only(member: Member) -> None:
    member.etcdctl("put", "foo", "bar")
    assert out(member, "get", "foo", "--print-value-only") == "bar\n"


def seed_foos(m: Member) -> None:
    for k, v in [("foo", "bar"), ("foo1", "bar1"), ("foo2", "bar2"), ("foo3", "bar3")]:
        assert out(m, "put", k, v) == "OK\n"


def test_get_range_excludes_range_end(member: Member) -> None:
    seed_foos(member)
    assert out(member, "get", "foo", "foo3", "--print-value-only") == "bar\nbar1\nbar2\n"


def test_get_prefix(member: Member) -> None:
    seed_foos(member)
    assert out(member, "get", "--prefix", "foo", "--print-value-only") == "bar\nbar1\nbar2\nbar3\n"


def test_get_prefix_with_limit(member: Member) -> None:
    seed_foos(member)
    assert out(member, "get", "--prefix", "--limit=2", "foo", "--print-value-only") == "bar\nbar1\n"


def test_del_single_range_and_prefix_print_counts(member: Member) -> None:
    seed_foos(member)
    assert out(member, "del", "foo") == "1\n"
    assert out(member, "del", "foo", "foo2") == "1\n"
    assert out(member, "del", "--prefix", "foo") == "2\n"
    assert out(member, "get", "--prefix", "foo") == ""


def read_lines(proc, n: int, timeout: float = 10.0) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while len(lines) < n and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            lines.append(line.rstrip("\n"))
    return lines


def start_watch(m: Member, *args: str):
    proc = m.etcdctl_popen("watch", *args)
    # etcdctl prints nothing on create; give the watch a moment to register.
    time.sleep(0.7)
    return proc


def test_watch_key_sees_put(member: Member) -> None:
    w = start_watch(member, "foo")
    try:
        member.etcdctl("put", "foo", "bar")
        assert read_lines(w, 3) == ["PUT", "foo", "bar"]
    finally:
        w.kill()


def test_watch_interactive_watches_several_keys(member: Member) -> None:
    w = member.etcdctl_popen("watch", "-i")
    try:
        w.stdin.write("watch foo\n")
        w.stdin.write("watch zoo\n")
        w.stdin.flush()
        time.sleep(0.7)
        member.etcdctl("put", "foo", "bar")
        assert read_lines(w, 3) == ["PUT", "foo", "bar"]
        member.etcdctl("put", "zoo", "val")
        assert read_lines(w, 3) == ["PUT", "zoo", "val"]
    finally:
        w.kill()


def test_watch_prefix(member: Member) -> None:
    w = start_watch(member, "--prefix", "foo")
    try:
        member.etcdctl("put", "foo1", "bar1")
        assert read_lines(w, 3) == ["PUT", "foo1", "bar1"]
        member.etcdctl("put", "fooz1", "barz1")
        assert read_lines(w, 3) == ["PUT", "fooz1", "barz1"]
    finally:
        w.kill()


GRANTED = re.compile(r"^lease ([0-9a-f]+) granted with TTL\((\d+)s\)\n$")


def grant(m: Member, ttl: int) -> str:
    text = out(m, "lease", "grant", str(ttl))
    match = GRANTED.match(text)
    assert match, text
    assert match.group(2) == str(ttl)
    return match.group(1)


def test_lease_grant_put_with_lease_and_get(member: Member) -> None:
    lease = grant(member, 60)
    assert out(member, "put", f"--lease={lease}", "foo", "bar") == "OK\n"
    assert out(member, "get", "foo") == "foo\nbar\n"


def test_key_disappears_when_its_lease_expires(member: Member) -> None:
    lease = grant(member, 2)
    member.etcdctl("put", f"--lease={lease}", "foo", "bar")
    deadline = time.monotonic() + 10
    while out(member, "get", "foo") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert out(member, "get", "foo") == ""


def test_lease_revoke_deletes_attached_keys(member: Member) -> None:
    lease = grant(member, 60)
    member.etcdctl("put", "foo", "bar", f"--lease={lease}")
    assert out(member, "lease", "revoke", lease) == f"lease {lease} revoked\n"
    assert out(member, "get", "foo") == ""


def test_lease_keep_alive_prints_ttl_each_renewal(member: Member) -> None:
    lease = grant(member, 60)
    ka = member.etcdctl_popen("lease", "keep-alive", lease)
    try:
        lines = read_lines(ka, 1)
        assert lines == [f"lease {lease} keepalived with TTL(60)"]
    finally:
        ka.kill()


def test_keep_alive_ends_when_lease_is_revoked(member: Member) -> None:
    lease = grant(member, 60)
    member.etcdctl("put", "zoo1", "val1", f"--lease={lease}")
    ka = member.etcdctl_popen("lease", "keep-alive", lease)
    try:
        assert read_lines(ka, 1) == [f"lease {lease} keepalived with TTL(60)"]
        member.etcdctl("lease", "revoke", lease)
        tail = read_lines(ka, 1, timeout=15)
        while tail and tail[-1].endswith("keepalived with TTL(60)"):
            tail = read_lines(ka, 1, timeout=15)
        assert tail == [f"lease {lease} expired or revoked."]
    finally:
        ka.kill()


def test_lease_timetolive_with_keys(member: Member) -> None:
    lease = grant(member, 500)
    member.etcdctl("put", "zoo1", "val1", f"--lease={lease}")
    member.etcdctl("put", "zoo2", "val2", f"--lease={lease}")
    text = out(member, "lease", "timetolive", "--keys", lease)
    match = re.match(
        rf"^lease {lease} granted with TTL\(500s\), remaining\((\d+)s\), "
        r"attached keys\(\[zoo1 zoo2\]\)\n$",
        text,
    )
    assert match, text
    assert 490 <= int(match.group(1)) <= 500


def test_etcdctl_version_is_client_side(member: Member) -> None:
    assert out(member, "version") == "etcdctl version: 3.5.1\nAPI version: 3.5\n"
