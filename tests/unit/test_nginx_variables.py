"""scripts/nginx_variables.py against the files that read each variable: the nginx and acme
images' scripts, templates and Dockerfiles, the compose files and the Kubernetes env file. Each
test parses the real files, so a variable added, dropped or given another default in one of them
without the declaration (and so the README's table) fails here."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from dotenv import dotenv_values

from scripts.nginx_variables import IMAGE_CONTEXTS, SERVICE_IMAGES, VARIABLES, Reader, Variable
from tests.unit.test_copies_agree import dockerfile_env

ROOT = Path(__file__).resolve().parents[2]
DECLARED: dict[str, Variable] = {variable.name: variable for variable in VARIABLES}
DECLARATION = "scripts/nginx_variables.py"
K8S_NGINX_ENV = "deploy/k8s/base/nginx-config.env"
# Environment variables are upper case, the scripts' own variables lower case (a convention
# these files keep, and what tells the two apart here).
NAME = r"[A-Z_][A-Z0-9_]*"


def shell_segments(script: str) -> Iterator[tuple[str, str]]:
    """(quoting, text) pieces of a POSIX shell script: quoting is "" (bare), "'" or '"';
    comments are dropped. Enough for these scripts: no heredocs, no nested quotes in a `$(...)`
    that matter (a word in one is read as bare or double-quoted, both of which expand)."""
    i, quote, start = 0, "", 0
    while i < len(script):
        char = script[i]
        if quote == "'":
            if char == "'":
                yield quote, script[start:i]
                quote, start = "", i + 1
        elif quote == '"':
            if char == "\\":
                i += 1
            elif char == '"':
                yield quote, script[start:i]
                quote, start = "", i + 1
        elif char == "\\":
            i += 1
        elif char in "'\"":
            yield "", script[start:i]
            quote, start = char, i + 1
        elif char == "#" and (i == 0 or script[i - 1] in " \t\n;"):
            yield "", script[start:i]
            end = script.find("\n", i)
            i = start = len(script) if end < 0 else end
            continue
        i += 1
    yield quote, script[start:]


def expansions(text: str) -> Iterator[tuple[str, str]]:
    """(name, operator and word) of each `$NAME` or `${NAME...}`: "" for a plain reference,
    `:-default`, `:?message` and so on otherwise."""
    for match in re.finditer(rf"\$(?:\{{({NAME})([^}}]*)\}}|({NAME}))", text):
        yield match[1] or match[3], match[2] or ""


def shell_reads(path: Path) -> dict[str, set[str]]:
    """Each environment variable the script expands (single quotes expand nothing), with the
    operators it uses on it; minus the ones the script assigns itself."""
    segments = list(shell_segments(path.read_text()))
    reads: dict[str, set[str]] = defaultdict(set)
    for quoting, text in segments:
        if quoting != "'":
            for name, operator in expansions(text):
                reads[name].add(operator)
    bare = "\n".join(text for quoting, text in segments if not quoting)
    for assigned in re.findall(rf"(?:^|[\s;&|(]){NAME}(?==)", bare, re.M):
        reads.pop(assigned.strip(" \t\n;&|("), None)
    return dict(reads)


def uncommented(config: str) -> str:
    """An nginx config without its comment lines."""
    return "\n".join(line for line in config.splitlines() if not line.lstrip().startswith("#"))


def envsubst_names(text: str) -> set[str]:
    """The names envsubst would replace in a template: `$NAME` and `${NAME}`."""
    return {name for name, _ in expansions(uncommented(text))}


def rendered_from_the_environment(context: Path, path: Path) -> bool:
    """The official nginx image's entrypoint renders /etc/nginx/templates/*.template (the
    Dockerfile copies templates/ there) with every variable of its environment; no
    NGINX_ENVSUBST_FILTER narrows it (the Dockerfile sets none)."""
    return path.parent == context / "templates" and path.suffix == ".template"


def kind_of(context: Path, path: Path) -> str:
    """How a file of an image's build context meets the environment: "shell" (reads it),
    "environment template" (rendered from it), "script template" (rendered by a script with
    values the script computes), "Dockerfile" (sets defaults, reads nothing), "static" (nginx
    config: nginx substitutes no environment) or "unknown"."""
    if path.suffix == ".sh":
        return "shell"
    if rendered_from_the_environment(context, path):
        return "environment template"
    if path.suffix == ".template":
        return "script template"
    if path.name == "Dockerfile":
        return "Dockerfile"
    if path.suffix == ".conf":
        return "static"
    return "unknown"


def context_files(context: Path) -> list[Path]:
    return sorted(path for path in context.rglob("*") if path.is_file())


def image_reads(context: Path) -> dict[str, set[str]]:
    """Every variable an image reads from its environment, with the operators used on it
    (`:-default`...), over every file of its build context."""
    reads: dict[str, set[str]] = defaultdict(set)
    for path in context_files(context):
        kind = kind_of(context, path)
        if kind == "shell":
            found = shell_reads(path)
        elif kind == "environment template":
            found = {name: {""} for name in envsubst_names(path.read_text())}
        else:
            continue
        for name, operators in found.items():
            reads[name] |= operators
    return dict(reads)


def compose_files() -> list[Path]:
    return sorted(ROOT.glob("docker-compose*.yml"))


def compose_services(path: Path) -> dict[str, Any]:
    """The compose file's services that run one of the edge's images (nginx, acme)."""
    services: dict[str, Any] = yaml.safe_load(path.read_text()).get("services") or {}
    return {name: spec for name, spec in services.items() if name in SERVICE_IMAGES}


def strings(tree: Any) -> Iterator[str]:
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(tree, list):
        for item in tree:
            yield from strings(item)
    elif tree is not None:
        yield str(tree)


def compose_interpolations(path: Path) -> dict[str, set[str]]:
    """Each `${NAME...}` compose substitutes into its nginx and acme services, with operators."""
    found: dict[str, set[str]] = defaultdict(set)
    for spec in compose_services(path).values():
        for text in strings(spec):
            for name, operator in expansions(text.replace("$$", "")):
                found[name].add(operator)
    return dict(found)


def every_read() -> dict[str, dict[str, set[str]]]:
    """name -> reader (an image, or a compose file by name) -> the operators it uses on it."""
    found: dict[str, dict[str, set[str]]] = defaultdict(dict)
    for image, context in IMAGE_CONTEXTS.items():
        for name, operators in image_reads(ROOT / context).items():
            found[name][image] = operators
    for path in compose_files():
        for name, operators in compose_interpolations(path).items():
            found[name][path.name] = operators
    return dict(found)


READS = every_read()


@pytest.mark.parametrize("context", sorted(IMAGE_CONTEXTS.values()))
def test_every_file_of_an_image_is_of_a_kind_the_inventory_reads(context: str) -> None:
    # A new kind of file (a Lua script, a config rendered another way) must say how it reads
    # the environment here first, or its variables would go unseen.
    unknown = [
        str(path.relative_to(ROOT))
        for path in context_files(ROOT / context)
        if kind_of(ROOT / context, path) == "unknown"
    ]
    assert not unknown, f"files the inventory does not know how to read: {unknown}"


@pytest.mark.parametrize("context", sorted(IMAGE_CONTEXTS.values()))
def test_static_nginx_config_names_no_environment_variable(context: str) -> None:
    # Nothing renders these: a ${NAME} would reach nginx, which takes it for one of its own
    # variables and refuses to start. A config that needs one belongs in templates/.
    for path in context_files(ROOT / context):
        if kind_of(ROOT / context, path) == "static":
            found = envsubst_names(path.read_text())
            assert not found, f"{path.relative_to(ROOT)} is not rendered but names {found}"


def test_every_compose_file_that_configures_the_edge_is_a_reader_the_declaration_knows() -> None:
    readers: tuple[str, ...] = get_args(Reader)
    unknown = [
        path.name
        for path in compose_files()
        if path.name not in readers and compose_interpolations(path)
    ]
    assert not unknown, f"compose files give nginx or acme variables, not in Reader: {unknown}"


def test_every_variable_the_edge_reads_is_declared() -> None:
    undeclared = {name: sorted(readers) for name, readers in READS.items() if name not in DECLARED}
    assert not undeclared, f"read but not declared in {DECLARATION}: {undeclared}"


def test_every_declared_variable_is_read_somewhere() -> None:
    unread = sorted(set(DECLARED) - set(READS))
    assert not unread, (
        f"declared in {DECLARATION}, read by no script, template or compose file: {unread}"
    )


def test_each_variable_is_read_by_the_components_its_declaration_names() -> None:
    wrong = {
        name: {"declared": sorted(variable.read_by), "read by": sorted(READS.get(name, {}))}
        for name, variable in DECLARED.items()
        if set(variable.read_by) != set(READS.get(name, {}))
    }
    assert not wrong, f"{DECLARATION} names other readers than the files show: {wrong}"


def stated_defaults() -> Iterator[tuple[str, str, str | None]]:
    """(name, where, default) for every default a file states: a Dockerfile's ENV, a script's
    or a compose file's non-empty `${NAME:-default}`, and None for compose's `${NAME:?error}`
    (required). A script's `${NAME:-}` only reads an unset variable as empty under `set -u`."""
    for context in IMAGE_CONTEXTS.values():
        dockerfile = ROOT / context / "Dockerfile"
        for name, value in dockerfile_env(dockerfile).items():
            yield name, f"{context}/Dockerfile ENV", value
        for script in sorted((ROOT / context).rglob("*.sh")):
            for name, operators in shell_reads(script).items():
                for operator in operators:
                    if operator.startswith(":-") and operator != ":-":
                        yield name, str(script.relative_to(ROOT)), operator[2:]
    for path in compose_files():
        for name, operators in compose_interpolations(path).items():
            for operator in operators:
                if operator.startswith(":-"):
                    yield name, path.name, operator[2:]
                elif operator.startswith(":?"):
                    yield name, path.name, None


