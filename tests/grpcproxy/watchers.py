"""Raw Watch streams for the proxy tests: many watchers per stream, every
response kept, so a test can check exactly what each watcher received."""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

import grpc

from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc


class WatchStream:
    """One Watch call; ``create`` sends a create request and returns the
    watch id the created response gave (responses are paired in order)."""

    def __init__(self, channel: grpc.Channel, metadata: tuple = ()) -> None:
        self._requests: queue.Queue[rpc_pb2.WatchRequest | None] = queue.Queue()
        self._call = rpc_pb2_grpc.WatchStub(channel).Watch(
            iter(self._requests.get, None), metadata=metadata or None
        )
        self.responses: list[rpc_pb2.WatchResponse] = []
        self.events: dict[int, list] = defaultdict(list)
        self._created: queue.Queue[rpc_pb2.WatchResponse] = queue.Queue()
        self._cond = threading.Condition()
        self.error: grpc.RpcError | None = None
        self.paused = threading.Event()
        self.paused.set()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for r in self._call:
                self.paused.wait()
                with self._cond:
                    self.responses.append(r)
                    self.events[r.watch_id].extend(r.events)
                    self._cond.notify_all()
                if r.created:
                    self._created.put(r)
        except grpc.RpcError as e:
            self.error = e
            with self._cond:
                self._cond.notify_all()

    def send(self, req: rpc_pb2.WatchRequest) -> None:
        self._requests.put(req)

    def create(self, key: bytes, timeout: float = 10.0, **kw: object) -> rpc_pb2.WatchResponse:
        self.send(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=key, **kw)))
        return self._created.get(timeout=timeout)

    def create_many(
        self, key: bytes, n: int, timeout: float = 60.0, **kw: object
    ) -> list[rpc_pb2.WatchResponse]:
        for _ in range(n):
            self.send(
                rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=key, **kw))
            )
        return [self._created.get(timeout=timeout) for _ in range(n)]

    def cancel(self, watch_id: int) -> None:
        self.send(
            rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=watch_id))
        )

    def progress(self) -> None:
        self.send(rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()))

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0 or self.error is not None:
                    raise TimeoutError(f"watch stream: condition not met ({self.error})")
                self._cond.wait(left)

    def revisions(self, watch_id: int) -> list[int]:
        with self._cond:
            return [e.kv.mod_revision for e in self.events[watch_id]]

    def close(self) -> None:
        self._requests.put(None)
        self._call.cancel()


def put(channel: grpc.Channel, key: bytes, value: bytes) -> int:
    """A put; its revision."""
    r = rpc_pb2_grpc.KVStub(channel).Put(rpc_pb2.PutRequest(key=key, value=value), timeout=10)
    return r.header.revision


def puts(channel: grpc.Channel, key: bytes, n: int, size: int = 8) -> list[int]:
    return [put(channel, key, f"{i:0{size}d}".encode()) for i in range(n)]


def streams(channel: grpc.Channel, n: int) -> Iterator[WatchStream]:
    for _ in range(n):
        yield WatchStream(channel)
