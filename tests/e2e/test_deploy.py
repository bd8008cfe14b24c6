"""`./scripts/deploy` on the real compose stack: a new image or new settings replace the app with no
failed request under a steady load, a deploy that cannot get ready leaves the old version
serving, and Ctrl-C at any step leaves a serving stack with no extra containers.

Loads are bounded (a dozen keep-alive connections, GETs and POSTs, stopped after the deploy and
never longer than a minute) and go to 127.0.0.1 only (nginx's published port).
"""

from __future__ import annotations

import asyncio
import importlib.machinery
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.docker import docker
from tests.e2e.conftest import APP_IMAGE, DEMO_ENDPOINTS, ROOT, TAG, Stack
from tests.e2e.load import LoadResult, _read_response, _request

DEPLOY = ROOT / "scripts" / "deploy"
UNLIMITED_RATE = {"RATE_LIMIT": "100000r/s", "RATE_LIMIT_BURST": "100000"}
ITEM = json.dumps({"name": "widget", "price": 9.5, "tags": ["a", "b"]}).encode()


def deploy_module() -> ModuleType:
    """The script as a module, for its pure parts."""
    loader = importlib.machinery.SourceFileLoader("scripts_deploy", str(DEPLOY))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module  # dataclasses look their module up there
    loader.exec_module(module)
    return module


# --- A load that runs until the deploy is over ----------------------------------------------


class SteadyLoad:
    """GETs and POSTs through nginx on keep-alive connections, from a thread, until stopped
    (at most `limit_s`). A GET that meets a connection closed by nginx is retried once on a new
    one, as every HTTP client does; a POST never is. Everything else counts as failed."""

    def __init__(self, url: str, *, gets: int = 8, posts: int = 4, limit_s: float = 60) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.address = (host, int(port))
        self.gets, self.posts, self.limit_s = gets, posts, limit_s
        self.get_result, self.post_result = LoadResult(), LoadResult()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()))

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        deadline = time.monotonic() + 10
        while self.get_result.sent + self.post_result.sent < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    @property
    def failed(self) -> int:
        return self.get_result.failed + self.post_result.failed

    def summary(self) -> dict[str, object]:
        every = LoadResult()
        every.add(self.get_result)
        every.add(self.post_result)
        every.elapsed = max(self.get_result.elapsed, self.post_result.elapsed)
        return {
            **every.summary(),
            "max_ms": round(max(every.latencies, default=0) * 1000, 1),
            "get_statuses": dict(self.get_result.statuses),
            "post_statuses": dict(self.post_result.statuses),
        }

    async def _run(self) -> None:
        host = self.address[0]
        get = _request(host, "/api/demo/whoami", None)
        post = _request(host, "/api/items", ITEM)
        await asyncio.gather(
            *(self._client(get, self.get_result, retry_stale=True) for _ in range(self.gets)),
            *(self._client(post, self.post_result, retry_stale=False) for _ in range(self.posts)),
        )

    async def _client(self, request: bytes, result: LoadResult, *, retry_stale: bool) -> None:
        deadline = time.monotonic() + self.limit_s
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        began = time.monotonic()
        while not self._stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            reused = writer is not None
            try:
                if writer is None:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(*self.address), 5
                    )
                assert reader is not None
                assert writer is not None
                writer.write(request)
                status, close = await asyncio.wait_for(_read_response(reader), 30)
                result.sent += 1
                result.statuses[status] += 1
                result.latencies.append(time.monotonic() - started)
                if close:
                    writer.close()
                    writer = None
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as error:
                if writer is not None:
                    writer.close()
                writer = None
                stale = reused and isinstance(error, ConnectionError | asyncio.IncompleteReadError)
                if stale and retry_stale:
                    result.stale_retries += 1
                    continue
                result.sent += 1
                result.errors[type(error).__name__] += 1
        if writer is not None:
            writer.close()
        result.elapsed = max(result.elapsed, time.monotonic() - began)


# --- Running the script ----------------------------------------------------------------------


@dataclass
class Deployed:
    returncode: int
    lines: list[str]
    seconds: float
    printed_at: list[float] = field(default_factory=list)  # time.time() of each line

    @property
    def output(self) -> str:
        """What it printed, each line with the time it did (to read beside nginx's log)."""
        return "\n".join(
            f"{time.strftime('%H:%M:%S', time.gmtime(at))}.{int(at % 1 * 1000):03d} {line}"
            for at, line in zip(self.printed_at, self.lines, strict=True)
        )


