"""An endpoint that awaits I/O, like a call to another service: what async workers are for.

It also lets tests and benchmarks hold a request in flight (graceful stop, reload). The wait is
bounded so it cannot pin a connection for longer than nginx would wait anyway.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Annotated

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

router = APIRouter(prefix="/api/demo", tags=["demo"])


@router.get("/wait", name="wait")
async def wait(ms: Annotated[int, Query(ge=0, le=30_000)] = 10) -> dict[str, int]:
    """Await `ms` milliseconds without blocking the worker, then answer with the worker's pid."""
    await asyncio.sleep(ms / 1000)
    return {"waited_ms": ms, "pid": os.getpid()}


@router.get("/whoami", name="whoami")
async def whoami() -> dict[str, str | int]:
    """The worker process and container host that answered: shows load spreading."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


@router.websocket("/echo")
async def echo(websocket: WebSocket) -> None:
    """Echoes text messages: shows websockets pass through nginx (Upgrade) to the workers."""
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        return
