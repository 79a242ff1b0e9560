"""The Python end of the Rust<->Python bridge.

The Rust core serves every gRPC method. KV and Lease run entirely in Rust; every
other service is forwarded here as bridge items (see ``_core.pyi``). The core wakes the
asyncio loop through one fd; :class:`Bridge` drains all waiting items at once and
routes them to the registered services:

- unary calls go to an ``async def handler(request: bytes) -> bytes``;
- streaming calls get a :class:`Stream` and run as one task each;
- this member's life events (published, removed, failed) go to their listeners.

A handler signals an etcd error by raising :class:`EtcdError` (or the core's
``CoreError``); anything else becomes ``Unknown`` with the exception text, and
the loop keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf.message import DecodeError

from etcdcore._core import Core, CoreError

log = logging.getLogger("etcdcore.bridge")

UnaryHandler = Callable[[bytes], Awaitable[bytes]]
StreamHandler = Callable[["Stream"], Awaitable[None]]
RemovedListener = Callable[[], None]
PublishedListener = Callable[[], None]
FailedListener = Callable[[str], None]


class EtcdError(Exception):
    """An etcd error answer: gRPC status code and etcd's exact message text."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


# gRPC status codes used by the services.
OK = 0
CANCELLED = 1
UNKNOWN = 2
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
NOT_FOUND = 5
ALREADY_EXISTS = 6
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
FAILED_PRECONDITION = 9
OUT_OF_RANGE = 11
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14


def error_of(exc: BaseException) -> tuple[int, str]:
    """The (code, message) a failed handler answers with."""
    if isinstance(exc, EtcdError):
        return exc.code, exc.message
    if isinstance(exc, CoreError):
        code, message = exc.args
        return int(code), str(message)
    if isinstance(exc, DecodeError):
        # What grpc-go (and so etcd) answers for bytes that are not the message.
        return INTERNAL, f"grpc: error unmarshalling request: {exc}"
    return UNKNOWN, f"{type(exc).__name__}: {exc}"


class Stream:
    """One streaming gRPC call as seen by a Python service."""

    def __init__(self, bridge: Bridge, call_id: int, method: str) -> None:
        self.call_id = call_id
        self.method = method
        self._bridge = bridge
        self._inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._gone = asyncio.Event()
        self._ended = False
        #: No message can reach the client any more (it left, or the call ended).
        self.closed = False

    async def recv(self) -> bytes | None:
        """The next client message, or None once the client half-closed or left."""
        return await self._inbox.get()

    @property
    def gone(self) -> bool:
        """Whether the call is over on the client's side (cancelled, disconnected)."""
        return self._gone.is_set()

    async def wait_gone(self) -> None:
        """Until the client has left: a client that only half-closed still
        reads answers, as long as it likes."""
        await self._gone.wait()

    def send(self, payload: bytes) -> bool:
        """Queue one message to the client; False once the client is known gone.

        Messages go out in order, batched with every other stream's: the bridge
        flushes them all in one crossing at the end of the current loop step.
        """
        if self.closed:
            return False
        self._bridge._queue_send(self.call_id, payload)
        return True

    def end(self, code: int = OK, message: str = "") -> None:
        """Finish the call with a gRPC status, after what was sent. Idempotent."""
        # Ended even when the client is known gone, so the core forgets it.
        if not self._ended:
            self._ended = True
            self.closed = True
            self._bridge.flush_sends()
            self._bridge.core.stream_end(self.call_id, code, message)

    def _deliver(self, payload: bytes | None) -> None:
        self._inbox.put_nowait(payload)

    def _leave(self) -> None:
        """The client left: nothing more can reach it, nor come from it."""
        if not self._gone.is_set():
            self.closed = True
            self._gone.set()
            self._inbox.put_nowait(None)


