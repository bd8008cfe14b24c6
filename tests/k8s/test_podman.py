"""The rendered production Deployment run as a real pod with `podman kube play`.

Kubernetes cannot run here; podman runs a Deployment's pod template with its env, ConfigMaps,
securityContext, CPU and memory limits and emptyDirs, which is what decides whether the pod
starts, who it runs as and how many workers gunicorn forks. It does not run probes or preStop
hooks (deploy/k8s/README.md lists what it cannot emulate), so readiness is polled through nginx.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import APP_IMAGE, NGINX_IMAGE, response
from tests.k8s.conftest import K8S, Manifest, container, kustomize, only, parse, run

pytestmark = pytest.mark.e2e

PRODUCTION = K8S / "overlays" / "production"
READY_WITHIN_SECONDS = 90


def podman(*args: str | Path, timeout: float = 120, check: bool = True) -> str:
    return run("podman", *args, timeout=timeout, check=check).stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def load_into_podman(image: str, target: str) -> None:
    """docker's image, as podman's `target` only (the name it loads under is dropped)."""
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    try:
        loaded = subprocess.run(
            ["podman", "load", "-q"],
            stdin=save.stdout,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        if save.stdout:
            save.stdout.close()
        save.wait(timeout=60)
    assert save.returncode == 0, f"docker save {image} failed"
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    name = loaded.stdout.strip().rsplit(": ", 1)[-1].split(",")[0]
    podman("tag", name, target)
    # `untag IMAGE NAME`: without NAME, podman would remove every tag, ours included.
    podman("untag", target, name)


@pytest.fixture(scope="module")
def podman_images(images: None) -> Iterator[dict[str, str]]:
    """The suite's images in podman under names of this run, removed afterwards; by the image
    names the manifests use (`app`, `nginx`)."""
    assert shutil.which("podman"), "podman is missing: run ../shared/container-env/setup"
    tag = uuid.uuid4().hex[:8]
    loaded: dict[str, str] = {}
    try:
        for name, image in (("app", APP_IMAGE), ("nginx", NGINX_IMAGE)):
            loaded[name] = f"localhost/tpl-k8s-{name}:{tag}"
            load_into_podman(image, loaded[name])
        yield loaded
    finally:
        for target in loaded.values():
            podman("rmi", "--force", target, check=False)


def variant_kustomization(
    directory: Path,
    prefix: str,
    images: dict[str, str],
    ports: dict[str, tuple[int, int]],
    overlay: Path = PRODUCTION,
) -> None:
    """Production (or a copy of it with a component) as is, except: these images, this name
    prefix, ports on 127.0.0.1 only."""
    production = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    replaced = []
    for entry in production["images"]:
        name, tag = images[entry["name"]].rsplit(":", 1)
        replaced.append({"name": entry["newName"], "newName": name, "newTag": tag})
    base = yaml.safe_load((K8S / "base" / "deployment.yaml").read_text())
    sidecars = {c["name"] for c in base["spec"]["template"]["spec"].get("initContainers", [])}
    # podman publishes every containerPort, on 0.0.0.0 unless told otherwise. nginx is a native
    # sidecar: its port is patched where it is declared, under initContainers.
    pod_patch: dict[str, list[Manifest]] = {}
    for name, (container_port, host_port) in ports.items():
        field = "initContainers" if name in sidecars else "containers"
        port = {"containerPort": container_port, "protocol": "TCP"}
        pod_patch.setdefault(field, []).append(
            {"name": name, "ports": [{**port, "hostIP": "127.0.0.1", "hostPort": host_port}]}
        )
    port_patch = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": base["metadata"]["name"]},
        "spec": {"template": {"spec": pod_patch}},
    }
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(overlay, directory)],
        "namePrefix": prefix,
        "images": replaced,
        "patches": [{"patch": yaml.safe_dump(port_patch)}],
    }
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))


def as_podman_plays_it(docs: list[Manifest]) -> list[Manifest]:
    """The manifests with each native sidecar (an init container with restartPolicy Always)
    made an ordinary container, first in the list: podman 4.3 runs init containers to
    completion before the others, so nginx would block the pod's start. What changes is only
    when Kubernetes starts and stops it; its image, env, securityContext, limits and mounts are
    the shipped ones. Everything else is returned as it is (copies: the input is not touched)."""
    played = copy.deepcopy(docs)
    for doc in played:
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        init = pod.pop("initContainers", [])
        sidecars = [c for c in init if c.get("restartPolicy") == "Always"]
        for sidecar in sidecars:
            del sidecar["restartPolicy"]
        if rest := [c for c in init if c not in sidecars]:
            pod["initContainers"] = rest
        pod["containers"] = sidecars + pod["containers"]
    return played


def test_as_podman_plays_it_makes_sidecars_ordinary_containers() -> None:
    job = {"name": "migrate", "image": "m"}
    docs: list[Manifest] = [
        {"kind": "ConfigMap", "data": {"A": "1"}},
        {
            "kind": "Deployment",
            "spec": {
                "template": {
                    "spec": {
                        "initContainers": [
                            {"name": "nginx", "image": "n", "restartPolicy": "Always"},
                            job,
                        ],
                        "containers": [{"name": "app", "image": "a"}],
                    }
                }
            },
        },
    ]
    played = as_podman_plays_it(docs)
    pod = played[1]["spec"]["template"]["spec"]
    assert pod["containers"] == [{"name": "nginx", "image": "n"}, {"name": "app", "image": "a"}]
    # A true init container stays one; the input is unchanged.
    assert pod["initContainers"] == [job]
    assert played[0] == docs[0]
    assert docs[1]["spec"]["template"]["spec"]["initContainers"][0]["restartPolicy"] == "Always"


@dataclass
class PlayedPod:
    name: str
    url: str
    deployment: Manifest

    def container(self, name: str) -> str:
        return f"{self.name}-{name}"

    def logs(self, name: str) -> str:
        result = run("podman", "logs", self.container(name), check=False)
        return result.stdout + result.stderr


def wait_ready(pod: PlayedPod) -> None:
    deadline = time.monotonic() + READY_WITHIN_SECONDS
    last: object = None
    while time.monotonic() < deadline:
        try:
            status, _, _ = response(pod.url, path="/readyz", timeout=3)
            if status == 200:
                return
            last = status
        except OSError as error:
            last = error
        time.sleep(0.5)
    raise AssertionError(
        f"/readyz not 200 through nginx within {READY_WITHIN_SECONDS}s (last: {last})\n"
        f"app:\n{pod.logs('app')[-4000:]}\nnginx:\n{pod.logs('nginx')[-2000:]}"
    )


@pytest.fixture(scope="module")
def production_pod(
    podman_images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PlayedPod]:
    directory = tmp_path_factory.mktemp("tpl-k8s-variant")
    prefix = f"tpl-k8s-{uuid.uuid4().hex[:6]}-"
    nginx_port = free_port()
    variant_kustomization(
        directory,
        prefix,
        podman_images,
        {"nginx": (8080, nginx_port), "app": (8000, free_port())},
    )
    # The Deployment and the ConfigMaps it reads: the rest is cluster plumbing podman ignores.
    rendered = [d for d in parse(kustomize(directory)) if d["kind"] in ("ConfigMap", "Deployment")]
    docs = as_podman_plays_it(rendered)
    play = directory / "play.yaml"
    play.write_text(yaml.safe_dump_all(docs))
    deployment = only(docs, "Deployment")
    try:
        podman("kube", "play", play, timeout=180)
        names = podman("pod", "ps", "--filter", f"name={prefix}", "--format", "{{.Name}}").split()
        assert len(names) == 1, names
        pod = PlayedPod(names[0], f"http://127.0.0.1:{nginx_port}", deployment)
        wait_ready(pod)
        yield pod
    finally:
        podman("kube", "down", play, check=False, timeout=120)


def uid_of_main_process(pod: PlayedPod, name: str) -> set[int]:
    status = podman("exec", pod.container(name), "cat", "/proc/1/status")
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    return {int(value) for value in uid_line.split()[1:]}


def gunicorn_workers(pod: PlayedPod) -> int:
    rows = [
        line.split(None, 2)
        for line in podman("top", pod.container("app"), "pid", "ppid", "args").splitlines()[1:]
    ]
    masters = [pid for pid, ppid, args in rows if ppid == "0" and "gunicorn" in args]
    assert len(masters) == 1, rows
    return sum(1 for _, ppid, _ in rows if ppid == masters[0])


def server_config(pod: PlayedPod) -> dict[str, Any]:
    for line in pod.logs("app").splitlines():
        if line.startswith("{") and '"server config"' in line:
            record: dict[str, Any] = json.loads(line)["server_config"]
            return record
    raise AssertionError("no `server config` line in the app's log")


def test_production_pod_answers_probes_through_nginx(production_pod: PlayedPod) -> None:
    for path in ("/readyz", "/healthz", "/nginx-health"):
        status, _, _ = response(production_pod.url, path=path)
        assert status == 200, path


def test_production_pod_runs_app_as_10001_and_nginx_as_101(production_pod: PlayedPod) -> None:
    assert uid_of_main_process(production_pod, "app") == {10001}
    assert uid_of_main_process(production_pod, "nginx") == {101}


def test_production_pod_has_a_read_only_root_and_writable_tmp(production_pod: PlayedPod) -> None:
    for name, writable in (("app", "/tmp"), ("nginx", "/tmp")):
        ctr = production_pod.container(name)
        denied = run("podman", "exec", ctr, "sh", "-c", "echo x > /probe", check=False)
        assert denied.returncode != 0
        assert "Read-only file system" in denied.stderr
        podman("exec", ctr, "sh", "-c", f"echo x > {writable}/tpl-k8s-probe")


def cpu_quota(pod: PlayedPod) -> float:
    """The CPUs the app container's cgroup allows (v1 or v2), as the kernel enforces them."""
    script = (
        "cat /sys/fs/cgroup/cpu.max 2>/dev/null"
        " || echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us)"
    )
    quota, period = podman("exec", pod.container("app"), "sh", "-c", script).split()
    return int(quota) / int(period)


def test_production_pod_runs_as_many_workers_as_its_cpu_limit(production_pod: PlayedPod) -> None:
    cpu_limit = int(container(production_pod.deployment, "app")["resources"]["limits"]["cpu"])
    assert cpu_quota(production_pod) == cpu_limit
    record = server_config(production_pod)
    assert record["gunicorn"]["workers"] == cpu_limit
    assert gunicorn_workers(production_pod) == cpu_limit
    # The app takes the tightest of quota, affinity and host CPUs, naming the host on a tie: on
    # a machine with no more CPUs than the limit the quota cannot show, elsewhere it must.
    if cpu_limit < (os.cpu_count() or 1):
        assert record["workers_from"]["source"].startswith("cgroup"), record["workers_from"]
    assert record["workers_from"]["cpus"] == cpu_limit
