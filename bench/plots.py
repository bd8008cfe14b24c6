"""PNG plots from results.json: throughput and p99 against concurrency per variant, every endpoint
as a ratio to the baseline, and memory per worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt


def _label(results: dict[str, Any], name: str) -> str:
    variant = results["meta"]["variants"].get(name)
    return str(variant["label"]) if variant else name


def _machine(results: dict[str, Any]) -> str:
    m = results["meta"]["machine"]
    return f"{m['nproc']} x {m['cpu_model']}, {results['meta']['mode']} run"


def _against_concurrency(results: dict[str, Any], out: Path, key: str, ylabel: str) -> Path:
    rows = [row for row in results["throughput"]["rows"] if row["endpoint"] == "json"]
    figure, axes = plt.subplots(figsize=(8, 5))
    for name in dict.fromkeys(row["variant"] for row in rows):
        mine = sorted((r for r in rows if r["variant"] == name), key=lambda r: r["connections"])
        x = [r["connections"] for r in mine]
        y = [r[key]["median"] for r in mine]
        low = [r[key]["median"] - r[key]["min"] for r in mine]
        high = [r[key]["max"] - r[key]["median"] for r in mine]
        axes.errorbar(x, y, yerr=[low, high], marker="o", capsize=3, label=_label(results, name))
    axes.set_xscale("log", base=2)
    if key == "p99_ms":
        axes.set_yscale("log")
    axes.set_xlabel("concurrent connections (wrk -c)")
    axes.set_ylabel(ylabel)
    axes.set_title(f"GET tiny JSON: {ylabel} (median, min-max)\n{_machine(results)}", fontsize=10)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path = out / f"{'throughput' if key == 'rps' else 'p99'}_vs_concurrency.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _ratios(results: dict[str, Any], out: Path) -> Path:
    section = results["throughput"]
    points = [tuple(point) for point in section["points"]]
    names = list(dict.fromkeys(row["variant"] for row in section["rows"]))
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    width = 0.8 / max(1, len(names))
    for index, name in enumerate(names):
        by_point = {(r["endpoint"], r["connections"]): r for r in section["rows"]
                    if r["variant"] == name}  # fmt: skip
        x = [i + index * width for i in range(len(points))]
        for axes, key in ((top, "ratio_rps"), (bottom, "ratio_p99")):
            values = [by_point[p][key]["median"] if p in by_point else 0 for p in points]
            axes.bar(x, values, width, label=_label(results, name))
    for axes, title in ((top, "throughput / baseline"), (bottom, "p99 latency / baseline")):
        axes.axhline(1.0, color="black", linewidth=0.8)
        axes.set_ylabel(title)
        axes.grid(True, axis="y", alpha=0.3)
    bottom.set_xticks([i + 0.4 - width / 2 for i in range(len(points))])
    bottom.set_xticklabels([f"{e}\nc={c}" for e, c in points])
    top.legend(fontsize=7, ncol=4)
    top.set_title(
        f"Every point as a ratio to {_label(results, section['baseline'])} in the same "
        f"repetition (median)\n{_machine(results)}",
        fontsize=10,
    )
    figure.tight_layout()
    path = out / "ratios.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _memory(results: dict[str, Any], out: Path) -> Path:
    rows = results["memory"]["rows"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5))
    for preload, marker in ((False, "o"), (True, "s")):
        mine = [r for r in rows if r["preload"] is preload]
        x = [r["workers"] for r in mine]
        tag = "preload" if preload else "no preload"
        left.plot(x, [r["worker_pss_mib"]["median"] for r in mine], marker=marker,
                  label=f"PSS, {tag}")  # fmt: skip
        left.plot(x, [r["worker_uss_mib"]["median"] for r in mine], marker=marker,
                  linestyle="--", label=f"USS (private), {tag}")  # fmt: skip
        right.plot(x, [r["total_pss_mib"]["median"] for r in mine], marker=marker,
                   label=f"all processes PSS, {tag}")  # fmt: skip
        right.plot(x, [r["total_rss_mib"]["median"] for r in mine], marker=marker,
                   linestyle=":", label=f"all processes RSS, {tag}")  # fmt: skip
    left.set_title("per worker (MiB)", fontsize=10)
    right.set_title(f"whole server (MiB)\n{_machine(results)}", fontsize=9)
    for axes in (left, right):
        axes.set_xlabel("workers")
        axes.set_xticks([1, 2, 4])
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7)
        axes.set_ylim(bottom=0)
    figure.tight_layout()
    path = out / "memory.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def render(results: dict[str, Any], out: Path) -> list[Path]:
    written = []
    if results.get("throughput", {}).get("rows"):
        written.append(_against_concurrency(results, out, "rps", "requests/s"))
        written.append(_against_concurrency(results, out, "p99_ms", "p99 latency (ms)"))
        written.append(_ratios(results, out))
    if results.get("memory", {}).get("rows"):
        written.append(_memory(results, out))
    return written
