"""When a kept-alive lease is renewed, and when it must be taken as lost.

Shared by both clients' ``lease()``: a lease is lost when the server says it
is gone (a keep-alive answers TTL 0, or the lease is not found), or when no
renewal got through before it would have expired (the server unreachable, or
this process paused for longer than the TTL). Expiry is counted from when a
renewal was *sent*, so a slow answer makes the client cautious, never late.
"""

from __future__ import annotations

#: How often a failed renewal is tried again, seconds.
RETRY_INTERVAL = 0.5


class Renewals:
    """The renewal schedule of one lease."""

    def __init__(self, ttl: int, granted_at: float) -> None:
        self.ttl = ttl
        #: When the lease expires at the latest, by the last renewal.
        self.expires_at = granted_at + ttl

    def interval(self) -> float:
        """Seconds until the next renewal after a successful one (ttl/3)."""
        return max(self.ttl / 3, RETRY_INTERVAL)

    def renewed(self, sent_at: float, ttl: int) -> bool:
        """A renewal sent at ``sent_at`` answered ``ttl``; True when that means
        the lease is gone."""
        if ttl <= 0:
            return True
        self.expires_at = sent_at + ttl
        return False

    def failed(self, now: float) -> bool:
        """A renewal failed (no answer); True when the lease must be taken as
        lost because it would have expired by ``now``."""
        return now >= self.expires_at
