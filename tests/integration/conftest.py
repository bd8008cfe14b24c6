"""Real gunicorn processes on loopback ports, started and always cleaned up by the tests."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
# For the tests that need a slow (/api/demo/wait) or an identifying (/api/demo/whoami) endpoint,
# or the echo websocket: the app serves them only with this set (off in production).
DEMO_ENDPOINTS = {"DEMO_ENDPOINTS_ENABLED": "true"}


V1_CPU = Path("/sys/fs/cgroup/cpu")


def can_make_v1_cgroups() -> bool:
    return os.geteuid() == 0 and (V1_CPU / "cgroup.procs").exists() and os.access(V1_CPU, os.W_OK)


@contextlib.contextmanager
def v1_cpu_group(name: str) -> Iterator[Path]:
    """A cgroup v1 cpu group of the test's own, removed afterwards once its processes left."""
    group = V1_CPU / name
    group.mkdir()
    try:
        yield group
    finally:
        for _ in range(50):
            try:
                group.rmdir()
                break
            except OSError:  # processes still leaving the group
                time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may contain spaces, so split after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.add(int(entry.name))
    return found


class Gunicorn:
    """One gunicorn master with its workers, serving the app from this checkout."""

    def __init__(
        self,
        tmp_path: Path,
        env: Mapping[str, str],
        prefix: list[str] | None = None,
        suffix: list[str] | None = None,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"gunicorn-{self.port}.log"
        self.env = {
            "PATH": os.environ["PATH"],
            # Where to listen, so tests run side by side; nothing else that the image's own
            # environment would not give (the metrics directory included: gunicorn.conf.py
            # makes one, as it does in the image).
            "BIND": f"127.0.0.1:{self.port}",
            **env,
        }
        # The launcher the image runs: validates, then exec()s gunicorn -c gunicorn.conf.py
        # (`suffix`: extra gunicorn arguments, such as another app to serve).
        self.command = [*(prefix or []), sys.executable, "-m", "app.server", *(suffix or [])]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Gunicorn:
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def workers(self) -> set[int]:
        return children_of(self.pid)

    def wait_ready(self, workers: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"gunicorn exited {self.process.returncode}:\n{self.log()}")
            try:
                ready = httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
            except httpx.TransportError:
                ready = False
            if (
                ready
                and len(self.workers()) == workers
                and self.log().count("Application startup complete") >= workers
            ):
                return
            time.sleep(0.1)
        raise AssertionError(f"not ready with {workers} workers in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(10)
        self._log.close()


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[type[Gunicorn]]:
    """Factory: `server = gunicorn(tmp_path, env).start()`; every one started is killed after."""
    started: list[Gunicorn] = []

    class Tracked(Gunicorn):
        def start(self) -> Gunicorn:
            started.append(self)
            return super().start()

    yield Tracked
    for server in started:
        server.stop()


class KeepAliveClient:
    """One HTTP/1.1 client connection reused for request after request, as a proxy's upstream
    pool or any HTTP client library uses it. It opens a new connection only when the server
    retired the old one with `Connection: close` after a complete answer; a reused connection
    that fails (closed under a request) is a failure, never retried here."""

    def __init__(self, url: str, timeout: float = 5):
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port, self.timeout = host, int(port), timeout
        self.connection: http.client.HTTPConnection | None = None
        self.requests_on_connection = 0
        self.connections = 0
        # For each answer with `Connection: close` (the server retiring the connection): how many
        # requests that connection had carried, that one included.
        self.retired_after: list[int] = []

    def get(self, path: str) -> tuple[int, bytes]:
        if self.connection is None:
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.connections += 1
            self.requests_on_connection = 0
        try:
            self.connection.request("GET", path)
            response = self.connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        self.requests_on_connection += 1
        if response.will_close:
            self.retired_after.append(self.requests_on_connection)
            self.close()
        return response.status, body

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None
