"""Side by side with the real etcd 3.5.1: the same etcdctl script against a
fresh etcd and a fresh etcdcore must print the same thing (after masking the
ids and terms that differ by nature)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from harness import Member, etcd_bin

# (args, stdin) run in order against each server.
SCRIPT: list[tuple[list[str], str | None]] = [
    (["put", "a", "1"], None),
    (["put", "b", "2"], None),
    (["put", "c", "3"], None),
    (["put", "a", "4", "--prev-kv"], None),
    (["get", "a"], None),
    (["get", "a", "c"], None),
    (["get", "", "--prefix", "--keys-only"], None),
    (["get", "", "--from-key", "--limit", "2"], None),
    (["get", "", "--prefix", "--sort-by=MODIFY", "--order=DESCEND"], None),
    (["get", "", "--prefix", "--count-only", "-w", "json"], None),
    (["get", "a", "-w", "json"], None),
    (["get", "a", "-w", "fields"], None),
    (["get", "b", "--rev=2"], None),
    (["get", "a", "--consistency=s", "--print-value-only"], None),
    (["put", "nokey", "--ignore-value"], None),
    (["put", "a", "--ignore-value"], None),
    (["get", "a", "-w", "json"], None),
    (["get", "a", "--rev=99"], None),
    (["txn"], 'mod("a") > "0"\n\nput x 1\nget a\n\nput y 2\n\n'),
    (["txn", "-w", "json"], 'version("zz") = "0"\n\nput zz 1\n\n\n'),
    (["del", "b", "--prev-kv"], None),
    (["del", "nothing"], None),
    (["compaction", "4"], None),
    (["get", "a", "--rev=3"], None),
    (["compaction", "2"], None),
    (["del", "", "--prefix"], None),
    (["get", "", "--prefix"], None),
    (["put", "", "v"], None),
    (["lease", "revoke", "123"], None),
    (["lease", "timetolive", "123"], None),
    (["alarm", "list"], None),
]

IDS = re.compile(r'("?(cluster_id|member_id|raft_term|ClusterID|MemberID|RaftTerm)"?\s*:\s*)\d+')


def mask(text: str) -> str:
    text = IDS.sub(r"\g<1>0", text)
    # etcdctl's own log lines carry timestamps and client-internal addresses.
    return "\n".join(line for line in text.splitlines() if not line.startswith('{"level"'))


def transcript(m: Member) -> list[tuple[str, int, str, str]]:
    out = []
    for args, stdin in SCRIPT:
        proc = m.etcdctl(*args, input=stdin, check=False)
        out.append((" ".join(args), proc.returncode, mask(proc.stdout), mask(proc.stderr)))
    return out


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


@pytest.mark.parametrize("step", range(len(SCRIPT)), ids=[" ".join(a) for a, _ in SCRIPT])
def test_etcdctl_prints_what_etcd_prints(
    step: int, etcd_transcript: list, etcdcore_transcript: list
) -> None:
    assert etcdcore_transcript[step] == etcd_transcript[step]


def test_json_shapes_match(etcd_transcript: list, etcdcore_transcript: list) -> None:
    # Guard against masking hiding everything: the json steps parse on both.
    for (cmd, _, a, _), (_, _, b, _) in zip(etcd_transcript, etcdcore_transcript, strict=True):
        if "-w json" in cmd and a.strip():
            assert json.loads(a).keys() == json.loads(b).keys()
