"""The .jinja twins: derived ones are one line that includes their file (never stale), hand-written
ones are few, and what a twin renders is what `template_twins.as_copied` says a copy gets."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest
import yaml
from jinja2.sandbox import SandboxedEnvironment

from scripts import template_twins
from tests.template.conftest import ROOT, git, snapshot

ANSWERS = {
    "project_name": "Billing API",
    "project_slug": "billing-api",
    "description": "Bills.",
    # Contains the default slug: it must not be renamed a second time.
    "image_repository": "ghcr.io/acme/fastapi-service-fork",
    "author": "Payments",
    "backend_subnet": "172.30.9.0/24",
}


def render(root: Path, twin: str, answers: dict[str, str]) -> str:
    """A twin rendered as Copier renders it: its sandbox, its filters, the template's files."""
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(root),
        extensions=["jinja2_ansible_filters.AnsibleCoreFiltersExtension"],
        keep_trailing_newline=True,
    )
    return env.get_template(twin).render(**answers)


def test_every_twin_is_derived_or_hand_written_and_nothing_is_missing() -> None:
    assert template_twins.problems(ROOT) == []


def test_derived_twins_are_one_line_that_names_the_file_not_its_content() -> None:
    derived = template_twins.expected_twins(ROOT)
    assert derived
    for twin, content in derived.items():
        relpath = twin.removesuffix(".jinja")
        assert content == template_twins.derive(relpath)
        assert "\n" not in content
        # The same for any file: nothing of the file's text is in its twin.
        assert content.replace(relpath, "FILE") == template_twins.derive("FILE")


def test_twins_repeat_no_line_of_their_files() -> None:
    for twin in template_twins.twins(ROOT):
        if twin == template_twins.ANSWERS_TEMPLATE:
            continue
        own = set((ROOT / twin.removesuffix(".jinja")).read_text().splitlines())
        repeated = [line for line in (ROOT / twin).read_text().splitlines() if line in own]
        assert not [line for line in repeated if line.strip()], twin


@pytest.mark.parametrize("twin", sorted(template_twins.expected_twins(ROOT)))
def test_a_derived_twin_renders_what_as_copied_says(twin: str) -> None:
    text = (ROOT / twin.removesuffix(".jinja")).read_text(encoding="utf-8")
    assert render(ROOT, twin, ANSWERS) == template_twins.as_copied(text, ANSWERS)


MARKED = """# fastapi-service
Before.

<!-- template-only -->
## Only the template
Twins, fastapi-service.
<!-- /template-only -->

After<!-- template-only --> (docs/benchmarks.md)<!-- /template-only -->.
[tool]
files = [
    "app",
    # template-only: the harness
    "bench",
    # /template-only
]
image: ghcr.io/your-org/fastapi-service-app on 172.30.117.0/24
"""


def test_template_only_sections_go_and_answers_replace_defaults(tmp_path: Path) -> None:
    (tmp_path / "marked.md").write_text(MARKED)
    (tmp_path / "marked.md.jinja").write_text(template_twins.derive("marked.md"))
    expected = """# billing-api
Before.

After.
[tool]
files = [
    "app",
]
image: ghcr.io/acme/fastapi-service-fork-app on 172.30.9.0/24
"""
    assert template_twins.as_copied(MARKED, ANSWERS) == expected
    assert render(tmp_path, "marked.md.jinja", ANSWERS) == expected


def test_the_lock_twin_drops_the_template_only_requirements_and_what_only_they_need() -> None:
    lock = render(ROOT, "uv.lock.jinja", ANSWERS)
    names = {block.split('"')[1] for block in lock.split("\n\n[[package]]\n")[1:]}
    assert {"matplotlib", "granian", "fastapi-cli", "numpy", "pillow"}.isdisjoint(names)
    assert {"billing-api", "fastapi", "uvicorn", "pytest", "copier"} <= names
    root = next(b for b in lock.split("\n\n[[package]]\n") if b.startswith('name = "billing-api"'))
    assert "bench-peers" not in root
    assert "matplotlib" not in root


@pytest.fixture
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("twins")
    yield snapshot(base / "template")
    shutil.rmtree(base, ignore_errors=True)


def test_a_file_gaining_the_name_or_a_marker_is_told_to_get_a_twin(scratch: Path) -> None:
    (scratch / "NOTES.md").write_text("Deploy fastapi-service.\n")
    (scratch / "notes.toml").write_text("# template-only\nx = 1\n# /template-only\n")
    git("add", "--all", cwd=scratch)
    found = template_twins.problems(scratch)
    assert "NOTES.md.jinja is missing" in found
    assert "notes.toml.jinja is missing" in found
    assert sorted(template_twins.write(scratch)) == ["NOTES.md.jinja", "notes.toml.jinja"]
    assert template_twins.problems(scratch) == []


def test_an_unclosed_section_and_jinja_in_a_twinned_file_are_reported(scratch: Path) -> None:
    (scratch / "NOTES.md").write_text("<!-- template-only -->\nfastapi-service {{ x }}\n")
    git("add", "--all", cwd=scratch)
    template_twins.write(scratch)
    found = template_twins.problems(scratch)
    assert "NOTES.md: a template-only section is not closed" in found
    assert "NOTES.md has a twin and Jinja markers the include would render" in found


def test_a_twin_no_file_needs_any_more_is_removed(scratch: Path) -> None:
    settings = scratch / "app" / "settings.py"
    settings.write_text(settings.read_text().replace('"fastapi-service"', '"service"'))
    assert "app/settings.py.jinja renders a file that needs no twin (or no longer exists)" in (
        template_twins.problems(scratch)
    )
    assert template_twins.write(scratch) == ["app/settings.py.jinja"]
    assert not (scratch / "app" / "settings.py.jinja").exists()


def test_copier_questions_are_the_scripts_answers_and_its_exclusions_the_scripts() -> None:
    questions = yaml.safe_load((ROOT / "copier.yml").read_text())
    asked = {key for key in questions if not key.startswith("_")}
    assert asked == set(template_twins.DEFAULTS)
    assert set(template_twins.excluded_from_copies(ROOT)) == set(questions["_exclude"])
    for machinery in ("copier.yml", ".git", "/scripts/template_twins.py", "/tests/template",
                      "/bench", "/tests/bench", "/docs"):  # fmt: skip
        assert machinery in questions["_exclude"], machinery


def test_answers_file_template_sits_where_copier_looks_for_it() -> None:
    path: Path = ROOT / "{{_copier_conf.answers_file}}.jinja"
    assert "_copier_answers" in path.read_text()
