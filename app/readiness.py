"""Readiness: ready only between a completed startup and the start of shutdown."""

from __future__ import annotations

from dataclasses import dataclass

# Set in a worker process when its server begins to stop (SIGTERM, SIGHUP reload, max_requests),
# before the app's own lifespan shutdown runs: requests still arriving on open connections then
# see 503 from /readyz. One app per worker process, so a process-wide flag is exact.
_process_draining = False


def mark_process_draining() -> None:
    global _process_draining  # noqa: PLW0603 - process-wide by design, see above
    _process_draining = True


@dataclass
class Readiness:
    started: bool = False
    shutting_down: bool = False

    @property
    def ready(self) -> bool:
        return self.started and not (self.shutting_down or _process_draining)
