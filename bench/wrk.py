"""The load generator: wrk (Debian's package) in a client container on the benchmark network.

wrk_report.lua prints one JSON line (`BENCH_JSON {...}`) from wrk's done() callback: requests,
duration, socket errors, non-2xx/3xx answers (wrk counts status >= 400) and latency percentiles
from wrk's own histogram. A failure is a socket error or such an answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bench.docker import docker

CLIENT_SCRIPT = "/bench/wrk_report.lua"
# json and io are demo endpoints, which the app serves only with this set (off in production):
# as environment of the containers the harness runs, and as an app env file for compose.
APP_SETTINGS = {"DEMO_ENDPOINTS_ENABLED": "true"}
APP_ENV_FILE_LINES = "".join(f"{key}={value}\n" for key, value in APP_SETTINGS.items())


@dataclass(frozen=True)
class Endpoint:
    """What a load point requests; `post_item` makes the Lua script POST a ~3 KB JSON body."""

    name: str
    path: str
    post_item: bool = False
    description: str = ""


ENDPOINTS: dict[str, Endpoint] = {
    endpoint.name: endpoint
    for endpoint in (
        Endpoint("json", "/api/demo/whoami", description="GET, tiny JSON answer"),
        Endpoint(
            "body",
            "/api/items",
            post_item=True,
            description="POST of a 2.9 KB JSON body validated by pydantic (20 tags), 201 + echo",
        ),
        Endpoint("io", "/api/demo/wait?ms=5", description="GET that awaits 5 ms (asyncio.sleep)"),
    )
}


def run_wrk(
    client: str, url: str, endpoint: Endpoint, connections: int, seconds: float
) -> dict[str, Any]:
    """One bounded wrk run from the client container; the figures as a dict (ms, requests/s)."""
    threads = min(2, connections)
    env = ["-e", "BENCH_POST_ITEM=1"] if endpoint.post_item else []
    command = [
        "exec", *env, client, "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s",
        "--timeout", "10s", "-s", CLIENT_SCRIPT, url.rstrip("/") + endpoint.path,
    ]  # fmt: skip
    result = docker(*command, timeout=seconds + 60)
    return parse(result.stdout)


def parse(stdout: str) -> dict[str, Any]:
    line = next((line for line in stdout.splitlines() if line.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no BENCH_JSON line:\n{stdout}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    errors = raw["errors"]
    socket_errors = errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
    seconds = raw["duration_us"] / 1e6
    latency = raw["latency_us"]
    return {
        "requests": raw["requests"],
        "seconds": round(seconds, 3),
        "rps": round(raw["requests"] / seconds, 1) if seconds else 0.0,
        "failures": socket_errors + errors["status"],
        "socket_errors": socket_errors,
        "bad_status": errors["status"],
        "p50_ms": latency["p50"] / 1000,
        "p90_ms": latency["p90"] / 1000,
        "p99_ms": latency["p99"] / 1000,
        "p999_ms": latency["p999"] / 1000,
        "max_ms": latency["max"] / 1000,
        "mean_ms": round(latency["mean"] / 1000, 3),
    }


# Runs inside the client container: poll URL until it answers 200, print the wall-clock time of
# that answer (the client shares the host's clock, so the harness can subtract its start time).
POLL_SCRIPT = """
import sys, time, urllib.request
url, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            if answer.status == 200:
                print(f"{time.time():.4f}")
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.01)
sys.exit(1)
"""


def poll_command(client: str, url: str, timeout: float) -> list[str]:
    return ["docker", "exec", client, "python", "-c", POLL_SCRIPT, url, str(timeout)]


def wait_ready(client: str, url: str, timeout: float = 90) -> float:
    """Block until URL answers 200 from inside the benchmark network; the time it did."""
    result = docker(*poll_command(client, url, timeout)[1:], timeout=timeout + 30, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{url} not ready within {timeout}s: {result.stderr}")
    return float(result.stdout.strip())
