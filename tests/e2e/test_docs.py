"""/docs and /redoc render in a browser that can reach nothing but the stack, as in an air-gapped
network: Swagger UI and ReDoc come from the image, not from a CDN.

The browser (tests/e2e/Dockerfile.browser, Debian's headless Chromium) runs in a container on a
network of its own made `--internal`, which nginx joins: nothing outside is reachable from it.
Chromium's NetLog lists every request it starts, answered or not, so the test sees a request to
a CDN even though it cannot succeed; the dumped DOM shows whether the UI drew the operations.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.docker import docker
from tests.e2e.conftest import PROJECT, TAG, Stack

pytestmark = pytest.mark.e2e

DOCKERFILE = Path(__file__).with_name("Dockerfile.browser")
BROWSER_IMAGE = f"{PROJECT}-browser:{TAG}"
# nginx's name on the browser's network: every request the pages make must go here.
EDGE = "http://docs-edge:8080/"
# ReDoc 2 draws "API docs by Redocly" under its menu with this logo, whatever its options; where
# the logo cannot load, ReDoc drops the <img> (onError). The one request either page makes
# outside the stack, and it changes nothing on the page.
REDOC_ATTRIBUTION_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@dataclass
class Page:
    dom: str
    requests: list[str]
    console: str

    def elements(self) -> list[dict[str, str]]:
        """The attributes of every element of the rendered DOM."""
        collector = _Elements()
        collector.feed(self.dom)
        return collector.found

    def outside(self, *allowed: str) -> list[str]:
        return [url for url in self.requests if not url.startswith(EDGE) and url not in allowed]


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append({name: value or "" for name, value in attrs})


@dataclass
class OfflineBrowser:
    network: str
    out: Path

    def load(self, path: str) -> Page:
        """The DOM of the page once its scripts have run, and every URL the browser requested."""
        name = f"tpl-browser-{uuid.uuid4().hex[:8]}"
        netlog = f"netlog-{name}.json"
        try:
            result = docker(
                "run", "--rm", "--name", name, "--network", self.network,
                "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
                "--security-opt", "no-new-privileges", "-v", f"{self.out}:/out",
                BROWSER_IMAGE,
                # Chromium's own sandbox needs namespaces a container does not grant; the
                # container is the sandbox, and the pages are the stack's own.
                "--no-sandbox",
                "--user-data-dir=/tmp/profile",
                f"--log-net-log=/out/{netlog}",
                # Run the page's scripts (fetch /openapi.json, render) before dumping the DOM:
                # ten seconds of page time, which passes at once while the page is idle.
                "--virtual-time-budget=10000",
                "--dump-dom",
                EDGE + path.lstrip("/"),
                timeout=120,
            )  # fmt: skip
        finally:
            # A timed-out `docker run` leaves its container running.
            docker("rm", "-f", name, check=False)
        log = json.loads((self.out / netlog).read_text())
        start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        requests = [
            event["params"]["url"]
            for event in log["events"]
            if event["type"] == start and "url" in event.get("params", {})
        ]
        return Page(dom=result.stdout, requests=requests, console=result.stderr)


@pytest.fixture(scope="session")
def browser_image() -> str:
    docker(
        "build", "-q", "-f", str(DOCKERFILE), "-t", BROWSER_IMAGE, str(DOCKERFILE.parent),
        timeout=900,
    )  # fmt: skip
    return BROWSER_IMAGE


@pytest.fixture
def docs_stack(stack_factory: Any) -> Stack:
    # The docs are off by default (production publishes no API map): the one setting this needs.
    stack: Stack = stack_factory(app_settings={"DOCS_ENABLED": "true"}).up()
    return stack


@pytest.fixture
def browser(docs_stack: Stack, browser_image: str, tmp_path: Path) -> Iterator[OfflineBrowser]:
    """A browser whose only peer is the stack's nginx: an internal network (no route out, no
    outside names) that nginx joins as docs-edge; removed afterwards, even when the test fails."""
    network = f"{docs_stack.name}-offline"
    nginx = docs_stack.container("nginx")
    # The browser runs as nobody and writes its NetLog here.
    tmp_path.chmod(0o777)
    docker("network", "create", "--internal", network)
    try:
        docker("network", "connect", "--alias", "docs-edge", network, nginx)
        yield OfflineBrowser(network=network, out=tmp_path)
    finally:
        docker("network", "disconnect", "-f", network, nginx, check=False)
        docker("network", "rm", network, check=False)


def operations(stack: Stack) -> list[tuple[str, str]]:
    """(method, operationId) of every operation in the stack's OpenAPI document."""
    status, _, body = stack.get("/openapi.json")
    assert status == 200
    paths = json.loads(body)["paths"]
    found = [(m, op["operationId"]) for item in paths.values() for m, op in item.items()]
    assert len(found) >= 5, found
    return found


def test_swagger_ui_draws_every_operation_from_the_stack_alone(
    docs_stack: Stack, browser: OfflineBrowser
) -> None:
    page = browser.load("/docs")
    assert page.outside() == [], page.console[-3000:]
    # Swagger UI draws one block per operation: class opblock-<method>, id ending in its
    # operationId (operations-<tag>-<operationId>).
    drawn = {
        (element["class"].split()[1].removeprefix("opblock-"), element["id"])
        for element in page.elements()
        if element.get("class", "").startswith("opblock ") and "id" in element
    }
    missing = [
        (method, operation_id)
        for method, operation_id in operations(docs_stack)
        if not any(m == method and i.endswith(f"-{operation_id}") for m, i in drawn)
    ]
    assert drawn, page.dom[-3000:] + page.console[-3000:]
    assert missing == [], drawn
    assert page.requests[0] == EDGE + "docs"


def test_redoc_draws_every_operation_from_the_stack_alone(
    docs_stack: Stack, browser: OfflineBrowser
) -> None:
    page = browser.load("/redoc")
    assert page.outside(REDOC_ATTRIBUTION_LOGO) == [], page.console[-3000:]
    # ReDoc draws one section per operation, id operation/<operationId>.
    sections = {element["id"] for element in page.elements() if "id" in element}
    missing = [
        operation_id
        for _, operation_id in operations(docs_stack)
        if f"operation/{operation_id}" not in sections
    ]
    assert missing == [], page.dom[-3000:] + page.console[-3000:]


def test_browser_dockerfile_is_hadolint_clean() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
