"""The server's configuration: one pydantic-settings model read from the environment.

Names match tiangolo's uvicorn-gunicorn-fastapi image where they overlap (WEB_CONCURRENCY,
WORKERS_PER_CORE, MAX_WORKERS, HOST, PORT, BIND, LOG_LEVEL, TIMEOUT, GRACEFUL_TIMEOUT,
KEEP_ALIVE, ...), so a project moving off that image renames nothing. The README's configuration
table is generated from this model's field descriptions (`scripts/config_reference.py`). Master and
workers read it the same way, with pydantic-settings (app/server/config.py, load_settings).
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A BIND entry gunicorn accepts: host:port, [ipv6]:port, unix:/path, fd://N.
_BIND_ENTRY = re.compile(
    r"""^(
        unix:/\S+
      | fd://\d+
      | \[[0-9A-Fa-f:.]+\]:\d{1,5}
      | [A-Za-z0-9.\-]+:\d{1,5}
    )$""",
    re.VERBOSE,
)


class ServerSettings(BaseSettings):
    """Gunicorn and the process model. Every field is one environment variable of the same name."""

    # An empty variable (`WEB_CONCURRENCY=` in an .env file) means "unset", not "invalid".
    model_config = SettingsConfigDict(
        case_sensitive=True, extra="ignore", frozen=True, env_ignore_empty=True
    )

    # --- How many workers -------------------------------------------------------------------
    WEB_CONCURRENCY: Annotated[int, Field(ge=1)] | None = Field(
        default=None,
        description="Exact number of worker processes. When set it wins over every formula "
        "below (including the memory cap).",
    )
    WORKERS_PER_CORE: Annotated[float, Field(gt=0, le=16)] = Field(
        default=1.0,
        description="Workers per available CPU. 1 suits async (UvicornWorker) workers: one "
        "event loop saturates one core.",
    )
    MIN_WORKERS: Annotated[int, Field(ge=1)] = Field(
        default=1,
        description="Floor for the computed worker count (applied after MAX_WORKERS). 1, "
        "because a container limited to half a CPU gains nothing from a second worker.",
    )
    MAX_WORKERS: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="Cap for the computed worker count. Unset: no cap."
    )
    MEMORY_PER_WORKER_MB: Annotated[int, Field(ge=16)] = Field(
        default=128,
        description="Memory budget per worker. With a container memory limit, the computed "
        "count never exceeds limit / budget (at least 1), so a small limit is not OOM-killed.",
    )
    WORKERS_FOLLOW_INTERVAL: Annotated[float, Field(ge=0, le=3600)] = Field(
        default=5,
        description="Seconds between the master's re-reads of the CPU quota and memory limit; "
        "when the computed count changes (an in-place resize: Kubernetes, `docker update "
        "--cpus`) it adds or retires one worker per step with gunicorn's TTIN/TTOU, logging "
        "why. 0: off, the count from the start stays. Never with WEB_CONCURRENCY.",
    )

    # --- Where to listen --------------------------------------------------------------------
    HOST: str = Field(default="0.0.0.0", min_length=1, description="Address to bind.")  # nosec B104 - a container listens on all its interfaces
    PORT: Annotated[int, Field(ge=1, le=65535)] = Field(
        default=8000, description="Port to bind (above 1024, so no privilege is needed)."
    )
    BIND: str | None = Field(
        default=None,
        description="Full bind list, overriding HOST and PORT: comma-separated `host:port`, "
        "`[ipv6]:port`, `unix:/path` or `fd://N`.",
    )
    BACKLOG: Annotated[int, Field(ge=1, le=65535)] = Field(
        default=2048, description="Listen queue length."
    )

    # --- Timeouts (agree with nginx, compose and Kubernetes; tests check they do) ---------------
    TIMEOUT: Annotated[int, Field(ge=1, le=3600)] = Field(
        default=30,
        description="Seconds a worker's event loop may stay blocked before the master kills "
        "and replaces it.",
    )
    GRACEFUL_TIMEOUT: Annotated[int, Field(ge=1, le=3600)] = Field(
        default=20,
        description="Seconds a worker gets to stop after SIGTERM: three quarters of it for "
        "requests in flight (longer ones are then cancelled), the rest for the app's lifespan "
        "shutdown, so its cleanup always runs. Shorter than compose's stop_grace_period (30s) "
        "and the Kubernetes grace period, so the orchestrator never SIGKILLs a draining server.",
    )
    KEEP_ALIVE: Annotated[int, Field(ge=1, le=3600)] = Field(
        default=20,
        description="Seconds an idle keep-alive connection stays open. Longer than nginx's "
        "upstream keepalive_timeout (15s), so nginx always closes first and never reuses a "
        "connection gunicorn is closing (no random 502).",
    )

    # --- Worker recycling -------------------------------------------------------------------
    MAX_REQUESTS: Annotated[int, Field(ge=0)] = Field(
        default=0,
        description="Restart a worker after this many requests (0: never). A leak workaround, "
        "not a default: restarts cost a cold worker.",
    )
    MAX_REQUESTS_JITTER: Annotated[int, Field(ge=0)] = Field(
        default=0,
        description="Random extra requests per worker, so they do not all restart together.",
    )
    PRELOAD: bool = Field(
        default=False,
        description="Import the app in the master before forking (less memory, faster "
        "spawns; SIGHUP then no longer reloads code).",
    )

    # --- Logs -------------------------------------------------------------------------------
    LOG_LEVEL: Literal["debug", "info", "warning", "error", "critical"] = Field(
        default="info", description="Level for gunicorn, uvicorn and app logs."
    )
    LOG_FORMAT: Literal["json", "text"] = Field(
        default="json",
        description="`json` (one object per line, for collectors) or `text` (development).",
    )
    ACCESS_LOG: bool = Field(
        default=False,
        description="Have the app log one line per request (route template, duration in the "
        "app, client address). Off: nginx in front logs every request with the same request "
        "id, and a second line per request costs about a fifth of a small endpoint's "
        "throughput (docs/benchmarks.md). Answers of 500 and above are logged either way.",
    )

    # --- Proxies ----------------------------------------------------------------------------
    FORWARDED_ALLOW_IPS: str = Field(
        default="127.0.0.1,::1",
        description="Comma-separated addresses or CIDR networks whose X-Forwarded-For/Proto are "
        "trusted: the proxy in front (nginx), never `*` by default, or any client could forge "
        "its address.",
    )

    # --- Files the server writes (all must live on tmpfs in a read-only container) -------------
    # Strings, not Paths: gunicorn's path settings take strings (or None, its default).
    WORKER_TMP_DIR: str | None = Field(
        default="/dev/shm",  # noqa: S108  # nosec B108 - per-container tmpfs
        description="Directory for worker heartbeat files. /dev/shm is memory-backed, so a "
        "busy disk never stalls heartbeats and a read-only root FS is fine.",
    )
    CONTROL_SOCKET: str | None = Field(
        default=None,
        description="Path for gunicorn's control socket (`gunicornc`). Unset: disabled (the "
        "default $HOME path fails for a non-root user with a read-only home). The image sets "
        "it to /tmp/gunicorn.ctl.",
    )
    PROMETHEUS_MULTIPROC_DIR: Path | None = Field(
        default=None,
        description="Directory where workers share metrics. Emptied at start. Unset: a fresh "
        "directory under the temp dir.",
    )

    # --- Start-up ---------------------------------------------------------------------------
    # Read from the environment by app/server/__main__.py before this model is validated (it
    # decides what happens when validation fails); declared here so it is documented and checked.
    ON_CONFIG_ERROR: Literal["exit", "wait"] = Field(
        default="exit",
        description="What the entrypoint does after printing the line that names a bad "
        "variable: `exit` with code 2, or `wait` until it is stopped (compose sets it, so "
        "`restart: unless-stopped` does not restart a container whose environment cannot "
        "change; `docker compose up -d` replaces it).",
    )
    PRE_START_PATH: Path = Field(
        default=Path("prestart.sh"),
        description="Hook run once per container before gunicorn starts (migrations and the "
        "like), if the file exists; relative paths are from the project directory (/srv in "
        "the image). If it fails, the server does not start. `pre-start` as the container's "
        "command runs only the hook and exits with its code.",
    )
    PRE_START_IN_SERVER: bool = Field(
        default=True,
        description="Run the pre-start hook in this container before gunicorn starts. `false` "
        "where something else runs it once per release: the Kubernetes `migrations` component "
        "(a Job running `pre-start`), or `docker compose run --rm app pre-start` before a "
        "deploy.",
    )

    @field_validator("BIND")
    @classmethod
    def _bind_entries_are_addresses(cls, value: str | None) -> str | None:
        if value is None:
            return None
        entries = [entry.strip() for entry in value.split(",")]
        for entry in entries:
            if not _BIND_ENTRY.match(entry):
                raise ValueError(f"{entry!r} is not host:port, [ipv6]:port, unix:/path or fd://N")
            if not entry.startswith(("unix:", "fd://")):
                port = int(entry.rsplit(":", 1)[1])
                if not 1 <= port <= 65535:
                    raise ValueError(f"port {port} in {entry!r} is outside 1-65535")
        return ",".join(entries)

    @field_validator("FORWARDED_ALLOW_IPS")
    @classmethod
    def _trusted_proxies_are_networks(cls, value: str) -> str:
        entries = [entry.strip() for entry in value.split(",") if entry.strip()]
        if not entries:
            raise ValueError("must name at least one address or network")
        for entry in entries:
            if entry == "*":
                continue
            try:
                # Strict, as gunicorn checks it: 10.0.0.1/24 (host bits set) passed here once and
                # then stopped gunicorn with a line that named no variable.
                ipaddress.ip_network(entry, strict=True)
            except ValueError as error:
                raise ValueError(
                    f"{entry!r} is not an IP address or CIDR network ({error})"
                ) from None
        return ",".join(entries)

    @field_validator("WORKERS_FOLLOW_INTERVAL")
    @classmethod
    def _follow_interval_is_off_or_humane(cls, value: float) -> float:
        # Below half a second the master would spend its time re-reading files that change
        # only when someone resizes the container.
        if 0 < value < 0.5:
            raise ValueError("must be 0 (off) or at least 0.5 seconds")
        return value

    @model_validator(mode="after")
    def _worker_bounds_agree(self) -> ServerSettings:
        if self.MAX_WORKERS is not None and self.MIN_WORKERS > self.MAX_WORKERS:
            raise ValueError(
                f"MIN_WORKERS={self.MIN_WORKERS} is greater than MAX_WORKERS={self.MAX_WORKERS}"
            )
        return self

    @property
    def binds(self) -> list[str]:
        if self.BIND:
            return self.BIND.split(",")
        host = f"[{self.HOST}]" if ":" in self.HOST else self.HOST
        return [f"{host}:{self.PORT}"]
