#!/usr/bin/env python3
"""Gateway benchmark: the local target's gateway against the same container straight, one run.

Creates a local endpoint (``mldeploy deploy --target local``) of the shipped model
(src/mldeploy/examples/classifier) on the Docker engine, then drives three paths with wrk, the
same fixed ``dataframe_split`` body POSTed as application/json, interleaved round by round (the
order rotates each round, so drift on a shared machine hits every path alike):

* ``direct``      the container's own ``/invocations`` (127.0.0.1:CONTAINER_PORT)
* ``gateway``     the gateway's ``/invocations``
* ``sagemaker``   the gateway's ``/endpoints/NAME/invocations`` (what boto3 calls)

and prints a Markdown table per body size and concurrency: requests/s (all rounds' requests over
all rounds' time), p50/p99 latency (the rounds' latency distributions merged), non-200 answers and
socket errors, CPU time per request of the container's server and of the gateway (from /proc,
user + system), and the overhead two ways: 1 - gateway req/s / direct req/s (pooled, and the
median of the per-round ratios), and the gateway's share of the CPU time per request (what a
CPU-bound machine gives up to it, and far less sensitive to other load on a shared machine).

Run it with the project venv (needs wrk: ``apt-get install wrk``, and a Docker engine with the
base image, e.g. after ``scripts/build-base-image.sh``):

    .venv/bin/python bench/bench_gateway.py                 # ~4 min after the image is built
    .venv/bin/python bench/bench_gateway.py --quick         # ~1 min smoke run
    .venv/bin/python bench/bench_gateway.py --json out.json # also write the raw numbers
    .venv/bin/python bench/bench_gateway.py --image REF     # serve an existing image (no build):
                                                            # the same container for two runs

Every server listens on 127.0.0.1 and every request goes there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "src" / "mldeploy" / "examples" / "classifier"
NAME = "bench-gateway"

# wrk: POST one body from $BENCH_BODY, count statuses, write summary + 1000 latency quantiles (us)
WRK_LUA = r"""
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"; wrk.body = f:read("*a"); f:close()
wrk.headers["Content-Type"] = "application/json"
local threads = {}
function setup(thread) table.insert(threads, thread) end
bad = 0
function response(status, headers, body) if status ~= 200 then bad = bad + 1 end end
function done(summary, latency, requests)
  local nbad = 0
  for _, t in ipairs(threads) do nbad = nbad + t:get("bad") end
  local q = {}
  if summary.requests > 0 then
    for i = 0, 999 do table.insert(q, string.format("%d", latency:percentile(i / 10 + 0.05))) end
  end
  local e = summary.errors
  local out = assert(io.open(os.getenv("BENCH_OUT"), "w"))
  out:write(string.format('{"duration_us": %d, "requests": %d, "non200": %d, "errors": %d, ' ..
    '"quantiles_us": [%s]}', summary.duration, summary.requests, nbad,
    e.connect + e.read + e.write + e.timeout, table.concat(q, ",")))
  out:close()
