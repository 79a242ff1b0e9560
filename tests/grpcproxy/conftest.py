"""Fixtures for the gRPC proxy tests: clusters (etcdcore or etcd 3.5.1) with
proxies (etcdcore's or etcd's) in front of them."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from backends import start_member  # noqa: E402

from harness import GrpcProxy, Member  # noqa: E402


@pytest.fixture(scope="module")
def backend_member(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Member]:
    """One etcdcore member for a module."""
    m = start_member(tmp_path_factory.mktemp("backend"), "etcdcore")
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture(scope="module")
def proxy(backend_member: Member, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcProxy]:
    """etcdcore's proxy in front of the module's member."""
    p = GrpcProxy(endpoints=backend_member.endpoint, log_dir=tmp_path_factory.mktemp("proxy"))
    p.start()
    try:
        yield p
    finally:
        p.stop()