def run_deploy(
    stack: Stack, *args: str, interrupt_on: str | None = None, timeout: float = 180
) -> Deployed:
    """Run ./scripts/deploy for this stack as a user would in its directory. With `interrupt_on`,
    send SIGINT to its process group (what Ctrl-C in a terminal does) when it prints a line
    starting with that text."""
    files = [arg for name in stack.files for arg in ("-f", name)]
    process = subprocess.Popen(
        [str(DEPLOY), "-p", stack.name, *files, *args],
        cwd=ROOT,
        env={**os.environ, **stack.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    began = time.monotonic()
    lines: list[str] = []
    printed_at: list[float] = []
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            printed_at.append(time.time())
            if interrupt_on and line.startswith(interrupt_on):
                # A moment into the step, as a person's Ctrl-C lands: sent the instant the line
                # appears, it met the microseconds in which the script starts the step's first
                # command with SIGINT ignored, and was lost (a fresh-clone CI run; a known race
                # in spawn(), left open).
                time.sleep(0.3)
                os.killpg(process.pid, signal.SIGINT)
                interrupt_on = None
        process.wait()
    finally:
        timer.cancel()
    return Deployed(process.returncode, lines, time.monotonic() - began, printed_at)


@dataclass
class Made:
    """Stacks and images a test made; the stacks are taken down before the images go."""

    factory: Any
    tmp: Path
    stacks: list[Stack] = field(default_factory=list)
    images: list[str] = field(default_factory=list)

    def stack(self, *, replicas: int = 1, app_settings: dict[str, str] | None = None) -> Stack:
        settings = {**DEMO_ENDPOINTS, **(app_settings or {})}  # the load GETs /api/demo/whoami
        stack: Stack = self.factory(UNLIMITED_RATE, app_settings=settings)
        self.stacks.append(stack)
        return stack.up("--scale", f"app={replicas}")

    def image_name(self) -> str:
        name = f"{APP_IMAGE.rsplit(':', 1)[0]}-deploy-{uuid.uuid4().hex[:8]}:{TAG}"
        self.images.append(name)
        return name

    def image(self, dockerfile_lines: str) -> str:
        """The e2e app image with these Dockerfile lines added, built now."""
        name = self.image_name()
        context = self.tmp / name.replace(":", "-").replace("/", "-")
        context.mkdir()
        (context / "Dockerfile").write_text(f"FROM {APP_IMAGE}\n{dockerfile_lines}\n")
        docker("build", "-q", "-t", name, str(context), timeout=300)
        return name

    def build_override(self, stack: Stack, dockerfile_lines: str) -> str:
        """Make the app service build the e2e image plus these lines (what `scripts/deploy`
        builds) into a new image name; that name."""
        name = self.image_name()
        context = self.tmp / f"build-{name.replace(':', '-').replace('/', '-')}"
        context.mkdir()
        (context / "Dockerfile").write_text(f"FROM {APP_IMAGE}\n{dockerfile_lines}\n")
        override = context / "compose.override.yml"
        override.write_text(
            f"services:\n  app:\n    image: {name}\n    build:\n      context: {context}\n"
        )
        stack.files = [*stack.files, str(override)]
        return name


@pytest.fixture
def made(stack_factory: Any, tmp_path: Path) -> Iterator[Made]:
    made = Made(stack_factory, tmp_path)
    yield made
    for stack in made.stacks:
        stack.down()
    for image in made.images:
        docker("rmi", "-f", image, check=False)


def app_containers(stack: Stack) -> set[str]:
    """Every app container of the project, running or not."""
    return set(stack.compose("ps", "-a", "-q", "app").stdout.split())


def leftovers(stack: Stack) -> set[str]:
    """The project's containers that are neither its app service's nor nginx (one-off ones)."""
    every = docker(
        "ps", "-aq", "--no-trunc", "--filter", f"label=com.docker.compose.project={stack.name}"
    )
    services = app_containers(stack) | set(stack.compose("ps", "-a", "-q", "nginx").stdout.split())
    return set(every.stdout.split()) - services


def image_of(container: str) -> str:
    return docker("inspect", "-f", "{{.Image}}", container).stdout.strip()


def started_at(container: str) -> str:
    return docker("inspect", "-f", "{{.State.StartedAt}}", container).stdout.strip()


def set_app_settings(stack: Stack, settings: dict[str, str]) -> None:
    settings = {**DEMO_ENDPOINTS, **settings}  # the load GETs /api/demo/whoami
    Path(stack.env["APP_ENV_FILE"]).write_text("".join(f"{k}={v}\n" for k, v in settings.items()))


def nginx_errors(stack: Stack) -> list[dict[str, object]]:
    """nginx's access lines for the answers a load counts as failed: which upstreams it tried."""
    keys = ("time", "request", "status", "request_time", "upstream_addr", "upstream_status")
    return [
        {key: record.get(key) for key in keys}
        for record in stack.log_records("nginx")
        if isinstance(record.get("status"), int) and record["status"] >= 500
    ]


def explain(figures: dict[str, object], stack: Stack, deployed: Deployed) -> str:
    """A failed load's message in full: its figures, nginx's lines for the failed requests, and
    what the deploy printed when."""
    errors = "\n".join(json.dumps(line) for line in nginx_errors(stack))
    return f"{json.dumps(figures)}\nnginx:\n{errors}\ndeploy:\n{deployed.output}"


def env_of(container: str) -> list[str]:
    return json.loads(docker("inspect", "-f", "{{json .Config.Env}}", container).stdout)  # type: ignore[no-any-return]


# --- The deploys -----------------------------------------------------------------------------


@pytest.mark.e2e
def test_deploy_of_a_new_image_under_load_fails_no_request(made: Made) -> None:
    stack = made.stack()
    old = app_containers(stack)
    nginx = stack.container("nginx")
    nginx_started = started_at(nginx)
    new_image = made.build_override(stack, f"LABEL deploy.test={uuid.uuid4().hex}")
    with SteadyLoad(stack.url) as load:
        time.sleep(2)
        deployed = run_deploy(stack)
        time.sleep(1)
    figures = {**load.summary(), "deploy_s": round(deployed.seconds, 1)}
    print(figures)
    assert deployed.returncode == 0, deployed.output
    assert load.failed == 0, explain(figures, stack, deployed)
    assert set(load.post_result.statuses) == {201}, figures
    new = app_containers(stack)
    assert len(new) == 1, "as many new containers as old ones, and nothing else"
    assert not new & old
    built = docker("image", "inspect", "-f", "{{.Id}}", new_image).stdout.strip()
    assert image_of(new.pop()) == built
    assert started_at(nginx) == nginx_started, "nginx was not restarted"
    summary = deployed.lines[-1]
    assert summary.startswith("deploy: deployed in "), deployed.output
    assert f"-> {built.removeprefix('sha256:')[:12]}" in summary


@pytest.mark.e2e
def test_deploy_of_new_settings_to_three_replicas_fails_no_request(made: Made) -> None:
    stack = made.stack(replicas=3, app_settings={"APP_NAME": "before"})
    old = app_containers(stack)
    set_app_settings(stack, {"APP_NAME": "after"})
    with SteadyLoad(stack.url) as load:
        time.sleep(2)
        deployed = run_deploy(stack, "--no-build", "--no-pull")
        time.sleep(1)
    figures = {**load.summary(), "deploy_s": round(deployed.seconds, 1)}
    print(figures)
    assert deployed.returncode == 0, deployed.output
    assert load.failed == 0, explain(figures, stack, deployed)
    new = app_containers(stack)
    assert len(new) == 3
    assert not new & old
    assert all("APP_NAME=after" in env_of(container) for container in new)
    assert "3 app replica(s)" in deployed.lines[-1]
    assert "(unchanged)" in deployed.lines[-1], "a settings-only change keeps the image"


@pytest.mark.e2e
def test_a_deploy_that_never_serves_leaves_the_old_version_serving(made: Made) -> None:
    stack = made.stack(app_settings={"APP_NAME": "old"})
    old = app_containers(stack)
    old_image = image_of(next(iter(old)))
    unready = made.image(
        "HEALTHCHECK --interval=10s --start-period=30s --start-interval=0.5s "
        'CMD ["sh", "-c", "echo never ready >&2; exit 1"]'
    )
    loopback = made.image('CMD ["--bind", "127.0.0.1:8000"]')
    # attempt: (compose env, app settings, the reason printed, in the container's last lines)
    attempts = {
        # A new image that never passes its healthcheck: tried off the rotation first (where
        # it would serve, were it in nginx's list), it never joins it.
        "unready": (
            {"APP_IMAGE": unready.rsplit(":", 1)[0]},
            {"APP_NAME": "old"},
            "not healthy within 8s (starting)",
            "Booting worker",
        ),
        # A setting it refuses at boot: it exits (or waits, with ON_CONFIG_ERROR=wait), and is
        # never healthy. Tried off the rotation, it never joins nginx's list.
        "refused setting": (
            {},
            {"WEB_CONCURRENCY": "lots"},
            "(the new version)",
            "WEB_CONCURRENCY",
        ),
        # Healthy (its healthcheck asks 127.0.0.1), but it listens there only: nginx cannot
        # connect, and it never serves.
        "unreachable": (
            {"APP_IMAGE": loopback.rsplit(":", 1)[0]},
            {"APP_NAME": "old"},
            "is healthy but nginx sent it no request within 8s",
            "127.0.0.1:8000",
        ),
    }
    compose_env = dict(stack.env)
    for attempt, (env, settings, reason, logged) in attempts.items():
        stack.env = {**compose_env, **env}
        set_app_settings(stack, settings)
        with SteadyLoad(stack.url) as load:
            time.sleep(1)
            deployed = run_deploy(stack, "--no-build", "--no-pull", "--timeout", "8")
            time.sleep(1)
        figures = {**load.summary(), "deploy_s": round(deployed.seconds, 1)}
        print(attempt, figures)
        assert deployed.returncode == 1, deployed.output
        failure = [line for line in deployed.lines if line.startswith("deploy: failed: ")]
        assert len(failure) == 1, deployed.output
        assert reason in failure[0], deployed.output
        assert failure[0].endswith("app-1 serves as before"), deployed.output
        # Then the new container's last log lines, to see why.
        logs = [line for line in deployed.lines if line.startswith("  ")]
        assert any(logged in line for line in logs), deployed.output
        assert load.failed == 0, explain({"attempt": attempt, **figures}, stack, deployed)
        assert app_containers(stack) == old, "the new container is removed, the old one kept"
        assert not leftovers(stack)
        assert image_of(next(iter(old))) == old_image


@pytest.mark.e2e
def test_ctrl_c_at_each_step_leaves_a_serving_stack_and_no_extra_container(made: Made) -> None:
    stack = made.stack()
    compose_file = stack.files
    # The build step takes a few seconds here, so that Ctrl-C lands in it.
    made.build_override(stack, f"RUN echo {uuid.uuid4().hex} && sleep 4")
    with_build = stack.files
    # step: (the line Ctrl-C follows, the script's arguments, compose files)
    steps = {
        "build": ("deploy: building", (), with_build),
        "try": ("deploy: trying", ("--no-build", "--no-pull"), compose_file),
        "start": ("deploy: starting", ("--no-build", "--no-pull"), compose_file),
        "wait": ("deploy: waiting", ("--no-build", "--no-pull"), compose_file),
        "drain": ("deploy: draining", ("--no-build", "--no-pull"), compose_file),
    }
    for step, (line, args, files) in steps.items():
        before = app_containers(stack)
        stack.files = files
        with SteadyLoad(stack.url) as load:
            time.sleep(1)
            deployed = run_deploy(stack, *args, interrupt_on=line)
            time.sleep(1)
        figures = {**load.summary(), "deploy_s": round(deployed.seconds, 1)}
        print(step, figures)
        assert deployed.returncode == 130, deployed.output
        after = app_containers(stack)
        assert len(after) == 1, (step, deployed.output)
        if step == "drain":
            assert not after & before, "the new container serves, the old one is gone"
            assert deployed.lines[-1].startswith("deploy: deployed in "), deployed.output
        else:
            assert after == before, "the new container is gone, the old one serves"
            assert deployed.lines[-1].startswith("deploy: interrupted: "), deployed.output
        assert load.failed == 0, explain({"step": step, **figures}, stack, deployed)
        assert not leftovers(stack), step
        assert stack.get("/api/demo/whoami")[0] == 200


@pytest.mark.e2e
def test_deploy_on_an_idle_site_sends_no_request_to_a_gone_replica(made: Made) -> None:
    # No traffic while the old container drains: nothing makes nginx meet its closed listener,
    # so the first requests after it leaves the network would go to its address and wait out
    # proxy_connect_timeout (2 s), were it not for the deploy asking nginx meanwhile.
    stack = made.stack()
    old = next(iter(app_containers(stack)))
    for _ in range(4):
        stack.get("/api/demo/whoami")
    exited = threading.Event()

    def watch() -> None:
        docker("wait", old, check=False, timeout=120)
        exited.set()

    deployed: list[Deployed] = []
    watcher = threading.Thread(target=watch)
    watcher.start()
    deploying = threading.Thread(
        target=lambda: deployed.append(run_deploy(stack, "--no-build", "--no-pull"))
    )
    deploying.start()
    assert exited.wait(120)
    # Requests from the moment it exited until nginx has surely re-resolved (valid=1s).
    timings = []
    until = time.monotonic() + 1.5
    while time.monotonic() < until:
        began = time.monotonic()
        status, _, _ = stack.get("/api/demo/whoami", timeout=10)
        timings.append((status, round(time.monotonic() - began, 3)))
    deploying.join(120)
    watcher.join(10)
    assert deployed[0].returncode == 0, deployed[0].output
    assert all(status == 200 for status, _ in timings), timings
    assert max(seconds for _, seconds in timings) < 1.0, timings


@pytest.mark.e2e
def test_deploy_refuses_when_the_stack_is_not_up(stack_factory: Any) -> None:
    stack = stack_factory()
    deployed = run_deploy(stack, "--no-build", "--no-pull")
    assert deployed.returncode == 2
    assert deployed.lines == [
        "deploy: refused: the stack is not up: no `app` container (docker compose up -d)"
    ]
    assert not app_containers(stack)


def test_deploy_refuses_a_project_without_an_app_service(tmp_path: Path) -> None:
    compose_file = tmp_path / "compose.yml"
    compose_file.write_text("services:\n  web:\n    image: nginx:stable\n")
    deployed = subprocess.run(
        [str(DEPLOY), "-p", f"tpl-noapp-{uuid.uuid4().hex[:6]}", "-f", str(compose_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert deployed.returncode == 2, deployed
    assert deployed.stdout == (
        "deploy: refused: the compose project has no `app` service (it has: web)\n"
    )


def test_nginx_attempts_are_read_from_its_access_line() -> None:
    deploy = deploy_module()
    retried = {"upstream_addr": "10.0.0.2:8000, 10.0.0.3:8000", "upstream_status": "502, 200"}
    assert deploy.attempts(retried) == [("10.0.0.2", "502"), ("10.0.0.3", "200")]
    redirected = {"upstream_addr": "10.0.0.2:8000 : 10.0.0.4:8000", "upstream_status": "404 : 200"}
    assert deploy.attempts(redirected) == [("10.0.0.2", "404"), ("10.0.0.4", "200")]
    assert deploy.attempts({"upstream_addr": "", "upstream_status": ""}) == []
    unavailable = {"upstream_addr": "10.0.0.5:8000", "upstream_status": "503"}
    other = {"upstream_addr": "10.0.0.6:8000", "upstream_status": "200"}
    answered_by_nginx = {"upstream_addr": "", "upstream_status": ""}
    lines = [
        (1.0, json.dumps({**retried, "user_agent": "scripts-deploy/a"})),
        (2.0, json.dumps({**unavailable, "user_agent": "scripts-deploy/a"})),
        (3.0, json.dumps({**other, "user_agent": "scripts-deploy/b"})),
        (4.0, json.dumps({**answered_by_nginx, "user_agent": "scripts-deploy/a"})),
        (5.0, "2026/12/01 23:44:12 [error] connect() failed (111: Connection refused) 502"),
    ]  # fmt: skip
    records = [r for seen, line in lines if (r := deploy.parse_access_line(line, seen))]
    assert len(records) == 4
    assert deploy.served(records, "scripts-deploy/a") == {"10.0.0.3"}
    assert deploy.last_refused(records, "10.0.0.2") == 1.0
    assert deploy.last_refused(records, "10.0.0.3") is None, "it answered"
    assert deploy.last_refused(records, "10.0.0.5") == 2.0, "a 503 is a failed attempt too"


def test_deploy_knows_how_nginx_leaves_addresses_out_lists_gone_ones_and_retries() -> None:
    # The deploy times a container's exit by nginx's fail_timeout and resolver valid=, and
    # starts and stops fewer containers at once than nginx tries addresses for a request.
    template = (ROOT / "deploy/nginx/templates/default.conf.template").read_text()
    tries = re.search(r"proxy_next_upstream_tries (\d+);", template)
    assert tries is not None
    fail_timeout = re.search(r"server \$\{APP_UPSTREAM\} resolve .*fail_timeout=(\d+)s", template)
    valid = re.search(r"resolver \$\{NGINX_RESOLVER\} valid=(\d+)s;", template)
    assert fail_timeout is not None
    assert valid is not None
    deploy = deploy_module()
    assert int(fail_timeout.group(1)) == deploy.NGINX_FAIL_TIMEOUT_S
    assert int(valid.group(1)) == deploy.NGINX_RESOLVE_S
    assert deploy.SAFE_EXIT_S < deploy.NGINX_FAIL_TIMEOUT_S - deploy.NGINX_RESOLVE_S
    assert int(tries.group(1)) == deploy.NGINX_TRIES
    assert deploy.AT_ONCE < deploy.NGINX_TRIES
