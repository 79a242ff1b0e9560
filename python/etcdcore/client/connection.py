"""What the blocking and the asyncio clients share about talking to a cluster:
endpoints and TLS, the channel pool, logging in, and when a failed call is
tried again (after logging in again, or on the next endpoint).

Everything here decides and keeps state; nothing here waits. Each client
drives it with its own kind of call (``grpc`` or ``grpc.aio``), so the two
cannot drift apart.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from enum import Enum
from typing import Generic, TypeVar

import grpc

from etcdcore.proto.etcdserverpb import rpc_pb2

from . import requests as rq
from .errors import EtcdError, from_rpc_error

ChannelT = TypeVar("ChannelT")


def normalize_endpoint(e: str) -> str:
    """``host:port`` from ``host:port`` or ``http://host:port``."""
    return e.split("://", 1)[-1].rstrip("/")


def may_retry_elsewhere(e: grpc.RpcError, idempotent: bool) -> bool:
    """Whether a failed call may be sent to the next endpoint: always for
    reads; for writes only when the server never saw them (no etcd answer)."""
    if e.code() != grpc.StatusCode.UNAVAILABLE:
        return False
    return idempotent or not (e.details() or "").startswith("etcdserver:")


class Next(Enum):
    """What to do after a call failed."""

    LOGIN = "log in again, then retry on the same endpoint"
    OTHER_ENDPOINT = "retry on the next endpoint"
    RAISE = "give up"
    DONE = "nothing more to do"


class Connection(Generic[ChannelT]):
    """Endpoints, credentials, auth state and channels of one client.

    ``open_channel(target, credentials, token)`` makes a channel of the
    client's kind; ``token`` is a callable giving the current token, for the
    channel's interceptor (None without auth).
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        timeout: float,
        open_channel: Callable[
            [str, grpc.ChannelCredentials | None, Callable[[], str | None] | None], ChannelT
        ],
        *,
        ca_cert: rq.PemSource | None = None,
        cert: rq.PemSource | None = None,
        key: rq.PemSource | None = None,
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        tls = ca_cert is not None or cert is not None
        self.endpoints, tls = rq.parse_endpoints(endpoints, tls)
        self.timeout = timeout
        self.credentials = rq.channel_credentials(ca_cert, cert, key) if tls else None
        if (user is None) != (password is None):
            raise ValueError("user and password go together")
        self.auth = (user, password) if user is not None and password is not None else None
        self.token: str | None = None
        self.logged_in = False
        self._open = open_channel
        self._current = 0
        self._channels: dict[str, ChannelT] = {}
        self.closed = False
        self._lock = threading.Lock()

    # -- channels --------------------------------------------------------------------
    def channel_to(self, target: str) -> ChannelT:
        with self._lock:
            if self.closed:
                raise ValueError("the client is closed")
            ch = self._channels.get(target)
            if ch is None:
                token = (lambda: self.token) if self.auth is not None else None
                ch = self._open(target, self.credentials, token)
                self._channels[target] = ch
            return ch

    def current(self) -> str:
        return self.endpoints[self._current]

    def rotate(self) -> None:
        """Move on to the next endpoint."""
        with self._lock:
            self._current = (self._current + 1) % len(self.endpoints)

    def close(self) -> list[ChannelT]:
        """Marks the client closed; returns the channels for the caller to close."""
        with self._lock:
            self.closed = True
            channels = list(self._channels.values())
            self._channels.clear()
            return channels

    # -- auth ------------------------------------------------------------------------
    @property
    def needs_login(self) -> bool:
        return self.auth is not None and not self.logged_in

    def login_needed_after(self, rejected: str | None) -> bool:
        """Whether to authenticate now, after ``rejected`` (the token a call was
        refused with, or None before the first login): not when another caller
        already replaced that token."""
        return not (self.logged_in and self.token != rejected)

    def authenticate_request(self) -> rpc_pb2.AuthenticateRequest:
        assert self.auth is not None
        user, password = self.auth
        return rpc_pb2.AuthenticateRequest(name=user, password=password)

    def login_targets(self) -> Iterator[str]:
        """The endpoints to try Authenticate on, current first; the driver
        reports each outcome with :meth:`logged_in_as` or :meth:`login_failed`
        and stops at the first that is not ``OTHER_ENDPOINT``."""
        for _ in range(len(self.endpoints)):
            yield self.current()

    def logged_in_as(self, token: str | None) -> None:
        """Authenticate answered ``token`` (None: the server has no auth)."""
        self.token, self.logged_in = token, True

    def login_failed(self, e: grpc.RpcError) -> Next:
        """Authenticate failed with ``e``: try the next endpoint, raise ``e``,
        or be done: a server without auth needs no token."""
        if rq.is_auth_not_enabled(e):
            self.logged_in_as(None)
            return Next.DONE
        if not may_retry_elsewhere(e, True):
            return Next.RAISE
        self.rotate()
        return Next.OTHER_ENDPOINT

    # -- retries ---------------------------------------------------------------------
    def attempt(self, idempotent: bool, endpoint: str | None = None) -> Attempt[ChannelT]:
        return Attempt(self, idempotent, endpoint)


class Attempt(Generic[ChannelT]):
    """One call's way through the endpoints: where to send it and, after each
    failure, whether to log in again, move on or give up. Only ``endpoint``
    is tried when given. A rejected token is renewed once per call."""

    def __init__(self, conn: Connection[ChannelT], idempotent: bool, endpoint: str | None) -> None:
        self._conn = conn
        self._idempotent = idempotent
        self._endpoint = normalize_endpoint(endpoint) if endpoint is not None else None
        self._tries = 0
        self._renewed = False
        #: The token the last try was sent with.
        self.token: str | None = None

    def target(self) -> str:
        self.token = self._conn.token
        return self._endpoint if self._endpoint is not None else self._conn.current()

    def failed(self, e: grpc.RpcError) -> Next:
        conn = self._conn
        if conn.auth is not None and not self._renewed and rq.is_invalid_token(e):
            self._renewed = True
            return Next.LOGIN
        self._tries += 1
        if (
            self._endpoint is not None
            or self._tries >= len(conn.endpoints)
            or not may_retry_elsewhere(e, self._idempotent)
        ):
            return Next.RAISE
        conn.rotate()
        return Next.OTHER_ENDPOINT

    @staticmethod
    def error(e: grpc.RpcError) -> EtcdError:
        return from_rpc_error(e)
