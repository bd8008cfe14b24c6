"""Who is measured: this template (through nginx over TCP or a Unix socket, or directly) and the
servers users pick instead, all serving the same app from images on the same base.

Every server container gets the same CPU budget (`--cpus=1`, pinned to CPU 0); nginx and the wrk
client share CPU 1. Peers run the worker count this template computes for that budget (`n`),
except tiangolo's configuration, which computes its own from the host's CPU count.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from bench.docker import Run
from bench.wrk import APP_SETTINGS

APP_PORT = 8000
NGINX_PORT = 8080
SOCKET_DIR = "/run/sock"
SOCKET = f"{SOCKET_DIR}/app.sock"
# Peers import the app the way `fastapi run` needs it (a module with an `app` object); the
# others take the factory directly.
FACTORY = "app.main:create_app"


@dataclass(frozen=True)
class Budget:
    """Docker flags every server container gets, and where nginx and the client run."""

    server_cpus: str = "1"
    server_cpuset: str | None = "0"
    side_cpuset: str | None = "1"  # wrk and nginx
    memory: str = "1g"

    def server_options(self) -> list[str]:
        pin = ["--cpuset-cpus", self.server_cpuset] if self.server_cpuset else []
        return ["--cpus", self.server_cpus, "--memory", self.memory, *pin]

    def side_options(self) -> list[str]:
        return ["--cpuset-cpus", self.side_cpuset] if self.side_cpuset else []


@dataclass(frozen=True)
class Images:
    app: str
    nginx: str
    peers: str
    client: str


@dataclass(frozen=True)
class Variant:
    name: str
    label: str
    description: str
    via: str  # "nginx-tcp" | "nginx-unix" | "direct"
    # Peers: the command in the peers image ({n} is the worker count). Template: None.
    command: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_template(self) -> bool:
        return self.command is None


# uvicorn, fastapi run and granian spell these alike: all interfaces, the app port, N workers.
LISTEN = ("--host", "0.0.0.0", "--port", str(APP_PORT), "--workers", "{n}")

TEMPLATE_HARDENING = [
    # As docker-compose.yml runs it: read-only root, /tmp on tmpfs, no capabilities.
    "--read-only", "--tmpfs", "/tmp:size=64m", "--cap-drop", "ALL",
    "--security-opt", "no-new-privileges:true", "--user", "10001:10001",
]  # fmt: skip

VARIANTS: dict[str, Variant] = {
    variant.name: variant
    for variant in (
        Variant(
            "template-nginx-tcp",
            "template, nginx -> TCP",
            "this template as compose runs it: nginx, upstream keep-alive over TCP, gunicorn + "
            "UvicornWorker (the baseline)",
            "nginx-tcp",
        ),
        Variant(
            "template-nginx-unix",
            "template, nginx -> unix socket",
            "the same, nginx reaching gunicorn over a Unix socket on a shared volume",
            "nginx-unix",
        ),
        Variant(
            "template-direct",
            "template, direct",
            "gunicorn + UvicornWorker from this template's image, no nginx",
            "direct",
        ),
        Variant(
            "tiangolo",
            "tiangolo config",
            "tiangolo's uvicorn-gunicorn-fastapi configuration (bench/peers/"
            "tiangolo_gunicorn_conf.py): workers from the host's CPU count, floor 2, access "
            "log on; no nginx",
            "direct",
            command=("gunicorn", "-c", "/gunicorn_conf.py", f"{FACTORY}()"),
        ),
        Variant(
            "uvicorn",
            "uvicorn --workers",
            "uvicorn --workers N (its defaults: uvloop + httptools when installed, access log on)",
            "direct",
            command=("uvicorn", "--factory", FACTORY, *LISTEN),
        ),
        Variant(
            "fastapi-run",
            "fastapi run",
            "fastapi run --workers N (fastapi-cli: uvicorn underneath, access log on)",
            "direct",
            command=("fastapi", "run", "asgi_app.py", *LISTEN),
        ),
        Variant(
            "gunicorn-asgi",
            "gunicorn -k asgi",
            "gunicorn 27's own ASGI worker (-k asgi), N workers, no access log (its default)",
            "direct",
            command=(
                "gunicorn",
                "-k",
                "asgi",
                "-w",
                "{n}",
                "-b",
                f"0.0.0.0:{APP_PORT}",
                f"{FACTORY}()",
            ),
        ),
        Variant(
            "granian",
            "granian",
            "granian --interface asgi --workers N (Rust HTTP server; access log off by default): "
            "the ceiling reference",
            "direct",
            command=("granian", "--interface", "asgi", "--factory", *LISTEN, FACTORY),
        ),
    )
}

BASELINE = "template-nginx-tcp"

# Why the template loses where it does: the same servers with one thing changed, measured side by
# side (section "diagnose"). Not peers a user would pick; not in the main tables.
DIAGNOSTICS: dict[str, Variant] = {
    variant.name: variant
    for variant in (
        replace(
            VARIANTS["template-direct"],
            name="diag-template",
            label="template, direct (ACCESS_LOG off, the default)",
        ),
        replace(
            VARIANTS["template-direct"],
            name="diag-template-access-log",
            label="template, ACCESS_LOG=true (the default before)",
            description="the template with its JSON access line per request",
            env={"ACCESS_LOG": "true"},
        ),
        replace(VARIANTS["uvicorn"], name="diag-uvicorn", label="uvicorn (access log on)"),
        replace(
            VARIANTS["uvicorn"],
            name="diag-uvicorn-no-access-log",
            label="uvicorn --no-access-log",
            description="uvicorn without its access line",
            command=(*(VARIANTS["uvicorn"].command or ()), "--no-access-log"),
        ),
        replace(
            VARIANTS["uvicorn"],
            name="diag-uvicorn-multiproc-metrics",
            label="uvicorn + multiprocess metrics",
            description="uvicorn with PROMETHEUS_MULTIPROC_DIR set, as the template runs the app "
            "(metrics in shared mmap files instead of process memory)",
            command=(
                "sh",
                "-c",
                'mkdir -p "$PROMETHEUS_MULTIPROC_DIR" && exec "$@"',
                "uvicorn",
                *(VARIANTS["uvicorn"].command or ()),
            ),
            env={"PROMETHEUS_MULTIPROC_DIR": "/tmp/prometheus"},
        ),
        replace(VARIANTS["gunicorn-asgi"], name="diag-gunicorn-asgi"),
    )
}


@dataclass
class Started:
    variant: Variant
    url: str  # as the client container reaches it
    ready_url: str
    server: str  # the container running the Python server
    containers: list[str]
    workers: int | None = None


def start(
    variant: Variant,
    run: Run,
    *,
    images: Images,
    network: str,
    budget: Budget,
    n: int,
    subnet: str,
    suffix: str = "",
    extra_env: Mapping[str, str] | None = None,
) -> Started:
    """Start a variant's containers (not waiting for readiness)."""
    base = f"{variant.name}{suffix}"
    env = {**APP_SETTINGS, **variant.env, **(extra_env or {})}
    if variant.command is not None:
        command = [part.replace("{n}", str(n)) for part in variant.command]
        server = run.start(
            base, images.peers, command, network=network, env=env,
            options=budget.server_options(),
        )  # fmt: skip
        url = f"http://{server}:{APP_PORT}"
        return Started(variant, url, f"{url}/readyz", server, [server])

    # Only nginx, on this network, may set the client address (as BACKEND_SUBNET in compose).
    env = {"FORWARDED_ALLOW_IPS": subnet, **env}
    volume_options: list[str] = []
    if variant.via == "nginx-unix":
        # A tmpfs-backed volume, mounted once and shared: the socket lives in memory, like the
        # app's other runtime files; the app's uid owns it, nginx (uid 101) may connect.
        volume = run.volume(
            f"{base}-sock", "--driver", "local", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
            "--opt", "o=size=1m,uid=10001,mode=0755",
        )  # fmt: skip
        volume_options = ["-v", f"{volume}:{SOCKET_DIR}"]
        env = {"BIND": f"unix:{SOCKET}", **env}
    server = run.start(
        f"{base}-app", images.app, network=network, env=env,
        options=[*budget.server_options(), *TEMPLATE_HARDENING, *volume_options],
    )  # fmt: skip
    if variant.via == "direct":
        url = f"http://{server}:{APP_PORT}"
        return Started(variant, url, f"{url}/readyz", server, [server])
    upstream = SOCKET if variant.via == "nginx-unix" else f"{server}:{APP_PORT}"
    upstream = f"unix:{upstream}" if variant.via == "nginx-unix" else upstream
    nginx = run.start(
        f"{base}-nginx", images.nginx, network=network,
        env={
            "APP_UPSTREAM": upstream,
            # The edge's per-client rate limit (20 r/s) would turn this into a rate-limit test:
            # raised for the benchmark, still evaluated on every request.
            "RATE_LIMIT": "100000r/s",
            "RATE_LIMIT_BURST": "100000",
        },
        options=[
            "--cpus", "1", "--memory", "256m", *budget.side_options(), "--read-only",
            "--tmpfs", "/tmp:size=64m", "--tmpfs", "/etc/nginx/conf.d:uid=101,gid=101,size=1m",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true", *volume_options,
        ],
    )  # fmt: skip
    url = f"http://{nginx}:{NGINX_PORT}"
    return Started(variant, url, f"{url}/readyz", server, [server, nginx])
