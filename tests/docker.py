"""Docker as the tests call it: output captured, a failure raised with the command and both
streams. The benchmark harness (bench/, in the template only) imports it from here, so a copy
of the template, which has no bench/, runs the same tests."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class DockerError(RuntimeError):
    pass


def docker(
    *args: str,
    timeout: float = 300,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["docker", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise DockerError(
            f"docker {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result


def base_image(dockerfile: Path = ROOT / "Dockerfile") -> str:
    """The image the first FROM line names (the app image's base)."""
    for line in dockerfile.read_text().splitlines():
        if line.startswith("FROM "):
            return line.split()[1]
    raise ValueError(f"{dockerfile}: no FROM line")
