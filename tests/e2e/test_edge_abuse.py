"""Bad input at the edge, through the running stack: rejected at the right layer (nginx before
the app where it can), the app never sees it, and honest clients are unaffected."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ROOT, Stack

pytestmark = pytest.mark.e2e


def raw_exchange(stack: Stack, payload: bytes, timeout: float = 10) -> bytes:
    """Send bytes exactly as given on one connection; everything nginx answers before closing."""
    host, port = stack.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as connection:
        connection.sendall(payload)
        chunks = []
        try:
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
    return b"".join(chunks)


def statuses(answer: bytes) -> list[int]:
    return [int(line.split()[1]) for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


def app_paths(stack: Stack) -> list[str]:
    return [r["path"] for r in stack.log_records("app") if r.get("logger") == "app.access"]


@pytest.fixture
def edge(stack_factory: Any) -> Stack:
    # The app's access line on: these tests check what reached the app, and what it logged.
    made: Stack = stack_factory(
        {"RATE_LIMIT": "100000r/s", "RATE_LIMIT_BURST": "100000"},
        app_settings={"ACCESS_LOG": "true"},
    ).up()
    return made


def test_oversized_and_too_many_headers_get_4xx_from_nginx(
    edge: Stack, reliability_report: dict[str, Any]
) -> None:
    huge = b"GET /api/items HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 16_000 + b"\r\n\r\n"
    many = (
        b"GET /api/items HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 100) for i in range(400))
        + b"\r\n"
    )
    answers = [statuses(raw_exchange(edge, payload))[0] for payload in (huge, many)]
    reliability_report["7a. oversized / too many headers"] = {"statuses": answers}
    assert all(400 <= status < 500 for status in answers), answers
    assert "/api/items" not in app_paths(edge)


def test_slow_clients_are_timed_out_while_health_stays_fast(
    edge: Stack, reliability_report: dict[str, Any]
) -> None:
    host, port = edge.url.removeprefix("http://").split(":")
    stop = threading.Event()
    closed_by_nginx: list[float] = []

    def slow_client(kind: str) -> None:
        started = time.monotonic()
        with socket.create_connection((host, int(port)), timeout=30) as connection:
            if kind == "body":
                connection.sendall(
                    b"POST /api/items HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                )
            else:
                connection.sendall(b"GET /api/items HTTP/1.1\r\n")
            try:
                # One byte every 2s: under nginx's header/body timeouts (10s) per read... but
                # nginx's timeouts bound the whole header read, and the body between reads.
                for _ in range(15):
                    if stop.is_set():
                        return
                    connection.sendall(b"X" if kind == "body" else b"X-Slow: y\r\n")
                    time.sleep(2 if kind == "headers" else 11)
                    if connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                        break
            except (BlockingIOError, OSError):
                pass
        closed_by_nginx.append(time.monotonic() - started)

    clients = [
        threading.Thread(target=slow_client, args=("headers" if i % 2 else "body",))
        for i in range(20)
    ]
    for client in clients:
        client.start()
    time.sleep(1)
    health_times = []
    for _ in range(10):
        started = time.monotonic()
        status, _, _ = edge.get("/healthz", timeout=5)
        health_times.append(time.monotonic() - started)
        assert status == 200
        time.sleep(0.5)
    for client in clients:
        client.join(60)
    stop.set()
    reliability_report["7b. 20 slow clients (slowloris headers and bodies)"] = {
        "closed_by_nginx": len(closed_by_nginx),
        "slowest_close_s": round(max(closed_by_nginx), 1) if closed_by_nginx else None,
        "healthz_max_ms_meanwhile": round(max(health_times) * 1000, 1),
    }
    assert len(closed_by_nginx) == 20
    assert max(health_times) < 1.0
    assert "/api/items" not in app_paths(edge)


def test_forged_forwarding_headers_and_request_id_do_not_reach_the_app(
    edge: Stack, reliability_report: dict[str, Any]
) -> None:
    status, headers, body = edge.get(
        "/api/demo/whoami",
        headers={
            "X-Forwarded-For": "203.0.113.7",
            "X-Forwarded-Proto": "https",
            "X-Real-IP": "203.0.113.7",
            "X-Request-ID": "evil\tid with spaces",
        },
    )
    answer = json.loads(body)
    assert status == 200
    assert answer["client"] != "203.0.113.7"
    assert answer["scheme"] == "http"
    assert len(headers["x-request-id"]) == 32
    [line] = [r for r in edge.log_records("app") if r.get("request_id") == headers["x-request-id"]]
    assert line["client_ip"] == answer["client"]
    reliability_report["8. forged X-Forwarded-For/-Proto, X-Request-ID"] = {
        "app_saw_client": answer["client"],
        "app_saw_scheme": answer["scheme"],
        "request_id_regenerated": True,
    }


SMUGGLING = {
    "CL and TE both": (
        b"POST /api/items HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /api/demo/whoami HTTP/1.1\r\n"
        b"Host: x\r\n\r\n"
    ),
    "two Content-Lengths": (
        b"POST /api/items HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}"
    ),
    "obsolete line folding": (
        b"GET /api/items HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n continued\r\n\r\n"
    ),
    "invalid chunk size": (
        b"POST /api/items HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/json\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
    ),
    "TE not chunked": (
        b"POST /api/items HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, identity\r\n\r\n"
    ),
}


@pytest.mark.parametrize("attack", list(SMUGGLING))
def test_request_smuggling_attempts_are_rejected_without_desync(
    edge: Stack, attack: str, reliability_report: dict[str, Any]
) -> None:
    answer = raw_exchange(edge, SMUGGLING[attack])
    seen = statuses(answer)
    reliability_report[f"9. smuggling: {attack}"] = {"statuses": seen}
    assert seen, answer
    # 400, or 501 for a transfer coding nginx does not implement (RFC 9112 6.1).
    assert seen[0] in {400, 501}, answer
    # Exactly one answer: nothing smuggled behind the rejected request was served.
    assert len(seen) == 1, answer
    assert not [p for p in app_paths(edge) if p in {"/api/items", "/api/demo/whoami"}]


def test_rate_limit_hits_one_client_not_another_and_never_health(
    stack_factory: Any, reliability_report: dict[str, Any]
) -> None:
    stack = stack_factory({"RATE_LIMIT": "5r/s", "RATE_LIMIT_BURST": "5"}).up()
    burst = [stack.get("/api/demo/whoami")[0] for _ in range(30)]
    # Another client: the app container's own address on the backend network.
    other = stack.compose(
        "exec",
        "-T",
        "app",
        "python",
        "-c",
        (
            "import urllib.request\n"
            "print(urllib.request.urlopen('http://nginx:8080/api/demo/whoami', timeout=5).status)"
        ),
    ).stdout.strip()
    health = [stack.get("/healthz")[0] for _ in range(30)]
    reliability_report["10. rate limit burst"] = {
        "burst_200": burst.count(200),
        "burst_429": burst.count(429),
        "other_client": other,
        "healthz_200": health.count(200),
    }
    assert burst.count(429) >= 15
    assert other == "200"
    assert health == [200] * 30


def test_malformed_json_gets_a_clear_422(edge: Stack) -> None:
    status, _, body = edge.get(
        "/api/items",
        method="POST",
        body=b'{"name": "x", "price": ',
        headers={"Content-Type": "application/json"},
    )
    assert status == 422
    [error] = json.loads(body)["detail"]
    assert error["type"] == "json_invalid"


def test_schema_fuzzing_finds_no_server_errors(
    stack_factory: Any, reliability_report: dict[str, Any]
) -> None:
    stack = stack_factory(
        {"RATE_LIMIT": "100000r/s", "RATE_LIMIT_BURST": "100000"},
        app_settings={"DOCS_ENABLED": "true"},
    ).up()
    schemathesis = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{stack.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "40",
            "--request-timeout",
            "5",
            "--exclude-path",
            "/api/demo/block",
            "--exclude-path",
            "/api/demo/wait",
            "--no-color",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    tail = "\n".join(result.stdout.splitlines()[-15:])
    reliability_report["11. schemathesis fuzz (40 examples per operation)"] = {
        "exit_code": result.returncode,
        "summary": tail.splitlines()[-1] if tail else "",
    }
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_app_code_is_bandit_clean() -> None:
    bandit = Path(sys.executable).parent / "bandit"
    result = subprocess.run(
        [str(bandit), "-q", "-r", "app", "gunicorn.conf.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
