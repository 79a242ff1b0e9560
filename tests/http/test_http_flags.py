"""Parsing of the HTTP listener flags."""

from __future__ import annotations

import pytest

from etcdcore.server.config import ConfigError, ServerConfig


def parse(*argv: str) -> ServerConfig:
    return ServerConfig.from_args(list(argv), {})


def test_http_urls_default_to_none() -> None:
    cfg = parse()
    assert (cfg.listen_client_http_urls, cfg.listen_metrics_urls) == ([], [])


def test_http_urls_are_parsed_and_used() -> None:
    cfg = parse(
        "--listen-client-http-urls=http://127.0.0.1:2378",
        "--listen-metrics-urls=http://127.0.0.1:2381,http://127.0.0.1:2382",
    )
    assert cfg.listen_client_http_urls == ["http://127.0.0.1:2378"]
    assert cfg.listen_metrics_urls == ["http://127.0.0.1:2381", "http://127.0.0.1:2382"]
    assert cfg.ignored == []


def test_http_urls_from_the_environment() -> None:
    cfg = ServerConfig.from_args([], {"ETCD_LISTEN_METRICS_URLS": "http://127.0.0.1:2381"})
    assert cfg.listen_metrics_urls == ["http://127.0.0.1:2381"]


def test_https_metrics_url_needs_a_certificate() -> None:
    with pytest.raises(ConfigError, match="must be provided for listen-metrics-urls"):
        parse("--listen-metrics-urls=https://127.0.0.1:2381")


def test_a_bad_http_url_is_a_flag_error() -> None:
    with pytest.raises(ConfigError):
        parse("--listen-client-http-urls=127.0.0.1:2378")
