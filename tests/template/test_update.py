"""`copier update` as README "Updating from the template" says: with and without release tags,
keeping the user's commits and edits, conflicts and deletions included. Real copier, real git;
tags only ever in throwaway clones."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import template_twins
from tests.template.conftest import answers_of, copier, copy, git, snapshot

TEMPLATE_CHANGE = "Template v0.2.0: this line arrives with `copier update`.\n"
USER_README_LINE = "Owned by the payments team; on call: #payments-oncall.\n"
USER_CODE_LINE = "# Local change: the payments team keeps this comment.\n"


@pytest.fixture
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A clone of this repository with no tags, as this repository is until its first release."""
    base = tmp_path_factory.mktemp("updated")
    yield snapshot(base / "template")
    shutil.rmtree(base, ignore_errors=True)


def change(template: Path, relpath: str, text: str, message: str) -> None:
    """The template author's workflow: edit the committed file; its twin needs no touching."""
    path = template / relpath
    path.write_text(path.read_text() + text)
    git("commit", "--quiet", "--no-verify", "-am", message, cwd=template)
    assert template_twins.problems(template) == []
    assert not git("status", "--porcelain", cwd=template)


def start_project(template: Path, project: Path, vcs_ref: str = "HEAD") -> None:
    copy(template, project, {"project_slug": "payments"}, vcs_ref=vcs_ref)
    git("init", "--quiet", "--initial-branch=main", cwd=project)
    git("add", "--all", cwd=project)
    git("commit", "--quiet", "-m", "Start from the template", cwd=project)


def update(project: Path, *args: str, check: bool = True) -> str:
    result = copier("update", "--defaults", *args, cwd=project, check=check)
    return result.stdout + result.stderr


def test_update_to_the_next_release_keeps_user_commits_and_edits_and_brings_the_change(
    template: Path, tmp_path: Path
) -> None:
    git("tag", "-a", "v0.1.0", "-m", "v0.1.0", cwd=template)
    change(template, "README.md", "\n" + TEMPLATE_CHANGE, "README: a new line")
    git("tag", "-a", "v0.2.0", "-m", "v0.2.0", cwd=template)
    project = tmp_path / "payments"
    start_project(template, project, vcs_ref="v0.1.0")

    # One edit in a file the template also changes (README), one in a file it does not.
    readme, code = project / "README.md", project / "app" / "api" / "demo.py"
    title, rest = readme.read_text().split("\n", 1)
    readme.write_text(f"{title}\n\n{USER_README_LINE}{rest}")
    code.write_text(USER_CODE_LINE + code.read_text())
    git("commit", "--quiet", "-am", "Our README note and a code comment", cwd=project)

    update(project, "--quiet")  # no --vcs-ref: the newest tag

    log = git("log", "--format=%s", cwd=project).splitlines()
    assert log == ["Our README note and a code comment", "Start from the template"]
    updated = readme.read_text()
    assert USER_README_LINE in updated
    assert TEMPLATE_CHANGE in updated
    assert not [line for line in updated.splitlines() if line.startswith("<<<<<<< ")]
    assert code.read_text().startswith(USER_CODE_LINE)
    answers = answers_of(project)
    assert answers["_commit"] == "v0.2.0"
    assert answers["project_slug"] == "payments"
    # Only the template's change and the answers file are left for the user to commit.
    assert not git("ls-files", "--others", "--exclude-standard", cwd=project)
    assert set(git("diff", "--name-only", cwd=project).split()) == {
        "README.md",
        ".copier-answers.yml",
    }


def test_without_tags_copy_takes_head_and_update_follows_the_default_branch(
    template: Path, tmp_path: Path
) -> None:
    project = tmp_path / "payments"
    result = copier("copy", "--defaults", template, project, cwd=tmp_path)
    assert "No git tags found in template; using HEAD as ref" in result.stdout + result.stderr
    head = git("rev-parse", "--short", "HEAD", cwd=template)
    assert answers_of(project)["_commit"] == head
    git("init", "--quiet", "--initial-branch=main", cwd=project)
    git("add", "--all", cwd=project)
    git("commit", "--quiet", "-m", "Start", cwd=project)

    change(template, "README.md", "\n" + TEMPLATE_CHANGE, "README: a new line")
    update(project, "--quiet")
    assert (project / "README.md").read_text().endswith(TEMPLATE_CHANGE)
    assert answers_of(project)["_commit"] == git("rev-parse", "--short", "HEAD", cwd=template)


