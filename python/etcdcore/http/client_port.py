"""The private endpoint behind etcd's HTTP endpoints on the gRPC client URLs.

etcd 3.5 without ``--listen-client-http-urls`` serves its ``/v3/`` JSON
gateway, ``/health``, ``/version``, ``/metrics`` and the rest on every client
URL next to gRPC. Here the core keeps gRPC and forwards every other request
to the HTTP application listening on a unix socket in a directory only this
process's user can enter: a loopback TCP port would let local processes skip
the client listener's TLS and client-certificate checks.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from etcdcore.server.config import ServerConfig


def multiplexes_client_urls(cfg: ServerConfig) -> bool:
    """Whether the client URLs serve HTTP too: etcd serves only gRPC on them
    once ``--listen-client-http-urls`` moves HTTP elsewhere."""
    return not cfg.listen_client_http_urls


class ClientPortSocket:
    """A fresh private unix socket path for the HTTP application (the
    directory is made now; the socket is bound by
    :class:`etcdcore.http.server.HttpServer`). :meth:`remove` deletes both."""

    def __init__(self) -> None:
        # mkdtemp makes the directory 0700. The temp dir, not the data dir,
        # keeps the path under the 107-byte limit of unix socket addresses.
        self.directory = Path(tempfile.mkdtemp(prefix="etcdcore-http-"))
        self.path = str(self.directory / "gateway.sock")

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
