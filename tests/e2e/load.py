"""A bounded HTTP/1.1 load generator for the reliability tests: asyncio, keep-alive connections,
no dependencies. Every run stops by itself at `duration` seconds or `max_requests`, whichever
comes first, and counts each answer by status and each transport failure by kind.

It is a test tool, not a benchmark: it measures whether requests fail, and latency roughly.
"""

from __future__ import annotations

import asyncio
import ssl
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    stale_retries: int = 0
    # How many stale keep-alive retries the scenario explains (an nginx reload closes each idle
    # client connection once); every retry beyond it counts as a failed request, so a run that
    # hides failures behind retries fails like one that shows them.
    allowed_stale_retries: int = 0

    def add(self, other: LoadResult) -> None:
        """Count another run's requests in this one (several rounds, one total)."""
        self.sent += other.sent
        self.statuses.update(other.statuses)
        self.errors.update(other.errors)
        self.latencies.extend(other.latencies)
        self.elapsed += other.elapsed
        self.stale_retries += other.stale_retries
        self.allowed_stale_retries += other.allowed_stale_retries

    @property
    def unexplained_stale_retries(self) -> int:
        return max(0, self.stale_retries - self.allowed_stale_retries)

    @property
    def failed(self) -> int:
        return (
            sum(self.errors.values())
            + sum(count for status, count in self.statuses.items() if status >= 500)
            + self.unexplained_stale_retries
        )

    def summary(self) -> dict[str, object]:
        ordered = sorted(self.latencies)

        def pct(p: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000, 1)

        return {
            "requests": self.sent,
            "failed": self.failed,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": dict(self.errors),
            "stale_keepalive_retries": self.stale_retries,
            "stale_keepalive_retries_allowed": self.allowed_stale_retries,
            "rps": round(self.sent / self.elapsed, 1) if self.elapsed else 0,
            "p50_ms": pct(0.5) if ordered else None,
            "p99_ms": pct(0.99) if ordered else None,
            "mean_ms": round(statistics.fmean(ordered) * 1000, 1) if ordered else None,
        }


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("closed before the status line")
    status = int(status_line.split()[1])
    length, close = 0, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "connection" and value.strip().lower() == "close":
            close = True
    await reader.readexactly(length)
    return status, close


async def _connection(
    host: str,
    port: int,
    request: bytes,
    *,
    retry_stale: bool,
    deadline: float,
    budget: list[int],
    result: LoadResult,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.monotonic() < deadline and budget[0] > 0:
        budget[0] -= 1
        result.sent += 1
        started = time.monotonic()
        reused = writer is not None
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        host, port, ssl=tls, server_hostname=server_hostname if tls else None
                    ),
                    5,
                )
            assert reader is not None
            assert writer is not None
            writer.write(request)
            status, close = await asyncio.wait_for(_read_response(reader), 30)
            result.statuses[status] += 1
            result.latencies.append(time.monotonic() - started)
            if close:
                writer.close()
                writer = None
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as error:
            if writer is not None:
                writer.close()
            stale = reused and isinstance(error, ConnectionError | asyncio.IncompleteReadError)
            if stale and retry_stale:
                # The server closed an idle keep-alive connection as we reused it (nginx does on
                # reload). Like every HTTP client, retry this GET once on a new connection; never
                # a POST, which may have been processed.
                result.stale_retries += 1
                writer = None
                budget[0] += 1
                result.sent -= 1
                reused = False
                continue
            result.errors[type(error).__name__] += 1
            writer = None
    if writer is not None:
        writer.close()


def _request(host: str, path: str, json_body: bytes | None) -> bytes:
    if json_body is None:
        return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(json_body)}\r\n\r\n"
    )
    return head.encode() + json_body


async def _run(
    url: str,
    path: str,
    *,
    connections: int,
    duration: float,
    max_requests: int,
    json_body: bytes | None,
    allowed_stale_retries: int,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> LoadResult:
    host, port = url.removeprefix("http://").removeprefix("https://").split(":")
    request = _request(server_hostname or host, path, json_body)
    result = LoadResult(allowed_stale_retries=allowed_stale_retries)
    started = time.monotonic()
    budget = [max_requests]
    await asyncio.gather(
        *(
            _connection(
                host,
                int(port),
                request,
                retry_stale=json_body is None,
                deadline=started + duration,
                budget=budget,
                result=result,
                tls=tls,
                server_hostname=server_hostname,
            )
            for _ in range(connections)
        )
    )
    result.elapsed = time.monotonic() - started
    return result


def run_load(
    url: str,
    path: str,
    *,
    connections: int,
    duration: float,
    max_requests: int,
    json_body: bytes | None = None,
    allowed_stale_retries: int = 0,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> LoadResult:
    """Blocking: run the load and return what happened. With `json_body`, every request is a
    POST of it (never retried: a client cannot know whether a POST was processed). A GET whose
    kept-alive connection the server closed under it is retried once on a new connection, as
    HTTP clients do; `allowed_stale_retries` is how many of those the scenario explains (none
    unless it closes client connections on purpose), and any beyond count in `failed`. With
    `tls`, every connection is HTTPS with that context, verified as `server_hostname` (also the
    Host header)."""
    return asyncio.run(
        _run(
            url,
            path,
            connections=connections,
            duration=duration,
            max_requests=max_requests,
            json_body=json_body,
            allowed_stale_retries=allowed_stale_retries,
            tls=tls,
            server_hostname=server_hostname,
        )
    )
