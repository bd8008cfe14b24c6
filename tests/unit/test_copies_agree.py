"""Values that must be written in several files by nature (a Dockerfile ENV and a compose default,
a pip pin in a Dockerfile and in a shell script): each test reads every copy and asserts they agree,
so changing one copy without the others fails here, not in a deployment that runs the old value."""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Mapping
from pathlib import Path

import yaml
from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parents[2]
NGINX_DOCKERFILE = ROOT / "deploy/nginx/Dockerfile"
K8S_NGINX_ENV = "deploy/k8s/base/nginx-config.env"
RATE_LIMIT_VARIABLES = ("RATE_LIMIT", "RATE_LIMIT_BURST")


def dockerfile_env(path: Path) -> dict[str, str]:
    """Every `ENV NAME=value ...` of a Dockerfile, its `\\` continuations joined."""
    joined = re.sub(r"\\\n", " ", path.read_text())
    env: dict[str, str] = {}
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["ENV"]:
            env.update(word.split("=", 1) for word in words[1:])  # type: ignore[misc]
    return env


def compose_defaults(service: str) -> dict[str, str]:
    """`NAME: ${NAME:-default}` lines of a compose service's environment: their defaults."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    environment: dict[str, str] = compose["services"][service]["environment"]
    defaults = {}
    for name, value in environment.items():
        match = re.fullmatch(r"\$\{(\w+):-([^}]*)\}", str(value))
        if match and match.group(1) == name:
            defaults[name] = match.group(2)
    return defaults


def test_rate_limit_defaults_agree_in_the_image_compose_env_example_and_kubernetes() -> None:
    image = dockerfile_env(NGINX_DOCKERFILE)
    copies: dict[str, Mapping[str, str | None]] = {
        "deploy/nginx/Dockerfile ENV": image,
        "docker-compose.yml nginx environment": compose_defaults("nginx"),
        ".env.example": dotenv_values(ROOT / ".env.example"),
        K8S_NGINX_ENV: dotenv_values(ROOT / K8S_NGINX_ENV),
    }
    for name in RATE_LIMIT_VARIABLES:
        assert name in image, f"the nginx image defaults {name}"
        written = {where: values.get(name) for where, values in copies.items()}
        assert set(written.values()) == {image[name]}, f"{name}: {written}"


# A pip pin of uv, or the UV_VERSION shell variable: the ways the repository installs uv.
UV_PIN = re.compile(r"\buv==(\S+?)[\"'\s]|\bUV_VERSION=(\S+)")
# Where uv is installed today; a copy elsewhere is found by the scan below and checked too.
KNOWN_UV_COPIES = {"scripts/test", "scripts/bench", "Dockerfile", "bench/Dockerfile.peers"}


def _project_files() -> list[str]:
    """The tracked files; in a directory that is not (yet) a git repository, such as a fresh
    copy of the template, every file outside the tools' own directories."""
    if (ROOT / ".git").exists():
        tracked = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30
        ).stdout.decode()
        return list(filter(None, tracked.split("\0")))
    skipped = {".git", ".venv", ".tools", ".reports", "__pycache__", ".mypy_cache", ".ruff_cache"}
    return [
        str(path.relative_to(ROOT))
        for path in ROOT.rglob("*")
        if path.is_file() and not skipped & set(path.relative_to(ROOT).parts)
    ]


def uv_versions() -> dict[str, set[str]]:
    """Every uv version pinned in a tracked file (uv.lock pins packages, not uv itself)."""
    found: dict[str, set[str]] = {}
    for name in _project_files():
        path = ROOT / name
        if name.endswith(".lock") or name.endswith(".lock.jinja") or not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        versions = {"".join(match) for match in UV_PIN.findall(text)}
        # `"uv==$UV_VERSION"` installs the variable's value, which is counted where it is set.
        versions.discard("$UV_VERSION")
        if versions:
            found[name] = versions
    return found


def test_uv_is_the_same_version_everywhere_it_is_installed() -> None:
    found = uv_versions()
    # A copy of the template has no benchmark harness, so not all of them.
    known = {name for name in KNOWN_UV_COPIES if (ROOT / name).exists()}
    assert set(found) >= known, f"a known copy was not read: {sorted(found)}"
    every = set().union(*found.values())
    assert len(every) == 1, f"uv versions disagree: {found}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", every.pop()), found
