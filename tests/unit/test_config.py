"""etcd's flags, environment and config file, parsed as etcd parses them."""

from __future__ import annotations

from pathlib import Path

import pytest

from etcdcore.server.config import DEFAULT_QUOTA_BYTES, ConfigError, ServerConfig


def parse(*argv: str, env: dict[str, str] | None = None) -> ServerConfig:
    return ServerConfig.from_args(list(argv), env or {})


def test_defaults_are_etcds() -> None:
    c = parse()
    assert (c.name, c.data_dir) == ("default", "default.etcd")
    assert c.listen_client_urls == ["http://localhost:2379"]
    assert c.initial_cluster == [("default", ["http://localhost:2380"])]
    assert (c.snapshot_count, c.heartbeat_interval, c.election_timeout) == (100000, 100, 1000)
    assert (c.max_request_bytes, c.max_txn_ops) == (1572864, 128)
    assert c.quota_backend_bytes == DEFAULT_QUOTA_BYTES


def test_data_dir_defaults_to_name_dot_etcd() -> None:
    c = parse("--name", "n1", "--initial-cluster", "n1=http://localhost:2380")
    assert c.data_dir == "n1.etcd"


def test_equals_and_space_forms_are_the_same() -> None:
    joined, spaced = parse("--snapshot-count=5"), parse("--snapshot-count", "5")
    assert joined.snapshot_count == spaced.snapshot_count == 5


def test_environment_variable_sets_a_flag() -> None:
    assert parse(env={"ETCD_MAX_TXN_OPS": "7"}).max_txn_ops == 7


def test_command_line_overrides_environment() -> None:
    assert parse("--max-txn-ops=9", env={"ETCD_MAX_TXN_OPS": "7"}).max_txn_ops == 9


def test_config_file_replaces_flags(tmp_path: Path) -> None:
    f = tmp_path / "etcd.yml"
    f.write_text("name: n2\ninitial-cluster: n2=http://localhost:2380\nmax-txn-ops: 64\n")
    c = parse("--config-file", str(f), "--max-txn-ops=9")
    assert (c.name, c.max_txn_ops) == ("n2", 64)


def test_unknown_flag_is_an_error() -> None:
    with pytest.raises(ConfigError):
        parse("--no-such-flag=1")


def test_local_member_must_be_in_initial_cluster() -> None:
    with pytest.raises(ConfigError, match="couldn't find local name"):
        parse("--name", "n9")


def test_initial_cluster_urls_must_match_advertised_peer_urls() -> None:
    with pytest.raises(ConfigError, match="--initial-advertise-peer-urls"):
        parse("--initial-cluster", "default=http://localhost:9999")


def test_url_without_port_is_refused() -> None:
    with pytest.raises(ConfigError, match="--listen-client-urls"):
        parse("--listen-client-urls", "http://localhost")


def test_listen_address_maps_localhost_to_loopback() -> None:
    assert parse().client_listen_addresses() == ["127.0.0.1:2379"]


def test_election_timeout_must_cover_five_heartbeats() -> None:
    with pytest.raises(ConfigError, match="election-timeout"):
        parse("--heartbeat-interval=100", "--election-timeout=200")


def test_tls_flags_are_accepted_and_reported_as_ignored() -> None:
    assert parse("--cert-file=/x.pem").ignored == ["cert-file"]
