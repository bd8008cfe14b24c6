"""The follower's decision over cgroup v1 and v2 fixture trees resized in place.

Each case: a tree at boot, the same tree after a resize (the files the kernel rewrites), the
count the arbiter maintains, and the step a user should see. The budget is read by the same
function the boot uses (config.plan_now), so a resize ends at the count a restart would give.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.server.config import plan_now
from app.server.follow import Follower, next_step, off_because
from app.server.settings import ServerSettings
from app.server.workers import WorkerPlan

MiB = 1024 * 1024
V2 = "0::/\n"
V1 = "4:memory:/\n3:cpu,cpuacct:/\n"
HOST_CPUS = 8


def v2_cpus(cpus: float) -> dict[str, str]:
    return {"cgroup.controllers": "cpu memory", "cpu.max": f"{int(cpus * 100000)} 100000"}


def v1_cpus(cpus: float) -> dict[str, str]:
    return {
        "cpu,cpuacct/cpu.cfs_quota_us": str(int(cpus * 100000)),
        "cpu,cpuacct/cpu.cfs_period_us": "100000",
    }


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")


@dataclass
class Case:
    id: str
    resized: dict[str, str]
    proc_self_cgroup: str
    wanted: int
    step: tuple[signal.Signals, int] | None  # the signal and the count after it
    env: dict[str, str] = field(default_factory=dict)


CASES = [
    Case("v2 1 -> 2 cpus: one more", v2_cpus(2), V2, 1, (signal.SIGTTIN, 2)),
    Case("v2 2 -> 1 cpu: one fewer", v2_cpus(1), V2, 2, (signal.SIGTTOU, 1)),
    Case("v2 1 -> 4 cpus: still one at a time", v2_cpus(4), V2, 1, (signal.SIGTTIN, 2)),
    Case("v2 unchanged: nothing", v2_cpus(2), V2, 2, None),
    Case("v2 1.5 cpus rounds half up as at boot", v2_cpus(1.5), V2, 1, (signal.SIGTTIN, 2)),
    Case("v1 1 -> 2 cpus: one more", v1_cpus(2), V1, 1, (signal.SIGTTIN, 2)),
    Case("v1 2 -> 1 cpu: one fewer", v1_cpus(1), V1, 2, (signal.SIGTTOU, 1)),
    Case(
        "v1 quota removed (-1): the host count",
        {"cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
        V1,
        2,
        (signal.SIGTTIN, 3),
    ),
    Case("0.5 cpu never goes below one worker", v2_cpus(0.5), V2, 1, None),
    Case(
        "MAX_WORKERS holds on a bigger budget",
        v2_cpus(4),
        V2,
        2,
        None,
        env={"MAX_WORKERS": "2"},
    ),
    Case(
        "MIN_WORKERS holds on a smaller budget",
        v2_cpus(1),
        V2,
        2,
        None,
        env={"MIN_WORKERS": "2"},
    ),
    Case(
        "v2 memory limit lowered caps it the same way",
        {**v2_cpus(4), "memory.max": str(256 * MiB)},
        V2,
        4,
        (signal.SIGTTOU, 3),
    ),
    Case(
        "v1 memory limit lowered caps it the same way",
        {**v1_cpus(4), "memory/memory.limit_in_bytes": str(128 * MiB)},
        V1,
        2,
        (signal.SIGTTOU, 1),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_resized_tree_gives_one_step_toward_the_boot_count(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    settings = ServerSettings()
    write(tmp_path, case.resized)
    plan = plan_now(settings, tmp_path, case.proc_self_cgroup, HOST_CPUS, HOST_CPUS)
    step = next_step(case.wanted, case.wanted, plan)
    assert (None if step is None else (step.signal, step.after)) == case.step
    if step is not None:
        assert step.before == case.wanted
        assert step.reason == "; ".join(plan.steps)


def plan(workers: int) -> WorkerPlan:
    return WorkerPlan(workers=workers, source="cgroup v2", cpus=workers, steps=["why"])


@pytest.mark.parametrize(
    ("wanted", "running"),
    [(2, 1), (1, 2), (3, 0), (0, 0)],
    ids=[
        "a worker booting",
        "a worker retiring",
        "a reload or recycle under way",
        "workers stopped on purpose (WINCH)",
    ],
)
def test_no_step_while_the_arbiter_is_settling(wanted: int, running: int) -> None:
    assert next_step(wanted, running, plan(4)) is None


def test_off_with_web_concurrency_or_a_zero_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    assert off_because(ServerSettings()) is None
    monkeypatch.setenv("WORKERS_FOLLOW_INTERVAL", "0")
    assert off_because(ServerSettings()) == "WORKERS_FOLLOW_INTERVAL=0"
    monkeypatch.setenv("WORKERS_FOLLOW_INTERVAL", "5")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert off_because(ServerSettings()) == "WEB_CONCURRENCY=3 fixes the count"


@pytest.mark.parametrize("value", ["0.1", "-1", "soon"])
def test_an_interval_that_is_not_off_or_humane_is_refused(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKERS_FOLLOW_INTERVAL", value)
    with pytest.raises(ValidationError, match="WORKERS_FOLLOW_INTERVAL"):
        ServerSettings()


def test_the_log_line_says_whose_change_it_was() -> None:
    follower = Follower(lambda settings: plan(2))
    assert follower.changed(1, None) is None  # the boot setting the count
    assert follower.changed(2, 2) is None  # a reload that kept it
    line = follower.changed(1, 2)
    assert line is not None
    assert line.startswith("workers 2 -> 1, not by the follower")
