"""TLS_MODE=acme against pebble, Let's Encrypt's ACME test server: the shipped
docker-compose.acme.yml and images, pebble on the stack's own network (the host's pebble binary
in a stand-in base container), HTTP-01 answered by nginx, a client trusting only pebble's CA."""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.docker import docker
from tests.e2e.conftest import Stack
from tests.e2e.load import run_load
from tests.e2e.test_https import free_port
from tests.e2e.tls_certs import issue, make_ca

pytestmark = pytest.mark.e2e

NAME = "service.test"
PEBBLE_BASE = "python:3.14-slim"  # a stand-in with glibc and Python (to fetch pebble's root)


def write_pebble_files(directory: Path) -> None:
    make_ca(directory)
    issue(directory, "pebble")  # pebble's own HTTPS, as the acme service reaches it
    (directory / "pebble.json").write_text(
        json.dumps(
            {
                "pebble": {
                    "listenAddress": "0.0.0.0:14000",
                    "managementListenAddress": "0.0.0.0:15000",
                    "certificate": "/cfg/fullchain.pem",
                    "privateKey": "/cfg/privkey.pem",
                    # HTTP-01 is fetched from nginx's container port (80 on a real host).
                    "httpPort": 8080,
                    "tlsPort": 8443,
                    "ocspResponderURL": "",
                    "externalAccountBindingRequired": False,
                }
            }
        )
    )
    # The test's override: nginx answers as NAME on the network (pebble resolves it with
    # Docker's DNS), and lego trusts pebble's HTTPS through the test CA.
    (directory / "compose.test.yml").write_text(
        f"""services:
  nginx:
    networks:
      backend:
        aliases: [{NAME}]
  acme:
    environment:
      LEGO_CA_CERTIFICATES: /pebble-ca/ca.pem
    volumes:
      - {directory}:/pebble-ca:ro
"""
    )


def served_certificate(port: int, root: Path) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=str(root))  # pebble's root and nothing else
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=NAME) as tls,
    ):
        certificate = tls.getpeercert()
        assert certificate, "verified, so the certificate is there"
        return dict(certificate)


def wait_for_certificate(
    port: int, root: Path, not_serial: str | None, timeout: float
) -> dict[str, Any]:
    """The certificate nginx serves once it verifies against pebble's root (and, with
    not_serial, is another one than that): polled every 0.5 s, bounded in time."""
    deadline = time.monotonic() + timeout
    error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            certificate = served_certificate(port, root)
            if certificate["serialNumber"] != not_serial:
                return certificate
        except (ssl.SSLError, OSError) as failure:
            error = failure
        time.sleep(0.5)
    raise AssertionError(f"no new verified certificate within {timeout} s: {error}")


@pytest.fixture
def acme_env() -> dict[str, str]:
    """Extra compose variables for a test's stack (a test overrides this fixture's values by
    parametrizing or by its own fixture)."""
    return {}


@pytest.fixture
def acme_stack(
    stack_factory: Any, tmp_path: Path, acme_env: dict[str, str]
) -> Iterator[tuple[Stack, str, Path]]:
    write_pebble_files(tmp_path)
    port = free_port()
    stack: Stack = stack_factory(
        env={
            "TLS_DOMAIN": NAME,
            "ACME_EMAIL": "ops@service.test",
            "ACME_SERVER": "https://pebble:14000/dir",
            "ACME_RETRY_SECONDS": "2",
            "HTTPS_BIND": "127.0.0.1",
            "HTTPS_PORT": str(port),
            **acme_env,
        },
        files=["docker-compose.yml", "docker-compose.acme.yml", str(tmp_path / "compose.test.yml")],
    )
    stack.env["HTTPS_PORT"] = str(port)
    stack.compose("build", "acme", timeout=600)
    stack.compose("create")
    pebble = f"{stack.name}-pebble"
    docker(
        "run", "-d", "--name", pebble, "--network", f"{stack.name}_backend",
        "--network-alias", "pebble",
        # No random validation delays, no rejected nonces: the test checks HTTP-01, not lego's
        # retries.
        "-e", "PEBBLE_VA_NOSLEEP=1", "-e", "PEBBLE_WFE_NONCEREJECT=0",
        "-v", "/usr/bin/pebble:/usr/local/bin/pebble:ro", "-v", f"{tmp_path}:/cfg:ro",
        PEBBLE_BASE, "pebble", "-config", "/cfg/pebble.json",
    )  # fmt: skip
    try:
        stack.up()
        yield stack, pebble, tmp_path
    finally:
        docker("rm", "-f", pebble, check=False)
        # compose names the acme image after the project, one per test: remove it (its layers
        # stay cached for the next test's build).
        stack.down()
        docker("rmi", f"{stack.name}-acme", check=False)


