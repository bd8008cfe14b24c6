"""`copier copy` of this repository, as a user would run it, then the copy used like a project."""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import shutil
import stat
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from scripts import template_twins
from tests.template.conftest import UNUSUAL_ANSWERS, copy, files_of, run

TEMPLATE_ONLY_IN_A_COPY = ("copier.yml", "scripts/template_twins.py", "tests/template")


def answers_of(copy_root: Path) -> dict[str, str]:
    loaded: dict[str, str] = yaml.safe_load((copy_root / ".copier-answers.yml").read_text())
    return loaded


def renamed(text: str, answers: Mapping[str, str]) -> str:
    """What a committed file should become in a copy with these answers."""
    value_for = {
        needle: answers[expression.split()[0]] for needle, expression in template_twins.RULES
    }
    slug_env = template_twins.DEFAULTS["project_slug"].upper().replace("-", "_")
    value_for[slug_env] = answers["project_slug"].upper().replace("-", "_")
    pattern = re.compile("|".join(re.escape(needle) for needle, _ in template_twins.RULES))
    return pattern.sub(lambda match: value_for[match.group()], text)


def project_files(template: Path) -> set[str]:
    """What a copy should contain: the template's files minus template-only ones."""
    return {
        relpath
        for relpath in template_twins.tracked_files(template)
        if not template_twins.is_template_only(relpath)
    } | {".copier-answers.yml"}


def is_binary(relpath: str) -> bool:
    """Files Copier copies byte for byte and nobody renames in (docs/bench/*.png)."""
    return relpath.endswith(".png")


def is_executable(path: Path) -> bool:
    return bool(path.stat().st_mode & stat.S_IXUSR)


def test_default_copy_reproduces_the_committed_files_byte_for_byte(
    template: Path, default_copy: Path
) -> None:
    assert files_of(default_copy) == project_files(template)
    for relpath in project_files(template) - {".copier-answers.yml"}:
        committed, copied = template / relpath, default_copy / relpath
        assert copied.read_bytes() == committed.read_bytes(), relpath
        assert is_executable(copied) == is_executable(committed), relpath


def test_default_answers_are_the_ones_the_twins_were_derived_from(default_copy: Path) -> None:
    answers = answers_of(default_copy)
    assert {key: answers[key] for key in template_twins.DEFAULTS} == dict(template_twins.DEFAULTS)


def test_copy_records_its_answers_and_template_version_for_copier_update(
    template: Path, unusual_copy: Path
) -> None:
    answers = answers_of(unusual_copy)
    assert answers["_src_path"] == str(template)
    assert answers["_commit"]
    assert {key: answers[key] for key in UNUSUAL_ANSWERS} == dict(UNUSUAL_ANSWERS)


def test_unusual_copy_renames_every_occurrence_and_changes_nothing_else(
    template: Path, unusual_copy: Path
) -> None:
    assert files_of(unusual_copy) == project_files(template)
    for relpath in project_files(template) - {".copier-answers.yml"}:
        if is_binary(relpath):  # plots: copied as they are
            assert (unusual_copy / relpath).read_bytes() == (template / relpath).read_bytes()
            continue
        committed = (template / relpath).read_text(encoding="utf-8")
        copied = (unusual_copy / relpath).read_text(encoding="utf-8")
        assert copied == renamed(committed, UNUSUAL_ANSWERS), relpath


def test_unusual_copy_keeps_no_template_name_marker_or_template_only_file(
    template: Path, unusual_copy: Path
) -> None:
    files = files_of(unusual_copy)
    assert not [name for name in files if name.endswith(".jinja")]
    assert not (unusual_copy / ".git").exists()
    for template_only in TEMPLATE_ONLY_IN_A_COPY:
        assert not (unusual_copy / template_only).exists(), template_only
    for relpath in files - {".copier-answers.yml"}:
        if is_binary(relpath):
            continue
        text = (unusual_copy / relpath).read_text(encoding="utf-8")
        for needle, _ in template_twins.RULES:
            assert needle not in text, f"{relpath} still says {needle!r}"
        # Jinja markers only where the project has them literally (workflows, docker -f).
        committed = (template / relpath).read_text(encoding="utf-8")
        for marker in ("{{", "{%", "{#"):
            assert text.count(marker) == committed.count(marker), (relpath, marker)


