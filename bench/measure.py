"""The measurements. Each section starts what it measures, warms it up, alternates the variants
(A B C, then B C A, ...) for every repetition, and removes what it started."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from bench import stats
from bench.docker import ROOT, Run, docker, wait_for
from bench.variants import (
    APP_PORT,
    BASELINE,
    DIAGNOSTICS,
    VARIANTS,
    Budget,
    Images,
    Started,
    Variant,
    start,
)
from bench.wrk import (
    APP_ENV_FILE_LINES,
    CLIENT_SCRIPT,
    ENDPOINTS,
    parse,
    poll_command,
    run_wrk,
    wait_ready,
)

Point = tuple[str, int]  # (endpoint name, connections)


@dataclass
class Context:
    run: Run
    images: Images
    network: str
    subnet: str
    client: str
    budget: Budget
    n: int  # the worker count this template computes for the budget
    reps: int
    seconds: float
    warmup: float
    deadline: float  # time.monotonic() after which sections stop early
    log: Callable[[str], None]
    notes: list[str] = field(default_factory=list)

    def out_of_time(self) -> bool:
        if time.monotonic() > self.deadline:
            self.notes.append("time bound reached: later repetitions or sections were skipped")
            return True
        return False


def rotated(items: Sequence[str], rep: int) -> list[str]:
    """A B C, B C A, C A B: no variant always runs first (or right after the same neighbour)."""
    shift = rep % len(items)
    return [*items[shift:], *items[:shift]]


def _start_all(
    ctx: Context, variants: Sequence[Variant], budget: Budget, extra: dict[str, dict[str, str]]
) -> dict[str, Started]:
    started: dict[str, Started] = {}
    for variant in variants:
        started[variant.name] = start(
            variant, ctx.run, images=ctx.images, network=ctx.network, budget=budget, n=ctx.n,
            subnet=ctx.subnet, extra_env=extra.get(variant.name),
        )  # fmt: skip
    for name, server in started.items():
        try:
            wait_ready(ctx.client, server.ready_url)
        except RuntimeError:
            logs = docker("logs", "--tail", "30", server.server, check=False)
            raise RuntimeError(f"{name} did not start:\n{logs.stdout}\n{logs.stderr}") from None
        server.workers = server_processes(server.server)
        if server.variant.is_template and server.variant.via != "nginx-unix":
            _check_metrics_as_shipped(server.server)
    return started


# Run in the template's container: its own /metrics, which must be prometheus-client's
# multiprocess view (summed over every worker). An empty page once hid that every published
# figure was measured with the metrics in single-process mode.
_WORKERS_IN_METRICS = """
import re, sys, urllib.request
page = urllib.request.urlopen("http://127.0.0.1:8000/metrics", timeout=5).read().decode()
found = re.search(r"^app_workers ([0-9.e+]+)$", page, re.M)
print(float(found.group(1)) if found else "none")
"""


def _check_metrics_as_shipped(container: str) -> None:
    # gunicorn's master and workers (not counted: a healthcheck running at the moment).
    rows = docker("top", container, "-eo", "pid,args").stdout.splitlines()[1:]
    workers = sum("gunicorn" in row for row in rows) - 1
    seen = ""
    for _ in range(50):  # workers report themselves once their app has started: a few seconds
        seen = docker("exec", container, "python", "-c", _WORKERS_IN_METRICS).stdout.strip()
        if seen != "none" and float(seen) == workers:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{container}: /metrics reports app_workers {seen}, expected {workers}")


def server_processes(container: str) -> int:
    """Processes in the server container (master + workers, or a supervisor + workers), not
    counting the image's healthcheck if it is running at that moment."""
    rows = docker("top", container, "-eo", "pid,args").stdout.splitlines()[1:]
    return sum("app.server.healthcheck" not in row for row in rows)


def _summarise_point(runs: list[dict[str, Any]]) -> dict[str, Any]:
    figures = ("rps", "p50_ms", "p90_ms", "p99_ms", "p999_ms")
    return {
        **{key: stats.summary([run[key] for run in runs]) for key in figures},
        "requests": sum(run["requests"] for run in runs),
        "failures": sum(run["failures"] for run in runs),
    }


