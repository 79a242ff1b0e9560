"""Health and version endpoints, as etcd 3.5's etcdhttp serves them.

- ``/health``: ``{"health":"true","reason":""}`` (200), or ``"false"`` with
  ``ALARM NOSPACE`` / ``ALARM CORRUPT`` / ``ALARM UNKNOWN`` / ``RAFT NO LEADER``
  / ``RANGE ERROR:<error>`` (503). ``?exclude=NOSPACE`` ignores that alarm,
  ``?serializable=true`` skips the leader check and reads locally.
- ``/livez`` (serializable_read) and ``/readyz`` (data_corruption,
  serializable_read, linearizable_read, non_learner), and each check at
  ``/livez/<check>`` / ``/readyz/<check>``: ``ok`` (200; the per-check lines
  first with ``?verbose``) or the ``[+]name ok`` / ``[-]name failed: <error>``
  lines (503); ``?exclude=<check>`` skips a check.
- ``/version``: ``{"etcdserver":"3.5.1","etcdcluster":"3.5.0"}``.

The read checks are a ``Range(keys_only, limit=1)`` on this member's own
gRPC listener. etcd runs them as root; here a read refused by auth (no or a bad
token) still proves the server answers, so it counts as a successful read.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import grpc
from aiohttp import web

from etcdcore import ETCD_VERSION
from etcdcore._core import Core, CoreError
from etcdcore.http.gateway import Loopback, plain_error
from etcdcore.http.metrics import ALARMS, ServerMetrics
from etcdcore.proto.etcdserverpb import rpc_pb2

#: What etcd 3.5 reports as the cluster version once decided.
CLUSTER_VERSION = ".".join(ETCD_VERSION.split(".")[:2]) + ".0"

#: Errors that mean "the server answered, auth refused": not a health problem.
_AUTH_REFUSALS = (
    "etcdserver: user name is empty",
    "etcdserver: invalid auth token",
    "etcdserver: permission denied",
    "etcdserver: user name not found",
)

Check = Callable[[], Awaitable[str | None]]


def _method_not_allowed(allow: str) -> web.Response:
    return plain_error(405, "Method Not Allowed", {"Allow": allow})


class Health:
    """The health endpoints of one member."""

    def __init__(
        self,
        core: Core,
        loopback: Loopback,
        metrics: ServerMetrics,
        request_timeout: float,
    ) -> None:
        self.core = core
        self.loopback = loopback
        self.metrics = metrics
        self.request_timeout = request_timeout
        self.livez: dict[str, Check] = {"serializable_read": self._read_check(True)}
        self.readyz: dict[str, Check] = {
            "data_corruption": self._alarm_check(2),
            "serializable_read": self._read_check(True),
            "linearizable_read": self._read_check(False),
            "non_learner": self._learner_check,
        }

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/health", self.health)
        app.router.add_route("*", "/version", self.version)
        for kind, checks in (("livez", self.livez), ("readyz", self.readyz)):
            app.router.add_route("*", f"/{kind}", self._checks_handler(kind, checks, None))
            for name in checks:
                app.router.add_route(
                    "*", f"/{kind}/{name}", self._checks_handler(kind, checks, name)
                )

    # -- /version ------------------------------------------------------------------
    async def version(self, request: web.Request) -> web.Response:
        if request.method not in ("GET", "HEAD"):
            return _method_not_allowed("GET,HEAD")
        body = json.dumps(
            {"etcdserver": ETCD_VERSION, "etcdcluster": CLUSTER_VERSION}, separators=(",", ":")
        )
        return web.Response(body=body.encode(), headers={"Content-Type": "application/json"})

    # -- /health -------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        if request.method != "GET":
            return _method_not_allowed("GET")
        excluded = {v for v in request.query.getall("exclude", []) if v}
        serializable = request.query.get("serializable") == "true"
        reason = self._alarm_reason(excluded)
        if reason is None and not serializable and not self._has_leader():
            reason = "RAFT NO LEADER"
        if reason is None:
            err = await self._range(serializable)
            if err is not None:
                reason = f"RANGE ERROR:{err}"
        self.metrics.health_result(reason is None)
        body = json.dumps(
            {"health": "false" if reason is not None else "true", "reason": reason or ""},
            separators=(",", ":"),
        )
        if reason is not None:
            return plain_error(503, body)
        return web.Response(
            body=body.encode(), headers={"Content-Type": "text/plain; charset=utf-8"}
        )

    def _alarm_reason(self, excluded: set[str]) -> str | None:
        try:
            alarms = self.core.alarms()
        except CoreError as e:
            return f"ALARM UNKNOWN ({e})"
        for _, alarm in alarms:
            name = ALARMS.get(alarm, str(alarm))
            if name in excluded:
                continue
            if name in ("NOSPACE", "CORRUPT"):
                return f"ALARM {name}"
            return "ALARM UNKNOWN"
        return None

    def _has_leader(self) -> bool:
        try:
            return bool(self.core.status()["leader"])
        except CoreError:
            return False

    async def _range(self, serializable: bool) -> str | None:
        """None when a one-key read succeeds, else the error text."""
        try:
            await self.loopback.unary(
                "/etcdserverpb.KV/Range",
                rpc_pb2.RangeRequest(key=b"\0", keys_only=True, limit=1, serializable=serializable),
                rpc_pb2.RangeResponse,
                timeout=self.request_timeout,
            )
        except grpc.aio.AioRpcError as e:
            details = e.details() or ""
            if details in _AUTH_REFUSALS:
                return None
            return details or e.code().name
        return None

    # -- /livez, /readyz -----------------------------------------------------------
    def _read_check(self, serializable: bool) -> Check:
        async def check() -> str | None:
            return await self._range(serializable)

        return check

    def _alarm_check(self, alarm: int) -> Check:
        async def check() -> str | None:
            try:
                alarms = self.core.alarms()
            except CoreError as e:
                return str(e)
            if any(a == alarm for _, a in alarms):
                return f"alarm activated: {ALARMS[alarm]}"
            return None

        return check

    async def _learner_check(self) -> str | None:
        try:
            learner = bool(self.core.status()["is_learner"])
        except CoreError as e:
            return str(e)
        return "not supported for learner" if learner else None

    def _checks_handler(
        self, kind: str, checks: dict[str, Check], only: str | None
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        path = f"/{kind}" + (f"/{only}" if only else "")

        async def handle(request: web.Request) -> web.Response:
            if request.method != "GET":
                return _method_not_allowed("GET")
            if only is not None:
                names = [only]
            else:
                excluded = {v for v in request.query.getall("exclude", []) if v}
                names = [n for n in checks if n not in excluded]
            lines = []
            failed = False
            for name in names:
                err = await checks[name]()
                self.metrics.check_result(kind, name, err is None)
                if err is None:
                    lines.append(f"[+]{name} ok\n")
                else:
                    failed = True
                    lines.append(f"[-]{name} failed: {err}\n")
            reason = "".join(lines)
            if failed:
                return plain_error(503, reason)
            body = (reason if "verbose" in request.query else "") + "ok\n"
            return web.Response(
                body=body.encode(),
                headers={
                    "Content-Type": "text/plain; charset=utf-8",
                    "X-Content-Type-Options": "nosniff",
                },
            )

        handle.__name__ = f"{kind}_{only or 'all'}"
        handle.__doc__ = f"GET {path}"
        return handle
