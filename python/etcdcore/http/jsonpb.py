"""The JSON mapping of etcd's grpc-gateway (grpc-gateway v1.16's default
``JSONPb{OrigName: true}`` marshaler):

- fields by their proto names (``create_revision``), only non-default ones;
- 64-bit integers as strings, bytes as standard base64, enums by name;
- compact output, with Go's ``encoding/json`` escaping of ``<``, ``>``, ``&``,
  U+2028 and U+2029 (and UTF-8, not ``\\u`` escapes, for other text);
- requests: proto or JSON (camelCase) names, unknown fields ignored, an empty
  body is the empty message;
- errors: ``{"error", "code", "message"}`` with grpc-gateway's HTTP status for
  the gRPC code; streams: one ``{"result": ...}`` per line, a failure as a last
  ``{"error": {"grpc_code", "http_code", "message", "http_status"}}``.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)

#: grpc-gateway v1.16's runtime.HTTPStatusFromCode.
HTTP_STATUS: dict[int, int] = {
    0: 200,  # OK
    1: 408,  # Canceled
    2: 500,  # Unknown
    3: 400,  # InvalidArgument
    4: 504,  # DeadlineExceeded
    5: 404,  # NotFound
    6: 409,  # AlreadyExists
    7: 403,  # PermissionDenied
    8: 429,  # ResourceExhausted
    9: 400,  # FailedPrecondition (deliberately not 412)
    10: 409,  # Aborted
    11: 400,  # OutOfRange
    12: 501,  # Unimplemented
    13: 500,  # Internal
    14: 503,  # Unavailable
    15: 500,  # DataLoss
    16: 401,  # Unauthenticated
}

_GO_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


class DecodeError(ValueError):
    """A request body that is not the request message (InvalidArgument)."""


def http_status(code: int) -> int:
    """The HTTP status grpc-gateway answers a gRPC status code with."""
    return HTTP_STATUS.get(code, 500)


def dumps(obj: Any) -> bytes:
    """Compact JSON as Go's encoding/json writes it."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return text.translate(_GO_ESCAPES).encode()


def to_dict(msg: Message) -> dict[str, Any]:
    """The message as grpc-gateway's marshaler sees it (defaults omitted)."""
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def encode(msg: Message) -> bytes:
    """A unary response body."""
    return dumps(to_dict(msg))


def decode(body: bytes | str | dict[str, Any] | None, cls: type[M]) -> M:
    """A request message from a JSON body (or an already decoded JSON value)."""
    msg = cls()
    if body is None:
        return msg
    if isinstance(body, (bytes, str)):
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        if not text.strip():
            return msg
        try:
            value, _ = json.JSONDecoder().raw_decode(text.lstrip())
        except json.JSONDecodeError as e:
            raise DecodeError(go_json_error(e)) from e
    else:
        value = body
    if not isinstance(value, dict):
        kind = type(value).__name__
        raise DecodeError(f"json: cannot unmarshal {kind} into Go value of type map")
    try:
        json_format.ParseDict(value, msg, ignore_unknown_fields=True)
    except json_format.ParseError as e:
        raise DecodeError(str(e)) from e
    return msg


def go_json_error(e: json.JSONDecodeError) -> str:
    """The text Go's encoding/json gives for the common syntax errors."""
    if e.pos >= len(e.doc.rstrip()):
        return "unexpected EOF"
    if e.msg == "Expecting value":
        return f"invalid character {e.doc[e.pos]!r} looking for beginning of value"
    return str(e)


def error_body(code: int, message: str) -> bytes:
    """grpc-gateway's error body (its ``internal.Error`` message, defaults omitted)."""
    body: dict[str, Any] = {}
    if message:
        body["error"] = message
    if code:
        body["code"] = code
    if message:
        body["message"] = message
    return dumps(body)


def stream_result(msg: Message) -> bytes:
    """One message of a streaming response, without the newline delimiter."""
    return dumps({"result": to_dict(msg)})


def stream_error(code: int, message: str) -> bytes:
    """The last chunk of a failed streaming response (its ``internal.StreamError``)."""
    status = http_status(code)
    err: dict[str, Any] = {}
    if code:
        err["grpc_code"] = code
    err["http_code"] = status
    if message:
        err["message"] = message
    err["http_status"] = HTTPStatus(status).phrase
    return dumps({"error": err})


class StreamDecoder:
    """Successive JSON values of a request body fed in pieces (Go's
    ``json.Decoder`` over the body of a client- or bidi-streaming call)."""

    def __init__(self) -> None:
        self._buf = ""
        self._decoder = json.JSONDecoder()
        self._pending = b""

    def feed(self, data: bytes) -> list[Any]:
        """Values completed by ``data``."""
        self._pending += data
        try:
            self._buf += self._pending.decode()
            self._pending = b""
        except UnicodeDecodeError:
            # A multi-byte character split across chunks: wait for the rest.
            return []
        out: list[Any] = []
        while True:
            text = self._buf.lstrip()
            if not text:
                self._buf = ""
                return out
            try:
                value, end = self._decoder.raw_decode(text)
            except json.JSONDecodeError:
                self._buf = text
                return out
            # A bare number may continue in the next chunk: only take it once
            # something follows it.
            if end == len(text) and not isinstance(value, (dict, list, str)):
                self._buf = text
                return out
            out.append(value)
            self._buf = text[end:]

    def finish(self) -> list[Any]:
        """Values left at the end of the body; DecodeError for a torn one."""
        text = (self._buf + self._pending.decode(errors="replace")).strip()
        self._buf, self._pending = "", b""
        if not text:
            return []
        try:
            value, end = self._decoder.raw_decode(text)
        except json.JSONDecodeError as e:
            raise DecodeError(go_json_error(e)) from e
        return [value, *self.finish_rest(text[end:])]

    def finish_rest(self, rest: str) -> list[Any]:
        self._buf = rest
        return self.finish() if rest.strip() else []
