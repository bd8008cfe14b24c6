"""components/migrations: the pre-start hook once per release, in a Job, and not in the pods.

The rendered component is checked for what the release steps in deploy/k8s/README.md rely on
(schema and checkov: test_manifests.py), then played with podman: the Job's pod runs the hook
and exits with its code; the Deployment's pod serves without running it.
"""

from __future__ import annotations

import contextlib
import copy
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from app.server.settings import ServerSettings
from tests.k8s.conftest import (
    K8S,
    Manifest,
    container,
    kustomize,
    only,
    overlay_kustomization,
    overlay_with_component,
    parse,
    run,
)
from tests.k8s.test_podman import (
    PlayedPod,
    as_podman_plays_it,
    free_port,
    podman,
    podman_images,  # noqa: F401 - the fixture, loaded once per module
    variant_kustomization,
    wait_ready,
)

COMPONENT_LABEL = "app.kubernetes.io/component"


@pytest.fixture(scope="module")
def docs(with_migrations: str) -> list[Manifest]:
    return parse(with_migrations)


def job_container(job: Manifest) -> Manifest:
    [migrate] = job["spec"]["template"]["spec"]["containers"]
    return migrate  # type: ignore[no-any-return]


def selected(selector: Manifest, labels: dict[str, str]) -> bool:
    """Whether a LabelSelector (matchLabels, matchExpressions with In) selects `labels`."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def test_the_job_runs_pre_start_in_the_apps_image_with_its_config_and_hardening(
    docs: list[Manifest],
) -> None:
    job, deployment = only(docs, "Job"), only(docs, "Deployment")
    migrate, app = job_container(job), container(deployment, "app")
    assert migrate["args"] == ["pre-start"]
    # The release's image, the servers' ConfigMap (hashed name and all) and their hardening.
    assert migrate["image"] == app["image"]
    assert migrate["envFrom"] == app["envFrom"]
    assert migrate["securityContext"] == app["securityContext"]
    pod, app_pod = job["spec"]["template"]["spec"], deployment["spec"]["template"]["spec"]
    for field in ("serviceAccountName", "automountServiceAccountToken", "securityContext"):
        assert pod[field] == app_pod[field], field
    assert pod["restartPolicy"] == "Never"
    # A failed migration fails the release, once, and a stuck one does not hold it forever.
    assert job["spec"]["backoffLimit"] == 0
    assert 0 < job["spec"]["activeDeadlineSeconds"] <= 900


def test_the_pods_leave_the_hook_to_the_job(docs: list[Manifest]) -> None:
    app = container(only(docs, "Deployment"), "app")
    env = {entry["name"]: entry["value"] for entry in app.get("env", [])}
    assert "PRE_START_IN_SERVER" in ServerSettings.model_fields
    assert env["PRE_START_IN_SERVER"] == "false"
    # The Job itself reads the ConfigMap only: `pre-start` runs the hook whatever it says.
    assert "env" not in job_container(only(docs, "Job"))


def test_the_release_selector_picks_the_job_alone(docs: list[Manifest]) -> None:
    # Step 1 of the release: `kubectl apply -k OVERLAY -l app.kubernetes.io/component=migrate`.
    picked = [doc for doc in docs if doc["metadata"]["labels"].get(COMPONENT_LABEL) == "migrate"]
    assert [doc["kind"] for doc in picked] == ["Job"]
    readme = (K8S / "README.md").read_text()
    assert f"-l {COMPONENT_LABEL}=migrate" in readme


def test_the_jobs_pod_is_under_the_apps_network_policy_and_behind_no_service(
    docs: list[Manifest],
) -> None:
    job_pod = only(docs, "Job")["spec"]["template"]["metadata"]["labels"]
    app_pod = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    policy = only(docs, "NetworkPolicy")["spec"]["podSelector"]
    # The same way out (DNS, the database rule a user adds once), for both.
    assert selected(policy, job_pod)
    assert selected(policy, app_pod)
    # Never an endpoint of the Service, never counted by the disruption budget.
    assert not only(docs, "Service")["spec"]["selector"].items() <= job_pod.items()
    assert not selected(only(docs, "PodDisruptionBudget")["spec"]["selector"], job_pod)


def test_the_job_takes_the_overlays_names(docs: list[Manifest]) -> None:
    kustomization = overlay_kustomization("production")
    job = only(docs, "Job")
    assert job["metadata"]["name"] == f"{kustomization['namePrefix']}migrate"
    assert job["metadata"]["namespace"] == kustomization["namespace"]
    assert (
        job["spec"]["template"]["spec"]["serviceAccountName"]
        == (only(docs, "ServiceAccount")["metadata"]["name"])
    )


# --- Played with podman ---------------------------------------------------------------------
# The user's hook, as `COPY prestart.sh` bakes it into the image: mounted at the same path.
HOOK_IN_IMAGE = "/srv/prestart.sh"


def with_hook(pod: Manifest, container_name: str, hook: Path) -> None:
    pod["volumes"] = [*pod.get("volumes", []), {"name": "hook", "hostPath": {"path": str(hook)}}]
    target = next(c for c in pod["containers"] if c["name"] == container_name)
    mount = {"name": "hook", "mountPath": HOOK_IN_IMAGE, "readOnly": True}
    target["volumeMounts"] = [*target.get("volumeMounts", []), mount]


def job_as_pod(job: Manifest, hook: Path) -> Manifest:
    """The pod the Job controller would create: the Job's pod template, as a Pod."""
    template = copy.deepcopy(job["spec"]["template"])
    with_hook(template["spec"], "migrate", hook)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": job["metadata"]["name"], "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    }


