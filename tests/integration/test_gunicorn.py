"""gunicorn.conf.py driving real gunicorn processes with UvicornWorkers on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from app.server.worker import IDLE_CONNECTION_GRACE_S
from tests.integration.conftest import (
    DEMO_ENDPOINTS,
    ROOT,
    Gunicorn,
    KeepAliveClient,
    can_make_v1_cgroups,
    v1_cpu_group,
)


def startup_record(server: Gunicorn) -> dict[str, Any]:
    for record in server.log_records():
        if record.get("message") == "server config":
            config: dict[str, Any] = record["server_config"]
            return config
    raise AssertionError(f"no startup line:\n{server.log()}")


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` (every 0.05 s, at most `timeout` seconds) until it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def metric(server: Gunicorn, name: str, route: str | None = None) -> float:
    """A metric from the server's /metrics, summed over its labels (only `route`'s, if given)."""
    _, text = get_once(server.url, "/metrics")
    total = 0.0
    for line in text.decode().splitlines():
        sample, _, value = line.rpartition(" ")
        if sample.split("{")[0] == name and (route is None or f'route="{route}"' in sample):
            total += float(value)
    return total


def wait_answered(server: Gunicorn, route: str, count: int = 1) -> None:
    """Until the app has finished `count` requests to `route`, access line included: the counter
    and the access line are written in the same synchronous block, so a scrape that sees the
    count (on the same, single worker) comes after the line."""
    wait_for(lambda: metric(server, "http_requests_total", route) >= count, 10, f"{route} answered")


def get_once(url: str, path: str, timeout: float = 5) -> tuple[int, bytes]:
    """One request on its own connection (so requests spread over workers)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_serves_with_the_worker_count_from_web_concurrency(
    gunicorn: type[Gunicorn], tmp_path: Path
) -> None:
    server = gunicorn(tmp_path, {"WEB_CONCURRENCY": "3"}).start()
    server.wait_ready(workers=3)
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    record = startup_record(server)
    assert record["gunicorn"]["workers"] == 3
    assert record["workers_from"]["source"] == "env"


def test_worker_count_follows_workers_per_core_and_affinity(
    gunicorn: type[Gunicorn], tmp_path: Path
) -> None:
    cpus = len(os.sched_getaffinity(0))
    formula = gunicorn(tmp_path, {"WORKERS_PER_CORE": "1.5"}).start()
    expected = max(1, int(cpus * 1.5 + 0.5))
    formula.wait_ready(workers=expected)
    assert startup_record(formula)["gunicorn"]["workers"] == expected

    pinned = gunicorn(tmp_path, {}, prefix=["taskset", "-c", "0"]).start()
    pinned.wait_ready(workers=1)
    assert startup_record(pinned)["workers_from"]["source"] in {"affinity", "host"}


@pytest.mark.skipif(not can_make_v1_cgroups(), reason="needs root and a cgroup v1 cpu hierarchy")
@pytest.mark.parametrize(("quota_us", "workers"), [(50_000, 1), (150_000, 2)])
def test_worker_count_follows_a_real_cgroup_v1_cpu_quota(
    gunicorn: type[Gunicorn], tmp_path: Path, quota_us: int, workers: int
) -> None:
    with v1_cpu_group(f"template-test-{os.getpid()}-{quota_us}") as group:
        (group / "cpu.cfs_quota_us").write_text(str(quota_us))
        # The shell joins the cgroup, then becomes gunicorn: the master and its workers are in it.
        join = ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "sh"]
        server = gunicorn(tmp_path, {}, prefix=join).start()
        server.wait_ready(workers=workers)
        derived = startup_record(server)["workers_from"]
        assert derived["source"] == "cgroup v1"
        assert derived["cpus"] == quota_us / 100_000
        server.stop()


