"""`copier copy` of this repository, as a user would run it, then the copy used like a project."""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import re
import shutil
import stat
import sys
import tomllib
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from scripts import template_twins
from tests.e2e.conftest import APP_IMAGE, DEMO_ENDPOINTS, NGINX_IMAGE
from tests.template.conftest import (
    ROOT,
    UNUSUAL_ANSWERS,
    answers_of,
    copy,
    files_of,
    run,
    run_step,
    workflow_step,
)

# What a copy must not get: the template's machinery (copier.yml's _exclude says the same).
TEMPLATE_MACHINERY = (
    "copier.yml",
    "scripts/template_twins.py",
    "tests/template",
    "bench",
    "tests/bench",
    "scripts/bench",
    "scripts/reliability_report.py",
    "docs",
)
BENCHMARK_ONLY_PACKAGES = {"matplotlib", "granian", "fastapi-cli"}


def project_files(template: Path) -> set[str]:
    """What a copy should contain: the template's files minus template-only ones."""
    return set(template_twins.copied_files(template)) | {".copier-answers.yml"}


def is_binary(relpath: str) -> bool:
    """Files Copier copies byte for byte and nobody renames in."""
    return relpath.endswith(".png")


def is_executable(path: Path) -> bool:
    return bool(path.stat().st_mode & stat.S_IXUSR)


def _name(requirement: Mapping[str, Any]) -> str:
    return str(requirement["name"])


def expected_lock_packages(template: Path) -> set[tuple[str, str]]:
    """(name, version) of every package a copy's lock must keep, found from the template's lock
    with tomllib (not the twin's regular expressions): the root's requirements without the
    template-only ones, then everything they need, extras followed only where requested."""
    lock = tomllib.loads((template / "uv.lock").read_text())
    copied = tomllib.loads(
        template_twins.strip_template_only((template / "pyproject.toml").read_text())
    )
    wanted = {re.split(r"[=<>!~\[; ]", spec)[0] for spec in copied["project"]["dependencies"]}
    for group in copied["dependency-groups"].values():
        wanted |= {re.split(r"[=<>!~\[; ]", spec)[0] for spec in group}
    packages = lock["package"]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for package in packages:
        by_name.setdefault(package["name"], []).append(package)
    queue: list[tuple[str, tuple[str, ...]]] = [(name, ()) for name in wanted]
    root = next(p for p in packages if p.get("source", {}).get("virtual") == ".")
    for requirement in root.get("dependencies", []):
        queue.append((_name(requirement), tuple(requirement.get("extra", ()))))
    seen: set[tuple[str, str]] = {(root["name"], root["version"])}
    expanded: set[tuple[str, str, tuple[str, ...]]] = set()
    while queue:
        name, extras = queue.pop()
        for package in by_name.get(name, []):
            key = (package["name"], package["version"], extras)
            if key in expanded:
                continue
            expanded.add(key)
            seen.add((package["name"], package["version"]))
            needs = list(package.get("dependencies", []))
            for extra in extras:
                needs += package.get("optional-dependencies", {}).get(extra, [])
            queue += [(_name(need), tuple(need.get("extra", ()))) for need in needs]
    return seen


def lock_packages(lock_path: Path) -> set[tuple[str, str]]:
    return {(p["name"], p["version"]) for p in tomllib.loads(lock_path.read_text())["package"]}


def assert_copy_is_the_template_as_copied(
    template: Path, copied: Path, answers: Mapping[str, str]
) -> None:
    assert files_of(copied) == project_files(template)
    for relpath in sorted(project_files(template) - {".copier-answers.yml", "uv.lock"}):
        committed, result = template / relpath, copied / relpath
        if is_binary(relpath):
            assert result.read_bytes() == committed.read_bytes(), relpath
        else:
            expected = template_twins.as_copied(committed.read_text(encoding="utf-8"), answers)
            assert result.read_text(encoding="utf-8") == expected, relpath
        assert is_executable(result) == is_executable(committed), relpath
    # The lock: the template's, renamed, with exactly the packages the copy's pyproject needs,
    # each block as the template has it.
    slug = template_twins.DEFAULTS["project_slug"]
    assert lock_packages(copied / "uv.lock") == {
        (answers["project_slug"] if name == slug else name, version)
        for name, version in expected_lock_packages(template)
    }
    template_blocks = (template / "uv.lock").read_text().split("\n\n[[package]]\n")
    copied_blocks = (copied / "uv.lock").read_text().split("\n\n[[package]]\n")
    assert copied_blocks[0] == template_blocks[0]
    renamed = {template_twins.rename(block, answers) for block in template_blocks[1:]}
    root = next(block for block in copied_blocks if 'source = { virtual = "." }' in block)
    assert set(copied_blocks[1:]) - {root} <= renamed


