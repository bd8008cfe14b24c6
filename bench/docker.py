"""Docker, as the harness uses it: every container, network and volume it makes carries one label
(`bench.run=<run id>`), so `cleanup()` removes exactly this run's objects, even after a failure.

`docker()` itself is the tests' (tests/docker.py): one way to call Docker for both, and the
tests, which copies of the template carry, do not depend on bench/, which copies do not."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from tests.docker import ROOT, DockerError, docker

__all__ = ["LABEL", "ROOT", "DockerError", "Run", "docker", "wait_for"]

LABEL = "bench.run"


@dataclass
class Run:
    """One harness run's Docker objects, named `<run_id>-<name>`."""

    run_id: str
    compose_projects: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def name(self, suffix: str) -> str:
        return f"{self.run_id}-{suffix}"

    @property
    def label(self) -> str:
        return f"{LABEL}={self.run_id}"

    def network(self, suffix: str) -> str:
        name = self.name(suffix)
        docker("network", "create", "--label", self.label, name)
        return name

    def subnet(self, network: str) -> str:
        info = json.loads(docker("network", "inspect", network).stdout)[0]
        subnet: str = info["IPAM"]["Config"][0]["Subnet"]
        return subnet

    def volume(self, suffix: str, *options: str) -> str:
        name = self.name(suffix)
        docker("volume", "create", "--label", self.label, *options, name)
        return name

    def start(
        self,
        suffix: str,
        image: str,
        command: Sequence[str] = (),
        *,
        network: str,
        env: Mapping[str, str] | None = None,
        options: Sequence[str] = (),
    ) -> str:
        """`docker run -d`; the container's name is also its DNS name on `network`."""
        name = self.name(suffix)
        env_args = [arg for key, value in (env or {}).items() for arg in ("-e", f"{key}={value}")]
        docker(
            "run", "-d", "--name", name, "--label", self.label, "--network", network,
            # The same log driver and rotation as docker-compose.yml: logging costs the same.
            "--log-driver", "json-file", "--log-opt", "max-size=10m", "--log-opt", "max-file=5",
            *env_args, *options, image, *command,
        )  # fmt: skip
        return name

    def remove(self, *containers: str) -> None:
        if containers:
            docker("rm", "-f", "-v", *containers, check=False, timeout=120)

    def compose_project(self, suffix: str, env: dict[str, str]) -> str:
        project = self.name(suffix)
        self.compose_projects.append((project, env))
        return project

    def cleanup(self) -> None:
        """Everything this run made: compose projects, containers, networks, volumes."""
        for project, env in self.compose_projects:
            docker(
                "compose", "-p", project, "down", "-v", "--remove-orphans", "-t", "5",
                env=env, check=False, timeout=180,
            )  # fmt: skip
        containers = docker("ps", "-aq", "--filter", f"label={self.label}", check=False)
        if containers.stdout.split():
            docker("rm", "-f", "-v", *containers.stdout.split(), check=False, timeout=120)
        for kind in ("network", "volume"):
            ids = docker(kind, "ls", "-q", "--filter", f"label={self.label}", check=False)
            if ids.stdout.split():
                docker(kind, "rm", *ids.stdout.split(), check=False, timeout=60)


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll `predicate()` until true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
