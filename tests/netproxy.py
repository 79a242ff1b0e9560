"""A TCP proxy a test can cut and heal: partitions between cluster members.

Each member's peers reach it through its own :class:`Proxy`. Members dial from
their own loopback address (127.0.0.11, .12, ...), so the proxy knows which
member a connection comes from and can cut single links (``block``) or all of
them (``cut``). Cut connections are closed and new ones from a blocked source
are accepted and closed at once, so the sender sees a broken link, not a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class Proxy:
    """Forwards ``listen_host:listen_port`` to ``target_host:target_port``."""

    def __init__(
        self, listen_host: str, listen_port: int, target_host: str, target_port: int
    ) -> None:
        self.listen = (listen_host, listen_port)
        self.target = (target_host, target_port)
        self._blocked: set[str] = set()
        self._all_cut = False
        self._conns: set[tuple[str, asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.bytes_forwarded = 0

    def start(self) -> Proxy:
        """Listen (returns once bound)."""
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        fut.result(10)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, *self.listen)

    def stop(self) -> None:
        """Close everything and stop the proxy's thread."""

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            self._drop(lambda _src: True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def block(self, *sources: str) -> None:
        """Cut the links from these source addresses (both directions)."""
        self._call(lambda: (self._blocked.update(sources), self._drop(self._is_blocked)))

    def cut(self) -> None:
        """Cut every link through this proxy."""

        def do() -> None:
            self._all_cut = True
            self._drop(lambda _src: True)

        self._call(do)

    def heal(self) -> None:
        """Let every source through again."""

        def do() -> None:
            self._all_cut = False
            self._blocked.clear()

        self._call(do)

    def _call(self, fn) -> None:  # noqa: ANN001
        done = threading.Event()

        def run() -> None:
            try:
                fn()
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(10)

    def _is_blocked(self, source: str) -> bool:
        return self._all_cut or source in self._blocked

    def _drop(self, which) -> None:  # noqa: ANN001
        for conn in list(self._conns):
            src, a, b = conn
            if which(src):
                for w in (a, b):
                    with contextlib.suppress(Exception):
                        w.transport.abort()
                self._conns.discard(conn)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        source = writer.get_extra_info("peername")[0]
        if self._is_blocked(source):
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        conn = (source, writer, up_writer)
        self._conns.add(conn)
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer),
                self._pipe(up_reader, writer),
                return_exceptions=True,
            )
        finally:
            self._conns.discard(conn)
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            self.bytes_forwarded += len(data)
            await writer.drain()
        writer.transport.abort()
