"""Render docs/benchmarks.md from a harness run: `python -m bench.report [--results PATH]
[--before PATH]`. Every figure in the page comes from results.json (copied beside the page, with
the PNGs, under docs/bench/); the prose in bench/analysis.md is included as written."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import stats
from bench.docker import ROOT

DOCS = ROOT / "docs"
ASSETS = DOCS / "bench"
ANALYSIS = Path(__file__).with_name("analysis.md")


def _range(summary: dict[str, float], digits: int = 0) -> str:
    if not summary.get("n"):
        return "-"
    if summary["n"] == 1:
        return f"{summary['median']:.{digits}f}"
    return (
        f"{summary['median']:.{digits}f} [{summary['min']:.{digits}f}-{summary['max']:.{digits}f}]"
    )


def _ratio(summary: dict[str, float]) -> str:
    if not summary.get("n"):
        return "-"
    if summary["n"] == 1:
        return f"{summary['median']:.2f}x"
    return f"{summary['median']:.2f}x [{summary['min']:.2f}-{summary['max']:.2f}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _label(results: dict[str, Any], name: str) -> str:
    variant = results["meta"]["variants"].get(name)
    return str(variant["label"]) if variant else name


def _rows_by_point(section: dict[str, Any]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    grouped: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in section["rows"]:
        grouped.setdefault((row["endpoint"], row["connections"]), []).append(row)
    return grouped


def _load_table(results: dict[str, Any], section: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    points = [tuple(point) for point in section["points"]]
    grouped = _rows_by_point(section)
    order = list(dict.fromkeys(row["variant"] for row in section["rows"]))
    for point in points:
        rows = sorted(grouped.get(point, []), key=lambda r: order.index(r["variant"]))
        if not rows:
            continue
        lines.append(f"**{point[0]}, {point[1]} connections**")
        lines.append("")
        lines += _table(
            ["variant", "req/s", "ratio", "p50 ms", "p90 ms", "p99 ms", "p99 ratio", "failed"],
            [
                [
                    _label(results, row["variant"]),
                    _range(row["rps"]),
                    _ratio(row["ratio_rps"]),
                    _range(row["p50_ms"], 1),
                    _range(row["p90_ms"], 1),
                    _range(row["p99_ms"], 1),
                    _ratio(row["ratio_p99"]),
                    f"{row['failures']} / {row['requests']}",
                ]
                for row in rows
            ],
        )
    return lines


def _verdict(mine: dict[str, float], theirs: dict[str, float], higher: str, lower: str) -> str:
    side = stats.separation(mine, theirs)
    return {1: higher, -1: lower}.get(side, "no claim: ranges overlap")


def _template_vs_peers(results: dict[str, Any], template: str) -> list[list[str]]:
    """Template (one variant) against each peer, per point: req/s and p99 as template/peer
    (medians), each with the claim the repetitions allow: a win or a loss only where the two
    servers' ranges over the repetitions do not overlap."""
    section = results["throughput"]
    grouped = _rows_by_point(section)
    table = []
    for point, rows in grouped.items():
        by_name = {row["variant"]: row for row in rows}
        if template not in by_name:
            continue
        mine = by_name[template]
        for name, row in by_name.items():
            if name.startswith("template"):
                continue
            table.append(
                [
                    f"{point[0]} c={point[1]}",
                    _label(results, name),
                    f"{mine['rps']['median'] / max(row['rps']['median'], 1e-9):.2f}x",
                    _verdict(mine["rps"], row["rps"], "template serves more", "peer serves more"),
                    f"{mine['p99_ms']['median'] / max(row['p99_ms']['median'], 1e-9):.2f}x",
                    _verdict(mine["p99_ms"], row["p99_ms"], "peer's p99 lower", "template's lower"),
                ]
            )
    return table


