"""The compose stack as a user runs it: nginx -> gunicorn -> app, on real Docker."""

from __future__ import annotations

import gzip
import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect as websocket_connect

from tests.docker import base_image, docker
from tests.e2e.conftest import DEMO_ENDPOINTS, PROJECT, ROOT, TAG, Stack, gunicorn_workers, response

pytestmark = pytest.mark.e2e

PERMISSION_COMPLAINTS = (
    "permission denied",
    "control server error",
    "read-only file system",
    "[emerg]",
    "[crit]",
    "traceback",
)


def test_request_through_nginx_reaches_the_app_with_a_request_id(stack_factory: Any) -> None:
    # The app's access line on (ACCESS_LOG), to see the id the app received.
    stack = stack_factory(app_settings={"ACCESS_LOG": "true", **DEMO_ENDPOINTS}).up()
    status, headers, body = stack.get("/api/demo/whoami")
    assert status == 200
    assert "pid" in json.loads(body)
    request_id = headers["x-request-id"]
    assert len(request_id) == 32
    # nginx generated the id, the app received and logged the same one.
    app_lines = [r for r in stack.log_records("app") if r.get("request_id") == request_id]
    assert [r["path"] for r in app_lines] == ["/api/demo/whoami"]
    nginx_lines = [r for r in stack.log_records("nginx") if r.get("request_id") == request_id]
    assert [r["status"] for r in nginx_lines] == [200]


def test_both_containers_run_non_root_on_read_only_roots_without_complaints(
    stack: Stack,
) -> None:
    stack.get("/healthz")
    for service, uid in (("app", "10001"), ("nginx", "101")):
        container = stack.container(service)
        inspected = json.loads(docker("inspect", container).stdout)[0]["HostConfig"]
        assert inspected["ReadonlyRootfs"] is True
        assert inspected["CapDrop"] == ["ALL"]
        assert "no-new-privileges:true" in inspected["SecurityOpt"]
        users = docker("top", container, "-eo", "pid,uid,args").stdout.splitlines()[1:]
        assert users, service
        assert all(line.split()[1] == uid for line in users), users
        logs = stack.logs(service).lower()
        assert not [c for c in PERMISSION_COMPLAINTS if c in logs], logs


def test_app_cpus_and_memory_from_env_set_the_worker_count(stack_factory: Any) -> None:
    two = stack_factory({"APP_CPUS": "2", "APP_MEMORY": "1g"}).up()
    assert gunicorn_workers(two.container("app")) == 2
    squeezed = stack_factory({"APP_CPUS": "2", "APP_MEMORY": "200m"}).up()
    assert gunicorn_workers(squeezed.container("app")) == 1


def test_compose_stop_lets_an_inflight_request_finish(demo_stack: Stack) -> None:
    result: dict[str, Any] = {}

    def slow() -> None:
        result["status"], _, result["body"] = demo_stack.get("/api/demo/wait?ms=4000", timeout=30)

    client = threading.Thread(target=slow)
    client.start()
    time.sleep(1.5)
    app = demo_stack.container("app")
    started = time.monotonic()
    demo_stack.compose("stop", "app", timeout=60)
    took = time.monotonic() - started
    client.join(30)
    assert result["status"] == 200
    assert json.loads(result["body"])["waited_ms"] == 4000
    assert docker("inspect", "-f", "{{.State.ExitCode}}", app).stdout.strip() == "0"
    assert took < 30, f"stop took {took:.1f}s: Docker's SIGKILL, not a graceful exit"


def _load(url: str, stop: threading.Event, limit: int) -> tuple[int, list[str]]:
    sent, failures = 0, []
    while not stop.is_set() and sent < limit:
        sent += 1
        try:
            status, _, _ = response(url, path="/api/demo/wait?ms=5", timeout=10)
            if status != 200:
                failures.append(f"HTTP {status}")
        except OSError as error:
            failures.append(repr(error))
    return sent, failures


def test_sighup_under_load_through_nginx_fails_no_request(stack_factory: Any) -> None:
    stack = stack_factory(
        {"APP_CPUS": "2", "RATE_LIMIT": "10000r/s"}, app_settings=DEMO_ENDPOINTS
    ).up()
    app = stack.container("app")
    before = gunicorn_workers(app)
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=6) as pool:
        loads = [pool.submit(_load, stack.url, stop, 2000) for _ in range(6)]
        time.sleep(1.5)
        stack.compose("kill", "-s", "SIGHUP", "app")
        time.sleep(4)
        stop.set()
        results = [load.result(timeout=60) for load in loads]
    sent = sum(count for count, _ in results)
    failures = [failure for _, batch in results for failure in batch]
    assert sent > 100
    assert failures == [], f"{len(failures)} of {sent} failed: {failures[:5]}"
    assert gunicorn_workers(app) == before
    assert "Handling signal: hup" in stack.logs("app")


def test_scaled_app_replicas_all_receive_requests(stack_factory: Any) -> None:
    stack = stack_factory({"RATE_LIMIT": "10000r/s"}, app_settings=DEMO_ENDPOINTS).up(
        "--scale", "app=3"
    )
    assert len(stack.containers("app")) == 3
    hosts = set()
    for _ in range(60):
        status, _, body = stack.get("/api/demo/whoami")
        assert status == 200
        hosts.add(json.loads(body)["host"])
        if len(hosts) == 3:
            break
    assert len(hosts) == 3


