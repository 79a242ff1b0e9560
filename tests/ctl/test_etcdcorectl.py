"""etcdcorectl against etcdcore, checked byte for byte against what the real
etcdctl 3.5 prints for the same command on the same server."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctl_runner import ctl_command, etcdcorectl, normalized, real_etcdctl
from harness import Member

# -- read-only commands: identical output ------------------------------------------


@pytest.fixture(scope="module")
def seeded(shared_member: Member) -> Member:
    ep = shared_member.endpoint
    for key, value in [
        ("ro/a", "1"),
        ("ro/b", "22"),
        ("ro/c", "333"),
        ("ro/b", "2"),
        ("ro/bin", 'x\ty"z'),
    ]:
        assert etcdcorectl(ep, "put", key, value).returncode == 0
    lease = etcdcorectl(ep, "lease", "grant", "600").stdout.split()[1]
    assert etcdcorectl(ep, "put", "ro/leased", "v", f"--lease={lease}").returncode == 0
    return shared_member


READ_COMMANDS = [
    "get ro/a",
    "get ro/a -w json",
    "get ro/a -w fields",
    "get ro/a -w protobuf",
    "get ro/ --prefix",
    "get ro/ --prefix -w json",
    "get ro/ --prefix --keys-only",
    "get ro/ --prefix --print-value-only",
    "get ro/ --prefix --limit 2 -w fields",
    "get ro/ --prefix --count-only -w fields",
    "get ro/ --prefix --order=DESCEND --sort-by=MODIFY",
    "get ro/ --prefix --sort-by=VALUE",
    "get ro/a ro/c",
    "get ro/b --from-key --keys-only",
    "get ro/a --rev=2",
    "get ro/a --consistency=s",
    "get ro/bin --hex",
    "get ro/bin -w fields",
    "get missing -w json",
    "member list",
    "member list -w json",
    "member list --hex -w json",
    "member list -w table",
    "member list -w fields",
    "endpoint status",
    "endpoint status -w json",
    "endpoint status -w table",
    "endpoint status -w fields",
    "endpoint hashkv",
    "endpoint hashkv -w json",
    "endpoint hashkv -w table",
    "alarm list",
    "alarm list -w json",
    "lease list",
    "lease list -w json",
    "version",
]


@pytest.mark.parametrize("command", READ_COMMANDS)
def test_read_command_prints_what_etcdctl_prints(seeded: Member, command: str) -> None:
    args = command.split()
    ours = etcdcorectl(seeded.endpoint, *args)
    theirs = real_etcdctl(seeded.endpoint, *args)
    assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr)
    if command == "version":
        assert ours.stdout.startswith(theirs.stdout)
    else:
        assert ours.stdout == theirs.stdout


# -- errors: same text, same exit code ---------------------------------------------

ERROR_COMMANDS = [
    "get",
    "get a --prefix --from-key",
    "get a b --prefix",
    "get a --keys-only --count-only",
    "get a --consistency=x",
    "get a --order=sideways",
    "get a --sort-by=colour",
    "get a --count-only",
    "get a --print-value-only -w json",
    "get a -w yaml",
    "put",
    "put a b --lease=zz",
    "put a --ignore-value b",
    "del",
    "del a b --prefix",
    "lease grant",
    "lease grant ten",
    "lease revoke",
    "lease revoke xyz",
    "lease revoke 123",
    "lease timetolive 123",
    "lease keep-alive",
    "lease keep-alive --once 123",
    "compaction",
    "compaction abc",
    "compaction 999999",
    "member add",
    "member add newbie",
    "member remove",
    "member remove zz",
    "member remove 1234",
    "member update 1234",
    "member update 1234 --peer-urls=http://127.0.0.1:1",
    "member promote 1234",
    "move-leader",
    "txn extra",
    "alarm list extra",
    "watch",
    "lock",
    "elect",
    "elect name",
    "elect -l name proposal",
    "snapshot save",
    "user list",
]


@pytest.mark.parametrize("command", ERROR_COMMANDS)
def test_bad_command_fails_as_etcdctl_fails(shared_member: Member, command: str) -> None:
    args = command.split()
    ours = etcdcorectl(shared_member.endpoint, *args, input="")
    theirs = real_etcdctl(shared_member.endpoint, *args, input="")
    assert ours.returncode == theirs.returncode
    assert ours.stderr == theirs.stderr
    assert ours.stdout == theirs.stdout


# -- writes: same output but for revisions and IDs ---------------------------------

WRITE_COMMANDS = [
    "put {k} v1",
    "put {k} v1 -w json",
    "put {k} v2 --prev-kv",
    "put {k} v3 --prev-kv -w json",
    "put {k} --ignore-value --prev-kv",
    "del {k}",
    "del {k} --prev-kv -w fields",
    "del {k} --prefix -w json",
    "lease grant 100",
    "lease grant 100 -w json",
    "lease grant 100 -w fields",
]


@pytest.mark.parametrize("command", WRITE_COMMANDS)
def test_write_command_prints_what_etcdctl_prints(shared_member: Member, command: str) -> None:
    ep = shared_member.endpoint
    results = []
    for run, key in ((etcdcorectl, "wr/ours"), (real_etcdctl, "wr/theirs")):
        run(ep, "put", key, "v0")
        proc = run(ep, *command.format(k=key).split())
        results.append((proc.returncode, proc.stderr, normalized(proc.stdout.replace(key, "KEY"))))
    # json carries keys base64-encoded: compare with the key spelled out.
    ours, theirs = results
    if "json" in command:
        ours = (ours[0], ours[1], _decode_keys(ours[2]))
        theirs = (theirs[0], theirs[1], _decode_keys(theirs[2]))
    assert ours == theirs


def _decode_keys(text: str) -> str:
    import base64

    def sub(m: re.Match[str]) -> str:
        raw = base64.b64decode(m.group(1)).decode()
        return '"key":"' + raw.replace("wr/ours", "KEY").replace("wr/theirs", "KEY") + '"'

    return re.sub(r'"key":"([A-Za-z0-9+/=]*)"', sub, text)


def test_put_reads_the_value_from_stdin(shared_member: Member) -> None:
    assert (
        etcdcorectl(shared_member.endpoint, "put", "stdin/k", input="from stdin").stdout == "OK\n"
    )
    assert (
        etcdcorectl(shared_member.endpoint, "get", "stdin/k", "--print-value-only").stdout
        == "from stdin\n"
    )


def test_global_flags_work_before_and_after_the_command(shared_member: Member) -> None:
    etcdcorectl(shared_member.endpoint, "put", "flags/k", "v")
    before = etcdcorectl(
        None, f"--endpoints={shared_member.endpoint}", "-w", "json", "get", "flags/k"
    )
    after = etcdcorectl(
        None, "get", "flags/k", "--write-out=json", f"--endpoints={shared_member.endpoint}"
    )
    assert json.loads(before.stdout)["kvs"] == json.loads(after.stdout)["kvs"]


def test_etcdctl_environment_variables_set_global_flags(shared_member: Member) -> None:
    etcdcorectl(shared_member.endpoint, "put", "env/k", "v")
    env = {"ETCDCTL_ENDPOINTS": shared_member.endpoint, "ETCDCTL_WRITE_OUT": "fields"}
    out = etcdcorectl(None, "get", "env/k", env=env).stdout
    assert '"Key" : "env/k"' in out


def test_unreachable_endpoint_fails_with_deadline_exceeded() -> None:
    proc = etcdcorectl("127.0.0.1:1", "get", "k", "--command-timeout=1s")
    assert (proc.returncode, proc.stderr) == (1, "Error: context deadline exceeded\n")


def test_second_endpoint_is_used_when_the_first_is_down(shared_member: Member) -> None:
    etcdcorectl(shared_member.endpoint, "put", "failover/k", "v")
    proc = etcdcorectl(
        f"127.0.0.1:1,{shared_member.endpoint}", "get", "failover/k", "--print-value-only"
    )
    assert proc.stdout == "v\n"


# -- txn ---------------------------------------------------------------------------

TXN_SCRIPT = """mod("txn/k") > "0"

