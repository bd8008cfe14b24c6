"""Every variable of the edge: what the nginx image and the acme image beside it read from their
environment, and what the compose files interpolate into those two services on the host.

The one declaration: scripts/config_reference.py renders the README's nginx table from it, and
tests/unit/test_nginx_variables.py checks it against the files that read each variable (the
scripts and templates, the Dockerfiles' ENV, the compose files, the Kubernetes env file). It
lives here, not in deploy/nginx: that directory is the nginx image's build context, and the
image needs none of this.

A default is the value in force when nobody sets the variable: the Dockerfile's ENV, a script's
`${NAME:-default}` or a compose file's `${NAME:-default}` (they must agree). None: there is
none; `required` says when it must be set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

# Who reads a variable: an image (from its container environment, set by compose or the pod's
# ConfigMap) or a compose file (an interpolation on the host, before any container exists).
Reader = Literal[
    "nginx image",
    "acme image",
    "docker-compose.yml",
    "docker-compose.tls.yml",
    "docker-compose.acme.yml",
]

# Each image's build context (every file the image can read a variable in), and the compose
# service that runs it.
IMAGE_CONTEXTS: Mapping[Reader, str] = {"nginx image": "deploy/nginx", "acme image": "deploy/acme"}
SERVICE_IMAGES: Mapping[str, Reader] = {"nginx": "nginx image", "acme": "acme image"}


@dataclass(frozen=True)
class Variable:
    name: str
    default: str | None
    allowed: str
    does: str
    read_by: tuple[Reader, ...]
    required: str = ""


VARIABLES: tuple[Variable, ...] = (
    # Who is the edge and where the app is: entrypoint.d/15-edge.sh, templates/.
    Variable(
        "EDGE",
        "nginx",
        "`nginx` or `gateway`",
        "Who is the edge. `nginx` (compose): the client is the TCP peer; any X-Forwarded-* a "
        "client sends is replaced. `gateway` (Kubernetes): a proxy in front is; nginx takes the "
        "client address it appended to X-Forwarded-For, and its X-Forwarded-Proto, from the "
        "peers in `GATEWAY_ADDRESSES` only.",
        ("nginx image",),
    ),
    Variable(
        "GATEWAY_ADDRESSES",
        "",
        "comma-separated addresses or CIDR ranges (IPv4, IPv6); never `0.0.0.0/0` or `::/0`",
        "The gateway's addresses, whose forwarded headers nginx trusts; refused with "
        "`EDGE=nginx`. Too wide a range lets whoever is in it forge client addresses.",
        ("nginx image",),
        required="`EDGE=gateway`",
    ),
    Variable(
        "APP_UPSTREAM",
        "app:8000",
        "`host:port`",
        "Where gunicorn listens. Compose sets `app:` and `APP_PORT`; the pod `127.0.0.1:8000` "
        "(the app container beside nginx). A name is re-resolved every second, so scaling "
        "needs no reload.",
        ("nginx image",),
    ),
    Variable(
        "NGINX_RESOLVER",
        "127.0.0.11",
        "an IP address",
        "The DNS server nginx asks for `APP_UPSTREAM`'s addresses: the default is the one "
        "Docker gives every compose network. Never asked when `APP_UPSTREAM` is an address.",
        ("nginx image",),
    ),
    Variable(
        "RATE_LIMIT",
        "20r/s",
        "nginx's rate: `20r/s`, `600r/m`",
        "Requests per client address on the API routes (never on `/healthz`, `/readyz`, "
        "`/nginx-health`); above it and the burst, 429 as JSON.",
        ("nginx image", "docker-compose.yml"),
    ),
    Variable(
        "RATE_LIMIT_BURST",
        "40",
        "a whole number",
        "Requests above `RATE_LIMIT` a client may send at once before the 429s.",
        ("nginx image", "docker-compose.yml"),
    ),
    Variable(
        "NGINX_ENVSUBST_OUTPUT_DIR",
        "/etc/nginx/conf.d",
        "a directory",
        "The official nginx image's: where its entrypoint renders `templates/`; "
        "`entrypoint.d/15-edge.sh` writes beside them. Leave it unset: `nginx.conf` includes "
        "`/etc/nginx/conf.d` only.",
        ("nginx image",),
    ),
    # TLS at nginx: tls/30-tls.sh at start, tls/watch-certificate.sh after.
    Variable(
        "TLS_MODE",
        "off",
        "`off`, `files`, `acme`",
        "`off`: plain HTTP on 8080 only. `files`: HTTPS on 8443 with `TLS_CERT_FILE` and "
        "`TLS_KEY_FILE` (`docker-compose.tls.yml` sets it). `acme`: HTTPS with the certificate "
        "the acme service obtains for `TLS_DOMAIN` (`docker-compose.acme.yml` sets it).",
        ("nginx image",),
    ),
    Variable(
        "HTTPS_PORT",
        "443",
        "a port number",
        "The port clients use for HTTPS: compose publishes nginx's 8443 on it, and plain HTTP "
        "redirects there (naming no port for 443).",
        ("nginx image", "docker-compose.tls.yml", "docker-compose.acme.yml"),
    ),
    Variable(
        "HTTPS_BIND",
        "0.0.0.0",
        "a host address",
        "The host address HTTPS is published on.",
        ("docker-compose.tls.yml", "docker-compose.acme.yml"),
    ),
    Variable(
        "TLS_CERT_DIR",
        "./tls",
        "a directory on the host",
        "Holds `fullchain.pem` and `privkey.pem`, readable by uid 101 (nginx); mounted "
        "read-only where `TLS_CERT_FILE` and `TLS_KEY_FILE` point.",
        ("docker-compose.tls.yml",),
    ),
    Variable(
        "TLS_CERT_FILE",
        "/etc/nginx/tls/files/fullchain.pem",
        "a path in the container",
        "`TLS_MODE=files`: the certificate chain (PEM), readable by uid 101, not expired, the "
        "certificate of `TLS_KEY_FILE`; checked at start.",
        ("nginx image",),
    ),
    Variable(
        "TLS_KEY_FILE",
        "/etc/nginx/tls/files/privkey.pem",
        "a path in the container",
        "`TLS_MODE=files`: the certificate's private key (PEM, not encrypted), readable by "
        "uid 101.",
        ("nginx image",),
    ),
    Variable(
        "TLS_DOMAIN",
        None,
        "a host name",
        "The name to get a certificate for; its DNS points at this host, which the CA reaches "
        "on port 80 (`HTTP_PORT=80`).",
        ("nginx image", "acme image", "docker-compose.acme.yml"),
        required="`TLS_MODE=acme`",
    ),
    Variable(
        "TLS_WATCH_SECONDS",
        "5",
        "seconds",
        "`TLS_MODE=acme`: how often nginx looks for a new certificate from lego; a new one "
        "that matches its key is taken with a graceful reload.",
        ("nginx image",),
    ),
    # The acme image: deploy/acme/obtain-and-renew.sh.
    Variable(
        "ACME_EMAIL",
        None,
        "an email address",
        "The CA's contact for expiry and policy notices.",
        ("acme image", "docker-compose.acme.yml"),
        required="`TLS_MODE=acme`",
    ),
    Variable(
        "ACME_SERVER",
        "https://acme-v02.api.letsencrypt.org/directory",
        "an ACME directory URL",
        "The CA: Let's Encrypt's production directory; its staging one while you try.",
        ("acme image", "docker-compose.acme.yml"),
    ),
    Variable(
        "ACME_RENEW_DAYS",
        "30",
        "days",
        "Renew when fewer days are left (Let's Encrypt's certificates last 90).",
        ("acme image", "docker-compose.acme.yml"),
    ),
    Variable(
        "ACME_CHECK_SECONDS",
        "43200",
        "seconds",
        "How often lego checks whether to renew (twice a day).",
        ("acme image", "docker-compose.acme.yml"),
    ),
    Variable(
        "ACME_RANDOM_SLEEP",
        "true",
        "`true` or `false`",
        "lego's random wait of a few minutes before renewing, so that everyone's timers do not "
        "hit the CA at once; `false` only for a test's CA.",
        ("acme image", "docker-compose.acme.yml"),
    ),
    Variable(
        "ACME_RETRY_SECONDS",
        "60",
        "seconds",
        "The wait between failed attempts to obtain the first certificate (CAs rate-limit "
        "failures).",
        ("acme image", "docker-compose.acme.yml"),
    ),
    # Compose's own, on the host: where nginx is published, its image and its limits.
    Variable(
        "HTTP_BIND",
        "0.0.0.0",
        "a host address",
        "The host address plain HTTP is published on.",
        ("docker-compose.yml",),
    ),
    Variable(
        "HTTP_PORT",
        "8080",
        "a port number",
        "The host port published to nginx's 8080 (plain HTTP); 80 for `TLS_MODE=acme`, where "
        "the CA fetches its challenge.",
        ("docker-compose.yml",),
    ),
    Variable(
        "APP_PORT",
        "8000",
        "a port number",
        "The app's port on the backend network: compose sets the app's `PORT` and nginx's "
        "`APP_UPSTREAM` from it, so the two cannot disagree.",
        ("docker-compose.yml",),
    ),
    Variable(
        "NGINX_IMAGE",
        "fastapi-service-nginx",
        "an image name",
        "The nginx image compose builds or pulls.",
        ("docker-compose.yml",),
    ),
    Variable(
        "APP_TAG",
        "latest",
        "an image tag",
        "The tag of both images, the app's and nginx's.",
        ("docker-compose.yml",),
    ),
    Variable(
        "NGINX_CPUS",
        "1",
        "CPUs, e.g. `0.5`",
        "nginx's CPU limit.",
        ("docker-compose.yml",),
    ),
    Variable(
        "NGINX_MEMORY",
        "128m",
        "bytes, e.g. `128m`",
        "nginx's memory limit. It holds nginx's `/tmp` (the request bodies it spills, a 64m "
        "tmpfs) as well as nginx: a test checks the two fit.",
        ("docker-compose.yml",),
    ),
)
