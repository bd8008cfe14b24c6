"""The benchmark harness still runs: one --quick pass of two variants, a few seconds each, through
the real images (the session's e2e tags), and its JSON and plots come out. Not a measurement."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from bench.docker import docker
from tests.e2e.conftest import ROOT, TAG

pytestmark = pytest.mark.e2e


def test_quick_run_of_two_variants_writes_results_and_plots(images: None, tmp_path: Path) -> None:
    run_id = f"bench-smoke-{uuid.uuid4().hex[:6]}"
    try:
        result = subprocess.run(
            [
                sys.executable, "-m", "bench", "--quick", "--no-build", "--tag", TAG,
                "--sections", "throughput", "--variants", "template-nginx-tcp,template-direct",
                "--seconds", "1", "--run-id", run_id, "--out", str(tmp_path),
            ],
            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        results = json.loads((tmp_path / "results.json").read_text())
        rows = results["throughput"]["rows"]
        assert {row["variant"] for row in rows} == {"template-nginx-tcp", "template-direct"}
        assert {row["endpoint"] for row in rows} == {"json", "body", "io"}
        for row in rows:
            assert row["requests"] > 0, row
            assert row["rps"]["median"] > 0
            assert row["p99_ms"]["median"] > 0
            assert row["ratio_rps"]["n"] == 1
        baseline = [row for row in rows if row["variant"] == "template-nginx-tcp"]
        assert all(row["ratio_rps"]["median"] == 1.0 for row in baseline)
        assert results["meta"]["machine"]["nproc"] >= 1
        assert results["meta"]["workers_n"] >= 1
        for plot in ("throughput_vs_concurrency.png", "p99_vs_concurrency.png", "ratios.png"):
            assert (tmp_path / plot).stat().st_size > 1000, plot
    finally:
        # The harness removes its objects itself; this is the net under it.
        leftovers = docker("ps", "-aq", "--filter", f"label=bench.run={run_id}").stdout.split()
        if leftovers:
            docker("rm", "-f", "-v", *leftovers, check=False)
        for kind in ("network", "volume"):
            ids = docker(kind, "ls", "-q", "--filter", f"label=bench.run={run_id}").stdout.split()
            if ids:
                docker(kind, "rm", *ids, check=False)
    assert not leftovers, "the harness left containers behind"
