"""A linearizability checker for key-value histories (Wing & Gong's search with
porcupine's refinements).

A history is the operations concurrent clients ran, each with the time it was
called and the time its answer came back. It is linearizable when every
operation can be given one instant between its call and its return such that,
in that order, a plain sequential map gives the answers the clients saw.

- Operations touch one key each, so the history splits per key and each part is
  checked alone (P-compositionality): small searches instead of one huge one.
- The search memoises (set of operations placed, map state): a state reached
  twice is explored once.
- A write whose answer never came (timeout, connection lost) is *ambiguous*: it
  may take effect at any instant after its call, or never. It has no return
  time and its result is not checked.
- A step budget bounds the search; past it the answer is ``unknown``, never a
  wrong verdict.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

Value = str | None
Kind = Literal["put", "get", "delete", "cas"]


@dataclass
class Op:
    """One client operation on one key.

    put: ``arg`` is the value, output None. get: output is the value read (None:
    absent). delete: output is the number of keys deleted. cas: ``arg`` is
    (expected value or None for "absent", new value); output is whether it swapped.
    """

    client: int
    kind: Kind
    key: str
    arg: object
    call: int
    ret: float = math.inf
    output: object = None
    ambiguous: bool = False
    id: int = 0


def step(state: Value, op: Op) -> tuple[bool, Value]:
    """Apply ``op`` to one key's value: (the output matches, the new value)."""
    if op.kind == "put":
        return True, str(op.arg)
    if op.kind == "get":
        return op.output == state, state
    if op.kind == "delete":
        deleted = 0 if state is None else 1
        return op.ambiguous or op.output == deleted, None
    expected, new = op.arg  # type: ignore[misc]
    swapped = state == expected
    if op.ambiguous:
        return True, new if swapped else state
    return op.output == swapped, new if swapped else state


@dataclass
class Result:
    """The verdict: ``ok``, ``illegal`` (with an explanation) or ``unknown``."""

    verdict: Literal["ok", "illegal", "unknown"]
    explanation: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"


class _Budget(Exception):
    pass


def check_key(ops: list[Op], max_steps: int = 2_000_000) -> tuple[bool | None, str]:
    """Search a linearization of one key's operations (None: budget exhausted)."""
    ops = sorted(ops, key=lambda o: o.call)
    n = len(ops)
    required = 0
    for i, o in enumerate(ops):
        if not o.ambiguous:
            required |= 1 << i
    seen: set[tuple[int, Value]] = set()
    steps = 0
    best: tuple[int, list[int]] = (-1, [])
    # Iterative DFS: each frame is (placed mask, state, order so far, candidate iterator).
    stack: list[tuple[int, Value, list[int], Iterator[int]]] = []

    def candidates(mask: int) -> Iterator[int]:
        first_return = min((ops[i].ret for i in range(n) if not mask >> i & 1), default=math.inf)
        return (i for i in range(n) if not mask >> i & 1 and ops[i].call <= first_return)

    stack.append((0, None, [], candidates(0)))
    while stack:
        mask, state, order, it = stack[-1]
        if mask & required == required:
            return True, ""
        placed = bin(mask & required).count("1")
        if placed > best[0]:
            best = (placed, order)
        for i in it:
            steps += 1
            if steps > max_steps:
                return None, "search budget exhausted"
            ok, new_state = step(state, ops[i])
            nmask = mask | 1 << i
            if ok and (nmask, new_state) not in seen:
                seen.add((nmask, new_state))
                stack.append((nmask, new_state, [*order, i], candidates(nmask)))
                break
        else:
            stack.pop()
    placed = best[1]
    lines = [f"  {ops[i].client}: {_fmt(ops[i])}" for i in placed]
    stuck = [
        f"  {o.client}: {_fmt(o)}" for i, o in enumerate(ops) if i not in placed and not o.ambiguous
    ]
    return False, (
        "longest linearizable prefix:\n"
        + "\n".join(lines)
        + "\nthen none of these fits:\n"
        + "\n".join(stuck[:10])
    )


def _fmt(o: Op) -> str:
    out = "?" if o.ambiguous else repr(o.output)
    ret = "inf" if o.ret == math.inf else f"{o.ret / 1e6:.1f}ms"
    return f"{o.kind}({o.key!r}, {o.arg!r}) -> {out} [{o.call / 1e6:.1f}ms..{ret}]"


def check(ops: list[Op], max_steps_per_key: int = 2_000_000) -> Result:
    """Check a whole history, key by key."""
    by_key: dict[str, list[Op]] = defaultdict(list)
    for o in ops:
        by_key[o.key].append(o)
    unknown = False
    for key, key_ops in sorted(by_key.items()):
        ok, why = check_key(key_ops, max_steps_per_key)
        if ok is False:
            return Result("illegal", f"key {key!r} is not linearizable\n{why}")
        if ok is None:
            unknown = True
    return Result("unknown" if unknown else "ok")


@dataclass
class History:
    """Operations recorded from many threads; times from one monotonic clock."""

    ops: list[Op] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count = field(default_factory=itertools.count)
    _t0: int = field(default_factory=time.monotonic_ns)

    @contextlib.contextmanager
    def record(self, client: int, kind: Kind, key: str, arg: object = None) -> Iterator[Recording]:
        """Record one operation: call ``ok(output)`` on the answer, or
        ``ambiguous()`` when a write's fate is unknown. An operation that is
        neither (e.g. a failed read) is left out of the history."""
        op = Op(client, kind, key, arg, call=time.monotonic_ns() - self._t0)
        rec = Recording(op, self)
        yield rec
        if rec.done:
            with self._lock:
                op.id = next(self._ids)
                self.ops.append(op)

    def now(self) -> int:
        return time.monotonic_ns() - self._t0


@dataclass
class Recording:
    op: Op
    history: History
    done: bool = False

    def ok(self, output: object = None) -> None:
        self.op.ret = self.history.now()
        self.op.output = output
        self.done = True

    def ambiguous(self) -> None:
        self.op.ambiguous = True
        self.done = True
