"""HTTPS at nginx (TLS_MODE=files): the shipped image and docker-compose.tls.yml, a CA made by
the test, a client that trusts only that CA, and testssl.sh grading the port."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.docker import docker
from tests.e2e.conftest import NGINX_IMAGE, Stack
from tests.e2e.tls_certs import issue, issue_expired, make_ca, openssl

pytestmark = pytest.mark.e2e

TLS_FILES = ["docker-compose.yml", "docker-compose.tls.yml"]
NAME = "service.test"


def free_port() -> int:
    # HTTPS_PORT is both the published port and where HTTP redirects to, so the test picks
    # one instead of letting Docker choose (0 would make the redirect name port 0).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def client_context(ca: Path, alpn: tuple[str, ...] = ("h2", "http/1.1")) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))  # trusts this CA and nothing else
    context.set_alpn_protocols(list(alpn))
    return context


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    make_ca(tmp_path)
    issue(tmp_path, NAME)
    return tmp_path


@pytest.fixture
def tls_stack(stack_factory: Any, certs: Path) -> Stack:
    port = free_port()
    stack: Stack = stack_factory(
        env={"HTTPS_BIND": "127.0.0.1", "HTTPS_PORT": str(port), "TLS_CERT_DIR": str(certs)},
        files=TLS_FILES,
    ).up()
    stack.env["HTTPS_PORT"] = str(port)
    return stack


def https_get(
    stack: Stack, ca: Path, path: str, host: str = NAME
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPSConnection(
        "127.0.0.1",
        int(stack.env["HTTPS_PORT"]),
        context=client_context(ca, ("http/1.1",)),
        timeout=10,
    )
    # http.client checks the certificate against the host it connects to (127.0.0.1, in the
    # certificate's names); the Host header is what nginx and the app see. http.client
    # speaks HTTP/1.1 only, so it offers only that by ALPN.
    try:
        connection.request("GET", path, headers={"Host": host, "Connection": "close"})
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        connection.close()


def test_files_mode_serves_https_that_a_client_trusting_only_the_ca_verifies(
    tls_stack: Stack, certs: Path
) -> None:
    status, headers, _ = https_get(tls_stack, certs / "ca.pem", "/healthz")
    assert status == 200
    assert headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"
    # The app sees X-Forwarded-Proto: https, so its own redirects stay on HTTPS.
    status, headers, _ = https_get(tls_stack, certs / "ca.pem", "/api/items/")
    assert status == 307, headers
    assert headers["location"].startswith(f"https://{NAME}"), headers

    # HTTP/2 by ALPN, TLS 1.2 or 1.3.
    port = int(tls_stack.env["HTTPS_PORT"])
    context = client_context(certs / "ca.pem")
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=NAME) as tls,
    ):
        assert tls.selected_alpn_protocol() == "h2"
        assert tls.version() in {"TLSv1.2", "TLSv1.3"}

    # A client that trusts the system CAs only refuses the test CA's certificate.
    with (
        pytest.raises(ssl.SSLCertVerificationError),
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
    ):
        ssl.create_default_context().wrap_socket(raw, server_hostname=NAME)


def test_http_redirects_to_https_keeping_host_and_path_except_health_and_acme(
    tls_stack: Stack,
) -> None:
    port = tls_stack.env["HTTPS_PORT"]
    status, headers, _ = tls_stack.get("/api/items?page=2", headers={"Host": NAME})
    assert (status, headers["location"]) == (308, f"https://{NAME}:{port}/api/items?page=2")
    status, _, _ = tls_stack.get("/nginx-health")
    assert status == 200
    # The challenge path is answered by nginx over HTTP (404: no token), never redirected.
    status, headers, _ = tls_stack.get("/.well-known/acme-challenge/none", headers={"Host": NAME})
    assert status == 404
    assert "location" not in headers
    # No HSTS over plain HTTP (meaningless there).
    assert "strict-transport-security" not in headers


def start_nginx(env: dict[str, str], certs: Path) -> subprocess.CompletedProcess[str]:
    """The shipped nginx image as compose runs it (read-only root, tmpfs), with TLS env only."""
    env_args = [arg for name, value in env.items() for arg in ("-e", f"{name}={value}")]
    return docker(
        "run", "--rm", "--read-only", "--user", "101:101", "--cap-drop", "ALL",
        "--tmpfs", "/tmp", "--tmpfs", "/etc/nginx/conf.d:uid=101,gid=101",
        "-v", f"{certs}:/etc/nginx/tls/files:ro", *env_args,
        # `nginx -t`: the entrypoint's checks, then a config test, and an exit either way.
        NGINX_IMAGE, "nginx", "-t",
        check=False, timeout=60,
    )  # fmt: skip


def break_key_mismatch(certs: Path) -> None:
    openssl("genpkey", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", "privkey.pem", cwd=certs)  # fmt: skip
    (certs / "privkey.pem").chmod(0o644)


def break_unreadable_key(certs: Path) -> None:
    (certs / "privkey.pem").chmod(0o600)  # root's, nginx runs as uid 101


def break_expired(certs: Path) -> None:
    issue_expired(certs, NGINX_IMAGE)


@pytest.mark.parametrize(
    ("env", "breaks", "line"),
    [
        ({"TLS_MODE": "on"}, None, "TLS: TLS_MODE=on is not one of off, files, acme"),
        (
            {"TLS_MODE": "files"},
            break_unreadable_key,
            "TLS: TLS_KEY_FILE=/etc/nginx/tls/files/privkey.pem does not exist or is not "
            "readable by uid 101",
        ),
        (
            {"TLS_MODE": "files"},
            break_key_mismatch,
            "TLS: TLS_KEY_FILE=/etc/nginx/tls/files/privkey.pem is not the key of the "
            "certificate in TLS_CERT_FILE=/etc/nginx/tls/files/fullchain.pem",
        ),
        (
            {"TLS_MODE": "files"},
            break_expired,
            "TLS: TLS_CERT_FILE=/etc/nginx/tls/files/fullchain.pem expired on "
            "Jan  2 00:00:00 2020 GMT",
        ),
        (
            {"TLS_MODE": "files", "HTTPS_PORT": "https"},
            None,
            "TLS: HTTPS_PORT=https is not a port number",
        ),
        (
            {"TLS_MODE": "acme"},
            None,
            "TLS: TLS_MODE=acme needs TLS_DOMAIN (the name to get a certificate for)",
        ),
    ],
    ids=[
        "unknown-mode",
        "unreadable-key",
        "key-not-matching",
        "expired",
        "bad-port",
        "acme-no-domain",
    ],
)
def test_a_bad_tls_input_stops_nginx_with_one_line_naming_it(
    images: None, certs: Path, env: dict[str, str], breaks: Any, line: str
) -> None:
    if breaks:
        breaks(certs)
    result = start_nginx(env, certs)
    assert result.returncode != 0, result.stderr
    complaints = [text for text in result.stderr.splitlines() if text.startswith("TLS:")]
    assert complaints == [line], result.stderr
    assert "[emerg]" not in result.stderr  # stopped by the check, before nginx read anything


def test_good_files_pass_the_checks_and_the_config_test(images: None, certs: Path) -> None:
    result = start_nginx({"TLS_MODE": "files"}, certs)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


# testssl.sh's severities that fail the grade; its finding texts that do whatever the severity.
BAD_SEVERITIES = {"MEDIUM", "HIGH", "CRITICAL"}
BAD_WORDS = ("NOT ok", "VULNERABLE")


def test_testssl_grades_the_https_port_without_a_finding(
    tls_stack: Stack,
    certs: Path,
    tmp_path_factory: pytest.TempPathFactory,
    reliability_report: dict[str, dict[str, object]],
) -> None:
    # The report stays in pytest's temporary directory, out of the repository.
    report = tmp_path_factory.mktemp("testssl") / "report.json"
    port = tls_stack.env["HTTPS_PORT"]
    run = subprocess.run(
        ["testssl.sh", "--quiet", "--color", "0", "--warnings", "off", "--add-ca",
         str(certs / "ca.pem"), "--jsonfile", str(report), f"127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    findings: list[dict[str, str]] = json.loads(report.read_text())
    by_id = {finding["id"]: finding for finding in findings}
    summary = [
        f"{f['severity']:8} {f['id']}: {f['finding']}"
        for f in findings
        if f["severity"] not in {"INFO", "OK"} or f["id"] in {"SSLv2", "SSLv3", "TLS1", "TLS1_1",
        "TLS1_2", "TLS1_3", "FS", "FS_KEMs", "HSTS_time", "overall_grade"}
    ]  # fmt: skip
    print("testssl.sh summary:\n" + "\n".join(summary))
    reliability_report["13. testssl.sh on the HTTPS port (TLS_MODE=files)"] = {
        "grade": by_id["overall_grade"]["finding"],
        "offered": ", ".join(p for p in ("TLS1_2", "TLS1_3") if by_id[p]["severity"] == "OK"),
        "forward_secrecy": by_id["FS"]["finding"],
        "kems": by_id.get("FS_KEMs", {}).get("finding", "none"),
        "findings_medium_or_worse": sum(f["severity"] in BAD_SEVERITIES for f in findings),
    }
    bad = [
        f"{f['severity']} {f['id']}: {f['finding']}"
        for f in findings
        if f["severity"] in BAD_SEVERITIES or any(word in f["finding"] for word in BAD_WORDS)
    ]
    assert not bad, run.stdout[-3000:]
    for old in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert by_id[old]["finding"].startswith("not offered"), by_id[old]
    assert by_id["FS"]["finding"].startswith("offered"), by_id["FS"]
    assert by_id["HSTS_time"]["severity"] == "OK", by_id["HSTS_time"]
    assert by_id["overall_grade"]["finding"] == "A+", by_id["overall_grade"]
