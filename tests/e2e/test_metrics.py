"""/metrics as shipped: the compose stack and the bare image, with no metrics setting of the
test's own. Every worker's requests must be in the sum (prometheus-client's multiprocess mode,
which the config must switch on before anything imports prometheus_client)."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.docker import docker
from tests.e2e.conftest import APP_IMAGE, DEMO_ENDPOINTS, Stack, wait_healthy

pytestmark = pytest.mark.e2e

ROUTE = "/api/demo/whoami"
REQUESTS = 300

# A worker counts a request just after its last byte is sent, so a scrape right after the last
# answer may not hold it yet: scrape until no request but the scrape itself is in progress
# (bounded: 50 scrapes, 0.1 s apart).
SCRAPE = """
import time, urllib.request
for _ in range(50):
    metrics = urllib.request.urlopen("http://127.0.0.1:8000/metrics").read().decode()
    if "http_requests_in_progress 1.0" in metrics.splitlines():
        break
    time.sleep(0.1)
print(metrics)
"""

# Run inside the app container: REQUESTS GETs to this server, then its /metrics, as JSON.
IN_CONTAINER = f"""
import json, urllib.request
from concurrent.futures import ThreadPoolExecutor
def get(_):
    with urllib.request.urlopen("http://127.0.0.1:8000{ROUTE}") as answer:
        return json.loads(answer.read())["pid"]
with ThreadPoolExecutor(8) as pool:
    pids = sorted(set(pool.map(get, range({REQUESTS}))))
print(json.dumps(pids))
"""


def requests_counted(metrics: str, route: str) -> float:
    """http_requests_total for one route, summed over methods and statuses."""
    pattern = re.compile(r"^http_requests_total\{([^}]*)\} (\S+)$", re.M)
    return sum(
        float(value) for labels, value in pattern.findall(metrics) if f'route="{route}"' in labels
    )


def test_metrics_through_nginx_count_every_workers_requests(stack_factory: Any) -> None:
    # Only the CPU limit is set: two CPUs, so two workers. Bursts of 30 concurrent requests,
    # so nginx opens connections that both workers accept, each burst within the shipped rate
    # limit (20 r/s, burst 40), which the test leaves as it is.
    stack: Stack = stack_factory({"APP_CPUS": "2"}, app_settings=DEMO_ENDPOINTS).up()
    bursts, burst = 3, 30

    def get(_index: int) -> int:
        status, _, body = stack.get(ROUTE)
        assert status == 200, status
        pid: int = json.loads(body)["pid"]
        return pid

    pids: set[int] = set()
    with ThreadPoolExecutor(burst) as pool:
        for round_ in range(bursts):
            if round_:
                time.sleep(2)  # the rate limit's budget refills (40 requests at 20 r/s)
            pids |= set(pool.map(get, range(burst)))
    sent = bursts * burst
    metrics = stack.compose("exec", "-T", "app", "python", "-c", SCRAPE).stdout
    assert len(pids) == 2, f"both workers should have answered: {pids}"
    assert "app_workers 2.0" in metrics, metrics
    assert requests_counted(metrics, ROUTE) == sent, metrics
    # Scraped at app:8000 only: nginx does not publish them.
    status, _, body = stack.get("/metrics")
    assert (status, json.loads(body)) == (404, {"detail": "Not Found"})


@pytest.fixture
def bare_app(images: None) -> Iterator[str]:
    name = f"tpl-metrics-{uuid.uuid4().hex[:8]}"
    # Only the demo endpoints on: whoami's pid shows which worker answered.
    demo = [arg for key, value in DEMO_ENDPOINTS.items() for arg in ("-e", f"{key}={value}")]
    docker("run", "-d", "--name", name, *demo, APP_IMAGE)
    try:
        yield name
    finally:
        docker("rm", "-f", "-v", name, check=False)


def test_metrics_of_the_image_run_with_no_environment(bare_app: str) -> None:
    wait_healthy(bare_app)
    pids = json.loads(docker("exec", bare_app, "python", "-c", IN_CONTAINER).stdout)
    metrics = docker("exec", bare_app, "python", "-c", SCRAPE).stdout
    workers = int(float(re.search(r"^app_workers (\S+)$", metrics, re.M).group(1)))  # type: ignore[union-attr]
    assert workers >= 1
    assert len(pids) == workers
    assert requests_counted(metrics, ROUTE) == REQUESTS, metrics
