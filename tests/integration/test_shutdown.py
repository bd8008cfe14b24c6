"""Stopping real gunicorn: the app's cleanup runs even when a request outlasts the grace, and a
worker killed for blocking its event loop says where it was blocked."""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from tests.integration.conftest import DEMO_ENDPOINTS, Gunicorn


def _wait_for_log(server: Gunicorn, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.log():
        assert time.monotonic() < deadline, f"{text!r} not logged in {timeout}s:\n{server.log()}"
        time.sleep(0.05)


def _get(url: str, path: str, result: dict[str, Any]) -> None:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        result["status"], result["body"] = answer.status, answer.read()
    except (OSError, http.client.HTTPException) as error:
        result["error"] = repr(error)
    finally:
        connection.close()


def test_a_request_longer_than_the_grace_is_cut_and_the_app_cleans_up(
    gunicorn: type[Gunicorn], tmp_path: Path
) -> None:
    # GRACEFUL_TIMEOUT is what the test is about: 4 s, so uvicorn gives requests 3 s.
    server = gunicorn(
        tmp_path, {**DEMO_ENDPOINTS, "WEB_CONCURRENCY": "1", "GRACEFUL_TIMEOUT": "4"}
    ).start()
    server.wait_ready(workers=1)
    long: dict[str, Any] = {}
    client = threading.Thread(target=_get, args=(server.url, "/api/demo/wait?ms=20000", long))
    client.start()
    # In flight once the app counts it (the middleware's gauge), not after a guessed sleep.
    deadline = time.monotonic() + 10
    while b"http_requests_in_progress 2.0" not in _metrics(server):
        assert time.monotonic() < deadline, "the long request never started"
        time.sleep(0.05)
    os.kill(server.pid, signal.SIGTERM)
    assert server.process is not None
    exit_code = server.process.wait(timeout=15)
    client.join(10)
    log = server.log()
    assert exit_code == 0, log
    assert long.get("status") != 200, long
    assert "Application shutdown complete" in log
    assert "app cleanup complete" in log
    # Cut by uvicorn inside the grace, not killed by the master at its end (gunicorn logs
    # "Worker (pid:N) was sent SIGKILL!" then).
    assert "SIGKILL" not in log


def _metrics(server: Gunicorn) -> bytes:
    result: dict[str, Any] = {}
    _get(server.url, "/metrics", result)
    body: bytes = result.get("body", b"")
    return body


def test_a_worker_killed_for_blocking_says_where_it_was_blocked(
    gunicorn: type[Gunicorn], tmp_path: Path
) -> None:
    # The two variables the test is about: the blocking endpoint, and a short TIMEOUT.
    env = {"WEB_CONCURRENCY": "1", "TIMEOUT": "2", "FAULT_INJECTION_ENABLED": "true"}
    server = gunicorn(tmp_path, env).start()
    server.wait_ready(workers=1)
    blocked: dict[str, Any] = {}
    client = threading.Thread(target=_get, args=(server.url, "/api/demo/block?seconds=30", blocked))
    client.start()
    _wait_for_log(server, "WORKER TIMEOUT", timeout=20)
    _wait_for_log(server, "Current thread", timeout=10)
    client.join(10)
    log = server.log()
    trace = log[log.index("Current thread") :]
    assert 'app/api/demo.py", line' in trace, log
    assert "in block" in trace, log
