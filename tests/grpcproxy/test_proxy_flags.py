"""`etcdcore grpc-proxy` reads its command line as `etcd grpc-proxy` 3.5.1
does: same help, same refusals in the same words, same exit codes (the
program's name aside)."""

from __future__ import annotations

import subprocess

import pytest

from harness import etcd_bin, etcdcore_command, free_port

CASES: list[list[str]] = [
    ["--help"],
    [],
    ["bogus"],
    ["--bogus"],
    ["start", "--help"],
    ["start", "-h"],
    ["start", "--dial-timeout", "3s"],
    ["start", "--bogus=1"],
    ["start", "-x"],
    ["start", "--namespace"],
    ["start", "--endpoints"],
    ["start", "--resolver-ttl", "abc"],
    ["start", "--resolver-ttl=99999999999999999999"],
    ["start", "--self-signed-cert-validity=-1"],
    ["start", "--max-send-bytes", "1.5"],
    ["start", "--insecure-skip-tls-verify=maybe"],
    ["start", "--grpc-keepalive-min-time", "5"],
    ["start", "--grpc-keepalive-interval", "x"],
    ["start", "--grpc-keepalive-timeout", "5q"],
    ["start", "--resolver-prefix", "/proxies"],
    ["start", "--resolver-ttl", "5"],
    ["start", "--auto-tls", "--self-signed-cert-validity", "0"],
    ["start", "--listen-addr", "badaddr"],
    ["start", "--listen-addr", "127.0.0.1:xyz"],
    ["start", "--listen-addr", "1.2.3.4:5"],
    ["start", "--listen-addr", "127.0.0.1:{port}", "--metrics-addr", "127.0.0.1:1"],
    ["start", "--listen-addr", "127.0.0.1:{port}", "--cacert", "/nonexistent/ca.pem"],
]


def run(command: list[str], args: list[str]) -> tuple[int, str, str]:
    proc = subprocess.run(
        [*command, "grpc-proxy", *args], capture_output=True, text=True, timeout=20
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("args", CASES, ids=[" ".join(a) or "(none)" for a in CASES])
def test_command_line_is_read_as_etcd_reads_it(args: list[str]) -> None:
    port = str(free_port())
    argv = [a.replace("{port}", port) for a in args]
    theirs = run([etcd_bin("etcd")], argv)
    ours = run(etcdcore_command(), argv)

    # etcd logs its start-up (JSON lines) before some refusals; compare the rest.
    def plain(text: str) -> str:
        lines = [line for line in text.splitlines(keepends=True) if not line.startswith("{")]
        return "".join(lines).replace("etcd grpc-proxy", "etcdcore grpc-proxy")

    assert (ours[0], plain(ours[1]), plain(ours[2])) == (
        theirs[0],
        plain(theirs[1]),
        plain(theirs[2]),
    )


def test_missing_listener_certificate_is_fatal_as_in_etcd(tmp_path) -> None:  # noqa: ANN001
    args = ["start", f"--listen-addr=127.0.0.1:{free_port()}", "--cert-file=/nonexistent/c.pem",
            "--key-file=/nonexistent/k.pem"]  # fmt: skip
    code, _, err = run(etcdcore_command(), args)
    assert code == 1
    assert '"level":"fatal"' in err
    assert '"msg":"failed to create TLS listener"' in err
    assert "open /nonexistent/c.pem: no such file or directory" in err


def test_a_taken_listen_address_is_refused_with_gos_words() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code, _, err = run(etcdcore_command(), ["start", f"--listen-addr=127.0.0.1:{port}"])
    assert code == 1
    assert f"listen tcp 127.0.0.1:{port}: bind: address already in use" in err