def test_unusual_copy_names_its_project_images_and_title_after_the_answers(
    unusual_copy: Path,
) -> None:
    slug, image = UNUSUAL_ANSWERS["project_slug"], UNUSUAL_ANSWERS["image_repository"]

    def read(relpath: str) -> str:
        return (unusual_copy / relpath).read_text()

    assert f'name = "{slug}"' in read("pyproject.toml")
    assert f'name = "{slug}"' in read("uv.lock")
    assert f"name: {slug}\n" in read("docker-compose.yml")
    assert f"${{APP_IMAGE:-{slug}-app}}" in read("docker-compose.yml")
    assert f"${{NGINX_IMAGE:-{slug}-nginx}}" in read("docker-compose.yml")
    assert f"APP_IMAGE={slug}-app\n" in read(".env.example")
    assert f'org.opencontainers.image.title="{slug}"' in read("Dockerfile")
    assert f'default="{slug}"' in read("app/settings.py")
    assert read("README.md").startswith(f"# {UNUSUAL_ANSWERS['project_name']}\n")
    assert f"IMAGE_REPOSITORY: {image}\n" in read(".github/workflows/release.yml")
    assert f"namePrefix: {slug}-\n" in read("deploy/k8s/overlays/production/kustomization.yaml")


def test_copys_own_unit_tests_pass(unusual_copy: Path) -> None:
    result = run(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/unit",
        cwd=unusual_copy,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_copys_lock_file_matches_its_renamed_project(unusual_copy: Path) -> None:
    uv = Path(sys.executable).parents[2] / ".tools" / "bin" / "uv"
    if not uv.exists():
        pytest.skip("scripts/test installs uv into .tools/")
    run(uv, "lock", "--check", "--offline", cwd=unusual_copy)


def test_copys_workflows_pass_the_schema_and_zizmor(unusual_copy: Path) -> None:
    bin_dir = Path(sys.executable).parent
    workflows = sorted((unusual_copy / ".github" / "workflows").glob("*.yml"))
    run(
        bin_dir / "check-jsonschema",
        "--builtin-schema",
        "vendor.github-workflows",
        *workflows,
        cwd=unusual_copy,
    )
    run(bin_dir / "zizmor", "--offline", "--no-progress", ".github", cwd=unusual_copy)


@pytest.mark.parametrize(
    ("slug", "reason"),
    [
        ("Bad_Slug", "is not a DNS-1123 label"),
        ("-leading-hyphen", "is not a DNS-1123 label"),
        ("trailing-hyphen-", "is not a DNS-1123 label"),
        ("a" * 58, "at most 57"),
    ],
)
def test_slug_that_is_not_a_dns_label_is_refused_with_a_clear_message(
    template: Path, tmp_path: Path, slug: str, reason: str
) -> None:
    result = copy(template, tmp_path / "refused", {"project_slug": slug}, check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert reason in output, output
    assert not (tmp_path / "refused" / "pyproject.toml").exists()


def test_slug_defaults_to_the_project_name_made_into_a_dns_label(
    template: Path, tmp_path: Path
) -> None:
    copy(template, tmp_path / "named", {"project_name": "Orders & Returns API (v2)"})
    answers = answers_of(tmp_path / "named")
    assert answers["project_slug"] == "orders-returns-api-v2"
    assert answers["image_repository"] == "ghcr.io/your-org/orders-returns-api-v2"


def get(url: str, path: str) -> tuple[int, bytes]:
    host, port = url.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


@pytest.mark.e2e
def test_copys_images_build_and_serve_through_nginx_with_compose(unusual_copy: Path) -> None:
    slug = UNUSUAL_ANSWERS["project_slug"]
    tag = f"tpl-copy-{uuid.uuid4().hex[:8]}"
    project = tag
    env = {
        **os.environ,
        "APP_TAG": tag,
        "HTTP_BIND": "127.0.0.1",
        "HTTP_PORT": "0",
        "BACKEND_SUBNET": f"10.{200 + secrets.randbelow(51)}.{secrets.randbelow(256)}.0/24",
        "COMPOSE_PROGRESS": "plain",
    }
    docker = shutil.which("docker") or "docker"

    def compose(*args: str, check: bool = True, timeout: float = 300) -> str:
        return run(
            docker,
            "compose",
            "-p",
            project,
            *args,
            cwd=unusual_copy,
            env=env,
            check=check,
            timeout=timeout,
        ).stdout

    try:
        compose("up", "-d", "--build", "--wait", timeout=900)
        port = compose("port", "nginx", "8080").strip().rsplit(":", 1)[1]
        status, body = get(f"127.0.0.1:{port}", "/api/demo/whoami")
        assert status == 200, body
        assert {"pid", "host"} <= set(json.loads(body))
        title = run(
            docker,
            "image",
            "inspect",
            "-f",
            '{{ index .Config.Labels "org.opencontainers.image.title" }}',
            f"{slug}-app:{tag}",
            cwd=unusual_copy,
        ).stdout.strip()
        assert title == slug
    finally:
        compose("down", "-v", "--remove-orphans", "-t", "5", check=False, timeout=120)
        # Only the two images this test tagged; their layers stay in the build cache.
        run(
            docker,
            "image",
            "rm",
            f"{slug}-app:{tag}",
            f"{slug}-nginx:{tag}",
            cwd=unusual_copy,
            check=False,
        )
