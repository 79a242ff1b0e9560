"""etcd's flags, environment and config file, parsed as etcd 3.5 parses them.

Pure parsing: no processes. The expected texts and exit codes were checked
against the real etcd 3.5.1 binary.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from etcdcore.server.config import (
    DEFAULT_QUOTA_BYTES,
    FLAGS,
    ConfigError,
    HelpRequested,
    ServerConfig,
    UsageError,
    VersionRequested,
    parse_compaction_retention,
    parse_go_flags,
)

PEER = "http://127.0.0.1:12380"
CLIENT = "http://127.0.0.1:12379"


def parse(*argv: str, env: dict[str, str] | None = None) -> ServerConfig:
    return ServerConfig.from_args(list(argv), env or {})


def messages(cfg: ServerConfig) -> list[str]:
    return [n.msg for n in cfg.notices]


# -- defaults ------------------------------------------------------------------------


def test_defaults_are_etcds() -> None:
    c = parse()
    assert (c.name, c.data_dir) == ("default", "default.etcd")
    assert c.listen_client_urls == c.advertise_client_urls == ["http://localhost:2379"]
    assert c.listen_peer_urls == c.initial_advertise_peer_urls == ["http://localhost:2380"]
    assert c.initial_cluster == [("default", ["http://localhost:2380"])]
    assert (c.initial_cluster_state, c.initial_cluster_token) == ("new", "etcd-cluster")
    assert (c.snapshot_count, c.heartbeat_interval, c.election_timeout) == (100000, 100, 1000)
    assert (c.max_request_bytes, c.max_txn_ops) == (1572864, 128)
    assert (c.auto_compaction_mode, c.auto_compaction_retention) == ("periodic", "0")
    assert (c.log_level, c.logger, c.log_outputs) == ("info", "zap", ["default"])
    assert c.quota_backend_bytes == 0 and c.effective_quota_bytes() == DEFAULT_QUOTA_BYTES
    assert c.notices == [] and c.ignored == []


def test_every_flag_has_etcds_environment_variable_name() -> None:
    envs = {f.name: f.env for f in FLAGS}
    assert envs["data-dir"] == "ETCD_DATA_DIR"
    assert envs["initial-advertise-peer-urls"] == "ETCD_INITIAL_ADVERTISE_PEER_URLS"
    assert len(set(envs.values())) == len(envs)


def test_negative_quota_means_unlimited_and_zero_snapshot_count_means_default() -> None:
    c = parse("--quota-backend-bytes=-1", "--snapshot-count=0")
    assert c.effective_quota_bytes() == 2**64 - 1
    assert c.snapshot_count == 100000


# -- Go flag syntax ------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--snapshot-count=5"],
        ["--snapshot-count", "5"],
        ["-snapshot-count=5"],
        ["-snapshot-count", "5"],
        ["--snapshot-count=0x5"],
    ],
)
def test_flag_forms_are_gos(argv: list[str]) -> None:
    assert parse(*argv).snapshot_count == 5


def test_last_occurrence_wins() -> None:
    assert parse("--max-txn-ops=1", "--max-txn-ops=2").max_txn_ops == 2


def test_boolean_flags_take_no_separate_value() -> None:
    given, rest = parse_go_flags(["--enable-v2", "--client-cert-auth=false", "--name", "x"])
    assert given == {"enable-v2": "true", "client-cert-auth": "false", "name": "x"}
    assert rest == []
    with pytest.raises(ConfigError, match="'false' is not a valid flag"):
        parse("--enable-v2", "false")


def test_double_dash_ends_flags() -> None:
    assert parse_go_flags(["--name=a", "--", "--name=b"]) == ({"name": "a"}, ["--name=b"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--no-such-flag=1"], "flag provided but not defined: -no-such-flag"),
        (["--election-timeout"], "flag needs an argument: -election-timeout"),
        (["--snapshot-count=abc"], 'invalid value "abc" for flag -snapshot-count: parse error'),
        (["--snapshot-count=-1"], 'invalid value "-1" for flag -snapshot-count: parse error'),
        (["--enable-v2=maybe"], 'invalid boolean value "maybe" for -enable-v2: parse error'),
        (["---name=x"], "bad flag syntax: ---name=x"),
        (["--initial-cluster-state=old"], "for flag -initial-cluster-state: invalid value"),
        (["--grpc-keepalive-timeout=5"], "for flag -grpc-keepalive-timeout: time: invalid"),
        (["--listen-client-urls=localhost:2379"], "URL scheme must be http, https, unix"),
        (["--listen-peer-urls=http://127.0.0.1"], 'does not have the form "host:port"'),
        (["--listen-peer-urls=http://127.0.0.1:1/x"], "URL must not contain a path"),
    ],
)
def test_bad_command_lines_are_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(")) as err:
        parse(*argv)
    assert err.value.exit_code == 2


def test_positional_argument_is_refused_with_exit_1() -> None:
    with pytest.raises(ConfigError, match="'foo' is not a valid flag") as err:
        parse("foo")
    assert err.value.exit_code == 1


def test_version_and_help() -> None:
    with pytest.raises(VersionRequested):
        parse("--version")
    with pytest.raises(HelpRequested):
        parse("-h")
    with pytest.raises(HelpRequested):
        parse("--help")
    with pytest.raises(UsageError):
        parse("--version", "--bogus")  # Go parses every flag before acting


# -- environment ---------------------------------------------------------------------


def test_environment_variable_sets_a_flag() -> None:
    c = parse(env={"ETCD_MAX_TXN_OPS": "7", "ETCD_NAME": "n1"})
    assert (c.max_txn_ops, c.name, c.data_dir) == (7, "n1", "n1.etcd")
    assert "recognized and used environment variable" in messages(c)


def test_empty_environment_variable_is_not_used() -> None:
    assert parse(env={"ETCD_MAX_TXN_OPS": ""}).max_txn_ops == 128


def test_command_line_flag_shadowing_an_environment_variable_is_refused() -> None:
    # etcd 3.5.1 exits 1: "conflicting environment variable is shadowed by
    # corresponding command-line flag (either unset environment variable or disable flag))"
    with pytest.raises(ConfigError, match="conflicting environment variable") as err:
        parse("--max-txn-ops=9", env={"ETCD_MAX_TXN_OPS": "7"})
    assert err.value.exit_code == 1


def test_flags_and_environment_combine() -> None:
    c = parse("--max-txn-ops=9", env={"ETCD_SNAPSHOT_COUNT": "7"})
    assert (c.max_txn_ops, c.snapshot_count) == (9, 7)


def test_unrecognized_etcd_variable_warns() -> None:
    c = parse(env={"ETCD_NO_SUCH": "1", "ETCDCTL_API": "3", "HOME": "/root"})
    warned = [n.fields for n in c.notices if n.msg == "unrecognized environment variable"]
    assert warned == [{"environment-variable": "ETCD_NO_SUCH=1"}]


def test_bad_environment_value_is_an_error() -> None:
    with pytest.raises(ConfigError, match='invalid value "x" for ETCD_SNAPSHOT_COUNT') as err:
        parse(env={"ETCD_SNAPSHOT_COUNT": "x"})
    assert err.value.exit_code == 1


def test_etcd_version_variable_is_special() -> None:
    c = parse(env={"ETCD_VERSION": "1"})
    assert "cannot set special environment variable" in messages(c)


# -- config file ---------------------------------------------------------------------


def test_config_file_replaces_flags_and_environment(tmp_path: Path) -> None:
    f = tmp_path / "etcd.yml"
    f.write_text(
        "name: n2\n"
        "data-dir: /tmp/n2\n"
        "max-txn-ops: 64\n"
        "snapshot-count: 10\n"
        f"listen-client-urls: {CLIENT}\n"
        f"advertise-client-urls: {CLIENT}\n"
        "log-outputs: [stderr]\n"
        "enable-v2: false\n"
    )
    c = parse("--config-file", str(f), "--max-txn-ops=9", env={"ETCD_SNAPSHOT_COUNT": "3"})
    assert (c.name, c.data_dir, c.max_txn_ops, c.snapshot_count) == ("n2", "/tmp/n2", 64, 10)
    assert c.initial_cluster == [("n2", ["http://localhost:2380"])]
    assert c.listen_client_urls == [CLIENT] and c.log_outputs == ["stderr"]
    assert c.config_file == str(f)


def test_config_file_from_environment(tmp_path: Path) -> None:
    f = tmp_path / "etcd.yml"
    f.write_text("name: n3\n")
    assert parse(env={"ETCD_CONFIG_FILE": str(f)}).name == "n3"


def test_config_file_tls_sections_set_the_tls_flags(tmp_path: Path) -> None:
    f = tmp_path / "etcd.yml"
    f.write_text(
        "client-transport-security:\n  cert-file: /c.pem\n  client-cert-auth: true\n"
        "peer-transport-security:\n  trusted-ca-file: /ca.pem\n"
    )
    c = parse("--config-file", str(f))
    assert (c.client_tls.cert_file, c.client_tls.client_cert_auth) == ("/c.pem", True)
    assert c.peer_tls.trusted_ca_file == "/ca.pem"


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no-such.yml"):
        parse("--config-file", str(tmp_path / "no-such.yml"))
    bad = tmp_path / "bad.yml"
    bad.write_text("snapshot-count: many\n")
    with pytest.raises(ConfigError, match="snapshot-count"):
        parse("--config-file", str(bad))


# -- validation ----------------------------------------------------------------------


def test_name_alone_moves_the_default_initial_cluster() -> None:
    c = parse("--name", "n1")
    assert c.initial_cluster == [("n1", ["http://localhost:2380"])]
    assert c.data_dir == "n1.etcd"


def test_name_with_peer_urls_follows_them() -> None:
    c = parse("--name", "n1", "--initial-advertise-peer-urls", PEER, "--listen-peer-urls", PEER)
    assert c.initial_cluster == [("n1", [PEER])]


def test_local_member_must_be_in_initial_cluster() -> None:
    with pytest.raises(ConfigError, match='couldn\'t find local name "n9"'):
        parse("--name", "n9", "--initial-cluster", f"n1={PEER}")


def test_initial_cluster_urls_must_match_advertised_peer_urls() -> None:
    with pytest.raises(
        ConfigError,
        match="--initial-cluster has default=http://localhost:9999 but missing from "
        "--initial-advertise-peer-urls=http://localhost:2380",
    ):
        parse("--initial-cluster", "default=http://localhost:9999")


def test_advertised_peer_url_missing_from_initial_cluster() -> None:
    with pytest.raises(ConfigError, match="--initial-cluster must include default=" + PEER):
        parse("--initial-advertise-peer-urls", f"http://localhost:2380,{PEER}")


def test_localhost_and_loopback_are_the_same_peer() -> None:
    c = parse("--initial-advertise-peer-urls", "http://127.0.0.1:2380")
    assert c.initial_cluster == [("default", ["http://localhost:2380"])]


def test_initial_cluster_with_several_members() -> None:
    c = parse("--initial-cluster", f"default=http://localhost:2380,b={PEER},b=http://10.0.0.2:1")
    assert c.initial_cluster == [
        ("default", ["http://localhost:2380"]),
        ("b", ["http://10.0.0.2:1", PEER]),
    ]


def test_duplicate_peer_url_in_initial_cluster() -> None:
    with pytest.raises(ConfigError, match="has duplicate url"):
        parse("--initial-cluster", "default=http://localhost:2380,b=http://localhost:2380")


def test_listen_client_urls_need_advertise_client_urls() -> None:
    with pytest.raises(ConfigError, match="--advertise-client-urls is required"):
        parse("--listen-client-urls", CLIENT)
    assert parse("--listen-client-urls", CLIENT, "--advertise-client-urls", CLIENT)


def test_listen_urls_must_be_ip_addresses() -> None:
    with pytest.raises(ConfigError, match=r"expected IP in URL for binding \(http://example"):
        parse("--listen-client-urls=http://example.com:1", f"--advertise-client-urls={CLIENT}")


def test_unix_urls_are_not_served_yet() -> None:
    with pytest.raises(ConfigError, match="not supported by etcdcore yet"):
        parse("--listen-client-urls=unix://127.0.0.1:1", f"--advertise-client-urls={CLIENT}")


def test_https_client_url_needs_a_certificate() -> None:
    with pytest.raises(ConfigError, match="must be provided for client url https://127.0.0.1:1"):
        parse("--listen-client-urls=https://127.0.0.1:1", f"--advertise-client-urls={CLIENT}")


def test_https_client_url_with_auto_tls_is_served_over_tls() -> None:
    c = parse(
        "--listen-client-urls=https://127.0.0.1:1",
        f"--advertise-client-urls={CLIENT}",
        "--auto-tls",
    )
    assert c.client_tls_enabled() and c.client_tls.auto_tls


def test_mixing_http_and_https_listeners_is_refused() -> None:
    with pytest.raises(ConfigError, match="either http or https client URLs"):
        parse(
            "--listen-client-urls=https://127.0.0.1:1,http://127.0.0.1:2",
            f"--advertise-client-urls={CLIENT}",
            "--auto-tls",
        )


def test_listen_address_maps_localhost_to_loopback() -> None:
    assert parse().client_listen_addresses() == ["127.0.0.1:2379"]
    c = parse(
        "--listen-client-urls=http://[::1]:5,http://0.0.0.0:6", f"--advertise-client-urls={CLIENT}"
    )
    assert c.client_listen_addresses() == ["0.0.0.0:6", "[::1]:5"]


def test_urls_are_deduplicated_and_sorted() -> None:
    c = parse("--advertise-client-urls", f"{CLIENT},http://10.0.0.1:2,{CLIENT}")
    assert c.advertise_client_urls == ["http://10.0.0.1:2", CLIENT]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--heartbeat-interval=100", "--election-timeout=200"], "at least as 5 times"),
        (["--heartbeat-interval=0"], "--heartbeat-interval must be >0"),
        (["--election-timeout=60000"], "is too long, and should be set less than 50000ms"),
        (["--auto-compaction-mode=sometimes"], 'unknown auto-compaction-mode "sometimes"'),
        (["--auto-compaction-retention=soon"], "error parsing CompactionRetention"),
        (["--log-level=loud"], 'unrecognized level: "loud"'),
        (["--logger=capnslog"], "--logger=capnslog is removed in v3.5"),
        (["--log-outputs=default,stdout"], 'multi logoutput for "default"'),
        (["--discovery=http://d"], "--discovery is not supported by etcdcore yet"),
        (["--proxy=on"], "--proxy is not supported by etcdcore yet"),
    ],
)
def test_configurations_etcd_refuses(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse(*argv)
    assert err.value.exit_code == 1


def test_compaction_retention_units() -> None:
    assert parse_compaction_retention("periodic", "2") == 7200
    assert parse_compaction_retention("revision", "1000") == 1000
    assert parse_compaction_retention("periodic", "1h30m") == 5400


# -- flags accepted for compatibility ------------------------------------------------


def test_later_flags_are_accepted_and_reported() -> None:
    c = parse("--cert-file=/x.pem", "--client-cert-auth", "--enable-pprof", "--metrics=extensive")
    assert c.ignored == ["enable-pprof", "metrics"]
    assert {n.level for n in c.notices} == {"info"}


def test_experimental_flags_warn() -> None:
    c = parse("--experimental-memory-mlock=true")
    assert [(n.level, n.fields["flag-name"]) for n in c.notices] == [
        ("warn", "experimental-memory-mlock")
    ]


def test_lease_checkpointing_is_off_by_default() -> None:
    assert parse().lease_checkpoint_interval_ms() == 0


def test_lease_checkpointing_is_a_setting_every_five_minutes() -> None:
    c = parse("--experimental-enable-lease-checkpoint=true")
    assert c.notices == []
    assert c.lease_checkpoint_interval_ms() == 300_000


def test_lease_checkpoint_interval_takes_a_go_duration() -> None:
    c = parse(
        "--experimental-enable-lease-checkpoint=true",
        "--experimental-lease-checkpoint-interval=1.5s",
    )
    assert c.lease_checkpoint_interval_ms() == 1500


def test_initial_corrupt_check_is_a_setting_not_a_warning() -> None:
    c = parse("--experimental-initial-corrupt-check=true")
    assert c.initial_corrupt_check and c.notices == []


@pytest.mark.parametrize(
    ("value", "ms", "adjusted"),
    [
        ("10m0s", 600_000, False),
        ("250ms", 250, False),
        ("0s", 600_000, False),  # etcd keeps its default
        ("-5s", 600_000, False),
        ("10ms", 100, True),  # etcd's minimum
    ],
)
def test_watch_progress_notify_interval_is_a_setting(value: str, ms: int, adjusted: bool) -> None:
    c = parse(f"--experimental-watch-progress-notify-interval={value}")
    assert c.watch_progress_notify_interval_ms() == ms
    assert "experimental-watch-progress-notify-interval" not in c.ignored
    want = ["adjusting watch progress notify interval to minimum period"] if adjusted else []
    assert messages(c) == want


def test_crl_files_belong_to_their_side() -> None:
    c = parse("--client-crl-file=/c.crl", "--peer-crl-file=/p.crl")
    assert (c.client_tls.crl_file, c.peer_tls.crl_file) == ("/c.crl", "/p.crl")
    assert c.notices == []


def test_legacy_ignored_flags_take_no_value() -> None:
    c = parse("--v", "--name", "n1")
    assert c.name == "n1" and "flag is no longer supported - ignoring" in messages(c)


def test_flags_set_to_their_default_are_not_reported() -> None:
    assert parse("--enable-v2=false", "--auth-token=simple").notices == []
