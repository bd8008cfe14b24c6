"""From environment to the values gunicorn.conf.py hands gunicorn: the settings, the worker plan.

The environment is read by pydantic-settings itself (`ServerSettings()`, `AppSettings()`), the
very call a worker makes when it builds the app (`create_app`), so the master refuses exactly what
a worker would. Which gunicorn setting each value feeds is written once, in gunicorn.conf.py;
`python -m app.server.config` runs that file and prints what it set as JSON, without starting
anything (`docker run IMAGE print-config`), the same record gunicorn logs at start.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError

from app.server import cgroups, hooks
from app.server.settings import ServerSettings
from app.server.workers import WorkerPlan, workers_for
from app.settings import AppSettings

CONFIG_FILE = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"
CONFIG_ERROR_EXIT = 2


class ConfigError(Exception):
    """A bad environment variable, described in one line a person can act on."""


@dataclass(frozen=True)
class ServerConfig:
    settings: ServerSettings
    plan: WorkerPlan


def describe(*errors: ValidationError) -> str:
    """One line for every issue: the variable, the value given, what is allowed."""
    parts = []
    for issue in (issue for error in errors for issue in error.errors()):
        name = ".".join(str(part) for part in issue["loc"])
        message = issue["msg"]
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        if name:
            parts.append(f"{name}={issue['input']!r}: {message}")
        else:
            parts.append(message)
    return "invalid configuration: " + "; ".join(parts)


def load_settings() -> tuple[ServerSettings, AppSettings]:
    """Both models from this process's environment; every bad variable of both, in one line.

    The app's settings are validated here too: a bad one must stop the master before any worker
    boots, not crash-loop every worker.
    """
    errors: list[ValidationError] = []
    try:
        server = ServerSettings()
    except ValidationError as error:
        errors.append(error)
    try:
        app = AppSettings()
    except ValidationError as error:
        errors.append(error)
    if errors:
        raise ConfigError(describe(*errors))
    return server, app


def build(
    cgroup_root: Path = cgroups.CGROUP_ROOT,
    proc_self_cgroup: str | None = None,
    affinity: int | None = None,
    host_cpus: int | None = None,
) -> ServerConfig:
    """The settings and the worker count for the CPUs and memory this process may use."""
    settings, _ = load_settings()
    return ServerConfig(
        settings=settings,
        plan=plan_now(settings, cgroup_root, proc_self_cgroup, affinity, host_cpus),
    )


def plan_now(
    settings: ServerSettings,
    cgroup_root: Path = cgroups.CGROUP_ROOT,
    proc_self_cgroup: str | None = None,
    affinity: int | None = None,
    host_cpus: int | None = None,
) -> WorkerPlan:
    """The worker count for the CPUs and memory this process may use right now.

    The boot (build) and the follower (app/server/follow.py) both call this, so a resized
    container gets exactly the count a fresh start with the same limits would.
    """
    membership = cgroups.read_proc_self_cgroup() if proc_self_cgroup is None else proc_self_cgroup
    cpus = cgroups.cpu_budget(
        cgroup_root,
        membership,
        affinity=cgroups.affinity_cpus() if affinity is None else affinity,
        host_cpus=(os.cpu_count() or 1) if host_cpus is None else host_cpus,
    )
    memory = cgroups.memory_limit(cgroup_root, membership)
    return workers_for(settings, cpus, memory)


def build_or_exit() -> ServerConfig:
    """`build()`, or one readable line on stderr and exit 2 before any worker exists."""
    try:
        return build()
    except ConfigError as error:
        exit_with(error)


def exit_with(error: ConfigError) -> NoReturn:
    print(error, file=sys.stderr, flush=True)
    sys.exit(CONFIG_ERROR_EXIT)


def gunicorn_settings(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """What a config file's namespace sets: its names that are gunicorn settings, hooks aside."""
    # Not imported at the top: gunicorn.config parses WEB_CONCURRENCY with int() on import, which
    # must not happen before the settings have refused a bad one in their own words.
    from gunicorn.config import Config  # noqa: PLC0415

    known = Config().settings
    return {
        name: value for name, value in namespace.items() if name in known and not callable(value)
    }


def startup_record(namespace: Mapping[str, Any], plan: WorkerPlan) -> dict[str, Any]:
    """The settings gunicorn.conf.py set and how the worker count was derived, for one log line."""
    shown = {k: v for k, v in gunicorn_settings(namespace).items() if k != "logconfig_dict"}
    return {
        "gunicorn": shown,
        "workers_from": {"source": plan.source, "cpus": plan.cpus, "steps": plan.steps},
    }


def main(argv: list[str] | None = None) -> int:
    """Print what gunicorn.conf.py sets, as JSON; exit 2 with one line on a bad variable."""
    # As gunicorn does: run the file. A bad variable ends it here (one line, exit 2).
    namespace = runpy.run_path(str(CONFIG_FILE))
    # It made (and exported) the metrics directory a server would use; none will.
    hooks.remove_metrics_dir(Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
    # The same environment and limits as the file's run: the same plan.
    print(json.dumps(startup_record(namespace, build().plan), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
