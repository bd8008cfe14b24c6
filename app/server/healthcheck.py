"""`python -m app.server.healthcheck`: exit 0 when this container's server is ready.

For Docker's HEALTHCHECK, so the image needs no curl. Deliberately imports nothing heavy (it
runs every few seconds): it reads BIND/PORT from the environment like the settings model does.
"""

from __future__ import annotations

import http.client
import os
import socket
import sys

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


def main() -> int:
    connection = _connection(dict(os.environ))
    try:
        connection.request("GET", PATH)
        status = connection.getresponse().status
    except OSError as error:
        print(f"healthcheck: {PATH} unreachable: {error}", file=sys.stderr)
        return 1
    finally:
        connection.close()
    if status != 200:
        print(f"healthcheck: {PATH} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
