"""Bad input at the edge, through the running stack: rejected at the right layer (nginx before
the app where it can), the app never sees it, and honest clients are unaffected."""

from __future__ import annotations

import json
import re
import select
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import DEMO_ENDPOINTS, ROOT, Stack

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
        app_settings={"ACCESS_LOG": "true", **DEMO_ENDPOINTS},
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


def nginx_timeout_s(directive: str) -> float:
    """A timeout as deploy/nginx/nginx.conf sets it (in seconds: `10s`), the one place it is set."""
    conf = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    found = re.search(rf"^\s*{directive}\s+(\d+)s;", conf, re.MULTILINE)
    assert found, f"{directive} not set in seconds in nginx.conf"
    return float(found.group(1))


@dataclass
class SlowClient:
    """One slowloris connection: what it trickled, and how it ended."""

    kind: str
    sent: list[float] = field(default_factory=list)  # when each trickled piece went out
    connected_at: float = 0.0
    ended_at: float = 0.0
    # "closed": nginx closed the connection (EOF or, with reset_timedout_connection, a reset);
    # "answered": nginx sent bytes; "gave up": the client's own deadline passed first.
    outcome: str = ""
    answer: bytes = b""

    def since(self) -> float:
        """Seconds from the moment nginx's timeout runs from to the close: the header timeout
        bounds the whole header read (from the connect), the body timeout is between reads
        (from the last trickled byte)."""
        start = self.connected_at if self.kind == "headers" else self.sent[-1]
        return self.ended_at - start


def trickle(
    host: str,
    port: int,
    client: SlowClient,
    *,
    head: bytes,
    pieces: list[bytes],
    interval: float,
    give_up_after: float,
    connected: threading.Barrier,
) -> None:
    """Send `head`, then one piece every `interval` seconds, then nothing, until nginx closes
    the connection or `give_up_after` seconds pass. A close is noticed within milliseconds:
    the client waits for readability between pieces instead of sleeping."""
    with socket.create_connection((host, port), timeout=5) as connection:
        client.connected_at = time.monotonic()
        connection.sendall(head)
        connected.wait(10)
        deadline = client.connected_at + give_up_after
        queue = list(pieces)
        next_send = time.monotonic()
        try:
            while (now := time.monotonic()) < deadline:
                if queue and now >= next_send:
                    connection.sendall(queue.pop(0))
                    client.sent.append(time.monotonic())
                    next_send = client.sent[-1] + interval
                wait = (next_send if queue else deadline) - time.monotonic()
                readable, _, _ = select.select([connection], [], [], max(0.0, wait))
                if readable:
                    data = connection.recv(65536)
                    client.ended_at = time.monotonic()
                    client.outcome, client.answer = ("answered", data) if data else ("closed", b"")
                    return
        except ConnectionError:  # reset (reset_timedout_connection on), on a read or a send
            client.ended_at = time.monotonic()
            client.outcome = "closed"
            return
        client.ended_at = time.monotonic()
        client.outcome = "gave up"


def test_slow_clients_are_timed_out_while_health_stays_fast(
    edge: Stack, reliability_report: dict[str, Any]
) -> None:
    header_timeout = nginx_timeout_s("client_header_timeout")
    body_timeout = nginx_timeout_s("client_body_timeout")
    host, port = edge.url.removeprefix("http://").split(":")
    # Headers: a line every 2 s, forever; nginx's header timeout bounds the whole header read.
    # Bodies: a byte every 2 s for longer than the body timeout (which runs between reads, so
    # nginx must keep reading), then silence: nginx closes one body timeout later.
    interval = 2.0
    body_bytes = int(body_timeout // interval) + 2
    give_up_after = header_timeout + body_bytes * interval + body_timeout + 10
    headers_forever = [b"X-Slow-%d: y\r\n" % i for i in range(int(give_up_after / interval) + 2)]
    shapes = {
        "headers": (b"GET /api/items HTTP/1.1\r\nHost: x\r\n", headers_forever),
        "body": (
            b"POST /api/items HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
            [b"X"] * body_bytes,
        ),
    }
    clients = [SlowClient("headers" if i % 2 else "body") for i in range(20)]
    connected = threading.Barrier(len(clients) + 1)
    threads = [
        threading.Thread(
            target=trickle,
            args=(host, int(port), client),
            kwargs={
                "head": shapes[client.kind][0],
                "pieces": shapes[client.kind][1],
                "interval": interval,
                "give_up_after": give_up_after,
                "connected": connected,
            },
        )
        for client in clients
    ]
    for thread in threads:
        thread.start()
    connected.wait(30)  # every slow client holds a connection to nginx
    health_times: list[float] = []
    # Health checks for as long as slow clients hold connections (bounded: 80 at most).
    while any(thread.is_alive() for thread in threads) and len(health_times) < 80:
        started = time.monotonic()
        status, _, _ = edge.get("/healthz", timeout=5)
        health_times.append(time.monotonic() - started)
        assert status == 200
        time.sleep(0.5)
    for thread in threads:
        thread.join(give_up_after + 10)
    by_kind = {kind: [c for c in clients if c.kind == kind] for kind in shapes}
    reliability_report["7b. 20 slow clients (slowloris headers and bodies)"] = {
        "closed_by_nginx": sum(c.outcome == "closed" for c in clients),
        "header_clients_closed_after_s": sorted(round(c.since(), 1) for c in by_kind["headers"]),
        "body_clients_closed_after_last_byte_s": sorted(
            round(c.since(), 1) for c in by_kind["body"]
        ),
        "body_bytes_trickled": sorted({len(c.sent) for c in by_kind["body"]}),
        "healthz_max_ms_meanwhile": round(max(health_times) * 1000, 1),
    }
    outcomes = [(c.kind, c.outcome, c.answer[:80]) for c in clients]
    assert all(c.outcome == "closed" for c in clients), outcomes
    # Closed by nginx's timeout, not earlier and not much later (2 s for a loaded machine).
    for client in by_kind["headers"]:
        assert header_timeout - 0.5 < client.since() < header_timeout + 2, client
        assert len(client.sent) >= header_timeout // interval - 1, client
    for client in by_kind["body"]:
        # The body really trickled: every byte was taken, over more than one body timeout...
        assert len(client.sent) == body_bytes, client
        assert client.sent[-1] - client.sent[0] > body_timeout, client
        # ...and nginx closed it one body timeout after the last one.
        assert body_timeout - 0.5 < client.since() < body_timeout + 2, client
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
    burst = [stack.get("/api/items")[0] for _ in range(30)]
    # Another client: the app container's own address on the backend network.
    other = stack.compose(
        "exec",
        "-T",
        "app",
        "python",
        "-c",
        (
            "import urllib.request\n"
            "print(urllib.request.urlopen('http://nginx:8080/api/items', timeout=5).status)"
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