def load_matrix(
    ctx: Context,
    *,
    variants: Sequence[Variant],
    points: Sequence[Point],
    budget: Budget,
    baseline: str,
    extra_env: dict[str, dict[str, str]] | None = None,
    memory: bool = False,
) -> dict[str, Any]:
    """Every variant at every point, alternating, `ctx.reps` times; summaries and ratios."""
    started = _start_all(ctx, variants, budget, extra_env or {})
    try:
        names = [variant.name for variant in variants]
        for name in names:  # warm-up: imports, JIT-less caches, keep-alive pools, CPU frequency
            for endpoint, connections in dict.fromkeys((e, min(c, 64)) for e, c in points):
                run_wrk(ctx.client, started[name].url, ENDPOINTS[endpoint], connections, ctx.warmup)
        runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
        for rep in range(ctx.reps):
            if rep and ctx.out_of_time():
                break
            for endpoint, connections in points:
                for name in rotated(names, rep):
                    result = run_wrk(
                        ctx.client, started[name].url, ENDPOINTS[endpoint], connections,
                        ctx.seconds,
                    )  # fmt: skip
                    result["rep"] = rep
                    runs.setdefault((name, endpoint, connections), []).append(result)
                    ctx.log(
                        f"  {name:22} {endpoint:5} c={connections:<4} rep {rep + 1}: "
                        f"{result['rps']:9.1f} req/s  p99 {result['p99_ms']:8.2f} ms  "
                        f"failed {result['failures']}"
                    )
        memory_after = (
            {name: container_memory(server.server) for name, server in started.items()}
            if memory
            else {}
        )
    finally:
        ctx.run.remove(*[c for server in started.values() for c in server.containers])

    rows = []
    for (name, endpoint, connections), point_runs in runs.items():
        base_runs = runs.get((baseline, endpoint, connections), [])
        row = {
            "variant": name,
            "endpoint": endpoint,
            "connections": connections,
            **_summarise_point(point_runs),
            "ratio_rps": stats.ratios(
                [r["rps"] for r in point_runs], [r["rps"] for r in base_runs]
            ),
            "ratio_p99": stats.ratios(
                [r["p99_ms"] for r in point_runs], [r["p99_ms"] for r in base_runs]
            ),
            "runs": point_runs,
        }
        rows.append(row)
    return {
        "baseline": baseline,
        "points": [list(point) for point in points],
        "processes": {name: server.workers for name, server in started.items()},
        "memory": memory_after,
        "rows": rows,
    }


def throughput(ctx: Context, names: Sequence[str], points: Sequence[Point]) -> dict[str, Any]:
    """Sections 1 and 2: the template (nginx over TCP, over a socket, direct) and the peers."""
    variants = [VARIANTS[name] for name in names]
    baseline = BASELINE if BASELINE in names else names[0]
    return load_matrix(ctx, variants=variants, points=points, budget=ctx.budget, baseline=baseline)


def diagnose(ctx: Context, points: Sequence[Point]) -> dict[str, Any]:
    """Where the template loses: one change at a time (access log, metrics mode), same run."""
    variants = list(DIAGNOSTICS.values())
    return load_matrix(
        ctx, variants=variants, points=points, budget=ctx.budget, baseline="diag-template"
    )


def quota(ctx: Context, points: Sequence[Point]) -> dict[str, Any]:
    """Section 3: `--cpus=1` on the whole host (not pinned): the template's worker count vs the
    host-count formula (tiangolo's: max(host CPUs, 2)), same image, direct."""
    host_formula = max(os.cpu_count() or 1, 2)
    computed = replace(
        VARIANTS["template-direct"], name="quota-computed",
        label=f"template's count ({ctx.n})", description="worker count the template computes",
    )  # fmt: skip
    host = replace(
        VARIANTS["template-direct"], name="quota-host-count",
        label=f"host-count formula ({host_formula})",
        description="WEB_CONCURRENCY = max(host CPUs, 2), as tiangolo's formula gives",
        env={"WEB_CONCURRENCY": str(host_formula)},
    )  # fmt: skip
    budget = replace(ctx.budget, server_cpuset=None)
    result = load_matrix(
        ctx,
        variants=[computed, host],
        points=points,
        budget=budget,
        baseline="quota-computed",
        memory=True,
    )
    result["workers"] = {"quota-computed": ctx.n, "quota-host-count": host_formula}
    return result


