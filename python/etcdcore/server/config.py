"""etcd's command line, parsed the way etcd 3.5 parses it.

Same flag names, defaults and ``ETCD_<UPPER_SNAKE>`` environment variables, the
same YAML ``--config-file`` keys, and the same rules:

- flags follow Go's ``flag`` package: ``-flag`` or ``--flag``, ``--flag=value``
  or ``--flag value`` (boolean flags only take ``=value``), parsing stops at the
  first non-flag argument (which etcd then refuses) or at ``--``;
- a config file, when given (``--config-file`` or ``ETCD_CONFIG_FILE``), is the
  whole configuration: other flags are still checked but their values and the
  environment are ignored;
- otherwise a flag not on the command line is taken from its non-empty
  ``ETCD_*`` variable. A variable whose flag *is* on the command line is an
  error, as in etcd 3.5 ("conflicting environment variable is shadowed by
  corresponding command-line flag"); other ``ETCD_*`` variables draw a warning;
- ``--name x`` alone moves the default ``--initial-cluster`` to ``x=<peer urls>``;
  ``--listen-client-urls`` without ``--advertise-client-urls`` is refused;
  the member must be in ``--initial-cluster`` with exactly its
  ``--initial-advertise-peer-urls``.

Every etcd 3.5 server flag is accepted so etcd command lines keep working; the
ones etcdcore does not act on yet are reported in :attr:`ServerConfig.notices`
(TLS, metrics, pprof, v2, experimental...). Parsing is pure: no logging, no I/O
other than reading the config file.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

DEFAULT_NAME = "default"
DEFAULT_LISTEN_CLIENT_URLS = "http://localhost:2379"
DEFAULT_LISTEN_PEER_URLS = "http://localhost:2380"
DEFAULT_INITIAL_CLUSTER = f"{DEFAULT_NAME}={DEFAULT_LISTEN_PEER_URLS}"
DEFAULT_SNAPSHOT_COUNT = 100_000
#: etcd's default and maximum backend quotas.
DEFAULT_QUOTA_BYTES = 2 * 1024 * 1024 * 1024
MAX_QUOTA_BYTES = 8 * 1024 * 1024 * 1024
#: etcd's watch progress notification interval, and the shortest it accepts (s).
DEFAULT_WATCH_PROGRESS_NOTIFY_INTERVAL = 600.0
MIN_WATCH_PROGRESS_NOTIFY_INTERVAL = 0.1
#: etcd refuses election timeouts above this.
MAX_ELECTION_MS = 50_000
MAX_UINT32 = 2**32 - 1  # Go's math.MaxUint32: etcd's "no limit" for --max-concurrent-streams
LOG_LEVELS = ("debug", "info", "warn", "error", "dpanic", "panic", "fatal")

USAGE = """Usage:

  etcdcore [flags]
    Start an etcdcore server (etcd v3.5 compatible).

  etcdcore --version
    Show the version of etcdcore.

  etcdcore -h | --help
    Show the help information about etcdcore.

  etcdcore --config-file
    Path to the server configuration file. Note that if a configuration file is
    provided, other command line flags and environment variables will be ignored.
"""


class ConfigError(Exception):
    """A configuration etcd would refuse; ``exit_code`` is what etcd exits with."""

    exit_code = 1


class UsageError(ConfigError):
    """A command line Go's flag package rejects (etcd prints usage, exits 2)."""

    exit_code = 2


class VersionRequested(Exception):
    """``--version`` was given: print the version and exit 0."""


class HelpRequested(Exception):
    """``-h``/``--help`` was given: print the help and exit 0."""


# -- the flags -----------------------------------------------------------------------

# How a flag is used by etcdcore:
USED = "used"  # acted on
INFO = "info"  # accepted for etcd compatibility; reported (info) when set
WARN = "warn"  # accepted; reported as a warning when set (experimental, legacy)
REFUSED = "refused"  # accepted by the parser but a non-default value is an error

# Value kinds, validated as Go's flag package validates them.
STR, UINT, INT, BOOL, DURATION, URLS = "str", "uint", "int", "bool", "duration", "urls"
UINT32 = "uint32"  # etcd's own flags.Uint32Value: strconv's error text, not flag's


@dataclass(frozen=True)
class Flag:
    """One etcd server flag."""

    name: str
    default: str
    kind: str = STR
    use: str = USED
    help: str = ""
    #: Allowed values, for etcd's "selective string" flags.
    choices: tuple[str, ...] = ()

    @property
    def env(self) -> str:
        """The flag's environment variable, as etcd names it."""
        return "ETCD_" + self.name.upper().replace("-", "_")

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")


def _f(name: str, default: str = "", kind: str = STR, use: str = USED, **kw: Any) -> Flag:
    return Flag(name, default, kind, use, **kw)


