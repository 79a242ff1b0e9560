"""``etcdcore grpc-proxy start``'s command line, parsed as etcd 3.5 parses
``etcd grpc-proxy start`` (a cobra command, so spf13/pflag's rules):

- ``--flag=value`` or ``--flag value``; booleans take ``--flag`` or
  ``--flag=value`` only; ``-h`` is the one shorthand; arguments that are not
  flags are allowed anywhere and ignored; ``--`` ends the flags;
- ``--endpoints`` is a comma-separated list (CSV), repeatable;
- errors come as pflag words them (``unknown flag: --x``, ``invalid argument
  "abc" for "--resolver-ttl" flag: strconv.ParseInt: parsing "abc": invalid
  syntax``), then the usage, and etcd exits 1;
- no environment variables and no config file are read (etcd's proxy reads
  none).

Parsing is pure: nothing is opened, bound or logged here.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

PROGRAM = "etcdcore"
MAX_INT32 = 2**31 - 1
#: clientv3's default send limit, used when --max-send-bytes is not positive.
CLIENT_DEFAULT_SEND = 2 * 1024 * 1024

STR, STRS, INT, UINT, BOOL, DURATION = "string", "strings", "int", "uint", "bool", "duration"


@dataclass(frozen=True)
class Flag:
    name: str
    kind: str
    default: str
    usage: str
    #: How the default shows in the help ("" for the type's zero value).
    shown: str = ""


FLAGS: tuple[Flag, ...] = (
    Flag("advertise-client-url", STR, "127.0.0.1:23790",
         "advertise address to register (must be reachable by client)", '"127.0.0.1:23790"'),
    Flag("auto-tls", BOOL, "false", "proxy TLS using generated certificates"),
    Flag("cacert", STR, "",
         "verify certificates of TLS-enabled secure etcd servers using this CA bundle"),
    Flag("cert", STR, "",
         "identify secure connections with etcd servers using this TLS certificate file"),
    Flag("cert-file", STR, "",
         "identify secure connections to the proxy using this TLS certificate file"),
    Flag("client-crl-file", STR, "", "proxy client certificate revocation list file."),
    Flag("data-dir", STR, "default.proxy", "Data directory for persistent data",
         '"default.proxy"'),
    Flag("debug", BOOL, "false", "Enable debug-level logging for grpc-proxy."),
    Flag("discovery-srv", STR, "",
         "domain name to query for SRV records describing cluster endpoints"),
    Flag("discovery-srv-name", STR, "", "service name to query when using DNS discovery"),
    Flag("enable-pprof", BOOL, "false",
         'Enable runtime profiling data via HTTP server. Address is at client URL + '
         '"/debug/pprof/"'),
    Flag("endpoints", STRS, "127.0.0.1:2379", "comma separated etcd cluster endpoints",
         "[127.0.0.1:2379]"),
    Flag("experimental-leasing-prefix", STR, "",
         "leasing metadata prefix for disconnected linearized reads."),
    Flag("experimental-serializable-ordering", BOOL, "false",
         "Ensure serializable reads have monotonically increasing store revisions across "
         "endpoints."),
    Flag("grpc-keepalive-interval", DURATION, "2h0m0s",
         "Frequency duration of server-to-client ping to check if a connection is alive "
         "(0 to disable).", "2h0m0s"),
    Flag("grpc-keepalive-min-time", DURATION, "5s",
         "Minimum interval duration that a client should wait before pinging proxy.", "5s"),
    Flag("grpc-keepalive-timeout", DURATION, "20s",
         "Additional duration of wait before closing a non-responsive connection "
         "(0 to disable).", "20s"),
    Flag("insecure-discovery", BOOL, "false", "accept insecure SRV records"),
    Flag("insecure-skip-tls-verify", BOOL, "false",
         "skip authentication of etcd server TLS certificates (CAUTION: this option should "
         "be enabled only for testing purposes)"),
    Flag("key", STR, "", "identify secure connections with etcd servers using this TLS key file"),
    Flag("key-file", STR, "", "identify secure connections to the proxy using this TLS key file"),
    Flag("listen-addr", STR, "127.0.0.1:23790", "listen address", '"127.0.0.1:23790"'),
    Flag("max-recv-bytes", INT, str(MAX_INT32),
         "message receive limits in bytes (default value is math.MaxInt32)", str(MAX_INT32)),
    Flag("max-send-bytes", INT, "1572864",
         "message send limits in bytes (default value is 1.5 MiB)", "1572864"),
    Flag("metrics-addr", STR, "",
         "listen for endpoint /metrics requests on an additional interface"),
    Flag("namespace", STR, "", "string to prefix to all keys for namespacing requests"),
    Flag("resolver-prefix", STR, "",
         "prefix to use for registering proxy (must be shared with other grpc-proxy members)"),
    Flag("resolver-ttl", INT, "0", "specify TTL, in seconds, when registering proxy endpoints"),
    Flag("self-signed-cert-validity", UINT, "1",
         "The validity period of the proxy certificates, unit is year", "1"),
    Flag("trusted-ca-file", STR, "",
         "verify certificates of TLS-enabled secure proxy using this CA bundle"),
)  # fmt: skip
FLAG_BY_NAME = {f.name: f for f in FLAGS}

#: Flags etcdcore accepts but does not act on (reported when set).
UNSUPPORTED = (
    "client-crl-file",
    "discovery-srv",
    "discovery-srv-name",
    "enable-pprof",
    "experimental-leasing-prefix",
    "experimental-serializable-ordering",
    "insecure-discovery",
)


class UsageError(Exception):
    """A command line pflag refuses: printed with the usage, exit 1."""


class HelpRequested(Exception):
    """``-h``/``--help``: print the help, exit 0."""


class CheckError(Exception):
    """A combination etcd's checkArgs refuses: the message alone, exit 1."""