def test_a_project_past_the_newest_tag_stays_on_head_until_a_newer_tag(
    template: Path, tmp_path: Path
) -> None:
    project = tmp_path / "payments"
    start_project(template, project)  # before any release
    change(template, "README.md", "\nfirst\n", "first")
    git("tag", "-a", "v0.1.0", "-m", "v0.1.0", cwd=template)
    change(template, "README.md", "\nsecond\n", "second")

    update(project, "--quiet", "--vcs-ref", "HEAD")
    git("commit", "--quiet", "-am", "Update to HEAD", cwd=project)
    assert answers_of(project)["_commit"].startswith("v0.1.0-1-g")
    assert (project / "README.md").read_text().endswith("second\n")

    refused = update(project, "--quiet", check=False)
    assert "Downgrades are not supported" in refused
    assert answers_of(project)["_commit"].startswith("v0.1.0-1-g")
    change(template, "README.md", "\nthird\n", "third")
    git("tag", "-a", "v0.2.0", "-m", "v0.2.0", cwd=template)
    update(project, "--quiet")
    assert answers_of(project)["_commit"] == "v0.2.0"


def test_a_conflict_is_left_inline_even_when_the_projects_gitignore_hides_rej_files(
    template: Path, tmp_path: Path
) -> None:
    """copier#2668: .rej files hidden by .gitignore used to skip the inline merge silently."""
    project = tmp_path / "payments"
    start_project(template, project)
    with (project / ".gitignore").open("a") as gitignore:
        gitignore.write("*.rej\n")
    readme = project / "README.md"
    lines = readme.read_text().split("\n")
    readme.write_text("\n".join(["# Our own title", *lines[1:]]))
    git("commit", "--quiet", "-am", "Our title, and no .rej files for us", cwd=project)
    theirs = template / "README.md"
    theirs.write_text("# The template's new title\n" + theirs.read_text().split("\n", 1)[1])
    git("commit", "--quiet", "-am", "New title", cwd=template)

    update(project, "--quiet")

    text = readme.read_text()
    assert "<<<<<<< before updating\n# Our own title\n=======\n" in text
    assert "# The template's new title\n>>>>>>> after updating\n" in text
    assert not list(project.rglob("*.rej"))
    assert "UU README.md" in git("status", "--porcelain", cwd=project).splitlines()


def test_a_deleted_file_stays_deleted_and_exclude_keeps_a_deleted_directory_out(
    template: Path, tmp_path: Path
) -> None:
    project = tmp_path / "payments"
    start_project(template, project)
    git("rm", "--quiet", "Makefile", cwd=project)
    git("rm", "--quiet", "-r", "deploy/k8s", cwd=project)
    git("commit", "--quiet", "-m", "No Makefile, no Kubernetes", cwd=project)
    # The template changes the deleted file and adds one to the deleted directory.
    change(template, "Makefile", "# a template change\n", "Makefile change")
    added = template / "deploy/k8s/overlays/production/extra.yaml"
    added.write_text("# new in the template\n")
    git("add", "--all", cwd=template)
    git("commit", "--quiet", "-m", "A new manifest", cwd=template)

    update(project, "--quiet", "--exclude", "deploy/k8s")

    assert not (project / "Makefile").exists()
    assert not (project / "deploy/k8s").exists()
    assert git("diff", "--name-only", cwd=project) == ".copier-answers.yml"
    assert not git("ls-files", "--others", "--exclude-standard", cwd=project)
    # Without --exclude, the new file under the deleted directory would arrive.
    git("checkout", "--quiet", "--", ".copier-answers.yml", cwd=project)
    update(project, "--quiet")
    assert not (project / "Makefile").exists()
    assert (project / "deploy/k8s/overlays/production/extra.yaml").exists()