end
"""


@dataclass
class Cell:
    """One path at one body size and concurrency, summed over the rounds."""

    requests: int = 0
    seconds: float = 0.0
    non200: int = 0
    errors: int = 0
    cpu_seconds: float = 0.0  # the gateway's
    server_cpu_seconds: float = 0.0  # the container's
    samples: list[tuple[float, int]] = field(default_factory=list)  # (latency us, weight)
    per_round: list[float] = field(default_factory=list)  # req/s

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def quantile(self, q: float) -> float:
        ordered = sorted(self.samples)
        total = sum(w for _, w in ordered)
        seen = 0
        for value, weight in ordered:
            seen += weight
            if seen >= q * total:
                return value / 1000.0
        return float("nan")


def body(rows: int) -> bytes:
    import numpy as np

    cols = [f"f{i}" for i in range(20)]
    data = np.random.default_rng(rows).standard_normal((rows, 20)).round(6).tolist()
    return json.dumps({"dataframe_split": {"columns": cols, "data": data}}).encode()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of ``pid`` and its descendants (the container's server)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += cpu_seconds(p)
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def run_wrk(url: str, body_file: Path, conc: int, seconds: float, work: Path,
            lua: Path) -> dict:
    out = work / "wrk.json"
    out.unlink(missing_ok=True)
    cmd = ["wrk", f"-t{min(conc, 2)}", f"-c{conc}", f"-d{max(1, round(seconds))}s",
           "--timeout", "30s", "-s", str(lua), url]
    env = {**os.environ, "BENCH_BODY": str(body_file), "BENCH_OUT": str(out)}
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=seconds + 60)
    return json.loads(out.read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=5.0, help="per path per round")
    ap.add_argument("--concurrency", default="1,8")
    ap.add_argument("--rows", default="1,100")
    ap.add_argument("--base-image", default=os.environ.get("MLDEPLOY_TEST_BASE_IMAGE",
                                                           "mldeploy-base:bookworm-v1"))
    ap.add_argument("--cpus", default=None, help="-C cpus for the container (default: none)")
    ap.add_argument("--image", default=None, help="-C image: serve this local image (no build)")
    ap.add_argument("--name", default=NAME, help=f"the endpoint's name (default {NAME})")
    ap.add_argument("--quick", action="store_true", help="2 rounds of 2 s, 1-row body only")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.rows = 2, 2.0, "1"
    if not shutil.which("wrk"):
        print("bench_gateway: needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2
    from mldeploy.plugins.local import LocalTarget

    work = Path(tempfile.mkdtemp(prefix="mldeploy-bench-gw-"))
    lua = work / "post.lua"
    lua.write_text(WRK_LUA)
    config = {"state_dir": str(work / "state"), "base_image": args.base_image}
    if args.cpus:
        config["cpus"] = args.cpus
    if args.image:
        config["image"] = args.image
    target = LocalTarget(config, progress=lambda e: print(f"  {e}", file=sys.stderr))
    results: dict[str, dict[str, Cell]] = {}
    try:
        dep = target.create(args.name, str(MODEL))
        port = next(iter(dep.details["containers"].values()))["port"]
        pid = int(dep.details["gateway_pid"])
        cname = next(iter(dep.details["containers"]))
        print(f"  image {dep.details['containers'][cname]['image']}", file=sys.stderr)
        server_pid = int(subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", cname],
                                        capture_output=True, text=True, check=True).stdout)
        paths = {"direct": f"http://127.0.0.1:{port}/invocations",
                 "gateway": f"{dep.url}/invocations",
                 "sagemaker": f"{dep.url}/endpoints/{args.name}/invocations"}
        for rows in [int(r) for r in args.rows.split(",")]:
            body_file = work / f"body-{rows}.json"
            body_file.write_bytes(body(rows))
            for conc in [int(c) for c in args.concurrency.split(",")]:
                key = f"{rows} row{'s' if rows > 1 else ''}, c={conc}"
                cells = results.setdefault(key, {p: Cell() for p in paths})
                for _ in range(2):  # warm-up: connections, caches
                    run_wrk(paths["gateway"], body_file, conc, 1, work, lua)
                for r in range(args.rounds):
                    order = list(paths)[r % 3:] + list(paths)[:r % 3]
                    for path in order:
                        before = cpu_seconds(pid), tree_cpu_seconds(server_pid)
                        got = run_wrk(paths[path], body_file, conc, args.seconds, work, lua)
                        cell = cells[path]
                        cell.cpu_seconds += cpu_seconds(pid) - before[0]
                        cell.server_cpu_seconds += tree_cpu_seconds(server_pid) - before[1]
                        cell.requests += got["requests"]
                        cell.seconds += got["duration_us"] / 1e6
                        cell.non200 += got["non200"]
                        cell.errors += got["errors"]
                        cell.per_round.append(got["requests"] / (got["duration_us"] / 1e6))
                        w = max(1, got["requests"] // 1000)
                        cell.samples += [(float(v), w) for v in got["quantiles_us"]]
                print(f"  done: {key}", file=sys.stderr)
    finally:
        target.delete(args.name)
        shutil.rmtree(work, ignore_errors=True)
    report(results, args)
    if args.json:
        args.json.write_text(json.dumps({k: {p: {"rps": c.rps, "p50_ms": c.quantile(.5),
                                                 "p99_ms": c.quantile(.99), "non200": c.non200,
                                                 "errors": c.errors, "requests": c.requests}
                                             for p, c in v.items()}
                                         for k, v in results.items()}, indent=1))
    return 0


def report(results: dict[str, dict[str, Cell]], args: argparse.Namespace) -> None:
    print(f"\n{time.strftime('%Y-%m-%d %H:%M')} · {platform.node()} · {os.cpu_count()} cores · "
          f"{args.rounds} rounds x {args.seconds:g} s per path · load avg "
          f"{os.getloadavg()[0]:.1f}\n")
    print("| body, concurrency | path | req/s | p50 ms | p99 ms | non-200 | socket errors "
          "| CPU µs/req container + gateway | overhead: req/s (pooled / median of rounds) "
          "| overhead: CPU share |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---:|")
    for key, cells in results.items():
        direct = cells["direct"]
        for path, c in cells.items():
            n = max(1, c.requests)
            server, gw = c.server_cpu_seconds / n * 1e6, c.cpu_seconds / n * 1e6
            cpu = f"{server:.0f}" if path == "direct" else f"{server:.0f} + {gw:.0f}"
            if path == "direct":
                over = share = "-"
            else:
                pooled = 1 - c.rps / direct.rps if direct.rps else float("nan")
                pairs = zip(c.per_round, direct.per_round, strict=True)
                ratios = [1 - g / d for g, d in pairs if d]
                over = f"{pooled:+.1%} / {statistics.median(ratios):+.1%}"
                share = f"{gw / (server + gw):.1%}" if server + gw else "-"
            print(f"| {key} | {path} | {c.rps:.0f} | {c.quantile(.5):.2f} | "
                  f"{c.quantile(.99):.2f} | {c.non200} | {c.errors} | {cpu} | {over} | {share} |")
    print("\noverhead: req/s compares throughput measured in the same run (sensitive to whatever "
          "else runs on the machine); CPU share is the gateway's CPU time over the container's "
          "plus the gateway's per request, the throughput a CPU-bound machine gives up to it.")


if __name__ == "__main__":
    sys.exit(main())
