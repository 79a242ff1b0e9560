"""etcdctl's lease commands side by side with the real etcd 3.5.1: one script
of grant, timetolive, list, keep-alive and revoke (plain and -w json) against
a fresh etcd and a fresh etcdcore prints the same thing, once the lease ids,
the member ids and the seconds left (which differ by nature) are masked."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from harness import Member, etcd_bin

# Run in order; {a}, {b}, {c} are the ids (hex) of the leases the grants
# printed, in order.
SCRIPT: list[list[str]] = [
    ["lease", "grant", "100"],
    ["put", "held", "v", "--lease={a}"],
    ["put", "also-held", "v", "--lease={a}"],
    ["lease", "grant", "300", "-w", "json"],
    ["lease", "timetolive", "{a}"],
    ["lease", "timetolive", "{a}", "--keys"],
    ["lease", "timetolive", "{a}", "--keys", "-w", "json"],
    ["lease", "timetolive", "{b}", "-w", "json"],
    ["lease", "list"],
    ["lease", "list", "-w", "json"],
    ["lease", "keep-alive", "--once", "{a}"],
    ["lease", "keep-alive", "--once", "{b}", "-w", "json"],
    ["lease", "revoke", "{a}"],
    ["get", "", "--prefix", "--keys-only"],
    ["lease", "revoke", "{a}"],
    ["lease", "timetolive", "{a}"],
    ["lease", "timetolive", "{a}", "-w", "json"],
    ["lease", "keep-alive", "--once", "{a}"],
    ["lease", "revoke", "{b}", "-w", "json"],
    ["lease", "list"],
    # Under the minimum TTL (1.5 election timeouts): raised to 2 s.
    ["lease", "grant", "1"],
    ["lease", "grant", "9000000001"],
]

HEX_ID = re.compile(r"\b[0-9a-f]{16}\b")
MEMBER_IDS = re.compile(r'("?(cluster_id|member_id|raft_term)"?\s*:\s*)\d+')
# etcd lists a lease's keys in Go's random map order; compared sorted.
KEYS_TEXT = re.compile(r"attached keys\(\[([^\]]*)\]\)")
KEYS_JSON = re.compile(r'"keys":\[([^\]]*)\]')
# What is left of a lease ticks on between the grant and the question.
REMAINING = [
    (re.compile(r"remaining\(\d+s\)"), "remaining(Ns)"),
    (re.compile(r'"ttl":\d+,"granted-ttl"'), '"ttl":N,"granted-ttl"'),
]


def transcript(m: Member) -> list[tuple[str, int, str, str]]:
    ids: dict[str, str] = {}
    out = []
    for args in SCRIPT:
        argv = [a.format(**ids) for a in args]
        proc = m.etcdctl(*argv, check=False)
        if args[:2] == ["lease", "grant"] and proc.returncode == 0:
            # Printed in hex, or in decimal with -w json.
            if "json" in args:
                lease = f"{json.loads(proc.stdout)['ID']:016x}"
            else:
                found = HEX_ID.search(proc.stdout)
                assert found, proc.stdout
                lease = found.group(0)
            ids["abc"[len(ids)]] = lease
        out.append(
            (" ".join(args), proc.returncode, mask(proc.stdout, ids), mask(proc.stderr, ids))
        )
    return out


def mask(text: str, ids: dict[str, str]) -> str:
    for name, lease in ids.items():
        text = text.replace(lease, f"<{name}>").replace(str(int(lease, 16)), f"<{name}>")
    text = MEMBER_IDS.sub(r"\g<1>0", text)
    for pattern, repl in REMAINING:
        text = pattern.sub(repl, text)
    text = KEYS_TEXT.sub(lambda m: f"attached keys([{' '.join(sorted(m[1].split()))}])", text)
    text = KEYS_JSON.sub(lambda m: f'"keys":[{",".join(sorted(m[1].split(",")))}]', text)
    # etcdctl's own log lines carry timestamps.
    return "\n".join(line for line in text.splitlines() if not line.startswith('{"level"'))


@pytest.fixture(scope="module")
def etcd_transcript(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list]:
    m = Member(
        data_dir=tmp_path_factory.mktemp("etcd") / "default.etcd",
        command=[etcd_bin("etcd")],
        extra=["--log-level", "error"],
    ).start()
    try:
        yield transcript(m)
    finally:
        m.stop()


@pytest.fixture(scope="module")
def etcdcore_transcript(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list]:
    m = Member(data_dir=tmp_path_factory.mktemp("etcdcore") / "default.etcd").start()
    try:
        yield transcript(m)
    finally:
        m.stop()


@pytest.mark.parametrize("step", range(len(SCRIPT)), ids=[" ".join(a) for a in SCRIPT])
def test_etcdctl_lease_commands_print_what_etcd_prints(
    step: int, etcd_transcript: list, etcdcore_transcript: list
) -> None:
    assert etcdcore_transcript[step] == etcd_transcript[step]


def test_the_lease_ids_were_masked_not_lost(etcdcore_transcript: list) -> None:
    # Guards the masking: the grants and the revocations name the leases.
    texts = [stdout for _, _, stdout, _ in etcdcore_transcript]
    assert texts[0] == "lease <a> granted with TTL(100s)"
    assert texts[12] == "lease <a> revoked"
