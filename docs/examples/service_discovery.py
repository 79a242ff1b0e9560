"""Service discovery: instances register under a lease, clients watch the set.

Each instance of a service writes ``services/NAME/<id> = ADDR`` bound to a lease
and keeps that lease alive while it runs. Stopping it (SIGTERM or Ctrl-C)
revokes the lease, so the key goes at once; if the process crashes or hangs,
the lease is no longer renewed and the server deletes the key when its TTL
runs out. Either way, whoever watches ``services/NAME/`` sees the instance go.

Run it against an etcd v3 server (etcdcore or etcd) on 127.0.0.1:2379::

    # terminal 1: follow the instances of "web"
    python docs/examples/service_discovery.py discover web

    # terminals 2 and 3: two instances (Ctrl-C, or kill one, and watch terminal 1)
    python docs/examples/service_discovery.py register web 10.0.0.1:8080 --ttl 5
    python docs/examples/service_discovery.py register web 10.0.0.2:8080 --ttl 5

``discover`` prints the instances there now, a ``# watching ...`` line, then
one line per change: ``up <id> <addr>`` or ``down <id>``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence

from etcdcore.client import Client, CompactedError, EtcdError, LeaseLostError, UnavailableError

#: Every service's instances live under ``services/<name>/``.
ROOT = "services/"


def service_prefix(name: str) -> str:
    return f"{ROOT}{name}/"


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT (instead of dying on the spot)."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def register(client: Client, name: str, instance_id: str, addr: str, ttl: int) -> None:
    """Keep ``services/NAME/<id> = addr`` registered until SIGTERM/SIGINT."""
    stop = stop_on_signals()
    key = service_prefix(name) + instance_id
    while not stop.is_set():
        try:
            # client.lease() renews the lease every ttl/3 s on a thread of its
            # own, sets lease.lost if it expired anyway (the server unreachable
            # for longer than the TTL), and revokes it when the block ends,
            # which deletes the key.
            with client.lease(ttl) as lease:
                client.put(key, addr, lease=lease.id)
                print(f"registered {key} = {addr} (lease {lease.id:x}, ttl {lease.ttl}s)")
                while lease.alive and not stop.wait(0.1):
                    pass
        except LeaseLostError as e:
            print(f"lease {e.lease_id:x} expired; registering again", file=sys.stderr)
        except UnavailableError as e:
            print(f"etcd unavailable ({e.message}); retrying", file=sys.stderr)
            stop.wait(1)
    print(f"deregistered {key}")


def print_changes(old: dict[str, str], new: dict[str, str]) -> None:
    """``up``/``down`` lines for the difference between two sets of instances."""
    for instance_id in sorted(old.keys() - new.keys()):
        print(f"down {instance_id}")
    for instance_id, addr in sorted(new.items()):
        if old.get(instance_id) != addr:
            print(f"up {instance_id} {addr}")


def discover(client: Client, name: str) -> None:
    """Print the instances of ``name``, then every change to them, forever."""
    prefix = service_prefix(name)
    instances: dict[str, str] = {}
    while True:
        # Read the current set, then watch from the revision right after that
        # read: no change can fall between the two.
        now = client.get(prefix, prefix=True)
        current = {kv.key.decode()[len(prefix) :]: kv.value.decode() for kv in now.kvs}
        print_changes(instances, current)
        instances = current
        watch = client.watch(prefix, prefix=True, start_revision=now.revision + 1)
        print(f"# {len(instances)} instance(s) of {name}; watching {prefix} for changes")
        try:
            for events in watch:
                for event in events:
                    instance_id = event.kv.key.decode()[len(prefix) :]
                    changed = dict(instances)
                    if event.type == "PUT":
                        changed[instance_id] = event.kv.value.decode()
                    else:
                        changed.pop(instance_id, None)
                    print_changes(instances, changed)
                    instances = changed
        except CompactedError:
            # We fell so far behind that the history we need is gone (this
            # only happens after a long disconnection): read the set again.
            print("# history compacted; reading the set again", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--endpoints",
        default="127.0.0.1:2379",
        help="comma-separated host:port list (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    reg = sub.add_parser("register", help="register an instance until SIGTERM/SIGINT")
    reg.add_argument("name", help="service name")
    reg.add_argument("addr", help="the address clients should use, e.g. 10.0.0.1:8080")
    reg.add_argument("--ttl", type=int, default=10, help="lease TTL in seconds (default: 10)")
    reg.add_argument(
        "--id",
        default=f"{socket.gethostname()}-{os.getpid()}",
        help="instance id (default: HOST-PID)",
    )
    disc = sub.add_parser("discover", help="print the instances, then follow changes")
    disc.add_argument("name", help="service name")
    args = parser.parse_args(argv)

    # Line-buffered output, so a pipe (or a test) sees each line as it happens.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    with Client(args.endpoints.split(",")) as client:
        try:
            if args.command == "register":
                register(client, args.name, args.id, args.addr, args.ttl)
            else:
                discover(client, args.name)
        except KeyboardInterrupt:
            return 130
        except EtcdError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
