"""The real app, plus one test-only path that reports what is really serving it.

`/_runtime` answers with the class of the running event loop and of the HTTP protocol handling
the connection, read from the live objects (uvicorn's `send` is a bound method of the request's
cycle, whose transport knows its protocol). Configuration can ask for uvloop and httptools; only
this shows they are what runs.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from app.main import create_app as create_real_app


def _qualified(obj: object) -> str:
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def create_app() -> ASGIApp:
    real = create_real_app()

    async def probe(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/_runtime":
            await real(scope, receive, send)
            return
        cycle: Any = getattr(send, "__self__", None)
        report = {
            "loop": _qualified(asyncio.get_running_loop()),
            "protocol": _qualified(cycle.transport.get_protocol()) if cycle else None,
        }
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(report).encode()})

    return probe
