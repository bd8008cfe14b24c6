"""One log format for gunicorn, uvicorn and the app, on stdout.

gunicorn applies this dict (its `logconfig_dict`) in the master before forking, so every worker
inherits it. uvicorn's own access log is switched off in the worker class: the access line is
written by `app.middleware` instead, because only the app knows the route, the duration and the
request id, and two access lines per request would double every log bill.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any, Literal

from pythonjsonlogger.core import RESERVED_ATTRS

# The id of the request being served, for every log line written while serving it.
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

ACCESS_LOGGER = "app.access"

_JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"
_TEXT_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s%(request_id_suffix)s"


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        record.request_id_suffix = f" request_id={request_id}" if request_id else ""
        return True


def logging_config(level: str, fmt: Literal["json", "text"], *, access_log: bool) -> dict[str, Any]:
    """A `logging.config.dictConfig` dict: every logger that matters, one handler, one format."""
    level = level.upper()
    formatter: dict[str, Any]
    if fmt == "json":
        formatter = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": _JSON_FIELDS,
            "rename_fields": {
                "asctime": "time",
                "levelname": "level",
                "name": "logger",
                "process": "pid",
            },
            # request_id_suffix serves the text format; color_message is uvicorn's ANSI copy.
            "reserved_attrs": [*RESERVED_ATTRS, "request_id_suffix", "color_message"],
            "datefmt": "%Y-%m-%dT%H:%M:%S%z",
        }
    else:
        formatter = {"format": _TEXT_FORMAT, "datefmt": "%Y-%m-%d %H:%M:%S"}

    def logger(lvl: str = level) -> dict[str, Any]:
        return {"level": lvl, "handlers": ["stdout"], "propagate": False}

    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "app.logs.RequestIdFilter"}},
        "formatters": {"default": formatter},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "default",
                "filters": ["request_id"],
            }
        },
        "root": {"level": level, "handlers": ["stdout"]},
        "loggers": {
            "gunicorn.error": logger(),
            # Unused by UvicornWorker (it has no gunicorn access log); kept quiet and in format.
            "gunicorn.access": logger(),
            "uvicorn": logger(),
            "uvicorn.error": logger(),
            "uvicorn.access": logger("WARNING"),
            "app": logger(),
            ACCESS_LOGGER: logger("INFO" if access_log else "WARNING"),
        },
    }
