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
        for offset in range(0, len(upload.body), size):
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


def tmp_used_kib(nginx: str, stop: threading.Event, samples: list[int]) -> None:
    """How much of the filesystem holding client_body_temp_path is used, sampled until `stop`
    (bounded: 100 samples). df, not du: nginx unlinks a temp file as soon as it opens it."""
    temp_path = re.search(r"^\s*client_body_temp_path (\S+);", NGINX_CONF, re.M)
    assert temp_path
    for _ in range(100):
        if stop.wait(0.1):
            return
        df = docker("exec", nginx, "df", "-k", "--output=used", temp_path[1], check=False)
        if df.returncode == 0:
            samples.append(int(df.stdout.split()[-1]))


def test_fifty_slow_largest_uploads_at_once_are_all_answered(stack: Stack) -> None:
    limit = nginx_bytes("client_max_body_size")
    assert int(re.findall(r"limit_conn uploads (\d+);", NGINX_CONF)[0]) >= CLIENTS
    # The shipped rate limit, not a raised one: starts 1/(2 x rate) apart spend half a burst
    # slot each, so all CLIENTS fit the default burst and none is a 429.
    rate = float(compose_default("nginx", "RATE_LIMIT").removesuffix("r/s"))
    burst = int(compose_default("nginx", "RATE_LIMIT_BURST"))
    assert burst >= CLIENTS / 2
    # Every body different: an answer that matches proves it is that client's bytes, whole.
    uploads = [Upload(os.urandom(limit), delay=i / (2 * rate)) for i in range(CLIENTS)]
    nginx = stack.container("nginx")
    stop, samples = threading.Event(), list[int]()
    sampler = threading.Thread(target=tmp_used_kib, args=(nginx, stop, samples))
    sampler.start()
    try:
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            done = list(pool.map(lambda upload: slow_upload(stack, upload), uploads, timeout=90))
    finally:
        stop.set()
        sampler.join(15)
    # The cgroup's high-water mark: nginx with every spilled body (tmpfs pages count as its
    # memory). cgroup v1 here; memory.peak on v2.
    peak = docker(
        "exec", nginx, "sh", "-c",
        "cat /sys/fs/cgroup/memory/memory.max_usage_in_bytes 2>/dev/null"
        " || cat /sys/fs/cgroup/memory.peak",
        check=False,
    ).stdout.strip()  # fmt: skip
    print(
        f"\n{CLIENTS} uploads of {limit} B: slowest {max(u.seconds for u in done):.1f} s,"
        f" /tmp used at most {max(samples, default=0)} KiB at once ({len(samples)} samples),"
        f" nginx memory peak {int(peak or 0) // 1024} KiB"
    )
    wrong = [
        (u.status, u.error or u.answer)
        for u in done
        if u.status != 200
        or u.answer != {"bytes": limit, "sha256": hashlib.sha256(u.body).hexdigest()}
    ]
    statuses = Counter(u.status for u in done)
    assert not wrong, f"{len(wrong)} of {CLIENTS} wrong ({statuses}), first: {wrong[0]!r:.300}"
    # The bodies were on /tmp together, not one after another: the test used the space the
    # rule sizes (the last starts 1.25 s after the first, so they overlap by about 2 s).
    assert max(samples) * 1024 >= CLIENTS * limit / 2, samples

    # One byte over the limit: nginx refuses it by its Content-Length, before reading it.
    status, _, body = response(stack.url, method="POST", path=PATH, body=b"x" * (limit + 1))
    assert status == 413, body
    assert json.loads(body) == {"detail": "request body too large"}
