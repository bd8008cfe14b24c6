"""nginx as the edge (EDGE=nginx, compose as shipped): the Host keeps its port, and what a
client claims in X-Forwarded-For / X-Forwarded-Proto never becomes its address or scheme."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.docker import docker
from tests.e2e.conftest import DEMO_ENDPOINTS, NGINX_IMAGE, Stack

pytestmark = pytest.mark.e2e

FORGED = {
    "X-Forwarded-For": "203.0.113.7",
    "X-Forwarded-Proto": "https",
    "X-Real-IP": "203.0.113.8",
}


@pytest.fixture
def edge(stack_factory: Any) -> Stack:
    made: Stack = stack_factory(app_settings=DEMO_ENDPOINTS).up()
    return made


def test_a_redirect_keeps_the_host_and_port_the_client_used(edge: Stack) -> None:
    status, headers, _ = edge.get("/api/items/")
    assert status == 307, status
    # Before: nginx passed $host, which has no port: http://127.0.0.1/api/items.
    assert headers["location"] == f"{edge.url}/api/items", headers["location"]


def test_forged_forwarded_headers_from_a_client_are_ignored(edge: Stack) -> None:
    status, headers, body = edge.get("/api/demo/whoami", headers=FORGED)
    assert status == 200, body
    seen = json.loads(body)
    # The address nginx saw the connection come from, as its access log has it.
    line = next(
        r for r in edge.log_records("nginx") if r.get("request_id") == headers["x-request-id"]
    )
    assert seen["client"] == line["client_ip"] == line["peer_ip"], (seen, line)
    assert seen["client"] not in ("203.0.113.7", "203.0.113.8"), seen
    assert seen["scheme"] == "http", seen


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"EDGE": "proxy"}, "nginx: EDGE='proxy' is not nginx"),
        ({"EDGE": "gateway"}, "nginx: EDGE=gateway needs GATEWAY_ADDRESSES"),
        (
            {"EDGE": "gateway", "GATEWAY_ADDRESSES": "10.0.0.0/8,gw.local"},
            "nginx: GATEWAY_ADDRESSES: 'gw.local' is not an address or CIDR range",
        ),
        (
            {"EDGE": "gateway", "GATEWAY_ADDRESSES": "0.0.0.0/0"},
            "nginx: GATEWAY_ADDRESSES: '0.0.0.0/0' trusts every peer",
        ),
        ({"GATEWAY_ADDRESSES": "10.0.0.0/8"}, "nginx: GATEWAY_ADDRESSES is set but EDGE=nginx"),
    ],
)
def test_a_bad_edge_setting_stops_nginx_with_one_line(
    images: None, env: dict[str, str], line: str
) -> None:
    flags = [arg for name, value in env.items() for arg in ("-e", f"{name}={value}")]
    result = docker(
        "run", "--rm", "--read-only", "--tmpfs", "/tmp",
        "--tmpfs", "/etc/nginx/conf.d:uid=101,gid=101", *flags, NGINX_IMAGE,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    # One line, and nginx never started (no [emerg] after it).
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(line), result.stderr
