"""Workers follow the CPUs and memory the container gets now, not only those it had at boot.

Kubernetes (1.35, in-place pod resize) and `docker update --cpus` change a running container's
cgroup quota without a restart; a count computed once at boot then stays wrong until the next
one. The gunicorn master re-reads the budget every WORKERS_FOLLOW_INTERVAL seconds through the
same function the boot uses (config.plan_now -> workers.workers_for, so MIN/MAX_WORKERS and the
memory cap apply alike) and moves one worker toward it with gunicorn's own SIGTTIN/SIGTTOU:
TTOU retires the oldest worker gracefully (SIGTERM, GRACEFUL_TIMEOUT), TTIN boots one.

Why a SIGALRM timer and signals to itself: the arbiter's loop has no periodic hook, and a thread
in a process that forks is how fork deadlocks happen. The alarm handler runs in the master's main
thread between two bytecodes of its loop, so it only reads cgroup files and queues a signal; the
arbiter handles TTIN/TTOU in its loop, where its accounting (num_workers) changes and where the
nworkers_changed hook logs the step with its reason. Forked workers inherit no timer.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol

from app.server.config import plan_now
from app.server.settings import ServerSettings
from app.server.workers import WorkerPlan

# A step still unapplied after this many ticks was dropped (gunicorn ignores TTOU at 1 worker);
# forget it rather than wait forever.
_PENDING_TICKS = 3


@dataclass(frozen=True)
class Step:
    """One worker more or fewer, and why."""

    signal: signal.Signals  # SIGTTIN or SIGTTOU
    before: int
    after: int
    reason: str


def off_because(settings: ServerSettings) -> str | None:
    """Why the count must not follow the budget, or None when it follows."""
    if settings.WEB_CONCURRENCY is not None:
        return f"WEB_CONCURRENCY={settings.WEB_CONCURRENCY} fixes the count"
    if settings.WORKERS_FOLLOW_INTERVAL == 0:
        return "WORKERS_FOLLOW_INTERVAL=0"
    return None


def next_step(wanted: int, running: int, plan: WorkerPlan) -> Step | None:
    """One worker toward the plan's count, or None.

    `wanted` is the count the arbiter maintains (its num_workers, which TTIN/TTOU change),
    `running` the workers it has. While they differ the arbiter is still settling (booting a
    worker, retiring one, recycling at MAX_REQUESTS, reloading): no step until it is done, so
    steps are one at a time and never race gunicorn's own accounting.
    """
    if running != wanted or plan.workers == wanted:
        return None
    if wanted == 0:  # the workers were stopped on purpose (gunicorn's WINCH, when daemonized)
        return None
    reason = "; ".join(plan.steps)
    if plan.workers > wanted:
        return Step(signal.SIGTTIN, wanted, wanted + 1, reason)
    return Step(signal.SIGTTOU, wanted, wanted - 1, reason)


class Arbiter(Protocol):
    """What the follower reads of gunicorn's arbiter."""

    num_workers: int
    WORKERS: dict[int, Any]
    LISTENERS: list[Any]


class Follower:
    """The timer in the master: ticks, queues a step, and words the log line when it lands."""

    def __init__(self, plan_now: Callable[[ServerSettings], WorkerPlan]) -> None:
        self._plan_now = plan_now
        self._arbiter: Arbiter | None = None
        self._settings: ServerSettings | None = None
        self._master_pid = 0
        self._pending: Step | None = None
        self._pending_ticks = 0

    def start(self, arbiter: Arbiter, settings: ServerSettings) -> str:
        """Arm (or disarm) the timer for these settings; the line to log. Again on reload."""
        self._arbiter, self._settings = arbiter, settings
        self._master_pid = os.getpid()
        self._pending = None
        off = off_because(settings)
        interval = 0.0 if off else settings.WORKERS_FOLLOW_INTERVAL
        signal.signal(signal.SIGALRM, self._on_alarm)
        signal.setitimer(signal.ITIMER_REAL, interval, interval)
        if off:
            return f"workers do not follow the CPU quota: {off}"
        return (
            f"workers follow the CPU quota and memory limit, re-read every {interval:g} s "
            "(WORKERS_FOLLOW_INTERVAL)"
        )

    def stop(self) -> None:
        """Disarm the timer: the master is exiting. Python's finalisation puts SIGALRM back to
        its default action (terminate), so an alarm after that killed a master that had shut
        down cleanly (exit status -14 instead of 0: 2 of 11 runs of the recycling test, with
        a 0.5 s interval)."""
        signal.setitimer(signal.ITIMER_REAL, 0)
        self._arbiter = None

    def tick(self) -> Step | None:
        """The step queued now, if any. Called by the alarm; no logging here (see the module)."""
        arbiter, settings = self._arbiter, self._settings
        # A forked worker inherits the handler (not the timer); a stopping master has closed
        # its listeners and must not boot anyone.
        if arbiter is None or settings is None or os.getpid() != self._master_pid:
            return None
        if not arbiter.LISTENERS:
            return None
        if self._pending is not None:
            self._pending_ticks += 1
            if self._pending_ticks < _PENDING_TICKS:
                return None
            self._pending = None
        step = next_step(arbiter.num_workers, len(arbiter.WORKERS), self._plan_now(settings))
        if step is not None:
            self._pending, self._pending_ticks = step, 0
            os.kill(self._master_pid, step.signal)
        return step

    def changed(self, new: int, old: int | None) -> str | None:
        """The log line for a change of the arbiter's count (its nworkers_changed hook)."""
        step, self._pending = self._pending, None
        if old is None or new == old:
            return None
        if step is not None and (step.before, step.after) == (old, new):
            how = f"{step.signal.name}) to follow the budget: {step.reason}"
            return f"workers {old} -> {new} ({how}"
        return (
            f"workers {old} -> {new}, not by the follower (a reload, or TTIN/TTOU from outside); "
            "it steers back to the computed count unless WORKERS_FOLLOW_INTERVAL=0"
        )

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        # An error here would surface inside whatever the master loop was doing: a budget that
        # cannot be read this time is read again at the next tick.
        with contextlib.suppress(Exception):
            self.tick()


# One per process, in the module (imported once): a SIGHUP re-runs gunicorn.conf.py, and the
# timer, its handler and a pending step must stay the same object across that.
FOLLOWER = Follower(plan_now)
