"""The Kubernetes manifests as the tools see them: rendered once per overlay, checked offline.

Kubernetes itself cannot run here. The manifests are proven by rendering them with the real
`kubectl kustomize`, validating them against the API schemas, running checkov on them, and
playing the production Deployment with podman (test_podman.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ["dev", "production"]

# checkov cannot share the project's lock (it pins packaging<24; pytest 9 needs newer), so it
# gets a virtualenv of its own under .tools/ (git-ignored), made on first use.
CHECKOV_VERSION = "3.3.30"
CHECKOV_HOME = ROOT / ".tools" / "checkov"

Manifest = dict[str, Any]


def run(
    *args: str | Path,
    timeout: float = 120,
    cwd: Path = ROOT,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        command = " ".join(str(arg) for arg in args)
        raise AssertionError(
            f"{command} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result


def kubectl() -> str:
    found = shutil.which("kubectl")
    assert found, "kubectl is missing: run ../shared/container-env/setup (it installs kubectl)"
    return found


def kustomize(directory: Path) -> str:
    return run(kubectl(), "kustomize", directory).stdout


def parse(rendered: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def overlay_kustomization(overlay: str) -> Manifest:
    """An overlay's kustomization.yaml: where the service's names are written."""
    loaded: Manifest = yaml.safe_load(
        (K8S / "overlays" / overlay / "kustomization.yaml").read_text()
    )
    return loaded


@pytest.fixture(scope="session")
def rendered() -> dict[str, str]:
    """Each overlay's `kubectl kustomize` output, rendered once."""
    return {overlay: kustomize(K8S / "overlays" / overlay) for overlay in OVERLAYS}


def overlay_with_component(directory: Path, overlay: str, component: str) -> Path:
    """A copy of `overlay` in `directory` with `component` listed in its own kustomization, as
    the README says to enable one. (Listed in a kustomization *around* the overlay instead, the
    component's own objects would miss the overlay's namespace, prefix, labels and images.)"""
    source = K8S / "overlays" / overlay
    shutil.copytree(source, directory, dirs_exist_ok=True)
    kustomization = overlay_kustomization(overlay)

    def from_copy(entry: str) -> str:
        # Paths outside the overlay (the base, components) must still point where they did.
        if not entry.startswith("../"):
            return entry
        return os.path.relpath((source / entry).resolve(), directory)

    kustomization["resources"] = [from_copy(entry) for entry in kustomization["resources"]]
    kustomization["components"] = [
        *(from_copy(entry) for entry in kustomization.get("components", [])),
        os.path.relpath(K8S / "components" / component, directory),
    ]
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return directory


def render_with_component(directory: Path, overlay: str, component: str) -> str:
    """An overlay with an opt-in component enabled, rendered."""
    return kustomize(overlay_with_component(directory, overlay, component))


@pytest.fixture(scope="session")
def with_workers_from_cpu_request(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Production with the workers-from-cpu-request component."""
    directory = overlay_with_component(
        tmp_path_factory.mktemp("tpl-k8s-component"), "production", "workers-from-cpu-request"
    )
    # What deploy/k8s/README.md tells a user to do with it: the overlay's own size patch is
    # applied after its components, so its CPU limit must go there.
    size = directory / "patch-size.yaml"
    patches = parse(size.read_text())
    deployment = next(patch for patch in patches if patch["kind"] == "Deployment")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    app = next(c for c in containers if c["name"] == "app")
    del app["resources"]["limits"]["cpu"]
    size.write_text(yaml.safe_dump_all(patches))
    return kustomize(directory)


@pytest.fixture(scope="session")
def with_migrations(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Production with the migrations component."""
    directory = tmp_path_factory.mktemp("tpl-k8s-migrations")
    return render_with_component(directory, "production", "migrations")


@pytest.fixture(scope="session")
def with_pod_monitor(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Production with the pod-monitor component."""
    directory = tmp_path_factory.mktemp("tpl-k8s-pod-monitor")
    return render_with_component(directory, "production", "pod-monitor")


@pytest.fixture(scope="session")
def manifests(rendered: dict[str, str]) -> dict[str, list[Manifest]]:
    return {overlay: parse(text) for overlay, text in rendered.items()}


def only(docs: list[Manifest], kind: str) -> Manifest:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_containers(pod: Manifest) -> list[Manifest]:
    """Every long-running container of a pod spec: the native sidecars (init containers with
    restartPolicy Always: nginx) and the main containers."""
    sidecars = [c for c in pod.get("initContainers", []) if c.get("restartPolicy") == "Always"]
    main: list[Manifest] = pod["containers"]
    return sidecars + main


def container(deployment: Manifest, name: str) -> Manifest:
    return next(
        c for c in pod_containers(deployment["spec"]["template"]["spec"]) if c["name"] == name
    )


def config_map_env(docs: list[Manifest], container_spec: Manifest) -> dict[str, str]:
    """The variables a container gets from its envFrom ConfigMaps, then its own env."""
    env: dict[str, str] = {}
    for source in container_spec.get("envFrom", []):
        name = source["configMapRef"]["name"]
        config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name)
        env.update(config.get("data", {}))
    env.update({item["name"]: item["value"] for item in container_spec.get("env", [])})
    return env


def _installed_checkov() -> str:
    binary = CHECKOV_HOME / "bin" / "checkov"
    if not binary.exists():
        return ""
    result = run(binary, "--version", check=False, timeout=120)
    return result.stdout.strip() if result.returncode == 0 else ""


@pytest.fixture(scope="session")
def checkov() -> Path:
    """checkov at its pinned version, installed into .tools/checkov if it is not there yet."""
    if _installed_checkov() != CHECKOV_VERSION:
        # A half-made or older environment is replaced, never patched up.
        shutil.rmtree(CHECKOV_HOME, ignore_errors=True)
        python = shutil.which("python3") or sys.executable
        run(python, "-m", "venv", CHECKOV_HOME)
        run(
            CHECKOV_HOME / "bin" / "python",
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"checkov=={CHECKOV_VERSION}",
            timeout=900,
        )
        assert _installed_checkov() == CHECKOV_VERSION
    return CHECKOV_HOME / "bin" / "checkov"


def kubernetes_validate() -> Path:
    binary = Path(sys.executable).parent / "kubernetes-validate"
    assert binary.exists(), (
        "kubernetes-validate is missing: it is a locked dev dependency (uv sync)"
    )
    return binary


def environment_without_proxies() -> dict[str, str]:
    """The environment with every proxy pointing nowhere: a tool that goes online fails."""
    blackhole = "http://127.0.0.1:9"
    proxies = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
    return {
        **{k: v for k, v in os.environ.items() if k not in ("no_proxy", "NO_PROXY")},
        **dict.fromkeys(proxies, blackhole),
    }