def test_default_copy_reproduces_the_committed_files_byte_for_byte(
    template: Path, default_copy: Path
) -> None:
    """Every file a copy gets is the committed one; only template-only sections go."""
    assert_copy_is_the_template_as_copied(template, default_copy, template_twins.DEFAULTS)
    unchanged = {
        relpath
        for relpath in project_files(template) - {".copier-answers.yml"}
        if (default_copy / relpath).read_bytes() == (template / relpath).read_bytes()
    }
    # Byte for byte, except what drops template-only text (README, pyproject.toml, uv.lock).
    assert project_files(template) - unchanged == {
        ".copier-answers.yml",
        "README.md",
        "pyproject.toml",
        "uv.lock",
    }


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
    assert_copy_is_the_template_as_copied(template, unusual_copy, answers_of(unusual_copy))


def test_a_copy_carries_the_service_not_the_templates_machinery(default_copy: Path) -> None:
    files = files_of(default_copy)
    assert not [name for name in files if name.endswith(".jinja")]
    for machinery in TEMPLATE_MACHINERY:
        assert not (default_copy / machinery).exists(), machinery
    service = (
        "app/main.py",
        "deploy/k8s/base/deployment.yaml",
        "tests/e2e/conftest.py",
        ".github/workflows/ci.yml",
        ".github/workflows/release.yml",
        "scripts/test",
    )
    for kept in service:
        assert kept in files, kept
    packages = {name for name, _ in lock_packages(default_copy / "uv.lock")}
    assert not packages & BENCHMARK_ONLY_PACKAGES
    pyproject = (default_copy / "pyproject.toml").read_text()
    for package in BENCHMARK_ONLY_PACKAGES:
        assert f'"{package}==' not in pyproject, package
    readme = (default_copy / "README.md").read_text()
    for template_word in ("twin", "copier copy", "make bench", "bench/", "*.jinja", "docs/r"):
        assert template_word not in readme, template_word
    assert "## Updating from the template" in readme
    for relpath in files - {".copier-answers.yml"}:
        if not is_binary(relpath):
            text = (default_copy / relpath).read_text(encoding="utf-8")
            assert "template-only" not in text or relpath == "README.md", relpath


# Text in a copy that still points at the template's machinery, in files this change does not
# own; the README says so for the two that break something (Makefile, dependabot.yml). A new
# leak fails here, and so does fixing one (then take it off this list).
KNOWN_LEAKS = {
    ("Makefile", "bench/"),  # -include bench/targets.mk, which a copy does not have
    (".github/dependabot.yml", "- /bench"),
    (".gitignore", "bench/"),
    ("pyproject.toml", "bench/"),  # ruff's per-file ignores for bench/**
    ("README.md", "docs/benchmarks.md"),  # the configuration table, from app/server/settings.py
}
POINTERS = (
    "./scripts/bench",
    "- /bench",
    "bench/",
    "docs/benchmarks.md",
    "docs/reliability.md",
    "scripts/reliability_report.py",
    "template_twins",
    "tests/template",
    "tests/bench",
)


def test_a_copy_refers_to_no_machinery_it_does_not_carry_but_the_known_leftovers(
    default_copy: Path,
) -> None:
    found = set()
    for relpath in files_of(default_copy) - {".copier-answers.yml"}:
        if relpath.startswith(("tests/", "app/")) or is_binary(relpath) or relpath == "uv.lock":
            continue  # comments in code; the leftovers that break something are config
        text = (default_copy / relpath).read_text(encoding="utf-8")
        found |= {(relpath, pointer) for pointer in POINTERS if pointer in text}
    assert found == KNOWN_LEAKS


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
    assert f'org.opencontainers.image.title="{slug}"' in read("Dockerfile")
    assert f'default="{slug}"' in read("app/settings.py")
    assert read("README.md").startswith(f"# {UNUSUAL_ANSWERS['project_name']}\n")
    for overlay in ("dev", "production"):
        kustomization = read(f"deploy/k8s/overlays/{overlay}/kustomization.yaml")
        assert f"namePrefix: {slug}-\n" in kustomization
        assert f"newName: {image}-app\n" in kustomization


