"""Real Docker: the images built once per session, a compose project per test, always removed.

Each stack gets its own compose project name, its own backend subnet and a random 127.0.0.1
port, so tests never collide with each other or with a stack the user has running.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import subprocess
import time
import tomllib
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.docker import docker

ROOT = Path(__file__).resolve().parents[2]
# The project's name, read where it is written (pyproject.toml), never spelled in a test, so a
# copy of the template needs no twin of its tests. docker-compose.yml names the images it builds
# PROJECT-app and PROJECT-nginx.
PROJECT: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
# E2E_TAG: a second checkout testing on the same machine sets its own, so the two never
# replace each other's images mid-run.
TAG = os.environ.get("E2E_TAG", "e2e")
APP_IMAGE = f"{PROJECT}-app:{TAG}"
NGINX_IMAGE = f"{PROJECT}-nginx:{TAG}"

pytestmark = pytest.mark.e2e

# App settings for the tests that need a slow (/api/demo/wait) or an identifying
# (/api/demo/whoami) endpoint, or the echo websocket: the shipped defaults serve none of them.
DEMO_ENDPOINTS = {"DEMO_ENDPOINTS_ENABLED": "true"}


def base_env() -> dict[str, str]:
    return {"APP_TAG": TAG, "COMPOSE_PROGRESS": "plain"}


def response(
    url: str,
    *,
    method: str = "GET",
    path: str = "/",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10,
) -> tuple[int, dict[str, str], bytes]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request(
            method, path, body=body, headers={"Connection": "close", **(headers or {})}
        )
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        connection.close()


@dataclass
class Stack:
    """One compose project of this repo's docker-compose.yml."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=lambda: ["docker-compose.yml"])
    url: str = ""

    def compose(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        files = [arg for name in self.files for arg in ("-f", name)]
        return docker(
            "compose", "-p", self.name, *files, *args, env=self.env, timeout=timeout, check=check
        )

    def up(self, *extra: str, timeout: float = 240) -> Stack:
        self.compose("up", "-d", "--no-build", "--wait", *extra, timeout=timeout)
        port = self.compose("port", "nginx", "8080").stdout.strip().rsplit(":", 1)[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", "-t", "5", check=False, timeout=120)

    def logs(self, service: str) -> str:
        """Both streams of every container of the service (docker logs: no compose decoration)."""
        output = []
        for container in self.compose("ps", "-aq", service).stdout.split():
            logs = docker("logs", container, check=False)
            output += [logs.stdout, logs.stderr]
        return "\n".join(output)

    def log_records(self, service: str) -> list[dict[str, Any]]:
        records = []
        for line in self.logs(service).splitlines():
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return records

    def container(self, service: str, index: int = 1) -> str:
        return self.compose("ps", "-aq", service).stdout.split()[index - 1]

    def containers(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service).stdout.split()

    def get(self, path: str, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
        return response(self.url, path=path, **kwargs)


def unique_subnet() -> str:
    # A /24 of its own for each stack; the app trusts forwarded headers from it alone.
    return f"10.{200 + secrets.randbelow(51)}.{secrets.randbelow(256)}.0/24"


@pytest.fixture
def stack_factory(
    images: None, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """Make stacks with extra compose env and app settings (written to the app's env file);
    every stack made is taken down, even when the test fails."""
    made: list[Stack] = []

    def make(
        env: Mapping[str, str] | None = None,
        files: list[str] | None = None,
        app_settings: Mapping[str, str] | None = None,
    ) -> Stack:
        short = request.node.name.split("[")[0].removeprefix("test_")[:20].replace("_", "-")
        settings_env = {}
        if app_settings:
            env_file = tmp_path_factory.mktemp("app-env") / "app.env"
            env_file.write_text("".join(f"{k}={v}\n" for k, v in app_settings.items()))
            settings_env["APP_ENV_FILE"] = str(env_file)
        stack = Stack(
            name=f"tpl-{short}-{uuid.uuid4().hex[:6]}",
            env={
                **base_env(),
                "HTTP_BIND": "127.0.0.1",
                "HTTP_PORT": "0",
                "BACKEND_SUBNET": unique_subnet(),
                **settings_env,
                **(env or {}),
            },
            files=files or ["docker-compose.yml"],
        )
        made.append(stack)
        return stack

    yield make
    for stack in made:
        stack.down()


@pytest.fixture
def stack(stack_factory: Any) -> Stack:
    """The default stack, up and healthy."""
    made: Stack = stack_factory().up()
    return made


@pytest.fixture
def demo_stack(stack_factory: Any) -> Stack:
    """The default stack with only the demo endpoints turned on (DEMO_ENDPOINTS), up and healthy."""
    made: Stack = stack_factory(app_settings=DEMO_ENDPOINTS).up()
    return made


def gunicorn_workers(container: str) -> int:
    """Worker processes of the gunicorn master (PID 1) inside a container, from `docker top`."""
    top = docker("top", container, "-eo", "pid,ppid,args").stdout.splitlines()[1:]
    rows = [line.split(None, 2) for line in top]
    pids = {pid for pid, _, _ in rows}
    # Workers are forks of the master, with the same command line: the master is the one
    # whose parent is outside the container.
    masters = [pid for pid, ppid, args in rows if "gunicorn" in args and ppid not in pids]
    assert len(masters) == 1, top
    return sum(1 for _, ppid, _ in rows if ppid == masters[0])


def wait_healthy(container: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = docker("inspect", "-f", "{{.State.Health.Status}}", container).stdout.strip()
        if status == "healthy":
            return
        if docker("inspect", "-f", "{{.State.Running}}", container).stdout.strip() != "true":
            break
        time.sleep(0.5)
    logs = docker("logs", container, check=False)
    raise AssertionError(f"{container} not healthy ({status}):\n{logs.stdout}\n{logs.stderr}")


REPORT = ROOT / ".reports" / "reliability.json"


@pytest.fixture(scope="session")
def reliability_report() -> Iterator[dict[str, dict[str, object]]]:
    """Scenario -> figures, written to .reports/reliability.json when the session ends (then
    `python scripts/reliability_report.py` renders docs/reliability.md from it)."""
    figures: dict[str, dict[str, object]] = {}
    yield figures
    if figures:
        REPORT.parent.mkdir(exist_ok=True)
        previous = json.loads(REPORT.read_text()) if REPORT.exists() else {}
        previous.update(figures)
        REPORT.write_text(json.dumps(previous, indent=2, sort_keys=True) + "\n")
