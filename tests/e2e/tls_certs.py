"""Certificates for the HTTPS tests, made with the openssl CLI (the project has no Python
crypto dependency): a CA of the test's own, a server certificate it signs, and the bad inputs
nginx must refuse. Nothing here leaves the test's temporary directory."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.docker import docker


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory: Path) -> Path:
    """A self-signed CA (ca.pem, ca.key); returns the certificate clients trust."""
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "365", "-subj", "/CN=tls test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
        cwd=directory,
    )  # fmt: skip
    return directory / "ca.pem"


def issue(directory: Path, name: str, *, key_type: str = "rsa:2048") -> None:
    """fullchain.pem + privkey.pem in directory, for `name`, signed by the CA beside it."""
    openssl(
        "req", "-newkey", key_type, "-nodes", "-keyout", "privkey.pem", "-out", "server.csr",
        "-subj", f"/CN={name}", cwd=directory,
    )  # fmt: skip
    (directory / "ext.cnf").write_text(
        f"subjectAltName=DNS:{name},DNS:localhost,IP:127.0.0.1\n"
        "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
        # A CRL address, as every public CA's certificate has (testssl.sh grades its absence
        # HIGH); testssl.sh does not fetch it unless told to phone out, and nothing listens.
        "crlDistributionPoints=URI:http://127.0.0.1:9/test-ca.crl\n"
    )
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "90", "-extfile", "ext.cnf", "-out", "fullchain.pem",
        cwd=directory,
    )  # fmt: skip
    # 90 days: Let's Encrypt's lifetime; testssl.sh grades one under 30 days left HIGH.
    # nginx reads them as uid 101; the test directory is root's.
    directory.chmod(0o755)
    for pem in ("fullchain.pem", "privkey.pem"):
        (directory / pem).chmod(0o644)


def issue_expired(directory: Path, image: str) -> None:
    """An expired self-signed fullchain.pem + privkey.pem: the host's openssl 3.0 cannot
    backdate, the nginx image's (3.4+) can (-not_before/-not_after)."""
    docker(
        "run", "--rm", "--user", "0", "-v", f"{directory}:/w", "-w", "/w", "--entrypoint",
        "openssl", image, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", "privkey.pem", "-out", "fullchain.pem", "-subj", "/CN=expired",
        "-not_before", "20200101000000Z", "-not_after", "20200102000000Z",
    )  # fmt: skip
    for pem in ("fullchain.pem", "privkey.pem"):
        (directory / pem).chmod(0o644)
