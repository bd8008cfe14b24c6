"""`python -m app.server [gunicorn args]`: validate the environment, then become gunicorn.

Why not start gunicorn directly: gunicorn parses WEB_CONCURRENCY with int() when it is imported,
before any config file runs, so `WEB_CONCURRENCY=lots gunicorn ...` dies with a traceback. This
checks every variable first and prints one line; then it exec()s gunicorn in the same process,
so gunicorn keeps this PID (PID 1 in the container) and receives signals directly.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from app.server.config import ConfigError, load_settings

CONFIG_FILE = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


def main(argv: list[str]) -> int:
    try:
        load_settings(os.environ)
    except ConfigError as error:
        print(error, file=sys.stderr, flush=True)
        return 2
    command = [sys.executable, "-m", "gunicorn", "-c", str(CONFIG_FILE), *argv]
    os.execv(sys.executable, command)  # noqa: S606 - replaces this process on purpose
    raise AssertionError("unreachable: execv does not return")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
