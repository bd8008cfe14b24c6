"""Gunicorn's process model for this service.

Every value comes from the environment through one validated settings model
(app/server/settings.py); the README's configuration table lists them all. The decisions live in
small tested modules imported here; this file only says which gunicorn setting each one feeds.

  python -m app.server.config     prints what this file would configure, without starting.
"""

import os
import sys
from pathlib import Path

# gunicorn executes this file before putting the app's directory on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from app.server import hooks
from app.server.config import ConfigError, build

try:
    _config = build(os.environ)
except ConfigError as _error:
    # One readable line and a non-zero exit before any worker exists; no traceback.
    print(_error, file=sys.stderr, flush=True)
    sys.exit(2)

_g = _config.gunicorn
_settings = _config.settings

# --- What runs --------------------------------------------------------------------------------
# The app factory; each worker builds its own app after the fork (unless PRELOAD).
wsgi_app = _g["wsgi_app"]
# uvicorn-worker's UvicornWorker on uvloop + httptools, uvicorn's access log off.
worker_class = _g["worker_class"]
# From the CPUs this container may use (cgroup quota, cpuset), or WEB_CONCURRENCY.
workers = _g["workers"]
preload_app = _g["preload_app"]

# --- Where it listens ---------------------------------------------------------------------------
bind = _g["bind"]
backlog = _g["backlog"]
# Only these peers may set the client address and scheme with X-Forwarded-For/-Proto.
forwarded_allow_ips = _g["forwarded_allow_ips"]

# --- Timeouts -----------------------------------------------------------------------------------
# Blocked event loop for this long: the worker is killed and replaced.
timeout = _g["timeout"]
# SIGTERM to exit: in-flight requests get this long. < compose stop_grace_period (30s).
graceful_timeout = _g["graceful_timeout"]
# Idle keep-alive: > nginx upstream keepalive_timeout (15s), so nginx closes first.
keepalive = _g["keepalive"]

# --- Recycling ----------------------------------------------------------------------------------
max_requests = _g["max_requests"]
max_requests_jitter = _g["max_requests_jitter"]

# --- Files (tmpfs only: the root filesystem is read-only in the image) ---------------------------
worker_tmp_dir = _g["worker_tmp_dir"]
# gunicorn 27's control socket: off, or at CONTROL_SOCKET (the image: /tmp/gunicorn.ctl).
control_socket_disable = _g["control_socket_disable"]
if "control_socket" in _g:
    control_socket = _g["control_socket"]
_metrics_dir = hooks.metrics_dir(_settings.PROMETHEUS_MULTIPROC_DIR, os.environ)

# --- Logs: one format on stdout for gunicorn, uvicorn and the app ---------------------------------
loglevel = _g["loglevel"]
errorlog = _g["errorlog"]
accesslog = _g["accesslog"]
logconfig_dict = _g["logconfig_dict"]


# --- Lifecycle hooks (master process) -----------------------------------------------------------
def on_starting(server):  # type: ignore[no-untyped-def]
    hooks.empty_metrics_dir(_metrics_dir)
    hooks.log_startup(
        server.log.error_log, _config.startup_record(), _settings.LOG_FORMAT == "json"
    )


def pre_fork(server, worker):  # type: ignore[no-untyped-def]
    # With PRELOAD: the preloaded app's objects stay shared with the workers (gc.freeze).
    hooks.freeze_before_fork(_settings.PRELOAD)


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    hooks.mark_worker_dead(worker.pid)


def on_exit(server):  # type: ignore[no-untyped-def]
    hooks.remove_metrics_dir(_metrics_dir)