def test_metrics_sum_requests_across_workers(gunicorn: type[Gunicorn], tmp_path: Path) -> None:
    server = gunicorn(tmp_path, {**DEMO_ENDPOINTS, "WEB_CONCURRENCY": "2"}).start()
    server.wait_ready(workers=2)
    pids: set[int] = set()
    sent = 0
    # New connection per request; stop once both workers have answered (bounded).
    while sent < 400 and (len(pids) < 2 or sent < 40):
        status, body = get_once(server.url, "/api/demo/whoami")
        assert status == 200
        pids.add(int(body.split(b'"pid":')[1].split(b",")[0]))
        sent += 1
    assert pids == server.workers(), "both workers should have served requests"

    _, metrics = get_once(server.url, "/metrics")
    line = next(
        line
        for line in metrics.decode().splitlines()
        if line.startswith("http_requests_total{") and 'route="/api/demo/whoami"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) == sent
    assert "app_workers 2.0" in metrics.decode()


def test_sigterm_lets_an_inflight_request_finish_and_master_exits_zero(
    gunicorn: type[Gunicorn], tmp_path: Path
) -> None:
    server = gunicorn(
        tmp_path, {**DEMO_ENDPOINTS, "WEB_CONCURRENCY": "1", "GRACEFUL_TIMEOUT": "10"}
    ).start()
    server.wait_ready(workers=1)
    result: dict[str, Any] = {}

    def slow_request() -> None:
        result["status"], result["body"] = get_once(server.url, "/api/demo/wait?ms=3000", 15)

    client = threading.Thread(target=slow_request)
    client.start()
    # The request is in flight (the scrape that reads the gauge is the other one).
    wait_for(lambda: metric(server, "http_requests_in_progress") >= 2, 10, "request in flight")
    stop_sent = time.monotonic()
    os.kill(server.pid, signal.SIGTERM)
    assert server.process is not None
    exit_code = server.process.wait(timeout=15)
    took = time.monotonic() - stop_sent
    client.join(5)
    assert result["status"] == 200
    assert b'"waited_ms":3000' in result["body"]
    assert exit_code == 0
    assert took < 10, f"master took {took:.1f}s, beyond GRACEFUL_TIMEOUT"


@dataclass
class KeepAliveLoad:
    """What one keep-alive client saw: the worker pid of every answer, and every failure."""

    pids: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    client: KeepAliveClient | None = None


def _keep_alive_load(
    url: str, stop: threading.Event, max_requests: int, pause: float, seen: KeepAliveLoad
) -> None:
    seen.client = client = KeepAliveClient(url)
    try:
        for _ in range(max_requests):
            if stop.is_set():
                return
            try:
                status, body = client.get("/api/demo/whoami")
            except (OSError, http.client.HTTPException) as error:
                seen.failures.append(repr(error))
                continue
            if status != 200:
                seen.failures.append(f"status {status}")
                continue
            seen.pids.append(json.loads(body)["pid"])
            # Idle between requests, as a pooled connection is: a worker that closed idle
            # connections when told to stop would fail the next request on each. The pause is
            # well inside the worker's grace for idle connections.
            time.sleep(pause)
    finally:
        client.close()


def test_sighup_replaces_every_worker_without_failing_a_kept_alive_connection(
    gunicorn: type[Gunicorn], tmp_path: Path
) -> None:
    server = gunicorn(tmp_path, {**DEMO_ENDPOINTS, "WEB_CONCURRENCY": "2"}).start()
    server.wait_ready(workers=2)
    old_workers = server.workers()
    stop = threading.Event()
    loads = [KeepAliveLoad() for _ in range(6)]
    pause = IDLE_CONNECTION_GRACE_S / 10
    threads = [
        threading.Thread(target=_keep_alive_load, args=(server.url, stop, 3000, pause, seen))
        for seen in loads
    ]
    for thread in threads:
        thread.start()
    try:
        # Every client has a connection kept alive through a few requests to an old worker.
        wait_for(lambda: all(len(seen.pids) >= 3 for seen in loads), 20, "keep-alive clients")
        assert all(seen.client and seen.client.connections == 1 for seen in loads)
        os.kill(server.pid, signal.SIGHUP)
        wait_for(
            lambda: len(server.workers()) == 2 and not server.workers() & old_workers,
            30,
            "every old worker replaced",
        )
        # Every client reached a new worker (on a new connection) a few times.
        wait_for(
            lambda: all(sum(pid not in old_workers for pid in s.pids) >= 3 for s in loads),
            20,
            "every client served by the new workers",
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    sent = sum(len(seen.pids) + len(seen.failures) for seen in loads)
    failures = [failure for seen in loads for failure in seen.failures]
    assert failures == [], f"{len(failures)} of {sent} requests failed: {failures[:5]}"
    for seen in loads:
        assert seen.client is not None
        # The old worker retired each kept-alive connection with `Connection: close` on a
        # complete answer (the first after many on that connection), then the client moved on.
        assert seen.client.retired_after, "no connection was retired with Connection: close"
        assert seen.client.retired_after[0] > 3, seen.client.retired_after
        assert set(seen.pids) & old_workers, "served by an old worker"
        assert set(seen.pids) - old_workers, "served by a new worker"


def test_a_killed_worker_is_replaced(gunicorn: type[Gunicorn], tmp_path: Path) -> None:
    server = gunicorn(tmp_path, {"WEB_CONCURRENCY": "2"}).start()
    server.wait_ready(workers=2)
    victim = min(server.workers())
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        workers = server.workers()
        if len(workers) == 2 and victim not in workers:
            break
        time.sleep(0.1)
    assert len(server.workers()) == 2
    assert victim not in server.workers()
    assert get_once(server.url, "/healthz")[0] == 200


@pytest.mark.parametrize(
    ("command", "env", "line"),
    [
        # The launcher the image uses: it also covers WEB_CONCURRENCY, which gunicorn itself
        # int()s at import time, before any config file can object.
        (
            ["-m", "app.server"],
            {"WEB_CONCURRENCY": "lots"},
            "invalid configuration: WEB_CONCURRENCY='lots': "
            "Input should be a valid integer, unable to parse string as an integer",
        ),
        (
            ["-m", "app.server"],
            {"LOG_LEVEL": "loud"},
            "invalid configuration: LOG_LEVEL='loud': "
            "Input should be 'debug', 'info', 'warning', 'error' or 'critical'",
        ),
        # gunicorn started directly with our config file: the config file itself refuses.
        (
            ["-m", "gunicorn", "-c", "gunicorn.conf.py"],
            {"PORT": "70000"},
            "invalid configuration: PORT='70000': Input should be less than or equal to 65535",
        ),
    ],
    ids=["launcher WEB_CONCURRENCY", "launcher LOG_LEVEL", "gunicorn PORT"],
)
def test_bad_env_var_stops_the_server_before_any_worker_with_one_line(
    command: list[str], env: dict[str, str], line: str
) -> None:
    result = subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == line
    assert "Traceback" not in result.stdout + result.stderr
    assert "Booting worker" not in result.stdout


def test_print_config_shows_the_effective_config_without_starting() -> None:
    env = {"PATH": os.environ["PATH"], "WEB_CONCURRENCY": "4", "PORT": "9123"}
    result = subprocess.run(
        [sys.executable, "-m", "app.server.config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert '"workers": 4' in result.stdout
    assert '"0.0.0.0:9123"' in result.stdout


@pytest.mark.parametrize(
    ("trusted", "expected_client"),
    [("127.0.0.1", "203.0.113.9"), ("10.9.9.9", "127.0.0.1")],
    ids=["proxy trusted", "proxy not trusted"],
)
def test_client_ip_comes_from_forwarded_for_only_from_trusted_proxies(
    gunicorn: type[Gunicorn], tmp_path: Path, trusted: str, expected_client: str
) -> None:
    server = gunicorn(
        tmp_path,
        {
            **DEMO_ENDPOINTS,
            "WEB_CONCURRENCY": "1",
            "FORWARDED_ALLOW_IPS": trusted,
            "ACCESS_LOG": "true",
        },
    ).start()
    server.wait_ready(workers=1)
    response = httpx.get(
        f"{server.url}/api/demo/whoami",
        headers={"X-Forwarded-For": "203.0.113.9", "X-Request-ID": "trace-0001-abcd"},
    )
    assert response.status_code == 200
    wait_answered(server, "/api/demo/whoami")
    [access] = [
        r
        for r in server.log_records()
        if r.get("logger") == "app.access" and r.get("request_id") == "trace-0001-abcd"
    ]
    assert access["client_ip"] == expected_client
    assert access["path"] == "/api/demo/whoami"
    assert access["status"] == 200


def test_every_log_line_is_json_and_access_is_logged_once(
    gunicorn: type[Gunicorn], tmp_path: Path
) -> None:
    server = gunicorn(
        tmp_path, {**DEMO_ENDPOINTS, "WEB_CONCURRENCY": "1", "ACCESS_LOG": "true"}
    ).start()
    server.wait_ready(workers=1)
    httpx.get(f"{server.url}/api/demo/whoami", headers={"X-Request-ID": "once-only-1234"})
    wait_answered(server, "/api/demo/whoami")
    lines = [line for line in server.log().splitlines() if line.strip()]
    assert all(line.startswith("{") for line in lines), lines
    assert sum("once-only-1234" in line for line in lines) == 1
    assert not any("Control server error" in line for line in lines)


def test_by_default_only_server_errors_get_an_app_access_line(
    gunicorn: type[Gunicorn], tmp_path: Path
) -> None:
    # nginx logs every request; the app adds a line only for answers of 500 and above.
    server = gunicorn(tmp_path, {**DEMO_ENDPOINTS, "WEB_CONCURRENCY": "1"}).start()
    server.wait_ready(workers=1)
    ok = httpx.get(f"{server.url}/api/demo/whoami", headers={"X-Request-ID": "quiet-ok-1234"})
    assert ok.status_code == 200
    # Past the moment its line would have been written: the absence below means something.
    wait_answered(server, "/api/demo/whoami")
    assert not [r for r in server.log_records() if r.get("request_id") == "quiet-ok-1234"]


def test_text_log_format_for_development(gunicorn: type[Gunicorn], tmp_path: Path) -> None:
    server = gunicorn(
        tmp_path, {"WEB_CONCURRENCY": "1", "LOG_FORMAT": "text", "ACCESS_LOG": "true"}
    ).start()
    server.wait_ready(workers=1)
    httpx.get(f"{server.url}/api/items", headers={"X-Request-ID": "text-line-1234"})
    wait_answered(server, "/api/items")
    [line] = [line for line in server.log().splitlines() if "text-line-1234" in line]
    assert "app.access: GET /api/items 200 request_id=text-line-1234" in line
    assert not line.startswith("{")


def test_workers_really_run_uvloop_and_the_draining_httptools_protocol(
    gunicorn: type[Gunicorn], tmp_path: Path
) -> None:
    # The production config, serving the app wrapped by a probe that reports the live loop and
    # protocol classes (a config that only names them could still fall back silently).
    server = gunicorn(
        tmp_path,
        {"WEB_CONCURRENCY": "1"},
        suffix=["tests.integration.runtime_probe:create_app()"],
    ).start()
    server.wait_ready(workers=1)
    report = httpx.get(f"{server.url}/_runtime").json()
    assert report == {
        "loop": "uvloop.Loop",
        "protocol": "app.server.worker.DrainingHttpToolsProtocol",
    }
