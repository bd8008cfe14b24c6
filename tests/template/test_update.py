"""`copier update` from one tagged template release to the next keeps the user's work."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from scripts import template_twins
from tests.template.conftest import copier, copy, git, snapshot

TEMPLATE_CHANGE = "Template v0.2.0: this line arrives with `copier update`.\n"
USER_README_LINE = "Owned by the payments team; on call: #payments-oncall.\n"
USER_CODE_LINE = "# Local change: the payments team keeps this comment.\n"


@pytest.fixture
def released_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A template clone with two releases: v0.1.0, then v0.2.0 that changes the README."""
    base = tmp_path_factory.mktemp("released")
    template = snapshot(base / "template")
    git("tag", "v0.1.0", cwd=template)
    readme = template / "README.md"
    readme.write_text(readme.read_text() + "\n" + TEMPLATE_CHANGE)
    # The template author's workflow: edit the committed file, regenerate its twin.
    assert template_twins.write(template, ["README.md"]) == ["README.md.jinja"]
    git("commit", "--quiet", "--no-verify", "-am", "README: a new line", cwd=template)
    git("tag", "v0.2.0", cwd=template)
    yield template
    shutil.rmtree(base, ignore_errors=True)


def test_update_to_the_next_release_keeps_user_commits_and_edits_and_brings_the_change(
    released_template: Path, tmp_path: Path
) -> None:
    project = tmp_path / "payments"
    copy(released_template, project, {"project_slug": "payments"}, vcs_ref="v0.1.0")
    git("init", "--quiet", "--initial-branch=main", cwd=project)
    git("add", "--all", cwd=project)
    git("commit", "--quiet", "-m", "Start from the template, v0.1.0", cwd=project)

    # One edit in a file the template also changes (README), one in a file it does not.
    readme, code = project / "README.md", project / "app" / "api" / "demo.py"
    title, rest = readme.read_text().split("\n", 1)
    readme.write_text(f"{title}\n\n{USER_README_LINE}{rest}")
    code.write_text(USER_CODE_LINE + code.read_text())
    git("commit", "--quiet", "-am", "Our README note and a code comment", cwd=project)

    copier("update", "--defaults", "--quiet", "--vcs-ref", "v0.2.0", cwd=project)

    log = git("log", "--format=%s", cwd=project).splitlines()
    assert log == ["Our README note and a code comment", "Start from the template, v0.1.0"]
    updated = readme.read_text()
    assert USER_README_LINE in updated
    assert updated.endswith(TEMPLATE_CHANGE)
    assert "<<<<<<<" not in updated
    assert code.read_text().startswith(USER_CODE_LINE)
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["_commit"] == "v0.2.0"
    assert answers["project_slug"] == "payments"
    # Only the template's change and the answers file are left for the user to commit.
    assert not git("ls-files", "--others", "--exclude-standard", cwd=project)
    assert set(git("diff", "--name-only", cwd=project).split()) == {
        "README.md",
        ".copier-answers.yml",
    }
