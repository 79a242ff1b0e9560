"""One storm client process: opens many Watch and LeaseKeepAlive streams on
several connections, says so on stdout, then drops them all at once.

    python stream_storm_client.py ENDPOINT STREAMS CONNECTIONS LEASE_ID MODE

MODE "close": once every stream is open, close the channels (the streams are
cancelled under the server) and exit. MODE "hold": print "ready" and keep the
streams until killed (the test SIGKILLs the process mid-stream).

A quarter of the watch streams half-close after their watch is created; one
in ten watches the prefix the test's writer writes under, so events are in
flight when the client vanishes.
"""

from __future__ import annotations

import asyncio
import sys

import grpc

from etcdcore.proto.etcdserverpb import rpc_pb2

#: Keys the test's writer puts under while the storm goes on.
WRITER_PREFIX = b"storm/acked/"
#: Streams opened at once, per process.
OPEN_BATCH = 200


def _raw(b: bytes) -> bytes:
    return b


async def open_watch(ch: grpc.aio.Channel, i: int) -> grpc.aio.StreamStreamCall:
    call = ch.stream_stream("/etcdserverpb.Watch/Watch", _raw, _raw)()
    if i % 10 == 0:
        create = rpc_pb2.WatchCreateRequest(
            key=WRITER_PREFIX, range_end=WRITER_PREFIX[:-1] + b"0", prev_kv=True
        )
    else:
        create = rpc_pb2.WatchCreateRequest(key=b"storm/quiet/%d" % i)
    await call.write(rpc_pb2.WatchRequest(create_request=create).SerializeToString())
    created = rpc_pb2.WatchResponse.FromString(await call.read())
    assert created.created, created
    if i % 4 == 1:
        await call.done_writing()
    return call


async def open_keep_alive(ch: grpc.aio.Channel, lease_id: int) -> grpc.aio.StreamStreamCall:
    call = ch.stream_stream("/etcdserverpb.Lease/LeaseKeepAlive", _raw, _raw)()
    await call.write(rpc_pb2.LeaseKeepAliveRequest(ID=lease_id).SerializeToString())
    answer = rpc_pb2.LeaseKeepAliveResponse.FromString(await call.read())
    assert answer.ID == lease_id, answer
    return call


async def storm(endpoint: str, streams: int, connections: int, lease_id: int, mode: str) -> None:
    # Each channel its own connection (channels to one target share one by default).
    channels = [
        grpc.aio.insecure_channel(endpoint, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(connections)
    ]
    calls = []
    for start in range(0, streams, OPEN_BATCH):
        batch = []
        for i in range(start, min(start + OPEN_BATCH, streams)):
            ch = channels[i % connections]
            batch.append(open_keep_alive(ch, lease_id) if i % 3 == 2 else open_watch(ch, i))
        calls.extend(await asyncio.gather(*batch))
    print(f"ready {len(calls)}", flush=True)
    if mode == "hold":
        await asyncio.Event().wait()
    for ch in channels:
        await ch.close(grace=None)


def main() -> None:
    endpoint, streams, connections, lease_id, mode = sys.argv[1:6]
    asyncio.run(storm(endpoint, int(streams), int(connections), int(lease_id), mode))


if __name__ == "__main__":
    main()
