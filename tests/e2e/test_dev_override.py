"""The development override: source mounted, auto-reload, text logs, docs on; and print-config
through compose, as the README shows it."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ROOT, Stack

pytestmark = pytest.mark.e2e


def test_dev_override_reloads_changed_source_and_logs_text(
    stack_factory: Any, tmp_path: Path
) -> None:
    # A copy of the project, so the test can edit source without touching the checkout.
    project = tmp_path / "project"
    project.mkdir()
    for name in ("docker-compose.yml", "docker-compose.dev.yml"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "app", project / "app", ignore=shutil.ignore_patterns("__pycache__"))
    stack: Stack = stack_factory(
        files=[str(project / "docker-compose.yml"), str(project / "docker-compose.dev.yml")]
    )
    stack.up()

    assert stack.get("/docs")[0] == 200
    status, _, body = stack.get("/api/demo/whoami")
    assert status == 200
    assert "edited" not in json.loads(body)

    demo = project / "app" / "api" / "demo.py"
    demo.write_text(
        demo.read_text().replace(
            '"scheme": request.url.scheme,',
            '"scheme": request.url.scheme, "edited": 1,',
        )
    )
    deadline = time.monotonic() + 60
    answer: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            status, _, body = stack.get("/api/demo/whoami", timeout=5)
            answer = json.loads(body) if status == 200 else {}
        except OSError:
            answer = {}
        if answer.get("edited") == 1:
            break
        time.sleep(1)
    assert answer.get("edited") == 1, "the edit should be served after the reload"

    logs = stack.logs("app")
    assert "app.access: GET /api/demo/whoami 200" in logs
    assert not any(line.startswith('{"time"') for line in logs.splitlines())


def test_print_config_through_compose(stack_factory: Any) -> None:
    stack: Stack = stack_factory({"APP_CPUS": "1"})
    result = stack.compose("run", "--rm", "--no-deps", "app", "print-config", timeout=120)
    record = json.loads(result.stdout)
    assert record["gunicorn"]["workers"] == 1
    assert record["gunicorn"]["forwarded_allow_ips"] == stack.env["BACKEND_SUBNET"]
