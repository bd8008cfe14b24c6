"""The .jinja twins are derived, never hand-written: each must equal what the script derives."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scripts import template_twins
from tests.template.conftest import ROOT

RERUN = "rerun: python scripts/template_twins.py --write"


@pytest.mark.parametrize("twin", sorted(template_twins.expected_twins(ROOT)))
def test_twin_equals_what_the_script_derives_from_the_committed_file(twin: str) -> None:
    expected = template_twins.expected_twins(ROOT)[twin]
    path = ROOT / twin
    assert path.is_file(), f"{twin} is missing; {RERUN}"
    assert path.read_text(encoding="utf-8") == expected, (
        f"{twin} no longer matches {twin.removesuffix('.jinja')} (edited without the script?); "
        f"{RERUN}"
    )


def test_every_file_that_carries_the_projects_name_has_a_twin() -> None:
    missing = template_twins.files_missing_twin(ROOT)
    assert not missing, (
        f"copies would keep the template's names in {missing}: add them to "
        f"TWINNED in scripts/template_twins.py and {RERUN}"
    )


def test_every_listed_file_still_carries_a_name_to_rename() -> None:
    assert not template_twins.useless_twins(ROOT)


def test_no_twin_is_left_without_its_committed_file() -> None:
    twins = {
        path.relative_to(ROOT).as_posix()
        for path in map(ROOT.joinpath, template_twins.tracked_files(ROOT))
        if path.name.endswith(".jinja") and not path.name.startswith("{{")
    }
    assert twins == set(template_twins.expected_twins(ROOT))


def test_inline_twin_escapes_literal_jinja_and_renders_answers() -> None:
    twin = template_twins.derive_inline(
        "name: fastapi-service\nrun: echo ${{ github.sha }} {%x%} {#y#}\nimage: {fastapi-service}\n"
    )
    assert twin == (
        "name: {{ project_slug }}{% raw %}\nrun: echo ${{ github.sha }} {%x%} {#y#}\nimage: {"
        "{% endraw %}{{ project_slug }}}\n"
    )


def test_image_repository_wins_over_the_slug_it_contains() -> None:
    twin = template_twins.derive_inline("ghcr.io/your-org/fastapi-service-app fastapi-service")
    assert twin == "{{ image_repository }}-app {{ project_slug }}"


def test_copier_questions_are_the_scripts_answers() -> None:
    questions = yaml.safe_load((ROOT / "copier.yml").read_text())
    asked = {key for key in questions if not key.startswith("_")}
    assert asked == set(template_twins.DEFAULTS)
    # Everything template-only stays out of copies.
    excluded = set(questions["_exclude"])
    assert {"copier.yml", ".git", "/scripts/template_twins.py", "/tests/template"} <= excluded


def test_answers_file_template_sits_where_copier_looks_for_it() -> None:
    path: Path = ROOT / "{{_copier_conf.answers_file}}.jinja"
    assert "_copier_answers" in path.read_text()
