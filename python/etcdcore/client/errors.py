"""Client-side errors: etcd's gRPC status and message, with typed subclasses
for the ones applications handle."""

from __future__ import annotations

import grpc


class EtcdError(Exception):
    """An error answer from the server: gRPC status code and etcd's message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class CompactedError(EtcdError):
    """The requested revision was compacted away (``compact_revision`` tells
    the oldest revision still available, when known)."""

    def __init__(self, code: grpc.StatusCode, message: str, compact_revision: int = 0) -> None:
        super().__init__(code, message)
        self.compact_revision = compact_revision


class LeaseNotFoundError(EtcdError):
    """The lease does not exist (never granted, revoked or expired)."""


class LeaseLostError(LeaseNotFoundError):
    """A lease kept alive by ``Client.lease()`` was lost before the block
    ended: it expired (no renewal got through in time) or was revoked.
    Whatever was held under it (keys, locks, leadership) may be gone."""

    def __init__(self, lease_id: int) -> None:
        super().__init__(
            grpc.StatusCode.NOT_FOUND,
            f"lease {lease_id:x} was lost (expired or revoked) before the block ended",
        )
        self.lease_id = lease_id


class DeadlineExceededError(EtcdError):
    """The call did not finish within its timeout (a lock or a campaign that
    was not won in time is withdrawn)."""


class NoLeaderError(EtcdError):
    """The member has no leader (cut off from the cluster, or electing)."""


class UnavailableError(EtcdError):
    """No endpoint could be reached (also: the TLS handshake failed)."""


class AuthError(EtcdError):
    """Authentication failed: wrong user name or password, or a token the
    server no longer accepts even after logging in again."""


class PermissionDeniedError(EtcdError):
    """The authenticated user's roles do not allow the request."""


class NotLeaderError(EtcdError):
    """An election call that needs leadership, made by a campaigner that does
    not lead (it never won, resigned, or its lease expired)."""


#: What etcd's servers answer (code UNKNOWN) when a call's deadline passes
#: while they work on it, e.g. a Campaign or Lock waiting for its turn.
ERR_CONTEXT_DEADLINE = "context deadline exceeded"

_BY_MESSAGE: dict[str, type[EtcdError]] = {
    "etcdserver: mvcc: required revision has been compacted": CompactedError,
    "etcdserver: requested lease not found": LeaseNotFoundError,
    "etcdserver: no leader": NoLeaderError,
    "etcdserver: authentication failed, invalid user ID or password": AuthError,
    "etcdserver: invalid auth token": AuthError,
    "etcdserver: revision of auth store is old": AuthError,
    "etcdserver: user name is empty": AuthError,
    "etcdserver: permission denied": PermissionDeniedError,
    "election: not leader": NotLeaderError,
}


def from_rpc_error(e: grpc.RpcError) -> EtcdError:
    """The typed error for a failed call."""
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    message = (e.details() if hasattr(e, "details") else str(e)) or ""
    if message == ERR_CONTEXT_DEADLINE:
        # The server's copy of the call's deadline expired before the client's
        # own did: the same timeout, whichever side noticed it first (clientv3
        # likewise reports its context's error).
        return DeadlineExceededError(grpc.StatusCode.DEADLINE_EXCEEDED, message)
    cls = _BY_MESSAGE.get(message, EtcdError)
    if code == grpc.StatusCode.UNAVAILABLE and cls is EtcdError:
        cls = UnavailableError
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED and cls is EtcdError:
        cls = DeadlineExceededError
    return cls(code, message)
