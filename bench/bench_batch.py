#!/usr/bin/env python3
"""Batch scoring benchmark: `mldeploy predict` against the usual ways, in one run.

Generates N rows x 20 float64 columns (plus an int64 id) as Parquet (100k-row groups) and CSV,
scores them with the shipped model (scikit-learn logistic regression, integer labels) and
writes the labels with the id, each case in a fresh process:

* pandas:        the guides' loop: pd.read_csv(chunksize=100k) / ParquetFile.iter_batches(100k)
                 -> model.predict -> to_csv / ParquetWriter, in one process;
* mldeploy:      mldeploy.predict(..., chunk_rows=100k), --workers 1 and 2;
* mldeploy spark: mldeploy.predict(..., engine="spark") on local[2] (Parquet in, a directory of
                 Parquet parts out);
* spark_udf:     mlflow.pyfunc.spark_udf(env_manager="local", result_type="long") over
                 spark.read.parquet, on local[2], written as Parquet.

Printed per case: wall time of the scoring (after the same imports for every case; the model
load, Spark's session start and its workers' start are counted; the session start is also shown
apart), rows/s, and the peak RSS of the case's whole
process tree (JVM and Python workers included), sampled every 50 ms from /proc. Every output is
checked against the in-process model on the first 10,000 rows.

    .venv/bin/python bench/bench_batch.py                       # 200,000 rows, ~2 min
    .venv/bin/python bench/bench_batch.py --rows 1000000        # the issue's size
    .venv/bin/python bench/bench_batch.py --rows 1000000,4000000 --cases pandas,mldeploy-1
    .venv/bin/python bench/bench_batch.py --no-spark            # without pyspark

Spark binds to 127.0.0.1 with its UI off; nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
MODEL = ROOT / "src" / "mldeploy" / "examples" / "classifier"
CHUNK = 100_000
FEATURES = [f"f{i}" for i in range(20)]
SPARK_CASES = ("mldeploy-spark", "spark_udf")
ALL_CASES = ("pandas", "mldeploy-1", "mldeploy-2", *SPARK_CASES)

# --------------------------------------------------------------------------------------------
# the cases, each run as `python bench_batch.py --case NAME FMT SRC OUT` in a fresh process

_SPARK_CONF = {
    "spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
    "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.maxRecordsPerBatch": str(CHUNK),
}


def _spark_session():
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master("local[2]").appName("bench-batch")
    for k, v in _SPARK_CONF.items():
        builder = builder.config(k, v)
    return builder.getOrCreate()


def case_pandas(fmt: str, src: str, out: str) -> dict:
    import mlflow.pyfunc
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    model = mlflow.pyfunc.load_model(str(MODEL), suppress_warnings=True)
    rows = 0
    if fmt == "csv":
        first = True
        for chunk in pd.read_csv(src, chunksize=CHUNK):
            pred = model.predict(chunk[FEATURES])
            pd.DataFrame({"id": chunk["id"].to_numpy(), "prediction": pred}).to_csv(
                out, mode="w" if first else "a", header=first, index=False)
            first = False
            rows += len(chunk)
    else:
        writer = None
        for batch in pq.ParquetFile(src).iter_batches(batch_size=CHUNK):
            chunk = batch.to_pandas()
            pred = model.predict(chunk[FEATURES])
            table = pa.Table.from_pandas(pd.DataFrame({"id": chunk["id"].to_numpy(),
                                                       "prediction": pred}),
                                         preserve_index=False)
            writer = writer or pq.ParquetWriter(out, table.schema)
            writer.write_table(table)
            rows += len(chunk)
        writer.close()
    return {"rows": rows, "seconds": time.perf_counter() - t0}


def case_mldeploy(fmt: str, src: str, out: str, workers: int, engine: str = "local") -> dict:
    import mldeploy

    t0 = time.perf_counter()
    if engine == "spark":
        import mldeploy.spark as ms

        started = time.perf_counter()
        spark = ms.session("local[2]", chunk_rows=CHUNK)
        startup = time.perf_counter() - started
        result = ms.run_batch(_options(src, out, engine), str(MODEL), spark=spark)
        seconds = time.perf_counter() - t0
        t1 = time.perf_counter()  # the same job again in the same session: the steady state
        again = _again(out)
        ms.run_batch(_options(src, again, engine), str(MODEL), spark=spark)
        warm = time.perf_counter() - t1
        shutil.rmtree(again, ignore_errors=True)
        spark.stop()
        return {"rows": result.rows_written, "seconds": seconds, "startup": startup,
                "warm": warm}
    result = mldeploy.predict(str(MODEL), src, out, keep=["id"], chunk_rows=CHUNK,
                              workers=workers, progress=False)
    return {"rows": result.rows_written, "seconds": time.perf_counter() - t0}


def _again(out: str) -> str:
    """Where the second (warm) job of a Spark case writes: OUT-again.EXT."""
    stem, dot, ext = out.rpartition(".")
    return f"{stem}-again.{ext}" if dot else out + "-again"


def _options(src: str, out: str, engine: str):
    from mldeploy.batch import BatchOptions, Engine

    return BatchOptions(model_uri=str(MODEL), input=src, output=out, keep=("id",),
                        chunk_rows=CHUNK, engine=Engine(engine))


def case_spark_udf(fmt: str, src: str, out: str) -> dict:
    import mlflow.pyfunc

    t0 = time.perf_counter()
    spark = _spark_session()
    startup = time.perf_counter() - t0
    udf = mlflow.pyfunc.spark_udf(spark, str(MODEL), result_type="long", env_manager="local")
    df = spark.read.parquet(src) if fmt == "parquet" else spark.read.option(
        "header", True).option("inferSchema", True).csv(src)
    scored = df.select("id", udf(*FEATURES).alias("prediction"))
    scored.write.parquet(out)
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()  # the same job again in the same session: the steady state
    udf = mlflow.pyfunc.spark_udf(spark, str(MODEL), result_type="long", env_manager="local")
    again = _again(out)
    df.select("id", udf(*FEATURES).alias("prediction")).write.parquet(again)
    warm = time.perf_counter() - t1
    shutil.rmtree(again, ignore_errors=True)
    rows = spark.read.parquet(out).count()
    spark.stop()
    return {"rows": rows, "seconds": seconds, "startup": startup, "warm": warm}


def _warm() -> None:
    """The imports every case needs, before its clock starts (the same for all)."""
    import mlflow.pyfunc  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.csv  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import sklearn.linear_model  # noqa: F401

    import mldeploy.batch.local  # noqa: F401


def run_case(name: str, fmt: str, src: str, out: str) -> dict:
    _warm()
    if name == "pandas":
        return case_pandas(fmt, src, out)
    if name == "mldeploy-1":
        return case_mldeploy(fmt, src, out, 1)
    if name == "mldeploy-2":
        return case_mldeploy(fmt, src, out, 2)
    if name == "mldeploy-spark":
        return case_mldeploy(fmt, src, out, 1, engine="spark")
    if name == "spark_udf":
        return case_spark_udf(fmt, src, out)
    raise SystemExit(f"unknown case {name}")


# --------------------------------------------------------------------------------------------
# the driver


def generate(rows: int, workdir: Path) -> dict[str, str]:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = {"parquet": str(workdir / f"in-{rows}.parquet"), "csv": str(workdir / f"in-{rows}.csv")}
    writer = None
    rng = np.random.default_rng(0)
    first = True
    for start in range(0, rows, CHUNK):
        n = min(CHUNK, rows - start)
        frame = pd.DataFrame(rng.normal(size=(n, 20)), columns=FEATURES)
        frame.insert(0, "id", np.arange(start, start + n, dtype=np.int64))
        table = pa.Table.from_pandas(frame, preserve_index=False)
        writer = writer or pq.ParquetWriter(paths["parquet"], table.schema)
        writer.write_table(table, row_group_size=CHUNK)
        frame.to_csv(paths["csv"], mode="w" if first else "a", header=first, index=False,
                     float_format="%.17g")
        first = False
    writer.close()
    return paths


def _tree_rss(pid: int) -> int:
    """RSS in bytes of ``pid`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2:].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack.extend(children.get(p, []))
    return total


def measure(name: str, fmt: str, src: str, out: str) -> dict:
    proc = subprocess.Popen([sys.executable, __file__, "--case", name, fmt, src, out],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(proc.pid))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    done.set()
    sampler.join()
    if proc.returncode != 0:
        tail = " / ".join(stderr.strip().splitlines()[-3:])
        return {"error": tail[:300]}
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss"] = peak
    return result


def check(out: str, result: dict) -> bool:
    import mlflow.pyfunc
    import numpy as np
    import pandas as pd

    path = Path(out)
    if path.is_dir():
        parts = sorted(p for p in path.iterdir() if p.suffix in (".parquet", ".csv")
                       and not p.name.startswith(("_", ".")))
        got = pd.concat(pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
                        for p in parts)
    elif out.endswith(".csv"):
        got = pd.read_csv(out)
    else:
        got = pd.read_parquet(out)
    got = got.sort_values("id").head(10_000)
    src = result.get("_src")
    frame = pd.read_parquet(src).head(10_000) if src else None
    if frame is None:
        return False
    want = mlflow.pyfunc.load_model(str(MODEL), suppress_warnings=True).predict(frame[FEATURES])
    return bool(np.array_equal(got["id"].to_numpy(), frame["id"].to_numpy())
                and np.array_equal(got["prediction"].to_numpy(), np.asarray(want))
                and got["prediction"].dtype.kind == "i")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--case":
        name, fmt, src, out = sys.argv[2:6]
        print(json.dumps(run_case(name, fmt, src, out)))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="200000",
                    help="comma-separated sizes (default 200000; the issue's: 1000000)")
    ap.add_argument("--formats", default="parquet,csv")
    ap.add_argument("--cases", default=",".join(ALL_CASES))
    ap.add_argument("--no-spark", action="store_true", help="leave out the Spark cases")
    ap.add_argument("--workdir", default=None, help="where the data goes (default: a temp dir)")
    args = ap.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    try:
        import pyspark  # noqa: F401
    except ImportError:
        args.no_spark = True
    if args.no_spark:
        cases = [c for c in cases if c not in SPARK_CASES]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-batch-"))
    workdir.mkdir(parents=True, exist_ok=True)
    load = open("/proc/loadavg").read().split()[:3]
    print(f"# bench_batch {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {' '.join(load)} at start; chunk {CHUNK:,} rows\n")
    print("| rows | format | case | seconds | rows/s | vs pandas | peak RSS MB | Spark start s "
          "| warm 2nd job s (rows/s) | correct |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    try:
        for rows in [int(r) for r in args.rows.split(",")]:
            data = generate(rows, workdir)
            for fmt in args.formats.split(","):
                base = None
                for name in cases:
                    if name in SPARK_CASES and fmt != "parquet":
                        continue  # Spark reads CSV with a schema-inference pass: Parquet only
                    out = str(workdir / f"out-{name}-{rows}.{fmt}")
                    if os.path.isdir(out):
                        shutil.rmtree(out)
                    elif os.path.exists(out):
                        os.unlink(out)
                    r = measure(name, fmt, data[fmt], out)
                    if "error" in r:
                        print(f"| {rows:,} | {fmt} | {name} | failed: {r['error']} ||||||||")
                        continue
                    r["_src"] = data["parquet"]
                    r["correct"] = check(out, r)
                    rate = r["rows"] / r["seconds"]
                    if name == "pandas":
                        base = rate
                    rel = f"{rate / base:.2f}x" if base else "-"
                    start = f"{r['startup']:.1f}" if "startup" in r else "-"
                    warm = (f"{r['warm']:.2f} ({r['rows'] / r['warm']:,.0f})" if "warm" in r
                            else "-")
                    print(f"| {rows:,} | {fmt} | {name} | {r['seconds']:.2f} | {rate:,.0f} | "
                          f"{rel} | {r['peak_rss'] / 1e6:,.0f} | {start} | {warm} | "
                          f"{'yes' if r['correct'] else 'NO'} |", flush=True)
                    if os.path.isdir(out):
                        shutil.rmtree(out)
                    elif os.path.exists(out):
                        os.unlink(out)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nload average {' '.join(open('/proc/loadavg').read().split()[:3])} at end")


if __name__ == "__main__":
    main()
