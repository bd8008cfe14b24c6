"""The GitHub workflows validate offline: GitHub's schemas and zizmor's security audit."""

from __future__ import annotations

import re
import sys
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
