"""etcd's command line: the same flag names, defaults, ``ETCD_*`` environment
variables and YAML ``--config-file`` keys, parsed into a :class:`ServerConfig`.

Precedence is etcd's: a config file, when given, is the whole configuration
(command-line flags and environment are ignored); otherwise a flag given on the
command line wins over its ``ETCD_<NAME>`` variable, which wins over the default.
Parsing is pure (no I/O beyond reading the config file) so it is unit-testable.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("etcdcore.config")

DEFAULT_QUOTA_BYTES = 2 * 1024 * 1024 * 1024
MAX_QUOTA_BYTES = 8 * 1024 * 1024 * 1024


class ConfigError(Exception):
    """A configuration etcd would refuse; the text is shown to the operator."""


@dataclass(frozen=True)
class Flag:
    name: str
    default: Any
    kind: type = str
    help: str = ""
    #: Accepted for compatibility with etcd command lines; not acted on yet.
    accepted_only: bool = False

    @property
    def env(self) -> str:
        return "ETCD_" + self.name.upper().replace("-", "_")

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")


FLAGS: tuple[Flag, ...] = (
    Flag("name", "default", help="Human-readable name for this member."),
    Flag("data-dir", "", help="Path to the data directory (default '${name}.etcd')."),
    Flag("listen-client-urls", "http://localhost:2379", help="URLs to listen on for clients."),
    Flag("advertise-client-urls", "http://localhost:2379", help="Client URLs to advertise."),
    Flag("listen-peer-urls", "http://localhost:2380", help="URLs to listen on for peers."),
    Flag("initial-advertise-peer-urls", "http://localhost:2380", help="Peer URLs to advertise."),
    Flag("initial-cluster", "default=http://localhost:2380", help="Initial cluster configuration."),
    Flag("initial-cluster-state", "new", help="'new' or 'existing'."),
    Flag("initial-cluster-token", "etcd-cluster", help="Initial cluster token."),
    Flag("snapshot-count", 100000, int, help="Applied entries between snapshots."),
    Flag("heartbeat-interval", 100, int, help="Heartbeat interval in ms."),
    Flag("election-timeout", 1000, int, help="Election timeout in ms."),
    Flag("quota-backend-bytes", 0, int, help="Backend size quota (0 = 2 GiB)."),
    Flag("max-request-bytes", 1572864, int, help="Maximum client request size in bytes."),
    Flag("max-txn-ops", 128, int, help="Maximum operations in one txn."),
    Flag("auto-compaction-mode", "periodic", help="'periodic' or 'revision'."),
    Flag("auto-compaction-retention", "0", help="Auto compaction retention (0 = off)."),
    Flag("log-level", "info", help="debug, info, warn, error, panic or fatal."),
    Flag("logger", "zap", help="Only 'zap' (JSON lines)."),
    Flag("log-outputs", "default", help="stderr, stdout or default."),
    Flag("enable-v2", False, bool, accepted_only=True),
    Flag("enable-pprof", False, bool, accepted_only=True),
    Flag("metrics", "basic", accepted_only=True),
    Flag("listen-metrics-urls", "", accepted_only=True),
    Flag("auth-token", "simple", accepted_only=True),
    Flag("cert-file", "", accepted_only=True),
    Flag("key-file", "", accepted_only=True),
    Flag("trusted-ca-file", "", accepted_only=True),
    Flag("client-cert-auth", False, bool, accepted_only=True),
    Flag("auto-tls", False, bool, accepted_only=True),
    Flag("peer-cert-file", "", accepted_only=True),
    Flag("peer-key-file", "", accepted_only=True),
    Flag("peer-trusted-ca-file", "", accepted_only=True),
    Flag("peer-client-cert-auth", False, bool, accepted_only=True),
    Flag("peer-auto-tls", False, bool, accepted_only=True),
)
FLAG_BY_DEST = {f.dest: f for f in FLAGS}
LOG_LEVELS = {"debug", "info", "warn", "error", "panic", "fatal"}


@dataclass
class ServerConfig:
    """A member's configuration, with etcd's names."""

    name: str
    data_dir: str
    listen_client_urls: list[str]
    advertise_client_urls: list[str]
    listen_peer_urls: list[str]
    initial_advertise_peer_urls: list[str]
    initial_cluster: list[tuple[str, list[str]]]
    initial_cluster_state: str
    initial_cluster_token: str
    snapshot_count: int
    heartbeat_interval: int
    election_timeout: int
    quota_backend_bytes: int
    max_request_bytes: int
    max_txn_ops: int
    auto_compaction_mode: str
    auto_compaction_retention: str
    log_level: str
    ignored: list[str]

    @classmethod
    def from_args(cls, argv: list[str], environ: dict[str, str]) -> ServerConfig:
        """Parse a command line (without the program name) and environment."""
        args = _parser().parse_args(argv)
        if args.version:
            raise VersionRequested
        given = {k: v for k, v in vars(args).items() if v is not None}
        given.pop("version", None)
        config_file = given.pop("config_file", None) or environ.get("ETCD_CONFIG_FILE")
        if config_file:
            values = _from_yaml(config_file)
        else:
            values = _from_env(environ)
            values.update(given)
        return cls._build(values)

    @classmethod
    def _build(cls, values: dict[str, Any]) -> ServerConfig:
        v = {f.dest: values.get(f.dest, f.default) for f in FLAGS}
        name = str(v["name"])
        data_dir = str(v["data_dir"]) or f"{name}.etcd"
        peer_urls = _urls(v["initial_advertise_peer_urls"], "--initial-advertise-peer-urls")
        cluster = _initial_cluster(str(v["initial_cluster"]))
        if v["initial_cluster_state"] not in ("new", "existing"):
            raise ConfigError(
                f"unexpected value {v['initial_cluster_state']!r} for --initial-cluster-state "
                "(use 'new' or 'existing')"
            )
        mine = dict(cluster).get(name)
        if mine is None:
            raise ConfigError(
                f"couldn't find local name {name!r} in the initial cluster configuration"
            )
        if sorted(mine) != sorted(peer_urls):
            raise ConfigError(
                f"--initial-cluster has {name}={','.join(mine)} but missing from "
                f"--initial-advertise-peer-urls={','.join(peer_urls)}"
            )
        level = str(v["log_level"]).lower()
        if level not in LOG_LEVELS:
            raise ConfigError(f"unknown log level {level!r}")
        quota = int(v["quota_backend_bytes"])
        if quota < 0:
            raise ConfigError("--quota-backend-bytes must not be negative")
        for key in ("snapshot_count", "max_request_bytes", "max_txn_ops"):
            if int(v[key]) <= 0:
                raise ConfigError(f"--{FLAG_BY_DEST[key].name} must be positive")
        heartbeat, election = int(v["heartbeat_interval"]), int(v["election_timeout"])
        if heartbeat <= 0 or election < 5 * heartbeat:
            raise ConfigError(
                f"--election-timeout[{election}ms] should be at least as 5 times as "
                f"--heartbeat-interval[{heartbeat}ms]"
            )
        if v["auto_compaction_mode"] not in ("periodic", "revision"):
            raise ConfigError(f"unknown auto-compaction-mode {v['auto_compaction_mode']!r}")
        ignored = [
            f.name
            for f in FLAGS
            if f.accepted_only and f.dest in values and values[f.dest] != f.default
        ]
        return cls(
            name=name,
            data_dir=data_dir,
            listen_client_urls=_urls(v["listen_client_urls"], "--listen-client-urls"),
            advertise_client_urls=_urls(v["advertise_client_urls"], "--advertise-client-urls"),
            listen_peer_urls=_urls(v["listen_peer_urls"], "--listen-peer-urls"),
            initial_advertise_peer_urls=peer_urls,
            initial_cluster=cluster,
            initial_cluster_state=str(v["initial_cluster_state"]),
            initial_cluster_token=str(v["initial_cluster_token"]),
            snapshot_count=int(v["snapshot_count"]),
            heartbeat_interval=heartbeat,
            election_timeout=election,
            quota_backend_bytes=quota or DEFAULT_QUOTA_BYTES,
            max_request_bytes=int(v["max_request_bytes"]),
            max_txn_ops=int(v["max_txn_ops"]),
            auto_compaction_mode=str(v["auto_compaction_mode"]),
            auto_compaction_retention=str(v["auto_compaction_retention"]),
            log_level=level,
            ignored=ignored,
        )

    def client_listen_addresses(self) -> list[str]:
        """host:port for each --listen-client-urls entry ("localhost" -> 127.0.0.1)."""
        out = []
        for url in self.listen_client_urls:
            parts = urlsplit(url)
            host = parts.hostname or "127.0.0.1"
            if host == "localhost":
                host = "127.0.0.1"
            if ":" in host:
                host = f"[{host}]"
            out.append(f"{host}:{parts.port}")
        return out


class VersionRequested(Exception):
    """--version was given: print the version and exit 0."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="etcdcore", allow_abbrev=False, add_help=True)
    for f in FLAGS:
        if f.kind is bool:
            p.add_argument(
                f"--{f.name}", dest=f.dest, nargs="?", const="true", default=None, help=f.help
            )
        else:
            p.add_argument(f"--{f.name}", dest=f.dest, default=None, help=f.help)
    p.add_argument("--config-file", dest="config_file", default=None)
    p.add_argument("--version", action="store_true", help="Print the version and exit.")
    return p