FLAGS: tuple[Flag, ...] = (
    _f("config-file", help="Path to the server configuration file."),
    # member
    _f("name", DEFAULT_NAME, help="Human-readable name for this member."),
    _f("data-dir", "", help="Path to the data directory (default '${name}.etcd')."),
    _f("wal-dir", "", use=WARN, help="Dedicated WAL directory (the WAL stays in --data-dir)."),
    _f("listen-peer-urls", DEFAULT_LISTEN_PEER_URLS, URLS, help="URLs to listen on for peers."),
    _f("listen-client-urls", DEFAULT_LISTEN_CLIENT_URLS, URLS, help="URLs for client traffic."),
    _f(
        "listen-client-http-urls",
        "",
        URLS,
        help="URLs for the HTTP/JSON gateway, health and metrics (client gRPC stays on "
        "--listen-client-urls).",
    ),
    _f("listen-metrics-urls", "", URLS, help="URLs for the metrics and health endpoints."),
    _f(
        "enable-console",
        "false",
        BOOL,
        help="Serve the web console under /console/ on the client HTTP listeners "
        "(etcdcore only; etcd has no such flag).",
    ),
    _f("max-snapshots", "5", UINT, INFO),
    _f("max-wals", "5", UINT, INFO),
    _f("snapshot-count", str(DEFAULT_SNAPSHOT_COUNT), UINT, help="Entries between snapshots."),
    _f("heartbeat-interval", "100", UINT, help="Heartbeat interval (ms)."),
    _f("election-timeout", "1000", UINT, help="Election timeout (ms)."),
    _f("initial-election-tick-advance", "true", BOOL, INFO),
    _f("quota-backend-bytes", "0", INT, help="Backend size quota (0 = 2 GiB, <0 = none)."),
    _f("backend-bbolt-freelist-type", "map", STR, INFO),
    _f(
        "backend-batch-interval",
        "0s",
        DURATION,
        help="Longest time before a backend commit is made durable (0 = 100ms).",
    ),
    _f(
        "backend-batch-limit",
        "0",
        INT,
        help="Most applied entries before a backend commit is made durable (0 = 10000).",
    ),
    _f("max-txn-ops", "128", UINT, help="Maximum operations in one txn."),
    _f("max-request-bytes", "1572864", UINT, help="Maximum client request size in bytes."),
    _f(
        "max-concurrent-streams",
        str(MAX_UINT32),
        UINT32,
        help="Maximum concurrent streams that each client can open at a time.",
    ),
    _f("grpc-keepalive-min-time", "5s", DURATION, INFO),
    _f("grpc-keepalive-interval", "2h0m0s", DURATION, INFO),
    _f("grpc-keepalive-timeout", "20s", DURATION, INFO),
    _f("socket-reuse-port", "false", BOOL, INFO),
    _f("socket-reuse-address", "false", BOOL, INFO),
    _f("raft-read-timeout", "5s", DURATION, INFO),
    _f("raft-write-timeout", "5s", DURATION, INFO),
    # clustering
    _f(
        "initial-advertise-peer-urls",
        DEFAULT_LISTEN_PEER_URLS,
        URLS,
        help="Peer URLs to advertise.",
    ),
    _f("advertise-client-urls", DEFAULT_LISTEN_CLIENT_URLS, URLS, help="Client URLs to advertise."),
    _f("discovery", "", use=REFUSED),
    _f("discovery-fallback", "proxy", STR, INFO, choices=("proxy", "exit")),
    _f("discovery-proxy", "", use=INFO),
    _f("discovery-srv", "", use=REFUSED),
    _f("discovery-srv-name", "", use=INFO),
    _f("initial-cluster", DEFAULT_INITIAL_CLUSTER, help="Initial cluster configuration."),
    _f("initial-cluster-token", "etcd-cluster", help="Initial cluster token."),
    _f("initial-cluster-state", "new", choices=("new", "existing"), help="'new' or 'existing'."),
    _f("strict-reconfig-check", "true", BOOL, INFO),
    _f("pre-vote", "true", BOOL, INFO),
    _f("enable-v2", "false", BOOL, INFO),
    _f("experimental-enable-v2v3", "", STR, WARN),
    _f(
        "v2-deprecation",
        "not-yet",
        STR,
        INFO,
        choices=("not-yet", "write-only", "write-only-drop-data", "gone"),
    ),
    # proxy
    _f("proxy", "off", use=REFUSED, choices=("off", "readonly", "on")),
    _f("proxy-failure-wait", "5000", UINT, INFO),
    _f("proxy-refresh-interval", "30000", UINT, INFO),
    _f("proxy-dial-timeout", "1000", UINT, INFO),
    _f("proxy-write-timeout", "5000", UINT, INFO),
    _f("proxy-read-timeout", "0", UINT, INFO),
    # security
    _f("cert-file"),
    _f("key-file"),
    _f("client-cert-file", use=INFO),
    _f("client-key-file", use=INFO),
    _f("client-cert-auth", "false", BOOL),
    _f("client-crl-file"),
    _f("client-cert-allowed-hostname", use=INFO),
    _f("trusted-ca-file"),
    _f("auto-tls", "false", BOOL),
    _f("peer-cert-file"),
    _f("peer-key-file"),
    _f("peer-client-cert-file", use=INFO),
    _f("peer-client-key-file", use=INFO),
    _f("peer-client-cert-auth", "false", BOOL),
    _f("peer-trusted-ca-file"),
    _f("peer-auto-tls", "false", BOOL),
    _f("self-signed-cert-validity", "1", UINT),
    _f("peer-crl-file"),
    _f("peer-cert-allowed-cn", use=INFO),
    _f("peer-cert-allowed-hostname", use=INFO),
    _f("cipher-suites"),
    _f("tls-min-version", "TLS1.2", help="Minimum TLS version (TLS1.2 or TLS1.3)."),
    _f("tls-max-version", use=INFO),
    _f("experimental-peer-skip-client-san-verification", "false", BOOL, WARN),
    _f("cors", "*", use=INFO),
    _f("host-whitelist", "*", use=INFO),
    # logging
    _f("logger", "zap", help="Only 'zap' (JSON lines)."),
    _f("log-outputs", "default", help="default, stderr, stdout or file paths."),
    _f("log-level", "info", help="debug, info, warn, error, panic or fatal."),
    _f("enable-log-rotation", "false", BOOL, INFO),
    _f("log-rotation-config-json", use=INFO),
    # version
    _f("version", "false", BOOL, help="Print the version and exit."),
    _f("auto-compaction-retention", "0", help="Auto compaction retention (0 = off)."),
    _f("auto-compaction-mode", "periodic", help="'periodic' or 'revision'."),
    _f("enable-pprof", "false", BOOL, INFO),
    _f("metrics", "basic", use=INFO),
    _f("experimental-enable-distributed-tracing", "false", BOOL, WARN),
    _f("experimental-distributed-tracing-address", "0.0.0.0:4317", use=WARN),
    _f("experimental-distributed-tracing-service-name", "etcd", use=WARN),
    _f("experimental-distributed-tracing-instance-id", use=WARN),
    # auth
    _f(
        "auth-token",
        "simple",
        help="Specify a v3 authentication token type and its options ('simple' or 'jwt').",
    ),
    _f("bcrypt-cost", "10", UINT),
    _f("auth-token-ttl", "300", UINT),
    _f("enable-grpc-gateway", "true", BOOL, INFO),
    # experimental
    _f("experimental-initial-corrupt-check", "false", BOOL),
    _f("experimental-corrupt-check-time", "0s", DURATION, WARN),
    _f(
        "experimental-enable-lease-checkpoint",
        "false",
        BOOL,
        help="Have the leader record leases' remaining TTLs through Raft, so that a new "
        "leader or a restarted cluster continues from them instead of the full TTL.",
    ),
    _f(
        "experimental-lease-checkpoint-interval",
        "5m0s",
        DURATION,
        help="How often remaining lease TTLs are checkpointed (an etcdcore flag: etcd "
        "fixes it at 5m).",
    ),
    _f("experimental-compaction-batch-limit", "1000", INT, WARN),
    _f(
        "experimental-watch-progress-notify-interval",
        "10m0s",
        DURATION,
        help="Duration of periodic watch progress notifications.",
    ),
    _f("experimental-downgrade-check-time", "5s", DURATION, WARN),
    _f("experimental-warning-apply-duration", "100ms", DURATION, WARN),
    _f("experimental-memory-mlock", "false", BOOL, WARN),
    _f("experimental-txn-mode-write-with-shared-buffer", "true", BOOL, WARN),
    _f("experimental-bootstrap-defrag-threshold-megabytes", "0", UINT, WARN),
    # unsafe
    _f("unsafe-no-fsync", "false", BOOL, WARN),
    _f("force-new-cluster", "false", BOOL, INFO),
    # flags etcd itself ignores (legacy); they take no value
    *(
        _f(name, "", BOOL, WARN)
        for name in (
            "cluster-active-size",
            "cluster-remove-delay",
            "cluster-sync-interval",
            "config",
            "force",
            "max-result-buffer",
            "max-retry-attempts",
            "peer-heartbeat-interval",
            "peer-election-timeout",
            "retry-interval",
            "snapshot",
            "v",
            "vv",
        )
    ),
)
FLAG_BY_NAME: dict[str, Flag] = {f.name: f for f in FLAGS}
LEGACY_IGNORED = frozenset(f.name for f in FLAGS if f.kind == BOOL and f.default == "")

