"""What gunicorn's master does at its lifecycle points, kept out of gunicorn.conf.py so it is
importable and testable. All of it runs in the master process."""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

# No prometheus_client import at module level: prometheus_client chooses between in-process and
# multiprocess values once, when it is first imported, from PROMETHEUS_MULTIPROC_DIR. The master
# imports this module before metrics_dir() sets that variable, and the workers inherit the
# master's choice; importing it here made every worker count in-process and /metrics empty.

_CREATED_MARKER = ".created-by-gunicorn-conf"


def metrics_dir(configured: Path | None, env: MutableMapping[str, str]) -> Path:
    """The directory workers share metrics through, exported as PROMETHEUS_MULTIPROC_DIR.

    Called on every config load, including SIGHUP reloads: once set in this master's
    environment the same directory is reused, so a reload keeps the counters.
    """
    if configured is None:
        path = Path(tempfile.mkdtemp(prefix="prometheus-multiproc-"))
        (path / _CREATED_MARKER).touch()
    else:
        path = configured
        path.mkdir(parents=True, exist_ok=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    _check_prometheus_not_yet_in_process_mode()
    return path


def _check_prometheus_not_yet_in_process_mode() -> None:
    """Fail at start, not with an empty /metrics, if something imported prometheus_client
    before the directory was set (its choice of value class is then final)."""
    values = sys.modules.get("prometheus_client.values")
    if values is not None and values.ValueClass is values.MutexValue:
        raise RuntimeError(
            "prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set, so workers "
            "would keep their metrics to themselves: import it only after gunicorn.conf.py has "
            "called hooks.metrics_dir()"
        )


def empty_metrics_dir(path: Path) -> None:
    """At master start only: files from an earlier run would be summed into this one's counts."""
    for leftover in path.glob("*.db"):
        leftover.unlink()


def remove_metrics_dir(path: Path) -> None:
    """At master exit, remove the directory if it was made for this run."""
    if (path / _CREATED_MARKER).exists():
        shutil.rmtree(path, ignore_errors=True)


def mark_worker_dead(pid: int) -> None:
    """A dead worker's live gauges stop counting; its counters and histograms still add up, from
    the merged files, so the directory does not grow with every worker ever started."""
    if directory := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from app.server import metrics_files  # noqa: PLC0415  # imports prometheus_client

        metrics_files.merge_dead_worker(Path(directory), pid)


def freeze_before_fork(preload: bool) -> None:
    """With PRELOAD the app's objects live in the master and reach the workers as shared
    copy-on-write pages. A worker's cyclic garbage collector writes to the header of every object
    it visits, which copies those pages one by one into each worker; gc.freeze() moves everything
    that exists now into a permanent generation the collector never visits, so they stay shared
    (docs/benchmarks.md, memory). Without PRELOAD the master holds little: nothing to keep."""
    if preload:
        gc.freeze()


def log_startup(log: logging.Logger, record: dict[str, object], json_format: bool) -> None:
    if json_format:
        log.info("server config", extra={"server_config": record})
    else:
        log.info("server config %s", json.dumps(record))
