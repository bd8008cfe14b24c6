"""Copies made with the real copier from a throwaway git snapshot of this repository.

The snapshot is a `git clone` of this repository plus one commit with the working tree as it is
(tracked and new files, not ignored ones), so the tests see uncommitted work and never touch the
repository itself: no tags, no commits, no index changes here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts import template_twins

ROOT = template_twins.ROOT

COPIER = Path(sys.executable).with_name("copier")

# Long name, digits, hyphens, non-ASCII; a registry with a port and a nested path.
UNUSUAL_ANSWERS: Mapping[str, str] = {
    "project_name": "Billing API 2 (EU West): invoices, refunds & credit notes for Zoë's team",
    "project_slug": "billing-api-2-eu-west",
    "description": "Bills 2 regions; settles refunds in < 5 s (EU-West-1, eu-west-2).",
    "image_repository": "registry.example.com:5000/payments/eu/billing-api-2-eu-west",
    "author": "Zoë Ångström-Nakamura (payments-2)",
}

GIT_ENV = {
    "GIT_AUTHOR_NAME": "template tests",
    "GIT_AUTHOR_EMAIL": "template-tests@example.invalid",
    "GIT_COMMITTER_NAME": "template tests",
    "GIT_COMMITTER_EMAIL": "template-tests@example.invalid",
    # The user's git config (signing, hooks, default branch) stays out of these throwaway repos.
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def run(
    *args: str | Path,
    cwd: Path,
    check: bool = True,
    timeout: float = 300,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {result.returncode} in {cwd}\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


def git(*args: str, cwd: Path) -> str:
    return run("git", *args, cwd=cwd).stdout.strip()


def snapshot(destination: Path) -> Path:
    """A clone of this repository whose HEAD is its working tree, committed."""
    run("git", "clone", "--quiet", "--no-local", ROOT, destination, cwd=destination.parent)
    git("checkout", "--quiet", "-B", "main", cwd=destination)
    clone_files = set(template_twins.tracked_files(destination))
    tree_files = set(template_twins.tracked_files(ROOT))
    for relpath in clone_files - tree_files:
        (destination / relpath).unlink()
    for relpath in tree_files:
        target = destination / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relpath, target)
    git("add", "--all", cwd=destination)
    git("commit", "--quiet", "--allow-empty", "--no-verify", "-m", "working tree", cwd=destination)
    return destination


def copier(*args: str | Path, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(COPIER, *args, cwd=cwd, check=check, timeout=600)


def copy(
    template: Path,
    destination: Path,
    answers: Mapping[str, str] | None = None,
    vcs_ref: str = "HEAD",
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    data = [arg for key, value in (answers or {}).items() for arg in ("--data", f"{key}={value}")]
    return copier(
        "copy",
        "--defaults",
        "--quiet",
        "--vcs-ref",
        vcs_ref,
        *data,
        template,
        destination,
        cwd=destination.parent,
        check=check,
    )


def answers_of(copy_root: Path) -> dict[str, str]:
    loaded: dict[str, str] = yaml.safe_load((copy_root / ".copier-answers.yml").read_text())
    return loaded


def workflow_step(workflow: Path, job: str, step_id: str) -> dict[str, Any]:
    """One step of a workflow, by its `id` or its `name`."""
    jobs = yaml.safe_load(workflow.read_text())["jobs"]
    for step in jobs[job]["steps"]:
        if step_id in (step.get("id"), step.get("name")):
            found: dict[str, Any] = step
            return found
    raise AssertionError(f"{workflow.name}: job {job} has no step {step_id}")


def run_step(
    step: Mapping[str, Any], cwd: Path, env: Mapping[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """A workflow step's `run:` script with bash as GitHub runs it (-e, pipefail), its `env:`
    given literally; returns the result and what it wrote to $GITHUB_OUTPUT."""
    output = cwd / ".github-output"
    output.unlink(missing_ok=True)
    result = run(
        "bash",
        "--noprofile",
        "--norc",
        "-eo",
        "pipefail",
        "-c",
        step["run"],
        cwd=cwd,
        check=False,
        env={"GITHUB_OUTPUT": str(output), **(env or {})},
    )
    outputs = {}
    if output.exists():
        for line in output.read_text().splitlines():
            key, _, value = line.partition("=")
            outputs[key] = value
        output.unlink()
    return result, outputs


def files_of(root: Path) -> set[str]:
    """Every file under root, as relative posix paths (a copy has no .git to ask)."""
    return {
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(root).parts
    }


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("template")
    yield snapshot(base / "template")
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def default_copy(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("default-copy")
    copy(template, base / "fastapi-service")
    yield base / "fastapi-service"
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def unusual_copy(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("unusual-copy")
    copy(template, base / "billing", UNUSUAL_ANSWERS)
    yield base / "billing"
    shutil.rmtree(base, ignore_errors=True)
