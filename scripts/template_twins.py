"""Copier twins (NAME.jinja beside NAME): what a copy of this template gets instead of NAME.

This repository is a working project *and* a Copier template. Copier renders `NAME.jinja` into
`NAME` and skips the committed `NAME` when its twin exists. A file needs a twin when it carries a
default answer (`DEFAULTS`: the project's name, slug, image repository, ...) or a template-only
section, text only the template has:

    <!-- template-only -->  ...  <!-- /template-only -->     Markdown, on their own lines or inline
    # template-only ...     ...  # /template-only            TOML, YAML, shell: whole lines

Almost every twin is derived: one line that includes the committed file and, in its output,
drops the template-only sections and replaces each default answer with the copy's. It names the
file, not its content, so it never goes stale: edit the file, never the twin. Only a twin with
real template logic is written by hand (`HANDWRITTEN`). `copier copy --defaults` reproduces every
committed file, minus its template-only sections (tests/template checks it byte for byte).

    .venv/bin/python scripts/template_twins.py --write   # a file gained a name or a marker
    .venv/bin/python scripts/template_twins.py --check   # exit 1 if a twin is missing or wrong

Files copies do not get at all are listed in copier.yml's `_exclude`, which this script reads.
A twinned file cannot contain Jinja markers (`{{`, `{%`, `{#`): the include would render them.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

# Copier's own dependency (it matches _exclude with it), in the project's .venv.
from pathspec import PathSpec

ROOT = Path(__file__).resolve().parents[1]
SUFFIX = ".jinja"
ANSWERS_TEMPLATE = "{{_copier_conf.answers_file}}.jinja"

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
    "backend_subnet": "172.30.117.0/24",
}

# Which answer each default stands for, the longest first where one contains another (the image
# repository contains the slug). Every twin replaces all of them, present in its file or not.
RULES: tuple[tuple[str, str], ...] = (
    (DEFAULTS["image_repository"], "image_repository"),
    (DEFAULTS["project_name"], "project_name"),
    (DEFAULTS["description"], "description"),
    (DEFAULTS["author"], "author"),
    (DEFAULTS["project_slug"], "project_slug"),
    (DEFAULTS["backend_subnet"], "backend_subnet"),
)

# Text between the markers (Markdown block markers take their line and one blank line after).
TEMPLATE_ONLY = (
    r"(?ms)^<!-- template-only -->\n.*?^<!-- /template-only -->\n\n?"
    r"|<!-- template-only -->.*?<!-- /template-only -->"
    r"|^[ \t]*# template-only\b[^\n]*\n.*?^[ \t]*# /template-only\b[^\n]*\n"
)
MARKERS = ("<!-- template-only -->", "<!-- /template-only -->")
HASH_MARKERS = (
    re.compile(r"(?m)^[ \t]*# template-only\b"),
    re.compile(r"(?m)^[ \t]*# /template-only\b"),
)

# Twins with logic a replacement cannot express, written by hand (twin -> the file it renders).
HANDWRITTEN: Mapping[str, str] = {
    # Drops from the lock the requirements pyproject.toml marks template-only (the benchmark's),
    # and every package only they needed: a copy's pyproject.toml does not ask for them.
    "uv.lock.jinja": "uv.lock",
}

JINJA_MARKERS = ("{{", "{%", "{#")
# Stands for an answer between the two replacement passes, so an answer that contains another
# default (an image repository named after the default slug) is never replaced again.
SENTINEL = "@@copier-answer:{}@@"


def strip_template_only(text: str) -> str:
    """The text without its template-only sections: what a copy gets, before the renaming."""
    return re.sub(TEMPLATE_ONLY, "", text)


def rename(text: str, answers: Mapping[str, str]) -> str:
    """Every default answer replaced by the copy's (what the twins' `replace` filters do)."""
    for needle, key in RULES:
        text = text.replace(needle, SENTINEL.format(key))
    for _, key in RULES:
        text = text.replace(SENTINEL.format(key), answers[key])
    return text


def as_copied(text: str, answers: Mapping[str, str]) -> str:
    """What a file becomes in a copy with these answers."""
    return rename(strip_template_only(text), answers)


def _jinja_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def copy_filters() -> str:
    """The filter chain every twin applies to the committed text (`as_copied` in Jinja)."""
    filters = [f'regex_replace({_jinja_string(TEMPLATE_ONLY)}, "")']
    filters += [
        f"replace({_jinja_string(needle)}, {_jinja_string(SENTINEL.format(key))})"
        for needle, key in RULES
    ]
    filters += [f"replace({_jinja_string(SENTINEL.format(key))}, {key})" for _, key in RULES]
    return " | ".join(filters)


def derive(relpath: str) -> str:
    """The twin of `relpath`: the file, included, through `copy_filters()`. No newline after
    endfilter: the included file brings its own."""
    return (
        f"{{# {relpath} as a copy gets it; written by scripts/template_twins.py: edit {relpath}, "
        f"not this #}}{{% filter {copy_filters()} %}}{{% include {_jinja_string(relpath)} %}}"
        "{% endfilter %}"
    )


def twin_path(relpath: str) -> str:
    return relpath + SUFFIX


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


@cache
def _exclusion_spec(copier_yml: str) -> PathSpec[Any]:
    return PathSpec.from_lines("gitignore", _excluded_patterns(copier_yml))


def _excluded_patterns(copier_yml: str) -> tuple[str, ...]:
    """copier.yml's `_exclude` list (the plain patterns; templated entries are the user's)."""
    block = re.search(r"(?m)^_exclude:\n((?:[ \t]+(?:-.*|#.*)\n)+)", copier_yml)
    if not block:
        return ()
    patterns = []
    for line in block.group(1).splitlines():
        item = line.strip()
        if item.startswith("- "):
            value = item[2:].strip().strip("\"'")
            if not any(marker in value for marker in JINJA_MARKERS):
                patterns.append(value)
    return tuple(patterns)


def excluded_from_copies(root: Path = ROOT) -> tuple[str, ...]:
    return _excluded_patterns((root / "copier.yml").read_text(encoding="utf-8"))


def is_template_only(relpath: str, root: Path = ROOT) -> bool:
    """Files copies never get: twins and the answers template (Copier renders them instead),
    and whatever copier.yml excludes, matched as Copier matches it (gitignore patterns)."""
    if relpath.endswith(SUFFIX):
        return True
    spec = _exclusion_spec((root / "copier.yml").read_text(encoding="utf-8"))
    return bool(spec.match_file(relpath))


def _text(root: Path, relpath: str) -> str | None:
    try:
        return (root / relpath).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None


def has_template_only_section(text: str) -> bool:
    return MARKERS[0] in text or bool(HASH_MARKERS[0].search(text))


def needs_twin(text: str) -> bool:
    return has_template_only_section(text) or any(needle in text for needle, _ in RULES)


def copied_files(root: Path = ROOT) -> list[str]:
    """The committed files a copy gets (each as it is, or through its twin)."""
    return [relpath for relpath in tracked_files(root) if not is_template_only(relpath, root)]


def expected_twins(root: Path = ROOT) -> dict[str, str]:
    """{twin path: content} for every derived twin the working tree needs."""
    handwritten_files = set(HANDWRITTEN.values())
    twins = {}
    for relpath in copied_files(root):
        if relpath in handwritten_files:
            continue
        text = _text(root, relpath)
        if text is not None and needs_twin(text):
            twins[twin_path(relpath)] = derive(relpath)
    return twins


def problems(root: Path = ROOT) -> list[str]:
    """Everything that would make a copy differ from what the committed files say."""
    found = []
    expected = expected_twins(root)
    for twin, content in expected.items():
        path = root / twin
        if not path.is_file():
            found.append(f"{twin} is missing")
        elif path.read_text(encoding="utf-8") != content:
            found.append(f"{twin} is not the derived twin (edit {twin.removesuffix(SUFFIX)})")
    present = {relpath for relpath in tracked_files(root) if relpath.endswith(SUFFIX)}
    for twin in sorted(present - set(expected) - set(HANDWRITTEN) - {ANSWERS_TEMPLATE}):
        found.append(f"{twin} renders a file that needs no twin (or no longer exists)")
    for twin in sorted(set(HANDWRITTEN) - present):
        found.append(f"{twin} (hand-written) is missing")
    for twin in sorted(set(HANDWRITTEN) & present):
        # The renaming is the same in every twin: a hand-written one ends with copy_filters().
        if f"{{%- filter {copy_filters()} -%}}" not in (root / twin).read_text(encoding="utf-8"):
            found.append(f"{twin} does not rename with copy_filters(): paste it from the script")
    for relpath in copied_files(root):
        text = _text(root, relpath)
        if text is None:
            continue
        twinned = twin_path(relpath) in expected or twin_path(relpath) in HANDWRITTEN
        if twinned and any(marker in text for marker in JINJA_MARKERS):
            found.append(f"{relpath} has a twin and Jinja markers the include would render")
        if text.count(MARKERS[0]) != text.count(MARKERS[1]) or len(
            HASH_MARKERS[0].findall(text)
        ) != len(HASH_MARKERS[1].findall(text)):
            found.append(f"{relpath}: a template-only section is not closed")
        if any(SENTINEL.format(key) in text for _, key in RULES):
            found.append(f"{relpath} contains a replacement sentinel")
    return found


def write(root: Path = ROOT) -> list[str]:
    """Write the derived twins; remove derived twins no file needs. Returns what changed."""
    changed = []
    expected = expected_twins(root)
    for twin, content in expected.items():
        path = root / twin
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
            changed.append(twin)
    for twin in tracked_files(root):
        if (
            twin.endswith(SUFFIX)
            and twin not in expected
            and twin not in HANDWRITTEN
            and twin != ANSWERS_TEMPLATE
            and (root / twin).read_text(encoding="utf-8").startswith("{# ")
            and "written by scripts/template_twins.py" in (root / twin).read_text(encoding="utf-8")
        ):
            (root / twin).unlink()
            changed.append(twin)
    return changed


def twins(root: Path = ROOT) -> list[str]:
    return [relpath for relpath in tracked_files(root) if relpath.endswith(SUFFIX)]


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="write the derived twins")
    mode.add_argument("--check", action="store_true", help="exit 1 if a twin is missing or wrong")
    args = parser.parse_args(list(argv) if argv is not None else None)

    if args.write:
        for relpath in write():
            print(f"wrote {relpath}" if (ROOT / relpath).exists() else f"removed {relpath}")
    found = problems()
    if found:
        print("\n".join(found), file=sys.stderr)
        print("fix: .venv/bin/python scripts/template_twins.py --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
