"""The benchmark's Dockerfiles meet the same hadolint bar as the app's, on the same base."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.measure import base_image

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("dockerfile", sorted(p.name for p in (ROOT / "bench").glob("Dockerfile.*")
                                              if p.suffix != ".dockerignore"))  # fmt: skip
def test_bench_dockerfiles_are_hadolint_clean(dockerfile: str) -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), f"bench/{dockerfile}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_peers_are_built_on_the_app_images_base() -> None:
    # Dependabot bumps each Dockerfile's FROM line; a peer on another Python would skew the
    # comparison (and the base-size figure names one base for both).
    assert base_image(ROOT / "bench" / "Dockerfile.peers") == base_image(ROOT / "Dockerfile")
