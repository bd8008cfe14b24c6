"""An endpoint that awaits I/O, like a call to another service: what async workers are for.

It also lets tests and benchmarks hold a request in flight (graceful stop, reload). The wait is
bounded so it cannot pin a connection for longer than nginx would wait anyway. Like whoami,
upload and echo, it is off (404) unless DEMO_ENDPOINTS_ENABLED: a production service does not
tell the internet its host names and pids, nor hold a connection for anyone who asks.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time
from typing import Annotated, Any

from fastapi import (
    APIRouter,
    Depends,
    HTTPException,
    Query,
    Request,
    WebSocket,
    WebSocketDisconnect,
)
from fastapi.requests import HTTPConnection

router = APIRouter(prefix="/api/demo", tags=["demo"])
OFF: dict[int | str, dict[str, Any]] = {404: {"description": "demo endpoints are off"}}


async def demo_endpoints_enabled(connection: HTTPConnection) -> None:
    """404 unless DEMO_ENDPOINTS_ENABLED. For the websocket too: raised before the handshake is
    accepted, it becomes an HTTP 404 answer to the upgrade request (not a 101). `async`: FastAPI
    runs a plain `def` dependency in its thread pool, a thread hop per request that cost whoami
    about 40% of its throughput."""
    if not connection.app.state.settings.DEMO_ENDPOINTS_ENABLED:
        raise HTTPException(status_code=404, detail="Not Found")


@router.get("/wait", name="wait", dependencies=[Depends(demo_endpoints_enabled)], responses=OFF)
async def wait(ms: Annotated[int, Query(ge=0, le=30_000)] = 10) -> dict[str, int]:
    """Await `ms` milliseconds without blocking the worker, then answer with the worker's pid."""
    await asyncio.sleep(ms / 1000)
    return {"waited_ms": ms, "pid": os.getpid()}


@router.get("/whoami", name="whoami", dependencies=[Depends(demo_endpoints_enabled)], responses=OFF)
async def whoami(request: Request) -> dict[str, str | int | None]:
    """Who answered (worker pid, container host: shows load spreading) and whom the app believes
    it is talking to (client address and scheme, as resolved through trusted proxies)."""
    client = request.client.host if request.client else None
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "client": client,
        "scheme": request.url.scheme,
    }


@router.get("/block", name="block", responses={404: {"description": "fault injection is off"}})
async def block(
    request: Request, seconds: Annotated[float, Query(gt=0, le=120)] = 1
) -> dict[str, float]:
    """The classic mistake, on purpose: sync sleep inside `async def` freezes this worker's event
    loop, so it stops answering and stops its heartbeat; gunicorn kills and replaces it after
    TIMEOUT. Off unless FAULT_INJECTION_ENABLED."""
    if not request.app.state.settings.FAULT_INJECTION_ENABLED:
        raise HTTPException(status_code=404, detail="Not Found")
    time.sleep(seconds)  # the fault being demonstrated
    return {"blocked_s": seconds}


@router.websocket("/echo", dependencies=[Depends(demo_endpoints_enabled)])
async def echo(websocket: WebSocket) -> None:
    """Echoes text messages: shows websockets pass through nginx (Upgrade) to the workers."""
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        return


@router.post(
    "/upload", name="upload", dependencies=[Depends(demo_endpoints_enabled)], responses=OFF
)
async def upload(request: Request) -> dict[str, int | str]:
    """Reads the request body as it arrives and answers with its size and SHA-256: what reached
    the app, byte for byte. Nothing is kept, so any size costs one chunk of memory; nginx sets
    the largest (client_max_body_size)."""
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.stream():
        digest.update(chunk)
        size += len(chunk)
    return {"bytes": size, "sha256": digest.hexdigest()}
