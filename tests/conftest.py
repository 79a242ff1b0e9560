"""Shared fixtures: a fresh etcdcore member per test, or one per module."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import Member  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("ETCDCORE_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set ETCDCORE_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def member(tmp_path: Path) -> Iterator[Member]:
    """A fresh single-member etcdcore, stopped (SIGTERM) after the test."""
    m = Member(data_dir=tmp_path / "default.etcd").start()
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture(scope="module")
def shared_member(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Member]:
    """One etcdcore for a whole module (tests must use their own key prefixes)."""
    m = Member(data_dir=tmp_path_factory.mktemp("shared") / "default.etcd").start()
    try:
        yield m
    finally:
        m.stop()
