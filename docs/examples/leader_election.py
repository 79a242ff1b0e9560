"""Leader election and cluster monitoring with TTL heartbeats.

Each node of a cluster runs ``node ELECTION NODE``. A node holds a *session*:
a lease with a short TTL that ``client.lease()`` renews every TTL/3 seconds
(its heartbeat) and reports lost when it expired anyway. Under that lease it
writes

- ``monitor/ELECTION/NODE``: "this node is alive", for ``monitor``;
- ``election/ELECTION/leader = NODE``, if it wins the election.

Campaigning is one transaction: *if* ``election/ELECTION/leader`` does not
exist (its create revision is 0) *then* create it with our lease, *else* read
it. Exactly one node wins. The others watch the key and campaign again when
it is deleted. The leader's key goes when the leader

- stops (SIGTERM or Ctrl-C): it revokes its lease, and a follower takes over
  at once;
- crashes, hangs or loses the server: its heartbeats stop and the server
  deletes its keys when the lease expires, at most TTL seconds later.

A node whose own lease expired (it could not heartbeat for a whole TTL) stops
acting as leader, starts a new session and campaigns again.

``monitor ELECTION`` lists the live nodes (one a line: name, role, the seconds
its lease has left), read together with the leader key in one transaction.

Run it against an etcd v3 server (etcdcore or etcd) on 127.0.0.1:2379::

    python docs/examples/leader_election.py node jobs n1 --ttl 3 &
    python docs/examples/leader_election.py node jobs n2 --ttl 3 &
    python docs/examples/leader_election.py node jobs n3 --ttl 3 &
    python docs/examples/leader_election.py monitor jobs
    kill -9 %1      # if n1 leads: n2 or n3 prints "elected ..." within 3 s

A node prints ``elected NODE`` when it becomes leader, ``following LEADER``
when another node leads, ``lost leadership`` if its lease expired or its key
was deleted while it led, and ``resigned`` when it stops as leader.
Node names must be unique within an election.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence

from etcdcore.client import Client, Compare, EtcdError, GetResult, KeptLease, LeaseLostError, Op


def leader_key(election: str) -> str:
    return f"election/{election}/leader"


def monitor_prefix(election: str) -> str:
    return f"monitor/{election}/"


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT (instead of dying on the spot)."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def wait_for_vacancy(
    client: Client, key: str, start_revision: int, *interrupts: threading.Event
) -> bool:
    """Block until ``key`` is deleted at or after ``start_revision`` (True), or
    one of ``interrupts`` is set (False).

    The watch is read on a thread; when we stop waiting, cancelling the watch
    from here releases that thread. A watch that fails also returns True:
    campaigning again tells how things stand.
    """
    vacant = threading.Event()
    watch = client.watch(key, start_revision=start_revision)

    def follow() -> None:
        try:
            for events in watch:
                if any(e.type == "DELETE" for e in events):
                    break
        except EtcdError:
            pass
        vacant.set()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        while not vacant.wait(0.05):
            if any(event.is_set() for event in interrupts):
                return False
        return True
    finally:
        watch.cancel()
        thread.join(5)


def campaign(
    client: Client, election: str, node: str, session: KeptLease, stop: threading.Event
) -> None:
    """Campaign, lead or follow, until ``stop`` or the session is lost."""
    key = leader_key(election)
    while not stop.is_set() and not session.lost.is_set():
        result = (
            client.txn()
            .if_(Compare.create_revision(key) == 0)
            .then(Op.put(key, node, lease=session.id))
            .else_(Op.get(key))
            .commit()
        )
        if result.succeeded:
            print(f"elected {node}")
            # Lead until told to stop, the session is lost, or someone deleted
            # the leader key (an operator forcing a new election).
            if wait_for_vacancy(client, key, result.revision + 1, stop, session.lost):
                print("lost leadership (leader key deleted)")
            elif session.lost.is_set():
                print("lost leadership (lease expired)")
            else:
                print("resigned")  # revoking the session deletes the key
            continue
        current = result.responses[0]
        assert isinstance(current, GetResult)
        if not current.kvs:
            continue  # deleted between the compare and the read: try again
        print(f"following {current.kvs[0].value.decode()}")
        # Watch from the revision after the transaction: a delete that came
        # in meanwhile is seen too.
        wait_for_vacancy(client, key, result.revision + 1, stop, session.lost)


def run_node(endpoints: Sequence[str], election: str, node: str, ttl: int) -> None:
    stop = stop_on_signals()
    with Client(endpoints) as client:
        while not stop.is_set():
            try:
                # Kept alive while the block runs, revoked when it ends (which
                # deletes our keys); LeaseLostError if it expired meanwhile.
                with client.lease(ttl) as session:
                    client.put(
                        monitor_prefix(election) + node, f"pid={os.getpid()}", lease=session.id
                    )
                    campaign(client, election, node, session, stop)
            except LeaseLostError:
                if not stop.is_set():
                    print("session lost; starting a new one", file=sys.stderr)


def monitor(client: Client, election: str) -> None:
    """Print ``NODE ROLE ttl=Ns INFO`` for every live node."""
    prefix = monitor_prefix(election)
    # One transaction: both reads see the same revision.
    result = client.txn().then(Op.get(prefix, prefix=True), Op.get(leader_key(election))).commit()
    nodes, leader = result.responses
    assert isinstance(nodes, GetResult) and isinstance(leader, GetResult)
    leader_name = leader.value.decode() if leader.value is not None else None
    for kv in nodes.kvs:
        name = kv.key.decode()[len(prefix) :]
        role = "leader" if name == leader_name else "follower"
        ttl = client.lease_time_to_live(kv.lease).ttl
        print(f"{name} {role} ttl={ttl}s {kv.value.decode()}")
    if leader_name is None:
        print("# no leader", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--endpoints",
        default="127.0.0.1:2379",
        help="comma-separated host:port list (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("node", help="run a node: heartbeat, campaign, lead or follow")
    p.add_argument("election", help="election (cluster) name")
    p.add_argument("node", help="this node's name, unique in the election")
    p.add_argument("--ttl", type=int, default=5, help="heartbeat lease TTL, s (default: 5)")
    p = sub.add_parser("monitor", help="list the live nodes and the leader")
    p.add_argument("election", help="election (cluster) name")
    args = parser.parse_args(argv)

    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    endpoints = args.endpoints.split(",")
    try:
        if args.command == "node":
            run_node(endpoints, args.election, args.node, args.ttl)
        else:
            with Client(endpoints) as client:
                monitor(client, args.election)
    except KeyboardInterrupt:
        return 130
    except EtcdError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
