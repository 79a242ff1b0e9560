"""pytest fixtures for applications that use etcd: a real etcdcore member per
test, no processes to manage. Installed as a pytest plugin with the package.

    def test_my_service(etcd_member):
        client = MyService(endpoints=[etcd_member.endpoint])
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from etcdcore.embed import EmbeddedMember


@pytest.fixture
def etcd_member(tmp_path: Path) -> Iterator[EmbeddedMember]:
    """A fresh embedded etcdcore member, stopped after the test."""
    member = EmbeddedMember(tmp_path / "etcd-member").start()
    try:
        yield member
    finally:
        member.stop()
