"""The checker itself: known linearizable and non-linearizable histories."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from linearizability import Op, check, step


def op(client: int, kind: str, arg: object, call: int, ret: float, output: object = None) -> Op:
    return Op(client, kind, "k", arg, call=call, ret=ret, output=output)  # type: ignore[arg-type]


def ambiguous(client: int, kind: str, arg: object, call: int) -> Op:
    return Op(client, kind, "k", arg, call=call, ambiguous=True)  # type: ignore[arg-type]


def test_sequential_put_then_get_is_linearizable() -> None:
    assert check([op(1, "put", "a", 0, 1), op(2, "get", None, 2, 3, "a")]).ok


def test_stale_read_after_a_completed_write_is_illegal() -> None:
    h = [op(1, "put", "a", 0, 1), op(1, "put", "b", 2, 3), op(2, "get", None, 4, 5, "a")]
    r = check(h)
    assert r.verdict == "illegal"
    assert "get" in r.explanation


def test_concurrent_reads_may_see_a_concurrent_write_or_not() -> None:
    h = [op(1, "put", "a", 0, 10), op(2, "get", None, 1, 2, None), op(3, "get", None, 3, 4, "a")]
    assert check(h).ok


def test_readers_disagreeing_on_the_order_of_two_writes_is_illegal() -> None:
    h = [
        op(1, "put", "a", 0, 10),
        op(2, "put", "b", 0, 10),
        op(3, "get", None, 11, 12, "a"),
        op(4, "get", None, 13, 14, "b"),
        op(3, "get", None, 15, 16, "a"),
    ]
    assert check(h).verdict == "illegal"


def test_two_successful_cas_from_the_same_value_is_illegal() -> None:
    h = [
        op(1, "put", "x", 0, 1),
        op(2, "cas", ("x", "y"), 2, 5, True),
        op(3, "cas", ("x", "z"), 2, 5, True),
    ]
    assert check(h).verdict == "illegal"


def test_an_ambiguous_write_may_appear_later() -> None:
    h = [ambiguous(1, "put", "a", 0), op(2, "get", None, 5, 6, None), op(2, "get", None, 7, 8, "a")]
    assert check(h).ok


def test_an_ambiguous_write_may_never_appear() -> None:
    h = [ambiguous(1, "put", "a", 0), op(2, "get", None, 5, 6, None)]
    assert check(h).ok


def test_an_ambiguous_write_that_appears_then_vanishes_is_illegal() -> None:
    h = [
        ambiguous(1, "put", "a", 0),
        op(2, "get", None, 5, 6, "a"),
        op(2, "get", None, 7, 8, None),
    ]
    assert check(h).verdict == "illegal"


def test_delete_count_must_match_presence() -> None:
    assert check([op(1, "delete", None, 0, 1, 0), op(1, "put", "a", 2, 3)]).ok
    assert check([op(1, "delete", None, 0, 1, 1)]).verdict == "illegal"


def test_keys_are_checked_independently() -> None:
    a = Op(1, "put", "a", "1", call=0, ret=1)
    b = Op(2, "get", "b", None, call=2, ret=3, output="1")
    assert check([a, b]).verdict == "illegal"


@st.composite
def sequential_histories(draw: st.DrawFn) -> list[Op]:
    """A sequential run of the model, then stretched windows around each op."""
    rnd = random.Random(draw(st.integers(0, 2**32)))
    n = draw(st.integers(1, 30))
    state = None
    ops = []
    for i in range(n):
        kind = rnd.choice(["put", "get", "delete", "cas"])
        arg: object = None
        if kind == "put":
            arg = f"v{i}"
        elif kind == "cas":
            arg = (rnd.choice([state, "v0", None]), f"v{i}")
        o = Op(rnd.randrange(4), kind, "k", arg, call=0)  # type: ignore[arg-type]
        o.output = {"get": state, "delete": 0 if state is None else 1}.get(kind)
        if kind == "cas":
            o.output = state == arg[0]  # type: ignore[index]
        _, state = step(state, Op(0, kind, "k", arg, call=0, output=o.output))  # type: ignore[arg-type]
        point = 10 * i
        o.call = point - rnd.randrange(0, 25)
        o.ret = point + rnd.randrange(0, 25)
        ops.append(o)
    return ops


@settings(max_examples=150, deadline=None)
@given(sequential_histories())
def test_histories_from_a_sequential_run_are_linearizable(ops: list[Op]) -> None:
    assert check(ops).ok


@settings(max_examples=100, deadline=None)
@given(sequential_histories())
def test_a_read_of_a_value_never_written_is_illegal(ops: list[Op]) -> None:
    ops.append(Op(9, "get", "k", None, call=10_000, ret=10_001, output="never-written"))
    assert check(ops).verdict == "illegal"


def test_ambiguous_ops_have_no_return_time() -> None:
    assert ambiguous(1, "put", "a", 0).ret == math.inf
