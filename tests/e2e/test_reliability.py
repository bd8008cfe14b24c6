"""Faults and load through the running compose stack (nginx + app): each scenario asserts what
the template promises and records its figures for docs/reliability.md.

Loads are bounded in requests and time and go to 127.0.0.1 only (nginx's published port).
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.docker import docker
from tests.e2e.conftest import DEMO_ENDPOINTS, Stack
from tests.e2e.load import LoadResult, run_load

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
UNLIMITED_RATE = {"RATE_LIMIT": "100000r/s", "RATE_LIMIT_BURST": "100000"}


def memory_bytes(container: str) -> int:
    usage = docker("stats", "--no-stream", "--format", "{{.MemUsage}}", container).stdout
    amount, unit = re.match(r"([\d.]+)\s*([KMG]i?B|B)", usage.strip()).groups()  # type: ignore[union-attr]
    scale = {
        "B": 1,
        "KiB": 1024,
        "MiB": MiB,
        "GiB": 1024 * MiB,
        "kB": 1000,
        "MB": 10**6,
        "GB": 10**9,
    }[unit]
    return int(float(amount) * scale)


def in_container_workers(container: str) -> list[int]:
    """Worker pids as the container sees them (children of gunicorn, PID 1)."""
    script = (
        "import os\n"
        "for p in os.listdir('/proc'):\n"
        "    if p.isdigit():\n"
        "        stat = open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()\n"
        "        if stat[1] == '1': print(p)\n"
    )
    output = docker("exec", container, "python", "-c", script).stdout
    return sorted(int(pid) for pid in output.split())


def wait_for_workers(container: str, count: int, exclude: set[int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = set(in_container_workers(container))
        if len(workers) == count and not workers & exclude:
            return
        time.sleep(0.2)
    raise AssertionError(f"workers did not come back to {count}: {in_container_workers(container)}")


def background_load(
    stack: Stack,
    path: str,
    *,
    connections: int,
    duration: float,
    max_requests: int,
    allowed_stale_retries: int = 0,
) -> tuple[threading.Thread, dict[str, LoadResult]]:
    holder: dict[str, LoadResult] = {}

    def go() -> None:
        holder["result"] = run_load(
            stack.url,
            path,
            connections=connections,
            duration=duration,
            max_requests=max_requests,
            allowed_stale_retries=allowed_stale_retries,
        )

    thread = threading.Thread(target=go)
    thread.start()
    return thread, holder


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` (every 0.1 s, at most `timeout` seconds) until it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


def app_metric(container: str, name: str) -> float:
    """One unlabelled sample of the app's /metrics, scraped inside its container (all workers)."""
    script = (
        "import urllib.request\n"
        "print(urllib.request.urlopen('http://127.0.0.1:8000/metrics', timeout=5).read().decode())"
    )
    text = docker("exec", container, "python", "-c", script).stdout
    [value] = [line.split()[1] for line in text.splitlines() if line.split(" ")[0] == name]
    return float(value)