def _from_env(environ: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    known = {f.env for f in FLAGS} | {"ETCD_CONFIG_FILE"}
    for key, value in environ.items():
        if not key.startswith("ETCD_"):
            continue
        if key not in known:
            log.warning("unrecognized environment variable %s=%s", key, value)
            continue
        if key != "ETCD_CONFIG_FILE":
            values[key[5:].lower()] = value
    return values


def _from_yaml(path: str) -> dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f) or {}
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid config file {path}: {e}") from e
    if not isinstance(doc, dict):
        raise ConfigError(f"invalid config file {path}: expected a mapping")
    values: dict[str, Any] = {}
    for key, value in doc.items():
        dest = str(key).replace("-", "_")
        if dest in FLAG_BY_DEST:
            values[dest] = value
        else:
            log.warning("config file %s: ignoring unknown key %r", path, key)
    return values


def _urls(value: Any, flag: str) -> list[str]:
    items = value if isinstance(value, list) else str(value).split(",")
    urls = [str(u).strip() for u in items if str(u).strip()]
    for url in urls:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
            raise ConfigError(f'{flag}: URL scheme must be http or https with a port: "{url}"')
        if parts.scheme == "https":
            raise ConfigError(f"{flag}: TLS is not supported yet: {url}")
    if not urls:
        raise ConfigError(f"{flag} must not be empty")
    return urls


def _initial_cluster(value: str) -> list[tuple[str, list[str]]]:
    members: dict[str, list[str]] = {}
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, url = part.partition("=")
        if not sep or not name or not url:
            raise ConfigError(f"--initial-cluster: invalid member {part!r} (want name=url)")
        members.setdefault(name, []).extend(_urls(url, "--initial-cluster"))
    if not members:
        raise ConfigError("--initial-cluster must not be empty")
    return list(members.items())


def bool_flag(value: str | bool) -> bool:
    """etcd's boolean flag values."""
    return str(value).lower() in ("1", "t", "true", "yes")