def _memory_change(was_run: dict[str, Any], now_run: dict[str, Any]) -> list[str]:
    """Section 4's memory, one run against another: USS per worker and total PSS."""
    out: list[str] = []
    old = {(r["workers"], r["preload"]): r for r in was_run["memory"]["rows"]}
    rows = []
    for row in now_run["memory"]["rows"]:
        was = old.get((row["workers"], row["preload"]))
        if was is None:
            continue
        rows.append(
            [
                str(row["workers"]),
                "yes" if row["preload"] else "no",
                f"{was['worker_uss_mib']['median']:.1f}",
                f"{row['worker_uss_mib']['median']:.1f}",
                f"{was['total_pss_mib']['median']:.1f}",
                f"{row['total_pss_mib']['median']:.1f}",
                f"{row['total_pss_mib']['median'] / was['total_pss_mib']['median']:.2f}x",
            ]
        )
    out += _table(
        [
            "workers",
            "preload",
            "USS/worker before",
            "after",
            "total PSS before",
            "after",
            "after / before",
        ],
        rows,
    )
    return out


def _disruption(section: dict[str, Any]) -> list[str]:
    """Section 7's explanation and table, for the main run or a later one."""
    third = section["seconds"] / 3
    out = [
        f"docker-compose.yml as shipped (rate limit raised); wrk with "
        f"{section['connections']} connections through nginx on the compose network, for "
        f"{section['seconds']:g} s with the event {third:g} s in, or (`deploy`) from "
        f"{third:g} s before the event until {third:g} s after it ended. `steady`: the same "
        "load and no event, on the same stack in the same repetition; `p99 / steady` divides "
        "by that repetition's steady p99. `sighup`: `docker compose kill -s SIGHUP app`. "
        "`compose-up-replace`: `docker compose up -d app` after the app's env file changed "
        "(compose recreates the container). `deploy`: `./scripts/deploy --no-build "
        "--no-pull` after the env file changed (new containers beside the old, old ones "
        "drained once nginx sends to the new). `stop-one-of-3`: with `--scale app=3`, one "
        "replica stopped as compose stops it (`docker stop -t 30`: SIGTERM, then the grace "
        "period). `event s`: how long the event's command took.",
        "",
    ]
    out += _table(
        [
            "event", "failed requests", "failed fraction", "requests", "p99 ms",
            "steady p99 ms", "p99 / steady", "event s",
        ],
        [
            [
                r["event"],
                _range(r["failures"]),
                _range(r["failed_fraction"], 4),
                _range(r["requests"]),
                _range(r["p99_ms"], 1),
                _range(r.get("steady_p99_ms", {}), 1),
                _ratio(r.get("p99_vs_steady", {})),
                "-" if r["event"].startswith("steady") else _range(r.get("event_s", {}), 1),
            ]
            for r in section["rows"]
        ],
    )  # fmt: skip
    return out


