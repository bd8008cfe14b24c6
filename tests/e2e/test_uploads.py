"""Uploads through the shipped compose stack: many slow clients each sending the largest body
nginx accepts, all at once, every one answered with exactly what it sent; one byte more is 413.

nginx writes such bodies to its /tmp while it reads them (deploy/nginx/nginx.conf states the
sizing rule; tests/unit/test_deploy_agrees.py checks the figures). These tests show the rule
holds on the running stack: the bodies really are on /tmp at once, and they fit.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests.docker import docker
from tests.e2e.conftest import ROOT, Stack, response

pytestmark = pytest.mark.e2e

PATH = "/api/demo/upload"
# The figure: 50 slow uploads at once (nginx lets up to `limit_conn uploads` spill).
CLIENTS = 50
# Each body trickles in 16 pieces, one every 0.2 s: 3.2 s per upload, every gap far inside
# nginx's client_body_timeout, so the test is about space, not timeouts.
PIECES = 16
INTERVAL = 0.2
NGINX_CONF = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()


def nginx_bytes(directive: str) -> int:
    """A size as nginx.conf sets it (1m, 64k), the one place it is set."""
    found = re.search(rf"^\s*{directive} (\d+)([km]?);", NGINX_CONF, re.M)
    assert found, directive
    return int(found[1]) * {"": 1, "k": 1024, "m": 1024 * 1024}[found[2]]


def compose_default(service: str, variable: str) -> str:
    """The default docker-compose.yml gives `${VARIABLE:-default}` in a service's environment."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    value: str = compose["services"][service]["environment"][variable]
    found = re.fullmatch(r"\$\{\w+:-(.+)\}", value)
    assert found, value
    return found[1]


@dataclass
class Upload:
    body: bytes
    delay: float  # when it starts, after the first
    status: int = 0
    answer: Any = None
    error: str = ""
    seconds: float = 0.0
    # Set: two pieces in (more than client_body_buffer_size: spilled to /tmp), the upload waits
    # for everyone else at this barrier.
    hold: threading.Barrier | None = None


