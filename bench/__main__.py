"""`python -m bench [--quick] [--out DIR]`: build the images, run every section, write
results.json and the PNG plots to DIR (default .reports/bench/). `make bench` runs the full suite;
`python -m bench.report` then renders docs/benchmarks.md from the results.

Full mode: 3 repetitions, 5 s per load point, about 20 minutes on 2 cores. --quick: 1 repetition,
2 s per point, fewer points: a smoke run, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import machine, measure, plots, scrape
from bench.docker import ROOT, Run, docker
from bench.variants import DIAGNOSTICS, VARIANTS, Budget, Images

SECTIONS = ("throughput", "diagnose", "quota", "memory", "cold_start", "images", "disruption",
            "scrape")  # fmt: skip
FULL_POINTS: list[measure.Point] = [("json", 8), ("json", 64), ("json", 256), ("body", 64),
                                    ("io", 64)]  # fmt: skip
QUICK_POINTS: list[measure.Point] = [("json", 16), ("json", 128), ("body", 32), ("io", 32)]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (1 repetition)")
    parser.add_argument("--out", type=Path, default=ROOT / ".reports" / "bench")
    parser.add_argument("--tag", default="bench", help="tag of the template's images (APP_TAG)")
    parser.add_argument(
        "--no-build", action="store_true", help="use already built template images (--tag)"
    )
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated, for sections 1 and 2"
    )
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--reps", type=int, help="repetitions (default 3, --quick 1)")
    parser.add_argument("--seconds", type=float, help="seconds per load point (5, --quick 2)")
    parser.add_argument("--max-minutes", type=float, default=30, help="stop starting new work")
    parser.add_argument("--run-id", default=f"bench-{uuid.uuid4().hex[:6]}")
    args = parser.parse_args(argv)
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    unknown |= {s for s in args.sections.split(",") if s not in SECTIONS}
    if unknown:
        parser.error(f"unknown variant or section: {', '.join(sorted(unknown))}")
    return args


def build_images(args: argparse.Namespace, sections: list[str], names: list[str]) -> Images:
    env = {"APP_TAG": args.tag, "COMPOSE_PROGRESS": "quiet"}
    if not args.no_build:
        log("building the template's images (docker compose build)")
        docker("compose", "build", env=env, timeout=1200)
    # The image names compose gives them: no project name is spelled out here.
    app, nginx = sorted(docker("compose", "config", "--images", env=env).stdout.split())
    stem = app.rsplit(":", 1)[0].removesuffix("-app")
    client = f"{stem}-bench-wrk:latest"
    log("building the wrk client image")
    docker("build", "-q", "-f", "bench/Dockerfile.wrk", "-t", client, "bench", timeout=900)
    peers = f"{stem}-bench-peers:latest"
    need_peers = any(not VARIANTS[name].is_template for name in names) and "throughput" in sections
    if need_peers or {"diagnose", "cold_start", "images"} & set(sections):
        log("building the peers image")
        for target, tag in (("peers", peers), ("tiangolo", f"{stem}-bench-tiangolo:latest")):
            docker("build", "-q", "-f", "bench/Dockerfile.peers", "--target", target, "-t", tag,
                   ".", timeout=1200)  # fmt: skip
    return Images(app=app, nginx=nginx, peers=peers, client=client)


def computed_workers(image: str, budget: Budget) -> int:
    """The worker count the template computes inside a container with this budget."""
    output = docker("run", "--rm", *budget.server_options(), image, "print-config").stdout
    workers: int = json.loads(output)["gunicorn"]["workers"]
    return workers


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0915
    args = parse_args(sys.argv[1:] if argv is None else argv)
    quick = args.quick
    reps = args.reps or (1 if quick else 3)
    seconds = args.seconds or (2.0 if quick else 5.0)
    sections = [s for s in SECTIONS if s in args.sections.split(",")]
    names = args.variants.split(",")
    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)

    images = build_images(args, sections, names)
    budget = Budget()
    run = Run(args.run_id)
    results: dict[str, Any] = {
        "meta": {
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "mode": "quick" if quick else "full",
            "machine": machine.describe(),
            "source": machine.source(),
            "repetitions": reps,
            "seconds_per_point": seconds,
            "images": images.__dict__,
            "budget": {
                "server": f"--cpus={budget.server_cpus} --cpuset-cpus={budget.server_cpuset} "
                f"--memory={budget.memory}",
                "nginx_and_wrk": f"--cpuset-cpus={budget.side_cpuset} (nginx also --cpus=1)",
            },
            "variants": {
                name: {"label": VARIANTS[name].label, "description": VARIANTS[name].description}
                for name in names
            },
        },
    }
    try:
        network = run.network("net")
        client = run.start("client", images.client, network=network, options=budget.side_options())
        n = computed_workers(images.app, budget)
        results["meta"]["workers_n"] = n
        ctx = measure.Context(
            run=run, images=images, network=network, subnet=run.subnet(network), client=client,
            budget=budget, n=n, reps=reps, seconds=seconds, warmup=1.0 if quick else 3.0,
            deadline=started + args.max_minutes * 60, log=log,
        )  # fmt: skip
        points = QUICK_POINTS if quick else FULL_POINTS
        for section in sections:
            if ctx.out_of_time():
                break
            log(f"== {section}")
            began = time.monotonic()
            if section == "throughput":
                results[section] = measure.throughput(ctx, names, points)
            elif section == "diagnose":
                results[section] = measure.diagnose(ctx, [("json", 32)])
                results["meta"]["variants"].update(
                    {
                        v.name: {"label": v.label, "description": v.description}
                        for v in DIAGNOSTICS.values()
                    }
                )
            elif section == "quota":
                results[section] = measure.quota(ctx, [("json", 64), ("io", 64)])
            elif section == "memory":
                results[section] = measure.memory(ctx, [1, 2, 4])
            elif section == "cold_start":
                cold = [name for name in names if VARIANTS[name].via == "direct"]
                results[section] = measure.cold_start(ctx, cold)
            elif section == "images":
                stem = images.app.rsplit(":", 1)[0].removesuffix("-app")
                results[section] = measure.images(
                    ctx, measure.base_image(), "nginx:stable", f"{stem}-bench-tiangolo:latest"
                )
            elif section == "disruption":
                results[section] = measure.disruption(ctx, 6.0 if quick else 12.0, 8)
            elif section == "scrape":
                results[section] = scrape.scrape_time(ctx)
            results[section]["section_seconds"] = round(time.monotonic() - began, 1)
        results["meta"]["notes"] = sorted(set(ctx.notes))
    finally:
        run.cleanup()
        results["meta"]["total_seconds"] = round(time.monotonic() - started, 1)
        (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    written = plots.render(results, args.out)
    log(f"wrote {args.out / 'results.json'} and {', '.join(p.name for p in written)}")
    log(f"total {results['meta']['total_seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
