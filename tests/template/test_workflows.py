"""The GitHub workflows validate offline: GitHub's schemas and zizmor's security audit."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

from scripts import template_twins
from tests.template.conftest import ROOT, git, run, run_step, workflow_step

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


def test_release_pushes_to_the_repository_the_production_overlay_pulls_from() -> None:
    step = workflow_step(ROOT / ".github/workflows/release.yml", "publish", "registry")
    result, outputs = run_step(step, ROOT)
    assert result.returncode == 0, result.stderr
    assert outputs == {"repository": template_twins.DEFAULTS["image_repository"], "host": "ghcr.io"}


def test_release_refuses_an_overlay_without_one_repository_for_both_images(
    tmp_path: Path,
) -> None:
    overlay = tmp_path / "deploy/k8s/overlays/production"
    overlay.mkdir(parents=True)
    text = (ROOT / "deploy/k8s/overlays/production/kustomization.yaml").read_text()
    (overlay / "kustomization.yaml").write_text(text.replace("-nginx\n", "-edge\n"))
    step = workflow_step(ROOT / ".github/workflows/release.yml", "publish", "registry")
    result, outputs = run_step(step, tmp_path)
    assert result.returncode != 0
    assert "names no REPOSITORY-app and REPOSITORY-nginx images" in result.stdout
    assert outputs == {}


TAG_CHECK = "the tag is annotated, vMAJOR.MINOR.PATCH, on the default branch"


@pytest.fixture(scope="module")
def released_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the release workflow's checkout sees: a clone (fetch-depth 0) of a repository whose
    main and side branches carry tags of every kind. Only ever in a throwaway directory."""
    base = tmp_path_factory.mktemp("release-tags")
    origin = base / "origin"
    origin.mkdir()
    git("init", "--quiet", "--initial-branch=main", cwd=origin)
    for message in ("one", "two"):
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=origin)
    git("tag", "-a", "v1.2.3", "-m", "release", cwd=origin)
    git("tag", "v1.2.4", cwd=origin)  # lightweight
    for bad in ("v1.2", "v1.2.3rc1", "v01.2.3"):
        git("tag", "-a", bad, "-m", "release", cwd=origin)
    git("switch", "--quiet", "-c", "side", cwd=origin)
    git("commit", "--quiet", "--allow-empty", "-m", "side", cwd=origin)
    git("tag", "-a", "v1.3.0", "-m", "release", cwd=origin)
    git("switch", "--quiet", "main", cwd=origin)
    clone = base / "clone"
    run("git", "clone", "--quiet", origin, clone, cwd=base)
    return clone


@pytest.mark.parametrize(
    ("tag", "refusal"),
    [
        ("v1.2.3", None),
        ("v1.2.4", "is a lightweight tag"),
        ("v1.2", "is not vMAJOR.MINOR.PATCH"),
        ("v1.2.3rc1", "is not vMAJOR.MINOR.PATCH"),
        ("v01.2.3", "is not vMAJOR.MINOR.PATCH"),
        ("v1.3.0", "is not on main"),
    ],
)
def test_release_accepts_only_an_annotated_version_tag_on_the_default_branch(
    released_clone: Path, tag: str, refusal: str | None
) -> None:
    step = workflow_step(ROOT / ".github/workflows/release.yml", "plan", TAG_CHECK)
    assert step["env"] == {
        "TAG": "${{ github.ref_name }}",
        "DEFAULT_BRANCH": "${{ github.event.repository.default_branch }}",
    }
    result, _ = run_step(step, released_clone, {"TAG": tag, "DEFAULT_BRANCH": "main"})
    if refusal is None:
        assert result.returncode == 0, result.stdout + result.stderr
    else:
        assert result.returncode != 0
        assert refusal in result.stdout, result.stdout


def test_the_template_requires_at_most_the_copier_version_its_tests_run() -> None:
    required = yaml.safe_load((ROOT / "copier.yml").read_text())["_min_copier_version"]
    pinned = next(
        spec.split("==")[1]
        for spec in tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]["dev"]
        if spec.startswith("copier==")
    )
    assert Version(required) <= Version(pinned)
