"""The schemas of the custom resources the manifests use (HTTPRoute, PodMonitor), offline.

kubernetes-validate ships only the core API's schemas. The CRDs' own YAML is in no package on
the registries this project installs from (PyPI, npm, Debian). kubernetes-models' npm packages
carry each CRD's openAPIV3Schema as data, converted by their crd-generate: the structural schema
(types, enums, patterns, limits, required fields) without the descriptions, the CEL rules
(`x-kubernetes-validations`) and the `x-kubernetes-list-*` markers (compared with the upstream
CRDs of the versions below: nothing else differs but added `nullable`s, apiVersion and kind
enums and a metadata reference). Their newer releases ship only precompiled JavaScript
validators, which accept unknown fields; hence these older versions.

A field newer than the upstream version a schema was made from fails here: the check fails
closed, and such a field needs a newer source, not an exception.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import tarfile
import urllib.request
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import jsonschema
from referencing import Registry, Resource

from tests.k8s.conftest import ROOT, Manifest

NPM_REGISTRY = "https://registry.npmjs.org"
# Downloaded once, like checkov's virtualenv; git-ignored.
CACHE = ROOT / ".tools" / "crd-schemas"


@dataclass(frozen=True)
class NpmSchema:
    """A kind's schema: a JavaScript module in an npm tarball pinned by its sha256."""

    package: str
    version: str
    sha256: str
    module: str

    @property
    def tarball(self) -> str:
        return f"{self.package.rsplit('/', 1)[-1]}-{self.version}.tgz"

    @property
    def url(self) -> str:
        return f"{NPM_REGISTRY}/{self.package}/-/{self.tarball}"


CRD_SCHEMAS = {
    # package.json (crd-generate.input): Gateway API v1.0.0's standard-install.yaml and
    # experimental-install.yaml (and v0.6.2's standard-install.yaml). Its HTTPRoute v1 has the
    # experimental channel's fields (rules[].timeouts, parentRefs[].port).
    # sha256 computed here on the download (it matches the registry's sha512 integrity).
    "HTTPRoute": NpmSchema(
        package="@kubernetes-models/gateway-api",
        version="0.5.1",
        sha256="3650c87c49f95ccf5fee93f29a076ea4781e2a346fbe085a1143a4da9323d156",
        module="package/gateway.networking.k8s.io/v1/HTTPRoute.js",
    ),
    # package.json (crd-generate.input): prometheus-operator v0.57.0's
    # example/prometheus-operator-crd-full/monitoring.coreos.com_podmonitors.yaml.
    # sha256 computed here on the download (it matches the registry's sha512 integrity).
    "PodMonitor": NpmSchema(
        package="@kubernetes-models/prometheus-operator",
        version="4.0.0",
        sha256="ba02343671d84921cc03f67f56f354fe7a791ff809a59e80edda8d51a1196ee5",
        module="package/monitoring.coreos.com/v1/PodMonitor.js",
    ),
}

# Every object's metadata is the core API's ObjectMeta: kubernetes-validate's strict schema of
# the newest Kubernetes it ships (tests/k8s/test_manifests.py validates the core kinds with it).
OBJECT_META_SCHEMAS = "v1.37.0-local-strict"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as response:
        body: bytes = response.read()
    return body


def npm_tarball(source: NpmSchema) -> bytes:
    """The pinned tarball, from the cache or downloaded into it; its sha256 checked either way."""
    cached = CACHE / source.tarball
    if cached.exists():
        data = cached.read_bytes()
        if _sha256(data) == source.sha256:
            return data
    data = _download(source.url)
    assert _sha256(data) == source.sha256, (
        f"{source.url}: sha256 {_sha256(data)}, pinned {source.sha256}"
    )
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(cached)  # never a half-written file under the final name
    return data


def schema_in_module(source: str) -> Manifest:
    """The `const schema = {...}` a crd-generate module declares: JSON, as JSON.stringify wrote."""
    marker = "const schema = "
    start = source.index(marker) + len(marker)
    schema: Manifest = json.JSONDecoder().raw_decode(source, start)[0]
    return schema


def crd_schema(source: NpmSchema) -> Manifest:
    with tarfile.open(fileobj=io.BytesIO(npm_tarball(source)), mode="r:gz") as archive:
        module = archive.extractfile(source.module)
        assert module, f"{source.module} is not a file in {source.tarball}"
        return schema_in_module(module.read().decode())


def rejecting_unknown_fields(node: Any) -> Any:
    """The schema as the API server applies it with strict field validation: an object with
    declared properties takes no others, unless it declares additionalProperties itself (a map)
    or x-kubernetes-preserve-unknown-fields (free-form). JSON Schema's default allows any."""
    if isinstance(node, dict):
        strict = {key: rejecting_unknown_fields(value) for key, value in node.items()}
        if (
            "properties" in strict
            and "additionalProperties" not in strict
            and not strict.get("x-kubernetes-preserve-unknown-fields")
        ):
            strict["additionalProperties"] = False
        return strict
    if isinstance(node, list):
        return [rejecting_unknown_fields(item) for item in node]
    return node


def _object_meta_definitions() -> Manifest:
    path = files("kubernetes_validate") / "kubernetes-json-schema" / OBJECT_META_SCHEMAS
    definitions: Manifest = json.loads((path / "_definitions.json").read_text())
    return definitions


@functools.cache
def crd_validator(kind: str) -> jsonschema.Draft202012Validator:
    definitions = _object_meta_definitions()
    schema = rejecting_unknown_fields(crd_schema(CRD_SCHEMAS[kind]))
    # crd-generate points metadata at its own ObjectMeta schema, which is not in the package.
    schema["properties"]["metadata"] = {"$ref": f"{definitions['$id']}#/$defs/{OBJECT_META}"}
    registry: Registry[Any] = Resource.from_contents(definitions) @ Registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)


def crd_schema_errors(resource: Manifest) -> list[str]:
    """Every way a custom resource breaks its kind's schema, one line each (none: it is valid)."""
    validator = crd_validator(resource["kind"])
    return [f"{error.json_path}: {error.message}" for error in validator.iter_errors(resource)]
