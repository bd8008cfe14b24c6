"""The gunicorn configuration of tiangolo's uvicorn-gunicorn-fastapi image, as a benchmark peer.

Rewritten here (not copied) from the defaults of
https://github.com/tiangolo/uvicorn-gunicorn-docker/blob/master/docker-images/gunicorn_conf.py
(the base of uvicorn-gunicorn-fastapi-docker), so the benchmark can rebuild that configuration
on the same base image and the same locked dependencies as this template:

- workers = max(int(WORKERS_PER_CORE x multiprocessing.cpu_count()), 2), WORKERS_PER_CORE 1,
  then capped by MAX_WORKERS if set; WEB_CONCURRENCY wins. cpu_count() is the *host's* count:
  a container limited to one CPU on a 2-core host still gets 2 workers (comparison 3).
- keepalive 5 s, timeout 120 s, graceful_timeout 120 s, access and error log to stdout/stderr
  ("-"), worker_tmp_dir /dev/shm, bind HOST:PORT (the image's PORT is 80; the benchmark sets 8000).
- Worker class: the image defaults to `uvicorn.workers.UvicornWorker`, which uvicorn deprecated in
  favour of the uvicorn-worker package; `uvicorn_worker.UvicornWorker` is the same class at its
  maintained home (WORKER_CLASS overrides it, as in the image).
"""

import json
import multiprocessing
import os

_per_core = float(os.getenv("WORKERS_PER_CORE", "1"))
_max_workers = int(os.getenv("MAX_WORKERS") or 0) or None
_explicit = os.getenv("WEB_CONCURRENCY")
if _explicit:
    workers = int(_explicit)
else:
    workers = max(int(_per_core * multiprocessing.cpu_count()), 2)
    if _max_workers:
        workers = min(workers, _max_workers)

bind = os.getenv("BIND") or f"{os.getenv('HOST', '0.0.0.0')}:{os.getenv('PORT', '80')}"
loglevel = os.getenv("LOG_LEVEL", "info")
worker_class = os.getenv("WORKER_CLASS", "uvicorn_worker.UvicornWorker")
accesslog = os.getenv("ACCESS_LOG", "-") or None
errorlog = os.getenv("ERROR_LOG", "-") or None
worker_tmp_dir = "/dev/shm"
graceful_timeout = int(os.getenv("GRACEFUL_TIMEOUT", "120"))
timeout = int(os.getenv("TIMEOUT", "120"))
keepalive = int(os.getenv("KEEP_ALIVE", "5"))

# The image prints its effective configuration at boot; so does this.
print(
    json.dumps(
        {
            "workers": workers,
            "bind": bind,
            "worker_class": worker_class,
            "keepalive": keepalive,
            "timeout": timeout,
            "graceful_timeout": graceful_timeout,
            "accesslog": accesslog,
        }
    ),
    flush=True,
)
