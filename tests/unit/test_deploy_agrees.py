"""Facts that several files must agree on, checked where each is written.

gunicorn's timeouts live in the settings model; compose, nginx and the Dockerfiles each restate
the ones they depend on. These tests read all of them, so a change to one without the others
fails here instead of as a 502 or a SIGKILL in production.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.formparsers import MultiPartParser

from app.server.settings import ServerSettings

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = ServerSettings.model_validate({})


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def seconds(value: str) -> int:
    match = re.fullmatch(r"(\d+)s", value)
    assert match, value
    return int(match.group(1))


def nginx_template() -> str:
    return (ROOT / "deploy/nginx/templates/default.conf.template").read_text()


def test_compose_stop_grace_period_outlasts_gunicorn_graceful_timeout() -> None:
    grace = seconds(compose()["services"]["app"]["stop_grace_period"])
    assert grace >= DEFAULTS.GRACEFUL_TIMEOUT + 5


def upstream_blocks(config: str) -> dict[str, str]:
    """Each `upstream NAME { ... }` block's body (upstream blocks hold no nested braces)."""
    return dict(re.findall(r"^\s*upstream\s+(\S+)\s*\{(.*?)^\s*\}", config, re.S | re.M))


def test_nginx_closes_idle_upstream_connections_before_gunicorn_does() -> None:
    # nginx 1.29.7+ keeps connections to every upstream alive by default, for 60 s: longer than
    # gunicorn's KEEP_ALIVE. So each upstream must say its own, shorter, idle time.
    config = nginx_template()
    blocks = upstream_blocks(config)
    assert blocks, "the template defines its upstreams"
    opened = re.findall(r"^\s*upstream\s", config, re.M)
    assert len(blocks) == len(opened), "every upstream block was read"
    for name, body in blocks.items():
        match = re.search(r"^\s*keepalive_timeout (\d+)s;", body, re.M)
        assert match, f"upstream {name} sets keepalive_timeout"
        assert int(match.group(1)) < DEFAULTS.KEEP_ALIVE, name


def test_nginx_proxies_only_to_the_upstreams_it_defines() -> None:
    # A proxy_pass to a bare address would get the implicit upstream's defaults instead.
    config = nginx_template()
    targets = set(re.findall(r"proxy_pass http://([^;/]+)", config))
    assert targets
    assert targets <= set(upstream_blocks(config)), targets


def test_app_stops_on_sigterm_and_nginx_on_sigquit() -> None:
    services = compose()["services"]
    assert services["app"]["stop_signal"] == "SIGTERM"
    assert services["nginx"]["stop_signal"] == "SIGQUIT"
    assert "STOPSIGNAL SIGTERM" in (ROOT / "Dockerfile").read_text()
    assert "STOPSIGNAL SIGQUIT" in (ROOT / "deploy/nginx/Dockerfile").read_text()


def test_only_nginx_publishes_a_port() -> None:
    services = compose()["services"]
    assert "ports" not in services["app"]
    assert services["nginx"]["ports"] == ["${HTTP_BIND:-0.0.0.0}:${HTTP_PORT:-8080}:8080"]


def test_the_app_trusts_forwarded_headers_from_the_backend_network_only() -> None:
    config = compose()
    subnet = config["networks"]["backend"]["ipam"]["config"][0]["subnet"]
    assert config["services"]["app"]["environment"]["FORWARDED_ALLOW_IPS"] == subnet
    assert "*" not in subnet


def test_every_compose_variable_is_documented_in_env_example() -> None:
    # The HTTPS overrides' variables too: a user sets them in the same .env.
    lines = [
        line
        for name in ("docker-compose.yml", "docker-compose.tls.yml", "docker-compose.acme.yml")
        for line in (ROOT / name).read_text().splitlines()
    ]
    code = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    used = set(re.findall(r"\$\{([A-Z_]+)", code))
    # NAME=value, or "# NAME=" for a variable whose default docker-compose.yml derives.
    documented = set(re.findall(r"^(?:# )?([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert used == documented


def test_the_development_override_is_not_loaded_by_a_plain_up() -> None:
    # compose merges these names automatically; the dev file must not be one of them.
    for automatic in (
        "docker-compose.override.yml",
        "compose.override.yml",
        "docker-compose.override.yaml",
        "compose.override.yaml",
    ):
        assert not (ROOT / automatic).exists()
    assert (ROOT / "docker-compose.dev.yml").exists()


@pytest.mark.parametrize(
    "dockerfile", ["Dockerfile", "deploy/nginx/Dockerfile", "deploy/acme/Dockerfile"]
)
def test_dockerfiles_are_hadolint_clean(dockerfile: str) -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), dockerfile],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_nginx_never_retries_a_request_that_hung_a_worker_until_it_was_killed() -> None:
    # Workers heartbeat every TIMEOUT/2, so the earliest kill of a blocked worker is TIMEOUT/2
    # after the block began; nginx's retry window must close before then.
    match = re.search(r"proxy_next_upstream_timeout (\d+)s;", nginx_template())
    assert match
    assert int(match.group(1)) < DEFAULTS.TIMEOUT / 2


