"""The service's own configuration (what the app does), apart from the server's (how it runs)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AppSettings(BaseSettings):
    """Read once per app instance by `create_app`; tests pass their own instance."""

    model_config = SettingsConfigDict(
        case_sensitive=True, extra="ignore", frozen=True, env_ignore_empty=True
    )

    APP_NAME: str = Field(
        # On its own line: a copy puts its project name here, up to 57 characters.
        default="fastapi-service",
        min_length=1,
        description="Service name in the OpenAPI title.",
    )
    APP_VERSION: str = Field(
        default="0.1.0",
        min_length=1,
        description="Version in the OpenAPI document (the image sets it).",
    )
    DOCS_ENABLED: bool = Field(
        default=False,
        description="Serve /docs, /redoc and /openapi.json. Off by default: production does not "
        "publish its API map; the development override turns it on.",
    )
    DEMO_ENDPOINTS_ENABLED: bool = Field(
        default=False,
        description="Serve /api/demo/whoami (names the host and worker pid), /api/demo/wait (holds "
        "a request up to 30 s), /api/demo/upload (reads any body) and the /api/demo/echo "
        "websocket: the tests and the benchmark turn it on. Off by default: they answer 404, "
        "production does not publish them.",
    )
    FAULT_INJECTION_ENABLED: bool = Field(
        default=False,
        description="Serve /api/demo/block, which blocks its worker's event loop with sync code "
        "(what gunicorn's TIMEOUT is for). For the reliability suite; never in production.",
    )
    ROOT_PATH: str = Field(
        default="",
        pattern=r"^(/[A-Za-z0-9._~-]+)*$",
        description="Path prefix the proxy mounts the app under (e.g. `/api`), for OpenAPI links.",
    )
