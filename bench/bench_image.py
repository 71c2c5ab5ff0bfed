"""Benchmark of the image builder on the real Docker engine, for the shipped example model.

Measures, per engine (flask, optionally mlserver): build time cold (no layer cache, wheelhouse
re-resolved) and cached (nothing changed), rebuild after a model-only change, image size, and
container start to the first ``/ping`` 200 (median and best of N runs, one worker and the default
worker count). Prints a Markdown table; ``--json`` writes the raw numbers.

Usage::

    .venv/bin/python bench/bench_image.py [--engines flask,mlserver] [--runs 5] [--json out.json]

Needs a Docker engine (started loopback-safe here when none answers, and stopped again) and the
offline base image (``scripts/build-base-image.sh``, run here when missing).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "integration"))


def _engine() -> tuple[Any, subprocess.Popen[bytes] | None]:
    import conftest as kit  # integration/conftest.py: the same engine logic as the tests

    client = kit._client()
    if client is not None:
        return client, None
    if not shutil.which("dockerd") and kit._install_engine():
        sys.exit("no Docker engine and dockerd cannot be installed here")
    proc = subprocess.Popen(["dockerd", *kit.DOCKERD_ARGS], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    client = kit._wait_for_engine(60, proc)
    if client is None:
        proc.terminate()
        sys.exit("dockerd did not start")
    return client, proc


def _base_image() -> str:
    out = subprocess.run(["bash", str(REPO / "scripts" / "build-base-image.sh")],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def start_to_ping(client: Any, image: str, workers: int | None, preload: str = "auto") -> float:
    """Seconds from ``docker run`` (API call) to the first ``/ping`` 200."""
    from mldeploy.testing.aws import free_port

    port = free_port()
    env = {"MLDEPLOY_HOST": "127.0.0.1", "SAGEMAKER_BIND_TO_PORT": str(port),
           "MLDEPLOY_PRELOAD": preload}
    if workers:
        env["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(workers)
    started = time.monotonic()
    container = client.containers.run(image, ["serve"], detach=True, network_mode="host",
                                      environment=env)
    try:
        while time.monotonic() - started < 120:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.02)
        logs = container.logs().decode(errors="replace")[-2000:]
        raise RuntimeError(f"{image}: no /ping 200 in 120 s; container log:\n{logs}")
    finally:
        container.remove(force=True)


def cpu_probe() -> float:
    """Seconds for a fixed pure-Python loop: this VM's CPU speed varies by up to ±30 % from one
    minute to the next, so every table says how fast the machine was while it was measured."""
    started = time.perf_counter()
    total = 0
    for i in range(5_000_000):
        total += i
    return time.perf_counter() - started


def bench_engine(client: Any, engine: str, base: str, runs: int, wheel: str) -> dict[str, Any]:
    from mldeploy import example_model_path
    from mldeploy.container.image import build_docker

    model = example_model_path()
    name = f"mldeploy-bench/{engine}:latest"
    kw = dict(base_image=base, engine=engine, mldeploy_wheel=wheel)
    row: dict[str, Any] = {"engine": engine}
    cold = build_docker(model, name, no_cache=True, **kw)
    row["build_cold_s"] = cold.seconds
    row["size_mb"] = cold.size_bytes / 1e6
    row["packages"] = len(cold.requirements)
    row["build_cached_s"] = build_docker(model, name, **kw).seconds
    with tempfile.TemporaryDirectory() as tmp:
        changed = Path(tmp) / "model"
        shutil.copytree(model, changed)
        (changed / "CHANGELOG.txt").write_text(f"model-only change {time.time()}\n")
        rebuilt = build_docker(str(changed), f"{name}-changed", **kw)
        row["rebuild_model_only_s"] = rebuilt.seconds
        client.images.remove(rebuilt.image_id, force=True)
    cases = [("ping_1_worker", 1, "auto"), ("ping_default_workers", None, "auto")]
    if engine == "flask":  # the same image loading in each worker instead (before preload)
        cases.append(("ping_default_workers_no_preload", None, "off"))
    times: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    for _ in range(runs):  # interleaved, so a busy moment hits every case alike
        for label, workers, preload in cases:
            times[label].append(start_to_ping(client, name, workers, preload))
    for label, values in times.items():
        row[f"{label}_median_s"] = statistics.median(values)
        row[f"{label}_best_s"] = min(values)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    cols = [("engine", "engine", "{}"), ("image MB", "size_mb", "{:.0f}"),
            ("packages", "packages", "{}"),
            ("build cold s", "build_cold_s", "{:.1f}"),
            ("build cached s", "build_cached_s", "{:.1f}"),
            ("model-only rebuild s", "rebuild_model_only_s", "{:.1f}"),
            ("start→/ping 1 worker s (median/best)", "ping_1_worker", None),
            ("start→/ping default workers s (median/best)", "ping_default_workers", None),
            ("same, MLDEPLOY_PRELOAD=off s (median/best)", "ping_default_workers_no_preload",
             None)]
    lines = ["| " + " | ".join(c[0] for c in cols) + " |",
             "|" + "|".join("---" for _ in cols) + "|"]
    for row in rows:
        cells = []
        for _, key, fmt in cols:
            if fmt is None and key + "_median_s" not in row:
                cells.append("–")
            elif fmt is None:
                cells.append(f"{row[key + '_median_s']:.2f} / {row[key + '_best_s']:.2f}")
            else:
                cells.append(fmt.format(row[key]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="flask")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--base-image", default=None)
    parser.add_argument("--json", default=None, help="write the raw numbers here")
    args = parser.parse_args()

    from mldeploy.container.image.options import default_cache_dir
    from mldeploy.container.image.wheelhouse import mldeploy_wheel

    client, started = _engine()
    try:
        base = args.base_image or _base_image()
        wheel = str(mldeploy_wheel(default_cache_dir()))
        load = open("/proc/loadavg").read().split()[0]
        print(f"# base image {base}; {args.runs} runs per start measurement; "
              f"load average {load} at start; CPU probe {cpu_probe():.2f} s", file=sys.stderr)
        rows = []
        for engine in args.engines.split(","):
            rows.append(bench_engine(client, engine.strip(), base, args.runs, wheel))
            print(f"# {engine} done", file=sys.stderr)
        load = open("/proc/loadavg").read().split()[0]
        print(f"# load average {load} at the end; CPU probe {cpu_probe():.2f} s", file=sys.stderr)
        print(table(rows))
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
    finally:
        if started is not None:
            started.terminate()
            started.wait(30)


if __name__ == "__main__":
    main()
