"""The ctl's connection to the cluster: endpoints tried in order, TLS, user
authentication, and the per-command deadline, as etcdctl's global flags set
them up."""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from etcdcore.client.requests import is_invalid_token
from etcdcore.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdcore.proto.v3election import v3election_pb2_grpc
from etcdcore.proto.v3lock import v3lock_pb2_grpc

from .errors import EXIT_BAD_ARGS, EXIT_BAD_CONNECTION, CtlError, rpc_error

_STUBS: dict[str, Callable[[grpc.Channel], Any]] = {
    "KV": rpc_pb2_grpc.KVStub,
    "Watch": rpc_pb2_grpc.WatchStub,
    "Lease": rpc_pb2_grpc.LeaseStub,
    "Cluster": rpc_pb2_grpc.ClusterStub,
    "Maintenance": rpc_pb2_grpc.MaintenanceStub,
    "Auth": rpc_pb2_grpc.AuthStub,
    "Lock": v3lock_pb2_grpc.LockStub,
    "Election": v3election_pb2_grpc.ElectionStub,
}


@dataclass
class Security:
    """etcdctl's --cacert/--cert/--key/--insecure-* flags."""

    cacert: str = ""
    cert: str = ""
    key: str = ""
    insecure_transport: bool = True
    insecure_skip_verify: bool = False

    def credentials(self, https: bool) -> grpc.ChannelCredentials | None:
        """Channel credentials, or None for plaintext (etcdctl's rule: TLS when
        any certificate flag is given, the URL says https, or
        --insecure-transport=false)."""
        if not (self.cacert or self.cert or self.key or https or not self.insecure_transport):
            return None
        try:
            return grpc.ssl_channel_credentials(
                root_certificates=_read(self.cacert),
                private_key=_read(self.key),
                certificate_chain=_read(self.cert),
            )
        except OSError as e:
            reason = (e.strerror or str(e)).lower()
            raise CtlError(EXIT_BAD_ARGS, f"open {e.filename}: {reason}") from e


def _read(path: str) -> bytes | None:
    return Path(path).read_bytes() if path else None


def split_endpoint(endpoint: str) -> tuple[str, bool]:
    """host:port and whether the endpoint asked for TLS."""
    for scheme in ("https://", "unixs://"):
        if endpoint.startswith(scheme):
            return endpoint[len(scheme) :].rstrip("/"), True
    for scheme in ("http://", "unix://"):
        if endpoint.startswith(scheme):
            return endpoint[len(scheme) :].rstrip("/"), False
    return endpoint.rstrip("/"), False


@dataclass
class Connection:
    """Calls into the cluster for one ctl command."""

    endpoints: list[str]
    dial_timeout: float = 2.0
    command_timeout: float = 5.0
    security: Security = field(default_factory=Security)
    user: str = ""
    password: str = ""
    _channels: dict[str, grpc.Channel] = field(default_factory=dict)
    _current: int = 0
    _token: str = ""

    # -- channels -----------------------------------------------------------------

    def channel(self, endpoint: str | None = None) -> grpc.Channel:
        ep = endpoint or self.endpoints[self._current]
        ch = self._channels.get(ep)
        if ch is None:
            target, https = split_endpoint(ep)
            creds = self.security.credentials(https)
            options = [
                ("grpc.max_receive_message_length", 2**31 - 1),
                ("grpc.keepalive_time_ms", 2000),
                ("grpc.keepalive_timeout_ms", 6000),
            ]
            if creds is None:
                ch = grpc.insecure_channel(target, options=options)
            else:
                ch = grpc.secure_channel(target, creds, options=options)
            self._channels[ep] = ch
        return ch

    def stub(self, service: str, endpoint: str | None = None) -> Any:
        return _STUBS[service](self.channel(endpoint))

    def close(self) -> None:
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def single(self, endpoint: str) -> Connection:
        """A connection to one endpoint with the same settings (endpoint
        health/status/hashkv ask each member on its own)."""
        return Connection(
            [endpoint],
            self.dial_timeout,
            self.command_timeout,
            self.security,
            self.user,
            self.password,
        )

    # -- authentication -----------------------------------------------------------

    def metadata(self) -> list[tuple[str, str]]:
        if self.user and not self._token:
            self._authenticate()
        return [("token", self._token)] if self._token else []

    def _authenticate(self) -> None:
        name, password = self.user, self.password
        if ":" in name and not password:
            name, password = name.split(":", 1)
        elif not password:
            password = getpass.getpass("Password: ")
        req = rpc_pb2.AuthenticateRequest(name=name, password=password)
        try:
            resp = self._failover(
                lambda ch: rpc_pb2_grpc.AuthStub(ch).Authenticate(
                    req, timeout=self.dial_timeout + self.command_timeout
                )
            )
        except grpc.RpcError as e:
            if e.details() == "etcdserver: authentication is not enabled":
                # etcd's client goes on without a token, as the server needs none.
                self.user = ""
                return
            raise rpc_error(e, EXIT_BAD_CONNECTION) from e
        self._token = resp.token

    # -- calls --------------------------------------------------------------------

    def call(self, service: str, method: str, request: Any, timeout: float | None = None) -> Any:
        """One unary RPC within the command timeout, moving on to the next
        endpoint while the current one cannot be reached. A token the server no
        longer accepts (expired, or older than the last change to users and
        roles) is replaced by logging in again, once, as etcdctl does."""
        deadline = self.command_timeout if timeout is None else timeout

        def once() -> Any:
            md = self.metadata()
            return self._failover(
                lambda ch: getattr(_STUBS[service](ch), method)(
                    request, timeout=deadline, metadata=md
                )
            )

        try:
            return once()
        except grpc.RpcError as e:
            if not self.user or not is_invalid_token(e):
                raise rpc_error(e) from e
        self.forget_token()
        try:
            return once()
        except grpc.RpcError as e:
            raise rpc_error(e) from e

    def stream(
        self, service: str, method: str, request: Any, timeout: float | None = None
    ) -> Iterator[Any]:
        """A server- or bidi-streaming RPC on the current endpoint."""
        fn = getattr(self.stub(service), method)
        responses: Iterator[Any] = fn(request, timeout=timeout, metadata=self.metadata())
        return responses

    def forget_token(self) -> None:
        """The server refused the token: log in again on the next call."""
        self._token = ""

    def next_endpoint(self) -> None:
        self._current = (self._current + 1) % len(self.endpoints)

    def _failover(self, fn: Callable[[grpc.Channel], Any]) -> Any:
        last: grpc.RpcError | None = None
        for _ in range(len(self.endpoints)):
            try:
                return fn(self.channel())
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or (e.details() or "").startswith(
                    "etcdserver:"
                ):
                    raise
                last = e
                self._current = (self._current + 1) % len(self.endpoints)
        assert last is not None
        raise last
