"""The benchmark harness still runs: one --quick pass of two variants, a few seconds each, through
the real images (the session's e2e tags), and its JSON and plots come out. Not a measurement."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from bench import report, stats
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


def test_report_shows_each_disruption_beside_the_steady_p99_of_its_run() -> None:
    # A published run's page header (its meta), and section 7 as measure.disruption returns it.
    meta = json.loads((ROOT / "docs" / "bench" / "results.json").read_text())["meta"]

    def summary(value: float) -> dict[str, float]:
        return {"median": value, "min": value, "max": value, "n": 1}

    def row(
        event: str, failures: int, p99: float, steady: float | None, took: float
    ) -> dict[str, object]:
        figures: dict[str, object] = {
            "event": event,
            "failures": summary(failures),
            "failed_fraction": summary(failures / 1000),
            "requests": summary(1000),
            "p99_ms": summary(p99),
            "event_s": summary(took),
        }
        if steady is not None:
            figures["steady_p99_ms"] = summary(steady)
            figures["p99_vs_steady"] = summary(round(p99 / steady, 2))
        return figures

    section = {
        "connections": 8,
        "seconds": 12.0,
        "rows": [
            row("steady", 0, 5.0, None, 0.0),
            row("compose-up-replace", 138, 900.0, 5.0, 1.1),
            row("deploy", 0, 9.0, 5.0, 9.5),
        ],
    }
    page = report.render({"meta": meta, "disruption": section}, None)
    lines = page.splitlines()
    header = "| event | failed requests | failed fraction | requests | p99 ms | steady p99 ms |"
    assert any(line.startswith(header) for line in lines)
    assert "| steady | 0 | 0.0000 | 1000 | 5.0 | - | - | - |" in lines
    assert "| deploy | 0 | 0.0000 | 1000 | 9.0 | 5.0 | 1.80x | 9.5 |" in lines
    assert "| compose-up-replace | 138 | 0.1380 | 1000 | 900.0 | 5.0 | 180.00x | 1.1 |" in lines
    assert "from 4 s before the event until 4 s after it ended" in page

    # A later run of section 7 alone (after a change to the deploy) gets its own table below.
    later = {**section, "rows": [row("steady", 0, 4.0, None, 0.0), row("deploy", 0, 6.0, 4.0, 8.0)]}
    page = report.render(
        {"meta": meta, "disruption": section}, None, {"meta": meta, "disruption": later}
    )
    tail = page.split("### Section 7 again")[1].splitlines()
    assert "| deploy | 0 | 0.0000 | 1000 | 6.0 | 4.0 | 1.50x | 8.0 |" in tail
    assert "| deploy | 0 | 0.0000 | 1000 | 9.0 | 5.0 | 1.80x | 9.5 |" not in tail


def _point(variant: str, rps: list[float], p99: list[float]) -> dict[str, object]:
    return {
        "variant": variant, "endpoint": "json", "connections": 64,
        "rps": stats.summary(rps), "p99_ms": stats.summary(p99),
    }  # fmt: skip


def test_the_page_claims_a_win_or_loss_only_where_the_repetitions_ranges_separate() -> None:
    # Seen on this machine: granian 4.9-6.4k req/s against the template's 4.3-4.9k was printed
    # as a 1.50x win for the template; p99 of one server varied 18-167 ms between rounds.
    rows = [
        _point("template-direct", [4300, 4600, 4900], [18, 90, 167]),
        _point("granian", [4950, 5600, 6400], [20, 30, 40]),
        _point("uvicorn", [3000, 3100, 3200], [170, 180, 200]),
    ]
    results = {"throughput": {"rows": rows}, "meta": {"variants": {}}}
    table = {row[1]: row for row in report._template_vs_peers(results, "template-direct")}
    assert table["granian"][3] == "peer serves more"
    assert table["granian"][5].startswith("no claim")  # 18-167 ms overlaps 20-40 ms
    assert table["uvicorn"][3] == "template serves more"
    assert table["uvicorn"][5] == "template's lower"
    one_round = [_point("template-direct", [9000], [1]), _point("uvicorn", [1000], [100])]
    results = {"throughput": {"rows": one_round}, "meta": {"variants": {}}}
    (row,) = report._template_vs_peers(results, "template-direct")
    assert row[3].startswith("no claim")
    assert row[5].startswith("no claim")


def test_report_shows_scrape_time_and_files_after_recycles() -> None:
    # Section 8 as bench/scrape.py returns it, under a published run's page header.
    meta = json.loads((ROOT / "docs" / "bench" / "results.json").read_text())["meta"]
    section = {
        "max_requests": 20, "workers": 2, "scrapes": 3,
        "points": [
            {"recycles": 0, "scrape_ms": stats.summary([2.0, 2.5, 3.0]), "files": 6},
            {"recycles": 201, "scrape_ms": stats.summary([2.5, 2.7, 4.0]), "files": 8},
        ],
    }  # fmt: skip
    lines = report.render({"meta": meta, "scrape": section}, None).splitlines()
    assert "| after recycles | scrape ms | files |" in lines
    assert "| 0 | 2.5 [2.0-3.0] | 6 |" in lines
    assert "| 201 | 2.7 [2.5-4.0] | 8 |" in lines
