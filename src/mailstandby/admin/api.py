"""The administrators' HTTP API (Starlette), JSON under /api/v1, metrics at /metrics.

    GET  /api/v1/status             failover state, monitor health, queue depth
    GET  /api/v1/health?limit=N     health changes, newest first
    GET  /api/v1/transitions?limit  failover transitions, newest first
    GET  /api/v1/audit?limit&action the audit trail, newest first
    POST /api/v1/failover           {"reason": "...", "users": ["a@x", ...]?}
    POST /api/v1/failback           {"reason": "..."}
    POST /api/v1/failback/end       {"reason": "..."}   finish a failback now; the remainder is reported
    GET  /api/v1/dns                the MX switch: current, saved and standby records
    POST /api/v1/dns/switch         {"reason": "..."}   point the MX at the standby now
    POST /api/v1/dns/restore        {"reason": "..."}   put the saved records back now
    GET  /api/v1/sync               failback sync progress per user and in total
    GET  /api/v1/notifications?user=&kind=&occurrence=   every user notification and its state
    GET  /api/v1/readiness          users who could not be reached in an outage
    GET  /metrics                   Prometheus text format

Every request needs an administrator's credentials (HTTP Basic; the listener
is HTTPS unless configured plain on loopback), except /metrics when
`admin.metrics_public` is set. A wrong password gets 401 and an audit entry;
too many failures from one address get 429. Every POST is audited with its
outcome, including refusals (409 when the command does not apply in the
current state).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from mailstandby import __version__
from mailstandby.admin.auth import AdminAuthenticator, Throttled
from mailstandby.core.events import Event
from mailstandby.core.leadership import NotLeading
from mailstandby.failover.machine import Command

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
NOT_LEADER = "this node does not lead the cluster: send the command to the leader"
MAX_LIMIT = 1000


class FailoverControl(Protocol):
    def snapshot(self) -> dict[str, Any]: ...

    async def declare(
        self, command: Command, actor: str, reason: str, users: frozenset[str] | None = None, *, peer: str = ""
    ) -> Any: ...


class History(Protocol):
    async def transitions(self, limit: int = 100) -> list[dict[str, Any]]: ...

    async def health(self, limit: int = 100) -> list[dict[str, Any]]: ...

    async def audit_log(self, limit: int = 100, action: str = "") -> list[dict[str, Any]]: ...

    async def audit(self, actor: str, action: str, outcome: str, *, peer: str = "", detail: str = "") -> None: ...


class DNSControl(Protocol):
    async def status(self) -> dict[str, Any]: ...

    async def switch(self) -> Any: ...

    async def restore(self) -> Any: ...


@dataclass
class Services:
    failover: FailoverControl
    history: History
    auth: AdminAuthenticator
    monitor: Callable[[], dict[str, Any]]
    queue_depth: Callable[[], int]
    metrics: CollectorRegistry
    metrics_public: bool = False
    routes: list[BaseRoute] = field(default_factory=list)  # mounted by other parts (e.g. phone setup)
    dns: DNSControl | None = None
    sync_status: Callable[[], Awaitable[dict[str, Any]]] | None = None
    notifications: Callable[..., Awaitable[list[dict[str, Any]]]] | None = None
    readiness: Callable[[], Awaitable[dict[str, Any]]] | None = None


Handler = Callable[[Request, str], Awaitable[Response]]


def create_app(services: Services) -> Starlette:
    s = services

    def authenticated(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            peer = request.client.host if request.client else "?"
            try:
                admin = await s.auth.check(request.headers.get("authorization"), peer=peer)
            except Throttled:
                return JSONResponse({"error": "too many failed logins; try later"}, 429, {"Retry-After": "60"})
            if admin is None:
                challenge = {"WWW-Authenticate": 'Basic realm="mailstandby admin", charset="UTF-8"'}
                return JSONResponse({"error": "administrator credentials required"}, 401, challenge)
            return await handler(request, admin)

        return endpoint

    async def status(request: Request, admin: str) -> Response:
        return JSONResponse(
            {
                "version": __version__,
                "failover": s.failover.snapshot(),
                "health": s.monitor(),
                "queue": {"depth": s.queue_depth()},
            }
        )

    async def health(request: Request, admin: str) -> Response:
        return JSONResponse(await s.history.health(_limit(request)))

    async def transitions(request: Request, admin: str) -> Response:
        return JSONResponse(await s.history.transitions(_limit(request)))

    async def audit(request: Request, admin: str) -> Response:
        action = request.query_params.get("action", "")[:64]
        return JSONResponse(await s.history.audit_log(_limit(request), action))

    def command(cmd: Command) -> Handler:
        async def run(request: Request, admin: str) -> Response:
            peer = request.client.host if request.client else "?"
            try:
                body = await _json(request)
                reason = body.get("reason")
                users = body.get("users")
                if not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
                    raise ValueError("`reason` is required (1 to 500 characters)")
                if users is not None and (
                    cmd is not Command.FAILOVER
                    or not isinstance(users, list)
                    or not all(isinstance(u, str) for u in users)
                ):
                    raise ValueError("`users` is a list of addresses, for failover only")
            except ValueError as e:
                await s.history.audit(admin, f"admin.{cmd.value}", "bad-request", peer=peer, detail=str(e))
                return JSONResponse({"error": str(e)}, 400)
            scope = frozenset(u.lower() for u in users) if users else None
            done = await s.failover.declare(cmd, admin, reason.strip(), scope, peer=peer)
            if done is None and not s.failover.snapshot()["leader"]:
                await s.history.audit(admin, f"admin.{cmd.value}", "refused", peer=peer, detail="not the leader")
                return JSONResponse({"error": NOT_LEADER}, 409)
            if done is None:
                mode = s.failover.snapshot()["mode"]
                await s.history.audit(admin, f"admin.{cmd.value}", "refused", peer=peer, detail=f"state is {mode}")
                return JSONResponse({"error": f"{cmd.value} does not apply: the state is {mode}"}, 409)
            log.warning("%s: %s by %s from %s: %s", Event.ADMIN_ACTION, cmd.value, admin, peer, reason)
            return JSONResponse({"failover": s.failover.snapshot(), "reason": done.reason})

        return run

    async def dns_status(request: Request, admin: str) -> Response:
        if s.dns is None:
            return JSONResponse({"error": "the DNS switch is not configured ([dns] enabled = false)"}, 404)
        try:
            return JSONResponse(await s.dns.status())
        except Exception as e:  # DNSError: what the server said
            return JSONResponse({"error": str(e)}, 502)

    def dns_command(name: str) -> Handler:
        async def run(request: Request, admin: str) -> Response:
            peer = request.client.host if request.client else "?"
            if s.dns is None:
                return JSONResponse({"error": "the DNS switch is not configured ([dns] enabled = false)"}, 404)
            try:
                reason = (await _json(request)).get("reason")
                if not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
                    raise ValueError("`reason` is required (1 to 500 characters)")
            except ValueError as e:
                await s.history.audit(admin, f"admin.dns-{name}", "bad-request", peer=peer, detail=str(e))
                return JSONResponse({"error": str(e)}, 400)
            try:
                await (s.dns.switch() if name == "switch" else s.dns.restore())
            except NotLeading:
                await s.history.audit(admin, f"admin.dns-{name}", "refused", peer=peer, detail="not the leader")
                return JSONResponse({"error": NOT_LEADER}, 409)
            except Exception as e:
                await s.history.audit(admin, f"admin.dns-{name}", "failed", peer=peer, detail=f"{reason}: {e}")
                return JSONResponse({"error": str(e)}, 502)
            await s.history.audit(admin, f"admin.dns-{name}", "ok", peer=peer, detail=reason)
            return JSONResponse(await s.dns.status())

        return run

    async def sync(request: Request, admin: str) -> Response:
        if s.sync_status is None:
            return JSONResponse({"error": "the failback sync is not configured ([sync] imap_host)"}, 404)
        return JSONResponse(await s.sync_status())

    async def notifications(request: Request, admin: str) -> Response:
        assert s.notifications is not None
        q = request.query_params
        found = await s.notifications(user=q.get("user"), kind=q.get("kind"), occurrence=q.get("occurrence"))
        return JSONResponse(found[: _limit(request)])

    async def readiness(request: Request, admin: str) -> Response:
        assert s.readiness is not None
        return JSONResponse(await s.readiness())

    async def metrics(request: Request, admin: str) -> Response:
        return Response(generate_latest(s.metrics), media_type=CONTENT_TYPE_LATEST)

    async def public_metrics(request: Request) -> Response:
        return await metrics(request, "")

    routes: list[BaseRoute] = [
        Route("/api/v1/status", authenticated(status)),
        Route("/api/v1/health", authenticated(health)),
        Route("/api/v1/transitions", authenticated(transitions)),
        Route("/api/v1/audit", authenticated(audit)),
        Route("/api/v1/failover", authenticated(command(Command.FAILOVER)), methods=["POST"]),
        Route("/api/v1/failback", authenticated(command(Command.FAILBACK)), methods=["POST"]),
        Route("/api/v1/failback/end", authenticated(command(Command.END_FAILBACK)), methods=["POST"]),
        Route("/api/v1/dns", authenticated(dns_status)),
        Route("/api/v1/dns/switch", authenticated(dns_command("switch")), methods=["POST"]),
        Route("/api/v1/dns/restore", authenticated(dns_command("restore")), methods=["POST"]),
        Route("/api/v1/sync", authenticated(sync)),
        *([Route("/api/v1/notifications", authenticated(notifications))] if s.notifications else []),
        *([Route("/api/v1/readiness", authenticated(readiness))] if s.readiness else []),
        Route("/metrics", public_metrics if s.metrics_public else authenticated(metrics)),
        *s.routes,
    ]
    return Starlette(routes=routes)


def _limit(request: Request) -> int:
    try:
        return max(1, min(MAX_LIMIT, int(request.query_params.get("limit", "100"))))
    except ValueError:
        return 100


async def _json(request: Request) -> dict[str, Any]:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise ValueError(f"request body larger than {MAX_BODY} bytes")
    try:
        body = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    return body
