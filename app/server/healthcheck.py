"""`python -m app.server.healthcheck`: exit 0 when this container's server is ready.

For Docker's HEALTHCHECK, so the image needs no curl. Deliberately imports nothing heavy (it
runs every few seconds): it reads BIND/PORT from the environment like the settings model does.
Only when the probe fails before gunicorn runs does it load the settings, so a container
waiting on a configuration error (ON_CONFIG_ERROR=wait) shows that error's line in `docker
inspect`'s health log.
"""

from __future__ import annotations

import http.client
import os
import socket
import sys
from pathlib import Path

PATH = "/readyz"
TIMEOUT_S = 3.0


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=TIMEOUT_S)
        self._socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT_S)
        self.sock.connect(self._socket_path)


def _connection(env: dict[str, str]) -> http.client.HTTPConnection:
    bind = (env.get("BIND") or "").split(",")[0].strip()
    if bind.startswith("unix:"):
        return _UnixHTTPConnection(bind.removeprefix("unix:"))
    port = int(bind.rsplit(":", 1)[1]) if bind and not bind.startswith("fd://") else None
    return http.client.HTTPConnection(
        "127.0.0.1", port or int(env.get("PORT") or 8000), timeout=TIMEOUT_S
    )


def _config_error() -> str | None:
    from app.server.config import ConfigError, load_settings  # noqa: PLC0415 - failure path only

    try:
        load_settings()
    except ConfigError as error:
        return str(error)
    return None


def _gunicorn_is_running() -> bool:
    """Whether the entrypoint has exec()ed gunicorn (PID 1's command line), which it does only
    once the settings are valid: a failed probe then means the server is still booting, and
    loading the settings to explain it (a third of a second of CPU, at every start-interval
    probe) only slowed that boot, by about half a second of the two to /readyz."""
    try:
        return b"gunicorn" in Path("/proc/1/cmdline").read_bytes()
    except OSError:  # not in a container of its own (a pod sharing its process namespace)
        return False


def main() -> int:
    env = dict(os.environ)
    try:
        connection = _connection(env)
    except ValueError:  # PORT=lots: the settings say it in their words
        print(f"healthcheck: {_config_error()}", file=sys.stderr)
        return 1
    try:
        connection.request("GET", PATH)
        status = connection.getresponse().status
    except OSError as error:
        reason = (None if _gunicorn_is_running() else _config_error()) or (
            f"{PATH} unreachable: {error}"
        )
        print(f"healthcheck: {reason}", file=sys.stderr)
        return 1
    finally:
        connection.close()
    if status != 200:
        print(f"healthcheck: {PATH} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
