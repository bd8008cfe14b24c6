"""From environment to gunicorn settings: validation, the worker plan, the startup record.

`gunicorn.conf.py` calls `build()`; `python -m app.server.config` prints the same effective
configuration as JSON without starting anything (`docker run IMAGE print-config`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from app.logs import logging_config
from app.server import cgroups
from app.server.settings import ServerSettings
from app.server.workers import WorkerPlan, workers_for
from app.settings import AppSettings

WORKER_CLASS = "app.server.worker.Worker"
APP_FACTORY = "app.main:create_app()"


class ConfigError(Exception):
    """A bad environment variable, described in one line a person can act on."""


@dataclass(frozen=True)
class ServerConfig:
    settings: ServerSettings
    plan: WorkerPlan
    gunicorn: dict[str, Any]  # gunicorn setting name -> value

    def startup_record(self) -> dict[str, Any]:
        """The effective config and how the worker count was derived, for one log line."""
        shown = {k: v for k, v in self.gunicorn.items() if k != "logconfig_dict"}
        return {
            "gunicorn": {k: str(v) if isinstance(v, Path) else v for k, v in shown.items()},
            "workers_from": {
                "source": self.plan.source,
                "cpus": self.plan.cpus,
                "steps": self.plan.steps,
            },
        }


def describe(error: ValidationError) -> str:
    """One line per ValidationError: the variable, the value given, what is allowed."""
    parts = []
    for issue in error.errors():
        name = ".".join(str(part) for part in issue["loc"])
        message = issue["msg"]
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        if name:
            parts.append(f"{name}={issue['input']!r}: {message}")
        else:
            parts.append(message)
    return "invalid configuration: " + "; ".join(parts)


def load_settings(env: Mapping[str, str]) -> tuple[ServerSettings, AppSettings]:
    try:
        # The app's settings are validated here too: a bad one must stop the master before
        # any worker boots, not crash-loop every worker.
        server = ServerSettings.model_validate(_env_fields(ServerSettings, env))
        app = AppSettings.model_validate(_env_fields(AppSettings, env))
    except ValidationError as error:
        raise ConfigError(describe(error)) from None
    return server, app


def _env_fields(model: type[BaseSettings], env: Mapping[str, str]) -> dict[str, str]:
    # model_validate on the variables we pick, rather than the model reading os.environ itself,
    # keeps this pure: tests pass their own mapping. An empty variable counts as unset.
    return {name: env[name] for name in model.model_fields if env.get(name, "") != ""}


def build(
    env: Mapping[str, str],
    cgroup_root: Path = cgroups.CGROUP_ROOT,
    proc_self_cgroup: str | None = None,
    affinity: int | None = None,
    host_cpus: int | None = None,
) -> ServerConfig:
    settings, _ = load_settings(env)
    membership = cgroups.read_proc_self_cgroup() if proc_self_cgroup is None else proc_self_cgroup
    cpus = cgroups.cpu_budget(
        cgroup_root,
        membership,
        affinity=cgroups.affinity_cpus() if affinity is None else affinity,
        host_cpus=(os.cpu_count() or 1) if host_cpus is None else host_cpus,
    )
    memory = cgroups.memory_limit(cgroup_root, membership)
    plan = workers_for(settings, cpus, memory)
    return ServerConfig(settings=settings, plan=plan, gunicorn=gunicorn_settings(settings, plan))


def gunicorn_settings(settings: ServerSettings, plan: WorkerPlan) -> dict[str, Any]:
    """gunicorn's own setting names, as gunicorn.conf.py exports them."""
    control: dict[str, Any] = (
        {"control_socket": str(settings.CONTROL_SOCKET), "control_socket_disable": False}
        if settings.CONTROL_SOCKET
        else {"control_socket_disable": True}
    )
    return {
        "wsgi_app": APP_FACTORY,
        "worker_class": WORKER_CLASS,
        "workers": plan.workers,
        "bind": settings.binds,
        "backlog": settings.BACKLOG,
        "timeout": settings.TIMEOUT,
        "graceful_timeout": settings.GRACEFUL_TIMEOUT,
        "keepalive": settings.KEEP_ALIVE,
        "max_requests": settings.MAX_REQUESTS,
        "max_requests_jitter": settings.MAX_REQUESTS_JITTER,
        "preload_app": settings.PRELOAD,
        "loglevel": settings.LOG_LEVEL,
        "forwarded_allow_ips": settings.FORWARDED_ALLOW_IPS,
        "worker_tmp_dir": str(settings.WORKER_TMP_DIR) if settings.WORKER_TMP_DIR else None,
        # The access line is the app's (app.middleware); gunicorn's stays off.
        "accesslog": None,
        "errorlog": "-",
        "logconfig_dict": logging_config(
            settings.LOG_LEVEL, settings.LOG_FORMAT, access_log=settings.ACCESS_LOG
        ),
        **control,
    }


def main(argv: list[str] | None = None) -> int:
    """Print the effective configuration as JSON; exit 2 with one line on a bad variable."""
    try:
        config = build(os.environ)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    print(json.dumps(config.startup_record(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
