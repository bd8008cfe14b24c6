"""How many gunicorn workers: the one function that decides it, pure and table-tested.

Rounding rule: the CPU budget times WORKERS_PER_CORE is rounded half up (0.5 -> 1, 1.2 -> 1,
1.5 -> 2, 2.5 -> 3). One Python worker uses at most one core, so rounding down from x.5 would
leave half a CPU of quota idle; rounding up only risks brief CFS throttling, which costs less.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from app.server.cgroups import CpuBudget, MemoryLimit
from app.server.settings import ServerSettings

_MIB = 1024 * 1024


@dataclass(frozen=True)
class WorkerPlan:
    """The worker count and how it was derived, for the startup line."""

    workers: int
    source: str  # "env" | "cgroup v2" | "cgroup v1" | "affinity" | "host"
    cpus: float
    steps: list[str] = field(default_factory=list)


def round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def workers_for(settings: ServerSettings, cpus: CpuBudget, memory: MemoryLimit) -> WorkerPlan:
    if settings.WEB_CONCURRENCY is not None:
        return WorkerPlan(
            workers=settings.WEB_CONCURRENCY,
            source="env",
            cpus=cpus.cpus,
            steps=[f"WEB_CONCURRENCY={settings.WEB_CONCURRENCY}"],
        )

    raw = cpus.cpus * settings.WORKERS_PER_CORE
    workers = max(1, round_half_up(raw))
    steps = [
        f"{cpus.cpus:g} cpus ({cpus.source}) x {settings.WORKERS_PER_CORE:g} = {raw:g} -> {workers}"
    ]

    if settings.MAX_WORKERS is not None and workers > settings.MAX_WORKERS:
        workers = settings.MAX_WORKERS
        steps.append(f"capped by MAX_WORKERS={settings.MAX_WORKERS}")
    if workers < settings.MIN_WORKERS:
        workers = settings.MIN_WORKERS
        steps.append(f"raised to MIN_WORKERS={settings.MIN_WORKERS}")

    # Memory wins over MIN_WORKERS: an OOM-killed container serves nobody.
    if memory.bytes is not None:
        fit = max(1, memory.bytes // (settings.MEMORY_PER_WORKER_MB * _MIB))
        if workers > fit:
            workers = fit
            steps.append(
                f"capped to {fit} by memory limit {memory.bytes // _MIB} MiB ({memory.source}) "
                f"/ MEMORY_PER_WORKER_MB={settings.MEMORY_PER_WORKER_MB}"
            )

    return WorkerPlan(workers=workers, source=cpus.source, cpus=cpus.cpus, steps=steps)
