"""Channels for the process's own gRPC calls to a client listener (its own,
or the leader's): TLS with the member's certificate when the listeners
serve TLS."""

from __future__ import annotations

import grpc


def open_channel(target: str, credentials: grpc.ChannelCredentials | None) -> grpc.aio.Channel:
    """An asyncio channel to ``target`` (``host:port``)."""
    if credentials is None:
        return grpc.aio.insecure_channel(target)
    return grpc.aio.secure_channel(target, credentials)
