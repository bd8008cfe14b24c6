"""Probes and metrics: the endpoints operators and orchestrators call, never rate-limited."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from app import metrics

router = APIRouter(tags=["operations"])


@router.get("/healthz", name="healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the worker's event loop answers. Checks nothing downstream on purpose, so a
    database outage never gets every pod restarted at once."""
    return {"status": "ok"}


@router.get("/readyz", name="readyz", responses={503: {"description": "not ready"}})
async def readyz(request: Request) -> JSONResponse:
    """Readiness: 503 until startup has completed and again once shutdown has begun, so a load
    balancer sends no new work to a worker that cannot take it."""
    readiness = request.app.state.readiness
    if readiness.ready:
        return JSONResponse({"status": "ready"})
    state = "starting" if not readiness.started else "shutting down"
    return JSONResponse({"status": state}, status_code=503)


@router.get("/metrics", name="metrics", include_in_schema=False)
async def metrics_endpoint() -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
