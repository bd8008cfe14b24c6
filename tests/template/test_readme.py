"""README's instructions for starting a service, releasing and updating, run as written: each
shell block in order, against a bare clone standing in for gh:OWNER/REPO (the only change to a
command: `--defaults` on `copier copy`, because no one is at the keyboard to answer). The tag is
made in throwaway clones only."""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.template.conftest import (
    ROOT,
    answers_of,
    git,
    run,
    run_step,
    snapshot,
    workflow_step,
)

README = (ROOT / "README.md").read_text()
SHELL_BLOCKS: list[str] = re.findall(r"```sh\n(.*?)```", README, flags=re.DOTALL)
CHANGE = "A fix every copy should get.\n"


def block(containing: str) -> str:
    [found] = [text for text in SHELL_BLOCKS if containing in text]
    return found


def shell(script: str, cwd: Path, origin: Path) -> str:
    """A README block, one command per line, as a user types it: stop at the first failure."""
    commands = [line.split("  #")[0].strip() for line in script.splitlines()]
    commands = [c for c in commands if c and not c.startswith("pipx install")]
    script = "\n".join(commands).replace("gh:OWNER/REPO", origin.as_uri())
    script = script.replace("copier copy ", "copier copy --defaults ")
    result = run(
        "bash", "--noprofile", "--norc", "-e", "-c", script, cwd=cwd,
        env={"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
    )  # fmt: skip
    return result.stdout + result.stderr


@pytest.fixture
def hosted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the hosted template: a bare repository, a maintainer's clone of it)."""
    base = tmp_path_factory.mktemp("hosted")
    origin = base / "origin.git"
    run("git", "clone", "--quiet", "--bare", snapshot(base / "snapshot"), origin, cwd=base)
    git("symbolic-ref", "HEAD", "refs/heads/main", cwd=origin)
    maintainer = base / "maintainer"
    run("git", "clone", "--quiet", origin, maintainer, cwd=base)
    yield origin, maintainer
    shutil.rmtree(base, ignore_errors=True)


def test_readme_start_release_and_update_work_as_written(
    hosted: tuple[Path, Path], tmp_path: Path
) -> None:
    origin, maintainer = hosted
    assert not git("tag", "--list", cwd=maintainer)

    # "Start a new service from this template", before any release.
    output = shell(block("copier copy gh:OWNER/REPO"), tmp_path, origin)
    assert "No git tags found in template; using HEAD as ref" in output
    project = tmp_path / "billing-api"
    assert answers_of(project)["_commit"] == git("rev-parse", "--short", "HEAD", cwd=maintainer)
    assert git("log", "--format=%s", cwd=project) == "Start from the template"

    # The template moves on; a maintainer releases it as "CI and releases" says.
    readme = maintainer / "README.md"
    readme.write_text(readme.read_text() + "\n" + CHANGE)
    git("commit", "--quiet", "-am", "A fix", cwd=maintainer)
    git("push", "--quiet", "origin", "main", cwd=maintainer)
    shell(block("git tag -a"), maintainer, origin)
    [tag] = git("ls-remote", "--tags", str(origin), cwd=tmp_path).splitlines()[:1]
    assert tag.endswith("refs/tags/v0.1.0")
    # ...and the release workflow's own check accepts that tag, as its checkout would see it.
    checkout = tmp_path / "checkout"
    run("git", "clone", "--quiet", origin, checkout, cwd=tmp_path)
    step = workflow_step(
        ROOT / ".github/workflows/release.yml",
        "plan",
        "the tag is annotated, vMAJOR.MINOR.PATCH, on the default branch",
    )
    checked, _ = run_step(step, checkout, {"TAG": "v0.1.0", "DEFAULT_BRANCH": "main"})
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # "Updating from the template": to the release, with the user's commit on top of it.
    shell(block("copier update --defaults\n"), project, origin)
    assert answers_of(project)["_commit"] == "v0.1.0"
    assert (project / "README.md").read_text().endswith(CHANGE)
    assert git("log", "--format=%s", "-1", cwd=project) == "Update from the template"
    assert not git("status", "--porcelain", cwd=project)
