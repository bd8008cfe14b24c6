"""A Dependabot pull request touches pyproject.toml, uv.lock and workflows, never a twin: on a
throwaway clone, bump one dependency (pyproject.toml and uv.lock) and one action's SHA, and the
twin checks, the twin tests and `copier copy --defaults` still hold, no `.jinja` file touched.

The bumped values are made up for this clone (the next patch version, a SHA derived from the
old one): the test reads files, nothing installs or fetches them.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import template_twins
from tests.template.conftest import ROOT, copy, git, run, snapshot
from tests.template.test_copy import assert_copy_is_the_template_as_copied

PACKAGE = "pytest-timeout"


def next_patch(version: str) -> str:
    major, minor, patch = version.split(".")
    return f"{major}.{minor}.{int(patch) + 1}"


def bump_dependency(clone: Path) -> tuple[str, str]:
    """What Dependabot's uv updater changes for one pinned dev dependency."""
    pyproject, lock = clone / "pyproject.toml", clone / "uv.lock"
    old = re.search(rf'"{PACKAGE}==([0-9.]+)"', pyproject.read_text())
    assert old, PACKAGE
    before, after = old.group(1), next_patch(old.group(1))
    pyproject.write_text(
        pyproject.read_text().replace(f"{PACKAGE}=={before}", f"{PACKAGE}=={after}")
    )
    blocks = lock.read_text().split("\n\n[[package]]\n")
    [index] = [i for i, b in enumerate(blocks) if b.startswith(f'name = "{PACKAGE}"\n')]
    # Its version and its files' names (uv checks that they agree); the hashes are not read.
    renamed = blocks[index].replace(f'"{before}"', f'"{after}"')
    blocks[index] = renamed.replace(f"-{before}", f"-{after}")
    specifier = f'{{ name = "{PACKAGE}", specifier = "=={before}" }}'
    text = "\n\n[[package]]\n".join(blocks)
    assert specifier in text
    lock.write_text(text.replace(specifier, specifier.replace(before, after)))
    return before, after


def bump_action(clone: Path) -> tuple[str, str]:
    """What Dependabot's github-actions updater changes: one pinned SHA and its version comment."""
    ci = clone / ".github" / "workflows" / "ci.yml"
    text = ci.read_text()
    pin = re.search(r"uses: actions/checkout@([0-9a-f]{40}) # v([0-9.]+)", text)
    assert pin
    sha, version = pin.group(1), pin.group(2)
    new_sha = hashlib.sha1(sha.encode(), usedforsecurity=False).hexdigest()
    ci.write_text(text.replace(f"@{sha} # v{version}", f"@{new_sha} # v{next_patch(version)}"))
    return sha, new_sha


@pytest.fixture(scope="module")
def bumped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("dependabot")
    clone = snapshot(base / "template")
    bump_dependency(clone)
    bump_action(clone)
    git("commit", "--quiet", "--no-verify", "-am", "Bump a dependency and an action", cwd=clone)
    yield clone
    shutil.rmtree(base, ignore_errors=True)


def test_the_bump_changes_only_what_dependabot_changes(bumped: Path) -> None:
    changed = git("diff", "--name-only", "HEAD~1", "HEAD", cwd=bumped).split()
    assert changed == [".github/workflows/ci.yml", "pyproject.toml", "uv.lock"]
    assert template_twins.problems(bumped) == []


def test_the_bumped_clone_passes_its_twin_tests(bumped: Path) -> None:
    """The template's own twin tests, run in the clone, on the clone."""
    result = run(
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "tests/template/test_twins.py", cwd=bumped, check=False, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_default_copy_of_the_bumped_clone_carries_the_bump(bumped: Path, tmp_path: Path) -> None:
    copied = tmp_path / "copy"
    copy(bumped, copied)
    assert_copy_is_the_template_as_copied(bumped, copied, template_twins.DEFAULTS)
    version = re.search(rf'"{PACKAGE}==([0-9.]+)"', (bumped / "pyproject.toml").read_text())
    assert version
    bumped_block = f'name = "{PACKAGE}"\nversion = "{version.group(1)}"\n'
    assert bumped_block in (copied / "uv.lock").read_text()
    uv = ROOT / ".tools" / "bin" / "uv"
    if uv.exists():  # scripts/test installs it
        run(uv, "lock", "--check", "--offline", cwd=bumped)
        run(uv, "lock", "--check", "--offline", cwd=copied)
