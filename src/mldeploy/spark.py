"""Batch scoring on Spark: the same scoring as ``mldeploy predict`` (the serving runtime's
signature enforcement and predict, output typed from the signature) as a ``mapInPandas`` over a
Spark DataFrame.

    from mldeploy.spark import predict
    scores = predict(spark, "models:/churn@prod", spark.read.parquet("s3a://b/in/"), keep=["id"])

The model is resolved once on the driver and shipped to the executors as a zip archive
(``SparkContext.addArchive``): no environment is built and no executor needs the network or the
model registry. Each Python worker loads the model once and scores its Arrow batches with it. The
executors' Python must have ``mldeploy`` and the model's libraries installed (as for any pyspark
job); ``local[*]`` uses the driver's interpreter. Extra ``mldeploy[spark]``.

``mldeploy predict --engine spark`` (:func:`run_batch`) reads the input with Spark, writes OUTPUT
as a directory of part files (as Spark writes) into a temporary directory next to it and renames
it into place only when the job succeeded.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from .errors import TargetError, UsageError

_MARK = "MLDEPLOY_BAD_ROW:"  # a bad row's JSON, carried through Spark's exception text
_ARCHIVE = "mldeploy-model"

# the model each Python worker loaded, by archive name
_WORKER_SCORERS: dict[str, Any] = {}


# --------------------------------------------------------------------------------------------
# the public API for users inside a Spark job


def predict(spark: Any, model_uri: str, df: Any, *, keep: Sequence[str] = (),
            source: str = "input") -> Any:
    """``df`` scored by the model at ``model_uri``: a Spark DataFrame of the ``keep`` columns
    followed by the prediction columns (their Spark types from the model's output signature).
    Lazy, as every Spark transformation; a bad row fails the job with
    :class:`~mldeploy.batch.BadRowError` when an action of :func:`collect_errors` runs it, or
    with Spark's own error otherwise. ``source`` names the input in messages."""
    from .model_uri import materialize

    keep = (keep,) if isinstance(keep, str) else tuple(keep)
    with materialize(model_uri) as local:
        archive = _ship(spark, str(local))
        schema = _output_schema(spark, str(local), df, keep)
    return _score(df, archive, schema, keep, source)


def collect_errors(action: Any) -> Any:
    """Run ``action()`` (a Spark action: ``write``, ``count``, ``collect``) and turn a bad row
    the job failed on into :class:`~mldeploy.batch.BadRowError` (or ``RowModelError``) naming
    where it is; other Spark failures become one-line :class:`~mldeploy.errors.TargetError`."""
    try:
        return action()
    except Exception as exc:  # py4j / pyspark errors: find our marker in the text
        row = _bad_row_in(str(exc))
        if row is not None:
            from .batch.errors import row_error

            raise row_error(row) from None
        if type(exc).__module__.startswith(("pyspark", "py4j")):
            first = next((line for line in str(exc).splitlines() if line.strip()), "")
            raise TargetError(f"the Spark job failed: {first[:300]}",
                              hint="see the Spark driver log for the whole error") from None
        raise


# --------------------------------------------------------------------------------------------
# mldeploy predict --engine spark


def session(master: str | None = None, *, chunk_rows: int = 10_000) -> Any:
    """A SparkSession for ``master`` (default ``local[*]``). A local master binds to 127.0.0.1
    with the UI off; the executors' Python is this interpreter unless PYSPARK_PYTHON says."""
    import sys

    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise UsageError("--engine spark needs pyspark",
                         hint="pip install 'mldeploy[spark]' (Java 17 or later)") from None
    master = master or "local[*]"
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.master(master).appName("mldeploy-predict")
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = (builder.config("spark.driver.host", "127.0.0.1")
                   .config("spark.driver.bindAddress", "127.0.0.1"))
    builder = (builder.config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(chunk_rows))
               .config("spark.sql.execution.arrow.pyspark.enabled", "true"))
    try:
        return builder.getOrCreate()
    except Exception as exc:  # no Java, a bad master URL
        raise TargetError(f"could not start Spark on {master}: {str(exc).splitlines()[0][:300]}",
                          hint="check --master and that Java 17+ is installed") from None