def slow_upload(stack: Stack, upload: Upload) -> Upload:
    """POST the body in PIECES pieces, INTERVAL apart, then read the answer."""
    time.sleep(upload.delay)
    host, port = stack.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    started = time.monotonic()
    try:
        connection.putrequest("POST", PATH)
        connection.putheader("Content-Type", "application/octet-stream")
        connection.putheader("Content-Length", str(len(upload.body)))
        connection.endheaders()
        size = -(-len(upload.body) // PIECES)
        for number, offset in enumerate(range(0, len(upload.body), size)):
            if number == 2 and upload.hold:
                upload.hold.wait()
            connection.send(upload.body[offset : offset + size])
            time.sleep(INTERVAL)
        answer = connection.getresponse()
        upload.status, raw = answer.status, answer.read()
        upload.answer = json.loads(raw) if raw.startswith(b"{") else raw
    except OSError as error:  # a reset or a timeout: recorded, asserted on below
        upload.error = repr(error)
    finally:
        connection.close()
        upload.seconds = time.monotonic() - started
    return upload


def tmp_used_kib(nginx: str) -> int:
    """How much of the filesystem holding client_body_temp_path is used. df, not du: nginx
    unlinks a temp file as soon as it has opened it."""
    temp_path = re.search(r"^\s*client_body_temp_path (\S+);", NGINX_CONF, re.M)
    assert temp_path
    df = docker("exec", nginx, "df", "-k", "--output=used", temp_path[1], timeout=10)
    return int(df.stdout.split()[-1])


def sample_tmp_used(nginx: str, stop: threading.Event, samples: list[int]) -> None:
    """tmp_used_kib until `stop` (bounded: 100 samples)."""
    for _ in range(100):
        if stop.wait(0.1):
            return
        samples.append(tmp_used_kib(nginx))


def memory_peak_kib(container: str) -> int:
    """The container's memory high-water mark, tmpfs pages included (they are charged to it):
    what the memory limit must hold. cgroup v1 here; memory.peak on v2."""
    peak = docker(
        "exec", container, "sh", "-c",
        "cat /sys/fs/cgroup/memory/memory.max_usage_in_bytes 2>/dev/null"
        " || cat /sys/fs/cgroup/memory.peak",
    ).stdout  # fmt: skip
    return int(peak) // 1024


def uploads_allowed() -> int:
    """How many bodies nginx lets spill to /tmp at once (limit_conn uploads)."""
    [allowed] = re.findall(r"^\s*limit_conn uploads (\d+);", NGINX_CONF, re.M)
    return int(allowed)


def start_delay(clients: int) -> float:
    """Seconds between clients' starts that keep them all within the shipped rate limit (not a
    raised one): starts 1/(2 x rate) apart spend half a burst slot each."""
    rate = float(compose_default("nginx", "RATE_LIMIT").removesuffix("r/s"))
    burst = int(compose_default("nginx", "RATE_LIMIT_BURST"))
    assert burst >= clients / 2
    return 1 / (2 * rate)


def assert_all_answered(done: list[Upload]) -> None:
    """Every upload answered 200 with its own body's size and digest."""
    wrong = [
        (u.status, u.error or u.answer)
        for u in done
        if u.status != 200
        or u.answer != {"bytes": len(u.body), "sha256": hashlib.sha256(u.body).hexdigest()}
    ]
    statuses = Counter(u.status for u in done)
    assert not wrong, f"{len(wrong)} of {len(done)} wrong ({statuses}), first: {wrong[0]!r:.300}"


def test_fifty_slow_largest_uploads_at_once_are_all_answered(demo_stack: Stack) -> None:
    stack = demo_stack  # the shipped stack with only the demo endpoints (the upload) on
    limit = nginx_bytes("client_max_body_size")
    assert uploads_allowed() >= CLIENTS
    delay = start_delay(CLIENTS)
    # Every body different: an answer that matches proves it is that client's bytes, whole.
    uploads = [Upload(os.urandom(limit), delay=i * delay) for i in range(CLIENTS)]
    nginx = stack.container("nginx")
    stop, samples = threading.Event(), list[int]()
    sampler = threading.Thread(target=sample_tmp_used, args=(nginx, stop, samples))
    sampler.start()
    try:
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            done = list(pool.map(lambda upload: slow_upload(stack, upload), uploads, timeout=90))
    finally:
        stop.set()
        sampler.join(15)
    print(
        f"\n{CLIENTS} uploads of {limit} B: slowest {max(u.seconds for u in done):.1f} s,"
        f" /tmp used at most {max(samples, default=0)} KiB at once ({len(samples)} samples),"
        f" nginx memory peak {memory_peak_kib(nginx)} KiB"
    )
    assert_all_answered(done)
    # The bodies were on /tmp together, not one after another: the test used the space the
    # rule sizes (the last starts 1.25 s after the first, so they overlap by about 2 s).
    assert max(samples) * 1024 >= CLIENTS * limit / 2, samples

    # One byte over the limit: nginx refuses it by its Content-Length, before reading it.
    status, _, body = response(stack.url, method="POST", path=PATH, body=b"x" * (limit + 1))
    assert status == 413, body
    assert json.loads(body) == {"detail": "request body too large"}


def test_one_spilling_upload_more_than_nginx_allows_is_refused_with_a_503(
    demo_stack: Stack,
) -> None:
    stack = demo_stack  # the shipped stack with only the demo endpoints (the upload) on
    # The bound the sizing rule counts on: with as many bodies on /tmp as nginx allows, one
    # more is refused (503, retry shortly) before its body is read, instead of filling /tmp
    # (a 500 for it and for others), and every one already in finishes.
    limit = nginx_bytes("client_max_body_size")
    allowed = uploads_allowed()
    delay = start_delay(allowed + 1)
    nginx = stack.container("nginx")
    before = tmp_used_kib(nginx)
    # Met by every holder two pieces (0.4 s) after its headers, when nginx counts it; from
    # there each needs 2.8 s more to finish: the one more arrives while all are counted.
    hold = threading.Barrier(allowed + 1, timeout=30)
    holders = [Upload(os.urandom(limit), delay=i * delay, hold=hold) for i in range(allowed)]
    with ThreadPoolExecutor(max_workers=allowed) as pool:
        running = pool.map(lambda upload: slow_upload(stack, upload), holders, timeout=90)
        hold.wait()
        # And their bodies are on /tmp: each holder's file holds a buffer at least.
        spilled = allowed * nginx_bytes("client_body_buffer_size") // 1024
        assert tmp_used_kib(nginx) - before >= spilled
        status, _, body = response(stack.url, method="POST", path=PATH, body=os.urandom(limit))
        done = list(running)
    print(f"\n{allowed} uploads held, one more: {status}; nginx memory peak"
          f" {memory_peak_kib(nginx)} KiB")  # fmt: skip
    assert (status, json.loads(body)) == (503, {"detail": "service unavailable, retry shortly"})
    assert_all_answered(done)
