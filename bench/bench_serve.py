#!/usr/bin/env python3
"""Serving benchmark: `mldeploy serve` (ours) against `mlflow models serve` (peer), one run.

Starts both servers on the shipped model (src/mldeploy/examples/classifier) with the same worker
count on free 127.0.0.1 ports, drives them with wrk (one fixed `dataframe_split` body per cell,
POSTed as application/json), interleaving the servers round by round, and prints Markdown tables:

* requests/s, p50 and p99 latency for 1-, 100- and 10,000-row bodies at concurrency 1 and 16, with
  the count of non-200 responses and socket errors (a fast server that errors must not look good);
* cold start (process spawn to first 200 on /ping) and idle memory (RSS and PSS summed over the
  server's process tree, after load before traffic, and after traffic);
* the in-process floor for the same bodies (orjson parse + numpy array -> DataFrame with the
  signature's columns + the model's predict + orjson serialise), and ours' per-request time / floor;
* whether every server's predictions equal the in-process predictions.

Optionally MLServer 1.7.1 (mlserver-mlflow) runs as a third column (`--mlserver`, default: when
bench/.venv-mlserver exists).

Run it with the project venv, after `bash bench/setup_peers.sh`:

    .venv/bin/python bench/bench_serve.py                # full run, ~5-8 min
    .venv/bin/python bench/bench_serve.py --quick        # smoke run, ~1-2 min
    .venv/bin/python bench/bench_serve.py --servers peer # harness check without ours

Every server listens on 127.0.0.1 and every request goes there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DEFAULT_MODEL = ROOT / "src" / "mldeploy" / "examples" / "classifier"
WRK_SCRIPT = BENCH / "_wrk.lua"
HOST = "127.0.0.1"


# --------------------------------------------------------------------------------------------------
# Bodies and the in-process floor
# --------------------------------------------------------------------------------------------------


def signature_columns(model_dir: Path) -> list[str]:
    import yaml  # mlflow-skinny brings PyYAML

    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    return [c["name"] for c in json.loads(mlmodel["signature"]["inputs"])]


def make_body(columns: list[str], rows: int, seed: int) -> bytes:
    import numpy as np
    import orjson

    data = np.random.default_rng(seed).standard_normal((rows, len(columns)))
    return orjson.dumps(
        {"dataframe_split": {"columns": columns, "data": data}}, option=orjson.OPT_SERIALIZE_NUMPY
    )


def _median_time(fn, min_runs: int, budget_s: float) -> float:
    """Median wall time of fn() in seconds over at least min_runs calls or budget_s seconds."""
    times = []
    deadline = time.perf_counter() + budget_s
    while len(times) < min_runs or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 20000:
            break
    return statistics.median(times)


def measure_floor(model_dir: Path, bodies: dict[int, bytes], budget_s: float) -> dict:
    """Parse + build + predict + serialise in this process, no HTTP; returns ms per stage."""
    import mlflow.sklearn
    import numpy as np
    import orjson
    import pandas as pd

    model = mlflow.sklearn.load_model(str(model_dir))
    columns = signature_columns(model_dir)
    out = {}
    for rows, body in bodies.items():

        def parse(body=body):
            return orjson.loads(body)

        def build(doc):
            split = doc["dataframe_split"]
            return pd.DataFrame(np.asarray(split["data"], dtype=np.float64), columns=columns)

        def serialise(preds):
            return orjson.dumps({"predictions": preds}, option=orjson.OPT_SERIALIZE_NUMPY)

        def whole(body=body):
            doc = orjson.loads(body)
            return serialise(model.predict(build(doc)))

        doc = parse()
        df = build(doc)
        preds = model.predict(df)
        for _ in range(3):  # warm caches and lazy imports
            whole()
        runs = 200 if rows <= 100 else 20
        stages = {
            "parse": _median_time(parse, runs, budget_s / 5),
            "build": _median_time(lambda doc=doc: build(doc), runs, budget_s / 5),
            "predict": _median_time(lambda df=df: model.predict(df), runs, budget_s / 5),
            "serialise": _median_time(lambda p=preds: serialise(p), runs, budget_s / 5),
            "total": _median_time(whole, runs, budget_s / 5),
        }
        out[rows] = {k: v * 1000 for k, v in stages.items()}
        out[rows]["predictions"] = preds.tolist()
    return out


# --------------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def process_tree(pid: int) -> list[int]:
    kids = _children_map()
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(kids.get(p, []))
    return tree


def tree_memory(pid: int) -> dict:
    """RSS and PSS (MiB) summed over the live, non-zombie processes of pid's tree."""
    rss = pss = 0
    n = 0
    for p in process_tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("State", "").strip().startswith("Z") or "VmRSS" not in fields:
            continue
        n += 1
        rss += int(fields["VmRSS"].split()[0])
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
                    break
        except OSError:
            pass
    return {"rss_mib": rss / 1024, "pss_mib": pss / 1024, "processes": n}


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by the live processes of pid's tree."""
    ticks = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_idle(pid: int, cap_s: float = 60.0) -> float:
    """Wait until pid's tree stops using CPU (wrk leaves requests in flight when it stops, and the
    server finishes them: that work must not land in the next server's measurement)."""
    t0 = time.perf_counter()
    quiet = 0
    last = tree_cpu_seconds(pid)
    while quiet < 2 and time.perf_counter() - t0 < cap_s:
        time.sleep(0.2)
        now = tree_cpu_seconds(pid)
        quiet = quiet + 1 if now - last <= 0.02 else 0
        last = now
    return time.perf_counter() - t0