def alive(pid: int) -> bool:
    """Whether a host process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def app_listens(container: str, port: int = 8000) -> bool:
    """Whether anything in the container listens on `port` (its /proc/net/tcp, state 0A)."""
    script = (
        "import sys\n"
        "rows = [l.split() for f in ('/proc/net/tcp', '/proc/net/tcp6') for l in open(f)][1:]\n"
        f"print(any(r[1].endswith(':{port:04X}') and r[3] == '0A' for r in rows if len(r) > 3))\n"
    )
    return docker("exec", container, "python", "-c", script).stdout.strip() == "True"


def nginx_reloads(logs: str) -> int:
    """Reloads in nginx's log: the master's own `reconfiguring` line, one per reload (the line
    naming the SIGHUP that asked for it ends in `reconfiguring` too: nginx 1.30 logs both)."""
    return len(re.findall(r"#\d+: reconfiguring$", logs, re.MULTILINE))


# --- Load and recovery -----------------------------------------------------------------------

LOAD_SECONDS = float(os.environ.get("RELIABILITY_LOAD_SECONDS", "60"))
KILL_ROUNDS = 10


def test_sustained_load_fails_nothing_and_memory_stays_flat(
    stack_factory: Any, reliability_report: dict[str, Any]
) -> None:
    # Recycling on: planned restarts under load must not fail a request either.
    stack = stack_factory(
        {**UNLIMITED_RATE, "APP_CPUS": "1"},
        app_settings={"MAX_REQUESTS": "5000", "MAX_REQUESTS_JITTER": "1000", **DEMO_ENDPOINTS},
    ).up()
    app = stack.container("app")
    run_load(stack.url, "/api/demo/whoami", connections=50, duration=5, max_requests=20_000)
    boots_before = stack.logs("app").count("Booting worker")
    rss_before = memory_bytes(app)
    result = run_load(
        stack.url,
        "/api/demo/whoami",
        connections=200,
        duration=LOAD_SECONDS,
        max_requests=2_000_000,
    )
    rss_after = memory_bytes(app)
    logs = stack.logs("app")
    # Every worker booted during the load replaced one that reached MAX_REQUESTS; anything
    # else (timeouts, kills, crashes) is unplanned.
    recycled = logs.count("Booting worker") - boots_before
    unplanned = sum(logs.count(sign) for sign in ("WORKER TIMEOUT", "SIGKILL", "exited with code"))
    figures = {
        **result.summary(),
        "connections": 200,
        "seconds": LOAD_SECONDS,
        "container_memory_before_mib": round(rss_before / MiB, 1),
        "container_memory_after_mib": round(rss_after / MiB, 1),
        "planned_recycles": recycled,
        "unplanned_worker_restarts": unplanned,
    }
    reliability_report["1. sustained load, 200 connections"] = figures
    assert result.failed == 0, figures
    assert unplanned == 0, figures
    assert "WORKER TIMEOUT" not in logs
    assert rss_after - rss_before < 64 * MiB, figures


def test_worker_recycling_under_post_load_fails_no_request(
    stack_factory: Any, reliability_report: dict[str, Any]
) -> None:
    # nginx never retries a POST it has sent, so this fails if a recycled worker closes a kept-alive
    # connection nginx has just written a request into (it did, 1 in ~1,000, before
    # app.server.worker.DrainingHttpToolsProtocol). A low MAX_REQUESTS recycles often.
    stack = stack_factory(
        {**UNLIMITED_RATE, "APP_CPUS": "2"},
        app_settings={"MAX_REQUESTS": "400", "MAX_REQUESTS_JITTER": "100"},
    ).up()
    boots_before = stack.logs("app").count("Booting worker")
    body = json.dumps({"name": "widget", "price": 9.5, "tags": ["a", "b"]}).encode()
    result = run_load(
        stack.url,
        "/api/items",
        connections=100,
        duration=20,
        max_requests=200_000,
        json_body=body,
    )
    recycled = stack.logs("app").count("Booting worker") - boots_before
    figures = {**result.summary(), "connections": 100, "planned_recycles": recycled}
    reliability_report["1b. worker recycling under POST load"] = figures
    assert recycled >= 5, figures
    assert result.failed == 0, figures
    assert set(result.statuses) == {201}, figures


def test_sigkilled_worker_under_load_is_replaced_and_nginx_retries(
    stack_factory: Any, reliability_report: dict[str, Any]
) -> None:
    # Several rounds, each a new load with a kill 2 s in: one kill met nginx's pooled-connection
    # race (see the upstream in deploy/nginx) in about one CI run in three; rounds like these
    # failed 24 requests in 15 kills with the upstream listed twice.
    stack = stack_factory({**UNLIMITED_RATE, "APP_CPUS": "2"}, app_settings=DEMO_ENDPOINTS).up()
    app = stack.container("app")
    total = LoadResult()
    replaced_after: list[float] = []
    for round_ in range(KILL_ROUNDS):
        # A worker killed while writing a response cuts that one response: nginx has passed its
        # status line on and cannot retry it, so the client's kept-alive connection closes
        # mid-answer (load.py retries it as a stale connection). At most one per kill is
        # explained (1 to 4 in 10 kills were seen); any beyond count as failed.
        thread, holder = background_load(
            stack, "/api/demo/wait?ms=20", connections=40, duration=5, max_requests=100_000,
            allowed_stale_retries=1,
        )  # fmt: skip
        time.sleep(2)
        victim = in_container_workers(app)[round_ % 2]
        killed_at = time.monotonic()
        docker("exec", app, "python", "-c", f"import os; os.kill({victim}, 9)")
        assert thread.is_alive(), "the kill happened under load"
        wait_for_workers(app, 2, exclude={victim})
        replaced_after.append(round(time.monotonic() - killed_at, 2))
        thread.join(60)
        total.add(holder["result"])
    figures = {**total.summary(), "workers_killed": KILL_ROUNDS, "replaced_after_s": replaced_after}
    reliability_report["2. worker SIGKILLed under load"] = figures
    assert total.failed == 0, figures


def test_worker_blocked_by_sync_code_is_killed_and_replaced(
    stack_factory: Any, reliability_report: dict[str, Any]
) -> None:
    # Default TIMEOUT (30s): a blocked worker is killed 15-30s in (heartbeats every TIMEOUT/2),
    # after nginx's retry window (proxy_next_upstream_timeout 10s), so the request that hung a
    # worker is not retried onto the other one, which it would hang too.
    stack = stack_factory(
        {**UNLIMITED_RATE, "APP_CPUS": "2"},
        app_settings={"FAULT_INJECTION_ENABLED": "true", **DEMO_ENDPOINTS},
    ).up()
    app = stack.container("app")
    before = set(in_container_workers(app))
    blocked: dict[str, Any] = {}

    def hang() -> None:
        started = time.monotonic()
        blocked["status"], _, blocked["body"] = stack.get("/api/demo/block?seconds=60", timeout=90)
        blocked["took"] = time.monotonic() - started

    thread = threading.Thread(target=hang)
    thread.start()
    # The blocking request holds a worker (the scrape that reads the gauge is the other one).
    wait_until(lambda: app_metric(app, "http_requests_in_progress") >= 2, 10, "block in flight")
    # Meanwhile the other worker serves new connections.
    during = [stack.get("/api/demo/whoami", timeout=20)[0] for _ in range(20)]
    thread.join(90)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        current = set(in_container_workers(app))
        if len(current) == 2 and current != before:
            break
        time.sleep(0.2)
    assert len(current) == 2, "the killed worker was replaced"
    assert current != before, "the killed worker was replaced"
    after = [stack.get("/api/demo/whoami")[0] for _ in range(10)]
    logs = stack.logs("app")
    figures = {
        "blocked_request_status": blocked["status"],
        "blocked_request_answered_after_s": round(blocked["took"], 1),
        "requests_during_block": len(during),
        "ok_during_block": during.count(200),
        "worker_timeouts_logged": logs.count("WORKER TIMEOUT"),
    }
    reliability_report["3. worker blocked by sync code"] = figures
    assert logs.count("WORKER TIMEOUT") == 1, figures
    assert blocked["status"] == 502, figures
    assert json.loads(blocked["body"]) == {"detail": "service unavailable, retry shortly"}
    assert during.count(200) >= len(during) // 2, figures
    assert after == [200] * 10


def _poll_until_ok(stack: Stack, timeout: float) -> tuple[float, list[int], list[bytes]]:
    """Poll through nginx until 200; the non-200 answers seen and how long it took."""
    started = time.monotonic()
    statuses: list[int] = []
    bodies: list[bytes] = []
    while time.monotonic() - started < timeout:
        try:
            status, _, body = stack.get("/api/demo/whoami", timeout=5)
        except OSError:
            status, body = 0, b""
        if status == 200:
            return time.monotonic() - started, statuses, bodies
        statuses.append(status)
        bodies.append(body)
        time.sleep(0.1)
    raise AssertionError(f"no 200 within {timeout}s: {statuses[-5:]}")


def test_app_restart_and_crash_answer_json_errors_and_recover_without_nginx_restart(
    demo_stack: Stack, reliability_report: dict[str, Any]
) -> None:
    nginx_started = docker(
        "inspect", "-f", "{{.State.StartedAt}}", demo_stack.container("nginx")
    ).stdout
    restart = threading.Thread(target=lambda: demo_stack.compose("restart", "app", timeout=120))
    restart.start()
    # The restart has begun (gunicorn got its SIGTERM): polling before it would see the old app.
    wait_until(lambda: "Handling signal: term" in demo_stack.logs("app"), 30, "restart began")
    recovered_restart, statuses_restart, bodies = _poll_until_ok(demo_stack, 90)
    restart.join(120)
    for status, body in zip(statuses_restart, bodies, strict=True):
        assert status in {502, 503, 504}, status
        assert json.loads(body)["detail"], body

    # A crash: the container's main process killed from outside, like the OOM killer does.
    app = demo_stack.container("app")
    pid = int(docker("inspect", "-f", "{{.State.Pid}}", app).stdout)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid), 10, "the app's main process is gone")
    recovered_crash, statuses_crash, bodies = _poll_until_ok(demo_stack, 90)
    for status, body in zip(statuses_crash, bodies, strict=True):
        assert status in {502, 503, 504}, status
        assert json.loads(body)["detail"], body
    restarts = docker("inspect", "-f", "{{.RestartCount}}", app).stdout.strip()
    assert restarts == "1", "the restart policy brought the crashed app back"
    assert (
        docker("inspect", "-f", "{{.State.StartedAt}}", demo_stack.container("nginx")).stdout
        == nginx_started
    ), "nginx was not restarted"
    reliability_report["4. app restarted / crashed"] = {
        "restart_recovered_after_s": round(recovered_restart, 1),
        "restart_error_answers": len(statuses_restart),
        "crash_recovered_after_s": round(recovered_crash, 1),
        "crash_error_answers": len(statuses_crash),
    }


def test_nginx_follows_the_app_scaled_up_and_down_under_load_without_a_restart(
    stack_factory: Any, reliability_report: dict[str, Any]
) -> None:
    # nginx re-resolves `app` itself (`server app:8000 resolve`, valid=1s): a replica added
    # later gets requests, a removed one's address stops getting them, and nginx is neither
    # restarted nor reloaded (a reload would drop its pooled connections).
    stack = stack_factory(UNLIMITED_RATE, app_settings=DEMO_ENDPOINTS).up()
    nginx = stack.container("nginx")
    nginx_started = docker("inspect", "-f", "{{.State.StartedAt}}", nginx).stdout
    thread, holder = background_load(
        stack, "/api/demo/whoami", connections=20, duration=30, max_requests=1_000_000
    )
    time.sleep(3)
    scaled_at = time.monotonic()
    stack.compose("up", "-d", "--no-build", "--wait", "--scale", "app=2", timeout=120)
    healthy_at = time.monotonic()
    hosts: set[str] = set()
    while len(hosts) < 2 and time.monotonic() - scaled_at < 30:
        status, _, body = stack.get("/api/demo/whoami")
        if status == 200:
            hosts.add(json.loads(body)["host"])
    serving_at = time.monotonic()
    stack.compose("up", "-d", "--no-build", "--wait", "--scale", "app=1", timeout=120)
    scaled_down_while_loaded = thread.is_alive()
    thread.join(60)
    result = holder["result"]
    serving_after_healthy = round(serving_at - healthy_at, 2)
    reloads = nginx_reloads(stack.logs("nginx"))
    figures = {
        **result.summary(),
        "second_replica_healthy_after_s": round(healthy_at - scaled_at, 1),
        "second_replica_serving_after_healthy_s": serving_after_healthy,
        "nginx_reloads": reloads,
    }
    reliability_report["4b. app scaled 1 -> 2 -> 1 under load"] = figures
    assert len(hosts) == 2, figures
    assert scaled_down_while_loaded, "the load ended before the scale-down: nothing was proven"
    assert result.failed == 0, figures
    # Within a resolver interval (1 s) and a request or two of the replica being healthy.
    assert serving_after_healthy < 3, figures
    assert reloads == 0, figures
    assert docker("inspect", "-f", "{{.State.StartedAt}}", nginx).stdout == nginx_started


def test_nginx_reload_under_load_fails_nothing(
    stack_factory: Any, reliability_report: dict[str, Any]
) -> None:
    stack = stack_factory(UNLIMITED_RATE, app_settings=DEMO_ENDPOINTS).up()
    connections, reloads = 50, 3
    # A reload retires nginx's old workers, which close their idle client keep-alive
    # connections: at most each client connection once per reload, each such GET retried once.
    thread, holder = background_load(
        stack,
        "/api/demo/whoami",
        connections=connections,
        duration=10,
        max_requests=500_000,
        allowed_stale_retries=connections * reloads,
    )
    for _ in range(reloads):
        time.sleep(2)
        stack.compose("exec", "-T", "nginx", "nginx", "-s", "reload")
    thread.join(60)
    result = holder["result"]
    reliability_report["5. nginx reload x3 under load"] = result.summary()
    assert result.failed == 0, result.summary()
    # The line scenario 4b counts to prove that following the app needs no reload.
    assert nginx_reloads(stack.logs("nginx")) == reloads


def test_graceful_stop_finishes_inflight_requests_and_answers_new_ones_fast(
    demo_stack: Stack, reliability_report: dict[str, Any]
) -> None:
    # A one-replica stack being stopped has nobody to serve a new request. Once gunicorn has
    # closed its listener (at SIGTERM), nginx's connect is refused, so a client must get
    # nginx's JSON 502 at once, never a hang until the container exits, a reset or an HTML page,
    # while the requests already in flight are finished. (nginx holds no idle connection to the
    # app here: its only ones carry the in-flight requests, so no draining worker can serve it.)
    app = demo_stack.container("app")
    # One thread more than the requests: the stop must not queue behind them (it did, with ten,
    # so the stop began only once they had finished and nothing was stopped under them).
    with ThreadPoolExecutor(max_workers=11) as pool:
        inflight = [
            pool.submit(demo_stack.get, "/api/demo/wait?ms=5000", timeout=30) for _ in range(10)
        ]
        # All ten reached the app (the scrape that reads the gauge is one more).
        wait_until(lambda: app_metric(app, "http_requests_in_progress") >= 11, 10, "in flight")
        stop_sent = time.monotonic()
        stopping = pool.submit(demo_stack.compose, "stop", "app", timeout=60)
        wait_until(lambda: not app_listens(app), 3, "gunicorn closed its listener")
        listener_closed_s = time.monotonic() - stop_sent
        new: list[tuple[int, bytes, float, bool]] = []
        # New requests until the in-flight ones are answered (bounded: 40 at most).
        while not all(future.done() for future in inflight) and len(new) < 40:
            still_inflight = not any(future.done() for future in inflight)
            started = time.monotonic()
            status, _, body = demo_stack.get("/api/demo/whoami", timeout=10)
            new.append((status, body, time.monotonic() - started, still_inflight))
            time.sleep(0.2)
        finished = [future.result(timeout=30)[0] for future in inflight]
        stopping.result(timeout=60)
    reliability_report["6. graceful stop with 10 in-flight 5s requests"] = {
        "inflight_completed": finished.count(200),
        "inflight": len(finished),
        "listener_closed_after_s": round(listener_closed_s, 2),
        "new_requests_during_stop": len(new),
        "new_request_statuses": sorted({status for status, _, _, _ in new}),
        "new_request_slowest_s": round(max(took for _, _, took, _ in new), 3) if new else None,
    }
    assert finished == [200] * 10
    assert new, "no new request was sent during the stop"
    assert new[0][3], "the first new request was sent while all ten were in flight"
    for status, body, took, _ in new:
        assert status == 502, (status, body)
        assert json.loads(body) == {"detail": "service unavailable, retry shortly"}, body
        assert took < 0.5, took
