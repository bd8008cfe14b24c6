"""What the rendered Deployment promises: capacity during rollouts, sizes that decide the worker
count, a drain that outlasts gunicorn's graceful timeout, the Restricted Pod Security Standard.

These read the rendered output of each overlay, the way the API server would receive it.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from app.server.cgroups import CpuBudget, MemoryLimit
from app.server.settings import ServerSettings
from app.server.workers import workers_for
from tests.k8s.conftest import (
    K8S,
    OVERLAYS,
    Manifest,
    config_map_env,
    container,
    only,
    overlay_kustomization,
    pod_containers,
)

# Seconds between gunicorn's graceful timeout running out and the kubelet's SIGKILL: process
# exit, the metrics directory removed, the container runtime's own stop.
SLACK_SECONDS = 5
USERS = {"app": 10001, "nginx": 101}
_MIB = 1024 * 1024


def deployment(manifests: dict[str, list[Manifest]], overlay: str) -> Manifest:
    return only(manifests[overlay], "Deployment")


def pod_spec(manifests: dict[str, list[Manifest]], overlay: str) -> Manifest:
    spec: Manifest = deployment(manifests, overlay)["spec"]["template"]["spec"]
    return spec


def pre_stop_seconds(container_spec: Manifest) -> int:
    """The preStop pause: `sleep N` in the container, or Kubernetes' own sleep action."""
    pre_stop = container_spec["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        return int(pre_stop["sleep"]["seconds"])
    command = pre_stop["exec"]["command"]
    assert command[0] == "sleep", command
    return int(command[1])


def server_settings(docs: list[Manifest], app: Manifest) -> ServerSettings:
    """The app's settings as the pod would build them: ConfigMap values over the defaults."""
    return ServerSettings.model_validate(config_map_env(docs, app))


def quantity_to_bytes(value: str) -> int:
    units = {"Ki": 1024, "Mi": _MIB, "Gi": 1024 * _MIB}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return int(value.removesuffix(suffix)) * factor
    return int(value)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_termination_grace_period_outlasts_pre_stop_and_gunicorn_graceful_timeout(
    overlay: str, manifests: dict[str, list[Manifest]]
) -> None:
    spec = pod_spec(manifests, overlay)
    app = container(deployment(manifests, overlay), "app")
    graceful = server_settings(manifests[overlay], app).GRACEFUL_TIMEOUT
    needed = pre_stop_seconds(app) + graceful + SLACK_SECONDS
    assert spec["terminationGracePeriodSeconds"] >= needed


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nginx_is_a_native_sidecar_that_outlives_the_app(
    overlay: str, manifests: dict[str, list[Manifest]]
) -> None:
    # Started before the app and stopped after it: it serves through the app's pause and drain,
    # so it needs no pause of its own. The app pauses with Kubernetes' sleep action, not a
    # `sleep` process in the image.
    spec = pod_spec(manifests, overlay)
    [nginx] = [c for c in spec["initContainers"] if c["name"] == "nginx"]
    assert nginx["restartPolicy"] == "Always"
    assert "preStop" not in nginx.get("lifecycle", {})
    assert [c["name"] for c in spec["containers"]] == ["app"]
    app = container(deployment(manifests, overlay), "app")
    assert set(app["lifecycle"]["preStop"]) == {"sleep"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_cpu_resizes_in_place_and_memory_restarts_the_app(
    overlay: str, manifests: dict[str, list[Manifest]]
) -> None:
    app = container(deployment(manifests, overlay), "app")
    policy = {p["resourceName"]: p["restartPolicy"] for p in app["resizePolicy"]}
    assert policy == {"cpu": "NotRequired", "memory": "RestartContainer"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rollout_never_drops_below_desired_capacity(
    overlay: str, manifests: dict[str, list[Manifest]]
) -> None:
    spec = deployment(manifests, overlay)["spec"]
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert spec["strategy"]["rollingUpdate"]["maxSurge"] >= 1
    # The autoscaler owns the count; `kubectl apply` must not reset it.
    assert "replicas" not in spec


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_app_gets_as_many_workers_as_its_integer_cpu_limit(
    overlay: str, manifests: dict[str, list[Manifest]]
) -> None:
    app = container(deployment(manifests, overlay), "app")
    resources = app["resources"]
    cpu = resources["limits"]["cpu"]
    assert str(cpu).isdigit(), f"CPU limit {cpu!r} is not a whole number of CPUs"
    assert resources["requests"]["cpu"] == cpu, "request = limit: the scheduler reserves it all"
    assert resources["requests"]["memory"] == resources["limits"]["memory"]
    memory = quantity_to_bytes(resources["limits"]["memory"])
    plan = workers_for(
        server_settings(manifests[overlay], app),
        CpuBudget(cpus=float(cpu), source="cgroup v2"),
        MemoryLimit(bytes=memory, source="cgroup v2"),
    )
    assert plan.workers == int(cpu), plan.steps


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits_including_ephemeral_storage(
    overlay: str, manifests: dict[str, list[Manifest]]
) -> None:
    for spec in pod_containers(pod_spec(manifests, overlay)):
        for bound in ("requests", "limits"):
            assert set(spec["resources"][bound]) == {"cpu", "memory", "ephemeral-storage"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_have_separate_jobs(overlay: str, manifests: dict[str, list[Manifest]]) -> None:
    app = container(deployment(manifests, overlay), "app")
    settings = server_settings(manifests[overlay], app)
    startup, readiness, liveness = (
        app["startupProbe"],
        app["readinessProbe"],
        app["livenessProbe"],
    )
    assert readiness["httpGet"]["path"] == "/readyz"
    assert liveness["httpGet"]["path"] == "/healthz"
    # A slow start gets its own budget instead of a lenient liveness probe.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30
    # Liveness gives up no sooner than gunicorn replaces a blocked worker by itself.
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= settings.TIMEOUT
    # Readiness reacts faster than liveness: out of the endpoints long before any restart.
    assert (
        readiness["periodSeconds"] * readiness["failureThreshold"]
        < liveness["periodSeconds"] * liveness["failureThreshold"]
    )
    nginx = container(deployment(manifests, overlay), "nginx")
    assert nginx["readinessProbe"]["httpGet"]["path"] == "/nginx-health"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_meets_the_restricted_pod_security_standard(
    overlay: str, manifests: dict[str, list[Manifest]]
) -> None:
    spec = pod_spec(manifests, overlay)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    assert spec["serviceAccountName"] != "default"
    for forbidden in ("hostNetwork", "hostPID", "hostIPC"):
        assert forbidden not in spec
    # Init containers only as native sidecars: each is checked with the containers below.
    assert all(c.get("restartPolicy") == "Always" for c in spec.get("initContainers", []))
    for volume in spec["volumes"]:
        assert volume["emptyDir"]["medium"] == "Memory", volume
    for spec_container in pod_containers(spec):
        context: dict[str, Any] = spec_container["securityContext"]
        assert context["runAsUser"] == USERS[spec_container["name"]]
        assert context["runAsNonRoot"] is True
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"]["type"] == "RuntimeDefault"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_account_mounts_no_token(
    overlay: str, manifests: dict[str, list[Manifest]]
) -> None:
    account = only(manifests[overlay], "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    assert pod_spec(manifests, overlay)["serviceAccountName"] == account["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_app_trusts_forwarded_headers_only_from_the_nginx_sidecar(
    overlay: str, manifests: dict[str, list[Manifest]]
) -> None:
    docs = manifests[overlay]
    app = container(deployment(manifests, overlay), "app")
    nginx = container(deployment(manifests, overlay), "nginx")
    settings = server_settings(docs, app)
    assert settings.FORWARDED_ALLOW_IPS == "127.0.0.1"
    assert config_map_env(docs, nginx)["APP_UPSTREAM"] == f"127.0.0.1:{settings.PORT}"
    assert {port["containerPort"] for port in app["ports"]} == {settings.PORT}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_maps_are_generated_so_a_change_rolls_the_pods(
    overlay: str, manifests: dict[str, list[Manifest]]
) -> None:
    kustomization = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    prefix = overlay_kustomization(overlay)["namePrefix"]
    generated = {prefix + generator["name"] for generator in kustomization["configMapGenerator"]}
    # The generator's content hash is in the name the pod template refers to.
    for spec in pod_containers(pod_spec(manifests, overlay)):
        for source in spec["envFrom"]:
            name, _, suffix = source["configMapRef"]["name"].rpartition("-")
            assert name in generated
            assert len(suffix) == 10, suffix


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nginx_runs_the_shared_image_config_not_a_copy(
    overlay: str, manifests: dict[str, list[Manifest]]
) -> None:
    for doc in manifests[overlay]:
        if doc["kind"] == "ConfigMap":
            assert not any("proxy_pass" in value for value in doc["data"].values())
    nginx = container(deployment(manifests, overlay), "nginx")
    assert "nginx" in nginx["image"]
    assert "command" not in nginx
    assert "args" not in nginx


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_budget_and_autoscaler_target_these_pods(
    overlay: str, manifests: dict[str, list[Manifest]]
) -> None:
    docs = manifests[overlay]
    workload = deployment(manifests, overlay)
    pod_labels = workload["spec"]["template"]["metadata"]["labels"]

    def selects_pods(selector: dict[str, str]) -> bool:
        return bool(selector) and selector.items() <= pod_labels.items()

    assert selects_pods(workload["spec"]["selector"]["matchLabels"])
    assert selects_pods(only(docs, "Service")["spec"]["selector"])
    budget = only(docs, "PodDisruptionBudget")["spec"]
    assert selects_pods(budget["selector"]["matchLabels"])
    assert budget["maxUnavailable"] == 1
    autoscaler = only(docs, "HorizontalPodAutoscaler")["spec"]
    assert autoscaler["scaleTargetRef"]["name"] == workload["metadata"]["name"]
    assert 1 <= autoscaler["minReplicas"] < autoscaler["maxReplicas"]
    assert autoscaler["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300


def test_production_keeps_a_replica_through_a_disruption(
    manifests: dict[str, list[Manifest]],
) -> None:
    autoscaler = only(manifests["production"], "HorizontalPodAutoscaler")["spec"]
    budget = only(manifests["production"], "PodDisruptionBudget")["spec"]
    assert autoscaler["minReplicas"] - budget["maxUnavailable"] >= 2


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy_admits_the_edge_to_nginx_monitoring_to_the_app_and_lets_out_only_dns(
    overlay: str, manifests: dict[str, list[Manifest]]
) -> None:
    policy = only(manifests[overlay], "NetworkPolicy")["spec"]
    nginx = container(deployment(manifests, overlay), "nginx")
    nginx_ports = {port["name"] for port in nginx["ports"]}
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    assert policy["ingress"], "an empty ingress list would admit nothing, not everything"
    for rule in policy["ingress"]:
        assert rule["from"], "no `from`: any pod in the cluster"
        sources = [peer["namespaceSelector"]["matchLabels"] for peer in rule["from"]]
        # Only the monitoring namespace may reach the app's port, for /metrics.
        if sources == [{"kubernetes.io/metadata.name": "monitoring"}]:
            assert {port["port"] for port in rule["ports"]} == {"app"}
        else:
            assert {port["port"] for port in rule["ports"]} <= nginx_ports
    for rule in policy["egress"]:
        assert {port["port"] for port in rule["ports"]} == {53}
        # Our own labels in a peer selector would match nothing there (kustomize can add them).
        for peer in rule["to"]:
            labels = peer.get("podSelector", {}).get("matchLabels", {})
            assert not any(key.startswith("app.kubernetes.io/") for key in labels), peer


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_carries_the_standard_labels(
    overlay: str, manifests: dict[str, list[Manifest]]
) -> None:
    expected = {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/component",
        "app.kubernetes.io/part-of",
        "app.kubernetes.io/managed-by",
    }
    for doc in manifests[overlay]:
        labels = set(doc["metadata"].get("labels", {}))
        if doc["kind"] == "Namespace":
            # It may hold more than this app: which system it belongs to, not which component.
            assert expected - {"app.kubernetes.io/name", "app.kubernetes.io/component"} <= labels
            continue
        assert expected <= labels, doc["kind"]
    pod_labels = deployment(manifests, overlay)["spec"]["template"]["metadata"]["labels"]
    assert expected <= set(pod_labels)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_sets_both_images_with_a_tag_or_digest(
    overlay: str, manifests: dict[str, list[Manifest]]
) -> None:
    for spec in pod_containers(pod_spec(manifests, overlay)):
        image = spec["image"]
        assert "@sha256:" in image or ":" in image.rsplit("/", 1)[-1], image
        assert not image.endswith(":latest"), image


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespace_enforces_the_restricted_pod_security_standard(
    overlay: str, manifests: dict[str, list[Manifest]]
) -> None:
    namespace = only(manifests[overlay], "Namespace")
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert deployment(manifests, overlay)["metadata"]["namespace"] == namespace["metadata"]["name"]