def test_forged_forwarded_for_is_not_the_logged_client_ip(stack_factory: Any) -> None:
    stack = stack_factory(app_settings={"ACCESS_LOG": "true"}).up()
    forged = "203.0.113.66"
    status, headers, _ = stack.get(
        "/api/items",
        headers={
            "X-Forwarded-For": forged,
            "X-Real-IP": forged,
            "X-Request-ID": "client-chosen-id-123",
        },
    )
    assert status == 200
    request_id = headers["x-request-id"]
    assert request_id != "client-chosen-id-123", "nginx issues its own request id"
    [app_line] = [r for r in stack.log_records("app") if r.get("request_id") == request_id]
    [nginx_line] = [r for r in stack.log_records("nginx") if r.get("request_id") == request_id]
    assert app_line["client_ip"] != forged
    assert app_line["client_ip"] == nginx_line["client_ip"], "the app sees nginx's peer address"


def test_oversized_body_gets_413_from_nginx_and_never_reaches_the_app(stack: Stack) -> None:
    status, headers, body = stack.get(
        "/api/items",
        method="POST",
        body=b"x" * (2 * 1024 * 1024),
        headers={"Content-Type": "application/json"},
    )
    assert status == 413
    assert json.loads(body) == {"detail": "request body too large"}
    assert headers["x-content-type-options"] == "nosniff"
    assert not [r for r in stack.log_records("app") if r.get("path") == "/api/items"]


def test_idle_gaps_longer_than_gunicorn_keepalive_cause_no_502(stack: Stack) -> None:
    keep_alive = 20  # gunicorn's KEEP_ALIVE default; nginx's upstream idle timeout is 15s
    statuses = [stack.get("/api/items")[0]]
    for _ in range(2):
        time.sleep(keep_alive + 1)
        statuses.append(stack.get("/api/items")[0])
    assert statuses == [200, 200, 200]
    assert '"status":502' not in stack.logs("nginx")


def test_rate_limit_answers_429_but_never_limits_health(stack_factory: Any) -> None:
    stack = stack_factory({"RATE_LIMIT": "2r/s", "RATE_LIMIT_BURST": "3"}).up()
    api = [stack.get("/api/items")[0] for _ in range(15)]
    assert 429 in api
    assert api[:4] == [200] * 4
    health = [stack.get("/healthz")[0] for _ in range(15)]
    assert health == [200] * 15
    status, _, body = stack.get("/api/items")
    assert (status, json.loads(body)) == (429, {"detail": "too many requests"})


def test_json_is_gzipped_and_security_headers_are_on_every_answer(stack: Stack) -> None:
    for index in range(40):
        created = stack.get(
            "/api/items",
            method="POST",
            body=json.dumps({"name": f"item-{index}", "price": index}).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert created[0] == 201
    # Items are per worker; the default stack has one (APP_CPUS=1).
    status, headers, body = stack.get("/api/items", headers={"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert len(json.loads(gzip.decompress(body))) == 40
    for path in ("/nginx-health", "/healthz", "/no-such-page", "/metrics"):
        _, headers, _ = stack.get(path)
        assert headers["x-frame-options"] == "DENY", path
        assert headers["x-content-type-options"] == "nosniff", path
        assert "server" not in headers or headers["server"] == "nginx", path


def test_websocket_upgrade_passes_through_nginx(demo_stack: Stack) -> None:
    with websocket_connect(
        f"ws://{demo_stack.url.removeprefix('http://')}/api/demo/echo", open_timeout=10
    ) as socket:
        socket.send("hello through nginx")
        assert socket.recv(timeout=10) == "hello through nginx"


def _layers(image: str) -> list[str]:
    layers: list[str] = json.loads(
        docker("image", "inspect", "-f", "{{json .RootFS.Layers}}", image).stdout
    )
    return layers


def test_rebuild_after_an_app_change_reuses_the_dependency_layer(
    images: None, tmp_path: Path
) -> None:
    context = tmp_path / "context"
    files = ["Dockerfile", ".dockerignore", "pyproject.toml", "uv.lock", "gunicorn.conf.py"]
    context.mkdir()
    for name in files:
        shutil.copy(ROOT / name, context / name)
    shutil.copytree(ROOT / "app", context / "app", ignore=shutil.ignore_patterns("__pycache__"))
    tag = f"{PROJECT}-app:{TAG}-rebuild"
    try:
        docker("build", "-t", tag, str(context), timeout=600)
        before = _layers(tag)
        demo = context / "app" / "api" / "demo.py"
        demo.write_text(demo.read_text() + "\n# a one-line change\n")
        docker("build", "-t", tag, str(context), timeout=600)
        after = _layers(tag)
        # The runtime stage is the base's layers, then the venv layer, then the code.
        venv = len(_layers(base_image()))
        assert after[: venv + 1] == before[: venv + 1], "the dependency (venv) layer was rebuilt"
        assert after[venv + 1 :] != before[venv + 1 :], "the code layer should change"
    finally:
        docker("rmi", "-f", tag, check=False)