def http_request(port: int, method: str, path: str, body: bytes | None = None, timeout=60.0):
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@dataclass
class Server:
    key: str  # "ours", "mlflow", "mlserver"
    label: str
    version: str
    argv_fn: object  # (port, workdir) -> (argv, env, ports)
    proc: subprocess.Popen | None = None
    port: int = 0
    log: Path | None = None
    cold_starts: list = field(default_factory=list)

    def start(self, workdir: Path, deadline_s: float) -> float:
        """Spawn the server; return seconds from spawn to the first 200 on /ping."""
        self.port = free_port()
        argv, env, cwd = self.argv_fn(self.port, workdir)
        self.log = workdir / f"{self.key}.log"
        logf = open(self.log, "ab")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        logf.close()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.label} exited with {self.proc.returncode} before /ping answered 200; "
                    f"log tail:\n{tail(self.log)}"
                )
            try:
                status, _ = http_request(self.port, "GET", "/ping", timeout=2.0)
                if status == 200:
                    return time.perf_counter() - t0
            except OSError:
                pass
            if time.perf_counter() - t0 > deadline_s:
                self.stop()
                raise RuntimeError(
                    f"{self.label} not ready after {deadline_s:.0f} s:\n{tail(self.log)}"
                )
            time.sleep(0.01)

    def stop(self):
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the server leads its own process group
        tree = process_tree(self.proc.pid)
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        # anything of its tree or group still alive after the grace period gets SIGKILL
        deadline = time.time() + 5
        while time.time() < deadline:
            alive = [p for p in tree if Path(f"/proc/{p}").exists() and not _zombie(p)]
            if not alive:
                break
            time.sleep(0.1)
        else:
            for p in tree:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def tail(path: Path | None, n: int = 25) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


def _venv_env(venv: Path) -> dict:
    env = dict(os.environ)
    # mlflow's CLI runs `bash -c "exec uvicorn ..."`: its venv's bin must be on PATH
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env.pop("PYTHONPATH", None)
    return env