def pebble_root(pebble: str, directory: Path) -> Path:
    """The root pebble signs with, made at its start: from its management port, inside."""
    fetch = (
        "import ssl, urllib.request; print(urllib.request.urlopen('https://localhost:15000/roots/0',"
        " context=ssl.create_default_context(cafile='/cfg/ca.pem')).read().decode())"
    )
    root = directory / "pebble-root.pem"
    root.write_text(docker("exec", pebble, "python", "-c", fetch).stdout)
    return root


def test_acme_mode_obtains_a_certificate_over_http01_and_serves_it(
    acme_stack: tuple[Stack, str, Path],
) -> None:
    stack, pebble, directory = acme_stack
    root = pebble_root(pebble, directory)
    certificate = wait_for_certificate(int(stack.env["HTTPS_PORT"]), root, None, timeout=90)
    assert ("DNS", NAME) in certificate["subjectAltName"]
    logs = stack.logs("acme") + stack.logs("nginx")
    assert "PRIVATE KEY" not in logs
    assert "reloaded" in stack.logs("nginx")


# Renew at every check (a renewal window longer than any certificate's life), every 3 s, by
# without lego's random delay.
RENEW_ALWAYS = {
    "ACME_RENEW_DAYS": "100000",
    "ACME_CHECK_SECONDS": "3",
    "ACME_RANDOM_SLEEP": "false",
}


@pytest.mark.parametrize("acme_env", [RENEW_ALWAYS])
def test_renewals_under_keepalive_https_load_fail_no_request(
    acme_stack: tuple[Stack, str, Path], reliability_report: dict[str, dict[str, object]]
) -> None:
    stack, pebble, directory = acme_stack
    root = pebble_root(pebble, directory)
    port = int(stack.env["HTTPS_PORT"])
    first = wait_for_certificate(port, root, None, timeout=90)
    connections = 8
    result = run_load(
        f"https://127.0.0.1:{port}",
        "/healthz",
        connections=connections,
        duration=25,
        max_requests=60_000,
        tls=ssl.create_default_context(cafile=str(root)),
        server_hostname=NAME,
        # A reload closes each idle kept-alive client connection once (nginx's old workers
        # finish in-flight requests, then close): a GET is retried once on a new connection.
        allowed_stale_retries=connections * 10,
    )
    reloads = stack.logs("nginx").count("nginx reloaded")
    summary = result.summary()
    reliability_report["12. ACME renewals under HTTPS keep-alive load (pebble)"] = {
        **summary,
        "connections": connections,
        "seconds": 25,
        # The first reload installs the first certificate, before the load starts.
        "renewal_reloads_during_load": reloads - 1,
    }
    print(f"renewal under load: {reloads} reloads, {summary}")
    assert served_certificate(port, root)["serialNumber"] != first["serialNumber"]
    assert reloads >= 3, stack.logs("nginx")[-3000:]
    assert result.stale_retries <= connections * reloads, summary
    assert result.failed == 0, summary
    assert result.statuses[200] == result.sent, summary
