"""How etcdctl ends: its exit codes and its ``Error: ...`` line."""

from __future__ import annotations

import grpc

#: etcdctl's exit codes (etcd's pkg/cobrautl).
EXIT_SUCCESS = 0
EXIT_ERROR = 1
EXIT_BAD_CONNECTION = 2
EXIT_INVALID_INPUT = 3
EXIT_BAD_FEATURE = 4
EXIT_INTERRUPTED = 5
EXIT_IO = 6
EXIT_BAD_ARGS = 128


class CtlError(Exception):
    """Ends the command: ``Error: <message>`` on stderr and the exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def rpc_message(e: grpc.RpcError) -> str:
    """The text etcdctl prints for a failed call: etcd's own errors by their
    message, timeouts and cancellations as Go's context errors, anything else
    as gRPC's "rpc error: code = ... desc = ..."."""
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    details = (e.details() if hasattr(e, "details") else str(e)) or ""
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "context deadline exceeded"
    if code == grpc.StatusCode.CANCELLED:
        return "context canceled"
    if details.startswith("etcdserver: "):
        return details
    if code == grpc.StatusCode.UNAVAILABLE:
        # Nothing answered: etcd's client keeps retrying until the command's
        # deadline and reports that.
        return "context deadline exceeded"
    return f"rpc error: code = {_go_code_name(code)} desc = {details}"


def _go_code_name(code: grpc.StatusCode) -> str:
    """grpc-go's name for a status code (``InvalidArgument``)."""
    special = {grpc.StatusCode.OK: "OK"}
    return special.get(code) or "".join(p.capitalize() for p in code.name.split("_"))


def rpc_error(e: grpc.RpcError, code: int = EXIT_ERROR) -> CtlError:
    """The CtlError for a failed call."""
    return CtlError(code, rpc_message(e))