def test_the_copys_release_pushes_where_its_production_overlay_pulls_from(
    unusual_copy: Path,
) -> None:
    step = workflow_step(unusual_copy / ".github/workflows/release.yml", "publish", "registry")
    result, outputs = run_step(step, unusual_copy)
    assert result.returncode == 0, result.stderr
    assert outputs == {
        "repository": UNUSUAL_ANSWERS["image_repository"],
        "host": "registry.example.com:5000",
    }


def test_backend_subnet_is_the_templates_only_for_its_own_name_and_differs_per_service(
    template: Path, unusual_copy: Path, default_copy: Path, tmp_path: Path
) -> None:
    subnets = {"fastapi-service": answers_of(default_copy)["backend_subnet"]}
    subnets[UNUSUAL_ANSWERS["project_slug"]] = answers_of(unusual_copy)["backend_subnet"]
    for slug in ("billing", "orders", "payments-eu"):
        copy(template, tmp_path / slug, {"project_slug": slug})
        subnets[slug] = answers_of(tmp_path / slug)["backend_subnet"]
        compose = (tmp_path / slug / "docker-compose.yml").read_text()
        assert compose.count(f"${{BACKEND_SUBNET:-{subnets[slug]}}}") == 2, slug
    assert subnets["fastapi-service"] == template_twins.DEFAULTS["backend_subnet"]
    assert len(set(subnets.values())) == len(subnets), subnets
    for subnet in subnets.values():
        network = ipaddress.ip_network(subnet)
        assert network.is_private, subnet
        assert network.prefixlen == 24, subnet


@pytest.mark.parametrize(
    ("subnet", "reason"),
    [
        ("172.30.0.0", "is not an IPv4 subnet"),
        ("172.30.300.0/24", "octet above 255"),
        ("10.0.0.0/8", "give a /16 to /28"),
        ("0.0.0.0/0", "give a /16 to /28"),
        ("8.8.8.0/24", "not a private"),
    ],
)
def test_a_backend_subnet_that_would_trust_too_much_is_refused(
    template: Path, tmp_path: Path, subnet: str, reason: str
) -> None:
    result = copy(template, tmp_path / "refused", {"backend_subnet": subnet}, check=False)
    assert result.returncode != 0
    assert reason in result.stdout + result.stderr
    assert not (tmp_path / "refused" / "docker-compose.yml").exists()


@pytest.mark.parametrize(
    "which",
    [
        "default",
        "unusual",
    ],
)
def test_copys_own_lint_and_type_check_pass(
    which: str, default_copy: Path, unusual_copy: Path
) -> None:
    """What scripts/test runs before pytest, in the copy: its pyproject.toml configures them."""
    copied = default_copy if which == "default" else unusual_copy
    bin_dir = Path(sys.executable).parent
    run(bin_dir / "ruff", "check", ".", cwd=copied)
    run(bin_dir / "ruff", "format", "--check", ".", cwd=copied)
    run(bin_dir / "mypy", cwd=copied, timeout=600)