def test_the_declared_defaults_are_the_files_defaults() -> None:
    stated: dict[str, dict[str, str | None]] = defaultdict(dict)
    for name, where, default in stated_defaults():
        stated[name][where] = default
    wrong = {
        name: {"declared": DECLARED[name].default, **stated[name]}
        for name in sorted(stated)
        if name in DECLARED and set(stated[name].values()) != {DECLARED[name].default}
    }
    assert not wrong, f"defaults disagree with {DECLARATION}: {wrong}"
    unstated = sorted(
        name
        for name, variable in DECLARED.items()
        if variable.default is not None and not stated[name]
    )
    assert not unstated, f"{DECLARATION} declares a default no file sets: {unstated}"


def test_required_variables_are_the_ones_compose_requires() -> None:
    for name, where, default in stated_defaults():
        if default is None:
            assert DECLARED[name].required, f"{where} requires {name}: say when in {DECLARATION}"


def test_the_expansions_used_are_ones_these_checks_understand() -> None:
    # `${NAME-x}` or `${NAME:=x}` would set a default the default check above does not read.
    for name, readers in READS.items():
        for reader, operators in readers.items():
            for operator in operators:
                assert re.fullmatch(r"|:-.*|:\?.*", operator), f"{reader}: ${{{name}{operator}}}"