def run_batch(options: Any, model_dir: str, spark: Any = None) -> Any:
    """Run a :class:`~mldeploy.batch.BatchOptions` with ``--engine spark`` (``model_dir``: the
    materialized model). ``spark``: a session to use (else one for ``options.master``)."""
    import time

    from .batch.options import Format
    from .batch.result import BatchResult
    from .batch.sources import discover

    fmt = options.resolved_output_format
    started = time.monotonic()
    files = discover(options.input, options.input_format)
    local = [f for f in files if _is_local(f.fs)]
    if len(local) != len(files):
        raise UsageError("--engine spark reads local paths (or what the cluster mounts)",
                         hint="use --engine local for s3:// (or read it in your own Spark job "
                              "and call mldeploy.spark.predict)")
    target = os.path.abspath(options.output.rstrip("/"))
    if os.path.exists(target) and not options.overwrite:
        raise UsageError(f"output {options.output!r} exists", hint="pass --overwrite to replace it")
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise UsageError(f"the output's directory {parent!r} does not exist")
    own = spark is None
    spark = spark or session(options.master, chunk_rows=options.chunk_rows)
    temp = os.path.join(parent, f".{os.path.basename(target)}.mldeploy-{uuid.uuid4().hex[:12]}.tmp")
    try:
        counter = spark.sparkContext.accumulator(0)
        by_format: dict[Format, list[str]] = {}
        for f in files:
            by_format.setdefault(f.format, []).append(f.path)
        frames = [_read(spark, f, paths) for f, paths in by_format.items()]
        df = frames[0]
        for other in frames[1:]:
            df = df.unionByName(other, allowMissingColumns=True)
        missing = [c for c in options.keep if c not in df.columns]
        if missing:
            raise UsageError(f"the input has no column(s) {', '.join(map(repr, missing))} "
                             "to --keep")
        archive = _ship(spark, model_dir)
        schema = _output_schema(spark, model_dir, df, options.keep)
        scored = _score(df, archive, schema, options.keep, options.input, counter)
        writer = scored.write.mode("error")
        if fmt is Format.CSV:
            collect_errors(lambda: writer.option("header", True).csv(temp))
        elif fmt is Format.JSONL:
            collect_errors(lambda: writer.json(temp))
        else:
            collect_errors(lambda: writer.parquet(temp))
        rows = int(counter.value)
        if rows == 0:
            raise UsageError(f"the input {options.input!r} has no rows")
        _replace(temp, target)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
        if own:
            spark.stop()
    return BatchResult(
        output=options.output, format=fmt, files=len(files), rows_read=rows, rows_written=rows,
        rows_skipped=0, skipped_output=None, seconds=time.monotonic() - started,
        engine=options.engine,
    )


# --------------------------------------------------------------------------------------------
# internals


def _is_local(fs: Any) -> bool:
    import pyarrow.fs as pafs

    return isinstance(fs, pafs.LocalFileSystem)


def _read(spark: Any, fmt: Any, paths: list[str]) -> Any:
    from .batch.options import Format

    reader = spark.read
    if fmt is Format.PARQUET:
        return reader.parquet(*paths)
    if fmt is Format.CSV:
        return reader.option("header", True).option("inferSchema", True).csv(paths)
    return reader.json(paths)


def _replace(temp: str, target: str) -> None:
    """``temp`` (a finished directory) in place of ``target``; an old ``target`` is removed
    only after the new one is in place."""
    old = None
    if os.path.lexists(target):
        old = f"{target}.mldeploy-old-{uuid.uuid4().hex[:8]}"
        os.rename(target, old)
    os.rename(temp, target)
    if old is not None:
        if os.path.isdir(old) and not os.path.islink(old):
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.unlink(old)


def _ship(spark: Any, model_dir: str) -> str:
    """Zip ``model_dir`` and add it to the Spark context; returns the archive's name (the
    directory name on each executor)."""
    work = tempfile.mkdtemp(prefix="mldeploy-spark-")
    atexit.register(shutil.rmtree, work, True)
    name = f"{_ARCHIVE}-{uuid.uuid4().hex[:12]}"
    path = shutil.make_archive(os.path.join(work, name), "zip", model_dir)
    spark.sparkContext.addArchive(path)
    return os.path.basename(path)


def _output_schema(spark: Any, model_dir: str, df: Any, keep: Sequence[str]) -> Any:
    """The result's Spark schema: the kept columns as they are, then the prediction columns
    typed from the output signature (from a first scored row when the model has none)."""
    from mlflow.models import Model
    from pyspark.sql import types as T

    from mldeploy.container.loader import load_model

    from .batch.outputs import OutputSpec

    fields = [df.schema[c] for c in keep]
    # the MLmodel file only: the model itself is loaded by the executors' Python workers
    spec = OutputSpec.from_metadata(Model.load(os.path.join(model_dir, "MLmodel")))
    if spec.columns is not None and all(c.dtype is not None for c in spec.columns):
        fields += [T.StructField(c.name, _spark_type(c.dtype), True) for c in spec.columns]
        return T.StructType(fields)
    # no (typed) output signature: score one row on the driver to see the answer's types
    import numpy as np

    from .batch.scoring import Scorer

    scorer = Scorer(load_model(model_dir))
    inputs = [c for c in df.columns if c not in keep]
    sample = df.select(*inputs).limit(1).toPandas()
    if sample.empty:
        raise UsageError("the input has no rows")
    scored = scorer.score(sample, np.arange(1, 2), "the first row", skip=False)
    table = _arrow(scored.predictions)
    from pyspark.sql.pandas.types import from_arrow_schema

    return T.StructType(fields + list(from_arrow_schema(table.schema).fields))


