"""Structured logs in etcd's shape: one JSON object per line with level, ts,
caller and msg, plus the record's fields."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timezone

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "dpanic": logging.CRITICAL,
    "panic": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}
NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warn",
    logging.CRITICAL: "fatal",
}


class JsonFormatter(logging.Formatter):
    def __init__(self, epoch_ts: bool = False) -> None:
        super().__init__()
        self.epoch_ts = epoch_ts

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "level": NAMES.get(record.levelno, "error"),
            # etcd's server zap writes RFC 3339 UTC with a "Z"; its gateway
            # keeps zap's default, seconds since the epoch.
            "ts": record.created
            if self.epoch_ts
            else datetime.fromtimestamp(record.created, timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "caller": f"{short_caller(record.pathname)}:{record.lineno}",
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        # zap's encoder: no blanks between tokens, UTF-8 left as is.
        return json.dumps(entry, separators=(",", ":"), ensure_ascii=False, default=str)


def short_caller(path: str) -> str:
    """zap's short caller: the file with its enclosing directory, e.g.
    ``server/main.py`` (or ``raft_node/ready_loop.rs`` for the core's logs)."""
    directory, name = os.path.split(path)
    parent = os.path.basename(directory)
    return f"{parent}/{name}" if parent else name


def configure_logging(
    level: str = "info", outputs: Sequence[str] = ("default",), epoch_ts: bool = False
) -> None:
    """etcd-style JSON lines ("level", "ts", "caller", "msg", fields...) on each of
    ``--log-outputs``: default/stderr, stdout, or a file path (appended to)."""
    root = logging.getLogger()
    for handler in root.handlers:
        handler.close()
    handlers: list[logging.Handler] = []
    for out in outputs:
        if out in ("default", "stderr"):
            handlers.append(logging.StreamHandler(sys.stderr))
        elif out == "stdout":
            handlers.append(logging.StreamHandler(sys.stdout))
        else:
            handlers.append(logging.FileHandler(out, encoding="utf-8"))
    formatter = JsonFormatter(epoch_ts)
    for handler in handlers:
        handler.setFormatter(formatter)
    root.handlers[:] = handlers
    root.setLevel(LEVELS.get(level, logging.INFO))
