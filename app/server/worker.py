"""The worker class gunicorn runs: uvicorn-worker's UvicornWorker with production choices.

CONFIG_KWARGS is uvicorn-worker's documented extension point; these go to uvicorn.Config.
"""

from __future__ import annotations

from typing import Any

from uvicorn_worker import UvicornWorker


class Worker(UvicornWorker):  # type: ignore[misc]
    CONFIG_KWARGS: dict[str, Any] = {
        # Named, not "auto": a missing uvloop/httptools fails at boot instead of silently
        # running the slower pure-Python stack.
        "loop": "uvloop",
        "http": "httptools",
        # The access line comes from app.middleware (with route, duration, request id);
        # uvicorn's would be a second line per request.
        "access_log": False,
        # Do not advertise the server software.
        "server_header": False,
    }