def make_servers(args) -> list[Server]:
    # the argv builders bind their venv/executable as default arguments: the names are reused below
    model = str(args.model)
    servers = []
    if "ours" in args.servers:
        exe = Path(args.ours_bin)
        if not exe.exists():
            sys.exit(f"ours: {exe} not found (pip install -e '.[dev]' into the project venv)")
        version = _run(
            [
                str(exe.parent / "python"),
                "-c",
                "import importlib.metadata as m; print(m.version('mldeploy'))",
            ]
        )
        commit = _run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
        dirty = _run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "container"])

        def ours_argv(port, workdir, exe=exe):
            env = dict(os.environ)
            env["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(args.workers)
            argv = [
                str(exe),
                "serve",
                "-m",
                model,
                "--host",
                HOST,
                "--port",
                str(port),
                "--workers",
                str(args.workers),
            ]
            return argv, env, str(workdir)

        servers.append(
            Server(
                "ours",
                "mldeploy serve",
                f"mldeploy {version} @ {commit}{' +uncommitted' if dirty else ''}",
                ours_argv,
            )
        )
    if "before" in args.servers:
        servers.append(before_server(args, model))
    if "peer" in args.servers or "mlflow" in args.servers:
        venv = Path(args.peers_venv)
        mlflow_bin = venv / "bin" / "mlflow"
        if not mlflow_bin.exists():
            sys.exit(f"peer: {mlflow_bin} not found: run `bash bench/setup_peers.sh` first")
        version = _run(
            [str(venv / "bin" / "python"), "-c", "import mlflow; print(mlflow.__version__)"]
        )

        def mlflow_argv(port, workdir, venv=venv, mlflow_bin=mlflow_bin):
            argv = [
                str(mlflow_bin),
                "models",
                "serve",
                "-m",
                model,
                "--env-manager",
                "local",
                "-p",
                str(port),
                "-h",
                HOST,
                "-w",
                str(args.workers),
            ]
            return argv, _venv_env(venv), str(workdir)

        servers.append(Server("mlflow", "mlflow models serve", f"mlflow {version}", mlflow_argv))
    if args.mlserver:
        venv = Path(args.mlserver_venv)
        exe = venv / "bin" / "mlserver"
        if not exe.exists():
            print(
                f"note: {exe} not found, skipping MLServer (bash bench/setup_peers.sh "
                "--with-mlserver)",
                file=sys.stderr,
            )
        else:
            version = _run(
                [str(venv / "bin" / "python"), "-c", "import mlserver; print(mlserver.__version__)"]
            )

            def mlserver_argv(port, workdir, venv=venv, exe=exe):
                d = workdir / f"mlserver-{port}"
                d.mkdir(parents=True, exist_ok=True)
                (d / "settings.json").write_text(
                    json.dumps(
                        {
                            "host": HOST,
                            "http_port": port,
                            "grpc_port": free_port(),
                            "metrics_port": free_port(),
                            "parallel_workers": args.workers,
                        }
                    )
                )
                (d / "model-settings.json").write_text(
                    json.dumps(
                        {
                            "name": "classifier",
                            "implementation": "mlserver_mlflow.MLflowRuntime",
                            "parameters": {"uri": model},
                        }
                    )
                )
                return [str(exe), "start", str(d)], _venv_env(venv), str(d)

            servers.append(Server("mlserver", "MLServer", f"mlserver {version}", mlserver_argv))
    if not servers:
        sys.exit("no server selected")
    return servers


GTHREAD_PATCH = ('"worker_class": worker_class(settings),', '"worker_class": "gthread",')


def before_tree(commit: str, gthread: bool) -> Path:
    """mldeploy as of ``commit`` (git archive), laid out as the ``mldeploy`` package the way
    pyproject maps it (src/mldeploy, plugins -> mldeploy.plugins, container ->
    mldeploy.container), cached under bench/results/; with ``gthread`` its flask engine runs
    gunicorn's gthread worker instead of mldeploy's (everything else the same). Returns the
    directory to put on PYTHONPATH."""
    full = _run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{commit}^{{commit}}"])
    if len(full) != 40:
        sys.exit(f"before: {commit!r} is not a commit of this repository")
    root = BENCH / "results" / f"before-{full[:12]}{'-gthread' if gthread else ''}"
    pkg = root / "pkg"
    if not (pkg / "mldeploy" / "container").is_dir():
        shutil.rmtree(root, ignore_errors=True)
        tree = root / "tree"
        tree.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", full], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        (pkg).mkdir()
        shutil.copytree(tree / "src" / "mldeploy", pkg / "mldeploy")
        shutil.copytree(tree / "plugins", pkg / "mldeploy" / "plugins")
        shutil.copytree(tree / "container", pkg / "mldeploy" / "container")
        if gthread:
            engine = pkg / "mldeploy" / "container" / "engines" / "flask.py"
            text = engine.read_text()
            if GTHREAD_PATCH[0] not in text:
                shutil.rmtree(root, ignore_errors=True)
                sys.exit(f"before: {commit} has no mldeploy worker to swap for gthread")
            engine.write_text(text.replace(*GTHREAD_PATCH))
    return pkg


def before_server(args, model: str) -> Server:
    """``mldeploy serve`` at ``--before-commit`` (default HEAD) with gunicorn's gthread worker
    in place of mldeploy's asyncio/h11 one (``--before-worker gthread``, the flask engine before
    issue #17's transport; ``as-is`` runs the commit unchanged), in the project venv."""
    gthread = args.before_worker == "gthread"
    pkg = before_tree(args.before_commit, gthread)
    engine = (pkg / "mldeploy" / "container" / "engines" / "flask.py").read_text()
    worker = "gthread" if ("gunicorn.workers.gthread" in engine or gthread) else "mldeploy's"
    python = str(Path(args.ours_bin).parent / "python")
    short = _run(["git", "-C", str(ROOT), "rev-parse", "--short", args.before_commit])

    def before_argv(port, workdir, pkg=pkg, python=python):
        env = dict(os.environ)
        env["PYTHONPATH"] = str(pkg)  # ahead of the editable install's finder
        env["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(args.workers)
        argv = [python, "-c", "import sys; from mldeploy.cli import main; sys.exit(main())",
                "serve", "-m", model, "--host", HOST, "--port", str(port),
                "--workers", str(args.workers)]
        return argv, env, str(workdir)

    return Server("before", f"mldeploy serve @ {short}, {worker} worker",
                  f"mldeploy @ {short}, gunicorn {worker} worker", before_argv)


def _run(argv) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=120).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


# --------------------------------------------------------------------------------------------------
# Load
# --------------------------------------------------------------------------------------------------


def run_wrk(server: Server, body_path: Path, conc: int, seconds: float, workdir: Path) -> dict:
    """One wrk run against server; waits for the server to drain afterwards."""
    port = server.port
    out = workdir / f"wrk-{port}-{time.monotonic_ns()}.json"
    cpu0 = tree_cpu_seconds(server.proc.pid)
    env = dict(os.environ, BENCH_BODY=str(body_path), BENCH_OUT=str(out))
    argv = [
        "wrk",
        "-t1",
        f"-c{conc}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(WRK_SCRIPT),
        f"http://{HOST}:{port}/invocations",
    ]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 120)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    res = json.loads(out.read_text())
    out.unlink()
    res["drain_s"] = wait_idle(server.proc.pid)
    res["server_cpu_s"] = tree_cpu_seconds(server.proc.pid) - cpu0
    return res


