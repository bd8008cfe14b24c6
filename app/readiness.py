"""Readiness: ready only between a completed startup and the start of shutdown."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Readiness:
    started: bool = False
    shutting_down: bool = False

    @property
    def ready(self) -> bool:
        return self.started and not self.shutting_down
