"""Waiting in tests with a deadline."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from typing import TypeVar

import pytest

T = TypeVar("T")


def next_within(it: Iterator[T], seconds: float) -> T:
    """``next(it)``, failing the test when nothing comes within ``seconds``."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(next, it)
        try:
            return future.result(timeout=seconds)
        except concurrent.futures.TimeoutError:
            pytest.fail(f"nothing came within {seconds}s")
