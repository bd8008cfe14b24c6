"""The app image on its own, with `docker run`: limits, users, hooks, labels."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.docker import docker
from tests.e2e.conftest import APP_IMAGE, NGINX_IMAGE, gunicorn_workers, wait_healthy

pytestmark = pytest.mark.e2e

HARDENED = [
    "--read-only",
    "--tmpfs",
    "/tmp",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
]


# Run inside the app container: the status of each demo GET, one per line.
DEMO_STATUSES = """
import urllib.error, urllib.request
for path in ("/api/demo/whoami", "/api/demo/wait?ms=1"):
    try:
        print(urllib.request.urlopen("http://127.0.0.1:8000" + path, timeout=5).status)
    except urllib.error.HTTPError as error:
        print(error.code)
"""


@pytest.fixture
def run(images: None) -> Iterator[Any]:
    """`run(*docker_run_args)` starts a detached app container; all are removed afterwards."""
    started: list[str] = []

    def start(*args: str) -> str:
        name = f"tpl-img-{uuid.uuid4().hex[:8]}"
        # The image's own healthcheck: every 0.5 s until the first success, which the tests await.
        docker("run", "-d", "--name", name, *HARDENED, *args, APP_IMAGE)
        started.append(name)
        return name

    yield start
    for name in started:
        docker("rm", "-f", "-v", name, check=False)


@pytest.mark.parametrize(
    ("limits", "workers"),
    [
        (["--cpus=0.5"], 1),
        (["--cpus=1"], 1),
        (["--cpus=1.5"], 2),
        (["--cpus=2"], 2),
        (["--cpuset-cpus=0"], 1),
        (["--cpus=2", "--memory=200m"], 1),
        (["--cpus=0.5", "-e", "WEB_CONCURRENCY=3"], 3),
    ],
    ids=[
        "cpus 0.5",
        "cpus 1",
        "cpus 1.5",
        "cpus 2",
        "cpuset one core",
        "memory 200m caps",
        "WEB_CONCURRENCY wins",
    ],
)
def test_worker_count_follows_the_container_limits(
    run: Any, limits: list[str], workers: int
) -> None:
    container = run(*limits)
    wait_healthy(container)
    assert gunicorn_workers(container) == workers
    logs = docker("logs", container).stdout
    config = next(json.loads(line) for line in logs.splitlines() if '"server config"' in line)
    assert config["server_config"]["gunicorn"]["workers"] == workers


def test_gunicorn_is_pid_1_as_uid_10001_on_a_read_only_root(run: Any) -> None:
    container = run()
    wait_healthy(container)
    status = docker("exec", container, "cat", "/proc/1/status").stdout
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == ["10001"] * 4
    cmdline = docker("exec", container, "cat", "/proc/1/cmdline").stdout.replace("\0", " ")
    assert "gunicorn -c /srv/gunicorn.conf.py" in cmdline
    write = docker("exec", container, "python", "-c", "open('/srv/x', 'w')", check=False)
    assert write.returncode != 0
    assert "Read-only file system" in write.stderr
    # The image's own defaults serve no demo endpoint (DEMO_ENDPOINTS_ENABLED is off).
    statuses = docker("exec", container, "python", "-c", DEMO_STATUSES).stdout.split()
    assert statuses == ["404", "404"]


def test_runs_under_an_arbitrary_uid(run: Any) -> None:
    container = run("--user", "123456:0")
    wait_healthy(container)
    assert gunicorn_workers(container) >= 1


def test_pre_start_hook_runs_once_before_the_server(run: Any, tmp_path: Path) -> None:
    hook = tmp_path / "prestart.sh"
    hook.write_text("echo migrations-ran-$$ >&2\n")
    container = run("-v", f"{hook}:/srv/prestart.sh:ro")
    wait_healthy(container)
    logs = docker("logs", "--timestamps", container)
    # stdout and stderr arrive apart; the timestamps put them back in order.
    output = "\n".join(sorted((logs.stdout + logs.stderr).splitlines()))
    assert output.count("migrations-ran-") == 1
    assert output.index("migrations-ran-") < output.index("Starting gunicorn")


def test_failing_pre_start_hook_stops_the_container_with_a_clear_message(
    images: None, tmp_path: Path
) -> None:
    hook = tmp_path / "prestart.sh"
    hook.write_text("echo 'database unreachable' >&2\nexit 7\n")
    result = docker(
        "run",
        "--rm",
        *HARDENED,
        "-v",
        f"{hook}:/srv/prestart.sh:ro",
        APP_IMAGE,
        check=False,
        timeout=60,
    )
    assert result.returncode == 7
    assert "database unreachable" in result.stderr
    assert "pre-start: /srv/prestart.sh failed with exit code 7; not starting the server" in (
        result.stderr
    )
    assert "Starting gunicorn" not in result.stdout


def test_pre_start_command_runs_only_the_hook(images: None, tmp_path: Path) -> None:
    # What `docker compose run --rm app pre-start` and the Kubernetes migrations Job run.
    hook = tmp_path / "prestart.sh"
    hook.write_text("echo migrations-ran-as-$(id -u) >&2\n")
    result = docker(
        "run",
        "--rm",
        *HARDENED,
        "-v",
        f"{hook}:/srv/prestart.sh:ro",
        APP_IMAGE,
        "pre-start",
        timeout=60,
    )
    assert result.stderr.count("migrations-ran-as-10001") == 1
    assert "pre-start: /srv/prestart.sh finished" in result.stderr
    assert "Starting gunicorn" not in result.stdout + result.stderr


def test_print_config_runs_without_starting_the_server(images: None) -> None:
    result = docker("run", "--rm", *HARDENED, "--cpus=1", APP_IMAGE, "print-config", timeout=60)
    record = json.loads(result.stdout)
    assert record["gunicorn"]["workers"] == 1
    assert (
        record["workers_from"]["source"] == "cgroup v1"
        or record["workers_from"]["source"] == "cgroup v2"
    )


def test_image_has_labels_healthcheck_and_no_build_tools(images: None) -> None:
    inspected = json.loads(docker("image", "inspect", APP_IMAGE).stdout)[0]["Config"]
    labels = inspected["Labels"]
    for key in ("source", "version", "revision"):
        assert f"org.opencontainers.image.{key}" in labels
    assert inspected["User"] == "10001:10001"
    assert inspected["StopSignal"] == "SIGTERM"
    assert inspected["Healthcheck"]["Test"][1:] == ["python", "-m", "app.server.healthcheck"]
    # Polled every 0.5 s until healthy (nanoseconds), so `up --wait` is not an interval long.
    assert inspected["Healthcheck"]["StartInterval"] == 500_000_000
    probe = docker(
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        APP_IMAGE,
        "-c",
        "command -v uv gcc cc pip >/dev/null && echo found || echo none; "
        "ls /root/.cache 2>/dev/null | wc -l",
        check=False,
    )
    assert probe.stdout.split()[0] == "none", probe.stdout


def test_nginx_config_is_valid_in_the_image_and_gixy_clean(images: None, tmp_path: Path) -> None:
    mounts = [
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--tmpfs",
        "/etc/nginx/conf.d:uid=101,gid=101",
        "-e",
        "APP_UPSTREAM=127.0.0.1:8000",
    ]
    # nginx -T: the test of the config as the entrypoint rendered it, and the full dump of it.
    dump = docker("run", "--rm", *mounts, NGINX_IMAGE, "nginx", "-T", timeout=60)
    assert "test is successful" in dump.stderr
    config = tmp_path / "nginx-dump.conf"
    config.write_text(dump.stdout)
    gixy = Path(sys.executable).parent / "gixy"
    report = subprocess.run(
        [str(gixy), str(config)], capture_output=True, text=True, timeout=120, check=False
    )
    assert report.returncode == 0, report.stdout + report.stderr
    assert "No issues found" in report.stdout


def test_nginx_refuses_a_bad_resolver_with_one_line(images: None) -> None:
    result = docker(
        "run", "--rm", "--read-only", "--tmpfs", "/tmp",
        "--tmpfs", "/etc/nginx/conf.d:uid=101,gid=101",
        "-e", "NGINX_RESOLVER=soon", NGINX_IMAGE,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert '[emerg] 1#1: host not found in resolver "soon"' in result.stderr


def test_nginx_starts_before_the_app_name_resolves(images: None) -> None:
    # nginx resolves APP_UPSTREAM at run time: with no such name yet it starts, answers its own
    # health, and answers the app's routes with the JSON 502 until the name resolves.
    name = f"tpl-nginx-alone-{uuid.uuid4().hex[:6]}"
    docker(
        "run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp",
        "--tmpfs", "/etc/nginx/conf.d:uid=101,gid=101", NGINX_IMAGE,
        timeout=60,
    )  # fmt: skip
    try:
        wait_healthy(name, timeout=30)
        api = docker(
            "exec", name, "curl", "-s", "-w", " %{http_code}", "http://127.0.0.1:8080/api/items"
        ).stdout
        assert api.endswith(" 502"), api
        assert json.loads(api.rsplit(" ", 1)[0])["detail"]
    finally:
        docker("rm", "-f", name, check=False)
