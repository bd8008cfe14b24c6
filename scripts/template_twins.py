"""Derive the Copier twins (NAME.jinja beside NAME) from the committed working files.

This repository is a working project *and* a Copier template. Copier renders `NAME.jinja` into
`NAME` and skips the committed `NAME` when its twin exists, so every file that carries the
project's name has a twin. Nobody writes a twin by hand: this script derives each one from the
committed file by replacing the default answers (`DEFAULTS`) with Jinja expressions, so
`copier copy --defaults` reproduces the committed files byte for byte (tests/template checks it).

    python scripts/template_twins.py --write   # after editing a file listed in TWINNED
    python scripts/template_twins.py --check   # exit 1 if a twin is stale or one is missing

To rename something new in copies, add its file to TWINNED (or a new default to RULES) and run
--write. Literal Jinja markers already in a file (`${{ github.sha }}`, `docker inspect -f
'{{.State.Running}}'`) are wrapped in `{% raw %}` so rendering reproduces them.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUFFIX = ".jinja"

# The answers `copier copy --defaults` gives; copier.yml's defaults must produce exactly these.
DEFAULTS: Mapping[str, str] = {
    "project_name": "FastAPI production template",
    "project_slug": "fastapi-service",
    "description": (
        "A FastAPI service behind nginx, served by Gunicorn with UvicornWorker, sized to the CPUs "
        "its container may use."
    ),
    "image_repository": "ghcr.io/your-org/fastapi-service",
    "author": "Your Name",
}

# (text in the committed files, Jinja expression that renders it in a copy). At one position the
# first rule wins, so the image repository (which contains the slug) comes before the slug.
RULES: tuple[tuple[str, str], ...] = (
    (DEFAULTS["image_repository"], "image_repository"),
    (DEFAULTS["project_name"], "project_name"),
    (DEFAULTS["description"], "description"),
    (DEFAULTS["author"], "author"),
    # Kubernetes derives environment variable names from Service names: FASTAPI_SERVICE_PORT...
    (
        DEFAULTS["project_slug"].upper().replace("-", "_"),
        'project_slug | upper | replace("-", "_")',
    ),
    (DEFAULTS["project_slug"], "project_slug"),
)

# Every file that gets a twin: the one list to extend.
TWINNED: tuple[str, ...] = (
    "README.md",
    "pyproject.toml",
    "uv.lock",
    "Dockerfile",
    "docker-compose.yml",
    ".env.example",
    "app/settings.py",
    "tests/e2e/conftest.py",
    "tests/e2e/test_compose.py",
    ".github/workflows/release.yml",
    # Kubernetes: the overlays name the service (namespace, namePrefix, labels, images).
    "deploy/k8s/overlays/dev/kustomization.yaml",
    "deploy/k8s/overlays/production/kustomization.yaml",
)

# Twins that render the committed file through `replace` filters instead of repeating it: a
# 470 KB lock twin would double the repository and go stale with every dependency bump, while
# this one never changes. Only for files without Jinja markers (the include renders them).
INCLUDED: frozenset[str] = frozenset({"uv.lock"})

# In the template only; copier.yml's _exclude keeps them out of copies.
TEMPLATE_ONLY: tuple[str, ...] = (
    "copier.yml",
    "scripts/template_twins.py",
    "tests/template/",
    "{{_copier_conf.answers_file}}.jinja",
)

JINJA_MARKERS = ("{{", "{%", "{#")


def _needs_raw(segment: str) -> bool:
    # A trailing "{" would merge with the "{{" of the expression that follows it.
    return any(marker in segment for marker in JINJA_MARKERS) or segment.endswith("{")


def _literal(segment: str) -> str:
    if not _needs_raw(segment):
        return segment
    if "{% endraw %}" in segment:
        raise ValueError("a file containing '{% endraw %}' cannot be escaped with {% raw %}")
    return "{% raw %}" + segment + "{% endraw %}"


def derive_inline(text: str, rules: Iterable[tuple[str, str]] = RULES) -> str:
    """The twin of `text`: each default answer becomes its expression, the rest stays literal."""
    rules = tuple(rules)
    expression_for = dict(rules)
    pattern = re.compile("|".join(re.escape(needle) for needle, _ in rules))
    parts: list[str] = []
    position = 0
    for match in pattern.finditer(text):
        parts.append(_literal(text[position : match.start()]))
        parts.append("{{ " + expression_for[match.group()] + " }}")
        position = match.end()
    parts.append(_literal(text[position:]))
    return "".join(parts)


def derive_included(relpath: str, text: str, rules: Iterable[tuple[str, str]] = RULES) -> str:
    """A twin that includes the committed file and replaces the default answers in its output."""
    if any(marker in text for marker in JINJA_MARKERS):
        raise ValueError(f"{relpath} contains Jinja markers: it needs an inline twin")
    filters = " | ".join(
        f"replace({_jinja_string(needle)}, {expression})"
        for needle, expression in rules
        if needle in text
    )
    # No newline after endfilter: the included file brings its own.
    return f'{{% filter {filters} %}}{{% include "{relpath}" %}}{{% endfilter %}}'


def _jinja_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def twin_path(relpath: str) -> str:
    return relpath + SUFFIX


def expected_twins(root: Path = ROOT, files: Iterable[str] = TWINNED) -> dict[str, str]:
    """{twin path: content} for every listed file that exists in `root`."""
    twins = {}
    for relpath in files:
        source = root / relpath
        if not source.is_file():
            continue
        text = source.read_text(encoding="utf-8")
        if relpath in INCLUDED:
            twins[twin_path(relpath)] = derive_included(relpath, text)
        else:
            twins[twin_path(relpath)] = derive_inline(text)
    return twins


def stale_twins(root: Path = ROOT) -> list[str]:
    """Twins whose content differs from what the committed file derives (or that are missing)."""
    stale = []
    for relpath, content in expected_twins(root).items():
        path = root / relpath
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            stale.append(relpath)
    return stale


def tracked_files(root: Path = ROOT) -> list[str]:
    """The working tree's files as git sees them (tracked and new, not ignored, not deleted)."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted({name for name in listing.split("\0") if name and (root / name).is_file()})


