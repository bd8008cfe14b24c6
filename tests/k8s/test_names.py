"""The service's name is written in the overlays' kustomization.yaml (namespace, namePrefix, the
app.kubernetes.io/name label, images) and nowhere else under deploy/k8s/: the base, the
component and the patches name nothing, so a copy of the template renames two files, and two
services made from it can share a namespace without selecting each other's pods."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.conftest import (
    K8S,
    OVERLAYS,
    Manifest,
    kustomize,
    only,
    overlay_kustomization,
    parse,
    pod_containers,
    render_with_component,
)

NAME_LABEL = "app.kubernetes.io/name"


def service_name(overlay: str) -> str:
    kustomization = overlay_kustomization(overlay)
    [named] = [entry for entry in kustomization["labels"] if NAME_LABEL in entry["pairs"]]
    assert named["includeSelectors"] is True
    name: str = named["pairs"][NAME_LABEL]
    return name


def test_only_the_overlays_kustomizations_write_the_services_name() -> None:
    names = {service_name(overlay) for overlay in OVERLAYS}
    assert len(names) == 1, names
    [name] = names
    naming = {K8S / "overlays" / overlay / "kustomization.yaml" for overlay in OVERLAYS}
    for path in sorted(K8S.rglob("*")):
        if not path.is_file() or path.suffix == ".jinja" or path.name == "README.md":
            continue
        if path not in naming:
            assert name not in path.read_text(), f"{path.relative_to(K8S)} names the service"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_takes_its_name_namespace_and_images_from_the_overlay(
    overlay: str, manifests: dict[str, list[Manifest]]
) -> None:
    kustomization = overlay_kustomization(overlay)
    prefix, namespace = kustomization["namePrefix"], kustomization["namespace"]
    for doc in manifests[overlay]:
        if doc["kind"] == "Namespace":
            assert doc["metadata"]["name"] == namespace
            continue
        assert doc["metadata"]["name"].startswith(prefix), doc["metadata"]["name"]
        assert doc["metadata"]["namespace"] == namespace, doc["kind"]
        assert doc["metadata"]["labels"][NAME_LABEL] == service_name(overlay), doc["kind"]
    images = {entry["newName"] for entry in kustomization["images"]}
    deployment = only(manifests[overlay], "Deployment")
    # The name without its tag: a registry may have a port (registry.example.com:5000/...).
    used = {
        re.sub(r":[^:/]+$", "", c["image"])
        for c in pod_containers(deployment["spec"]["template"]["spec"])
    }
    assert used == images
    # What a reference points at was renamed with it (HTTPRoute: kustomizeconfig.yaml).
    route = only(manifests[overlay], "HTTPRoute")
    service = only(manifests[overlay], "Service")
    assert {ref["name"] for rule in route["spec"]["rules"] for ref in rule["backendRefs"]} == {
        service["metadata"]["name"]
    }


def selectors(doc: Manifest) -> list[dict[str, Any]]:
    """Every label selector an object uses to pick pods."""
    spec = doc.get("spec", {})
    found: list[dict[str, Any]] = []
    if doc["kind"] == "Service":
        found.append(spec["selector"])
    if doc["kind"] in ("Deployment", "PodDisruptionBudget"):
        found.append(spec["selector"]["matchLabels"])
    if doc["kind"] == "NetworkPolicy":
        found.append(spec["podSelector"]["matchLabels"])
    if doc["kind"] == "Deployment":
        for constraint in spec["template"]["spec"].get("topologySpreadConstraints", []):
            found.append(constraint["labelSelector"]["matchLabels"])
    return found


def copy_named(destination: Path, name: str) -> Path:
    """deploy/k8s as a copy of the template named `name` has it."""
    shutil.copytree(K8S, destination, ignore=shutil.ignore_patterns("*.jinja", "README.md"))
    default = service_name("production")
    for path in destination.rglob("*.yaml"):
        path.write_text(path.read_text().replace(default, name))
    return destination


def test_two_services_in_one_namespace_select_only_their_own_pods(tmp_path: Path) -> None:
    rendered = {
        name: parse(kustomize(copy_named(tmp_path / name, name) / "overlays" / "production"))
        for name in ("billing", "orders")
    }
    for name, docs in rendered.items():
        other = next(d for n, d in rendered.items() if n != name)
        own_pods = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
        other_pods = only(other, "Deployment")["spec"]["template"]["metadata"]["labels"]
        for doc in docs:
            for selector in selectors(doc):
                assert selector.items() <= own_pods.items(), (name, doc["kind"], selector)
                assert not selector.items() <= other_pods.items(), (name, doc["kind"], selector)


@pytest.mark.parametrize(
    "component", sorted(path.name for path in (K8S / "components").iterdir() if path.is_dir())
)
def test_a_components_own_objects_take_the_overlays_names(component: str, tmp_path: Path) -> None:
    # Enabled the way deploy/k8s/README.md says (in the overlay), what a component adds lands in
    # the overlay's namespace with its prefix and name label, like the base's objects.
    kustomization = overlay_kustomization("production")
    prefix, namespace = kustomization["namePrefix"], kustomization["namespace"]
    for doc in parse(render_with_component(tmp_path, "production", component)):
        if doc["kind"] == "Namespace":
            continue
        assert doc["metadata"]["name"].startswith(prefix), (doc["kind"], doc["metadata"]["name"])
        assert doc["metadata"]["namespace"] == namespace, doc["kind"]
        assert doc["metadata"]["labels"][NAME_LABEL] == service_name("production"), doc["kind"]
