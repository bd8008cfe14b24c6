"""The app factory. gunicorn serves `app.main:create_app()`; tests build apps with their own
settings instead of patching import-time globals."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from app import metrics
from app.api import demo, items
from app.health import router as health_router
from app.middleware import RequestContextMiddleware
from app.readiness import Readiness
from app.settings import AppSettings

log = logging.getLogger("app")


def create_app(settings: AppSettings | None = None) -> FastAPI:
    settings = settings or AppSettings()
    readiness = Readiness()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Open pools and clients here; readiness turns on only after they are ready.
        metrics.WORKERS.set(1)
        readiness.started = True
        log.info("app started", extra={"app_name": settings.APP_NAME})
        yield
        readiness.shutting_down = True
        log.info("app shutting down")
        # Close pools and clients here. The server runs this even when requests outlast the
        # stop grace (they are cancelled first), so the line below is the proof it ran.
        log.info("app cleanup complete")

    # Docs on: FastAPIOffline is FastAPI with its /docs, /redoc and /openapi.json, whose pages load
    # Swagger UI and ReDoc from the image (under /static-offline-docs/) instead of jsdelivr, so they
    # work where browsers cannot reach the internet. Docs off: none of those routes, no assets.
    new_app = (
        FastAPIOffline
        if settings.DOCS_ENABLED
        else partial(FastAPI, docs_url=None, redoc_url=None, openapi_url=None)
    )
    app = new_app(
        title=settings.APP_NAME,
        version=settings.APP_VERSION,
        lifespan=lifespan,
        root_path=settings.ROOT_PATH,
    )
    app.state.settings = settings
    app.state.readiness = readiness
    app.state.items = items.ItemStore()

    app.include_router(health_router)
    app.include_router(items.router)
    app.include_router(demo.router)
    app.add_middleware(RequestContextMiddleware)
    return app