def _after(results: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """A later run of some sections, after the template changed: the diagnosis, memory, the
    disruptions."""
    meta = after["meta"]
    out = [
        "## After the changes: a later run of some sections",
        "",
        f"A later run ({meta['started']}, {meta['mode']} mode, {meta['repetitions']} "
        f"repetitions, {meta['seconds_per_point']:g} s per point, images from "
        f"{meta['source']['revision']}; docs/bench/after.json) of the sections below only.",
        "",
    ]
    if "diagnose" in after:
        out += [
            "### One change at a time",
            "",
            "The template and uvicorn with their access lines off, uvicorn with the template's "
            "multiprocess metrics, and gunicorn's own worker; ratios to the template (direct) in "
            "the same repetition.",
            "",
        ]
        out += _load_table(after, after["diagnose"])
    if "memory" in after and "memory" in results:
        out += [
            "### PRELOAD with gc.freeze() before each fork",
            "",
            "Same measurement as section 4; before = the main run above, after = this run "
            "(memory is deterministic enough to compare across runs). MiB, medians.",
            "",
        ]
        out += _memory_change(results, after)
    if "disruption" in after:
        out += ["### Section 7 again: reloads, stops, replacements and deploys", ""]
        out += _disruption(after["disruption"])
    return out


# One page, section after section, each guarded by whether the run measured it.
def render(  # noqa: PLR0912, PLR0915
    results: dict[str, Any], before: dict[str, Any] | None, after: dict[str, Any] | None = None
) -> str:
    meta = results["meta"]
    machine = meta["machine"]
    out: list[str] = [
        "# Benchmarks: this stack and the servers people pick instead",
        "",
        "<!-- Generated by `python -m bench.report` from docs/bench/results.json: do not edit by "
        "hand. The prose comes from bench/analysis.md. -->",
        "",
        f"Machine: **{machine['nproc']} x {machine['cpu_model']}**, {machine['memory_gib']} GiB, "
        f"kernel {machine['kernel']}, Docker {machine['docker']}; load average at start "
        f"{machine['load_average_at_start']}. Run: {meta['started']}, {meta['mode']} mode, "
        f"{meta['repetitions']} repetitions, {meta['seconds_per_point']:g} s per load point, "
        f"{meta['total_seconds'] / 60:.1f} min in all. Images built from "
        f"{meta['source']['revision']}"
        + (
            f" plus uncommitted {', '.join(meta['source']['uncommitted'])}"
            if meta["source"]["uncommitted"]
            else ""
        )
        + ".",
        "",
        "These machines are shared and noisy: **no absolute number here is a claim.** Read the "
        "ratios: each is taken against the baseline measured in the same repetition, minutes "
        "apart at most, and reported as median [min-max] over the repetitions.",
        "",
        "Reproduce everything on this page with one command (Docker and Python 3.11+ only):",
        "",
        "```sh",
        "make bench            # = ./scripts/bench: python -m bench, then python -m bench.report",
        "make bench-quick      # a short smoke run (1 repetition, 2 s points); page left alone",
        "```",
        "",
        "## Setup",
        "",
        f"- Every server container: `{meta['budget']['server']}`: the same CPU budget for all. "
        f"nginx and the load generator: `{meta['budget']['nginx_and_wrk']}`, so the client never "
        "takes CPU from the server it measures.",
        f"- Worker count N = **{meta.get('workers_n', '?')}**: what this template computes for "
        "that budget (`print-config` in a container with the same flags). Every peer runs N "
        "workers, except tiangolo's configuration, which computes its own from the host's CPU "
        "count (floor 2).",
        "- Load: wrk (Debian's package) in a container on a Docker network the harness creates, "
        "talking to the servers by name; failures are socket errors plus answers >= 400. "
        "Each variant is warmed up, then the variants alternate (A B C, B C A, ...) at every "
        "point.",
        "- Endpoints: `json` = GET /api/demo/whoami (tiny JSON); `body` = POST /api/items with a "
        "2.9 KB JSON body validated by pydantic (201 and the item echoed; the demo store keeps "
        "every item, as a database would); `io` = GET /api/demo/wait?ms=5 (awaits 5 ms).",
        "- nginx is the repository's image and config, with the per-client rate limit raised "
        "(`RATE_LIMIT`), or this would measure the rate limit.",
        "",
        "| variant | what runs | processes in the container |",
        "| --- | --- | --- |",
    ]
    processes = results.get("throughput", {}).get("processes", {})
    for name, variant in meta["variants"].items():
        out.append(
            f"| {variant['label']} | {variant['description']} | {processes.get(name, '-')} |"
        )
    out.append("")

    if "throughput" in results:
        section = results["throughput"]
        out += [
            "## 1-2. Throughput and latency, template and peers",
            "",
            f"Baseline (ratio 1.00): **{_label(results, section['baseline'])}**.",
            "",
            "![throughput against concurrency](bench/throughput_vs_concurrency.png)",
            "",
            "![p99 against concurrency](bench/p99_vs_concurrency.png)",
            "",
            "![every point as a ratio to the baseline](bench/ratios.png)",
            "",
        ]
        out += _load_table(results, section)
        grouped = _rows_by_point(section)
        tcp_unix = []
        for point, rows in grouped.items():
            by_name = {row["variant"]: row for row in rows}
            if {"template-nginx-tcp", "template-nginx-unix"} <= by_name.keys():
                unix = by_name["template-nginx-unix"]
                tcp_unix.append(
                    [
                        f"{point[0]} c={point[1]}",
                        _ratio(unix["ratio_rps"]),
                        _ratio(unix["ratio_p99"]),
                    ]
                )
        if tcp_unix:
            out += ["### nginx to gunicorn: TCP or Unix socket", ""]
            out += _table(["point", "req/s, socket / TCP", "p99, socket / TCP"], tcp_unix)
        for template in ("template-nginx-tcp", "template-direct"):
            table = _template_vs_peers(results, template)
            if table:
                out += [f"### {_label(results, template)} against each peer", ""]
                claims = [row for row in table if not row[3].startswith("no claim")]
                claims += [row for row in table if not row[5].startswith("no claim")]
                out += [
                    f"Ratios are of medians. A row claims a win or a loss only where the two "
                    f"servers' [min-max] ranges over the repetitions do not overlap: "
                    f"{len(claims)} of {2 * len(table)} comparisons here.",
                    "",
                ]
                out += _table(
                    ["point", "peer", "req/s, template / peer", "req/s", "p99, template / peer",
                     "p99"],
                    table,
                )  # fmt: skip

    if "quota" in results:
        section = results["quota"]
        out += [
            "## 3. A CPU quota smaller than the host (`--cpus=1`, not pinned, on "
            f"{machine['nproc']} cores)",
            "",
            f"Same image, direct. Workers: {section['workers']}. Memory after the load "
            "(all processes, PSS MiB): "
            + ", ".join(f"{k} {v['total_pss_mib']}" for k, v in section["memory"].items()),
            "",
        ]
        out += _load_table(results, section)

    if "memory" in results:
        section = results["memory"]
        out += [
            "## 4. Memory per worker and in total",
            "",
            "Template image, direct, after warm-up load. PSS divides shared pages among the "
            "processes that map them (what preload's copy-on-write saves shows here); USS is "
            "private to the worker; RSS counts shared pages in every process. Median [min-max] "
            "MiB.",
            "",
            "![memory](bench/memory.png)",
            "",
        ]
        out += _table(
            [
                "workers",
                "preload",
                "per worker PSS",
                "per worker USS",
                "per worker RSS",
                "master RSS",
                "total PSS",
                "total PSS ratio",
                "cgroup usage",
            ],
            [
                [
                    str(row["workers"]),
                    "yes" if row["preload"] else "no",
                    _range(row["worker_pss_mib"], 1),
                    _range(row["worker_uss_mib"], 1),
                    _range(row["worker_rss_mib"], 1),
                    _range(row["master_rss_mib"], 1),
                    _range(row["total_pss_mib"], 1),
                    _ratio(row["ratio_total_pss"]),
                    _range(row["cgroup_mib"], 1),
                ]
                for row in section["rows"]
            ],
        )
        out.append(f"Ratios are to {section['baseline']}.")
        out.append("")

    if "cold_start" in results:
        section = results["cold_start"]
        out += [
            "## 5. Cold start",
            "",
            "`docker run` (image present) to the first `/readyz` 200, polled every 10 ms from "
            "the client container; ratio to the template.",
            "",
        ]
        out += _table(
            ["server", "seconds", "ratio"],
            [
                [_label(results, r["variant"]), _range(r["seconds"], 2), _ratio(r["ratio"])]
                for r in section["containers"]
            ],
        )
        compose = section["compose"]
        out += [
            "`docker compose up -d --wait` (images built) of docker-compose.yml: first 200 "
            f"through nginx after **{_range(compose['first_200_s'], 2)} s**, every container "
            f"healthy after **{_range(compose['all_healthy_s'], 2)} s**.",
            "",
        ]

    if "images" in results:
        section = results["images"]
        size, added = section["size_mib"], section["added_mib"]
        out += [
            "## 6. Image size and rebuild time",
            "",
            *_table(
                ["image", "size MiB", "added over its base MiB"],
                [
                    [
                        f"base {section.get('base_image', 'python:3.13-slim')} (local stand-in)",
                        f"{size['base']}",
                        "-",
                    ],
                    ["this template's app image", f"{size['template']}", f"{added['template']}"],
                    [
                        "tiangolo configuration, same base",
                        f"{size['tiangolo']}",
                        f"{added['tiangolo']}",
                    ],
                    [
                        "nginx (this repo) over nginx:stable",
                        f"{size['nginx']}",
                        f"{added['nginx']}",
                    ],
                ],
            ),
            f"Template / tiangolo: size {section['ratio_size_template_to_tiangolo']:.2f}x, "
            f"added {section['ratio_added_template_to_tiangolo']:.2f}x.",
            "",
            "Rebuild after a one-line change to app/api/demo.py (BuildKit cache warm):",
            "",
            *_table(
                ["image", "seconds", "ratio to template"],
                [
                    [name, _range(r["seconds"], 1), _ratio(r["ratio"])]
                    for name, r in section["rebuild_s"].items()
                ],
            ),
        ]

    if "disruption" in results:
        out += ["## 7. Failed requests during reloads, stops, replacements and deploys", ""]
        out += _disruption(results["disruption"])

    if "scrape" in results:
        section = results["scrape"]
        out += [
            "## 8. /metrics scrape time after worker recycling",
            "",
            f"The template's image, {section['workers']} workers, `MAX_REQUESTS="
            f"{section['max_requests']}`: requests and {section['scrapes']} sequential scrapes "
            "from inside the container to 127.0.0.1, after 0 recycles and after many. `files`: "
            "the `*.db` files in the metrics directory (an exited worker's are merged into "
            "running totals and removed: app/server/metrics_files.py). `scrape ms`: median "
            "[min-max] over the scrapes.",
            "",
        ]
        out += _table(
            ["after recycles", "scrape ms", "files"],
            [
                [str(p["recycles"]), _range(p["scrape_ms"], 1), str(p["files"])]
                for p in section["points"]
            ],
        )

    if before is not None and "throughput" in before and "throughput" in results:
        out += [
            "## Before and after the changes",
            "",
            f"Before: run of {before['meta']['started']} "
            f"(docs/bench/before.json); after: this page's run. Template (direct) / peer, "
            "medians; each run's own baseline, so machine drift between the runs cancels. Which "
            'of these differences are claims: the table "template, direct against each peer".',
            "",
        ]
        then = {(r[0], r[1]): r for r in _template_vs_peers(before, "template-direct")}
        changes = []
        for row in _template_vs_peers(results, "template-direct"):
            old = then.get((row[0], row[1]))
            changes.append(
                # Columns 2 and 4: the req/s and p99 ratios (3 and 5 are their claims).
                [row[0], row[1], old[2] if old else "-", row[2], old[4] if old else "-", row[4]]
            )
        out += _table(
            ["point", "peer", "req/s ratio before", "after", "p99 ratio before", "after"], changes
        )
        if "memory" in before and "memory" in results:
            out += [
                "",
                "### Memory: PRELOAD with gc.freeze() before each fork",
                "",
                "Section 4's measurement; before = docs/bench/before.json (no gc.freeze), after "
                "= this page's run (memory is steady enough to compare across runs). MiB, medians.",
                "",
            ]
            out += _memory_change(before, results)

    # The main run's diagnosis, unless a later run measured it again (then that one, below).
    if "diagnose" in results and "diagnose" not in (after or {}):
        out += ["## Why the template loses: one change at a time", ""]
        out += _load_table(results, results["diagnose"])
    if after is not None:
        out += _after(results, after)

    if ANALYSIS.exists():
        out += [ANALYSIS.read_text().strip(), ""]
    notes = meta.get("notes") or []
    if notes:
        out += ["Notes from the run: " + "; ".join(notes), ""]
    return "\n".join(out).rstrip() + "\n"


def _publish(results: dict[str, Any], path: Path) -> None:
    """The results beside the page, without the local image names: they carry the project's
    name, which a Copier copy renames (and a copy publishes its own run anyway)."""
    meta = {key: value for key, value in results["meta"].items() if key != "images"}
    path.write_text(json.dumps({**results, "meta": meta}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument("--results", type=Path, default=ROOT / ".reports/bench/results.json")
    parser.add_argument("--before", type=Path, default=ASSETS / "before.json")
    parser.add_argument(
        "--after", type=Path, default=None, help="a later run of some sections (after changes)"
    )
    parser.add_argument("--out", type=Path, default=DOCS / "benchmarks.md")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    results = json.loads(args.results.read_text())
    if results["meta"]["mode"] != "full":
        print("refusing to publish a --quick run", file=sys.stderr)
        return 2
    ASSETS.mkdir(parents=True, exist_ok=True)
    for png in args.results.parent.glob("*.png"):
        shutil.copy2(png, ASSETS / png.name)
    _publish(results, ASSETS / "results.json")
    before = json.loads(args.before.read_text()) if args.before.exists() else None
    # Only when asked: a fresh full run measures the diagnosis and memory itself.
    after = json.loads(args.after.read_text()) if args.after else None
    if after is not None:
        _publish(after, ASSETS / "after.json")
    args.out.write_text(render(results, before, after))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