def merge_runs(runs: list[dict]) -> dict:
    """Merge interleaved wrk runs of one server on one cell."""
    requests = sum(r["requests"] for r in runs)
    duration = sum(r["duration_us"] for r in runs) / 1e6
    statuses: dict[str, int] = {}
    for r in runs:
        for code, n in r["statuses"].items():
            statuses[code] = statuses.get(code, 0) + n
    socket_errors = sum(
        r["errors"][k] for r in runs for k in ("connect", "read", "write", "timeout")
    )
    non200 = sum(n for code, n in statuses.items() if code != "200")
    # each run's 1000 quantile points each stand for 0.1 % of its requests
    samples = sorted(
        (q, r["requests"] / 1000.0) for r in runs if r["requests"] for q in r["quantiles_us"]
    )

    def pct(p):
        if not samples:
            return float("nan")
        target = requests * p / 100.0
        acc = 0.0
        for q, w in samples:
            acc += w
            if acc >= target - 1e-9:
                return q / 1000.0
        return samples[-1][0] / 1000.0

    mean_ms = (
        (sum(r["mean_us"] * r["requests"] for r in runs) / requests / 1000.0)
        if requests
        else float("nan")
    )
    return {
        "requests": requests,
        "seconds": duration,
        "rps": requests / duration if duration else 0.0,
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "mean_ms": mean_ms,
        "max_ms": max((r["max_us"] for r in runs if r["requests"]), default=0) / 1000.0,
        "statuses": statuses,
        "non200": non200,
        "socket_errors": socket_errors,
        # server CPU (whole process tree, including requests still in flight when wrk stopped) per
        # completed request: an efficiency figure that the load generator's own CPU does not blur
        "server_cpu_ms_per_req": (
            1000 * sum(r["server_cpu_s"] for r in runs) / requests if requests else float("nan")
        ),
        "drain_s": sum(r["drain_s"] for r in runs),
    }


def check_predictions(server: Server, body: bytes, expected: list) -> dict:
    try:
        status, raw = http_request(server.port, "POST", "/invocations", body, timeout=60)
    except OSError as e:
        return {"ok": False, "why": f"request failed: {e}"}
    if status != 200:
        return {"ok": False, "why": f"HTTP {status}: {raw[:200]!r}"}
    try:
        got = json.loads(raw)["predictions"]
    except (ValueError, KeyError, TypeError) as e:
        return {"ok": False, "why": f"bad response body ({e}): {raw[:200]!r}"}
    if got != expected:
        diff = sum(1 for a, b in zip(got, expected, strict=False) if a != b) + abs(
            len(got) - len(expected)
        )
        return {"ok": False, "why": f"{diff} of {len(expected)} predictions differ"}
    return {"ok": True, "why": ""}


# frames every stack of a gunicorn worker starts with: not informative in an inclusive profile
_ENTRY_FRAMES = (
    "Arbiter.",
    "BaseApplication.run",
    "run (container/engines",
    "Worker.init_process",
    "ThreadWorker.init_process",
    "ThreadWorker.run ",
    "main (mldeploy",
    "serve (mldeploy",
)


def find_py_spy(args) -> str | None:
    for cand in (Path(args.peers_venv) / "bin" / "py-spy", shutil.which("py-spy")):
        if cand and Path(cand).exists():
            return str(cand)
    return None