def test_every_template_variable_has_a_default_in_the_image() -> None:
    # The image's entrypoint substitutes only variables that are set: an unset one stays
    # `${NAME}` in the rendered config, and nginx refuses to start on it.
    context = ROOT / IMAGE_CONTEXTS["nginx image"]
    image_env = dockerfile_env(context / "Dockerfile")
    for template in sorted((context / "templates").glob("*.template")):
        missing = envsubst_names(template.read_text()) - set(image_env)
        assert not missing, f"{template.name}: no ENV default in the Dockerfile for {missing}"


def test_the_tls_server_template_takes_its_values_from_the_script_that_renders_it() -> None:
    # tls/server.conf.template is not rendered from the environment: render_server_conf passes
    # envsubst the values it computed (the certificate in use, the redirect's port) and names
    # exactly the variables to replace. A name missing from that list would stay in the config.
    tls = ROOT / IMAGE_CONTEXTS["nginx image"] / "tls"
    [listed] = re.findall(r"envsubst '([^']*)'", (tls / "lib.sh").read_text())
    used, rendered = (
        envsubst_names((tls / "server.conf.template").read_text()),
        envsubst_names(listed),
    )
    assert used == rendered, (
        f"tls/server.conf.template uses {sorted(used)}, render_server_conf (lib.sh) substitutes "
        f"{sorted(rendered)}"
    )


@pytest.mark.parametrize("context", sorted(IMAGE_CONTEXTS.values()))
def test_every_dockerfile_env_is_declared_and_read_by_its_image(context: str) -> None:
    [image] = [image for image, path in IMAGE_CONTEXTS.items() if path == context]
    names = list(dockerfile_env(ROOT / context / "Dockerfile"))
    undeclared = [name for name in names if name not in DECLARED]
    assert not undeclared, f"{context}/Dockerfile sets {undeclared}: declare them in {DECLARATION}"
    unread = [name for name in names if image not in DECLARED[name].read_by]
    assert not unread, f"{context}/Dockerfile sets {unread}, which {image} never reads"


@pytest.mark.parametrize("path", compose_files(), ids=lambda path: path.name)
def test_every_variable_compose_gives_the_edge_is_declared_and_read_by_its_image(
    path: Path,
) -> None:
    for service, spec in compose_services(path).items():
        image = SERVICE_IMAGES[service]
        assert spec.get("build", {}).get("context", IMAGE_CONTEXTS[image]) == IMAGE_CONTEXTS[image]
        environment = list(spec.get("environment") or {})
        undeclared = [name for name in environment if name not in DECLARED]
        assert not undeclared, f"{path.name} sets {undeclared} for {service}: declare them"
        unread = [name for name in environment if image not in DECLARED[name].read_by]
        assert not unread, f"{path.name} sets {unread} for {service}, which {image} never reads"


def test_every_variable_of_the_pods_nginx_is_declared_and_read_by_the_nginx_image() -> None:
    names = list(dotenv_values(ROOT / K8S_NGINX_ENV))
    undeclared = [name for name in names if name not in DECLARED]
    assert not undeclared, f"{K8S_NGINX_ENV} sets {undeclared}: declare them in {DECLARATION}"
    unread = [name for name in names if "nginx image" not in DECLARED[name].read_by]
    assert not unread, f"{K8S_NGINX_ENV} sets {unread}, which the nginx image never reads"


def test_env_example_offers_the_declared_defaults() -> None:
    # .env.example is what a user copies to .env: a value there other than the default (or
    # empty, which leaves compose's default) would quietly contradict the README's table.
    offered = dict(
        re.findall(r"^(?:# )?([A-Z_]+)=(.*)$", (ROOT / ".env.example").read_text(), re.M)
    )
    for variable in VARIABLES:
        if any(reader.startswith("docker-compose") for reader in variable.read_by):
            assert variable.name in offered, f".env.example does not offer {variable.name}"
            value = offered[variable.name]
            assert value in ("", variable.default), f".env.example: {variable.name}={value}"
