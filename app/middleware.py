"""Per-request plumbing as plain ASGI middleware (no BaseHTTPMiddleware: it buffers streaming
responses and costs a task per request).

RequestContext: takes the X-Request-ID nginx generated (or the client's, if well-formed), else
makes one; puts it in the log context and on the response. Then times the request, counts it
for Prometheus by route *template* (so `/api/items/1` and `/api/items/2` are one series and a
scan of random paths cannot explode the label set), and writes the access line: for every
request with ACCESS_LOG on, for server errors (500+, at WARNING) always. An exception the app
lets escape is logged here with its traceback and answered here with the 500 (see below).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics
from app.logs import ACCESS_LOGGER, request_id_var

REQUEST_ID_HEADER = b"x-request-id"
# Ids we pass on as-is: nginx's $request_id (32 hex), UUIDs, and similar tokens. Anything else
# (too long, spaces, control characters: log injection) is replaced.
_SAFE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{8,128}$")

access_log = logging.getLogger(ACCESS_LOGGER)
error_log = logging.getLogger("app")
# Probes and scrapes arrive every few seconds from the orchestrator and Prometheus: counted in
# the metrics, but logged only when they fail, so the access log stays about users.
QUIET_WHEN_OK = frozenset({"/healthz", "/readyz", "/metrics"})


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering
        started_response = False
        header_value = request_id.encode()

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status, started_response = message["status"], True
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER
                ]
                headers.append((REQUEST_ID_HEADER, header_value))
                message["headers"] = headers
            await send(message)

        metrics.IN_PROGRESS.inc()
        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception:
            # Answered here, not by Starlette's ServerErrorMiddleware: that one wraps every user
            # middleware, so its 500 would never pass through send_with_request_id (no
            # X-Request-ID), and the server's "Exception in ASGI application" line comes after
            # the request id is reset. Here the traceback is logged with the id, and the 500 (the
            # same text Starlette sends) carries it. Not re-raised: the server would log the
            # traceback again, id-less, and close a kept-alive connection that is fine. (So an
            # app-wide handler for Exception or 500 never runs: handle specific exceptions.)
            error_log.exception(
                "unhandled exception in %s %s",
                scope["method"],
                scope["path"],
                extra={"request_id": request_id},
            )
            if not started_response:  # else the server closes the unfinished response
                await PlainTextResponse("Internal Server Error", status_code=500)(
                    scope, receive, send_with_request_id
                )
        finally:
            metrics.IN_PROGRESS.dec()
            duration = time.perf_counter() - started
            route = _route_template(scope)
            method = scope["method"]
            metrics.REQUESTS.labels(method, route, str(status)).inc()
            metrics.LATENCY.labels(method, route).observe(duration)
            # Server errors always; other answers when ACCESS_LOG is on (probes only failing).
            level = logging.WARNING if status >= 500 else logging.INFO
            quiet = status < 400 and route in QUIET_WHEN_OK
            if not quiet and access_log.isEnabledFor(level):
                access_log.log(
                    level,
                    "%s %s %s",
                    method,
                    scope["path"],
                    status,
                    extra=_access_fields(scope, status, duration, route, request_id),
                )
            request_id_var.reset(token)


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            return value.decode("ascii") if _SAFE_REQUEST_ID.match(value) else None
    return None


def _access_fields(
    scope: Scope, status: int, duration: float, route: str, request_id: str
) -> dict[str, Any]:
    client = scope.get("client")
    return {
        "method": scope["method"],
        "path": scope["path"],
        "route": route,
        "status": status,
        "duration_ms": round(duration * 1000, 2),
        # Already resolved from X-Forwarded-For by uvicorn, trusting FORWARDED_ALLOW_IPS only.
        "client_ip": client[0] if client else None,
        "http_version": scope.get("http_version"),
        "request_id": request_id,
    }
