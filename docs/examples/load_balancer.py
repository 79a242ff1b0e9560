"""Client-side load balancing over the instances found by service discovery.

The instances of a service register themselves as ``services/NAME/<id> = ADDR``
under a lease (see ``service_discovery.py``). A :class:`Balancer` reads that set
once and then keeps it current with a watch running on a background thread, so
an instance that stops, or dies and lets its lease expire, drops out of the
rotation, and a new one joins it, without polling. :meth:`Balancer.next`
hands out the live addresses in turn (round-robin, in instance-id order).

As a library::

    from load_balancer import Balancer

    with Balancer(["127.0.0.1:2379"], "web") as balancer:
        addr = balancer.next()      # NoEndpointError when no instance is up

From the command line, against an etcd v3 server on 127.0.0.1:2379::

    python docs/examples/service_discovery.py register web 10.0.0.1:8080 &
    python docs/examples/service_discovery.py register web 10.0.0.2:8080 &
    python docs/examples/load_balancer.py pick web --count 4
    # 10.0.0.1:8080, 10.0.0.2:8080, 10.0.0.1:8080, 10.0.0.2:8080 (one a line)

``--interval S`` waits S seconds between picks, to see the rotation follow
instances that come and go.
"""

from __future__ import annotations

import argparse
import bisect
import sys
import threading
import time
from collections.abc import Generator, Sequence

from etcdcore.client import Client, CompactedError, EtcdError, Event

#: Every service's instances live under ``services/<name>/``.
ROOT = "services/"


class NoEndpointError(LookupError):
    """No instance of the service is registered."""


class Balancer:
    """Round-robin over the live instances of one service.

    The instance set is followed by a watch on a thread of its own, over a
    client this balancer owns (closing that client is what ends the watch).
    Thread-safe: :meth:`next` may be called from any thread.
    """

    def __init__(self, endpoints: Sequence[str], name: str) -> None:
        self.name = name
        self.prefix = f"{ROOT}{name}/"
        self._client = Client(endpoints)
        self._lock = threading.Lock()
        self._instances: dict[str, str] = {}  # instance id -> address
        self._last: str | None = None  # the instance id picked last
        self._closed = False
        # Read the set and start watching before returning, so the balancer
        # is current from the start.
        try:
            watch = self._resync()
        except BaseException:
            self._client.close()
            raise
        self._thread = threading.Thread(
            target=self._follow, args=(watch,), daemon=True, name=f"balancer-{name}"
        )
        self._thread.start()

    def next(self) -> str:
        """The next live address, round-robin."""
        with self._lock:
            if not self._instances:
                raise NoEndpointError(f"no live instance of {self.name!r}")
            ids = sorted(self._instances)
            # The first instance after the one picked last, wrapping around; so
            # the turn order holds while instances come and go.
            i = 0 if self._last is None else bisect.bisect_right(ids, self._last)
            self._last = ids[i % len(ids)]
            return self._instances[self._last]

    def addresses(self) -> list[str]:
        """The live addresses, in turn order."""
        with self._lock:
            return [self._instances[i] for i in sorted(self._instances)]

    def close(self) -> None:
        """Stop following the instances."""
        self._closed = True
        self._client.close()  # cancels the watch the thread is blocked in
        self._thread.join(5)

    def __enter__(self) -> Balancer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- following the instance set -------------------------------------------------
    def _resync(self) -> Generator[list[Event], None, None]:
        """Read the whole set; return a watch starting right after that read."""
        now = self._client.get(self.prefix, prefix=True)
        with self._lock:
            self._instances = {self._id(kv.key): kv.value.decode() for kv in now.kvs}
        return self._client.watch(self.prefix, prefix=True, start_revision=now.revision + 1)

    def _id(self, key: bytes) -> str:
        return key.decode()[len(self.prefix) :]

    def _follow(self, watch: Generator[list[Event], None, None]) -> None:
        while not self._closed:
            try:
                for events in watch:
                    with self._lock:
                        for e in events:
                            if e.type == "PUT":
                                self._instances[self._id(e.kv.key)] = e.kv.value.decode()
                            else:
                                self._instances.pop(self._id(e.kv.key), None)
                # The watch ended without an error: start over.
            except CompactedError:
                pass  # fell behind a compaction: read the set again
            except (EtcdError, ValueError) as e:
                if self._closed:
                    return  # our own close() cancelled the watch
                print(f"balancer: watch failed ({e}); reading again", file=sys.stderr)
                time.sleep(1)
            if self._closed:
                return
            try:
                watch = self._resync()
            except (EtcdError, ValueError) as e:
                if self._closed:
                    return
                print(f"balancer: cannot read {self.prefix} ({e})", file=sys.stderr)
                time.sleep(1)


def pick(endpoints: Sequence[str], name: str, count: int, interval: float) -> int:
    """Print ``count`` picks; 1 if some found no live instance."""
    status = 0
    with Balancer(endpoints, name) as balancer:
        for i in range(count):
            if i and interval:
                time.sleep(interval)
            try:
                print(balancer.next())
            except NoEndpointError as e:
                print(f"error: {e}", file=sys.stderr)
                status = 1
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--endpoints",
        default="127.0.0.1:2379",
        help="comma-separated host:port list (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pick", help="print round-robin picks among the live instances")
    p.add_argument("name", help="service name")
    p.add_argument("--count", type=int, default=1, help="how many picks (default: 1)")
    p.add_argument("--interval", type=float, default=0.0, help="seconds between picks")
    args = parser.parse_args(argv)

    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    try:
        return pick(args.endpoints.split(","), args.name, args.count, args.interval)
    except KeyboardInterrupt:
        return 130
    except EtcdError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