def _flag_lines() -> list[str]:
    """pflag's FlagUsages: names and types, the usage in one column."""
    rows = []
    entries = [(f.name, f.kind, f.usage, f.shown) for f in FLAGS]
    entries.append(("help", BOOL, "help for start", ""))
    entries.sort()
    for name, kind, usage, shown in entries:
        left = f"  -h, --{name}" if name == "help" else f"      --{name}"
        if kind != BOOL:
            left += f" {kind}"
        if shown:
            usage += f" (default {shown})"
        rows.append((left, usage))
    width = max(len(left) for left, _ in rows) + 2
    return [f"{left}{' ' * (width - len(left))} {usage}" for left, usage in rows]


def start_usage() -> str:
    lines = [
        "Usage:",
        f"  {PROGRAM} grpc-proxy start [flags]",
        "",
        "Flags:",
        *_flag_lines(),
    ]
    return "\n".join(lines) + "\n"


def start_help() -> str:
    return "start the grpc proxy\n\n" + start_usage()


def proxy_usage() -> str:
    return (
        "Usage:\n"
        f"  {PROGRAM} grpc-proxy [command]\n"
        "\n"
        "Available Commands:\n"
        "  start       start the grpc proxy\n"
        "\n"
        "Flags:\n"
        "  -h, --help   help for grpc-proxy\n"
        "\n"
        f'Use "{PROGRAM} grpc-proxy [command] --help" for more information about a command.\n'
    )


def proxy_help() -> str:
    return "grpc-proxy related command\n\n" + proxy_usage()


# -- values, as Go parses them ---------------------------------------------------------


def parse_go_int(text: str, *, signed: bool) -> int:
    """strconv.ParseInt/ParseUint(text, 0, 64), with strconv's errors."""
    fn = "ParseInt" if signed else "ParseUint"
    syntax = ValueError(f'strconv.{fn}: parsing "{text}": invalid syntax')
    s, negative = text, False
    if signed and s[:1] in ("+", "-"):
        negative, s = s[0] == "-", s[1:]
    base, digits = 10, s
    low = s.lower()
    if low.startswith(("0x", "0o", "0b")):
        base, digits = {"x": 16, "o": 8, "b": 2}[low[1]], s[2:]
    elif len(s) > 1 and s[0] == "0":
        base, digits = 8, s[1:]
    if base != 10:
        digits = digits.lstrip("_") if digits.startswith("_") else digits
    if not digits or not re.fullmatch(r"[0-9a-zA-Z]+(_[0-9a-zA-Z]+)*", digits):
        raise syntax
    try:
        n = int(digits.replace("_", ""), base)
    except ValueError:
        raise syntax from None
    if "_" in digits and base == 10:
        raise syntax
    n = -n if negative else n
    lo, hi = (-(2**63), 2**63) if signed else (0, 2**64)
    if not lo <= n < hi:
        raise ValueError(f'strconv.{fn}: parsing "{text}": value out of range')
    return n


