"""The partition proxy: forwards bytes, cuts links per source, heals."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from harness import free_port
from netproxy import Proxy


@pytest.fixture
def echo_port() -> Iterator[int]:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    yield port
    srv.close()


@pytest.fixture
def proxy(echo_port: int) -> Iterator[Proxy]:
    p = Proxy("127.0.0.1", free_port(), "127.0.0.1", echo_port).start()
    yield p
    p.stop()


def reachable(proxy: Proxy, source: str = "127.0.0.1") -> bool:
    """Whether an echo through the proxy comes back (a refused link either
    resets or closes the connection, depending on timing)."""
    try:
        with socket.create_connection(proxy.listen, timeout=2, source_address=(source, 0)) as s:
            s.sendall(b"ping")
            return s.recv(4) == b"ping"
    except OSError:
        return False


def test_bytes_are_forwarded_both_ways(proxy: Proxy) -> None:
    assert reachable(proxy)


def test_a_blocked_source_is_disconnected_and_others_are_not(proxy: Proxy) -> None:
    proxy.block("127.0.0.21")
    assert not reachable(proxy, "127.0.0.21")
    assert reachable(proxy, "127.0.0.22")


def test_cut_closes_open_connections(proxy: Proxy) -> None:
    s = socket.create_connection(proxy.listen, timeout=2)
    s.sendall(b"x")
    assert s.recv(1) == b"x"
    proxy.cut()
    try:
        s.sendall(b"y")
        assert s.recv(1) == b""
    except OSError:
        pass
    finally:
        s.close()


def test_heal_lets_new_connections_through(proxy: Proxy) -> None:
    proxy.cut()
    assert not reachable(proxy)
    proxy.heal()
    # A connection refused during the cut may still be closing; a new one gets through.
    assert any(reachable(proxy) for _ in range(5))