# Runs inside a server container: per-process memory (RSS, PSS, USS from smaps_rollup) and the
# container's cgroup usage. PSS splits shared pages between the processes that map them, so it is
# the figure that shows what preload (copy-on-write) saves; RSS counts shared pages in each.
MEMORY_SCRIPT = r"""
import json, os
me = os.getpid()
procs = []
for pid in os.listdir("/proc"):
    if not pid.isdigit() or int(pid) == me:
        continue
    try:
        status = dict(
            line.split(":", 1) for line in open(f"/proc/{pid}/status") if ":" in line
        )
        rollup = {}
        for line in open(f"/proc/{pid}/smaps_rollup"):
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "kB":
                rollup[parts[0].rstrip(":")] = int(parts[1])
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()[:80]
    except OSError:
        continue
    procs.append({
        "pid": int(pid), "ppid": int(status["PPid"].strip()), "cmd": cmd,
        "rss_kib": rollup.get("Rss", 0), "pss_kib": rollup.get("Pss", 0),
        "uss_kib": rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0),
    })
cgroup = None
for path in ("/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory/memory.usage_in_bytes"):
    if os.path.exists(path):
        cgroup = int(open(path).read())
        break
print(json.dumps({"processes": procs, "cgroup_bytes": cgroup}))
"""


def container_memory(container: str) -> dict[str, Any]:
    raw = json.loads(docker("exec", container, "python", "-c", MEMORY_SCRIPT).stdout)
    procs = [p for p in raw["processes"] if "python" in p["cmd"] or "gunicorn" in p["cmd"]]
    master = next((p for p in procs if p["pid"] == 1), None)
    workers = [p for p in procs if p["ppid"] == 1]
    mib = 1024.0

    def total(key: str) -> float:
        return round(float(sum(p[key] for p in procs)) / mib, 1)

    return {
        "master_rss_mib": round(master["rss_kib"] / mib, 1) if master else None,
        "worker_rss_mib": [round(p["rss_kib"] / mib, 1) for p in workers],
        "worker_pss_mib": [round(p["pss_kib"] / mib, 1) for p in workers],
        "worker_uss_mib": [round(p["uss_kib"] / mib, 1) for p in workers],
        "total_rss_mib": total("rss_kib"),
        "total_pss_mib": total("pss_kib"),
        "cgroup_mib": round(raw["cgroup_bytes"] / mib / mib, 1) if raw["cgroup_bytes"] else None,
    }


