r"""Configuration centre: versioned settings under a key prefix, with rollback.

A service's settings live as one key per setting under a prefix, e.g.
``config/web/db.host``. Because etcd keeps every revision (until compacted),
the whole configuration as it was at any past revision can be read back and
written again: a rollback.

- ``load FILE PREFIX`` writes a ``key=value`` file (``#`` comments and blank
  lines are ignored) under PREFIX in one transaction, so watchers never see
  half a file, and prints the revision it was written at.
- ``show PREFIX [--revision R]`` prints the settings, now or at revision R.
- ``watch PREFIX`` prints each change with the revision that made it.
- ``rollback PREFIX REVISION`` makes PREFIX hold exactly what it held at
  REVISION, in one transaction: changed keys get their old value back, keys
  created since are deleted, and deleted ones come back.

Run it against an etcd v3 server (etcdcore or etcd) on 127.0.0.1:2379::

    printf 'db.host=10.0.0.5\ndb.pool=10\n' > web.conf
    python docs/examples/config_centre.py load web.conf config/web/   # -> revision R
    python docs/examples/config_centre.py watch config/web/           # in another terminal
    printf 'db.host=10.0.0.9\ncache=on\n' > web.conf
    python docs/examples/config_centre.py load web.conf config/web/
    python docs/examples/config_centre.py rollback config/web/ R
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from etcdcore.client import Client, Compare, EtcdError, Op, prefix_end


def parse_config(text: str) -> dict[str, str]:
    """``key=value`` lines into a dict; blank lines and ``#`` comments skipped."""
    settings: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"line {number}: expected key=value, got {line!r}")
        settings[key.strip()] = value.strip()
    return settings


def load(client: Client, path: Path, prefix: str) -> None:
    settings = parse_config(path.read_text())
    # One transaction: every key gets the same revision, and a watcher sees
    # the whole file change at once. (Servers cap the operations in one
    # transaction: 128 by default, --max-txn-ops.)
    result = client.txn().then(*(Op.put(prefix + k, v) for k, v in settings.items())).commit()
    print(f"loaded {len(settings)} setting(s) under {prefix} at revision {result.revision}")


def show(client: Client, prefix: str, revision: int) -> None:
    result = client.get(prefix, prefix=True, revision=revision)
    for kv in result.kvs:
        print(f"{kv.key.decode()[len(prefix) :]}={kv.value.decode()}")
    print(f"# revision {revision or result.revision}", file=sys.stderr)


def watch(client: Client, prefix: str, start_revision: int) -> None:
    if not start_revision:
        start_revision = client.get(prefix, prefix=True, count_only=True).revision + 1
    events = client.watch(prefix, prefix=True, start_revision=start_revision)
    print(f"# watching {prefix} from revision {start_revision}")
    for batch in events:
        for event in batch:
            key = event.kv.key.decode()[len(prefix) :]
            # A delete event's mod_revision is the revision of the delete.
            if event.type == "PUT":
                print(f"{event.kv.mod_revision} put {key}={event.kv.value.decode()}")
            else:
                print(f"{event.kv.mod_revision} delete {key}")


def rollback(client: Client, prefix: str, revision: int, attempts: int = 5) -> None:
    # Raises CompactedError when that revision was compacted away.
    wanted = {kv.key: kv.value for kv in client.get(prefix, prefix=True, revision=revision).kvs}
    for _ in range(attempts):
        now = client.get(prefix, prefix=True)
        current = {kv.key: kv.value for kv in now.kvs}
        puts = [Op.put(k, v) for k, v in wanted.items() if current.get(k) != v]
        deletes = [Op.delete(k) for k in current if k not in wanted]
        if not puts and not deletes:
            print(f"{prefix} already holds revision {revision}'s settings (at {now.revision})")
            return
        # Write only if nothing under the prefix was created or changed since
        # we read it; otherwise read again and recompute the difference. (A
        # compare cannot see a key deleted meanwhile: one deleted concurrently
        # with a rollback that leaves it unchanged stays deleted.)
        unchanged = Compare.mod_revision(prefix, prefix_end(prefix.encode())) < now.revision + 1
        result = client.txn().if_(unchanged).then(*puts, *deletes).commit()
        if result.succeeded:
            print(
                f"rolled {prefix} back to revision {revision}: {len(puts)} written, "
                f"{len(deletes)} deleted, at revision {result.revision}"
            )
            return
    raise RuntimeError(f"{prefix} kept changing; rollback gave up after {attempts} attempts")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--endpoints",
        default="127.0.0.1:2379",
        help="comma-separated host:port list (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("load", help="write a key=value file under a prefix in one txn")
    p.add_argument("file", type=Path)
    p.add_argument("prefix")
    p = sub.add_parser("show", help="print the settings under a prefix")
    p.add_argument("prefix")
    p.add_argument("--revision", type=int, default=0, help="as of this revision")
    p = sub.add_parser("watch", help="print every change under a prefix")
    p.add_argument("prefix")
    p.add_argument("--start-revision", type=int, default=0, help="replay from this revision")
    p = sub.add_parser("rollback", help="restore a prefix to its state at a revision")
    p.add_argument("prefix")
    p.add_argument("revision", type=int)
    args = parser.parse_args(argv)

    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    with Client(args.endpoints.split(",")) as client:
        try:
            if args.command == "load":
                load(client, args.file, args.prefix)
            elif args.command == "show":
                show(client, args.prefix, args.revision)
            elif args.command == "watch":
                watch(client, args.prefix, args.start_revision)
            else:
                rollback(client, args.prefix, args.revision)
        except KeyboardInterrupt:
            return 130
        except (EtcdError, ValueError, RuntimeError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