def test_a_leaving_replica_stays_out_until_nginx_has_resolved_it_away() -> None:
    # A stopping replica is left out (fail_timeout) after its first refused connect; its address
    # must be gone from nginx's peers (the resolver's valid time) before that ends, or requests
    # wait out the connect timeout on a black-holed address and cannot be retried.
    config = nginx_template()
    valid = re.search(r"resolver \S+ valid=(\d+)s;", config)
    fail_timeout = re.search(r"server \$\{APP_UPSTREAM\} resolve .*fail_timeout=(\d+)s", config)
    assert valid
    assert fail_timeout
    assert int(valid.group(1)) < int(fail_timeout.group(1))


def test_the_app_listens_where_nginx_sends_from_one_compose_variable() -> None:
    # PORT, HOST or BIND in app.env would move the app away from nginx's upstream (a healthy
    # stack answering 502): compose sets all three, the port from the upstream's own variable.
    services = compose()["services"]
    app, upstream = services["app"]["environment"], services["nginx"]["environment"]
    assert upstream["APP_UPSTREAM"] == f"app:{app['PORT']}"
    assert app["PORT"] == "${APP_PORT:-8000}"
    assert app["HOST"] == "0.0.0.0"  # nosec B104 - the container's own network
    assert app["BIND"] == ""


def test_a_configuration_error_in_compose_waits_instead_of_restarting_forever() -> None:
    # restart: unless-stopped restarts an exit 2 forever; the entrypoint waits instead.
    app = compose()["services"]["app"]
    assert app["restart"] == "unless-stopped"
    assert app["environment"]["ON_CONFIG_ERROR"] == "wait"


# Body sizes: deploy/nginx/nginx.conf states the rule, these read every size it relates.
SIZE_DIRECTIVES = (
    "client_max_body_size",
    "client_body_buffer_size",
    "proxy_buffer_size",
    "proxy_buffers",
    "proxy_max_temp_file_size",
    "limit_conn",
)
MIB = 1024 * 1024
UNITS = {"": 1, "k": 1024, "m": MIB, "Ki": 1024, "Mi": MIB}


def size_bytes(value: str) -> int:
    """nginx's 64k / 1m, Docker's tmpfs 64m and Kubernetes' 64Mi (all binary units)."""
    match = re.fullmatch(r"(\d+)(k|m|Ki|Mi)?", value)
    assert match, value
    return int(match.group(1)) * UNITS[match.group(2) or ""]


def nginx_conf() -> str:
    return (ROOT / "deploy/nginx/nginx.conf").read_text()


def nginx_size(directive: str) -> int:
    found = re.findall(rf"^\s*{directive} (\w+);", nginx_conf(), re.M)
    assert len(found) == 1, f"{directive} is set once in nginx.conf: {found}"
    return size_bytes(found[0])


def uploads_limit() -> int:
    found = re.findall(r"^\s*limit_conn uploads (\d+);", nginx_conf(), re.M)
    assert len(found) == 1, found
    return int(found[0])


def pod_and_nginx() -> tuple[dict[str, Any], dict[str, Any]]:
    """The Deployment's pod spec and its nginx container."""
    [deployment] = [
        doc
        for doc in yaml.safe_load_all((ROOT / "deploy/k8s/base/deployment.yaml").read_text())
        if doc and doc["kind"] == "Deployment"
    ]
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    # A native sidecar: an init container with restartPolicy Always.
    [nginx] = [c for c in pod["initContainers"] if c["name"] == "nginx"]
    return pod, nginx


def nginx_tmp_sizes() -> dict[str, int]:
    """The /tmp nginx writes bodies to: compose's tmpfs and the pod's emptyDir."""
    [compose_tmp] = [
        mount for mount in compose()["services"]["nginx"]["tmpfs"] if mount.startswith("/tmp:")
    ]
    pod, nginx = pod_and_nginx()
    [volume_name] = [m["name"] for m in nginx["volumeMounts"] if m["mountPath"] == "/tmp"]
    [volume] = [v for v in pod["volumes"] if v["name"] == volume_name]
    assert volume["emptyDir"]["medium"] == "Memory"
    [compose_size] = re.findall(r"size=(\w+)", compose_tmp)
    return {
        "compose": size_bytes(compose_size),
        "kubernetes": size_bytes(volume["emptyDir"]["sizeLimit"]),
    }


