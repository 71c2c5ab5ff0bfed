"""Batch scoring on Spark (``local[2]``, bound to 127.0.0.1, UI off): ``mldeploy.spark.predict``
and ``mldeploy predict --engine spark`` give the in-process model's predictions with integer
labels kept integers, a bad row fails the job with its place named and leaves no output."""

from __future__ import annotations

import os

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest

import mldeploy
from mldeploy.batch import BadRowError, predict

pyspark = pytest.importorskip("pyspark", reason="pip install 'mldeploy[spark]'")
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

MODEL = mldeploy.example_model_path()
FEATURES = [f"f{i}" for i in range(20)]


@pytest.fixture(scope="module")
def spark():
    from mldeploy.spark import session

    try:
        s = session("local[2]", chunk_rows=2000)
    except Exception as exc:  # no Java here
        pytest.skip(f"Spark did not start: {exc}")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(rng.normal(size=(10_000, 20)), columns=FEATURES)
    frame.insert(0, "id", np.arange(10_000, dtype=np.int64))
    want = mlflow.pyfunc.load_model(MODEL, suppress_warnings=True).predict(frame[FEATURES])
    return frame, np.asarray(want)


def test_spark_predict_equals_the_in_process_model(spark, data):
    from pyspark.sql import types as T

    from mldeploy.spark import collect_errors
    from mldeploy.spark import predict as spark_predict

    frame, want = data
    df = spark.createDataFrame(frame).repartition(3)
    scored = spark_predict(spark, MODEL, df, keep=["id"])
    assert scored.schema["prediction"].dataType == T.LongType()  # never double
    got = collect_errors(scored.toPandas).sort_values("id")
    assert list(got.columns) == ["id", "prediction"]
    np.testing.assert_array_equal(got["id"].to_numpy(), frame["id"].to_numpy())
    np.testing.assert_array_equal(got["prediction"].to_numpy(), want)


@pytest.mark.parametrize("out_fmt", ["parquet", "csv"])
def test_engine_spark_writes_the_output_atomically(spark, data, tmp_path, out_fmt, monkeypatch):
    import mldeploy.spark as ms

    frame, want = data
    src = tmp_path / "in.parquet"
    frame.to_parquet(src, row_group_size=2500)
    out = tmp_path / f"out.{out_fmt}"
    monkeypatch.setattr(ms, "session", lambda *a, **k: spark)
    monkeypatch.setattr(spark, "stop", lambda: None)
    result = predict(MODEL, str(src), str(out), keep=["id"], engine="spark")
    assert (result.rows_read, result.rows_written) == (10_000, 10_000)
    got = (pd.read_parquet(out) if out_fmt == "parquet" else
           pd.concat(pd.read_csv(out / p) for p in sorted(os.listdir(out)) if p.endswith(".csv")))
    got = got.sort_values("id")
    np.testing.assert_array_equal(got["prediction"].to_numpy(), want)
    assert got["prediction"].dtype == np.int64
    assert sorted(os.listdir(tmp_path)) == sorted(["in.parquet", out.name])


def test_a_bad_row_fails_the_job_and_leaves_no_output(spark, data, tmp_path, monkeypatch):
    import mldeploy.spark as ms

    frame, _ = data
    bad = frame.iloc[:3000].astype({"f3": object})
    bad.loc[1234, "f3"] = "abc"
    src = tmp_path / "in.csv"
    bad.to_csv(src, index=False)
    monkeypatch.setattr(ms, "session", lambda *a, **k: spark)
    monkeypatch.setattr(spark, "stop", lambda: None)
    with pytest.raises(BadRowError) as err:
        predict(MODEL, str(src), str(tmp_path / "out.parquet"), keep=["id"], engine="spark")
    assert "column 'f3' must be double (got a string)" in err.value.message
    assert str(src) in err.value.message and "Spark partition" in err.value.message
    assert sorted(os.listdir(tmp_path)) == ["in.csv"]
