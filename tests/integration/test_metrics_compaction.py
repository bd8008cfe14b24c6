"""Exited workers' metric files are merged, not kept: after many MAX_REQUESTS recycles the
metrics directory holds the live workers' files and the merged ones, every request is still
counted exactly once, and a scrape during a merge never sees a total move."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app import metrics
from app.server import metrics_files
from tests.integration.conftest import Gunicorn
from tests.integration.test_gunicorn import get_once, metric, wait_for

RECYCLES = 20
PER_WORKER_FILES = ("counter", "histogram", "gauge_livesum")
MERGED = {f"{kind}_merged.db" for kind in ("counter", "histogram")}


def metrics_directory(server: Gunicorn) -> Path:
    """The directory gunicorn.conf.py made: where the workers' open .db files are."""
    for worker in server.workers():
        for fd in Path(f"/proc/{worker}/fd").iterdir():
            target = Path(os.readlink(fd))
            if target.suffix == ".db":
                return target.parent
    raise AssertionError("no worker has a metrics file open")


def test_recycled_workers_leave_only_merged_files_and_every_request_counted(
    gunicorn: type[Gunicorn], tmp_path: Path
) -> None:
    # MAX_REQUESTS is what this test is about: a worker is replaced after every 5 requests.
    # WEB_CONCURRENCY: two workers, so one is merged while the other serves and scrapes.
    server = gunicorn(tmp_path, {"WEB_CONCURRENCY": "2", "MAX_REQUESTS": "5"}).start()
    server.wait_ready(workers=2)
    sent = 0
    # Bounded: at most 200 requests per wanted recycle, and 180 s. uvicorn checks its request
    # count once per 0.1 s tick, so a worker serves MAX_REQUESTS and however many more arrive
    # before the tick: on a quiet machine, 40 per recycle was too few (a fresh-clone CI run).
    deadline = time.monotonic() + 180
    while server.log().count("Booting worker with pid") < 2 + RECYCLES:
        assert sent < 200 * RECYCLES, server.log()[-3000:]
        assert time.monotonic() < deadline, server.log()[-3000:]
        # Both workers may be recycling at once: the request waits for a new one to boot.
        status, _ = get_once(server.url, "/api/items", timeout=30)
        assert status == 200
        sent += 1
    server.wait_ready(workers=2)
    directory = metrics_directory(server)

    def only_live_and_merged() -> bool:
        live = {f"{kind}_{pid}.db" for pid in server.workers() for kind in PER_WORKER_FILES}
        return {path.name for path in directory.glob("*.db")} <= live | MERGED

    # The last recycled worker is merged when the master has reaped it (within a second).
    wait_for(only_live_and_merged, 10, "only the live workers' and the merged files")
    assert len(list(directory.glob("*.db"))) <= 2 * len(PER_WORKER_FILES) + len(MERGED)
    assert (directory / "counter_merged.db").exists()
    # Counted just after the last byte is sent: wait for the last one, then it must be exact.
    wait_for(lambda: metric(server, "http_requests_total", "/api/items") >= sent, 10, "counted")
    assert metric(server, "http_requests_total", "/api/items") == sent
    assert metric(server, "http_request_duration_seconds_count", "/api/items") == sent


# Each of WORKERS forked processes counts PER_WORKER requests in real prometheus-client files
# and exits: the files exited workers leave.
WORKERS, PER_WORKER = 60, 7
_DEAD_WORKERS = f"""
import os
from prometheus_client import Counter, Histogram
requests = Counter("http_requests_total", "h", ["route"], registry=None)
latency = Histogram("http_request_duration_seconds", "h", ["route"], registry=None)
for _ in range({WORKERS}):
    pid = os.fork()
    if pid == 0:
        for _ in range({PER_WORKER}):
            requests.labels("/x").inc()
            latency.labels("/x").observe(0.01)
        os._exit(0)
    os.waitpid(pid, 0)
    print(pid)
"""


def _totals(page: str) -> tuple[float, float]:
    found = {}
    for line in page.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        found[sample] = float(value)
    return (
        found['http_requests_total{route="/x"}'],
        found['http_request_duration_seconds_count{route="/x"}'],
    )


def test_a_scrape_during_merges_sees_every_dead_workers_counts_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"PATH": os.environ["PATH"], "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    made = subprocess.run(
        [sys.executable, "-c", _DEAD_WORKERS], env=env, capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    pids = [int(line) for line in made.stdout.split()]
    assert len(list(tmp_path.glob("counter_*.db"))) == WORKERS
    # render() as a worker runs it, on this directory.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    expected = (float(WORKERS * PER_WORKER), float(WORKERS * PER_WORKER))
    seen: list[tuple[float, float]] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def scrape() -> None:
        # Bounded: stops when the merges are done, or after 5,000 scrapes.
        try:
            for _ in range(5000):
                seen.append(_totals(metrics.render()[0].decode()))
                if done.is_set():
                    break
        except BaseException as error:  # a file vanishing under a scrape raises here
            errors.append(error)

    scrapers = [threading.Thread(target=scrape) for _ in range(2)]
    for thread in scrapers:
        thread.start()
    try:
        for pid in pids:
            metrics_files.merge_dead_worker(tmp_path, pid)
    finally:
        done.set()
        for thread in scrapers:
            thread.join(60)
    assert not errors, errors
    # Each scraper's last scrape may come after the merges; the others overlapped them.
    assert len(seen) - len(scrapers) > WORKERS / 2, "too few scrapes overlapped the merges"
    assert set(seen) == {expected}
    assert {path.name for path in tmp_path.glob("*.db")} == MERGED
    assert _totals(metrics.render()[0].decode()) == expected