def test_body_and_buffer_sizes_are_set_in_nginx_conf_alone() -> None:
    # One place: a size in the server template would override nginx.conf's for its server
    # (or location), and the rule below would check the wrong figure.
    template = nginx_template()
    for directive in SIZE_DIRECTIVES:
        assert not re.search(rf"^\s*{directive}\s", template, re.M), directive
    assert nginx_size("proxy_max_temp_file_size") == 0, "responses never spill to /tmp"
    # A response gets as much memory as a request body before it waits for the client.
    [(count, size)] = re.findall(r"^\s*proxy_buffers (\d+) (\w+);", nginx_conf(), re.M)
    assert int(count) * size_bytes(size) == nginx_size("client_body_buffer_size")
    # The paths nginx writes temp files to are the /tmp mount's, not the read-only image's.
    for temp_path in re.findall(r"^\s*\w+_temp_path (\S+);", nginx_conf(), re.M):
        assert temp_path.startswith("/tmp/"), temp_path
    assert len(re.findall(r"^\s*\w+_temp_path ", nginx_conf(), re.M)) == 5


def test_nginx_tmp_holds_every_body_it_lets_spill_at_once() -> None:
    # The rule nginx.conf states: /tmp >= uploads x client_max_body_size + 1m (pid, headroom).
    needed = uploads_limit() * nginx_size("client_max_body_size") + MIB
    sizes = nginx_tmp_sizes()
    assert sizes["compose"] == sizes["kubernetes"], sizes
    assert sizes["compose"] >= needed, (sizes, needed)


def spilled_body_map() -> tuple[str, str]:
    """The map that picks the bodies limit_conn counts: its source string and its regex."""
    block = re.search(r'^\s*map "([^"]+)" \$spilled_body \{(.*?)^\s*\}', nginx_conf(), re.S | re.M)
    assert block, "nginx.conf maps requests to $spilled_body"
    [regex] = re.findall(r'"~(.*)"\s+"";', block[2])
    assert re.search(r'^\s*",",?\s+"";', block[2], re.M), "a request with no body is not counted"
    assert re.search(r'^\s*default\s+"\w+";', block[2], re.M), "every other one is, one key"
    assert re.search(r"^\s*limit_conn_zone \$spilled_body zone=uploads:", nginx_conf(), re.M)
    return block[1], regex


def test_uploads_counts_exactly_the_bodies_that_spill() -> None:
    # nginx keeps a body of up to client_body_buffer_size in memory: the map's regex must pass
    # (leave uncounted) exactly those lengths, so small JSON bodies never meet the limit and
    # every larger one does. Python's re and nginx's PCRE agree on this plain a regex.
    source, regex = spilled_body_map()
    assert source == "$http_content_length,$http_transfer_encoding"
    buffer = nginx_size("client_body_buffer_size")
    fits = re.compile(regex)
    for length in range(0, 2 * buffer + 2):
        assert bool(fits.fullmatch(f"{length},")) == (length <= buffer), length
    for spilled in (nginx_size("client_max_body_size"), 10 * MIB, 10**12):
        assert not fits.fullmatch(f"{spilled},")
    assert not fits.fullmatch(",chunked"), "a chunked body's length is unknown: counted"


def test_a_body_nginx_accepts_never_spills_to_the_apps_tmp() -> None:
    # Starlette keeps an uploaded file in memory up to its spool size: with nginx's body limit
    # within it, no upload lands on the app's /tmp, which then holds only metrics files.
    assert nginx_size("client_max_body_size") <= MultiPartParser.spool_max_size


def test_nginx_memory_limit_holds_a_full_tmp_and_nginx() -> None:
    # /tmp is memory (tmpfs, emptyDir medium: Memory): its pages count against nginx's limit. A
    # full /tmp plus nginx itself must fit, or the kernel kills nginx instead of refusing the
    # upload. tests/e2e/test_uploads.py measured 70.8 MiB with 60 bodies held (60 MiB of it the
    # bodies); 32 MiB above /tmp leaves nginx about three times what it used.
    compose_limit = re.fullmatch(
        r"\$\{NGINX_MEMORY:-(\w+)\}", compose()["services"]["nginx"]["mem_limit"]
    )
    assert compose_limit
    _, nginx = pod_and_nginx()
    limits = {
        "compose": size_bytes(compose_limit[1]),
        "kubernetes": size_bytes(nginx["resources"]["limits"]["memory"]),
    }
    for where, tmp in nginx_tmp_sizes().items():
        assert limits[where] >= tmp + 32 * MIB, (where, limits[where], tmp)
