"""The shipped compose stack follows `docker update --cpus` without a restart (issue 14).

The app container is resized in place, 1 -> 2 -> 1 CPUs, while a bounded keep-alive load runs
through nginx; the worker count is read from the real processes (`docker top`). Nothing but the
CPUs changes: the follower runs with its shipped default interval.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from tests.docker import docker
from tests.e2e.conftest import gunicorn_workers
from tests.e2e.load import LoadResult, run_load

pytestmark = pytest.mark.e2e

# nginx's per-client limit (20 r/s) would answer this load with 429s: off for it.
UNLIMITED_RATE = {"RATE_LIMIT": "100000r/s", "RATE_LIMIT_BURST": "100000"}
# The shipped interval is 5 s: a step lands within it, the arbiter's loop (1 s) and a boot.
STEP_WITHIN_S = 15
# Down: TTOU's retiring worker drains its kept-alive connections first.
RETIRE_WITHIN_S = 40


def test_docker_update_cpus_moves_the_worker_count_and_fails_no_request(
    stack_factory: Any,
) -> None:
    stack = stack_factory(env=UNLIMITED_RATE).up()
    app = stack.container("app")
    assert gunicorn_workers(app) == 1  # compose's cpus: 1

    started = time.monotonic()
    samples: list[tuple[float, int]] = []

    def sample() -> int:
        count = gunicorn_workers(app)
        if not samples or samples[-1][1] != count:
            samples.append((round(time.monotonic() - started, 1), count))
        return count

    def wait_workers(count: int, within: float) -> float:
        deadline = time.monotonic() + within
        asked = time.monotonic()
        while time.monotonic() < deadline:
            if sample() == count:
                return round(time.monotonic() - asked, 1)
            time.sleep(0.25)
        raise AssertionError(
            f"not {count} workers within {within}s: {samples}\n{stack.logs('app')}"
        )

    holder: dict[str, LoadResult] = {}
    load = threading.Thread(
        target=lambda: holder.setdefault(
            "result",
            run_load(stack.url, "/healthz", connections=4, duration=50, max_requests=400_000),
        )
    )
    load.start()
    try:
        docker("update", "--cpus", "1", app)
        time.sleep(STEP_WITHIN_S / 3)
        assert sample() == 1, "no change asked, none made"
        docker("update", "--cpus", "2", app)
        up_s = wait_workers(2, STEP_WITHIN_S)
        docker("update", "--cpus", "1", app)
        down_s = wait_workers(1, RETIRE_WITHIN_S)
        covered = load.is_alive()  # the load ran through the whole sequence
    finally:
        load.join(60)
    result = holder["result"]
    print(
        json.dumps(
            {"samples_s_workers": samples, "up_s": up_s, "down_s": down_s, "load": result.summary()}
        )
    )

    assert covered, "the load ended before the resize sequence did"
    assert result.failed == 0, result.summary()
    assert set(result.statuses) == {200}, result.summary()
    assert result.sent > 0
    records = [
        record
        for record in stack.log_records("app")
        if "to follow the budget" in str(record.get("message", ""))
    ]
    print(json.dumps([(record["time"], record["message"]) for record in records]))
    steps = [str(record["message"]) for record in records]
    assert [line.split(" (")[0] for line in steps] == ["workers 1 -> 2", "workers 2 -> 1"], steps
    # The container was never restarted: the same master throughout.
    assert docker("inspect", "-f", "{{.RestartCount}}", app).stdout.strip() == "0"
