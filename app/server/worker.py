"""The worker class gunicorn runs: uvicorn-worker's UvicornWorker with production choices.

CONFIG_KWARGS is uvicorn-worker's documented extension point; these go to uvicorn.Config.
`_serve` is re-stated (uvicorn-worker is pinned exactly, and the SIGHUP test guards this) only to
use a uvicorn Server that drains more carefully (`DrainingServer`) and to let gunicorn's
`alive = False` reach it (--reload). `load_wsgi` is re-stated so that, with --reload, a syntax
error in the app is answered by an ASGI app (gunicorn's stand-in is WSGI).
"""

from __future__ import annotations

import asyncio
import faulthandler
import socket
import sys
import traceback
from collections.abc import Callable
from typing import Any, ClassVar

from gunicorn.arbiter import Arbiter
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

from app import readiness

# How long a stopping worker keeps its idle keep-alive connections open, waiting for the request
# the client may already be sending on them. uvicorn alone closes every idle connection at once
# when it stops, and a proxy that reuses connections (nginx's upstream keepalive) has often just
# written a request into one of them: it reads a reset or an early EOF, retries on another pooled
# connection to the same stopping worker, which fails the same way, and answers 502. That was about
# 1 request in 1,000 during max_requests recycling under load. During this grace every request
# that arrives is served with `Connection: close`, so the client retires the connection itself
# after a complete answer. Under load every pooled connection is used (and retired) within
# milliseconds and the grace ends early; only connections nobody used for the whole grace are
# closed by the server.
IDLE_CONNECTION_GRACE_S = 0.5
_GRACE_POLL_S = 0.02


class DrainingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a `begin_drain` that retires a connection gracefully:
    after its current response, or after the next request's, instead of closing it idle."""

    draining = False

    def begin_drain(self) -> None:
        self.draining = True
        if not self.idle:
            self.cycle.keep_alive = False

    @property
    def idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.draining and self.cycle is not None:
            self.cycle.keep_alive = False


class DrainingServer(Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        readiness.mark_process_draining()
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        connections = self.server_state.connections
        for connection in list(connections):
            if isinstance(connection, DrainingHttpToolsProtocol):
                connection.begin_drain()
        deadline = asyncio.get_running_loop().time() + IDLE_CONNECTION_GRACE_S
        while asyncio.get_running_loop().time() < deadline and any(
            isinstance(c, DrainingHttpToolsProtocol) and c.idle for c in connections
        ):
            await asyncio.sleep(_GRACE_POLL_S)
        # uvicorn's own shutdown: closes what is still idle, waits for requests in progress.
        await super().shutdown(sockets=sockets)


def syntax_error_summary(error: SyntaxError) -> str:
    """One line with what a developer needs: the message, the full path and the line."""
    return f"SyntaxError: {error.msg} ({error.filename or '<unknown file>'}, line {error.lineno})"


def syntax_error_app(error: SyntaxError, log: Callable[..., None]) -> ASGIApp:
    """What a --reload worker serves while the app does not compile: 500 to every request, with
    the summary and the offending line as the body, and the summary logged for each, until the
    next save restarts the worker. (The import chain is in the log, once.)"""
    summary = syntax_error_summary(error)
    body = f"{summary}\n\n{''.join(traceback.format_exception_only(error))}".encode()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            # Nothing to open or close; answering keeps uvicorn from logging a lifespan error.
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        log("%s %s 500: %s", scope.get("method", "WEBSOCKET"), scope["path"], summary)
        # A websocket handshake gets the same answer (ASGI's denial response, which uvicorn
        # offers); without it, closing refuses the handshake with a bare 403.
        kind = scope["type"]
        if kind == "websocket" and "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close"})
            return
        prefix = "http.response" if kind == "http" else "websocket.http.response"
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": f"{prefix}.start", "status": 500, "headers": headers})
        await send({"type": f"{prefix}.body", "body": body})

    return app


# What share of GRACEFUL_TIMEOUT uvicorn gives requests in flight once the worker is told to stop.
# Then it cancels what is left and runs the app's lifespan shutdown (closing pools, flushing
# queues), which must finish before gunicorn's master SIGKILLs the worker at GRACEFUL_TIMEOUT,
# when no cleanup runs at all. The rest (5 s at the default 20 s) is for the idle-connection
# grace above, the app's shutdown and the exit.
REQUEST_SHARE_OF_GRACEFUL_TIMEOUT = 0.75


def request_drain_seconds(graceful_timeout: float) -> float:
    """uvicorn's timeout_graceful_shutdown for gunicorn's graceful_timeout."""
    return graceful_timeout * REQUEST_SHARE_OF_GRACEFUL_TIMEOUT


class Worker(UvicornWorker):  # type: ignore[misc]
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        # Named, not "auto": a missing uvloop/httptools fails at boot instead of silently
        # running the slower pure-Python stack.
        "loop": "uvloop",
        # httptools, through a subclass that retires keep-alive connections gracefully on stop.
        "http": DrainingHttpToolsProtocol,
        # The access line comes from app.middleware (with route, duration, request id);
        # uvicorn's would be a second line per request.
        "access_log": False,
        # Do not advertise the server software.
        "server_header": False,
    }

    _server: DrainingServer | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Unset, uvicorn waits for requests forever and gunicorn's SIGKILL skips the app's
        # shutdown; this way a request longer than the grace is cut and the cleanup runs.
        self.config.timeout_graceful_shutdown = request_drain_seconds(self.cfg.graceful_timeout)

    def init_signals(self) -> None:
        super().init_signals()
        # gunicorn SIGABRTs a worker whose event loop was blocked past TIMEOUT (then SIGKILLs
        # it). UvicornWorker leaves SIGABRT at its default, so the worker died without a word;
        # faulthandler prints every thread's stack first: where the loop was blocked.
        faulthandler.enable(all_threads=True)

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

    def load_wsgi(self) -> None:
        try:
            self.wsgi = self.app.wsgi()
        except SyntaxError as error:
            if not self.cfg.reload:
                raise
            # As gunicorn does: the reloader also watches the file that failed (no module has it
            # yet), so saving it again restarts this worker; the traceback goes to the log.
            if self.reloader is not None and error.filename is not None:
                self.reloader.add_extra_file(error.filename)
            self.log.exception(
                "%s; answering 500 until the file is saved again", syntax_error_summary(error)
            )
            self.wsgi = syntax_error_app(error, self.log.error)

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        server = DrainingServer(config=self.config)
        self._server = server
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