# Keys of the YAML "client-transport-security" / "peer-transport-security" maps.
_TLS_KEYS = frozenset(
    {"cert-file", "key-file", "client-cert-file", "client-key-file", "client-cert-auth"}
    | {"trusted-ca-file", "auto-tls"}
)


# -- the result ----------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    """Something to log once logging is set up: parsing itself does not log."""

    level: str
    msg: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TlsFiles:
    """One side's TLS flags (client: --cert-file...; peer: --peer-cert-file...)."""

    cert_file: str = ""
    key_file: str = ""
    trusted_ca_file: str = ""
    client_cert_auth: bool = False
    auto_tls: bool = False
    #: Certificate revocation list: client certificates it lists are refused.
    crl_file: str = ""

    def empty(self) -> bool:
        """etcd's TLSInfo.Empty: no certificate to serve with."""
        return not (self.cert_file and self.key_file) and not self.auto_tls


@dataclass
class ServerConfig:
    """A member's configuration, with etcd's names and etcd's defaults applied."""

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
    #: As given: 0 means etcd's default quota, negative means no quota.
    quota_backend_bytes: int
    max_request_bytes: int
    max_txn_ops: int
    auto_compaction_mode: str
    auto_compaction_retention: str
    log_level: str
    logger: str
    log_outputs: list[str]
    config_file: str = ""
    client_tls: TlsFiles = field(default_factory=TlsFiles)
    peer_tls: TlsFiles = field(default_factory=TlsFiles)
    #: Go names of the allowed TLS 1.2 cipher suites (empty: all).
    cipher_suites: list[str] = field(default_factory=list)
    tls_min_version: str = "TLS1.2"
    #: --auth-token as given: "simple" or "jwt,<options>" (parsed by the core at start).
    auth_token: str = "simple"
    #: Lifetime of an idle simple token (--auth-token-ttl), in seconds.
    auth_token_ttl: int = 300
    #: bcrypt cost for new passwords (--bcrypt-cost).
    bcrypt_cost: int = 10
    self_signed_cert_validity: int = 1
    #: --listen-client-http-urls and --listen-metrics-urls (served by etcdcore.http).
    listen_client_http_urls: list[str] = field(default_factory=list)
    listen_metrics_urls: list[str] = field(default_factory=list)
    #: Flags given that etcdcore accepts but does not act on (yet).
    ignored: list[str] = field(default_factory=list)
    #: Log lines for main() to emit once logging is configured.
    notices: list[Notice] = field(default_factory=list)
    #: HTTP/2 streams one client connection may have open at once (etcd 3.5.2+).
    max_concurrent_streams: int = MAX_UINT32
    #: --experimental-initial-corrupt-check: compare hashes with the peers at start.
    initial_corrupt_check: bool = False
    #: --backend-batch-interval in seconds and --backend-batch-limit (0: etcd's
    #: defaults, 100ms and 10000).
    backend_batch_interval: float = 0.0
    backend_batch_limit: int = 0
    #: --experimental-enable-lease-checkpoint, and how often (seconds).
    lease_checkpoint: bool = False
    lease_checkpoint_interval: float = 300.0
    #: --experimental-watch-progress-notify-interval in seconds.
    watch_progress_notify_interval: float = DEFAULT_WATCH_PROGRESS_NOTIFY_INTERVAL
    #: --enable-console: the web console under /console/ (etcdcore.http.console).
    enable_console: bool = False

    # -- parsing -----------------------------------------------------------------------
    @classmethod
    def from_args(cls, argv: Sequence[str], environ: Mapping[str, str]) -> ServerConfig:
        """Parse a command line (without the program name) and an environment.

        Raises :class:`UsageError` / :class:`ConfigError` for what etcd refuses,
        :class:`VersionRequested` / :class:`HelpRequested` for ``--version`` / ``-h``.
        """
        given, rest = parse_go_flags(argv)
        if rest:
            raise ConfigError(f"'{rest[0]}' is not a valid flag")
        if _truthy(given.get("version", "false")):
            raise VersionRequested
        notices: list[Notice] = []
        config_file = given.get("config-file", "") or environ.get("ETCD_CONFIG_FILE", "")
        if config_file:
            values = load_config_file(config_file, notices)
            explicit = set(values)
            notices.append(
                Notice(
                    "info",
                    "loaded server configuration, other configuration command line flags "
                    "and environment variables will be ignored if provided",
                    {"path": config_file},
                )
            )
        else:
            values = dict(given)
            values.update(_from_env(environ, given, notices))
            explicit = set(values)
            # etcd: an explicit listen-client-urls drops the default advertise URLs.
            if "listen-client-urls" in values and "advertise-client-urls" not in values:
                values["advertise-client-urls"] = ""
        values.pop("config-file", None)
        values.pop("version", None)
        cfg = cls._build(values, explicit, notices)
        cfg.config_file = config_file
        return cfg

    @classmethod
    def _build(
        cls, values: dict[str, str], explicit: set[str], notices: list[Notice]
    ) -> ServerConfig:
        def get(name: str) -> str:
            return values[name] if name in values else FLAG_BY_NAME[name].default

        for name in sorted(explicit):
            flag = FLAG_BY_NAME.get(name)
            if flag is None or flag.use == USED or get(name) == flag.default:
                continue
            if flag.use == REFUSED:
                raise ConfigError(f"--{name} is not supported by etcdcore yet")
            if name in LEGACY_IGNORED:
                notices.append(
                    Notice("warn", "flag is no longer supported - ignoring", {"flag-name": name})
                )
                continue
            notices.append(
                Notice(
                    flag.use,
                    "flag is accepted for etcd compatibility but not supported by etcdcore yet; "
                    "ignoring",
                    {"flag-name": name, "value": get(name)},
                )
            )

        # embed.Config.Validate, in etcd's order.
        logger = get("logger")
        if logger == "capnslog":
            raise ConfigError("--logger=capnslog is removed in v3.5")
        if logger != "zap":
            raise ConfigError(f"unknown logger option {logger!r}")
        log_outputs = _list(get("log-outputs")) or ["default"]
        if "default" in log_outputs and len(log_outputs) > 1:
            raise ConfigError('multi logoutput for "default" is not supported yet')
        log_level = get("log-level")
        if log_level not in LOG_LEVELS:
            raise ConfigError(f'unrecognized level: "{log_level}"')

        listen_peer = parse_urls(get("listen-peer-urls"), "listen-peer-urls")
        listen_client = parse_urls(get("listen-client-urls"), "listen-client-urls")
        check_bind_urls(listen_peer)
        check_bind_urls(listen_client)
        http_urls: dict[str, list[str]] = {}
        for flag_name in ("listen-client-http-urls", "listen-metrics-urls"):
            value = get(flag_name)
            http_urls[flag_name] = parse_urls(value, flag_name) if value else []
            check_bind_urls(http_urls[flag_name])
        peer_urls = parse_urls(get("initial-advertise-peer-urls"), "initial-advertise-peer-urls")
        adv = get("advertise-client-urls")
        client_urls = parse_urls(adv, "advertise-client-urls") if adv else []
        state = get("initial-cluster-state")
        if state not in ("new", "existing"):
            raise ConfigError(f'unexpected clusterState "{state}"')
        heartbeat = _uint(get("heartbeat-interval"), "heartbeat-interval")
        election = _uint(get("election-timeout"), "election-timeout")
        if heartbeat == 0:
            raise ConfigError(f"--heartbeat-interval must be >0 (set to {heartbeat}ms)")
        if election == 0:
            raise ConfigError(f"--election-timeout must be >0 (set to {election}ms)")
        if 5 * heartbeat > election:
            raise ConfigError(
                f"--election-timeout[{election}ms] should be at least as 5 times as "
                f"--heartbeat-interval[{heartbeat}ms]"
            )
        if election > MAX_ELECTION_MS:
            raise ConfigError(
                f"--election-timeout[{election}ms] is too long, and should be set less than "
                f"{MAX_ELECTION_MS}ms"
            )
        if not client_urls:
            raise ConfigError(
                "--advertise-client-urls is required when --listen-client-urls is set explicitly"
            )
        mode = get("auto-compaction-mode")
        if mode not in ("", "periodic", "revision"):
            raise ConfigError(f'unknown auto-compaction-mode "{mode}"')
        retention = get("auto-compaction-retention")
        parse_compaction_retention(mode, retention)

        # etcdmain: data dir and initial cluster defaults that follow --name.
        name = get("name")
        data_dir = get("data-dir") or f"{name}.etcd"
        initial_cluster = get("initial-cluster")
        if name != DEFAULT_NAME and initial_cluster == DEFAULT_INITIAL_CLUSTER:
            initial_cluster = ",".join(f"{name}={u}" for u in peer_urls)
        cluster = parse_initial_cluster(initial_cluster)
        verify_bootstrap(name, peer_urls, cluster, state)

        snapshot_count = _uint(get("snapshot-count"), "snapshot-count")
        if snapshot_count == 0:
            notices.append(
                Notice(
                    "info",
                    "updated snapshot count to default",
                    {"given-snapshot-count": 0, "updated-snapshot-count": DEFAULT_SNAPSHOT_COUNT},
                )
            )
            snapshot_count = DEFAULT_SNAPSHOT_COUNT
        quota = _int(get("quota-backend-bytes"), "quota-backend-bytes")
        if quota > MAX_QUOTA_BYTES:
            notices.append(
                Notice(
                    "warn",
                    "quota exceeds the maximum value",
                    {"quota-size-bytes": quota, "quota-maximum-size-bytes": MAX_QUOTA_BYTES},
                )
            )
        progress_interval = go_duration_seconds(get("experimental-watch-progress-notify-interval"))
        if progress_interval <= 0:
            # etcd keeps its default for a zero or negative interval.
            progress_interval = DEFAULT_WATCH_PROGRESS_NOTIFY_INTERVAL
        elif progress_interval < MIN_WATCH_PROGRESS_NOTIFY_INTERVAL:
            notices.append(
                Notice(
                    "warn",
                    "adjusting watch progress notify interval to minimum period",
                    {"min-watch-progress-interval": "100ms"},
                )
            )
            progress_interval = MIN_WATCH_PROGRESS_NOTIFY_INTERVAL
        client_tls = TlsFiles(
            cert_file=get("cert-file"),
            key_file=get("key-file"),
            trusted_ca_file=get("trusted-ca-file"),
            client_cert_auth=_truthy(get("client-cert-auth")),
            auto_tls=_truthy(get("auto-tls")),
            crl_file=get("client-crl-file"),
        )
        peer_tls = TlsFiles(
            cert_file=get("peer-cert-file"),
            key_file=get("peer-key-file"),
            trusted_ca_file=get("peer-trusted-ca-file"),
            client_cert_auth=_truthy(get("peer-client-cert-auth")),
            auto_tls=_truthy(get("peer-auto-tls")),
            crl_file=get("peer-crl-file"),
        )
        check_tls_urls(listen_client, client_tls, "--cert-file, --key-file", "client")
        check_tls_urls(listen_peer, peer_tls, "--peer-cert-file, --peer-key-file", "peer")
        for flag_name, urls in http_urls.items():
            for u in urls:
                if u.startswith("https://") and client_tls.empty():
                    raise ConfigError(
                        f"TLS key/cert (--cert-file, --key-file) must be provided for "
                        f"{flag_name} url {u} with HTTPS scheme"
                    )
        tls_min = get("tls-min-version")
        if tls_min not in ("TLS1.2", "TLS1.3"):
            raise ConfigError(f'unexpected TLS version "{tls_min}" (supported: TLS1.2, TLS1.3)')
        return cls(
            client_tls=client_tls,
            peer_tls=peer_tls,
            cipher_suites=[c for c in get("cipher-suites").split(",") if c],
            tls_min_version=tls_min,
            auth_token=get("auth-token"),
            auth_token_ttl=_uint(get("auth-token-ttl"), "auth-token-ttl"),
            bcrypt_cost=_uint(get("bcrypt-cost"), "bcrypt-cost"),
            self_signed_cert_validity=_uint(
                get("self-signed-cert-validity"), "self-signed-cert-validity"
            ),
            name=name,
            data_dir=data_dir,
            listen_client_urls=listen_client,
            listen_client_http_urls=http_urls["listen-client-http-urls"],
            listen_metrics_urls=http_urls["listen-metrics-urls"],
            advertise_client_urls=client_urls,
            listen_peer_urls=listen_peer,
            initial_advertise_peer_urls=peer_urls,
            initial_cluster=cluster,
            initial_cluster_state=state,
            initial_cluster_token=get("initial-cluster-token"),
            snapshot_count=snapshot_count,
            heartbeat_interval=heartbeat,
            election_timeout=election,
            quota_backend_bytes=quota,
            max_request_bytes=_uint(get("max-request-bytes"), "max-request-bytes"),
            max_txn_ops=_uint(get("max-txn-ops"), "max-txn-ops"),
            max_concurrent_streams=_uint32(get("max-concurrent-streams"), "max-concurrent-streams"),
            initial_corrupt_check=_truthy(get("experimental-initial-corrupt-check")),
            enable_console=_truthy(get("enable-console")),
            backend_batch_interval=max(0.0, go_duration_seconds(get("backend-batch-interval"))),
            backend_batch_limit=max(0, parse_go_int(get("backend-batch-limit"), signed=True)),
            lease_checkpoint=_truthy(get("experimental-enable-lease-checkpoint")),
            lease_checkpoint_interval=lease_checkpoint_interval(
                get("experimental-lease-checkpoint-interval")
            ),
            watch_progress_notify_interval=progress_interval,
            auto_compaction_mode=mode,
            auto_compaction_retention=retention,
            log_level=log_level,
            logger=logger,
            log_outputs=log_outputs,
            ignored=[
                n
                for n in sorted(explicit)
                if n in FLAG_BY_NAME
                and FLAG_BY_NAME[n].use != USED
                and get(n) != FLAG_BY_NAME[n].default
            ],
            notices=notices,
        )

    # -- derived values the core needs -----------------------------------------------
    def client_tls_enabled(self) -> bool:
        return any(u.startswith("https://") for u in self.listen_client_urls)

    def peer_tls_enabled(self) -> bool:
        return any(u.startswith("https://") for u in self.listen_peer_urls) or any(
            u.startswith("https://") for _, urls in self.initial_cluster for u in urls
        )

    def client_listen_addresses(self) -> list[str]:
        """``host:port`` of each --listen-client-urls entry ("localhost" -> 127.0.0.1)."""
        return [listen_address(u) for u in self.listen_client_urls]

    def peer_listen_addresses(self) -> list[str]:
        """``host:port`` of each --listen-peer-urls entry ("localhost" -> 127.0.0.1)."""
        return [listen_address(u) for u in self.listen_peer_urls]

    def backend_batch_interval_ms(self) -> int:
        """--backend-batch-interval in whole milliseconds (0: the default)."""
        return round(self.backend_batch_interval * 1000)

    def lease_checkpoint_interval_ms(self) -> int:
        """How often the leader checkpoints lease TTLs, in milliseconds (0: off)."""
        if not self.lease_checkpoint:
            return 0
        return max(1, round(self.lease_checkpoint_interval * 1000))
    def watch_progress_notify_interval_ms(self) -> int:
        """--experimental-watch-progress-notify-interval in whole milliseconds."""
        return round(self.watch_progress_notify_interval * 1000)

    def effective_quota_bytes(self) -> int:
        """The backend quota in bytes: etcd's default for 0, unlimited for negative."""
        if self.quota_backend_bytes == 0:
            return DEFAULT_QUOTA_BYTES
        if self.quota_backend_bytes < 0:
            return 2**64 - 1
        return self.quota_backend_bytes


