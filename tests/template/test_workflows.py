"""The GitHub workflows validate offline: GitHub's schemas and zizmor's security audit."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import yaml

from tests.template.conftest import ROOT, run

BIN = Path(sys.executable).parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def test_workflows_match_githubs_workflow_schema() -> None:
    assert WORKFLOWS
    run(
        BIN / "check-jsonschema",
        "--builtin-schema",
        "vendor.github-workflows",
        *WORKFLOWS,
        cwd=ROOT,
    )


def test_dependabot_config_matches_its_schema() -> None:
    run(
        BIN / "check-jsonschema",
        "--builtin-schema",
        "vendor.dependabot",
        ROOT / ".github" / "dependabot.yml",
        cwd=ROOT,
    )


def test_zizmor_finds_nothing_even_as_an_auditor() -> None:
    result = run(
        BIN / "zizmor",
        "--offline",
        "--no-progress",
        "--persona",
        "auditor",
        ".github",
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings" in result.stdout, result.stdout


def test_every_action_is_pinned_to_a_full_commit_with_its_version_in_a_comment() -> None:
    for workflow in WORKFLOWS:
        for line in workflow.read_text().splitlines():
            if "uses:" in line:
                assert re.search(r"uses: [\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$", line), (
                    f"{workflow.name}: {line.strip()}"
                )


def test_every_job_has_a_timeout_and_checkouts_persist_no_credentials() -> None:
    for workflow in WORKFLOWS:
        loaded = yaml.safe_load(workflow.read_text())
        assert loaded["permissions"] == {}, workflow.name
        for name, job in loaded["jobs"].items():
            assert "timeout-minutes" in job, f"{workflow.name}: {name}"
            assert "permissions" in job, f"{workflow.name}: {name}"
            for step in job["steps"]:
                if step.get("uses", "").startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False


def test_ci_runs_the_fast_tests_on_the_lowest_python_the_tools_target() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lowest = pyproject["project"]["requires-python"].removeprefix(">=")
    assert pyproject["tool"]["ruff"]["target-version"] == "py" + lowest.replace(".", "")
    assert pyproject["tool"]["mypy"]["python_version"] == lowest
    ci = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    checks = ci["jobs"]["checks"]
    pythons = checks["strategy"]["matrix"]["python"]
    assert lowest in pythons, pythons
    assert checks["env"]["UV_PYTHON"] == "${{ matrix.python }}"


def test_dependabot_bumps_the_python_base_of_the_app_and_the_peers_together() -> None:
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    docker = next(u for u in config["updates"] if u["package-ecosystem"] == "docker")
    for dockerfile in ("Dockerfile", "bench/Dockerfile.peers"):
        assert "/" + dockerfile.rpartition("/")[0] in docker["directories"], dockerfile
        # Dependabot reads a literal image:tag only (no ${ARG}: dependabot-core#2057).
        first = next(line for line in (ROOT / dockerfile).read_text().splitlines()
                     if line.startswith("FROM "))  # fmt: skip
        assert re.fullmatch(r"FROM python:[\w][\w.-]* AS base", first), (dockerfile, first)
    groups = [g for g in docker["groups"].values() if "python" in g["patterns"]]
    assert [g.get("group-by") for g in groups] == ["dependency-name"]
