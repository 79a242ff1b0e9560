"""The gRPC services written in Python, served through the core's bridge.

Each service is a class built with the :class:`~etcdcore._core.Core` it serves and
exposing ``register(bridge)``, which binds its methods to their gRPC paths.
"""

from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from etcdcore.bridge import INTERNAL, EtcdError

_M = TypeVar("_M", bound=Message)


def decode_stream_message(cls: type[_M], data: bytes) -> _M:
    """One client message of a streaming call, refused as grpc-go refuses it:
    on a stream etcd answers ``Internal`` "grpc: failed to unmarshal the
    received message ..." (unary calls say "error unmarshalling request")."""
    try:
        return cls.FromString(data)
    except DecodeError as e:
        raise EtcdError(INTERNAL, f"grpc: failed to unmarshal the received message {e}") from e
