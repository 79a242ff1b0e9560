"""etcdcorectl: etcdctl's v3 command set, flags, output formats and exit codes,
for etcdcore and any etcd v3 server. Scripts written for ``etcdctl`` run by
changing the name.

    etcdcorectl --endpoints=127.0.0.1:2379 put foo bar
    etcdcorectl get foo -w json
"""

from .cli import main

__all__ = ["main"]