def parse_bool(text: str) -> bool:
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
          "h": 3600.0}  # fmt: skip


def parse_duration(text: str) -> float:
    """time.ParseDuration (Go 1.16 words), in seconds."""
    quoted = f'"{text}"'
    s = text
    neg = False
    if s[:1] in ("+", "-"):
        neg, s = s[0] == "-", s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f"time: invalid duration {quoted}")
    total = 0.0
    while s:
        m = re.match(r"(\d*)(\.\d*)?", s)
        whole, frac = m.group(1) if m else "", (m.group(2) or "") if m else ""
        if not whole and frac in ("", "."):
            raise ValueError(f"time: invalid duration {quoted}")
        s = s[len(whole) + len(frac) :]
        unit_m = re.match(r"[^\d.]+", s)
        if not unit_m:
            raise ValueError(f"time: missing unit in duration {quoted}")
        unit = unit_m.group(0)
        if unit not in _UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration {quoted}')
        s = s[len(unit) :]
        total += float((whole or "0") + (frac if frac != "." else "")) * _UNITS[unit]
    return -total if neg else total


def parse_csv(text: str) -> list[str]:
    """pflag's StringSlice: one CSV record."""
    if text == "":
        return []
    try:
        rows = list(csv.reader([text], strict=True))
    except csv.Error as e:
        raise ValueError(f"parse error on line 1: {e}") from None
    return rows[0] if rows else []


# -- the configuration -----------------------------------------------------------------


@dataclass
class ProxyConfig:
    """What ``etcdcore grpc-proxy start`` was asked to do."""

    listen_addr: str = "127.0.0.1:23790"
    endpoints: list[str] = field(default_factory=lambda: ["127.0.0.1:2379"])
    advertise_client_url: str = "127.0.0.1:23790"
    resolver_prefix: str = ""
    resolver_ttl: int = 0
    namespace: str = ""
    metrics_addr: str = ""
    data_dir: str = "default.proxy"
    max_send_bytes: int = 1572864
    max_recv_bytes: int = MAX_INT32
    cert: str = ""
    key: str = ""
    cacert: str = ""
    insecure_skip_tls_verify: bool = False
    cert_file: str = ""
    key_file: str = ""
    trusted_ca_file: str = ""
    auto_tls: bool = False
    self_signed_cert_validity: int = 1
    keepalive_min_time: float = 5.0
    keepalive_interval: float = 7200.0
    keepalive_timeout: float = 20.0
    debug: bool = False
    #: Flags given that etcdcore does not act on.
    ignored: list[str] = field(default_factory=list)

    @classmethod
    def from_args(cls, argv: Sequence[str]) -> ProxyConfig:
        """Parses the arguments after ``start``; raises UsageError,
        HelpRequested or CheckError."""
        given = parse_pflags(argv)
        cfg = cls()
        endpoints: list[str] | None = None
        for name, values in given.items():
            flag = FLAG_BY_NAME[name]
            attr = name.replace("-", "_")
            if flag.kind == STRS:
                endpoints = [v for value in values for v in parse_csv(value)]
                continue
            value = values[-1]
            if name == "grpc-keepalive-min-time":
                cfg.keepalive_min_time = parse_duration(value)
            elif name == "grpc-keepalive-interval":
                cfg.keepalive_interval = parse_duration(value)
            elif name == "grpc-keepalive-timeout":
                cfg.keepalive_timeout = parse_duration(value)
            elif flag.kind == BOOL:
                if hasattr(cfg, attr):
                    setattr(cfg, attr, parse_bool(value))
            elif flag.kind in (INT, UINT):
                if hasattr(cfg, attr):
                    setattr(cfg, attr, parse_go_int(value, signed=flag.kind == INT))
            elif hasattr(cfg, attr):
                setattr(cfg, attr, value)
            if name in UNSUPPORTED:
                cfg.ignored.append(name)
        if endpoints is not None:
            cfg.endpoints = endpoints
        cfg.check()
        return cfg

    def check(self) -> None:
        """etcd's checkArgs."""
        if self.resolver_prefix and self.resolver_ttl < 1:
            raise CheckError(f"invalid resolver-ttl {self.resolver_ttl}")
        if not self.resolver_prefix and self.resolver_ttl > 0:
            raise CheckError(f'invalid resolver-prefix "{self.resolver_prefix}"')
        if self.resolver_prefix and self.resolver_ttl > 0 and not self.advertise_client_url:
            raise CheckError(f'invalid advertise-client-url "{self.advertise_client_url}"')
        if self.auto_tls and self.self_signed_cert_validity == 0:
            raise CheckError("selfSignedCertValidity is invalid,it should be greater than 0")

    def send_limit(self) -> int:
        return self.max_send_bytes if self.max_send_bytes > 0 else CLIENT_DEFAULT_SEND

    def recv_limit(self) -> int:
        return self.max_recv_bytes if self.max_recv_bytes > 0 else MAX_INT32

    def listen_tls_given(self) -> bool:
        return bool(self.cert_file or self.key_file or self.trusted_ca_file)


