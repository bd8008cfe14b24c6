"""The image's HEALTHCHECK command (`python -m app.server.healthcheck`) against real servers: ready
on TCP and on a unix socket, not ready while nothing listens, and any other answer than 200."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, Gunicorn, free_port


def healthcheck(env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.server.healthcheck"],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def healthy_within(env: Mapping[str, str], seconds: float) -> subprocess.CompletedProcess[str]:
    """Probe as Docker does while a container starts, until the first success."""
    deadline = time.monotonic() + seconds
    while True:
        probe = healthcheck(env)
        if probe.returncode == 0 or time.monotonic() > deadline:
            return probe
        time.sleep(0.2)


def test_ready_gunicorn_on_tcp_is_healthy(gunicorn: type[Gunicorn], tmp_path: Path) -> None:
    server = gunicorn(tmp_path, {"WEB_CONCURRENCY": "1"}).start()
    server.wait_ready(workers=1)
    probe = healthcheck({"BIND": f"127.0.0.1:{server.port}"})
    assert probe.returncode == 0, probe.stderr
    assert probe.stderr == ""


def test_ready_gunicorn_on_a_unix_socket_is_healthy(
    gunicorn: type[Gunicorn], tmp_path: Path
) -> None:
    bind = {"BIND": f"unix:{tmp_path / 'app.sock'}"}
    gunicorn(tmp_path, {"WEB_CONCURRENCY": "1", **bind}).start()
    probe = healthy_within(bind, 30)
    assert probe.returncode == 0, probe.stderr


def test_nothing_listening_is_unhealthy_and_says_so() -> None:
    probe = healthcheck({"PORT": str(free_port())})
    assert probe.returncode == 1
    assert probe.stderr.startswith("healthcheck: /readyz unreachable: ")


@pytest.fixture
def answering_503() -> Iterator[int]:
    """A server whose /readyz answers 503, as a worker's does once it began to stop."""

    class NotReady(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503 if self.path == "/readyz" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotReady) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server.server_address[1]
        server.shutdown()


def test_any_answer_but_200_is_unhealthy(answering_503: int) -> None:
    probe = healthcheck({"PORT": str(answering_503)})
    assert probe.returncode == 1
    assert probe.stderr.strip() == "healthcheck: /readyz answered 503"
