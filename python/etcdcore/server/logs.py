"""Structured logs in etcd's shape: one JSON object per line with level, ts,
caller and msg, plus the record's fields."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "panic": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}
NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "level": NAMES.get(record.levelno, "error"),
            # etcd's zap writes RFC 3339 UTC with a "Z".
            "ts": datetime.fromtimestamp(record.created, timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "caller": f"{record.module}:{record.lineno}",
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(level: str) -> None:
    """JSON lines on stderr at etcd's --log-level."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS.get(level, logging.INFO))