def parse_pflags(argv: Sequence[str]) -> dict[str, list[str]]:
    """pflag's parse of the start command's flags: name -> values given."""
    given: dict[str, list[str]] = {}
    help_asked = False
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--":
            break
        if len(arg) < 2 or arg[0] != "-":
            continue  # a positional argument: cobra lets them through
        if arg[1] != "-":
            # Shorthands: only -h exists.
            for i, c in enumerate(arg[1:]):
                if c == "h":
                    help_asked = True
                    continue
                if c == "=" and i > 0:
                    break
                raise UsageError(f"unknown shorthand flag: '{c}' in {arg}")
            continue
        body = arg[2:]
        if not body or body[0] in "-=":
            raise UsageError(f"bad flag syntax: {arg}")
        name, has_value, value = body.partition("=")
        if name == "help":
            if has_value:
                try:
                    help_asked = parse_bool(value)
                except ValueError as e:
                    msg = f'invalid argument "{value}" for "-h, --help" flag: {e}'
                    raise UsageError(msg) from None
            else:
                help_asked = True
            continue
        flag = FLAG_BY_NAME.get(name)
        if flag is None:
            raise UsageError(f"unknown flag: --{name}")
        if not has_value:
            if flag.kind == BOOL:
                value = "true"
            elif args:
                value = args.pop(0)
            else:
                raise UsageError(f"flag needs an argument: --{name}")
        try:
            _check_value(flag, value)
        except ValueError as e:
            raise UsageError(f'invalid argument "{value}" for "--{name}" flag: {e}') from None
        given.setdefault(name, []).append(value)
    if help_asked:
        raise HelpRequested
    return given


def _check_value(flag: Flag, value: str) -> None:
    if flag.kind == BOOL:
        parse_bool(value)
    elif flag.kind == INT:
        parse_go_int(value, signed=True)
    elif flag.kind == UINT:
        parse_go_int(value, signed=False)
    elif flag.kind == DURATION:
        parse_duration(value)
    elif flag.kind == STRS:
        parse_csv(value)


def parse_metrics_addr(value: str) -> tuple[str, str]:
    """(scheme, host:port) of --metrics-addr, read as Go's url.Parse reads it;
    ValueError with etcd's words when it cannot be used."""
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$", value)
    if not m:
        raise ValueError(f'cannot parse "{value}"')
    scheme, rest = m.group(1).lower(), m.group(2)
    if not rest.startswith("//"):
        raise ValueError(f"unsupported scheme {scheme!r} in {value!r}")
    hostport = rest[2:].split("/", 1)[0]
    if scheme not in ("http", "https"):
        raise ValueError(f'unsupported metrics-addr scheme "{scheme}"')
    return scheme, hostport
