"""User/password auth through the client, against etcdcore and real etcd 3.5
alike: auth enabled and simple tokens that expire after 2 idle seconds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from waiting import next_within

from etcdcore.client import AsyncClient, AuthError, Client
from harness import Member, etcd_bin

ROOT_PASSWORD = "rootpw"
TOKEN_TTL = 2


@pytest.fixture(scope="module", params=["etcdcore", "etcd"])
def auth_etcd(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Member]:
    """A server with a root user and auth enabled (set up with the real etcdctl)."""
    data = tmp_path_factory.mktemp(f"auth-{request.param}") / "data"
    extra = ["--auth-token", "simple", "--auth-token-ttl", str(TOKEN_TTL)]
    m = Member(data_dir=data, extra=extra)
    if request.param == "etcd":
        m.command = [etcd_bin("etcd")]
    m.start()
    try:
        m.etcdctl("user", "add", f"root:{ROOT_PASSWORD}")
        m.etcdctl("auth", "enable")
        yield m
    finally:
        m.stop()


def _wait_for_token_expiry() -> None:
    # Simple tokens expire after TOKEN_TTL idle seconds (checked every second).
    time.sleep(TOKEN_TTL + 2)


def test_an_authenticated_client_puts_and_gets(auth_etcd: Member) -> None:
    with Client([auth_etcd.endpoint], user="root", password=ROOT_PASSWORD) as c:
        c.put("auth/k", "v")
        assert c.get("auth/k").value == b"v"
        assert c.token


def test_the_authenticated_write_is_visible_to_etcdctl(auth_etcd: Member) -> None:
    with Client([auth_etcd.endpoint], user="root", password=ROOT_PASSWORD) as c:
        c.put("auth/ctl", "seen")
    out = auth_etcd.etcdctl(
        "--user", f"root:{ROOT_PASSWORD}", "get", "auth/ctl", "--print-value-only"
    )
    assert out.stdout == "seen\n"


def test_a_wrong_password_raises_auth_error(auth_etcd: Member) -> None:
    with Client([auth_etcd.endpoint], user="root", password="wrong") as c:
        with pytest.raises(AuthError) as e:
            c.get("auth/k")
    assert "authentication failed" in e.value.message


def test_a_client_without_credentials_is_refused(auth_etcd: Member) -> None:
    with Client([auth_etcd.endpoint]) as c:
        with pytest.raises(AuthError):
            c.put("auth/anon", "x")


def test_an_expired_token_is_renewed_and_the_call_retried(auth_etcd: Member) -> None:
    with Client([auth_etcd.endpoint], user="root", password=ROOT_PASSWORD) as c:
        c.put("auth/renew", "1")
        first = c.token
        _wait_for_token_expiry()
        c.put("auth/renew", "2")
        assert c.get("auth/renew").value == b"2"
        assert c.token != first


def test_async_client_authenticates_and_renews_an_expired_token(auth_etcd: Member) -> None:
    async def run() -> tuple[bytes | None, bool]:
        async with AsyncClient([auth_etcd.endpoint], user="root", password=ROOT_PASSWORD) as c:
            await c.put("auth/async", "1")
            first = c.token
            await asyncio.sleep(TOKEN_TTL + 2)
            await c.put("auth/async", "2")
            return (await c.get("auth/async")).value, c.token != first

    assert asyncio.run(run()) == (b"2", True)


def test_user_without_password_is_rejected_before_connecting() -> None:
    with pytest.raises(ValueError):
        Client(["127.0.0.1:1"], user="root")


def test_watch_carries_the_token(auth_etcd: Member) -> None:
    with Client([auth_etcd.endpoint], user="root", password=ROOT_PASSWORD) as c:
        start = c.put("auth/w", "1").revision
        watch = c.watch("auth/w", start_revision=start)
        try:
            assert [e.kv.value for e in next(watch)] == [b"1"]
        finally:
            watch.close()


def test_async_watch_and_lease_keep_alive_carry_the_token(auth_etcd: Member) -> None:
    async def run() -> tuple[list[bytes], int]:
        async with AsyncClient([auth_etcd.endpoint], user="root", password=ROOT_PASSWORD) as c:
            start = (await c.put("auth/aw", "1")).revision
            async for events in c.watch("auth/aw", start_revision=start):
                values = [e.kv.value for e in events]
                break
            lease = await c.lease_grant(30)
            ttl = await asyncio.wait_for(c.lease_keep_alive_once(lease.id), 10)
            return values, ttl

    assert asyncio.run(asyncio.wait_for(run(), 20)) == ([b"1"], 30)


def test_watch_opened_with_an_expired_token_logs_in_again(auth_etcd: Member) -> None:
    # etcd cancels such a watch at creation (permission denied), etcdcore
    # fails the stream (invalid auth token): either way the client logs in
    # again and watches, as clientv3 does.
    with Client([auth_etcd.endpoint], user="root", password=ROOT_PASSWORD) as c:
        c.put("auth/expired-watch", "0")
        first = c.token
        _wait_for_token_expiry()
        watch = c.watch("auth/expired-watch")
        try:
            assert c.token != first
            with Client([auth_etcd.endpoint], user="root", password=ROOT_PASSWORD) as other:
                other.put("auth/expired-watch", "1")
            assert [e.kv.value for e in next_within(watch, 10)] == [b"1"]
        finally:
            watch.close()


def test_async_watch_opened_with_an_expired_token_logs_in_again(auth_etcd: Member) -> None:
    async def run() -> list[bytes]:
        async with AsyncClient([auth_etcd.endpoint], user="root", password=ROOT_PASSWORD) as c:
            start = (await c.put("auth/expired-awatch", "1")).revision
            await asyncio.sleep(TOKEN_TTL + 2)
            async for events in c.watch("auth/expired-awatch", start_revision=start):
                return [e.kv.value for e in events]
        return []

    assert asyncio.run(asyncio.wait_for(run(), 30)) == [b"1"]