def memory(ctx: Context, counts: Sequence[int]) -> dict[str, Any]:
    """Section 4: RSS/PSS per worker and in total, 1/2/4 workers, with and without PRELOAD."""
    configs = [(workers, preload) for preload in (False, True) for workers in counts]
    budget = replace(ctx.budget, server_cpuset=None)
    runs: dict[str, list[dict[str, Any]]] = {}
    for rep in range(ctx.reps):
        if rep and ctx.out_of_time():
            break
        variants = [
            replace(
                VARIANTS["template-direct"],
                name=f"mem-w{workers}-{'preload' if pre else 'fork'}",
                env={"WEB_CONCURRENCY": str(workers), "PRELOAD": str(pre).lower()},
            )
            for workers, pre in configs
        ]
        started = _start_all(ctx, variants, budget, {})
        try:
            for variant in variants:
                # Warm: every worker has served requests (imports, caches, allocator arenas).
                for endpoint in ("json", "io"):
                    run_wrk(ctx.client, started[variant.name].url, ENDPOINTS[endpoint], 32,
                            ctx.warmup)  # fmt: skip
                figures = container_memory(started[variant.name].server)
                runs.setdefault(variant.name, []).append(figures)
                ctx.log(f"  {variant.name}: {figures['total_pss_mib']} MiB PSS total")
        finally:
            ctx.run.remove(*[c for server in started.values() for c in server.containers])
    rows = []
    base = runs.get(f"mem-w{counts[0]}-fork", [])
    for (workers, preload), name in zip(
        configs, [f"mem-w{w}-{'preload' if p else 'fork'}" for w, p in configs], strict=True
    ):
        point_runs = runs.get(name, [])

        def per_worker(key: str, rs: list[dict[str, Any]] = point_runs) -> dict[str, float]:
            return stats.summary([sum(r[key]) / len(r[key]) for r in rs if r[key]])

        rows.append({
            "workers": workers,
            "preload": preload,
            "worker_rss_mib": per_worker("worker_rss_mib"),
            "worker_pss_mib": per_worker("worker_pss_mib"),
            "worker_uss_mib": per_worker("worker_uss_mib"),
            "master_rss_mib": stats.summary([r["master_rss_mib"] or 0 for r in point_runs]),
            "total_rss_mib": stats.summary([r["total_rss_mib"] for r in point_runs]),
            "total_pss_mib": stats.summary([r["total_pss_mib"] for r in point_runs]),
            "cgroup_mib": stats.summary([r["cgroup_mib"] or 0 for r in point_runs]),
            "ratio_total_pss": stats.ratios(
                [r["total_pss_mib"] for r in point_runs], [r["total_pss_mib"] for r in base]
            ),
            "runs": point_runs,
        })  # fmt: skip
    return {"baseline": f"{counts[0]} worker(s), no preload", "rows": rows}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _compose_env(ctx: Context, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    app_repo, tag = ctx.images.app.rsplit(":", 1)
    nginx_repo, nginx_tag = ctx.images.nginx.rsplit(":", 1)
    if tag != nginx_tag:
        raise ValueError(f"compose takes one APP_TAG for both images: {tag} != {nginx_tag}")
    octet = uuid.uuid4().int
    return {
        "APP_IMAGE": app_repo,
        "NGINX_IMAGE": nginx_repo,
        "APP_TAG": tag,
        "HTTP_BIND": "127.0.0.1",
        "HTTP_PORT": str(port),
        "BACKEND_SUBNET": f"10.{200 + octet % 51}.{(octet >> 8) % 256}.0/24",
        "RATE_LIMIT": "100000r/s",
        "RATE_LIMIT_BURST": "100000",
        "COMPOSE_PROGRESS": "quiet",
        **(extra or {}),
    }


def _first_200(port: int, path: str, stop: threading.Event, out: list[float]) -> None:
    while not stop.is_set():
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                out.append(time.time())
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.02)


def cold_start(ctx: Context, names: Sequence[str]) -> dict[str, Any]:
    """Section 5: `docker run` to the first /readyz 200 per server; `docker compose up` (images
    built) to the first 200 through nginx and to every container healthy (`--wait`)."""
    containers: dict[str, list[float]] = {}
    for rep in range(ctx.reps):
        if rep and ctx.out_of_time():
            break
        for name in rotated(list(names), rep):
            variant = (
                replace(VARIANTS[name], via="direct")
                if name.startswith("template")
                else (VARIANTS[name])
            )
            url = f"http://{ctx.run.name(f'{name}-cold{rep}')}-app:{APP_PORT}/readyz"
            if not variant.is_template:
                url = f"http://{ctx.run.name(f'{name}-cold{rep}')}:{APP_PORT}/readyz"
            poller = subprocess.Popen(
                poll_command(ctx.client, url, 60), stdout=subprocess.PIPE, text=True
            )
            try:
                time.sleep(0.3)  # the poller is running (its DNS lookups fail until the start)
                began = time.time()
                server = start(
                    variant, ctx.run, images=ctx.images, network=ctx.network,
                    budget=ctx.budget, n=ctx.n, subnet=ctx.subnet, suffix=f"-cold{rep}",
                )  # fmt: skip
                output, _ = poller.communicate(timeout=90)
            finally:
                poller.kill()
            ctx.run.remove(*server.containers)
            if output.strip():
                seconds = float(output.strip()) - began
                containers.setdefault(name, []).append(seconds)
                ctx.log(f"  {name}: ready {seconds:.2f}s after docker run")

    compose_runs: list[dict[str, float]] = []
    for rep in range(ctx.reps):
        if rep and ctx.out_of_time():
            break
        port = _free_port()
        env = _compose_env(ctx, port)
        project = ctx.run.compose_project(f"cold{rep}", env)
        stop, first = threading.Event(), list[float]()
        watcher = threading.Thread(target=_first_200, args=(port, "/readyz", stop, first))
        watcher.start()
        began = time.time()
        try:
            docker("compose", "-p", project, "up", "-d", "--no-build", "--wait", env=env,
                   timeout=180)  # fmt: skip
            healthy = time.time() - began
            watcher.join(timeout=30)
        finally:
            stop.set()
            watcher.join(timeout=5)
            docker("compose", "-p", project, "down", "-v", "-t", "5", env=env, check=False,
                   timeout=120)  # fmt: skip
        compose_runs.append({
            "first_200_s": round(first[0] - began, 3) if first else -1.0,
            "all_healthy_s": round(healthy, 3),
        })  # fmt: skip
        ctx.log(f"  compose up: {compose_runs[-1]}")

    base = containers.get("template-direct", [])
    return {
        "containers": [
            {
                "variant": name,
                "seconds": stats.summary(values),
                "ratio": stats.ratios(values, base),
                "runs": values,
            }
            for name, values in containers.items()
        ],
        "compose": {
            "first_200_s": stats.summary([r["first_200_s"] for r in compose_runs]),
            "all_healthy_s": stats.summary([r["all_healthy_s"] for r in compose_runs]),
            "runs": compose_runs,
        },
    }