def profile_ours(
    server: Server,
    py_spy: str,
    body_path: Path,
    rows: int,
    conc: int,
    seconds: float,
    out_dir: Path,
) -> dict:
    """Drive ours with wrk while py-spy samples every process of its tree (threads holding the
    GIL only, so idle threads do not show); return the top lines and functions."""
    import collections
    import re

    raw = out_dir / f"profile-ours-{rows}rows-c{conc}.txt"
    wrk_secs = seconds + 3
    env = dict(os.environ, BENCH_BODY=str(body_path), BENCH_OUT=str(out_dir / "wrk-prof.json"))
    wrk = subprocess.Popen(
        [
            "wrk",
            "-t1",
            f"-c{conc}",
            f"-d{round(wrk_secs)}s",
            "--timeout",
            "30s",
            "-s",
            str(WRK_SCRIPT),
            f"http://{HOST}:{server.port}/invocations",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    spy = subprocess.run(
        [
            py_spy,
            "record",
            "--subprocesses",
            "--gil",
            "-r",
            "100",
            "-d",
            str(round(seconds)),
            "-p",
            str(server.proc.pid),
            "-f",
            "raw",
            "-o",
            str(raw),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    wrk.wait(timeout=wrk_secs + 60)
    wait_idle(server.proc.pid)
    (out_dir / "wrk-prof.json").unlink(missing_ok=True)
    if spy.returncode != 0 or not raw.exists():
        return {"error": (spy.stderr or spy.stdout).strip()[-500:]}
    lines: collections.Counter = collections.Counter()
    funcs: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames or not n.isdigit():
            continue
        total += int(n)
        lines[frames[-1]] += int(n)
        for name in {re.sub(r":\d+\)$", ")", f) for f in frames}:
            funcs[name] += int(n)
    top = lambda c, k: [(f, round(100 * n / total, 1)) for f, n in c.most_common(k)]  # noqa: E731
    return {
        "rows": rows,
        "conc": conc,
        "samples": total,
        "raw": str(raw),
        "top_lines": top(lines, 12),
        "top_functions": [
            t
            for t in top(funcs, 80)
            if any(m in t[0] for m in ("container/", "gunicorn/", "flask/", "sklearn/", "mlflow/"))
            and not t[0].startswith(_ENTRY_FRAMES)
        ][:15],
    }


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def fmt(x, digits=1):
    if x is None or x != x:
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def ratio(a, b, digits=1):
    if not a or not b or a != a or b != b:
        return "-"
    return f"{a / b:.{digits}f}×"


def machine_info() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gib": round(mem_gib, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def report(res: dict) -> str:
    servers = res["servers"]
    keys = [s["key"] for s in servers]
    label = {s["key"]: s["label"] for s in servers}
    short = {"ours": "ours", "before": "before", "mlflow": "mlflow", "mlserver": "MLServer"}
    m = res["machine"]
    lines = []
    a = res["args"]
    lines.append(
        f"Run {res['date']} on {m['cores']} cores ({m['cpu']}), {m['mem_gib']} GiB, "
        f"Linux {m['kernel']}, Python {m['python']}; load average at start "
        f"{res['loadavg_start']}, at end {res['loadavg_end']}."
    )
    lines.append(
        "Servers: "
        + "; ".join(f"{s['label']} = {s['version']}" for s in servers)
        + f". Workers: {a['workers']} each. Load: wrk, 1 thread, keep-alive, "
        f"{a['seconds']:g} s per server per cell in {a['rounds']} interleaved rounds "
        f"(+{a['warmup']:g} s warm-up). Model: {Path(a['model']).name} (20 float features, "
        "logistic regression)."
    )
    lines.append("")

    # --- throughput / latency
    head = ["body", "conc"]
    for k in keys:
        head.append(f"req/s {short[k]}")
    if "ours" in keys:
        head += [f"ours ÷ {short[k]}" for k in keys if k != "ours"]
    for k in keys:
        head.append(f"p50 ms {short[k]}")
    for k in keys:
        head.append(f"p99 ms {short[k]}")
    head.append("non-200 / socket errors (" + " / ".join(short[k] for k in keys) + ")")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 3) + ["---"]) + "|")
    for cell in res["cells"]:
        r = cell["results"]
        row = [f"{cell['rows']:,} rows ({cell['body_kb']:,.0f} KB)", str(cell["conc"])]
        row += [fmt(r[k]["rps"]) for k in keys]
        if "ours" in keys:
            row += [ratio(r["ours"]["rps"], r[k]["rps"]) for k in keys if k != "ours"]
        row += [fmt(r[k]["p50_ms"], 2) for k in keys]
        row += [fmt(r[k]["p99_ms"], 2) for k in keys]
        row.append(" / ".join(f"{r[k]['non200']}+{r[k]['socket_errors']}" for k in keys))
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")

    # --- start and memory
    lines.append("| | " + " | ".join(label[k] for k in keys) + " |")
    lines.append("|---|" + "---:|" * len(keys))
    cs = res["cold_start"]
    lines.append(
        "| cold start, spawn → first 200 on /ping (median of "
        f"{a['cold_runs']}; min–max) | "
        + " | ".join(
            f"{fmt(statistics.median(cs[k]), 2)} s ({fmt(min(cs[k]), 2)}–{fmt(max(cs[k]), 2)})"
            for k in keys
        )
        + " |"
    )
    for when, title in (("before", "after load, before traffic"), ("after", "after traffic")):
        mem = res["memory"][when]
        lines.append(
            f"| RSS {title}, MiB (sum over process tree) | "
            + " | ".join(f"{fmt(mem[k]['rss_mib'], 0)} ({mem[k]['processes']} proc)" for k in keys)
            + " |"
        )
        lines.append(
            f"| PSS {title}, MiB (shared pages counted once) | "
            + " | ".join(fmt(mem[k]["pss_mib"], 0) for k in keys)
            + " |"
        )
    lines.append(
        "| predictions equal the in-process model's (all bodies) | "
        + " | ".join(
            "yes"
            if all(v["ok"] for v in res["agree"][k].values())
            else "NO: "
            + "; ".join(
                f"{rows} rows: {v['why']}" for rows, v in res["agree"][k].items() if not v["ok"]
            )
            for k in keys
        )
        + " |"
    )
    lines.append("")

    # --- floor
    fl = res["floor"]
    head = ["body", "parse ms", "build ms", "predict ms", "serialise ms", "floor ms"]
    head += [f"{short[k]} c=1 mean ms" for k in keys] + [f"{short[k]} ÷ floor" for k in keys]
    if "ours" in keys:
        head.append("ours c=1 p50 ÷ floor")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|---|" + "---:|" * (len(head) - 1))
    for rows in res["rows"]:
        f = fl[str(rows)]
        c1 = next((c for c in res["cells"] if c["rows"] == rows and c["conc"] == 1), None)
        row = [f"{rows:,} rows"] + [
            fmt(f[s], 3) for s in ("parse", "build", "predict", "serialise", "total")
        ]
        row += [fmt(c1["results"][k]["mean_ms"], 2) if c1 else "-" for k in keys]
        row += [ratio(c1["results"][k]["mean_ms"], f["total"], 2) if c1 else "-" for k in keys]
        if "ours" in keys:
            row.append(ratio(c1["results"]["ours"]["p50_ms"], f["total"], 2) if c1 else "-")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(
        "Floor: one process, no HTTP: `orjson.loads` + `np.asarray(data)` → "
        "`pd.DataFrame(columns=signature)` + the scikit-learn model's `predict` + "
        '`orjson.dumps({"predictions": ...})`; median of repeated calls, measured at the '
        "start and at the end of the run, lower kept. c=1 mean = the wrk run's mean "
        "latency at concurrency 1 (client-side, includes HTTP); the p50 ratio is less "
        "sensitive to other work on the machine."
    )

    # --- profiles
    for prof in res.get("profiles", []):
        lines.append("")
        if "error" in prof:
            lines.append(f"py-spy failed: {prof['error']}")
            continue
        lines.append(
            f"Profile of ours, {prof['rows']:,} rows at concurrency {prof['conc']} "
            f"(py-spy --gil, all workers, {prof['samples']} samples; raw stacks in "
            f"{prof['raw']}). Where the GIL-holding time goes, by line:"
        )
        lines.append("")
        for f, pc in prof["top_lines"]:
            lines.append(f"- {pc:.1f}% `{f}`")
        lines.append("")
        lines.append("Inclusive, by function (server code):")
        lines.append("")
        for f, pc in prof["top_functions"]:
            lines.append(f"- {pc:.1f}% `{f}`")

    # --- targets
    if res.get("targets"):
        lines.append("")
        lines.append("Targets (issue #2):")
        for t in res["targets"]:
            lines.append(f"- {'met' if t['met'] else 'MISSED'}: {t['what']} — {t['value']}")
    return "\n".join(lines)


def evaluate_targets(res: dict) -> list[dict]:
    keys = [s["key"] for s in res["servers"]]
    if "ours" not in keys or "mlflow" not in keys:
        return []
    out = []
    cells = {(c["rows"], c["conc"]): c["results"] for c in res["cells"]}
    for rows, need in ((1, 2.0), (10000, 3.0)):
        for conc in res["concurrency"]:
            r = cells.get((rows, conc))
            if r:
                x = r["ours"]["rps"] / r["mlflow"]["rps"] if r["mlflow"]["rps"] else float("inf")
                out.append(
                    {
                        "what": f"≥{need:g}× mlflow's req/s, {rows:,} rows, c={conc}",
                        "value": f"{x:.2f}×",
                        "met": x >= need,
                    }
                )
    worse = [
        f"{rows:,} rows c={conc}: {r['ours']['p99_ms']:.2f} vs {r['mlflow']['p99_ms']:.2f} ms"
        for (rows, conc), r in cells.items()
        if not r["ours"]["p99_ms"] < r["mlflow"]["p99_ms"]
    ]
    out.append(
        {
            "what": "lower p99 than mlflow in every cell",
            "value": "all lower" if not worse else "not lower: " + "; ".join(worse),
            "met": not worse,
        }
    )
    c1 = cells.get((10000, 1))
    if c1 and "10000" in res["floor"]:
        x = c1["ours"]["mean_ms"] / res["floor"]["10000"]["total"]
        out.append(
            {
                "what": "ours within 1.5× of the floor on 10,000 rows (c=1 mean latency)",
                "value": f"{x:.2f}×",
                "met": x <= 1.5,
            }
        )
    bad = sum(r[k]["non200"] + r[k]["socket_errors"] for r in cells.values() for k in keys)
    agree = all(v["ok"] for k in keys for v in res["agree"][k].values())
    out.append(
        {
            "what": "every response 200 and predictions agree",
            "value": f"{bad} non-200/socket errors; predictions agree: {agree}",
            "met": bad == 0 and agree,
        }
    )
    return out


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--workers", type=int, default=2, help="worker processes for every server (2)")
    p.add_argument(
        "--seconds",
        type=float,
        default=10.0,
        help="measured seconds per server per cell, split over --rounds (10)",
    )
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds per cell (2)")
    p.add_argument(
        "--warmup", type=float, default=1.0, help="warm-up seconds per server per cell (1)"
    )
    p.add_argument("--cold-runs", type=int, default=3, help="cold starts per server (3)")
    p.add_argument("--rows", default="1,100,10000", help="body sizes in rows (1,100,10000)")
    p.add_argument("--concurrency", default="1,16", help="wrk connections (1,16)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2 s per cell, 1 round, no warm-up, 1 cold start",
    )
    p.add_argument(
        "--servers",
        default="ours,peer",
        help="comma list of ours, before (ours at --before-commit), peer (mlflow models "
        "serve) (ours,peer)",
    )
    p.add_argument(
        "--before-commit",
        default="HEAD",
        help="the commit the 'before' server runs (HEAD)",
    )
    p.add_argument(
        "--before-worker",
        choices=("gthread", "as-is"),
        default="gthread",
        help="gthread: the 'before' server's flask engine runs gunicorn's gthread worker (the "
        "engine before issue #17's transport, all else equal); as-is: the commit unchanged "
        "(4d59942 is the last commit with the gthread engine)",
    )
    p.add_argument(
        "--mlserver",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add MLServer 1.7.1 as a third column (default: if bench/.venv-mlserver exists)",
    )
    p.add_argument("--ours-bin", default=str(ROOT / ".venv" / "bin" / "mldeploy"))
    p.add_argument("--peers-venv", default=str(BENCH / ".venv-peers"))
    p.add_argument("--mlserver-venv", default=str(BENCH / ".venv-mlserver"))
    p.add_argument(
        "--json",
        default=None,
        help="write results as JSON here (default bench/results/serve-<time>.json; '-' for none)",
    )
    p.add_argument("--keep-logs", action="store_true", help="keep the servers' logs")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to SECONDS for the 1-minute load average to fall below 0.6 "
        "(other work on the machine skews every number)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="after the load, profile ours with py-spy (from bench/.venv-peers or PATH) "
        "on the 1-row and 10,000-row bodies and print where its time goes",
    )
    p.add_argument("--profile-seconds", type=float, default=15.0)
    p.add_argument(
        "--from-json",
        metavar="PATH",
        help="print the tables of a saved run (bench/results/serve-*.json) and exit",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds, args.warmup, args.cold_runs = 2.0, 1, 0.0, 1
    args.rows = [int(x) for x in args.rows.split(",")]
    args.concurrency = [int(x) for x in args.concurrency.split(",")]
    args.servers = [s.strip() for s in args.servers.split(",")]
    # the servers run in a scratch directory: relative venv paths would point nowhere there
    args.peers_venv = str(Path(args.peers_venv).absolute())
    args.mlserver_venv = str(Path(args.mlserver_venv).absolute())
    args.ours_bin = str(Path(args.ours_bin).absolute())
    if args.mlserver is None:
        args.mlserver = (Path(args.mlserver_venv) / "bin" / "mlserver").exists()
    return args


def log(msg: str):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.from_json:
        res = json.loads(Path(args.from_json).read_text())
        print(report(res))
        return 0
    if shutil.which("wrk") is None:
        sys.exit(
            "wrk not found: `apt-get install -y wrk` (or run `bash bench/setup_peers.sh` as root)"
        )
    if args.wait_quiet > 0:
        deadline = time.time() + args.wait_quiet
        while os.getloadavg()[0] >= 0.6 and time.time() < deadline:
            time.sleep(5)
        log(f"load average {os.getloadavg()[0]:.2f}")
    t_start = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    servers = make_servers(args)
    res: dict = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "loadavg_start": os.getloadavg()[0],
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "servers": [{"key": s.key, "label": s.label, "version": s.version} for s in servers],
        "rows": args.rows,
        "concurrency": args.concurrency,
    }
    res["loadavg_start"] = f"{res['loadavg_start']:.2f}"
    if os.getloadavg()[0] > 0.7:
        log(
            f"warning: load average {os.getloadavg()[0]:.2f} before start: something else is "
            "using the CPUs, the numbers will be noisy"
        )

    columns = signature_columns(args.model)
    bodies = {rows: make_body(columns, rows, seed=rows) for rows in args.rows}
    body_paths = {}
    for rows, body in bodies.items():
        body_paths[rows] = workdir / f"body-{rows}.json"
        body_paths[rows].write_bytes(body)

    log("measuring the in-process floor")
    floor_budget = 2.0 if not args.quick else 0.5
    floor = measure_floor(args.model, bodies, budget_s=floor_budget)

    try:
        # cold starts, interleaved; the last instance of each stays up for the load
        res["cold_start"] = {s.key: [] for s in servers}
        for i in range(args.cold_runs):
            for s in servers:
                s.stop()
                secs = s.start(workdir, deadline_s=180)
                res["cold_start"][s.key].append(secs)
                log(f"cold start {i + 1}/{args.cold_runs} {s.label}: {secs:.2f} s")
                if i < args.cold_runs - 1:
                    s.stop()
        time.sleep(2.0)  # let the workers settle before measuring idle memory
        res["memory"] = {"before": {s.key: tree_memory(s.proc.pid) for s in servers}}

        res["agree"] = {s.key: {} for s in servers}
        for s in servers:
            for rows in args.rows:
                res["agree"][s.key][rows] = check_predictions(
                    s, bodies[rows], floor[rows]["predictions"]
                )
                if not res["agree"][s.key][rows]["ok"]:
                    log(f"{s.label}, {rows} rows: {res['agree'][s.key][rows]['why']}")

        res["cells"] = []
        per_round = args.seconds / args.rounds
        for rows in args.rows:
            for conc in args.concurrency:
                runs = {s.key: [] for s in servers}
                if args.warmup > 0:
                    for s in servers:
                        run_wrk(s, body_paths[rows], conc, args.warmup, workdir)
                for rnd in range(args.rounds):
                    order = servers if rnd % 2 == 0 else list(reversed(servers))
                    for s in order:
                        runs[s.key].append(run_wrk(s, body_paths[rows], conc, per_round, workdir))
                results = {k: merge_runs(v) for k, v in runs.items()}
                res["cells"].append(
                    {
                        "rows": rows,
                        "conc": conc,
                        "body_kb": len(bodies[rows]) / 1024,
                        "results": results,
                    }
                )
                log(
                    f"{rows} rows c={conc}: "
                    + ", ".join(
                        f"{s.label} {r['rps']:.1f} req/s p50 {r['p50_ms']:.2f} "
                        f"p99 {r['p99_ms']:.2f} ms non-200 {r['non200']} "
                        f"cpu/req {r['server_cpu_ms_per_req']:.2f} ms"
                        for s in servers
                        for r in (results[s.key],)
                    )
                )
        time.sleep(2.0)
        res["memory"]["after"] = {s.key: tree_memory(s.proc.pid) for s in servers}
        res["profiles"] = []
        ours = next((s for s in servers if s.key == "ours"), None)
        if args.profile and ours is not None:
            py_spy = find_py_spy(args)
            if py_spy is None:
                log("--profile: py-spy not found (bench/.venv-peers/bin/pip install py-spy)")
            else:
                out_dir = BENCH / "results"
                out_dir.mkdir(parents=True, exist_ok=True)
                for rows, conc in ((min(args.rows), 16), (max(args.rows), 1)):
                    log(f"profiling ours: {rows} rows, concurrency {conc}")
                    res["profiles"].append(
                        profile_ours(
                            ours,
                            py_spy,
                            body_paths[rows],
                            rows,
                            conc,
                            args.profile_seconds,
                            out_dir,
                        )
                    )
    finally:
        for s in servers:
            s.stop()
        if not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"logs kept in {workdir}")

    # the floor again, now that the servers are gone; keep the lower of the two per stage (the
    # machine may have been busier at one of the two moments)
    log("measuring the in-process floor again")
    floor2 = measure_floor(args.model, bodies, budget_s=floor_budget)
    res["floor"] = {
        str(k): {st: min(v, floor2[k][st]) for st, v in f.items() if st != "predictions"}
        for k, f in floor.items()
    }
    res["loadavg_end"] = f"{os.getloadavg()[0]:.2f}"
    res["agree"] = {k: {str(r): v for r, v in d.items()} for k, d in res["agree"].items()}
    res["targets"] = evaluate_targets(res)
    res["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    table = report(res)
    print(table)
    log(f"done in {res['wall_seconds']:.0f} s")
    if args.json != "-":
        path = (
            Path(args.json)
            if args.json
            else (BENCH / "results" / f"serve-{dt.datetime.now():%Y%m%d-%H%M%S}.json")
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        res["table_markdown"] = table
        path.write_text(json.dumps(res, indent=1, default=str))
        log(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
