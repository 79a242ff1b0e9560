"""Auto-compaction (--auto-compaction-mode / --auto-compaction-retention), as
etcd 3.5's compactor does it, on the leader only.

- ``periodic``: keep ``retention`` seconds of history. The compactor samples the
  store's revision every tenth of the compaction period (the retention, at most
  one hour) and, once per period, compacts at the newest sample that is at least
  ``retention`` old.
- ``revision``: keep ``retention`` revisions. Every five minutes it compacts at
  ``current - retention`` when that moved since the last compaction.

Compactions go through Raft like a client's Compact; "already compacted" is
not an error here (somebody compacted further).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from etcdcore._core import Core, CoreError
from etcdcore.bridge import OUT_OF_RANGE

log = logging.getLogger("etcdcore.compactor")

#: etcd's revision compactor checks this often.
REVISION_INTERVAL = 300.0
#: etcd's periodic compactor never waits longer than this between compactions.
MAX_PERIOD = 3600.0


class Compactor:
    """Decides when and where to compact; ``step()`` is one tick of the schedule."""

    def __init__(
        self,
        core: Core,
        mode: str,
        retention: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        revision_interval: float = REVISION_INTERVAL,
    ) -> None:
        self.core = core
        self.mode = mode
        self.retention = retention
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()
        self._last_compacted = 0
        self._last_run = clock()
        if mode == "periodic":
            self.period = min(retention, MAX_PERIOD)
            self.interval = max(self.period / 10, 0.05)
        else:
            self.period = revision_interval
            self.interval = revision_interval

    def target(self) -> int | None:
        """The revision to compact at now, or None."""
        now = self._clock()
        revision = self.core.header()[2]
        if self.mode == "revision":
            rev = revision - int(self.retention)
            return rev if rev > 0 and rev > self._last_compacted else None
        self._samples.append((now, revision))
        cutoff = now - self.retention
        # Keep only the newest sample old enough, and everything younger.
        while len(self._samples) > 1 and self._samples[1][0] <= cutoff:
            self._samples.popleft()
        if now - self._last_run < self.period:
            return None
        t, rev = self._samples[0]
        if t > cutoff or rev <= self._last_compacted:
            return None
        return rev

    async def step(self) -> int | None:
        """Compact if it is time (leader only); returns the revision compacted at."""
        if not self.core.is_leader():
            self._samples.clear()
            return None
        rev = self.target()
        if rev is None:
            return None
        self._last_run = self._clock()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self.core.compact, rev)
        except CoreError as e:
            if e.args[0] != OUT_OF_RANGE:
                log.warning("auto compaction failed", extra={"fields": {"error": e.args[1]}})
                return None
        self._last_compacted = rev
        log.info(
            "completed auto compaction",
            extra={"fields": {"mode": self.mode, "revision": rev}},
        )
        return rev

    async def run(self) -> None:
        """Run the schedule until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.step()
            except Exception:  # noqa: BLE001 - the schedule must keep running
                log.exception("auto compaction failed")
