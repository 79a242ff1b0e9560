"""User, role and auth administration, compared transcript by transcript:
etcdcorectl against etcdctl on twin etcd servers, and the real etcdctl on
etcdcore against the real etcdctl on etcd."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctl_runner import etcdcorectl, real_etcdctl
from harness import Member, etcd_bin


def _etcd(path: Path) -> Member:
    return Member(data_dir=path, command=[etcd_bin("etcd")]).start()


@pytest.fixture
def twin_etcds(tmp_path: Path) -> Iterator[tuple[Member, Member]]:
    ours, theirs = _etcd(tmp_path / "a"), _etcd(tmp_path / "b")
    try:
        yield ours, theirs
    finally:
        ours.stop()
        theirs.stop()


ADMIN_SCRIPT = [
    "role add ops",
    "role add ops",
    "role add dev",
    "role grant-permission ops readwrite /config/ --prefix",
    "role grant-permission ops read /a /c",
    "role grant-permission ops write /logs --from-key",
    "role grant-permission ops admin /x",
    "role get ops",
    "role get ops -w fields",
    "role get nobody",
    "role list",
    "user add alice --new-user-password=secret",
    "user add bob:pw2",
    "user add :pw",
    "user add carol --no-password",
    "user grant-role alice ops",
    "user grant-role alice dev",
    "user grant-role alice nosuchrole",
    "user get alice",
    "user get alice --detail",
    "user get nobody",
    "user list",
    "role revoke-permission ops /a /c",
    "role revoke-permission ops /config/ --prefix",
    "role revoke-permission ops /never",
    "user revoke-role alice dev",
    "user delete bob",
    "user delete bob",
    "role delete dev",
    "auth status",
    "auth enable",
]


def test_user_and_role_administration_prints_what_etcdctl_prints(
    twin_etcds: tuple[Member, Member],
) -> None:
    ours_ep, theirs_ep = twin_etcds[0].endpoint, twin_etcds[1].endpoint
    for command in ADMIN_SCRIPT:
        ours = etcdcorectl(ours_ep, *command.split())
        theirs = real_etcdctl(theirs_ep, *command.split())
        got = (ours.returncode, ours.stdout, ours.stderr)
        want = (theirs.returncode, theirs.stdout, theirs.stderr)
        if "fields" in command:  # headers carry each server's own IDs
            got, want = got[:1], want[:1]
        assert got == want, command


@pytest.fixture
def etcdcore_and_etcd(tmp_path: Path) -> Iterator[tuple[Member, Member]]:
    ours = Member(data_dir=tmp_path / "core").start()
    theirs = _etcd(tmp_path / "etcd")
    try:
        yield ours, theirs
    finally:
        ours.stop()
        theirs.stop()


AUTHED_SCRIPT = [
    "put /pub/x 1",
    "--user=root:rootpw put /pub/x 1",
    "--user=root:rootpw auth status",
    "--user=ops-alice:secret get /config/ --prefix",
    "--user=ops-alice:secret put /config/a 1",
    "--user=ops-alice:secret put /other 1",
    "--user=ops-alice:secret del /config/a",
    "--user=ops-alice:wrong get /config/a",
    "--user=nobody:x get /config/a",
    "--user=ops-alice:secret user list",
    "--user=ops-alice:secret user get ops-alice",
    "--user=ops-alice:secret role get ops",
    "--user=ops-alice:secret role get dev",
    "--user=ops-alice:secret member add x --peer-urls=http://127.0.0.1:1",
    "--user=ops-alice:secret defrag",
    "--user=root:rootpw user delete root",
    "--user=root:rootpw role delete root",
    "--user=root:rootpw user revoke-role root root",
    "--user=root:rootpw auth disable",
    "auth status",
]


def test_real_etcdctl_sees_the_same_administration_on_etcdcore_and_etcd(
    etcdcore_and_etcd: tuple[Member, Member],
) -> None:
    core, etcd = etcdcore_and_etcd
    setup = [*ADMIN_SCRIPT[:-1], "user add root:rootpw", "user add ops-alice:secret"]
    setup += [
        "user grant-role ops-alice ops",
        "role grant-permission ops readwrite /config/ --prefix",
    ]
    setup += ["auth enable"]
    for command in setup + AUTHED_SCRIPT:
        got = real_etcdctl(core.endpoint, *command.split())
        want = real_etcdctl(etcd.endpoint, *command.split())
        got_err = got.stderr.replace(core.endpoint, "EP")
        want_err = want.stderr.replace(etcd.endpoint, "EP")
        assert (got.returncode, _ids(got.stdout), got_err) == (
            want.returncode,
            _ids(want.stdout),
            want_err,
        ), command


def _ids(text: str) -> str:
    """Output with the servers' own cluster and member ids blanked."""
    return re.sub(r'("ClusterID" : |"MemberID" : )\d+', r"\1ID", text)


