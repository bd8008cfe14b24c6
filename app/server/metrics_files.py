"""Keep the metrics directory at O(live workers) files, however many workers have come and gone.

prometheus-client's multiprocess mode gives each worker its own files (counter_<pid>.db,
histogram_<pid>.db, gauge_livesum_<pid>.db) and every scrape reads every file. Its
mark_process_dead() removes only a dead worker's live gauges: with MAX_REQUESTS recycling, worker
timeouts and SIGHUP reloads, the counters and histograms of every worker ever started stayed,
and each scrape got slower without bound (the benchmark harness measures it: bench/scrape.py).

So when a worker has exited, the master (gunicorn's child_exit hook) adds its counter, histogram
and summary values into one `<type>_merged.db` per type and removes its files. The sums a scrape
reports do not change: a dead worker's counts must not vanish (Prometheus would see a counter
reset) nor be counted twice. A scrape must therefore see each dead worker's values exactly once,
in its own file before the merge or in the merged file after it, never both or neither: the
merge holds LOCK_FILE exclusively while it replaces the merged file and removes the dead one, and
a scrape holds it shared while it lists and reads the files (render() in app/metrics.py).

Imported only once PROMETHEUS_MULTIPROC_DIR is set (it imports prometheus_client: see hooks.py).
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import multiprocess

# Not public API, but the format every multiprocess file has: the collector reads them with
# these, and so does the merge (prometheus-client is pinned, 0.26.0 in uv.lock).
from prometheus_client.mmap_dict import MmapedDict

log = logging.getLogger(__name__)

# Not `*.db`: the collector reads every *.db file in the directory, and at master start
# hooks.empty_metrics_dir() removes them. Scrapes share LOCK_FILE, a merge holds it alone. The
# master only tries for it (it must never block for long), and scrapes whose shared holds overlap
# kept it out for good in the concurrency test; so a merge first takes TURNSTILE, which every
# scrape passes through before it takes its shared lock: new scrapes wait, the ones reading finish.
LOCK_FILE = ".merge.lock"
TURNSTILE = ".merge.turnstile"
# Types whose value over all processes is the sum of each process's values (a histogram file
# holds per-bucket counts, not cumulative ones, and _sum; a summary _count and _sum). Gauges are
# per-process or live by design: the app's are live gauges, which mark_process_dead removes.
MERGED_TYPES = ("counter", "histogram", "summary")
# The master waits at most this long for scrapes in progress to finish reading (milliseconds
# each); past it, the dead worker's files stay where they are, still counted, just not merged.
LOCK_WAIT_S = 2.0


@contextmanager
def _opened(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        yield fd
    finally:
        os.close(fd)  # the only descriptor of this open file: its lock goes with it


@contextmanager
def reading(directory: Path) -> Iterator[None]:
    """A scrape: after any merge waiting or under way, with the files held shared."""
    with _opened(directory / TURNSTILE) as turnstile, _opened(directory / LOCK_FILE) as lock:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        fcntl.flock(lock, fcntl.LOCK_SH)
        fcntl.flock(turnstile, fcntl.LOCK_UN)
        yield


@contextmanager
def merging(directory: Path) -> Iterator[bool]:
    """A merge: the files held alone, waiting at most LOCK_WAIT_S. Yields whether they are."""
    deadline = time.monotonic() + LOCK_WAIT_S
    with _opened(directory / TURNSTILE) as turnstile, _opened(directory / LOCK_FILE) as lock:
        yield _take(turnstile, deadline) and _take(lock, deadline)


def _take(fd: int, deadline: float) -> bool:
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)


def merge_dead_worker(directory: Path, pid: int) -> None:
    """Fold the exited worker `pid`'s additive values into the merged files; remove its files."""
    with merging(directory) as held:
        if not held:
            log.warning("exited worker %s: metrics left unmerged, the directory stayed locked", pid)
            return
        multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
        for kind in MERGED_TYPES:
            dead = directory / f"{kind}_{pid}.db"
            if dead.exists():
                _merge(directory / f"{kind}_merged.db", dead)


def _merge(merged: Path, dead: Path) -> None:
    totals: dict[str, float] = {}
    for source in (merged, dead):
        if source.exists():
            values = MmapedDict.read_all_values_from_file(str(source))  # type: ignore[no-untyped-call]
            for key, value, _timestamp, _pos in values:
                totals[key] = totals.get(key, 0.0) + value
    # Written beside it under a name the collector does not read, then renamed over it.
    staging = merged.with_suffix(".db.tmp")
    staging.unlink(missing_ok=True)
    out = MmapedDict(str(staging))  # type: ignore[no-untyped-call]
    try:
        for key, value in totals.items():
            # 0.0: counters and histograms keep no timestamp
            out.write_value(key, value, 0.0)  # type: ignore[no-untyped-call]
    finally:
        out.close()  # type: ignore[no-untyped-call]
    os.replace(staging, merged)
    dead.unlink()
