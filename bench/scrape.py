"""Section `scrape`: how long a /metrics scrape takes after 0 and after RECYCLES worker recycles.

Every gunicorn worker writes its own prometheus-client files; with MAX_REQUESTS recycling a
directory that kept every dead worker's files would make each scrape read more of them, without
bound. The template's image runs with MAX_REQUESTS small (recycling is what is measured); the
requests and the timed scrapes come from inside the container, to 127.0.0.1, so neither Docker's
network nor a client container is in the figure."""

from __future__ import annotations

import json
from typing import Any

from bench import stats
from bench.docker import docker, wait_for
from bench.measure import Context
from bench.variants import APP_PORT, TEMPLATE_HARDENING

RECYCLES = 200
MAX_REQUESTS = 20  # small, so 200 recycles take 4,000 requests: the boots are what takes time
WORKERS = 2

# Run in the app container: `requests` GETs of /api/items, then `scrapes` timed GETs of /metrics
# (one connection each), and how many files the metrics directory holds.
_PROBE = f"""
import glob, json, sys, time, urllib.request
def get(path):
    with urllib.request.urlopen("http://127.0.0.1:{APP_PORT}" + path, timeout=30) as answer:
        return answer.read()
requests, scrapes = int(sys.argv[1]), int(sys.argv[2])
for _ in range(requests):
    get("/api/items")
times = []
for _ in range(scrapes):
    began = time.perf_counter()
    get("/metrics")
    times.append((time.perf_counter() - began) * 1000)
files = glob.glob("/tmp/prometheus-multiproc-*/*.db")
print(json.dumps({{"scrape_ms": times, "files": len(files)}}))
"""


def _probe(container: str, requests: int, scrapes: int) -> dict[str, Any]:
    result = docker(
        "exec", container, "python", "-c", _PROBE, str(requests), str(scrapes), timeout=300
    )
    figures: dict[str, Any] = json.loads(result.stdout)
    return figures


def _log(container: str) -> str:
    logs = docker("logs", container, check=False)
    return logs.stdout + logs.stderr


def _boots(container: str) -> int:
    """Workers the master has started so far (its log's 'Booting worker' lines)."""
    return _log(container).count("Booting worker with pid")


def _started(container: str) -> int:
    """Workers whose app has started (each logs 'Application startup complete')."""
    return _log(container).count("Application startup complete")


def _point(container: str, scrapes: int) -> dict[str, Any]:
    recycles = _boots(container) - WORKERS
    figures = _probe(container, 0, scrapes)
    return {
        "recycles": recycles,
        "scrape_ms": stats.summary(figures["scrape_ms"]),
        "files": figures["files"],
    }


def scrape_time(ctx: Context) -> dict[str, Any]:
    """Scrape time (median [min-max] of `scrapes` scrapes) after 0 and after RECYCLES recycles,
    with the number of files in the metrics directory at each point."""
    scrapes = 10 if ctx.reps == 1 else 30
    env = {
        "WEB_CONCURRENCY": str(WORKERS),
        "MAX_REQUESTS": str(MAX_REQUESTS),
        "MAX_REQUESTS_JITTER": "0",
    }
    server = ctx.run.start(
        "scrape-app", ctx.images.app, network=ctx.network,
        env=env, options=[*ctx.budget.server_options(), *TEMPLATE_HARDENING],
    )  # fmt: skip
    try:
        if not wait_for(lambda: _started(server) >= WORKERS, 60):
            raise RuntimeError(f"{server}: {WORKERS} workers did not start within 60 s")
        # Every worker has counted something, fewer requests than one recycle.
        _probe(server, WORKERS * 2, 0)
        points = [_point(server, scrapes)]
        batch = MAX_REQUESTS * WORKERS * 5  # about ten recycles per batch
        for _ in range(RECYCLES * 3 // 10):  # bounded: three times the batches it should need
            if _boots(server) - WORKERS >= RECYCLES or ctx.out_of_time():
                break
            _probe(server, batch, 0)
        points.append(_point(server, scrapes))
        ctx.log(
            "  "
            + "; ".join(
                f"after {p['recycles']} recycles: {p['scrape_ms']['median']} ms, {p['files']} files"
                for p in points
            )
        )
    finally:
        ctx.run.remove(server)
    return {"max_requests": MAX_REQUESTS, "workers": WORKERS, "scrapes": scrapes, "points": points}
