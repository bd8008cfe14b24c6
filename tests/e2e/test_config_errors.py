"""Bad or surprising configuration, as a new user meets it with the README's commands."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

from tests.docker import docker
from tests.e2e.conftest import ROOT, Stack

pytestmark = pytest.mark.e2e

BAD_LINE = (
    "invalid configuration: WEB_CONCURRENCY='lots': Input should be a valid integer, "
    "unable to parse string as an integer"
)


def startup_bind(stack: Stack) -> list[str]:
    """The bind list gunicorn's master logged at boot (its effective config)."""
    for record in stack.log_records("app"):
        if record.get("message") == "server config":
            bind: list[str] = record["server_config"]["gunicorn"]["bind"]
            return bind
    raise AssertionError(stack.logs("app"))


@pytest.mark.parametrize(
    ("name", "value"), [("PORT", "9000"), ("BIND", "0.0.0.0:9000"), ("HOST", "127.0.0.1")]
)
def test_a_listen_address_in_app_env_never_leaves_nginx_answering_502(
    stack_factory: Any, name: str, value: str
) -> None:
    # Compose owns where the app listens (APP_PORT, for the app and nginx's upstream alike), so
    # a healthy stack always reaches the app.
    stack = stack_factory(app_settings={name: value}).up()
    status, _, body = stack.get("/api/items")
    assert status == 200, body
    assert startup_bind(stack) == ["0.0.0.0:8000"]


def test_app_port_moves_the_app_and_nginx_upstream_together(stack_factory: Any) -> None:
    stack = stack_factory({"APP_PORT": "9000"}).up()
    status, _, body = stack.get("/api/items")
    assert status == 200, body
    assert startup_bind(stack) == ["0.0.0.0:9000"]


def test_a_bad_variable_is_one_line_after_the_readmes_up_and_never_restarts(
    stack_factory: Any,
) -> None:
    stack = stack_factory(app_settings={"WEB_CONCURRENCY": "lots"})
    # The README's command: `docker compose up --build -d --wait || docker compose logs app`
    # (built already: the session's images).
    up = stack.compose("up", "-d", "--no-build", "--wait", check=False, timeout=180)
    assert up.returncode != 0
    assert f"container {stack.name}-app-1 is unhealthy" in up.stdout + up.stderr
    logs = stack.compose("logs", "--no-log-prefix", "app").stdout.splitlines()
    assert logs[0] == BAD_LINE
    # Printed once: the container waits to be replaced instead of exiting into a restart loop.
    assert logs.count(BAD_LINE) == 1, logs
    assert "Traceback" not in logs
    container = stack.container("app")
    state = json.loads(docker("inspect", container).stdout)[0]
    assert state["RestartCount"] == 0
    assert state["State"]["Status"] == "running"
    # The healthcheck's log names the variable too (docker inspect, docker events).
    assert state["State"]["Health"]["Log"][-1]["Output"].strip() == f"healthcheck: {BAD_LINE}"
    # Stopping it is immediate (it waits on SIGTERM) and ends with the configuration error code.
    stack.compose("stop", "-t", "10", "app")
    assert docker("inspect", "-f", "{{.State.ExitCode}}", container).stdout.strip() == "2"


def test_make_print_config_prints_what_the_compose_app_container_runs_with(
    stack_factory: Any,
) -> None:
    stack = stack_factory(app_settings={"LOG_LEVEL": "debug"})
    env = {"COMPOSE_PROJECT_NAME": stack.name, **stack.env}
    made = subprocess.run(
        ["make", "--no-print-directory", "print-config"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    readme = stack.compose("run", "--rm", "app", "print-config", timeout=120)
    from_make = json.loads(made.stdout[made.stdout.index("{") :])
    assert from_make == json.loads(readme.stdout)
    # app.env is read, and the container's CPU limit (APP_CPUS=1) sets the worker count.
    assert from_make["gunicorn"]["loglevel"] == "debug"
    assert from_make["gunicorn"]["workers"] == 1
