"""The development loop as `make dev` runs it: `docker compose up --watch` with the dev override,
on a copy of the project owned by a developer's uid, so the tests can edit and break source
without touching the checkout; and print-config through compose, as the README shows it."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.docker import docker
from tests.e2e.conftest import DEMO_ENDPOINTS, ROOT, Stack

pytestmark = pytest.mark.e2e

# A developer's uid and gid: neither root nor the app's 10001, so a file the containers wrote
# into the work tree would show.
DEVELOPER = 4242
# What the app image is built from, and the compose files (nginx's image is the session's).
PROJECT_FILES = (
    "docker-compose.yml",
    "docker-compose.dev.yml",
    "Dockerfile",
    ".dockerignore",
    "pyproject.toml",
    "uv.lock",
    "gunicorn.conf.py",
)
# The line of app/api/demo.py the tests edit: a field of /api/demo/whoami's answer.
ANCHOR = '"scheme": request.url.scheme,'
EDITS = 5


@dataclass
class DevLoop:
    stack: Stack
    project: Path
    log_path: Path

    def watch_log(self) -> str:
        """What `up --watch` printed: compose's watch and build lines, and both services' logs."""
        return self.log_path.read_text(errors="replace")

    def whoami(self) -> tuple[int, bytes]:
        try:
            status, _, body = self.stack.get("/api/demo/whoami", timeout=5)
        except OSError as error:
            return 0, repr(error).encode()
        return status, body

    def serves(self, marker: bytes) -> bool:
        return marker in self.whoami()[1]

    def app_container(self) -> str:
        return self.stack.compose("ps", "-q", "app").stdout.strip()

    def read(self, relative: str) -> str:
        return (self.project / relative).read_text()

    def save(self, relative: str, text: str) -> float:
        """Rewrite a file of the copy, as an editor saves it (its owner stays the developer);
        the time it was saved."""
        (self.project / relative).write_text(text)
        return time.monotonic()


def wait_until(what: str, predicate: Callable[[], Any], timeout: float, loop: DevLoop) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"{what}: not within {timeout}s\n{loop.watch_log()[-6000:]}")


def copy_owned_by_developer(project: Path) -> None:
    project.mkdir()
    for name in PROJECT_FILES:
        shutil.copy(ROOT / name, project / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "app", project / "app", ignore=ignore)
    shutil.copytree(ROOT / "deploy" / "nginx", project / "deploy" / "nginx", ignore=ignore)
    if os.geteuid() == 0:
        for path in [project, *project.rglob("*")]:
            os.lchown(path, DEVELOPER, DEVELOPER)


def foreign_files(project: Path) -> list[str]:
    """Paths in the copy that the developer did not make: another owner, or bytecode."""
    owner = DEVELOPER if os.geteuid() == 0 else os.geteuid()
    return [
        f"{path} (uid {path.lstat().st_uid})"
        for path in [project, *project.rglob("*")]
        if path.lstat().st_uid != owner or path.name == "__pycache__"
    ]


@pytest.fixture
def dev_loop(stack_factory: Any, tmp_path: Path) -> Iterator[DevLoop]:
    """`compose up --watch` with the dev override, in the background, up and watching; stopped,
    taken down and its images removed afterwards, even when the test fails."""
    project = tmp_path / "project"
    copy_owned_by_developer(project)
    stack: Stack = stack_factory(
        # An app image of its own, built from the copy (watch rebuilds it); nginx's is shared.
        env={
            "APP_IMAGE": f"tpl-dev-app-{uuid.uuid4().hex[:8]}",
            # The tests poll every 20 ms; nginx's default limit would answer some with 429.
            "RATE_LIMIT": "1000r/s",
            "RATE_LIMIT_BURST": "1000",
        },
        files=[str(project / "docker-compose.yml"), str(project / "docker-compose.dev.yml")],
        # The loop is watched through /api/demo/whoami (the line the tests edit is in it).
        app_settings=DEMO_ENDPOINTS,
    )
    log_path = tmp_path / "watch.log"
    files = [arg for name in stack.files for arg in ("-f", name)]
    with log_path.open("wb") as log:
        # make dev's command but for --build, which would also rebuild nginx's shared image; the
        # app's image of its own does not exist yet, so compose builds it from the copy anyway.
        process = subprocess.Popen(
            ["docker", "compose", "-p", stack.name, *files, "up", "--watch"],
            env={**os.environ, **stack.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    loop = DevLoop(stack, project, log_path)
    try:

        def serving() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"up --watch exited {process.returncode}:\n{loop.watch_log()}")
            ports = stack.compose("port", "nginx", "8080", check=False).stdout.strip()
            if not ports:
                return False
            stack.url = f"http://127.0.0.1:{ports.rsplit(':', 1)[1]}"
            return loop.whoami()[0] == 200 and "Watch enabled" in loop.watch_log()

        wait_until("the dev stack serving and watching", serving, 300, loop)
        # gunicorn's polling reloader notes a module's mtime at its first scan after the import
        # (every 1 s) and misses an edit saved before that scan; no event shows the scan, so
        # wait one interval and a half (a limitation a developer meets too, right after a boot).
        time.sleep(1.5)
        yield loop
    finally:
        # Ctrl-C, as a developer stops it: compose stops the containers.
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        stack.down()
        # Every image this project built (the first, and each rebuild's), by the label compose
        # puts on them; the project name is this test's own.
        built = docker(
            "images", "-q", "--filter", f"label=com.docker.compose.project={stack.name}"
        ).stdout.split()
        if built:
            docker("image", "rm", "-f", *set(built), check=False)


def test_an_edit_under_app_is_served_within_two_seconds_and_nothing_is_written_to_the_work_tree(
    dev_loop: DevLoop, record_property: Any
) -> None:
    assert dev_loop.stack.get("/docs")[0] == 200
    assert "edit" not in json.loads(dev_loop.whoami()[1])

    original = dev_loop.read("app/api/demo.py")
    latencies = []
    for edit in range(1, EDITS + 1):
        edited = original.replace(ANCHOR, f'{ANCHOR} "edit": {edit},')
        saved = dev_loop.save("app/api/demo.py", edited)
        served = partial(dev_loop.serves, f'"edit":{edit}'.encode())
        wait_until(f"edit {edit} served", served, 20, dev_loop)
        latencies.append(time.monotonic() - saved)
        # The reloader looks every second: saves at random points of its cycle, as people do.
        time.sleep(1 + random.random())  # noqa: S311 - spacing, not secrecy
    median = statistics.median(latencies)
    record_property("edit_to_served_s", [round(x, 2) for x in latencies])
    print(f"edit to served: {[round(x, 2) for x in latencies]} s, median {median:.2f} s")
    # The target is 2 s (medians of 1.7 to 1.9 s measured on 2 busy cores: the reloader's 1 s
    # poll, the old worker's 0.5 s drain, the new worker's import); the bound allows for load.
    assert median <= 2.5, latencies
    assert max(latencies) <= 5, latencies

    # A module gunicorn's master imported: watch restarts the container, the master re-imports.
    def title() -> str:
        try:
            status, _, body = dev_loop.stack.get("/openapi.json", timeout=5)
        except OSError:
            return ""
        return str(json.loads(body)["info"]["title"]) if status == 200 else ""

    settings, name = dev_loop.read("app/settings.py"), title()
    assert f'default="{name}"' in settings  # the title is APP_NAME's default
    saved = dev_loop.save("app/settings.py", settings.replace(f'"{name}"', '"renamed"', 1))
    wait_until("the settings edit served", lambda: title() == "renamed", 60, dev_loop)
    print(f"master-imported module edit to served: {time.monotonic() - saved:.2f} s")

    # Text logs with the app's access line, from the running loop.
    logs = dev_loop.stack.logs("app")
    assert "app.access: GET /api/demo/whoami 200" in logs
    assert not any(line.startswith('{"time"') for line in logs.splitlines())
    assert foreign_files(dev_loop.project) == []


def test_a_syntax_error_is_answered_with_its_file_and_line_and_the_next_save_recovers(
    dev_loop: DevLoop,
) -> None:
    source = dev_loop.read("app/api/demo.py")
    line = next(n for n, text in enumerate(source.splitlines(), 1) if ANCHOR in text)
    dev_loop.save("app/api/demo.py", source.replace(ANCHOR, f"{ANCHOR},"))

    # Through nginx, to the browser: the file (its path in the container), the line, the code.
    def failing() -> bytes:
        status, body = dev_loop.whoami()
        return body if status == 500 else b""

    body = wait_until("the SyntaxError answered", failing, 20, dev_loop)
    summary = f"SyntaxError: invalid syntax (/srv/app/api/demo.py, line {line})"
    text = body.decode()
    assert text.splitlines()[0] == summary, text
    assert f"{ANCHOR},\n" in text
    # And the app log's last line (one per failed request; the traceback once, before).
    last_line = dev_loop.stack.logs("app").rstrip().splitlines()[-1]
    assert summary in last_line, last_line

    dev_loop.save("app/api/demo.py", source.replace(ANCHOR, f'{ANCHOR} "fixed": 1,'))
    wait_until("the fix served", partial(dev_loop.serves, b'"fixed":1'), 20, dev_loop)
    assert "TypeError" not in dev_loop.stack.logs("app")
    assert foreign_files(dev_loop.project) == []


def test_a_dependency_change_rebuilds_the_image_and_replaces_the_container(
    dev_loop: DevLoop,
) -> None:
    def rebuilt_after(change: str, before: str) -> str:
        def replaced() -> str:
            container = dev_loop.app_container()
            return container if container not in ("", before) else ""

        container = wait_until(f"a new app container after {change}", replaced, 120, dev_loop)
        wait_until(f"served after {change}", lambda: dev_loop.whoami()[0] == 200, 60, dev_loop)
        return str(container)

    first = dev_loop.app_container()
    image = docker("inspect", "-f", "{{.Image}}", first).stdout.strip()
    dev_loop.save("pyproject.toml", dev_loop.read("pyproject.toml") + "# a change, for the test\n")
    second = rebuilt_after("the pyproject.toml edit", first)
    assert 'Rebuilding service(s) ["app"]' in dev_loop.watch_log()
    # A new image: the dependency layer was built again from the edited file.
    assert docker("inspect", "-f", "{{.Image}}", second).stdout.strip() != image

    # uv.lock saved again, unchanged: the rule fires (all cache hits) and replaces the container.
    dev_loop.save("uv.lock", dev_loop.read("uv.lock"))
    rebuilt_after("the uv.lock save", second)
    assert dev_loop.watch_log().count('Rebuilding service(s) ["app"]') == 2
    assert foreign_files(dev_loop.project) == []


def test_print_config_through_compose(stack_factory: Any) -> None:
    stack: Stack = stack_factory({"APP_CPUS": "1"})
    result = stack.compose("run", "--rm", "--no-deps", "app", "print-config", timeout=120)
    record = json.loads(result.stdout)
    assert record["gunicorn"]["workers"] == 1
    assert record["gunicorn"]["forwarded_allow_ips"] == stack.env["BACKEND_SUBNET"]
