"""An etcdcore member inside your Python process: the counterpart of etcd's Go
``embed`` package.

    from etcdcore.embed import EmbeddedMember

    with EmbeddedMember() as member:        # temporary data dir, free ports
        print(member.endpoint)              # "127.0.0.1:<port>", for any etcd client
        member.client().put("k", "v")       # or etcdcore's own client, connected

The member runs its Rust core (gRPC listeners, Raft, WAL) and its Python
services on a thread of its own with its own event loop, so the caller's thread
(and event loop, if any) stay free. It takes etcd's flags, exactly as the
``etcdcore`` command does. ``stop()`` stops it cleanly: calls in flight finish,
the WAL is synced.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from etcdcore._core import Core
from etcdcore.client import Client
from etcdcore.http.client_port import ClientPortSocket, multiplexes_client_urls
from etcdcore.server.config import ServerConfig
from etcdcore.server.main import core_config, serve, token_provider
from etcdcore.server.tls import resolve as resolve_tls


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedMember:
    """A single etcdcore member running in this process.

    ``data_dir`` defaults to a temporary directory removed on stop; ports
    default to free ones on ``host``. ``extra_args`` are more etcd flags
    (e.g. ``["--auto-compaction-retention", "1h"]``).
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        name: str = "default",
        host: str = "127.0.0.1",
        client_port: int | None = None,
        peer_port: int | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self._tmp: str | None = None
        if data_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="etcdcore-")
            data_dir = Path(self._tmp) / "data"
        self.data_dir = Path(data_dir)
        self.name = name
        self.host = host
        self.client_port = client_port or _free_port(host)
        self.peer_port = peer_port or _free_port(host)
        self.extra_args = list(extra_args)
        self._core: Core | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._clients: list[Client] = []
        self._client_port: ClientPortSocket | None = None

    @property
    def endpoint(self) -> str:
        """``host:port`` of the client listener (what etcd clients dial)."""
        return f"{self.host}:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"http://{self.endpoint}"

    def args(self) -> list[str]:
        """The etcd flags this member runs with."""
        peer = f"http://{self.host}:{self.peer_port}"
        return [
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"{self.name}={peer}",
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = 30.0) -> EmbeddedMember:
        """Start the member; returns once it serves clients."""
        if self._thread is not None:
            raise RuntimeError("already started")
        cfg = resolve_tls(ServerConfig.from_args(self.args(), {}))
        if multiplexes_client_urls(cfg):
            self._client_port = ClientPortSocket()
        gateway_socket = self._client_port.path if self._client_port else None
        jwt = token_provider(cfg)
        core = Core(core_config(cfg, jwt, gateway_socket))
        core.start()
        self._core = core
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._stop = asyncio.Event()
            try:
                loop.run_until_complete(
                    serve(
                        core,
                        cfg,
                        self._stop,
                        ready.set,
                        jwt=jwt,
                        client_port_socket=gateway_socket,
                    )
                )
            except BaseException as e:  # noqa: BLE001 - reported to start()/stop()
                self._error = e
            finally:
                ready.set()
                loop.close()

        self._thread = threading.Thread(target=run, name=f"etcdcore-{self.name}", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or self._error is not None:
            self.stop()
            raise RuntimeError(f"embedded member did not start: {self._error}")
        return self

    def client(self, timeout: float = 5.0) -> Client:
        """A :class:`etcdcore.client.Client` connected to this member (each
        call per-request ``timeout`` seconds). Close it when done, or leave it
        to :meth:`stop`, which closes every client it handed out."""
        if self._thread is None:
            raise RuntimeError("the member is not running: start() it first")
        c = Client([self.endpoint], timeout=timeout)
        self._clients.append(c)
        return c

    def stop(self) -> None:
        """Stop serving, sync the WAL, and remove a temporary data dir (the
        clients from :meth:`client` are closed first)."""
        for c in self._clients:
            c.close()
        self._clients.clear()
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        if self._core is not None:
            self._core.stop()
            self._core = None
        if self._client_port is not None:
            self._client_port.remove()
            self._client_port = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> EmbeddedMember:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