class Bridge:
    """Routes bridge items from the core to Python services on one asyncio loop."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self._unary: dict[str, UnaryHandler] = {}
        self._streaming: dict[str, StreamHandler] = {}
        self._streams: dict[int, Stream] = {}
        self._removed: list[RemovedListener] = []
        self._published: list[PublishedListener] = []
        self._failed: list[FailedListener] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._fd = -1
        self._outbox: list[tuple[int, bytes]] = []
        self._flush_scheduled = False

    # -- registration ------------------------------------------------------------
    def unary(self, method: str, handler: UnaryHandler) -> None:
        """Serve ``method`` (a full gRPC path, e.g. ``/etcdserverpb.Auth/UserAdd``)."""
        self._unary[method] = handler

    def streaming(self, method: str, handler: StreamHandler) -> None:
        """Serve a streaming ``method``: ``handler(stream)`` runs once per call."""
        self._streaming[method] = handler


    def on_removed(self, listener: RemovedListener) -> None:
        """Call ``listener()`` once this member has been removed from the cluster."""
        self._removed.append(listener)

    def on_published(self, listener: PublishedListener) -> None:
        """Call ``listener()`` once this member's name and client URLs are
        committed and visible in the member list (etcd's publish)."""
        self._published.append(listener)

    def on_failed(self, listener: FailedListener) -> None:
        """Call ``listener(reason)`` once this member stopped for good after a
        WAL or backend failure."""
        self._failed.append(listener)

    # -- running -----------------------------------------------------------------
    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start reading the core's wake-up fd on ``loop``."""
        self._fd = self.core.bridge_fd()
        loop.add_reader(self._fd, self._wake)

    def detach(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._fd >= 0:
            loop.remove_reader(self._fd)
            self._fd = -1

    def _wake(self) -> None:
        try:
            while os.read(self._fd, 4096):
                pass
        except BlockingIOError:
            pass
        self.dispatch(self.core.drain())
        self.flush_sends()

    def _queue_send(self, call_id: int, payload: bytes) -> None:
        self._outbox.append((call_id, payload))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush_sends)

    def flush_sends(self) -> None:
        """Send every queued stream message in one crossing into the core."""
        self._flush_scheduled = False
        if not self._outbox:
            return
        outbox, self._outbox = self._outbox, []
        for call_id in self.core.stream_send_many(outbox):
            stream = self._streams.get(call_id)
            if stream is not None:
                stream.closed = True

    def dispatch(self, items: list[tuple[Any, ...]]) -> None:
        """Route one drained batch of items."""
        for item in items:
            kind = item[0]
            if kind == "unary":
                self._spawn(self._run_unary(item[1], item[2], item[3]))
            elif kind == "msg":
                stream = self._streams.get(item[1])
                if stream is not None:
                    stream._deliver(item[2])
            elif kind == "open":
                self._open(item[1], item[2])
            elif kind == "halfclose":
                stream = self._streams.get(item[1])
                if stream is not None:
                    stream._deliver(None)
            elif kind == "close":
                stream = self._streams.get(item[1])
                if stream is not None:
                    stream._leave()
            elif kind == "removed":
                for on_removed in self._removed:
                    on_removed()
            elif kind == "published":
                for on_published in self._published:
                    on_published()
            elif kind == "failed":
                for on_failed in self._failed:
                    on_failed(item[1])

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_unary(self, call_id: int, method: str, request: bytes) -> None:
        handler = self._unary.get(method)
        if handler is None:
            self.core.respond(call_id, UNIMPLEMENTED, f"unknown method {method}", b"")
            return
        try:
            reply = await handler(request)
        except Exception as exc:  # noqa: BLE001 - every failure must answer the call
            code, message = error_of(exc)
            if code == UNKNOWN:
                log.exception("unary handler %s failed", method)
            self.core.respond(call_id, code, message, b"")
            return
        self.core.respond(call_id, OK, "", reply)

    def _open(self, call_id: int, method: str) -> None:
        handler = self._streaming.get(method)
        if handler is None:
            self.core.stream_end(call_id, UNIMPLEMENTED, f"unknown method {method}")
            return
        stream = Stream(self, call_id, method)
        self._streams[call_id] = stream
        self._spawn(self._run_stream(handler, stream))

    async def _run_stream(self, handler: StreamHandler, stream: Stream) -> None:
        try:
            await handler(stream)
        except Exception as exc:  # noqa: BLE001 - a failed stream must still end
            code, message = error_of(exc)
            if code == UNKNOWN:
                log.exception("stream handler %s failed", stream.method)
            stream.end(code, message)
        else:
            stream.end()
        finally:
            self._streams.pop(stream.call_id, None)

    async def shutdown(self) -> None:
        """End every open stream and wait for in-flight handlers."""
        for stream in list(self._streams.values()):
            stream.end(UNAVAILABLE, "etcdserver: server stopped")
            stream._leave()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
