"""Distributed lock: run critical sections one at a time across processes and hosts.

``client.lock(NAME)`` takes the lock ``NAME`` through the server's Lock
service: it blocks until every earlier holder or waiter is gone, and the lock
is bound to a lease the client keeps alive meanwhile. Leaving the block
unlocks; a holder that crashes (or hangs, or loses the server) stops renewing
its lease, so the lock is released at most ``--ttl`` seconds later.

- ``run NAME -- CMD...`` runs a command while holding the lock, like
  ``flock(1)`` across machines, and exits with the command's status.
- ``append NAME FILE`` appends ``BEGIN <tag> <i>`` then, after ``--hold``
  seconds, ``END <tag> <i>`` to FILE under the lock, ``--times`` times. Start
  several at once: each BEGIN line is followed by its own END, never by
  another process's lines.

Run it against an etcd v3 server (etcdcore or etcd) on 127.0.0.1:2379::

    python docs/examples/distributed_lock.py run backups -- tar czf /tmp/b.tgz /etc
    for i in 1 2 3; do
        python docs/examples/distributed_lock.py append demo /tmp/demo.log --tag p$i &
    done; wait; cat /tmp/demo.log

A lease-based lock cannot stop a holder that stalled past its TTL from going
on, after the lock passed to someone else; where that matters, give the
resource the lock key's create revision as a fencing token and have it refuse
writes carrying an older one.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from etcdcore.client import Client, EtcdError


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so ``with`` blocks unwind and unlock."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def run(client: Client, name: str, command: list[str], ttl: int) -> int:
    """Run ``command`` holding the lock; its exit status."""
    with client.lock(name, ttl=ttl) as key:
        print(f"locked {name} ({key.decode(errors='replace')})", file=sys.stderr)
        status = subprocess.run(command).returncode
    print(f"unlocked {name}", file=sys.stderr)
    return status


def append_line(path: Path, line: str) -> None:
    # O_APPEND, and one write per line: lines from different processes could
    # only mix up in their order, which is what the lock has to prevent.
    with open(path, "a") as f:
        f.write(line + "\n")


def append(
    client: Client, name: str, path: Path, tag: str, times: int, hold: float, ttl: int
) -> None:
    for i in range(times):
        with client.lock(name, ttl=ttl):
            append_line(path, f"BEGIN {tag} {i}")
            time.sleep(hold)
            append_line(path, f"END {tag} {i}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--endpoints",
        default="127.0.0.1:2379",
        help="comma-separated host:port list (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "run",
        help="run a command while holding the lock",
        usage="%(prog)s [--ttl TTL] name -- CMD...",
    )
    p.add_argument("name", help="lock name")
    p.add_argument("--ttl", type=int, default=10, help="lease TTL in seconds (default: 10)")
    p = sub.add_parser("append", help="append BEGIN/END line pairs to a file under the lock")
    p.add_argument("name", help="lock name")
    p.add_argument("file", type=Path)
    p.add_argument("--tag", default=str(os.getpid()), help="this writer's tag (default: PID)")
    p.add_argument("--times", type=int, default=10, help="how many pairs (default: 10)")
    p.add_argument("--hold", type=float, default=0.05, help="seconds between BEGIN and END")
    p.add_argument("--ttl", type=int, default=10, help="lease TTL in seconds (default: 10)")
    # Everything after the first "--" is the command for ``run``, options included.
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, cmd = argv[:cut], argv[cut + 1 :]
    args = parser.parse_args(argv)

    exit_on_sigterm()
    with Client(args.endpoints.split(",")) as client:
        try:
            if args.command == "run":
                if not cmd:
                    parser.error("run: no command given (run NAME -- CMD...)")
                return run(client, args.name, cmd, args.ttl)
            if cmd:
                parser.error("append takes no command")
            append(client, args.name, args.file, args.tag, args.times, args.hold, args.ttl)
        except KeyboardInterrupt:
            return 130
        except EtcdError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
