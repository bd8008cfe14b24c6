"""What the figures were measured on: they mean nothing without it."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from bench.docker import ROOT, docker


def describe() -> dict[str, Any]:
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_kib = 0
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    version = docker("version", "-f", "{{.Server.Version}}", check=False).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "docker": version or "unknown",
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }


def source() -> dict[str, Any]:
    """The commit the images were built from, and what in their build context was not committed
    (the image is built from the working tree)."""
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        [
            "git",
            "status",
            "--porcelain",
            "--",
            "app",
            "gunicorn.conf.py",
            "Dockerfile",
            "pyproject.toml",
            "uv.lock",
            "deploy/nginx",
            "bench",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    return {"revision": revision or "unknown", "uncommitted": [line[3:] for line in dirty]}