def test_passwd_reads_the_new_password_from_stdin(twin_etcds: tuple[Member, Member]) -> None:
    ep = twin_etcds[0].endpoint
    etcdcorectl(ep, "user", "add", "root:old")
    etcdcorectl(ep, "auth", "enable")
    proc = etcdcorectl(
        ep, "--user=root:old", "user", "passwd", "root", "--interactive=false", input="new\n"
    )
    assert proc.stdout == "Password updated\n"
    assert etcdcorectl(ep, "--user=root:new", "get", "k").returncode == 0


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Member]:
    m = _etcd(tmp_path / "s")
    ep = m.endpoint
    for cmd in (
        "user add root:rootpw",
        "role add reader",
        "role grant-permission reader read /pub/ --prefix",
        "user add guest:guestpw",
        "user grant-role guest reader",
        "auth enable",
    ):
        assert real_etcdctl(ep, *cmd.split()).returncode == 0, cmd
    assert real_etcdctl(ep, "--user=root:rootpw", "put", "/pub/x", "1").returncode == 0
    try:
        yield m
    finally:
        m.stop()


def test_authenticated_user_reads_what_its_role_allows(secured: Member) -> None:
    proc = etcdcorectl(
        secured.endpoint, "--user=guest:guestpw", "get", "/pub/x", "--print-value-only"
    )
    assert (proc.returncode, proc.stdout) == (0, "1\n")


def test_user_and_password_flags_can_be_given_apart(secured: Member) -> None:
    proc = etcdcorectl(
        secured.endpoint,
        "--user=guest",
        "--password=guestpw",
        "get",
        "/pub/x",
        "--print-value-only",
    )
    assert proc.stdout == "1\n"


@pytest.mark.parametrize(
    "args",
    [
        ["--user=guest:guestpw", "put", "/pub/x", "2"],
        ["--user=guest:wrong", "get", "/pub/x"],
        ["get", "/pub/x"],
        ["--user=root:rootpw", "auth", "status"],
    ],
)
def test_auth_answers_match_etcdctl(secured: Member, args: list[str]) -> None:
    ours = etcdcorectl(secured.endpoint, *args)
    theirs = real_etcdctl(secured.endpoint, *args)
    assert (ours.returncode, ours.stdout, ours.stderr) == (
        theirs.returncode,
        theirs.stdout,
        theirs.stderr,
    )


@pytest.fixture(params=["etcdcore", "etcd"])
def short_tokens(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Member]:
    """A server with auth on and simple tokens that expire after 2 idle seconds."""
    extra = ["--auth-token", "simple", "--auth-token-ttl", "2"]
    m = Member(data_dir=tmp_path / "d", extra=extra)
    if request.param == "etcd":
        m.command = [etcd_bin("etcd")]
    m.start()
    try:
        for cmd in ("user add root:rootpw", "auth enable"):
            assert real_etcdctl(m.endpoint, *cmd.split()).returncode == 0, cmd
        yield m
    finally:
        m.stop()


@pytest.mark.parametrize(
    "meanwhile",
    ["sleep 4", "etcdctl --user=root:rootpw role add made-meanwhile"],
    ids=["token-expired", "auth-store-changed"],
)
def test_lock_logs_in_again_when_its_token_is_refused_at_unlock(
    short_tokens: Member, meanwhile: str
) -> None:
    # The command runs while the lock is held: the token etcdcorectl logged in
    # with has expired, or predates a change to the auth store, by the time
    # it unlocks; like etcdctl it logs in again instead of failing.
    ep = short_tokens.endpoint
    command = meanwhile.split()
    if command[0] == "etcdctl":
        command = [etcd_bin("etcdctl"), f"--endpoints={ep}", *command[1:]]
    done = etcdcorectl(ep, "--user=root:rootpw", "lock", "jobs/nightly", *command)
    assert done.returncode == 0, done.stderr
    left = real_etcdctl(ep, "--user=root:rootpw", "get", "jobs/nightly", "--prefix", "--keys-only")
    assert left.stdout == ""
