"""`docker compose stop` on the shipped stack: requests shorter than the grace finish, a longer one
is cut inside it, and the app's lifespan shutdown (its cleanup) runs before the container exits 0.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.docker import docker
from tests.e2e.conftest import DEMO_ENDPOINTS, Stack

pytestmark = pytest.mark.e2e


# Inside the app container: wait (bounded, 10 s) until the app has 2 requests in progress
# besides this scrape, so the stop meets them in flight instead of after a guessed sleep.
IN_FLIGHT = """
import time, urllib.request
for _ in range(200):
    metrics = urllib.request.urlopen("http://127.0.0.1:8000/metrics").read().decode()
    if "http_requests_in_progress 3.0" in metrics.splitlines():
        break
    time.sleep(0.05)
else:
    raise SystemExit("the requests never reached the app")
"""


def test_stop_cuts_a_request_longer_than_the_grace_and_the_app_cleans_up(
    stack_factory: Any,
) -> None:
    # GRACEFUL_TIMEOUT is what the test is about: 6 s, so requests get 4.5 s after the stop.
    stack: Stack = stack_factory(app_settings={"GRACEFUL_TIMEOUT": "6", **DEMO_ENDPOINTS}).up()
    app = stack.container("app")
    with ThreadPoolExecutor(max_workers=2) as pool:
        long = pool.submit(stack.get, "/api/demo/wait?ms=20000", timeout=30)
        short = pool.submit(stack.get, "/api/demo/wait?ms=2500", timeout=30)
        stack.compose("exec", "-T", "app", "python", "-c", IN_FLIGHT, timeout=30)
        stack.compose("stop", "app", timeout=60)
        long_status = long.result(timeout=30)[0]
        short_status = short.result(timeout=30)[0]
    assert short_status == 200
    assert long_status != 200
    logs = stack.logs("app")
    assert "Application shutdown complete" in logs
    assert "app cleanup complete" in logs
    assert "SIGKILL" not in logs
    assert docker("inspect", "-f", "{{.State.ExitCode}}", app).stdout.strip() == "0"
