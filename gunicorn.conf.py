"""Gunicorn's settings for this service, each from one environment variable or decision.

The variables are read and validated once by the settings models (app/server/settings.py,
app/settings.py; the README's configuration table lists them); the decisions live in small tested
modules imported here. This file is the one place that says which gunicorn setting each feeds.

  python -m app.server.config     runs this file and prints what it set, without starting.
"""

import os
import sys
from pathlib import Path

# gunicorn executes this file before putting the app's directory on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from app.logs import logging_config
from app.server import hooks
from app.server.config import build_or_exit, startup_record
from app.server.follow import FOLLOWER as _follower

# A bad variable: one readable line and exit 2 here, before any worker exists; no traceback.
_server = build_or_exit()
_env = _server.settings

# --- What runs ---------------------------------------------------------------------------------
# The app factory; each worker builds its own app after the fork (unless PRELOAD).
wsgi_app = "app.main:create_app()"
# uvicorn-worker's UvicornWorker on uvloop + httptools, uvicorn's access log off.
worker_class = "app.server.worker.Worker"
# From the CPUs this container may use (cgroup quota, cpuset) and its memory, or WEB_CONCURRENCY.
workers = _server.plan.workers
# Then re-read every WORKERS_FOLLOW_INTERVAL s, one TTIN/TTOU per step (app/server/follow.py).
preload_app = _env.PRELOAD

# --- Where it listens --------------------------------------------------------------------------
bind = _env.binds
backlog = _env.BACKLOG
# Only these peers may set the client address and scheme with X-Forwarded-For/-Proto.
forwarded_allow_ips = _env.FORWARDED_ALLOW_IPS

# --- Timeouts ----------------------------------------------------------------------------------
# Blocked event loop for this long: the worker is killed and replaced.
timeout = _env.TIMEOUT
# SIGTERM to exit: in-flight requests get this long. < compose stop_grace_period (30s).
graceful_timeout = _env.GRACEFUL_TIMEOUT
# Idle keep-alive: > nginx upstream keepalive_timeout (15s), so nginx closes first.
keepalive = _env.KEEP_ALIVE

# --- Recycling ---------------------------------------------------------------------------------
max_requests = _env.MAX_REQUESTS
max_requests_jitter = _env.MAX_REQUESTS_JITTER

# --- Files (tmpfs only: the root filesystem is read-only in the image) --------------------------
worker_tmp_dir = _env.WORKER_TMP_DIR
# gunicorn 27's control socket: off, or at CONTROL_SOCKET (the image: /tmp/gunicorn.ctl).
control_socket_disable = _env.CONTROL_SOCKET is None
control_socket = _env.CONTROL_SOCKET
# Exported as PROMETHEUS_MULTIPROC_DIR now, before anything imports prometheus_client.
_metrics_dir = hooks.metrics_dir(_env.PROMETHEUS_MULTIPROC_DIR, os.environ)

# --- Logs: one format on stdout for gunicorn, uvicorn and the app --------------------------------
loglevel = _env.LOG_LEVEL
errorlog = "-"
# The access line is the app's (app.middleware); gunicorn's stays off.
accesslog = None
logconfig_dict = logging_config(_env.LOG_LEVEL, _env.LOG_FORMAT, access_log=_env.ACCESS_LOG)


# --- Lifecycle hooks (master process) ----------------------------------------------------------
def on_starting(server):  # type: ignore[no-untyped-def]
    hooks.empty_metrics_dir(_metrics_dir)
    record = startup_record(globals(), _server.plan)
    hooks.log_startup(server.log.error_log, record, _env.LOG_FORMAT == "json")


def when_ready(server):  # type: ignore[no-untyped-def]
    server.log.info(_follower.start(server, _env))


def on_reload(server):  # type: ignore[no-untyped-def]
    # The re-run file's settings (WEB_CONCURRENCY or the interval may differ now).
    server.log.info(_follower.start(server, _env))


def nworkers_changed(server, new_value, old_value):  # type: ignore[no-untyped-def]
    line = _follower.changed(new_value, old_value)
    if line:
        server.log.info(line)


def pre_fork(server, worker):  # type: ignore[no-untyped-def]
    # With PRELOAD: the preloaded app's objects stay shared with the workers (gc.freeze).
    hooks.freeze_before_fork(_env.PRELOAD)


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    hooks.mark_worker_dead(worker.pid)


def on_exit(server):  # type: ignore[no-untyped-def]
    _follower.stop()
    hooks.remove_metrics_dir(_metrics_dir)