def _image_size(image: str) -> int:
    return int(docker("image", "inspect", "-f", "{{.Size}}", image).stdout.strip())


def base_image(dockerfile: Path = ROOT / "Dockerfile") -> str:
    """The base image the first FROM line names: the app's and the peers' images share it."""
    for line in dockerfile.read_text().splitlines():
        if line.startswith("FROM "):
            return line.split()[1]
    raise ValueError(f"{dockerfile}: no FROM line")


def images(ctx: Context, base: str, nginx_base: str, tiangolo: str) -> dict[str, Any]:
    """Section 6: image sizes, and rebuild time after a one-file change to app/."""
    mib = 1024 * 1024
    sizes = {
        "base": _image_size(base),
        "template": _image_size(ctx.images.app),
        "tiangolo": _image_size(tiangolo),
        "peers": _image_size(ctx.images.peers),
        "nginx_base": _image_size(nginx_base),
        "nginx": _image_size(ctx.images.nginx),
    }
    result: dict[str, Any] = {
        "base_image": base,
        "size_mib": {k: round(v / mib, 1) for k, v in sizes.items()},
        "added_mib": {
            "template": round((sizes["template"] - sizes["base"]) / mib, 1),
            "tiangolo": round((sizes["tiangolo"] - sizes["base"]) / mib, 1),
            "nginx": round((sizes["nginx"] - sizes["nginx_base"]) / mib, 1),
        },
        "ratio_size_template_to_tiangolo": round(sizes["template"] / sizes["tiangolo"], 3),
        "ratio_added_template_to_tiangolo": round(
            (sizes["template"] - sizes["base"]) / max(1, sizes["tiangolo"] - sizes["base"]), 3
        ),
    }
    rebuilds: dict[str, list[float]] = {"template": [], "tiangolo": []}
    scratch = Path(tempfile.mkdtemp(prefix="bench-rebuild-"))
    tags = []
    try:
        for item in ("Dockerfile", ".dockerignore", "pyproject.toml", "uv.lock",
                     "gunicorn.conf.py", "app", "bench/Dockerfile.peers",
                     "bench/Dockerfile.peers.dockerignore", "bench/peers"):  # fmt: skip
            source, target = ROOT / item, scratch / item
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, target)
        builds = {
            "template": ["-f", "Dockerfile"],
            "tiangolo": ["-f", "bench/Dockerfile.peers", "--target", "tiangolo"],
        }
        for rep in range(-1, ctx.reps):  # rep -1 fills the cache from the unchanged tree
            if rep > 0 and ctx.out_of_time():
                break
            if rep >= 0:
                with (scratch / "app" / "api" / "demo.py").open("a") as handle:
                    handle.write(f"\n# rebuild {rep} {uuid.uuid4().hex}\n")
            for name, args in builds.items():
                tag = f"{ctx.run.run_id}-rebuild-{name}:latest"
                tags.append(tag)
                began = time.monotonic()
                docker("build", "-q", *args, "-t", tag, ".", cwd=scratch, timeout=900)
                if rep >= 0:
                    rebuilds[name].append(round(time.monotonic() - began, 2))
                    ctx.log(f"  rebuild {name} after a one-file change: {rebuilds[name][-1]}s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if tags:
            docker("rmi", "-f", *set(tags), check=False)
    result["rebuild_s"] = {
        name: {
            "seconds": stats.summary(values),
            "ratio": stats.ratios(values, rebuilds["template"]),
            "runs": values,
        }
        for name, values in rebuilds.items()
    }
    return result


def _compose_container(project: str, env: dict[str, str], service: str, index: int) -> str:
    ids = docker("compose", "-p", project, "ps", "-q", service, env=env).stdout.split()
    return sorted(ids)[index]


def _healthy(container: str) -> bool:
    status = docker("inspect", "-f", "{{.State.Health.Status}}", container, check=False)
    return status.stdout.strip() == "healthy"


def _wrk_around(
    ctx: Context,
    url: str,
    connections: int,
    action: Callable[[], object],
    *,
    lead: float,
    tail: float,
    limit: float,
) -> tuple[dict[str, Any], float]:
    """wrk from the client container from `lead` seconds before `action` until `tail` seconds
    after it returns, however long it takes (wrk stops on SIGINT and reports as at the end of
    -d; `limit` bounds it anyway); the figures and the action's seconds."""
    command = (
        f"echo $$; exec wrk -t{min(2, connections)} -c{connections} -d{limit:g}s --timeout 10s "
        f"-s {CLIENT_SCRIPT} {url.rstrip('/')}{ENDPOINTS['json'].path}"
    )
    wrk = subprocess.Popen(
        ["docker", "exec", ctx.client, "sh", "-c", command], stdout=subprocess.PIPE, text=True
    )
    pid = (wrk.stdout.readline() if wrk.stdout else "").strip()
    try:
        time.sleep(lead)
        began = time.monotonic()
        action()
        took = time.monotonic() - began
        time.sleep(tail)
    finally:
        if pid.isdigit():
            docker("exec", ctx.client, "sh", "-c", f"kill -INT {pid}", check=False)
        stdout, _ = wrk.communicate(timeout=limit + 60)
    return parse(stdout), took


@dataclass
class _Disruption:
    ctx: Context
    seconds: float
    connections: int
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def under_load(
        self,
        project: str,
        name: str,
        action: Callable[[], object],
        steady: dict[str, Any] | None,
        *,
        around: bool = False,
    ) -> dict[str, Any]:
        """wrk through nginx while `action` runs; `steady`: the same stack's run with no event.
        `around`: the load lasts from seconds/3 before the action until seconds/3 after it ends
        (a deploy takes longer than the others); else `seconds`, with the action at seconds/3."""
        ctx, seconds = self.ctx, self.seconds
        network = f"{project}_backend"
        docker("network", "connect", network, ctx.client)
        try:
            if around:
                result, took = _wrk_around(
                    ctx, "http://nginx:8080", self.connections, action,
                    lead=seconds / 3, tail=seconds / 3, limit=300,
                )  # fmt: skip
            else:
                timed: list[float] = []

                def fire() -> None:
                    began = time.monotonic()
                    action()
                    timed.append(time.monotonic() - began)

                timer = threading.Timer(seconds / 3, fire)
                timer.start()
                result = run_wrk(ctx.client, "http://nginx:8080", ENDPOINTS["json"],
                                 self.connections, seconds)  # fmt: skip
                timer.join(timeout=300)
                took = timed[0] if timed else 0.0
        finally:
            docker("network", "disconnect", "-f", network, ctx.client, check=False)
        result["event_s"] = round(took, 2)
        if steady is not None and steady["p99_ms"]:
            result["steady_p99_ms"] = steady["p99_ms"]
            result["p99_vs_steady"] = round(result["p99_ms"] / steady["p99_ms"], 2)
        self.events.setdefault(name, []).append(result)
        ctx.log(f"  {name}: {result['requests']} requests, {result['failures']} failed, "
                f"p99 {result['p99_ms']:.1f} ms, event {took:.1f}s")  # fmt: skip
        return result

    def one_replica(self, env_dir: Path) -> None:
        """No event, SIGHUP reload, `docker compose up -d` replacing the app container, and
        ./scripts/deploy replacing it, each of the last two after the app's env file changed."""
        ctx = self.ctx
        env_file = env_dir / "app.env"
        env_file.write_text(f"{APP_ENV_FILE_LINES}BENCH_GENERATION=0\n")
        env = _compose_env(ctx, _free_port(), {"APP_ENV_FILE": str(env_file)})
        project = ctx.run.compose_project("events1", env)
        docker("compose", "-p", project, "up", "-d", "--no-build", "--wait", env=env, timeout=180)
        for rep in range(ctx.reps):
            if rep and ctx.out_of_time():
                break
            steady = self.under_load(project, "steady", lambda: None, None)
            sighup = partial(docker, "compose", "-p", project, "kill", "-s", "SIGHUP", "app",
                             env=env)  # fmt: skip
            self.under_load(project, "sighup", sighup, steady)
            time.sleep(2)

            def replace_app(rep: int = rep) -> None:
                env_file.write_text(f"{APP_ENV_FILE_LINES}BENCH_GENERATION={rep + 1}\n")
                docker("compose", "-p", project, "up", "-d", "--no-build", "app", env=env,
                       timeout=120)  # fmt: skip

            self.under_load(project, "compose-up-replace", replace_app, steady)
            wait_for(lambda: _healthy(_compose_container(project, env, "app", 0)), 60)

            def deploy_app(rep: int = rep) -> None:
                env_file.write_text(f"{APP_ENV_FILE_LINES}BENCH_GENERATION={rep + 1}-deployed\n")
                deployed = subprocess.run(
                    [str(ROOT / "scripts" / "deploy"), "-p", project, "--no-build", "--no-pull"],
                    cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
                    timeout=300, check=False,
                )  # fmt: skip
                if deployed.returncode != 0:
                    raise RuntimeError(f"scripts/deploy failed:\n{deployed.stdout}")

            self.under_load(project, "deploy", deploy_app, steady, around=True)
        docker("compose", "-p", project, "down", "-v", "-t", "5", env=env, check=False)

    def three_replicas(self, env_dir: Path) -> None:
        """No event, and one replica stopped as compose stops it (SIGTERM, 30 s grace)."""
        ctx = self.ctx
        env_file = env_dir / "app3.env"
        env_file.write_text(APP_ENV_FILE_LINES)
        env = _compose_env(ctx, _free_port(), {"APP_ENV_FILE": str(env_file)})
        project = ctx.run.compose_project("events3", env)
        docker("compose", "-p", project, "up", "-d", "--no-build", "--wait", "--scale",
               "app=3", env=env, timeout=240)  # fmt: skip
        for rep in range(ctx.reps):
            if rep and ctx.out_of_time():
                break
            steady = self.under_load(project, "steady-3", lambda: None, None)
            victim = _compose_container(project, env, "app", rep % 3)
            stop = partial(docker, "stop", "-t", "30", victim, timeout=60)
            self.under_load(project, "stop-one-of-3", stop, steady)
            docker("start", victim)
            wait_for(partial(_healthy, victim), 60)
        docker("compose", "-p", project, "down", "-v", "-t", "5", env=env, check=False)

    def rows(self) -> list[dict[str, Any]]:
        def summary(runs: list[dict[str, Any]], key: str) -> dict[str, float]:
            return stats.summary([r[key] for r in runs if key in r])

        return [
            {
                "event": name,
                "failures": summary(runs, "failures"),
                "failed_fraction": stats.summary(
                    [r["failures"] / max(1, r["requests"]) for r in runs]
                ),
                "requests": summary(runs, "requests"),
                "p99_ms": summary(runs, "p99_ms"),
                "steady_p99_ms": summary(runs, "steady_p99_ms"),
                "p99_vs_steady": summary(runs, "p99_vs_steady"),
                "event_s": summary(runs, "event_s"),
                "runs": runs,
            }
            for name, runs in self.events.items()
        ]


def disruption(ctx: Context, seconds: float, connections: int) -> dict[str, Any]:
    """Section 7: failed requests and p99 under a steady bounded load (wrk, `connections`
    connections, through nginx on the compose network) while the stack is reloaded, shrunk or
    replaced, beside the same load with no event (`steady`: each stack, each repetition)."""
    measured = _Disruption(ctx, seconds, connections)
    env_dir = Path(tempfile.mkdtemp(prefix="bench-env-"))
    try:
        measured.one_replica(env_dir)
        measured.three_replicas(env_dir)
    finally:
        shutil.rmtree(env_dir, ignore_errors=True)
    return {"connections": connections, "seconds": seconds, "rows": measured.rows()}
