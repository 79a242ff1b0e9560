"""The recipes in docs/examples, run as a user would: real programs against a
real etcdcore server, checked by what they print and by what the store holds."""

from __future__ import annotations

import importlib.util
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from etcdcore.client import Client
from harness import Member

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
#: Lease TTL the recipes are run with here (the server's minimum is 2 s).
TTL = 2
#: How much later than the TTL a lease's expiry may be noticed: the server
#: looks for expired leases every 0.5 s, then the delete travels to watchers.
MARGIN = 1.5

pytestmark = pytest.mark.timeout(60)


class Program:
    """A recipe running in the background, its output read line by line.

    It runs in a process group of its own, so a kill also reaches the
    commands it started."""

    def __init__(self, script: str, endpoint: str, *args: str) -> None:
        self.args = [script, *args]
        self.proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / script), "--endpoints", endpoint, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.errors: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()
        threading.Thread(
            target=lambda f: self.errors.extend(f), args=(self.proc.stderr,), daemon=True
        ).start()

    def _pump(self, stream: Iterator[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # end of output

    def describe(self) -> str:
        return f"{self.args}: stdout {self.seen}, stderr {''.join(self.errors)!r}"

    def next_line(self, timeout: float = 10.0) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output in {timeout}s from {self.describe()}") from None
        if line is None:
            self.lines.put(None)
            raise AssertionError(f"exited ({self.proc.wait()}) early: {self.describe()}")
        self.seen.append(line)
        return line

    def expect(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Read lines until one matches ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{pattern!r} not seen in {timeout}s: {self.describe()}")
            try:
                line = self.next_line(remaining)
            except AssertionError as e:
                raise AssertionError(f"{pattern!r} not seen: {e}") from None
            if m := re.search(pattern, line):
                return m

    def signal(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.signal(signal.SIGKILL)
        self.proc.wait(10)


Start = Callable[..., Program]


@pytest.fixture
def start(member: Member) -> Iterator[Start]:
    """``start("recipe.py", *args)``: a recipe in the background, killed after the test."""
    programs: list[Program] = []

    def start(script: str, *args: str) -> Program:
        programs.append(Program(script, member.endpoint, *args))
        return programs[-1]

    yield start
    for p in programs:
        p.stop()


def run(
    member: Member, script: str, *args: str, timeout: float = 20.0
) -> subprocess.CompletedProcess[str]:
    """Run a recipe to completion (on a time-out, fail with its threads' stacks)."""
    command = [sys.executable, str(EXAMPLES / script), "--endpoints", member.endpoint, *args]
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
        out, err = proc.communicate()
        raise AssertionError(f"{script} {args} hung; stdout {out!r}; stderr:\n{err}") from None
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def run_ok(member: Member, script: str, *args: str, timeout: float = 20.0) -> str:
    done = run(member, script, *args, timeout=timeout)
    assert done.returncode == 0, f"{script} {args} failed: {done.stderr}"
    return done.stdout


@pytest.fixture
def client(member: Member) -> Iterator[Client]:
    with Client([member.endpoint]) as c:
        yield c


def first_match(programs: list[Program], pattern: str, timeout: float) -> tuple[Program, str]:
    """The first of ``programs`` to print a line matching ``pattern``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in programs:
            try:
                line = p.lines.get(timeout=0.02)
            except queue.Empty:
                continue
            if line is None:
                p.lines.put(None)
                continue
            p.seen.append(line)
            if re.search(pattern, line):
                return p, line
    raise AssertionError(
        f"{pattern!r} not seen in {timeout}s: " + "; ".join(p.describe() for p in programs)
    )


# -- service discovery --------------------------------------------------------------


def register(start: Start, instance_id: str, addr: str, ttl: int = TTL) -> Program:
    """An instance of the service "web", registered when this returns."""
    reg = start(
        "service_discovery.py", "register", "web", addr, "--ttl", str(ttl), "--id", instance_id
    )
    reg.expect(rf"^registered services/web/{instance_id} = {re.escape(addr)}")
    return reg


def test_discover_lists_the_instances_registered_before_it_started(start: Start) -> None:
    register(start, "a", "10.0.0.1:80")
    register(start, "b", "10.0.0.2:80")
    disc = start("service_discovery.py", "discover", "web")
    disc.expect(r"^# 2 instance\(s\) of web")
    assert disc.seen[:2] == ["up a 10.0.0.1:80", "up b 10.0.0.2:80"]


def test_discover_reports_a_killed_instance_down_once_its_ttl_passes(start: Start) -> None:
    disc = start("service_discovery.py", "discover", "web")
    disc.expect(r"^# 0 instance")
    reg = register(start, "a", "10.0.0.1:80")
    disc.expect(r"^up a 10\.0\.0\.1:80$")
    reg.signal(signal.SIGKILL)
    killed = time.monotonic()
    disc.expect(r"^down a$", timeout=TTL + MARGIN)
    # Not at once: the lease had most of its TTL left when the registrar died.
    assert time.monotonic() - killed > TTL / 3


def test_an_instance_stopped_with_sigterm_goes_down_at_once(start: Start) -> None:
    disc = start("service_discovery.py", "discover", "web")
    disc.expect(r"^# 0 instance")
    reg = register(start, "a", "10.0.0.1:80", ttl=30)
    disc.expect(r"^up a ")
    reg.signal(signal.SIGTERM)
    disc.expect(r"^down a$", timeout=3)  # revoked, long before the 30 s TTL
    assert reg.wait() == 0
    reg.expect(r"^deregistered services/web/a$")


# -- configuration centre -----------------------------------------------------------


def write_config(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load(member: Member, path: Path, prefix: str) -> int:
    out = run_ok(member, "config_centre.py", "load", str(path), prefix)
    m = re.search(r"at revision (\d+)$", out.strip())
    assert m, out
    return int(m[1])


def test_load_writes_every_setting_in_one_revision(
    member: Member, client: Client, tmp_path: Path
) -> None:
    conf = write_config(tmp_path, "web.conf", "# web tier\ndb.host = 10.0.0.5\n\ndb.pool=10\n")
    revision = load(member, conf, "config/web/")
    kvs = client.get("config/web/", prefix=True).kvs
    assert {kv.key: kv.value for kv in kvs} == {
        b"config/web/db.host": b"10.0.0.5",
        b"config/web/db.pool": b"10",
    }
    assert {kv.mod_revision for kv in kvs} == {revision}


def test_watch_prints_each_change_with_its_revision(
    member: Member, client: Client, start: Start, tmp_path: Path
) -> None:
    watch = start("config_centre.py", "watch", "config/web/")
    watch.expect(r"^# watching config/web/")
    revision = load(member, write_config(tmp_path, "a.conf", "a=1\nb=2\n"), "config/web/")
    deleted = client.delete("config/web/a").revision
    watch.expect(r"delete a$")
    assert watch.seen[1:] == [f"{revision} put a=1", f"{revision} put b=2", f"{deleted} delete a"]


def test_rollback_restores_old_values_and_deletes_keys_created_later(
    member: Member, client: Client, tmp_path: Path
) -> None:
    good = load(member, write_config(tmp_path, "v1.conf", "a=1\nb=2\n"), "config/web/")
    load(member, write_config(tmp_path, "v2.conf", "a=10\nc=3\n"), "config/web/")
    client.delete("config/web/b")
    out = run_ok(member, "config_centre.py", "rollback", "config/web/", str(good))
    assert "2 written, 1 deleted" in out
    assert run_ok(member, "config_centre.py", "show", "config/web/") == "a=1\nb=2\n"
    assert client.get("config/web/c").count == 0


def test_rollback_to_a_compacted_revision_fails_and_changes_nothing(
    member: Member, client: Client, tmp_path: Path
) -> None:
    old = load(member, write_config(tmp_path, "v1.conf", "a=1\n"), "config/web/")
    new = load(member, write_config(tmp_path, "v2.conf", "a=2\n"), "config/web/")
    client.compact(new)
    done = run(member, "config_centre.py", "rollback", "config/web/", str(old))
    assert done.returncode == 1
    assert "compacted" in done.stderr
    assert client.get("config/web/a").value == b"2"


# -- load balancer ------------------------------------------------------------------


def load_balancer_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("load_balancer", EXAMPLES / "load_balancer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_picks_cycle_over_every_live_instance(member: Member, start: Start) -> None:
    for i in (1, 2, 3):
        register(start, f"i{i}", f"10.0.0.{i}:80")
    out = run_ok(member, "load_balancer.py", "pick", "web", "--count", "6")
    assert out.split() == ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"] * 2


def test_a_killed_instance_drops_out_of_the_rotation(start: Start) -> None:
    registrars = {i: register(start, f"i{i}", f"10.0.0.{i}:80") for i in (1, 2, 3)}
    picker = start("load_balancer.py", "pick", "web", "--count", "100000", "--interval", "0.02")
    assert [picker.next_line() for _ in range(3)] == ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]
    registrars[2].signal(signal.SIGKILL)
    deadline = time.monotonic() + TTL + MARGIN
    recent: list[str] = []
    while len(recent) < 6 or "10.0.0.2:80" in recent[-6:]:
        assert time.monotonic() < deadline, f"10.0.0.2:80 still picked: {recent[-10:]}"
        recent.append(picker.next_line())
    last = recent[-6:]
    assert set(last) == {"10.0.0.1:80", "10.0.0.3:80"}
    assert all(a != b for a, b in zip(last, last[1:], strict=False))  # still alternating


def test_balancer_library_follows_instances_as_they_come_and_go(
    member: Member, client: Client
) -> None:
    lb = load_balancer_module()

    def wait_for(balancer: Any, addresses: list[str]) -> None:
        deadline = time.monotonic() + 5
        while balancer.addresses() != addresses:
            assert time.monotonic() < deadline, balancer.addresses()
            time.sleep(0.02)

    with lb.Balancer([member.endpoint], "api") as balancer:
        with pytest.raises(lb.NoEndpointError):
            balancer.next()
        client.put("services/api/x", "10.1.0.1:80")
        client.put("services/api/y", "10.1.0.2:80")
        wait_for(balancer, ["10.1.0.1:80", "10.1.0.2:80"])
        picks = [balancer.next() for _ in range(3)]
        assert picks == ["10.1.0.1:80", "10.1.0.2:80", "10.1.0.1:80"]
        client.delete("services/api/x")
        wait_for(balancer, ["10.1.0.2:80"])
        assert [balancer.next() for _ in range(2)] == ["10.1.0.2:80"] * 2


# -- distributed lock ---------------------------------------------------------------


def test_appenders_under_the_lock_never_interleave(
    member: Member, start: Start, tmp_path: Path
) -> None:
    log = tmp_path / "shared.log"
    args = ["append", "demo", str(log), "--times", "5", "--hold", "0.02"]
    writers = [start("distributed_lock.py", *args, "--tag", f"w{n}") for n in range(4)]
    for w in writers:
        assert w.wait(30) == 0, w.describe()
    lines = log.read_text().splitlines()
    assert len(lines) == 4 * 5 * 2
    pairs = list(zip(lines[::2], lines[1::2], strict=True))
    for begin, end in pairs:
        assert begin.startswith("BEGIN ") and end == "END " + begin[len("BEGIN ") :], lines
    assert sorted(b for b, _ in pairs) == sorted(
        f"BEGIN w{n} {i}" for n in range(4) for i in range(5)
    )


def holder_command(log: Path, hold: float) -> list[str]:
    """A command that logs its start and, ``hold`` seconds later, its end."""
    code = (
        "import os, sys, time\n"
        "log = open(sys.argv[1], 'a', buffering=1)\n"
        "log.write(f'start {os.getpid()}\\n')\n"
        "print('holding', flush=True)\n"
        "time.sleep(float(sys.argv[2]))\n"
        "log.write(f'end {os.getpid()}\\n')\n"
    )
    return [sys.executable, "-c", code, str(log), str(hold)]


def test_run_executes_commands_one_at_a_time(start: Start, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    runners = [
        start("distributed_lock.py", "run", "job", "--", *holder_command(log, 0.3))
        for _ in range(3)
    ]
    for r in runners:
        assert r.wait(30) == 0, r.describe()
    lines = log.read_text().split("\n")[:-1]
    assert len(lines) == 6
    for first, second in zip(lines[::2], lines[1::2], strict=True):
        assert first.startswith("start ") and second == "end " + first[len("start ") :], lines


def test_a_killed_holder_releases_the_lock_within_its_ttl(
    member: Member, start: Start, tmp_path: Path
) -> None:
    holder = start(
        "distributed_lock.py", "run", "job", "--ttl", str(TTL), "--",
        *holder_command(tmp_path / "holder.log", 60),
    )  # fmt: skip
    holder.expect("^holding$")
    holder.signal(signal.SIGKILL)  # the lock client and its command, as in a crash
    killed = time.monotonic()
    out = run_ok(
        member, "distributed_lock.py", "run", "job", "--", sys.executable, "-c", "print('next')",
        timeout=TTL + 10,
    )  # fmt: skip
    waited = time.monotonic() - killed
    assert out == "next\n"
    assert TTL / 3 < waited < TTL + MARGIN + 1  # (+1: the second program's start-up)


# -- leader election ----------------------------------------------------------------


def start_nodes(start: Start, names: list[str]) -> tuple[dict[str, Program], str]:
    """Nodes of the election "jobs", and the one elected."""
    nodes = {n: start("leader_election.py", "node", "jobs", n, "--ttl", str(TTL)) for n in names}
    # Each node's first line says whether it won or whom it follows.
    firsts = {n: p.expect(r"^(elected|following) (\S+)$").groups() for n, p in nodes.items()}
    leaders = [n for n, (what, _) in firsts.items() if what == "elected"]
    assert len(leaders) == 1, firsts
    assert all(who == leaders[0] for _, who in firsts.values()), firsts
    return nodes, leaders[0]


def monitor(member: Member) -> dict[str, str]:
    """Node name -> role, as ``monitor`` lists them."""
    out = run_ok(member, "leader_election.py", "monitor", "jobs")
    return {line.split()[0]: line.split()[1] for line in out.splitlines()}


def test_exactly_one_node_is_elected_and_the_others_follow_it(member: Member, start: Start) -> None:
    _, leader = start_nodes(start, ["n1", "n2", "n3"])
    roles = monitor(member)
    assert roles == {n: "leader" if n == leader else "follower" for n in ("n1", "n2", "n3")}


def test_a_killed_leader_is_replaced_within_its_ttl(start: Start) -> None:
    nodes, leader = start_nodes(start, ["n1", "n2", "n3"])
    nodes[leader].signal(signal.SIGKILL)
    killed = time.monotonic()
    others = [p for n, p in nodes.items() if n != leader]
    winner, line = first_match(others, r"^elected ", timeout=TTL + MARGIN)
    assert time.monotonic() - killed < TTL + MARGIN
    new_leader = line.split()[1]
    follower = next(p for p in others if p is not winner)
    if f"following {new_leader}" not in follower.seen:  # first_match may have read it
        follower.expect(rf"^following {new_leader}$", timeout=3)


def test_a_leader_stopped_with_sigterm_hands_over_at_once(start: Start) -> None:
    nodes, leader = start_nodes(start, ["n1", "n2"])
    nodes[leader].signal(signal.SIGTERM)
    stopped = time.monotonic()
    other = next(p for n, p in nodes.items() if n != leader)
    other.expect(r"^elected ", timeout=TTL)
    assert time.monotonic() - stopped < 1.0  # the lease was revoked, not left to expire
    assert nodes[leader].wait() == 0
    nodes[leader].expect(r"^resigned$")


def test_monitor_drops_a_killed_node_once_its_ttl_passes(member: Member, start: Start) -> None:
    nodes, leader = start_nodes(start, ["n1", "n2", "n3"])
    victim = next(n for n in nodes if n != leader)
    nodes[victim].signal(signal.SIGKILL)
    deadline = time.monotonic() + TTL + MARGIN + 1
    while victim in (roles := monitor(member)):
        assert time.monotonic() < deadline, roles
        time.sleep(0.2)
    assert roles == {n: "leader" if n == leader else "follower" for n in nodes if n != victim}