def test_copys_own_tests_collect_and_the_fast_ones_pass(unusual_copy: Path) -> None:
    pytest_args = (sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider")
    collected = run(*pytest_args, "--collect-only", cwd=unusual_copy, check=False)
    assert collected.returncode == 0, collected.stdout + collected.stderr
    # Unit tests and the Kubernetes manifests (renamed); checkov would install itself into the
    # copy's own .tools/, so it is left to the template's run of the same tests.
    result = run(
        *pytest_args, "-m", "not e2e", "-k", "not checkov", "tests/unit", "tests/k8s",
        cwd=unusual_copy, check=False, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_copys_lock_file_matches_its_renamed_project(unusual_copy: Path) -> None:
    uv = ROOT / ".tools" / "bin" / "uv"
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


def get(url: str, path: str, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    host, port = url.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", path, headers={"Connection": "close", **(headers or {})})
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def compose_runner(directory: Path, project: str, env: Mapping[str, str]) -> Any:
    docker = shutil.which("docker") or "docker"

    def compose(*args: str, check: bool = True, timeout: float = 300) -> str:
        return run(
            docker, "compose", "-p", project, *args,
            cwd=directory, env=env, check=check, timeout=timeout,
        ).stdout  # fmt: skip

    return compose


def demo_endpoints_env_file(directory: Path) -> str:
    """An app env file turning on /api/demo/whoami, which these tests read (the answering host
    and pid, the client the app saw): the shipped defaults serve no demo endpoint."""
    path = directory / "demo-endpoints.env"
    path.write_text("".join(f"{key}={value}\n" for key, value in DEMO_ENDPOINTS.items()))
    return str(path)


@pytest.mark.e2e
def test_copys_images_build_and_serve_through_nginx_with_compose(
    unusual_copy: Path, tmp_path: Path
) -> None:
    slug = UNUSUAL_ANSWERS["project_slug"]
    tag = f"tpl-copy-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "APP_ENV_FILE": demo_endpoints_env_file(tmp_path),
        "APP_TAG": tag,
        "HTTP_BIND": "127.0.0.1",
        "HTTP_PORT": "0",
        "COMPOSE_PROGRESS": "plain",
    }
    compose = compose_runner(unusual_copy, tag, env)
    docker = shutil.which("docker") or "docker"
    try:
        # The copy's own subnet (its answer), not one the test picks.
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


def network_subnets() -> set[str]:
    docker = shutil.which("docker") or "docker"
    ids = run(docker, "network", "ls", "-q", cwd=ROOT).stdout.split()
    inspected = json.loads(run(docker, "network", "inspect", *ids, cwd=ROOT).stdout)
    return {c["Subnet"] for n in inspected for c in (n.get("IPAM", {}).get("Config") or [])}


@pytest.mark.e2e
def test_the_template_and_two_copies_run_side_by_side_on_their_default_subnets(
    images: None, template: Path, unusual_copy: Path, tmp_path: Path
) -> None:
    """Three stacks at once, none given BACKEND_SUBNET: each comes up on its own default, and
    each app still takes X-Forwarded-For from its own nginx only."""
    copy(template, tmp_path / "orders", {"project_slug": "orders"})
    stacks = {
        "template": template,
        "unusual": unusual_copy,
        "orders": tmp_path / "orders",
    }
    defaults = {
        name: answers_of(d)["backend_subnet"] for name, d in stacks.items() if d != template
    }
    defaults["template"] = template_twins.DEFAULTS["backend_subnet"]
    taken = network_subnets() & set(defaults.values())
    if taken:
        pytest.skip(f"a stack on this host already uses {sorted(taken)} (its own default)")
    # The same images for all three (the session's): the subject here is the network.
    run_id = uuid.uuid4().hex[:6]
    composes = {}
    for name, directory in stacks.items():
        env = {
            **os.environ,
            "APP_ENV_FILE": demo_endpoints_env_file(tmp_path),
            "APP_IMAGE": APP_IMAGE.split(":")[0],
            "NGINX_IMAGE": NGINX_IMAGE.split(":")[0],
            "APP_TAG": APP_IMAGE.split(":")[1],
            "HTTP_BIND": "127.0.0.1",
            "HTTP_PORT": "0",
            "COMPOSE_PROGRESS": "plain",
        }
        env.pop("BACKEND_SUBNET", None)
        composes[name] = compose_runner(directory, f"tpl-side-{name}-{run_id}", env)
    try:
        for compose in composes.values():
            compose("up", "-d", "--no-build", "--wait", timeout=240)
        for name, compose in composes.items():
            port = compose("port", "nginx", "8080").strip().rsplit(":", 1)[1]
            status, body = get(
                f"127.0.0.1:{port}", "/api/demo/whoami", {"X-Forwarded-For": "203.0.113.7"}
            )
            assert status == 200, (name, body)
            client = json.loads(body)["client"]
            assert client != "203.0.113.7", name
            assert ipaddress.ip_address(client) in ipaddress.ip_network(defaults[name]), name
            config = json.loads(compose("config", "--format", "json"))
            trusted = config["services"]["app"]["environment"]["FORWARDED_ALLOW_IPS"]
            assert trusted == defaults[name] != "*", name
    finally:
        for compose in composes.values():
            compose("down", "-v", "--remove-orphans", "-t", "5", check=False, timeout=120)
