"""The running master follows its CPU budget: real gunicorn, real signals, a real cgroup v1."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Gunicorn, KeepAliveClient, can_make_v1_cgroups, v1_cpu_group
from tests.integration.test_gunicorn import wait_for

# The one variable these tests are about, short so a test waits seconds, not the default's 5.
FOLLOW = {"WORKERS_FOLLOW_INTERVAL": "0.5"}
PINNED = ["taskset", "-c", "0"]  # one CPU of affinity: the computed count is 1


def messages(server: Gunicorn) -> list[str]:
    return [str(record.get("message", "")) for record in server.log_records()]


@pytest.fixture
def v1_group() -> Iterator[Path]:
    if not can_make_v1_cgroups():
        pytest.skip("needs root and a cgroup v1 cpu hierarchy")
    with v1_cpu_group(f"template-follow-{os.getpid()}") as group:
        yield group


def test_workers_follow_a_cpu_quota_changed_while_running(
    gunicorn: type[Gunicorn], tmp_path: Path, v1_group: Path
) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs of affinity")
    quota = v1_group / "cpu.cfs_quota_us"
    quota.write_text("100000")
    join = ["sh", "-c", f'echo $$ > {v1_group}/cgroup.procs && exec "$@"', "sh"]
    server = gunicorn(tmp_path, FOLLOW, prefix=join).start()
    server.wait_ready(workers=1)
    first = server.workers()

    quota.write_text("200000")  # what `docker update --cpus 2` writes
    wait_for(lambda: len(server.workers()) == 2, 10, "a second worker after the quota doubled")
    assert first < server.workers(), "the first worker was replaced, not joined"
    quota.write_text("100000")
    wait_for(lambda: len(server.workers()) == 1, 30, "one worker after the quota halved")

    lines = [line for line in messages(server) if "to follow the budget" in line]
    assert len(lines) == 2, lines
    # 2 cpus of quota on a 2-CPU host: the host count is as tight, and named as the source.
    assert lines[0].startswith("workers 1 -> 2 (SIGTTIN) to follow the budget: 2 cpus ("), lines
    assert lines[1] == (
        "workers 2 -> 1 (SIGTTOU) to follow the budget: 1 cpus (cgroup v1) x 1 = 1 -> 1"
    )
    # TTOU retires the oldest worker gracefully: the first one ran its lifespan shutdown.
    (retired,) = first
    assert any(
        record.get("pid") == retired and record.get("message") == "app cleanup complete"
        for record in server.log_records()
    ), server.log()


def test_a_count_changed_from_outside_is_steered_back_and_logged(
    gunicorn: type[Gunicorn], tmp_path: Path
) -> None:
    server = gunicorn(tmp_path, FOLLOW, prefix=PINNED).start()
    server.wait_ready(workers=1)
    os.kill(server.pid, signal.SIGTTIN)
    wait_for(lambda: len(server.workers()) == 2, 10, "the operator's extra worker")
    wait_for(lambda: len(server.workers()) == 1, 30, "back to the computed count")
    found = messages(server)
    assert any(line.startswith("workers 1 -> 2, not by the follower") for line in found), found
    assert "workers 2 -> 1 (SIGTTOU) to follow the budget: 1 cpus (affinity) x 1 = 1 -> 1" in found


@pytest.mark.parametrize(
    ("env", "why"),
    [
        ({"WEB_CONCURRENCY": "1", **FOLLOW}, "WEB_CONCURRENCY=1 fixes the count"),
        ({"WORKERS_FOLLOW_INTERVAL": "0"}, "WORKERS_FOLLOW_INTERVAL=0"),
    ],
)
def test_off_the_count_stays_where_it_was_put(
    gunicorn: type[Gunicorn], tmp_path: Path, env: dict[str, str], why: str
) -> None:
    server = gunicorn(tmp_path, env, prefix=PINNED).start()
    server.wait_ready(workers=1)
    assert f"workers do not follow the CPU quota: {why}" in messages(server)
    os.kill(server.pid, signal.SIGTTIN)
    wait_for(lambda: len(server.workers()) == 2, 10, "the operator's extra worker")
    time.sleep(2)  # four ticks of an interval of 0.5 s, had it followed
    assert len(server.workers()) == 2


def test_sighup_reload_keeps_the_follower_and_the_count(
    gunicorn: type[Gunicorn], tmp_path: Path
) -> None:
    server = gunicorn(tmp_path, FOLLOW, prefix=PINNED).start()
    server.wait_ready(workers=1)
    before = server.workers()
    os.kill(server.pid, signal.SIGHUP)
    wait_for(lambda: server.workers() not in (before, set()), 20, "a new worker after SIGHUP")
    wait_for(lambda: len(server.workers()) == 1, 20, "the old worker gone")
    time.sleep(2)  # ticks after the reload: nothing to follow, nothing changes
    assert len(server.workers()) == 1
    found = messages(server)
    assert (
        found.count(
            "workers follow the CPU quota and memory limit, re-read every 0.5 s "
            "(WORKERS_FOLLOW_INTERVAL)"
        )
        == 2
    ), found
    assert not [line for line in found if line.startswith("workers 1 -> ")], found


def test_max_requests_recycling_and_sigterm_are_not_mistaken_for_a_resize(
    gunicorn: type[Gunicorn], tmp_path: Path
) -> None:
    # Two workers recycled every 5 requests while the follower ticks: each recycle leaves the
    # arbiter short of a worker for a moment, which must not look like a step to take.
    server = gunicorn(
        tmp_path, {**FOLLOW, "MAX_REQUESTS": "5", "MIN_WORKERS": "2"}, prefix=PINNED
    ).start()
    server.wait_ready(workers=2)
    client = KeepAliveClient(server.url)
    deadline = time.monotonic() + 6  # twelve ticks
    sent = 0
    while time.monotonic() < deadline and sent < 2000:
        assert client.get("/healthz")[0] == 200
        sent += 1
    client.close()
    assert server.log().count("Booting worker") > 4, "no recycling happened"
    wait_for(lambda: len(server.workers()) == 2, 10, "two workers after the recycles")
    steps = [line for line in messages(server) if line.startswith("workers ") and " -> " in line]
    assert steps == [], steps

    os.kill(server.pid, signal.SIGTERM)
    assert server.process is not None
    assert server.process.wait(30) == 0
    assert "Shutting down: Master" in server.log()
