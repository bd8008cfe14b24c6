"""Every overlay renders, validates against the Kubernetes API schemas and passes checkov."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from tests.k8s.conftest import (
    K8S,
    OVERLAYS,
    Manifest,
    container,
    environment_without_proxies,
    kubernetes_validate,
    only,
    parse,
    run,
)
from tests.k8s.crd_schemas import CRD_SCHEMAS, crd_schema_errors

# What the schema and policy checks run on: each overlay, and production with the opt-in
# component (a user who enables it gets the same guarantees).
RENDERS = [*OVERLAYS, "production+workers-from-cpu-request", "production+migrations"]


@pytest.fixture(scope="session")
def renders(
    rendered: dict[str, str], with_workers_from_cpu_request: str, with_migrations: str
) -> dict[str, str]:
    return {
        **rendered,
        "production+workers-from-cpu-request": with_workers_from_cpu_request,
        "production+migrations": with_migrations,
    }


# The minimum deploy/k8s/README.md states (1.35: native sidecar, preStop sleep action and
# resizePolicy all on by default there), the next one, and the newest kubernetes-validate
# 1.37.0 ships schemas for.
KUBERNETES_VERSIONS = ["1.35.0", "1.36.0", "1.37.0"]

# The CRD kinds (HTTPRoute; PodMonitor with its component). kubernetes-validate ships only the
# core API's schemas and skips these with a warning; the CRD schema test below validates them
# against their CRDs' own schemas (tests/k8s/crd_schemas.py).
KINDS_WITHOUT_SCHEMA = set(CRD_SCHEMAS)

# What the CRD schema check runs on: RENDERS, and production with the pod-monitor component (the
# only one that adds a resource, a PodMonitor).
CRD_RENDERS = [*RENDERS, "production+pod-monitor"]


@pytest.fixture(scope="session")
def crd_renders(renders: dict[str, str], with_pod_monitor: str) -> dict[str, str]:
    return {**renders, "production+pod-monitor": with_pod_monitor}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def validate(path: Path, *versions: str) -> tuple[int, list[str]]:
    flags = [arg for version in versions for arg in ("-k", version)]
    result = run(kubernetes_validate(), "--strict", *flags, path, check=False)
    return result.returncode, result.stdout.splitlines()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_with_kubectl_kustomize(
    overlay: str, manifests: dict[str, list[Manifest]]
) -> None:
    kinds = {doc["kind"] for doc in manifests[overlay]}
    assert kinds >= {
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "HTTPRoute",
    }


@pytest.mark.parametrize("render", RENDERS)
def test_render_validates_strictly_against_supported_kubernetes_versions(
    render: str, renders: dict[str, str], tmp_path: Path
) -> None:
    docs = parse(renders[render])
    code, lines = validate(write(tmp_path, "rendered.yaml", renders[render]), *KUBERNETES_VERSIONS)
    assert code == 0, "\n".join(lines)
    assert not [line for line in lines if line.startswith(("ERROR", "FATAL"))], lines
    # kubernetes-validate only warns (exit 0) about a kind it has no schema for: any kind but
    # the ones named above would pass unchecked, so each resource must be reported as passed.
    unchecked = [line for line in lines if line.startswith("WARN")]
    assert all(any(kind in line for kind in KINDS_WITHOUT_SCHEMA) for line in unchecked), unchecked
    for version in KUBERNETES_VERSIONS:
        minor = version.rsplit(".", 1)[0]
        for doc in docs:
            if doc["kind"] in KINDS_WITHOUT_SCHEMA:
                continue
            resource = f"{doc['kind'].lower()}/{doc['metadata']['name']}"
            assert any(
                line.startswith("INFO") and f"resource {resource} against version {minor}" in line
                for line in lines
            ), f"{resource} not validated against {minor}:\n" + "\n".join(lines)


def test_strict_validation_rejects_an_unknown_field(
    manifests: dict[str, list[Manifest]], tmp_path: Path
) -> None:
    # The check above is only worth something if a typo fails it.
    deployment = copy.deepcopy(only(manifests["production"], "Deployment"))
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 45
    code, lines = validate(write(tmp_path, "typo.yaml", yaml.safe_dump(deployment)), "1.37.0")
    assert code != 0
    assert any("terminationGracePeriod" in line for line in lines), lines


@pytest.mark.parametrize("render", CRD_RENDERS)
def test_custom_resources_validate_strictly_against_their_crd_schemas(
    render: str, crd_renders: dict[str, str]
) -> None:
    custom = [doc for doc in parse(crd_renders[render]) if doc["kind"] in CRD_SCHEMAS]
    expected = {"HTTPRoute", "PodMonitor"} if "pod-monitor" in render else {"HTTPRoute"}
    assert sorted(doc["kind"] for doc in custom) == sorted(expected)
    errors = [
        f"{doc['kind']}/{doc['metadata']['name']}: {error}"
        for doc in custom
        for error in crd_schema_errors(doc)
    ]
    assert not errors, "\n".join(errors)


def test_crd_schema_rejects_an_unknown_httproute_field(
    manifests: dict[str, list[Manifest]],
) -> None:
    # As with the core kinds: the check above is only worth something if a typo fails it.
    route = copy.deepcopy(only(manifests["production"], "HTTPRoute"))
    route["spec"]["rules"][0]["backendRefs"][0]["weigth"] = 1
    errors = crd_schema_errors(route)
    assert len(errors) == 1
    assert "backendRefs[0]" in errors[0]
    assert "'weigth' was unexpected" in errors[0]


def test_crd_schema_rejects_a_misspelt_pod_monitor_field_and_a_numeric_port(
    with_pod_monitor: str,
) -> None:
    monitor = only(parse(with_pod_monitor), "PodMonitor")
    misspelt = copy.deepcopy(monitor)
    misspelt["spec"]["podMetricEndpoints"] = misspelt["spec"].pop("podMetricsEndpoints")
    assert any("'podMetricEndpoints' was unexpected" in e for e in crd_schema_errors(misspelt))
    # The schema's port is the container port's name; a number belongs in targetPort.
    numeric = copy.deepcopy(monitor)
    numeric["spec"]["podMetricsEndpoints"][0]["port"] = 8000
    assert crd_schema_errors(numeric) == [
        "$.spec.podMetricsEndpoints[0].port: 8000 is not of type 'string'"
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_httproute_sends_each_overlay_host_to_the_service(
    overlay: str, manifests: dict[str, list[Manifest]]
) -> None:
    docs = manifests[overlay]
    route = only(docs, "HTTPRoute")
    service = only(docs, "Service")
    base_route = yaml.safe_load((K8S / "base" / "httproute.yaml").read_text())
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["hostnames"], "the overlay names its host"
    assert route["spec"]["hostnames"] != base_route["spec"]["hostnames"]
    assert all(parent["kind"] == "Gateway" for parent in route["spec"]["parentRefs"])
    service_ports = {port["port"] for port in service["spec"]["ports"]}
    for rule in route["spec"]["rules"]:
        for backend in rule["backendRefs"]:
            assert backend["kind"] == "Service"
            assert backend["name"] == service["metadata"]["name"]
            assert backend["port"] in service_ports


def declared_skips(docs: list[Manifest]) -> set[str]:
    skips = set()
    for doc in docs:
        for key, value in doc["metadata"].get("annotations", {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = value.partition("=")
                assert reason.strip(), f"{key} on {doc['kind']} gives no reason"
                skips.add(check)
    return skips


@pytest.mark.parametrize("render", RENDERS)
def test_checkov_offline_finds_no_failed_check_and_skips_only_annotated_ones(
    render: str, renders: dict[str, str], checkov: Path, tmp_path: Path
) -> None:
    path = write(tmp_path, "rendered.yaml", renders[render])
    docs = parse(renders[render])
    result = run(
        checkov,
        *("--file", path, "--framework", "kubernetes", "--skip-download", "--output", "json"),
        cwd=tmp_path,
        env=environment_without_proxies(),
        check=False,
        timeout=300,
    )
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = report["results"].get("failed_checks", [])
    assert summary["failed"] == 0, [(c["check_id"], c["check_name"], c["resource"]) for c in failed]
    assert summary["parsing_errors"] == 0
    # checkov counts a few objects twice (a Deployment and its pod template): at least all of them.
    assert summary["resource_count"] >= len(docs)
    assert summary["passed"] > 0
    skipped = report["results"].get("skipped_checks", [])
    assert all(check["check_result"].get("suppress_comment") for check in skipped)
    assert {check["check_id"] for check in skipped} == declared_skips(docs)


def test_checkov_skips_are_annotations_in_the_base_not_in_overlays() -> None:
    # One list of exceptions for every environment, each next to the object it excuses.
    for overlay in OVERLAYS:
        for path in (K8S / "overlays" / overlay).glob("*.yaml"):
            assert not re.search(r"checkov\.io/skip", path.read_text()), path


def test_workers_from_cpu_request_component_sizes_workers_by_the_cpu_request(
    with_workers_from_cpu_request: str,
) -> None:
    app = container(only(parse(with_workers_from_cpu_request), "Deployment"), "app")
    assert "cpu" not in app["resources"]["limits"]
    assert "cpu" in app["resources"]["requests"]
    source = next(e for e in app["env"] if e["name"] == "WEB_CONCURRENCY")["valueFrom"]
    assert source["resourceFieldRef"] == {
        "containerName": "app",
        "resource": "requests.cpu",
        # Whole CPUs, rounded up by the API server: 1500m -> 2 workers, 500m -> 1.
        "divisor": "1",
    }


def test_pod_monitor_component_scrapes_the_app_port_of_the_pods(with_pod_monitor: str) -> None:
    # Its schema is checked with the other custom resources; what it says is checked here,
    # against the Deployment it renders with.
    docs = parse(with_pod_monitor)
    monitor = only(docs, "PodMonitor")
    pod = only(docs, "Deployment")["spec"]["template"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    app = next(c for c in pod["spec"]["containers"] if c["name"] == "app")
    assert endpoint["port"] in {port["name"] for port in app["ports"]}
    assert endpoint["path"] == "/metrics"
    # The NetworkPolicy lets the monitoring namespace reach that port.
    policy = only(docs, "NetworkPolicy")
    assert any(
        rule["from"][0]["namespaceSelector"]["matchLabels"]
        == {"kubernetes.io/metadata.name": "monitoring"}
        and rule["ports"] == [{"port": endpoint["port"], "protocol": "TCP"}]
        for rule in policy["spec"]["ingress"]
    )
