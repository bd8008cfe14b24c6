"""What the container may really use: CPUs and memory from cgroups (v1 and v2) and CPU affinity.

`os.cpu_count()` reports the host. A container limited with `--cpus=0.5`, a Kubernetes CPU limit
or a cpuset sees every host core there, so a worker count derived from it oversubscribes the quota
and the kernel throttles the whole container. Everything here is pure over an injectable cgroup
root and /proc/self/cgroup text, so tests run the same code against fixture trees.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")

# Kernel "no limit" markers: v1 memory.limit_in_bytes reports a page-aligned huge number.
_V1_MEMORY_UNLIMITED_ABOVE = 1 << 60


@dataclass(frozen=True)
class CpuBudget:
    """How many CPUs this process may use, and which constraint decided it."""

    cpus: float
    source: str  # "cgroup v2" | "cgroup v1" | "affinity" | "host"
    detail: dict[str, float | int | str] = field(default_factory=dict)


@dataclass(frozen=True)
class MemoryLimit:
    bytes: int | None  # None: no limit found
    source: str  # "cgroup v2" | "cgroup v1" | "none"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _membership(proc_self_cgroup: str) -> tuple[str | None, dict[str, str]]:
    """Parse /proc/self/cgroup into (v2 path, {v1 controller: path})."""
    v2_path: str | None = None
    v1_paths: dict[str, str] = {}
    for line in proc_self_cgroup.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy_id, controllers, path = parts
        if hierarchy_id == "0" and controllers == "":
            v2_path = path
        else:
            for controller in controllers.split(","):
                v1_paths[controller] = path
    return v2_path, v1_paths


def _levels(mount: Path, cgroup_path: str) -> list[Path]:
    """The cgroup directories from the process's own up to the mount root, deepest first.

    Inside a container the mount root usually *is* the container's cgroup while
    /proc/self/cgroup names a host path (`/docker/<id>`) that does not exist under the mount;
    levels that do not exist are skipped, so the mount root is always consulted.
    """
    relative = PurePosixPath(cgroup_path or "/").relative_to("/")
    candidates = [mount / relative, *[mount / parent for parent in relative.parents]]
    seen: list[Path] = []
    for candidate in candidates:
        if candidate.is_dir() and candidate not in seen:
            seen.append(candidate)
    return seen


def _is_v2(cgroup_root: Path) -> bool:
    return (cgroup_root / "cgroup.controllers").is_file()


def _v1_mount(cgroup_root: Path, controller: str) -> Path | None:
    for name in (controller, f"{controller},cpuacct", f"cpuacct,{controller}"):
        mount = cgroup_root / name
        if mount.is_dir():
            return mount
    return None


_Quota = tuple[float, dict[str, float | int | str]]


def _v2_quota_fields(level: Path) -> tuple[str, str] | None:
    fields = (_read(level / "cpu.max") or "").split()  # "max 100000" or "150000 100000"
    return (fields[0], fields[1]) if len(fields) == 2 else None


def _v1_quota_fields(level: Path) -> tuple[str, str] | None:
    quota, period = _read(level / "cpu.cfs_quota_us"), _read(level / "cpu.cfs_period_us")
    return (quota, period) if quota and period else None  # quota -1: unlimited


def _tightest_quota(
    levels: list[Path], fields_at: Callable[[Path], tuple[str, str] | None]
) -> _Quota | None:
    tightest: _Quota | None = None
    for level in levels:
        fields = fields_at(level)
        if fields is None:
            continue
        try:
            quota, period = int(fields[0]), int(fields[1])
        except ValueError:  # "max", or a file we do not understand: no limit from it
            continue
        if quota <= 0 or period <= 0:
            continue
        if tightest is None or quota / period < tightest[0]:
            detail: dict[str, float | int | str] = {
                "quota_us": quota,
                "period_us": period,
                "cgroup": str(level),
            }
            tightest = (quota / period, detail)
    return tightest


def cpu_budget(
    cgroup_root: Path,
    proc_self_cgroup: str,
    affinity: int | None,
    host_cpus: int,
) -> CpuBudget:
    """The CPUs this process may use: the tightest of the cgroup quota, affinity and host count.

    A quota may be fractional (`--cpus=1.5` is 1.5); affinity and host counts are whole CPUs.
    """
    v2_path, v1_paths = _membership(proc_self_cgroup)
    quota: _Quota | None = None
    quota_source = ""
    if _is_v2(cgroup_root):
        quota = _tightest_quota(_levels(cgroup_root, v2_path or "/"), _v2_quota_fields)
        quota_source = "cgroup v2"
    else:
        mount = _v1_mount(cgroup_root, "cpu")
        if mount is not None:
            quota = _tightest_quota(_levels(mount, v1_paths.get("cpu", "/")), _v1_quota_fields)
            quota_source = "cgroup v1"

    budget = CpuBudget(cpus=float(host_cpus), source="host", detail={"host_cpus": host_cpus})
    if affinity is not None and affinity < budget.cpus:
        budget = CpuBudget(cpus=float(affinity), source="affinity", detail={"affinity": affinity})
    if quota is not None and quota[0] < budget.cpus:
        budget = CpuBudget(cpus=quota[0], source=quota_source, detail=quota[1])
    return budget


def memory_limit(cgroup_root: Path, proc_self_cgroup: str) -> MemoryLimit:
    """The tightest memory limit along the cgroup path, or None when unlimited."""
    v2_path, v1_paths = _membership(proc_self_cgroup)
    limits: list[int] = []
    if _is_v2(cgroup_root):
        source = "cgroup v2"
        for level in _levels(cgroup_root, v2_path or "/"):
            text = _read(level / "memory.max")
            if text and text != "max" and text.isdigit():
                limits.append(int(text))
    else:
        source = "cgroup v1"
        mount = _v1_mount(cgroup_root, "memory")
        if mount is not None:
            for level in _levels(mount, v1_paths.get("memory", "/")):
                text = _read(level / "memory.limit_in_bytes")
                if text and text.isdigit() and int(text) < _V1_MEMORY_UNLIMITED_ABOVE:
                    limits.append(int(text))
    if not limits:
        return MemoryLimit(bytes=None, source="none")
    return MemoryLimit(bytes=min(limits), source=source)


def affinity_cpus() -> int | None:
    """CPUs in this process's affinity mask (cpuset, taskset), where the platform has it."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return None


def read_proc_self_cgroup(path: Path = PROC_SELF_CGROUP) -> str:
    return _read(path) or ""