def _arrow(frame: Any) -> Any:
    import pyarrow as pa

    return pa.Table.from_pandas(frame, preserve_index=False)


def _spark_type(dtype: Any) -> Any:
    from pyspark.sql import types as T

    kind, size = dtype.kind, dtype.itemsize
    if kind == "b":
        return T.BooleanType()
    if kind in "iu":
        return {1: T.ByteType(), 2: T.ShortType(), 4: T.IntegerType()}.get(size, T.LongType())
    if kind == "f":
        return T.FloatType() if size == 4 else T.DoubleType()
    if kind == "M":
        return T.TimestampType()
    return T.StringType()


def _score(df: Any, archive: str, schema: Any, keep: Sequence[str], source: str,
           counter: Any = None) -> Any:
    keep = tuple(keep)
    inputs = [c for c in df.columns if c not in keep]
    names = [f.name for f in schema.fields]
    columns = df.select(*keep, *inputs) if keep else df.select(*inputs)

    def score(batches: Iterator[Any]) -> Iterator[Any]:
        return _score_partition(batches, archive, keep, inputs, names, source, counter)

    return columns.mapInPandas(score, schema)


def _worker_scorer(archive: str) -> Any:
    scorer = _WORKER_SCORERS.get(archive)
    if scorer is None:
        from pyspark import SparkFiles

        from mldeploy.container.loader import load_model

        from .batch.scoring import Scorer

        scorer = Scorer(load_model(SparkFiles.get(archive)))
        _WORKER_SCORERS[archive] = scorer
    return scorer


def _score_partition(batches: Iterator[Any], archive: str, keep: tuple[str, ...],
                     inputs: list[str], names: list[str], source: str,
                     counter: Any) -> Iterator[Any]:
    """Runs on the executors: one model a worker, each Arrow batch scored as a chunk."""
    import numpy as np
    import pandas as pd
    from pyspark import TaskContext

    from .batch.scoring import RowError

    scorer = _worker_scorer(archive)
    context = TaskContext.get()
    where = f"{source} (Spark partition {context.partitionId() if context else 0})"
    offset = 0
    for batch in batches:
        n = len(batch)
        rows = np.arange(offset + 1, offset + n + 1)
        offset += n
        frame = _numbers_from_text(batch[inputs], scorer)
        try:
            scored = scorer.score(frame, rows, where, skip=False)
        except RowError as exc:
            raise ValueError(_MARK + json.dumps(exc.row.record(), default=str)) from None
        out = scored.predictions if scored.predictions is not None else pd.DataFrame(
            {c: [] for c in names[len(keep):]})
        if keep:
            out = pd.concat([batch[list(keep)].reset_index(drop=True),
                             out.reset_index(drop=True)], axis=1)
        if counter is not None:
            counter.add(n)
        yield out[names]


def _numbers_from_text(frame: Any, scorer: Any) -> Any:
    """Text columns (a CSV column Spark could not infer as numbers) the signature says are
    numeric: numbers where the text is one, the text left as it is where not, so the
    signature check names the row and the value (as the local engine reads CSV)."""
    columns = scorer.model.columns
    if columns is None:
        return frame
    types = {c.name: c.type for c in columns}
    text = [c for c in frame.columns if frame[c].dtype == object and types.get(c) in (
        "double", "float", "long", "integer", "boolean")]
    if not text:
        return frame
    import pyarrow as pa

    from .batch.sources import ReadSpec, _typed_frame

    spec = ReadSpec({c: types[c] for c in text}, (), max(len(frame), 1), None)
    table = pa.table({c: pa.array([None if v is None or v != v else str(v) for v in frame[c]],
                                  pa.string()) for c in text})
    converted = _typed_frame(table, spec)
    frame = frame.copy()
    for c in text:
        frame[c] = converted[c].to_numpy()
    return frame


def _bad_row_in(text: str) -> Any:
    at = text.find(_MARK)
    if at < 0:
        return None
    decoder = json.JSONDecoder()
    try:
        record, _ = decoder.raw_decode(text[at + len(_MARK):])
    except ValueError:
        return None
    from .batch.sources import BadRow

    return BadRow(record["file"], int(record["row"]), record["error_code"], record["message"],
                  record.get("values"))


__all__ = ["collect_errors", "predict", "run_batch", "session"]
