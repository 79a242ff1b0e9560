"""etcdcorectl: etcdctl's v3 command set, flags, output formats and exit codes,
for etcdcore and any etcd v3 server. Scripts written for ``etcdctl`` run by
changing the name.

    etcdcorectl --endpoints=127.0.0.1:2379 put foo bar
    etcdcorectl get foo -w json
"""

import os

# gRPC's C core logs handshake failures to stderr; etcdctl prints only its
# own "Error: ..." line. Set before grpc is first imported.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

from .cli import main  # noqa: E402

__all__ = ["main"]
