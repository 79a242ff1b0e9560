"""Operating a member the way etcd's operators do: structured JSON logs chosen
by --log-level/--log-outputs, and a YAML --config-file in place of flags."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from harness import Member, etcd_bin, etcdcore_command, free_port

#: zap's ISO 8601 UTC timestamps with milliseconds, as etcd 3.5 writes them.
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
#: zap's short caller: enclosing directory, file, line.
CALLER = re.compile(r"^[\w.-]+/[\w.-]+\.(py|rs):\d+$")


def log_entries(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_and_stop(tmp_path: Path, *extra: str) -> None:
    m = Member(data_dir=tmp_path / "default.etcd", extra=list(extra)).start()
    try:
        m.etcdctl("put", "k", "v")
    finally:
        assert m.stop() == 0


def test_log_outputs_file_gets_one_json_object_per_line_in_etcds_shape(tmp_path: Path) -> None:
    log_file = tmp_path / "etcd.log"
    run_and_stop(tmp_path, f"--log-outputs={log_file}")

    entries = log_entries(log_file)
    assert entries, "nothing was logged to the --log-outputs file"
    for entry in entries:
        assert list(entry)[:4] == ["level", "ts", "caller", "msg"]
        assert entry["level"] in ("debug", "info", "warn", "error")
        assert TS.match(str(entry["ts"])), entry
        assert CALLER.match(str(entry["caller"])), entry
    messages = [e["msg"] for e in entries]
    assert "ready to serve client requests" in messages
    assert "received signal; shutting down" in messages


def test_log_lines_are_compact_like_zaps(tmp_path: Path) -> None:
    log_file = tmp_path / "etcd.log"
    run_and_stop(tmp_path, f"--log-outputs={log_file}")

    first = log_file.read_text().splitlines()[0]
    assert first.startswith('{"level":"info","ts":"')


def test_log_level_warn_leaves_out_the_info_lines(tmp_path: Path) -> None:
    log_file = tmp_path / "etcd.log"
    run_and_stop(tmp_path, "--log-level=warn", f"--log-outputs={log_file}")

    levels = {e["level"] for e in log_entries(log_file)} if log_file.exists() else set()
    assert levels <= {"warn", "error"}


def test_unknown_log_level_is_refused_at_start_up(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*etcdcore_command(), "--data-dir", str(tmp_path / "d"), "--log-level=loud"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0
    # etcd panics with this text; etcdcore logs it as the error of its last line.
    last = json.loads(proc.stderr.splitlines()[-1])
    assert last["error"] == 'unrecognized level: "loud"'


def test_config_file_configures_a_running_member(tmp_path: Path) -> None:
    client, peer = free_port(), free_port()
    log_file = tmp_path / "from-config.log"
    config = tmp_path / "etcd.conf.yml"
    config.write_text(
        f"""
name: from-config
data-dir: {tmp_path / "data"}
listen-client-urls: http://127.0.0.1:{client}
advertise-client-urls: http://127.0.0.1:{client}
listen-peer-urls: http://127.0.0.1:{peer}
initial-advertise-peer-urls: http://127.0.0.1:{peer}
initial-cluster: from-config=http://127.0.0.1:{peer}
log-level: info
log-outputs: [{log_file}]
"""
    )
    proc = subprocess.Popen(
        [*etcdcore_command(), "--config-file", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"--endpoints=127.0.0.1:{client}"
        put = None
        for _ in range(100):
            put = subprocess.run(
                [etcd_bin("etcdctl"), endpoint, "put", "k", "v"], capture_output=True, text=True
            )
            if put.returncode == 0:
                break
            subprocess.run(["sleep", "0.1"], check=True)
        assert put is not None and put.stdout == "OK\n", put
        members = subprocess.run(
            [etcd_bin("etcdctl"), endpoint, "member", "list"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert ", from-config, " in members.stdout
        assert (tmp_path / "data" / "member").is_dir()
        assert any(e["msg"] == "ready to serve client requests" for e in log_entries(log_file))
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
