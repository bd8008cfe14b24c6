"""The worker class gunicorn runs: uvicorn-worker's UvicornWorker with production choices.

CONFIG_KWARGS is uvicorn-worker's documented extension point; these go to uvicorn.Config.
`_serve` is re-stated (uvicorn-worker is pinned exactly, and the SIGHUP test guards this) only to
use a uvicorn Server that drains more carefully (`DrainingServer`) and to let gunicorn's
`alive = False` reach it (--reload).
"""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any, ClassVar

from gunicorn.arbiter import Arbiter
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

from app import readiness

# How long a stopping worker keeps connections it has already accepted before closing the idle
# ones. uvicorn closes every connection without a request in progress at once, including one
# accepted a moment ago whose request bytes are still in flight: that client sees a reset. On a
# SIGHUP reload under load that was about 1 request in 1,000. Half a second lets those requests
# arrive and be served; the listening socket is already closed, so no new work comes in.
ACCEPTED_CONNECTION_GRACE_S = 0.5


class DrainingServer(Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        readiness.mark_process_draining()
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        await asyncio.sleep(ACCEPTED_CONNECTION_GRACE_S)
        await super().shutdown(sockets=sockets)


class Worker(UvicornWorker):  # type: ignore[misc]
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
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

    _server: DrainingServer | None = None

    # gunicorn's ways of stopping a worker from inside (the --reload file watcher above all) set
    # `self.alive = False` and expect the worker's loop to notice; UvicornWorker's loop is
    # uvicorn's, which only watches `should_exit`. Without this, --reload logs "Worker reloading"
    # and keeps serving the old code.
    @property
    def alive(self) -> bool:
        return self._alive

    @alive.setter
    def alive(self, value: bool) -> None:
        self._alive = value
        if not value and self._server is not None:
            self._server.should_exit = True

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        server = DrainingServer(config=self.config)
        self._server = server
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
