"""`python -m app.server.healthcheck`: exit 0 when this container's server is ready.

For Docker's HEALTHCHECK, so the image needs no curl. Deliberately imports nothing heavy (it
runs every few seconds): it reads BIND/PORT from the environment like the settings model does.
Only when the probe fails before gunicorn runs does it load the settings, so a container
waiting on a configuration error (ON_CONFIG_ERROR=wait) shows that error's line in `docker
inspect`'s health log.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

PATH = "/readyz"
TIMEOUT_S = 3.0
# HTTP/1.1 by hand, on a plain socket: http.client imports the email package (about 35 ms of
# CPU of a 55 ms probe, measured in the image), and while a container boots Docker runs this
# every start_interval, on the CPU the boot and the serving replicas share.
REQUEST = f"GET {PATH} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()


def _address(env: dict[str, str]) -> tuple[socket.AddressFamily, str | tuple[str, int]]:
    """Where the server listens, read from BIND/PORT like the settings model reads them."""
    bind = (env.get("BIND") or "").split(",")[0].strip()
    if bind.startswith("unix:"):
        return socket.AF_UNIX, bind.removeprefix("unix:")
    port = int(bind.rsplit(":", 1)[1]) if bind and not bind.startswith("fd://") else None
    return socket.AF_INET, ("127.0.0.1", port or int(env.get("PORT") or 8000))


def _status(family: socket.AddressFamily, address: str | tuple[str, int]) -> int:
    """The status code the server answers GET PATH with."""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT_S)
        sock.connect(address)
        sock.sendall(REQUEST)
        with sock.makefile("rb") as response:
            line = response.readline(256)
    version, _, rest = line.decode("latin-1").partition(" ")
    if not version.startswith("HTTP/") or not rest[:3].isdigit():
        raise OSError(f"not an HTTP response: {line[:60]!r}")
    return int(rest[:3])


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
        family, address = _address(env)
    except ValueError:  # PORT=lots: the settings say it in their words
        print(f"healthcheck: {_config_error()}", file=sys.stderr)
        return 1
    try:
        status = _status(family, address)
    except OSError as error:
        reason = (None if _gunicorn_is_running() else _config_error()) or (
            f"{PATH} unreachable: {error}"
        )
        print(f"healthcheck: {reason}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"healthcheck: {PATH} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
