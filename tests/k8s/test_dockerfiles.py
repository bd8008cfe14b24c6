"""checkov on the Dockerfiles (here because the pinned, isolated checkov lives in this suite's
conftest): no failed check, and every skip is a `checkov:skip` comment with its reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.k8s.conftest import ROOT, environment_without_proxies, run

# The benchmark's peers image is the template's alone: copies have no bench/.
DOCKERFILES = ["Dockerfile", "deploy/nginx/Dockerfile", "bench/Dockerfile.peers"]


@pytest.mark.parametrize("dockerfile", [d for d in DOCKERFILES if (ROOT / d).exists()])
def test_dockerfile_passes_checkov_offline(dockerfile: str, checkov: Path) -> None:
    result = run(
        checkov,
        *("--file", dockerfile, "--framework", "dockerfile", "--skip-download", "--output", "json"),
        cwd=ROOT,
        env=environment_without_proxies(),
        check=False,
        timeout=300,
    )
    report = json.loads(result.stdout)
    failed = report["results"].get("failed_checks", [])
    assert report["summary"]["failed"] == 0, [(c["check_id"], c["check_name"]) for c in failed]
    assert report["summary"]["passed"] > 0
    skipped = report["results"].get("skipped_checks", [])
    assert all(check["check_result"].get("suppress_comment") for check in skipped)
