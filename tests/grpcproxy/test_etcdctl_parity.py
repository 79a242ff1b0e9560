"""The real etcdctl through etcdcore's proxy prints what it prints through
etcd 3.5.1's own proxy, for every command etcd's proxy serves, with and
without --namespace, in front of an etcdcore cluster and of a real etcd.

Each transcript runs on a fresh cluster, so the two proxies see the same
history; ids, terms, addresses and timings are masked (see transcript.py).
etcd's proxy answers `lease keep-alive --once` only on its lessor's next
renewal (up to a third of the TTL later), so that command is tested on its
own in test_proxy_api.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from backends import start_member
from transcript import SCRIPT, transcript

from harness import GrpcProxy

CASES = [
    ("etcdcore", ""),
    ("etcd", ""),
    ("etcdcore", "/tenant-a/"),
    ("etcd", "/tenant-a/"),
]


def run(base: Path, backend: str, namespace: str, real: bool) -> list:
    m = start_member(base, backend)
    extra = [f"--namespace={namespace}"] if namespace else []
    p = GrpcProxy(endpoints=m.endpoint, log_dir=base, real=real, extra=extra)
    try:
        p.start()
        return transcript(p)
    finally:
        p.stop()
        m.stop()


@pytest.fixture(scope="module", params=CASES, ids=[f"{b}{'+ns' if n else ''}" for b, n in CASES])
def transcripts(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list, list]]:
    backend, namespace = request.param
    theirs = run(tmp_path_factory.mktemp("etcd-proxy"), backend, namespace, real=True)
    ours = run(tmp_path_factory.mktemp("proxy"), backend, namespace, real=False)
    yield theirs, ours


@pytest.mark.parametrize("step", range(len(SCRIPT)), ids=[" ".join(a) for a, _ in SCRIPT])
def test_etcdctl_prints_what_it_prints_through_etcds_proxy(
    step: int, transcripts: tuple[list, list]
) -> None:
    theirs, ours = transcripts
    assert ours[step] == theirs[step]


def test_the_script_did_work(transcripts: tuple[list, list]) -> None:
    # Guard against two proxies failing alike: the writes and reads succeeded.
    _, ours = transcripts
    by_cmd: dict[str, tuple[int, str]] = {}
    for cmd, code, out, _ in ours:
        by_cmd.setdefault(cmd, (code, out))
    assert by_cmd["put a 1"] == (0, "OK")
    assert by_cmd["get a"] == (0, "a\n4")
    assert by_cmd["--user=alice:alicepw put a 9"][0] != 0
    assert by_cmd["--user=root:rootpw put a 10"][0] == 0
