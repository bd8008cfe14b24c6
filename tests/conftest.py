"""Fixtures shared by the e2e and k8s suites."""

from __future__ import annotations

import pytest

from tests.docker import docker
from tests.e2e.conftest import base_env


@pytest.fixture(scope="session")
def images() -> None:
    """Build the app and nginx images once per session, as `docker compose up --build` would;
    the e2e tests run them with Docker, the k8s tests with podman."""
    docker("compose", "build", env=base_env(), timeout=900)
