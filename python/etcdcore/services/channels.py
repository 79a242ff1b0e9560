"""Channels for the process's own gRPC calls to a client listener (its own,
or the leader's): TLS with the member's certificate when the listeners
serve TLS, and, for calls to its own listener, the member's internal token
so that its services (locks, elections, health checks) pass the auth
checks that apply to clients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc


class _Token(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    """Adds ``token`` metadata to every call."""

    def __init__(self, token: str) -> None:
        self._token = token

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add("token", self._token)
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return await continuation(self._details(details), request)

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return await continuation(self._details(details), request)

    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], details: Any, requests: Any
    ) -> Any:
        return await continuation(self._details(details), requests)


def open_channel(
    target: str, credentials: grpc.ChannelCredentials | None, token: str | None = None
) -> grpc.aio.Channel:
    """An asyncio channel to ``target`` (``host:port``), sending ``token``
    with every call when given."""
    interceptors = [_Token(token)] if token else None
    if credentials is None:
        return grpc.aio.insecure_channel(target, interceptors=interceptors)
    return grpc.aio.secure_channel(target, credentials, interceptors=interceptors)