put txn/k "then value"
get txn/k

put txn/k else

"""


@pytest.mark.parametrize("fmt", ["simple", "json", "fields"])
def test_piped_txn_prints_what_etcdctl_prints(shared_member: Member, fmt: str) -> None:
    ep = shared_member.endpoint
    etcdcorectl(ep, "put", "txn/k", "v")
    ours = etcdcorectl(ep, "txn", "-w", fmt, input=TXN_SCRIPT)
    theirs = real_etcdctl(ep, "txn", "-w", fmt, input=TXN_SCRIPT)
    assert ours.returncode == theirs.returncode == 0
    assert normalized(ours.stdout) == normalized(theirs.stdout)
    assert "then value" in etcdcorectl(ep, "get", "txn/k").stdout


def test_interactive_txn_prompts_and_takes_the_else_branch(shared_member: Member) -> None:
    script = 'value("txn/i") = "never"\n\nput txn/i then\n\nput txn/i else\n\n'
    proc = etcdcorectl(shared_member.endpoint, "txn", "-i", input=script)
    assert proc.stdout == (
        "compares:\nsuccess requests (get, put, del):\n"
        "failure requests (get, put, del):\nFAILURE\n\nOK\n"
    )


@pytest.mark.parametrize(
    "script",
    [
        "nonsense\n\n\n\n",
        'mod("k") > "x"\n\n\n\n',
        'val("k") = "v"\n\nput\n\n\n',
        'val("k") = "v"\n\nfrob k\n\n\n',
    ],
)
def test_malformed_txn_input_fails_as_etcdctl_does(shared_member: Member, script: str) -> None:
    ours = etcdcorectl(shared_member.endpoint, "txn", input=script)
    theirs = real_etcdctl(shared_member.endpoint, "txn", input=script)
    assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr)


# -- watch -------------------------------------------------------------------------


@pytest.fixture
def watchers(shared_member: Member) -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def _spawn(
    cmd: list[str], procs: list[subprocess.Popen[str]], **kw: object
) -> subprocess.Popen[str]:
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)  # type: ignore[call-overload]
    procs.append(p)
    return p


def _etcdctl_cmd(ep: str) -> list[str]:
    from harness import etcd_bin

    return [etcd_bin("etcdctl"), f"--endpoints={ep}"]


@pytest.mark.parametrize(
    "flags", [["--prefix"], ["--prefix", "--prev-kv"], ["--prefix", "-w", "json"]]
)
def test_watch_prints_events_as_etcdctl_does(
    shared_member: Member, watchers: list[subprocess.Popen[str]], flags: list[str]
) -> None:
    ep = shared_member.endpoint
    prefix = f"watch{len(flags)}{flags[-1]}/"
    ours = _spawn([*ctl_command(), f"--endpoints={ep}", "watch", prefix, *flags], watchers)
    theirs = _spawn([*_etcdctl_cmd(ep), "watch", prefix, *flags], watchers)
    time.sleep(1.5)
    for args in (["put", prefix + "a", "1"], ["put", prefix + "a", "2"], ["del", prefix + "a"]):
        etcdcorectl(ep, *args)
    time.sleep(1.0)
    for p in (ours, theirs):
        p.send_signal(signal.SIGTERM)
    outs = [p.communicate(timeout=10)[0] for p in (ours, theirs)]
    assert outs[0] == outs[1]
    assert outs[0].count("\n") >= 3


def test_watch_runs_the_command_per_event_with_etcd_watch_variables(
    shared_member: Member, watchers: list[subprocess.Popen[str]]
) -> None:
    ep = shared_member.endpoint
    script = 'echo "$ETCD_WATCH_EVENT_TYPE|$ETCD_WATCH_KEY|$ETCD_WATCH_VALUE|$ETCD_WATCH_REVISION"'
    ours = _spawn(
        [*ctl_command(), f"--endpoints={ep}", "watch", "wexec/k", "--", "sh", "-c", script],
        watchers,
    )
    time.sleep(1.5)
    put = etcdcorectl(ep, "put", "wexec/k", "a b", "-w", "json")
    revision = json.loads(put.stdout)["header"]["revision"]
    time.sleep(1.0)
    ours.send_signal(signal.SIGTERM)
    out = ours.communicate(timeout=10)[0]
    assert f'"PUT"|"wexec/k"|"a b"|{revision}' in out.splitlines()


def test_watch_from_a_compacted_revision_exits_with_code_5(shared_member: Member) -> None:
    ep = shared_member.endpoint
    etcdcorectl(ep, "put", "wcomp/k", "1")
    rev = json.loads(etcdcorectl(ep, "put", "wcomp/k", "2", "-w", "json").stdout)["header"][
        "revision"
    ]
    etcdcorectl(ep, "compaction", str(rev))
    proc = etcdcorectl(ep, "watch", "wcomp/k", "--rev=1", timeout=10)
    assert proc.returncode == 5
    assert proc.stderr == (
        "watch was canceled (etcdserver: mvcc: required revision has been compacted)\n"
        "Error: watch is canceled by the server\n"
    )


def test_interactive_watch_reads_watch_lines_from_stdin(
    shared_member: Member, watchers: list[subprocess.Popen[str]]
) -> None:
    ep = shared_member.endpoint
    p = _spawn(
        [*ctl_command(), f"--endpoints={ep}", "watch", "-i"], watchers, stdin=subprocess.PIPE
    )
    assert p.stdin is not None
    p.stdin.write("watch wi/ --prefix\n")
    p.stdin.flush()
    time.sleep(1.5)
    etcdcorectl(ep, "put", "wi/x", "y")
    time.sleep(1.0)
    p.send_signal(signal.SIGTERM)
    assert p.communicate(timeout=10)[0] == "PUT\nwi/x\ny\n"


# -- leases ------------------------------------------------------------------------


def test_lease_lifecycle_prints_what_etcdctl_prints(shared_member: Member) -> None:
    ep = shared_member.endpoint
    lease = etcdcorectl(ep, "lease", "grant", "60").stdout.split()[1]
    etcdcorectl(ep, "put", "lease/k", "v", f"--lease={lease}")
    for args in (
        ["lease", "timetolive", lease, "--keys"],
        ["lease", "timetolive", lease, "--keys", "-w", "json"],
    ):
        ours, theirs = etcdcorectl(ep, *args), real_etcdctl(ep, *args)
        assert re.sub(r"remaining\(\d+s\)|\"ttl\":\d+", "R", ours.stdout) == re.sub(
            r"remaining\(\d+s\)|\"ttl\":\d+", "R", theirs.stdout
        )
    assert (
        etcdcorectl(ep, "lease", "keep-alive", "--once", lease).stdout
        == f"lease {lease} keepalived with TTL(60)\n"
    )
    assert etcdcorectl(ep, "lease", "revoke", lease).stdout == f"lease {lease} revoked\n"
    assert (
        etcdcorectl(ep, "lease", "timetolive", lease).stdout == f"lease {lease} already expired\n"
    )
    assert etcdcorectl(ep, "get", "lease/k").stdout == ""


def test_lease_keep_alive_ends_when_the_lease_is_revoked(shared_member: Member) -> None:
    ep = shared_member.endpoint
    lease = etcdcorectl(ep, "lease", "grant", "30").stdout.split()[1]
    p = subprocess.Popen(
        [*ctl_command(), f"--endpoints={ep}", "lease", "keep-alive", lease],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)
    etcdcorectl(ep, "lease", "revoke", lease)
    out, _ = p.communicate(timeout=20)
    assert p.returncode == 0
    assert out.splitlines()[0] == f"lease {lease} keepalived with TTL(30)"
    assert out.splitlines()[-1] == f"lease {lease} expired or revoked."


# -- lock and elect ----------------------------------------------------------------


def test_lock_runs_the_command_holding_the_lock(shared_member: Member) -> None:
    ep = shared_member.endpoint
    proc = etcdcorectl(ep, "lock", "lk1", "sh", "-c", 'echo "$ETCD_LOCK_KEY"; etcdctl_unused=1')
    key = proc.stdout.strip()
    assert proc.returncode == 0 and key.startswith("lk1/")
    # Released afterwards: nothing is left under the name.
    assert etcdcorectl(ep, "get", "lk1/", "--prefix", "--keys-only").stdout == ""


def test_lock_exits_with_the_commands_exit_code(shared_member: Member) -> None:
    proc = etcdcorectl(shared_member.endpoint, "lock", "lk2", "sh", "-c", "exit 7")
    assert (proc.returncode, proc.stderr) == (7, "Error: exit status 7\n")


def test_second_locker_waits_until_the_holder_is_interrupted(
    shared_member: Member, watchers: list[subprocess.Popen[str]]
) -> None:
    ep = shared_member.endpoint
    holder = _spawn([*ctl_command(), f"--endpoints={ep}", "lock", "lk3"], watchers)
    assert holder.stdout is not None
    assert holder.stdout.readline().startswith("lk3/")
    waiter = _spawn(
        [*ctl_command(), f"--endpoints={ep}", "lock", "lk3", "echo", "acquired"], watchers
    )
    time.sleep(1.5)
    assert waiter.poll() is None  # still waiting for the holder
    holder.send_signal(signal.SIGINT)
    assert holder.wait(timeout=10) == 0
    assert waiter.communicate(timeout=10)[0] == "acquired\n"


def test_real_etcdctl_lock_and_etcdcorectl_lock_exclude_each_other(
    shared_member: Member, watchers: list[subprocess.Popen[str]]
) -> None:
    ep = shared_member.endpoint
    holder = _spawn([*_etcdctl_cmd(ep), "lock", "lk4"], watchers)
    assert holder.stdout is not None
    assert holder.stdout.readline().startswith("lk4/")
    waiter = _spawn(
        [*ctl_command(), f"--endpoints={ep}", "lock", "lk4", "echo", "acquired"], watchers
    )
    time.sleep(1.5)
    assert waiter.poll() is None
    holder.send_signal(signal.SIGINT)
    assert waiter.communicate(timeout=15)[0] == "acquired\n"


def test_elect_campaigns_and_observers_see_the_proposal(
    shared_member: Member, watchers: list[subprocess.Popen[str]]
) -> None:
    ep = shared_member.endpoint
    leader = _spawn([*ctl_command(), f"--endpoints={ep}", "elect", "el1", "p1"], watchers)
    assert leader.stdout is not None
    key = leader.stdout.readline().strip()
    assert key.startswith("el1/") and leader.stdout.readline() == "p1\n"
    observer = _spawn([*ctl_command(), f"--endpoints={ep}", "elect", "-l", "el1"], watchers)
    time.sleep(1.5)
    second = _spawn([*ctl_command(), f"--endpoints={ep}", "elect", "el1", "p2"], watchers)
    time.sleep(1.0)
    assert second.poll() is None  # waits for the leader to resign
    leader.send_signal(signal.SIGINT)
    assert leader.wait(timeout=10) == 0
    assert second.stdout is not None
    assert second.stdout.readline().startswith("el1/") and second.stdout.readline() == "p2\n"
    time.sleep(0.5)
    observer.send_signal(signal.SIGINT)
    seen = observer.communicate(timeout=10)[0].splitlines()
    assert seen[1::2] == ["p1", "p2"]


# -- maintenance -------------------------------------------------------------------


def test_snapshot_save_writes_a_checked_snapshot_file(
    shared_member: Member, tmp_path: Path
) -> None:
    path = tmp_path / "backup.db"
    proc = etcdcorectl(shared_member.endpoint, "snapshot", "save", str(path))
    assert (proc.returncode, proc.stdout) == (0, f"Snapshot saved at {path}\n")
    assert path.stat().st_size > 32
    assert not (tmp_path / "backup.db.part").exists()


def test_snapshot_save_refuses_several_endpoints(shared_member: Member, tmp_path: Path) -> None:
    ep = shared_member.endpoint
    proc = etcdcorectl(f"{ep},{ep}", "snapshot", "save", str(tmp_path / "x.db"))
    assert proc.returncode == 5
    assert (
        proc.stderr
        == f"Error: snapshot must be requested to one selected node, not multiple [{ep} {ep}]\n"
    )


def test_defrag_reports_each_member(shared_member: Member) -> None:
    proc = etcdcorectl(shared_member.endpoint, "defrag")
    assert proc.stdout == f"Finished defragmenting etcd member[{shared_member.endpoint}]\n"


def test_endpoint_health_reports_a_healthy_member(shared_member: Member) -> None:
    proc = etcdcorectl(shared_member.endpoint, "endpoint", "health")
    assert re.fullmatch(
        rf"{shared_member.endpoint} is healthy: successfully committed proposal: "
        r"took = [0-9.]+(µs|ms|s)\n",
        proc.stdout,
    )


def test_endpoint_health_of_a_dead_endpoint_is_unhealthy() -> None:
    proc = etcdcorectl("127.0.0.1:1", "endpoint", "health", "--command-timeout=1s")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "127.0.0.1:1 is unhealthy: failed to commit proposal: context deadline exceeded",
        "Error: unhealthy cluster",
    ]


def test_endpoint_status_with_cluster_flag_uses_member_client_urls(shared_member: Member) -> None:
    rows = json.loads(
        etcdcorectl(shared_member.endpoint, "endpoint", "status", "--cluster", "-w", "json").stdout
    )
    assert [r["Endpoint"] for r in rows] == [f"http://{shared_member.endpoint}"]


def test_check_perf_writes_reports_and_cleans_up(shared_member: Member) -> None:
    ep = shared_member.endpoint
    proc = etcdcorectl(ep, "check", "perf", "--duration=2", timeout=60)
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"(PASS: Throughput is|FAIL: Throughput too low:) \d+ writes/s", lines[0])
    assert lines[-1] in ("PASS", "FAIL")
    assert proc.returncode == (0 if lines[-1] == "PASS" else 1)
    assert etcdcorectl(
        ep, "get", "/etcdctl-check-perf/", "--prefix", "--count-only", "-w", "fields"
    ).stdout.endswith('"Count" : 0\n')
