"""The app image on every Python line it supports, built with `docker build` as a user would: the
Dockerfile's literal base (the one Dependabot bumps) as it stands, and every other base through a
build context named after the literal one (how an air-gapped user builds on a mirrored base).
Each image boots, answers /readyz, prints its config and runs the Python of the base it was given.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from tests.docker import base_image, docker
from tests.e2e.conftest import APP_IMAGE, ROOT, response, wait_healthy

pytestmark = pytest.mark.e2e

DEFAULT = base_image()
# The Dockerfile's own base stays in the list after Dependabot moves it on.
BASES = sorted({"python:3.13-slim", "python:3.14-slim", "python:3.15-slim", DEFAULT})
HARDENED = ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL"]
HARDENED += ["--security-opt", "no-new-privileges"]

# Imports every compiled extension module in the venv (a wheel built for another Python fails
# here); prints the Python version and the modules.
PROBE = """
import importlib, json, pathlib, sys, sysconfig
site = pathlib.Path(sysconfig.get_paths()["purelib"])
modules = sorted(
    ".".join(path.relative_to(site).with_name(path.name.split(".")[0]).parts)
    for pattern in ("*.cpython-*.so", "*.abi3.so")
    for path in site.rglob(pattern)
)
for module in modules:
    importlib.import_module(module)
print(json.dumps({"python": "%d.%d" % sys.version_info[:2], "extensions": modules}))
"""
# What the server cannot run without: its event loop, its HTTP parser, settings validation.
REQUIRED_EXTENSIONS = {"uvloop.loop", "httptools.parser.parser", "pydantic_core._pydantic_core"}


@pytest.fixture(params=BASES)
def image(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(tag, base): the app image built on `base`, removed afterwards. Its layers stay in the
    build cache, so the next build on that base redoes only what changed."""
    base: str = request.param
    tag = f"{APP_IMAGE}-{base.replace(':', '-')}"
    override = [] if base == DEFAULT else ["--build-context", f"{DEFAULT}=docker-image://{base}"]
    try:
        docker("build", "-q", *override, "-t", tag, str(ROOT), timeout=900)
        yield tag, base
    finally:
        docker("rmi", "-f", tag, check=False)


def test_image_on_each_base_boots_answers_readyz_and_prints_its_config(
    image: tuple[str, str],
) -> None:
    tag, base = image
    probe = json.loads(docker("run", "--rm", "--entrypoint", "python", tag, "-c", PROBE).stdout)
    assert probe["python"] == base.removeprefix("python:").removesuffix("-slim")
    assert set(probe["extensions"]) >= REQUIRED_EXTENSIONS, probe

    config = docker("run", "--rm", *HARDENED, "--cpus=1", tag, "print-config", timeout=60)
    assert json.loads(config.stdout)["gunicorn"]["workers"] == 1

    name = f"tpl-base-{uuid.uuid4().hex[:8]}"
    try:
        docker("run", "-d", "--name", name, "--health-interval=1s", *HARDENED,
               "-p", "127.0.0.1::8000", tag)  # fmt: skip
        wait_healthy(name)
        port = docker("port", name, "8000/tcp").stdout.split()[0].rsplit(":", 1)[1]
        status, _, body = response(f"http://127.0.0.1:{port}", path="/readyz")
        assert status == 200, body
    finally:
        docker("rm", "-f", "-v", name, check=False)
