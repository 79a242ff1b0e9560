"""Fixtures for the client tests: one server per module, etcdcore and real etcd
alike."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from etcdcore.client import Client
from harness import Member, etcd_bin


@pytest.fixture(scope="module", params=["etcdcore", "etcd"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Member]:
    """A single-member server for the module: etcdcore, then real etcd 3.5."""
    data = tmp_path_factory.mktemp(request.param) / "data"
    if request.param == "etcd":
        m = Member(data_dir=data, command=[etcd_bin("etcd")])
    else:
        m = Member(data_dir=data)
    m.start()
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture
def client(server: Member) -> Iterator[Client]:
    with Client([server.endpoint]) as c:
        yield c
