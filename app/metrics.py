"""Prometheus metrics that stay correct with several gunicorn workers.

Under gunicorn every worker is its own process with its own counters; prometheus-client's
multiprocess mode has each worker write to files in PROMETHEUS_MULTIPROC_DIR (set up by
gunicorn.conf.py) and sums them at scrape time. Without that directory (tests, `uvicorn` alone)
the ordinary in-process registry is used.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from app.server import metrics_files

REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time from request start to the last response byte, by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
IN_PROGRESS = Gauge(
    "http_requests_in_progress",
    "Requests being served right now, summed over live workers.",
    multiprocess_mode="livesum",
)
WORKERS = Gauge(
    "app_workers",
    "Worker processes that have started the app and are alive.",
    multiprocess_mode="livesum",
)


def render() -> tuple[bytes, str]:
    """The exposition text for a scrape, aggregated over all workers when there are several."""
    if directory := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        # The files are read under the lock the master takes to merge an exited worker's files,
        # so each worker's counts are read exactly once (app/server/metrics_files.py).
        with metrics_files.reading(Path(directory)):
            return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
