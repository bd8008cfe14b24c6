"""The pod behind a gateway, as Kubernetes runs it (EDGE=gateway): a real nginx container plays
the Gateway (it appends the peer to X-Forwarded-For and sends X-Forwarded-Proto: https, as
Gateway implementations do), clients are containers of their own on one podman network.

Proves: the app sees the real client, redirects are https on the client's host, each client has
its own rate-limit budget, and forged headers from a peer that is not the gateway are ignored.
Only the variables the test is about are set: GATEWAY_ADDRESSES (the gateway's address here),
the rate limit (small enough to reach) and the app's demo endpoint that echoes what it sees.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import yaml

from tests.k8s.conftest import Manifest, kustomize, parse
from tests.k8s.test_podman import (
    as_podman_plays_it,
    free_port,
    podman,
    podman_images,
    variant_kustomization,
)

pytestmark = pytest.mark.e2e
__all__ = ["podman_images"]  # the fixture, imported to be used here

HOST = "api.example.com"
GATEWAY_CONF = """
pid /tmp/nginx.pid;
error_log stderr warn;
events {}
http {
    # The image's user (101) cannot write nginx's default temp directories.
    client_body_temp_path /tmp/b;
    proxy_temp_path /tmp/p;
    fastcgi_temp_path /tmp/f;
    uwsgi_temp_path /tmp/u;
    scgi_temp_path /tmp/s;
    access_log off;
    server {
        listen 8080;
        location / {
            proxy_pass http://POD:8080;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
        }
    }
}
"""


@dataclass
class Site:
    network: str
    prefix: str  # the network's first three octets
    pod_ip: str
    gateway_ip: str
    image: str  # the nginx image: its nginx plays the gateway, its curl the clients

    def curl(self, ip: str, url: str, *headers: str) -> tuple[int, str, str]:
        """One request from a client container at `ip`: status, Location, body."""
        flags = [arg for header in headers for arg in ("-H", header)]
        out = podman(
            "run", "--rm", "--network", self.network, "--ip", ip, "--entrypoint", "curl",
            self.image, "-s", "-m", "10", "-H", f"Host: {HOST}", *flags,
            "-w", "\n%{http_code} %{redirect_url}", url, timeout=60,
        )  # fmt: skip
        body, _, last = out.rpartition("\n")
        status, _, location = last.partition(" ")
        return int(status), location, body

    def via_gateway(self, client: str, path: str, *headers: str) -> tuple[int, str, str]:
        return self.curl(client, f"http://{self.gateway_ip}:8080{path}", *headers)


def set_config(docs: list[Manifest], name_part: str, values: dict[str, str]) -> None:
    [config] = [
        d for d in docs if d["kind"] == "ConfigMap" and f"-{name_part}-" in d["metadata"]["name"]
    ]
    config["data"].update(values)


@pytest.fixture(scope="module")
def site(podman_images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    directory = tmp_path_factory.mktemp("tpl-k8s-gateway")
    prefix = f"tpl-gw-{uuid.uuid4().hex[:6]}-"
    # podman would publish every containerPort on 0.0.0.0 otherwise: 127.0.0.1, free ports.
    ports = {"nginx": (8080, free_port()), "app": (8000, free_port())}
    variant_kustomization(directory, prefix, podman_images, ports)
    octets = f"10.{89 + uuid.uuid4().int % 10}.{uuid.uuid4().int % 250}"
    network = f"{prefix}net"
    gateway_ip = f"{octets}.2"
    docs = as_podman_plays_it(
        [d for d in parse(kustomize(directory)) if d["kind"] in ("ConfigMap", "Deployment")]
    )
    set_config(docs, "nginx", {
        "GATEWAY_ADDRESSES": f"{gateway_ip}/32", "RATE_LIMIT": "1r/m", "RATE_LIMIT_BURST": "2",
    })  # fmt: skip
    set_config(docs, "app", {"DEMO_ENDPOINTS_ENABLED": "true"})
    play = directory / "play.yaml"
    play.write_text(yaml.safe_dump_all(docs))
    conf = directory / "gateway.conf"
    gateway = f"{prefix}gateway"
    try:
        podman("network", "create", "--subnet", f"{octets}.0/24", network)
        podman("kube", "play", "--network", network, "--ip", f"{octets}.3", play, timeout=180)
        pod_ip = f"{octets}.3"
        conf.write_text(GATEWAY_CONF.replace("POD", pod_ip))
        podman(
            "run", "-d", "--name", gateway, "--network", network, "--ip", gateway_ip,
            "-v", f"{conf}:/etc/nginx/nginx.conf:ro,Z", "--entrypoint", "nginx",
            podman_images["nginx"], "-g", "daemon off;",
        )  # fmt: skip
        made = Site(network, octets, pod_ip, gateway_ip, podman_images["nginx"])
        wait_ready(made, gateway)
        yield made
    finally:
        podman("rm", "-f", "-t", "0", gateway, check=False)
        podman("kube", "down", play, check=False, timeout=120)
        podman("network", "rm", "-f", network, check=False)


def wait_ready(site: Site, gateway: str) -> None:
    # Through the gateway (the /readyz location is not rate-limited). Bounded: 60 tries, each a
    # container run of about a second.
    for _ in range(60):
        status = podman(
            "run", "--rm", "--network", site.network, "--entrypoint", "curl", site.image,
            "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{site.gateway_ip}:8080/readyz",
            check=False,
        )  # fmt: skip
        if status.strip() == "200":
            return
    logs = podman("logs", gateway, check=False)
    raise AssertionError(f"the pod did not become ready behind the gateway:\n{logs}")


def test_the_pod_behind_a_gateway_sees_each_real_client(site: Site) -> None:
    a, b, c, outsider = (f"{site.prefix}.{n}" for n in (11, 12, 13, 14))
    forged = ("X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: http")
    # What the app believes: the client's own address and https, whatever the client claims.
    status, _, body = site.via_gateway(a, "/api/demo/whoami", *forged)
    assert status == 200, body
    assert json.loads(body)["client"] == a, body
    assert json.loads(body)["scheme"] == "https", body
    # A redirect names the host the client asked for, over https.
    status, location, _ = site.via_gateway(b, "/api/items/")
    assert (status, location) == (307, f"https://{HOST}/api/items"), (status, location)
    # A budget per client: b is unaffected by a; c reaches its own limit (1 + burst 2).
    statuses = [site.via_gateway(b, "/api/demo/whoami")[0]]
    statuses += [site.via_gateway(c, "/api/demo/whoami")[0] for _ in range(4)]
    assert statuses == [200, 200, 200, 200, 429], statuses
    # A peer that is not the gateway is a client: its forged headers count for nothing.
    status, _, body = site.curl(
        outsider, f"http://{site.pod_ip}:8080/api/demo/whoami", "X-Forwarded-For: 203.0.113.9",
        "X-Forwarded-Proto: https",
    )  # fmt: skip
    assert status == 200, body
    assert json.loads(body) | {"pid": 0, "host": ""} == {
        "pid": 0, "host": "", "client": outsider, "scheme": "http",
    }, body  # fmt: skip