def is_template_only(relpath: str) -> bool:
    return relpath.endswith(SUFFIX) or any(
        relpath == entry or (entry.endswith("/") and relpath.startswith(entry))
        for entry in TEMPLATE_ONLY
    )


def files_missing_twin(root: Path = ROOT) -> list[str]:
    """Files that carry a default answer but have no twin: copies would keep the old name."""
    missing = []
    for relpath in tracked_files(root):
        if relpath in TWINNED or is_template_only(relpath):
            continue
        try:
            text = (root / relpath).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if any(needle in text for needle, _ in RULES):
            missing.append(relpath)
    return missing


def useless_twins(root: Path = ROOT) -> list[str]:
    """Listed files that no longer carry any default answer (the twin renames nothing)."""
    return [
        relpath
        for relpath in TWINNED
        if (root / relpath).is_file()
        and not any(needle in (root / relpath).read_text(encoding="utf-8") for needle, _ in RULES)
    ]


def write(root: Path = ROOT, files: Iterable[str] = TWINNED) -> list[str]:
    """Write the twins; remove twins of listed files that no longer exist. Returns what changed."""
    files = tuple(files)
    changed = []
    for relpath, content in expected_twins(root, files).items():
        path = root / relpath
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
            changed.append(relpath)
    for relpath in files:
        orphan = root / twin_path(relpath)
        if orphan.is_file() and not (root / relpath).is_file():
            orphan.unlink()
            changed.append(twin_path(relpath))
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="regenerate every twin")
    mode.add_argument("--check", action="store_true", help="exit 1 if any twin is out of date")
    args = parser.parse_args(argv)

    if args.write:
        for relpath in write():
            print(f"wrote {relpath}")
    problems = [f"{relpath} is out of date" for relpath in stale_twins()]
    problems += [
        f"{relpath} carries a default answer but has no twin: add it to TWINNED"
        for relpath in files_missing_twin()
    ]
    problems += [
        f"{relpath} is in TWINNED but carries no default answer" for relpath in useless_twins()
    ]
    if problems:
        print("\n".join(problems), file=sys.stderr)
        if args.check:
            print("fix: python scripts/template_twins.py --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