def write_hook(tmp_path: Path, exit_code: int) -> Path:
    hook = tmp_path / f"prestart-{exit_code}.sh"
    hook.write_text(f'echo "migrating as uid $(id -u)"\nexit {exit_code}\n')
    hook.chmod(0o644)
    return hook


def exited(container_name: str, timeout: float = 90) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = "{{.State.Status}} {{.State.ExitCode}}"
        status, code = podman("inspect", "--format", state, container_name).split()
        if status in ("exited", "stopped"):
            return int(code)
        time.sleep(0.5)
    raise AssertionError(f"{container_name} still running after {timeout}s")


@pytest.fixture
def variant(
    podman_images: dict[str, str],  # noqa: F811 - test_podman's fixture, imported above
    tmp_path: Path,
) -> tuple[list[Manifest], int]:
    """Production with the component enabled in the overlay, on this run's images and names."""
    overlay = overlay_with_component(tmp_path / "overlay", "production", "migrations")
    directory = tmp_path / "variant"
    directory.mkdir()
    nginx_port = free_port()
    prefix = f"tpl-k8s-{uuid.uuid4().hex[:6]}-"
    ports = {"nginx": (8080, nginx_port), "app": (8000, free_port())}
    variant_kustomization(directory, prefix, podman_images, ports, overlay=overlay)
    return parse(kustomize(directory)), nginx_port


@contextlib.contextmanager
def played(docs: list[Manifest], path: Path) -> Iterator[None]:
    path.write_text(yaml.safe_dump_all(docs))
    try:
        podman("kube", "play", path, timeout=180)
        yield
    finally:
        podman("kube", "down", path, check=False, timeout=120)


@pytest.mark.e2e
@pytest.mark.parametrize("exit_code", [0, 3])
def test_the_jobs_pod_runs_the_hook_and_exits_with_its_code(
    variant: tuple[list[Manifest], int], tmp_path: Path, exit_code: int
) -> None:
    docs, _ = variant
    job = only(docs, "Job")
    pod = job_as_pod(job, write_hook(tmp_path, exit_code))
    configs = [doc for doc in docs if doc["kind"] == "ConfigMap"]
    with played([*configs, pod], tmp_path / "job.yaml"):
        name = f"{pod['metadata']['name']}-migrate"
        assert exited(name) == exit_code
        result = run("podman", "logs", name, check=False)
        logs = result.stdout + result.stderr
    assert "migrating as uid 10001" in logs
    assert "Starting gunicorn" not in logs
    if exit_code == 0:
        assert f"pre-start: {HOOK_IN_IMAGE} finished" in logs
    else:
        assert f"pre-start: {HOOK_IN_IMAGE} failed with exit code {exit_code}" in logs


@pytest.mark.e2e
def test_the_deployments_pod_serves_without_running_the_hook(
    variant: tuple[list[Manifest], int], tmp_path: Path
) -> None:
    docs, nginx_port = variant
    kept = [doc for doc in docs if doc["kind"] in ("ConfigMap", "Deployment")]
    played_docs = as_podman_plays_it(kept)
    deployment = only(played_docs, "Deployment")
    with_hook(deployment["spec"]["template"]["spec"], "app", write_hook(tmp_path, 0))
    with played(played_docs, tmp_path / "deployment.yaml"):
        prefix = deployment["metadata"]["name"]
        [name] = podman("pod", "ps", "--filter", f"name={prefix}", "--format", "{{.Name}}").split()
        pod = PlayedPod(name, f"http://127.0.0.1:{nginx_port}", deployment)
        wait_ready(pod)
        logs = pod.logs("app")
    assert "Starting gunicorn" in logs
    assert "migrating as uid" not in logs
    assert "pre-start" not in logs