# -- Go flag parsing -----------------------------------------------------------------


def parse_go_flags(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Parse ``argv`` as Go's ``flag.FlagSet.Parse`` does with etcd's flags.

    Returns (flag name -> raw value of the last occurrence, remaining arguments).
    Values are checked as Go checks them when a flag is set.
    """
    given: dict[str, str] = {}
    args = list(argv)
    while args:
        arg = args[0]
        if len(arg) < 2 or arg[0] != "-":
            break
        dashes = 2 if arg[1] == "-" else 1
        if dashes == 2 and len(arg) == 2:  # "--" ends the flags
            args.pop(0)
            break
        name = arg[dashes:]
        if not name or name[0] in "-=":
            raise UsageError(f"bad flag syntax: {arg}")
        args.pop(0)
        name, has_value, value = name.partition("=")
        flag = FLAG_BY_NAME.get(name)
        if flag is None:
            if name in ("help", "h"):
                raise HelpRequested
            raise UsageError(f"flag provided but not defined: -{name}")
        if flag.kind == BOOL:
            if has_value:
                if parse_bool(value) is None:
                    raise UsageError(f'invalid boolean value "{value}" for -{name}: parse error')
            else:
                value = "true"
        elif not has_value:
            if not args:
                raise UsageError(f"flag needs an argument: -{name}")
            value = args.pop(0)
        try:
            given[name] = check_value(flag, value)
        except ValueError as e:
            raise UsageError(f'invalid value "{value}" for flag -{name}: {e}') from None
    return given, args


def check_value(flag: Flag, value: str) -> str:
    """Validate ``value`` for ``flag`` as etcd's flag.Value.Set does; returns it
    normalized (URL lists deduplicated and sorted, booleans as true/false)."""
    if flag.kind == BOOL:
        b = parse_bool(value)
        if b is None:
            raise ValueError("parse error")
        return "true" if b else "false"
    if flag.kind in (UINT, INT):
        parse_go_int(value, signed=flag.kind == INT)
    elif flag.kind == UINT32:
        parse_go_uint32(value)
    elif flag.kind == DURATION:
        if not _DURATION.match(value):
            raise ValueError(f'time: invalid duration "{value}"')
    elif flag.kind == URLS:
        if not value and not flag.default:
            return value  # etcd's NewUniqueURLsWithExceptions("", ""): empty is allowed
        return ",".join(parse_urls(value, flag.name, in_flag=True))
    if flag.choices and value not in flag.choices:
        raise ValueError("invalid value")
    return value


_DURATION = re.compile(r"^[-+]?(0|((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)$")


def parse_bool(value: str) -> bool | None:
    """Go's strconv.ParseBool; None when not a boolean."""
    if value in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if value in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    return None


def parse_go_int(value: str, *, signed: bool) -> int:
    """Go's strconv.ParseInt / ParseUint with base 0: decimal, 0x.., 0o.., 0b.. or a
    leading 0 for octal; a sign only when signed."""
    text, negative = value, False
    if signed and text[:1] in ("+", "-"):
        negative, text = text[0] == "-", text[1:]
    low = text.lower()
    base, digits = 10, text
    if low.startswith(("0x", "0o", "0b")):
        base, digits = {"x": 16, "o": 8, "b": 2}[low[1]], text[2:]
    elif len(text) > 1 and text[0] == "0":
        base, digits = 8, text[1:]
    if not digits or not digits[0].isalnum():
        raise ValueError("parse error")
    try:
        n = int(digits, base)
    except ValueError:
        raise ValueError("parse error") from None
    n = -n if negative else n
    low_bound, high_bound = (-(2**63), 2**63) if signed else (0, 2**64)
    if not low_bound <= n < high_bound:
        raise ValueError("value out of range")
    return n


def parse_go_uint32(value: str) -> int:
    """strconv.ParseUint(value, 0, 32), with strconv's own error text."""
    try:
        n = parse_go_int(value, signed=False)
    except ValueError as e:
        reason = "value out of range" if "range" in str(e) else "invalid syntax"
        raise ValueError(f'strconv.ParseUint: parsing "{value}": {reason}') from None
    if n > MAX_UINT32:
        raise ValueError(f'strconv.ParseUint: parsing "{value}": value out of range')
    return n


def _uint(value: str, name: str) -> int:
    try:
        return parse_go_int(value, signed=False)
    except ValueError as e:
        raise ConfigError(f'invalid value "{value}" for --{name}: {e}') from None


def _uint32(value: str, name: str) -> int:
    try:
        return parse_go_uint32(value)
    except ValueError as e:
        raise ConfigError(f'invalid value "{value}" for --{name}: {e}') from None


def _int(value: str, name: str) -> int:
    try:
        return parse_go_int(value, signed=True)
    except ValueError as e:
        raise ConfigError(f'invalid value "{value}" for --{name}: {e}') from None


def _truthy(value: str) -> bool:
    return bool(parse_bool(value))


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


# -- environment and config file -------------------------------------------------------


def _from_env(
    environ: Mapping[str, str], given: dict[str, str], notices: list[Notice]
) -> dict[str, str]:
    """etcd's flags.SetFlagsFromEnv + verifyEnv for the flags not on the command line."""
    values: dict[str, str] = {}
    used: set[str] = set()
    if environ.get("ETCD_VERSION"):
        used.add("ETCD_VERSION")
        notices.append(
            Notice(
                "warn",
                "cannot set special environment variable",
                {"key": "ETCD_VERSION", "value": environ["ETCD_VERSION"]},
            )
        )
    for flag in FLAGS:
        if flag.name in given or flag.name == "version":
            continue
        raw = environ.get(flag.env, "")
        if not raw:
            continue
        used.add(flag.env)
        try:
            values[flag.name] = check_value(flag, raw)
        except ValueError as e:
            raise ConfigError(f'invalid value "{raw}" for {flag.env}: {e}') from None
        notices.append(
            Notice(
                "info",
                "recognized and used environment variable",
                {"variable-name": flag.env, "variable-value": raw},
            )
        )
    shadowed = {FLAG_BY_NAME[n].env for n in given}
    for key, value in environ.items():
        if key in used:
            continue
        if key in shadowed:
            raise ConfigError(
                "conflicting environment variable is shadowed by corresponding command-line "
                f"flag (either unset environment variable or disable flag)): {key}"
            )
        if key.startswith("ETCD_"):
            notices.append(
                Notice(
                    "warn",
                    "unrecognized environment variable",
                    {"environment-variable": f"{key}={value}"},
                )
            )
    return values


def load_config_file(path: str, notices: list[Notice]) -> dict[str, str]:
    """Read etcd's YAML config file into flag name -> raw value."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"open {path}: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"error converting YAML to JSON: {e}") from e
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: the configuration must be a YAML mapping")
    values: dict[str, str] = {}
    for key, raw in doc.items():
        key = str(key)
        if raw is None:
            continue
        if key in ("client-transport-security", "peer-transport-security") and isinstance(
            raw, dict
        ):
            prefix = "" if key.startswith("client") else "peer-"
            for sub, subraw in raw.items():
                if str(sub) in _TLS_KEYS and subraw is not None:
                    flag = FLAG_BY_NAME[prefix + str(sub)]
                    values[flag.name] = _yaml_value(flag, subraw, path)
            continue
        known = FLAG_BY_NAME.get(key)
        if known is None or key in ("config-file", "version"):
            notices.append(Notice("warn", "ignoring unknown config file key", {"key": key}))
            continue
        values[key] = _yaml_value(known, raw, path)
    return values


def _yaml_value(flag: Flag, raw: Any, path: str) -> str:
    if isinstance(raw, bool):
        text = "true" if raw else "false"
    elif isinstance(raw, list):
        text = ",".join(str(v) for v in raw)
    else:
        text = str(raw)
    try:
        return check_value(flag, text)
    except ValueError as e:
        raise ConfigError(f'{path}: invalid value "{text}" for {flag.name}: {e}') from None


# -- URLs and the initial cluster ------------------------------------------------------


def parse_urls(value: str, flag: str, *, in_flag: bool = False) -> list[str]:
    """etcd's types.NewURLs: http(s) URLs with host:port and no path, deduplicated
    and sorted. unix sockets are not served by etcdcore yet."""
    urls: list[str] = []
    for raw in value.split(","):
        u = raw.strip()
        parts = urlsplit(u)
        if parts.scheme not in ("http", "https", "unix", "unixs"):
            raise _url_error(f"URL scheme must be http, https, unix, or unixs: {u}", flag, in_flag)
        hostport = parts.netloc.rpartition("@")[2]
        if not _has_host_port(hostport):
            raise _url_error(f'URL address does not have the form "host:port": {u}', flag, in_flag)
        if parts.path or parts.query or parts.fragment:
            raise _url_error(f"URL must not contain a path: {u}", flag, in_flag)
        if parts.scheme not in ("http", "https"):
            raise ConfigError(
                f"--{flag}: {parts.scheme} URLs are not supported by etcdcore yet: {u}"
            )
        normalized = f"{parts.scheme}://{hostport}"
        if normalized not in urls:
            urls.append(normalized)
    return sorted(urls)


def _url_error(text: str, flag: str, in_flag: bool) -> Exception:
    return ValueError(text) if in_flag else ConfigError(f"--{flag}: {text}")


def _has_host_port(hostport: str) -> bool:
    """Go's net.SplitHostPort succeeds (and, for us, the port is a number)."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0 or not hostport[end + 1 :].startswith(":"):
            return False
        port = hostport[end + 2 :]
    else:
        host, sep, port = hostport.rpartition(":")
        if not sep or ":" in host:
            return False
    return port.isdigit() and int(port) < 65536


def _host(url: str) -> str:
    hostport = url.split("://", 1)[1]
    return hostport.rsplit(":", 1)[0].strip("[]")


def check_tls_urls(urls: list[str], tls: TlsFiles, flags: str, kind: str) -> None:
    """etcd's listener checks: https needs a certificate; one scheme per
    listener kind (etcdcore serves TLS on all of a kind's listeners or none)."""
    schemes = {u.split("://", 1)[0] for u in urls}
    for u in urls:
        if u.startswith("https://") and tls.empty():
            raise ConfigError(
                f"TLS key/cert ({flags}) must be provided for {kind} url {u} with HTTPS scheme"
            )
    if len(schemes) > 1:
        raise ConfigError(
            f"etcdcore serves either http or https {kind} URLs, not both: {','.join(urls)}"
        )


def check_bind_urls(urls: list[str]) -> None:
    """etcd's checkBindURLs: a listen URL's host must be an IP (or localhost)."""
    for url in urls:
        host = _host(url)
        if host == "localhost":
            continue
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(f"expected IP in URL for binding ({url})") from None


def listen_address(url: str) -> str:
    """The ``host:port`` the core binds for a listen URL ("localhost" -> 127.0.0.1)."""
    hostport = url.split("://", 1)[1]
    host, _, port = hostport.rpartition(":")
    if host == "localhost":
        host = "127.0.0.1"
    return f"{host}:{port}"


def parse_initial_cluster(value: str) -> list[tuple[str, list[str]]]:
    """etcd's types.NewURLsMap: "name=url,name=url" -> [(name, sorted urls)]."""
    members: dict[str, list[str]] = {}
    for part in value.split(","):
        if not part:
            continue
        name, _, url = part.partition("=")
        members.setdefault(name, []).append(url)
    return [(name, parse_urls(",".join(urls), "initial-cluster")) for name, urls in members.items()]


def _same_url(url: str) -> str:
    """A URL with "localhost" resolved, as etcd's URLStringsEqual compares them."""
    return url.replace("://localhost:", "://127.0.0.1:")


def verify_bootstrap(
    name: str, peer_urls: list[str], cluster: list[tuple[str, list[str]]], state: str
) -> None:
    """etcd's ServerConfig.VerifyBootstrap / VerifyJoinExisting."""
    members = dict(cluster)
    mine = members.get(name)
    if not mine:
        raise ConfigError(
            f'couldn\'t find local name "{name}" in the initial cluster configuration'
        )
    if state == "new":
        listed = {_same_url(u) for u in mine}
        advertised = {_same_url(u) for u in peer_urls}
        if listed != advertised:
            missing = sorted(u for u in mine if _same_url(u) not in advertised)
            if missing:
                raise ConfigError(
                    f"--initial-cluster has {','.join(f'{name}={u}' for u in missing)} but "
                    f"missing from --initial-advertise-peer-urls={','.join(peer_urls)}"
                )
            extra = sorted(u for u in peer_urls if _same_url(u) not in listed)
            raise ConfigError(
                f"--initial-cluster must include {','.join(f'{name}={u}' for u in extra)} given "
                f"--initial-advertise-peer-urls={','.join(peer_urls)}"
            )
    seen: set[str] = set()
    for _, urls in cluster:
        for u in urls:
            if _same_url(u) in seen:
                text = ",".join(f"{n}={x}" for n, us in sorted(cluster) for x in us)
                raise ConfigError(f"initial cluster {text} has duplicate url")
            seen.add(_same_url(u))


def parse_compaction_retention(mode: str, retention: str) -> float:
    """etcd's parseCompactionRetention: hours (periodic) or revisions, or a Go
    duration; returns seconds (or revisions)."""
    try:
        n = int(retention)
    except ValueError:
        n = -1
    if n >= 0:
        return float(n) if mode == "revision" else n * 3600.0
    if not _DURATION.match(retention):
        raise ConfigError(
            f'error parsing CompactionRetention: time: invalid duration "{retention}"'
        )
    return go_duration_seconds(retention)


def lease_checkpoint_interval(text: str) -> float:
    """--experimental-lease-checkpoint-interval in seconds; a zero or negative
    interval means etcd's 5 minutes."""
    seconds = go_duration_seconds(text)
    return seconds if seconds > 0 else 300.0


def go_duration_seconds(text: str) -> float:
    """A Go duration (already checked against ``_DURATION``) in seconds."""
    total = 0.0
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    for number, unit in re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)", text):
        total += float(number) * units[unit]
    return -total if text.startswith("-") else total


def help_text() -> str:
    """The -h text: usage, then every flag with its default."""
    lines = [USAGE, "Flags:"]
    for f in FLAGS:
        if f.name in LEGACY_IGNORED:
            continue
        note = "" if f.use == USED else " (accepted, not supported yet)"
        lines.append(f"  --{f.name} '{f.default}'")
        if f.help or note:
            lines.append(f"    {f.help}{note}".rstrip())
    return "\n".join(lines) + "\n"
