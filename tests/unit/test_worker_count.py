"""The worker count, from cgroup fixture trees (v1 and v2) through workers_for.

Table-driven: each case is a cgroup layout, an affinity, a host CPU count, an environment,
and the worker count plus source a user should get.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app.server.cgroups import cpu_budget, memory_limit
from app.server.settings import ServerSettings
from app.server.workers import round_half_up, workers_for

MiB = 1024 * 1024
V1_UNLIMITED_MEMORY = "9223372036854771712"


@dataclass
class Case:
    id: str
    files: dict[str, str]
    proc_self_cgroup: str
    expected_workers: int
    expected_source: str
    env: dict[str, str] = field(default_factory=dict)
    affinity: int | None = 8
    host_cpus: int = 8


V2 = "0::/\n"
V2_NESTED = "0::/kubepods/pod1/ctr\n"
V1 = "4:memory:/\n3:cpu,cpuacct:/\n2:cpuset:/\n"
V1_DOCKER = "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n"  # path absent under the mount


def v2(**files: str) -> dict[str, str]:
    return {"cgroup.controllers": "cpu memory", **files}


CASES = [
    Case(
        "v2 no limit: host cpus",
        v2(**{"cpu.max": "max 100000", "memory.max": "max"}),
        V2,
        8,
        "host",
    ),
    Case("v2 2 cpus", v2(**{"cpu.max": "200000 100000"}), V2, 2, "cgroup v2"),
    Case("v2 0.5 cpu rounds up to 1", v2(**{"cpu.max": "50000 100000"}), V2, 1, "cgroup v2"),
    Case("v2 1.5 cpus rounds half up to 2", v2(**{"cpu.max": "150000 100000"}), V2, 2, "cgroup v2"),
    Case("v2 1.2 cpus rounds to 1", v2(**{"cpu.max": "120000 100000"}), V2, 1, "cgroup v2"),
    Case("v2 2.5 cpus rounds half up to 3", v2(**{"cpu.max": "250000 100000"}), V2, 3, "cgroup v2"),
    Case(
        "v2 tightest along the path wins (parent)",
        v2(
            **{
                "cpu.max": "max 100000",
                "kubepods/cpu.max": "300000 100000",
                "kubepods/pod1/cpu.max": "100000 100000",
                "kubepods/pod1/ctr/cpu.max": "max 100000",
            }
        ),
        V2_NESTED,
        1,
        "cgroup v2",
    ),
    Case(
        "v2 tightest along the path wins (leaf)",
        v2(
            **{
                "kubepods/cpu.max": "400000 100000",
                "kubepods/pod1/cpu.max": "max 100000",
                "kubepods/pod1/ctr/cpu.max": "300000 100000",
            }
        ),
        V2_NESTED,
        3,
        "cgroup v2",
    ),
    Case("v2 non-default period", v2(**{"cpu.max": "300000 200000"}), V2, 2, "cgroup v2"),
    Case(
        "v1 0.5 cpu",
        {"cpu,cpuacct/cpu.cfs_quota_us": "50000", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
        V1,
        1,
        "cgroup v1",
    ),
    Case(
        "v1 1.5 cpus",
        {"cpu,cpuacct/cpu.cfs_quota_us": "150000", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
        V1,
        2,
        "cgroup v1",
    ),
    Case(
        "v1 unlimited quota -1",
        {"cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
        V1,
        8,
        "host",
    ),
    Case(
        "v1 separate cpu mount (this machine's layout)",
        {
            "cpu/cpu.cfs_quota_us": "-1",
            "cpu/cpu.cfs_period_us": "100000",
            "cpu/job/cpu.cfs_quota_us": "300000",
            "cpu/job/cpu.cfs_period_us": "100000",
        },
        "1:cpu:/job\n",
        3,
        "cgroup v1",
    ),
    Case(
        "v1 in docker: /proc names a host path, the mount root holds the limit",
        {"cpu,cpuacct/cpu.cfs_quota_us": "200000", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
        V1_DOCKER,
        2,
        "cgroup v1",
    ),
    Case("no cgroup files at all: host", {}, "", 8, "host"),
    Case(
        "affinity smaller than quota",
        v2(**{"cpu.max": "400000 100000"}),
        V2,
        1,
        "affinity",
        affinity=1,
    ),
    Case(
        "quota smaller than affinity",
        v2(**{"cpu.max": "100000 100000"}),
        V2,
        1,
        "cgroup v2",
        affinity=4,
    ),
    Case("affinity smaller than host, no quota", v2(), V2, 3, "affinity", affinity=3),
    Case("host smaller than everything", v2(), V2, 2, "host", affinity=None, host_cpus=2),
    # Memory cap: 128 MiB per worker by default.
    Case(
        "v2 memory cap",
        v2(**{"cpu.max": "400000 100000", "memory.max": str(300 * MiB)}),
        V2,
        2,
        "cgroup v2",
    ),
    Case(
        "v2 memory below one budget still gets one worker",
        v2(**{"memory.max": str(64 * MiB)}),
        V2,
        1,
        "host",
    ),
    Case("v2 memory max is unlimited", v2(**{"memory.max": "max"}), V2, 8, "host"),
    Case("v1 memory cap", {"memory/memory.limit_in_bytes": str(256 * MiB)}, V1, 2, "host"),
    Case(
        "v1 huge memory limit means unlimited",
        {"memory/memory.limit_in_bytes": V1_UNLIMITED_MEMORY},
        V1,
        8,
        "host",
    ),
    Case(
        "memory cap wins over MIN_WORKERS",
        v2(**{"memory.max": str(256 * MiB)}),
        V2,
        2,
        "host",
        env={"MIN_WORKERS": "4"},
    ),
    Case(
        "MEMORY_PER_WORKER_MB changes the cap",
        v2(**{"memory.max": str(1024 * MiB)}),
        V2,
        4,
        "host",
        env={"MEMORY_PER_WORKER_MB": "256"},
    ),
    # Overrides and clamps.
    Case(
        "WEB_CONCURRENCY wins over quota",
        v2(**{"cpu.max": "50000 100000"}),
        V2,
        5,
        "env",
        env={"WEB_CONCURRENCY": "5"},
    ),
    Case(
        "WEB_CONCURRENCY wins over memory cap",
        v2(**{"memory.max": str(128 * MiB)}),
        V2,
        3,
        "env",
        env={"WEB_CONCURRENCY": "3"},
    ),
    Case(
        "WORKERS_PER_CORE 2",
        v2(**{"cpu.max": "150000 100000"}),
        V2,
        3,
        "cgroup v2",
        env={"WORKERS_PER_CORE": "2"},
    ),
    Case(
        "WORKERS_PER_CORE 0.5",
        v2(**{"cpu.max": "300000 100000"}),
        V2,
        2,
        "cgroup v2",
        env={"WORKERS_PER_CORE": "0.5"},
    ),
    Case("MAX_WORKERS caps", v2(), V2, 4, "host", env={"MAX_WORKERS": "4"}),
    Case(
        "MIN_WORKERS floors",
        v2(**{"cpu.max": "50000 100000"}),
        V2,
        2,
        "cgroup v2",
        env={"MIN_WORKERS": "2"},
    ),
    Case(
        "MIN applied after MAX when equal",
        v2(),
        V2,
        3,
        "host",
        env={"MIN_WORKERS": "3", "MAX_WORKERS": "3"},
    ),
]


def materialise(root: Path, files: dict[str, str]) -> Path:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content + "\n")
    return root


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_worker_count_follows_what_the_container_may_use(tmp_path: Path, case: Case) -> None:
    root = materialise(tmp_path, case.files)
    settings = ServerSettings.model_validate(case.env)
    cpus = cpu_budget(root, case.proc_self_cgroup, affinity=case.affinity, host_cpus=case.host_cpus)
    plan = workers_for(settings, cpus, memory_limit(root, case.proc_self_cgroup))
    assert (plan.workers, plan.source) == (case.expected_workers, case.expected_source)
    assert plan.steps, "the startup line must say how the count was derived"


def test_fractional_quota_is_reported_exactly(tmp_path: Path) -> None:
    root = materialise(tmp_path, v2(**{"cpu.max": "150000 100000"}))
    budget = cpu_budget(root, V2, affinity=8, host_cpus=8)
    assert budget.cpus == 1.5
    assert budget.detail["quota_us"] == 150000


def test_memory_limit_is_the_tightest_along_the_path(tmp_path: Path) -> None:
    root = materialise(
        tmp_path,
        v2(
            **{
                "memory.max": "max",
                "kubepods/memory.max": str(512 * MiB),
                "kubepods/pod1/ctr/memory.max": "max",
            }
        ),
    )
    assert memory_limit(root, V2_NESTED).bytes == 512 * MiB


@pytest.mark.parametrize(
    ("value", "expected"), [(0.0, 0), (0.49, 0), (0.5, 1), (1.2, 1), (1.5, 2), (2.5, 3), (3.0, 3)]
)
def test_rounding_is_half_up(value: float, expected: int) -> None:
    assert round_half_up(value) == expected


def test_a_malformed_cgroup_file_falls_back_instead_of_crashing(tmp_path: Path) -> None:
    root = materialise(tmp_path, v2(**{"cpu.max": "garbage here", "memory.max": "lots"}))
    assert cpu_budget(root, V2, affinity=None, host_cpus=4).source == "host"
    assert memory_limit(root, V2).bytes is None
