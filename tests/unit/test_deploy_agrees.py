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
    lines = (ROOT / "docker-compose.yml").read_text().splitlines()
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


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "deploy/nginx/Dockerfile"])
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
