"""Batch scoring I/O: memory bounded by the chunk on a file larger than the chunk budget, and
s3:// input and output against a moto server on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

import mldeploy
from mldeploy.batch import predict

MODEL = mldeploy.example_model_path()
FEATURES = [f"f{i}" for i in range(20)]

# The peak RSS of a fresh process scoring one file.
_MEASURE = textwrap.dedent("""
    import resource, sys
    from mldeploy.batch import predict

    model, src, out, chunk = sys.argv[1:5]
    result = predict(model, src, out, chunk_rows=int(chunk))
    print(result.rows_written, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
""")


def _peak_rss(src: str, out: str) -> tuple[int, int]:
    done = subprocess.run([sys.executable, "-c", _MEASURE, MODEL, src, out, "10000"],
                          capture_output=True, text=True, timeout=600, check=True)
    written, peak = map(int, done.stdout.split()[-2:])
    return written, peak


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_memory_is_bounded_by_the_chunk_not_the_file(tmp_path, fmt):
    """Scoring a file 4x larger (400,000 rows, 64 MB of float64: far over the 10,000-row chunk
    budget) must not raise the peak RSS by anything like the extra data (48 MB)."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(400_000, 20)), columns=FEATURES)
    data_bytes = int(frame.memory_usage(index=False).sum())
    small, big = str(tmp_path / f"small.{fmt}"), str(tmp_path / f"big.{fmt}")
    if fmt == "parquet":
        frame.iloc[:100_000].to_parquet(small, row_group_size=20_000)
        frame.to_parquet(big, row_group_size=20_000)
    else:
        frame.iloc[:100_000].to_csv(small, index=False)
        frame.to_csv(big, index=False)
    del frame
    written_small, peak_small = _peak_rss(small, str(tmp_path / "small-out.parquet"))
    written_big, peak_big = _peak_rss(big, str(tmp_path / "big-out.parquet"))
    assert (written_small, written_big) == (100_000, 400_000)
    # reading the whole file would add >= 48 MB; measured here: ~7 MB (Parquet), ~19 MB (CSV)
    assert peak_big - peak_small < data_bytes / 2, (peak_small, peak_big, data_bytes)


@pytest.fixture()
def s3(monkeypatch):
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("moto")
    from mldeploy.testing.aws import apply_env, emulator_env, moto_server

    with moto_server() as url:
        apply_env(monkeypatch, emulator_env(url))
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        client = boto3.client("s3", endpoint_url=url)
        client.create_bucket(Bucket="scores")
        yield client


def test_s3_glob_input_and_s3_output(s3, tmp_path):
    import mlflow.pyfunc

    rng = np.random.default_rng(2)
    frame = pd.DataFrame(rng.normal(size=(3000, 20)), columns=FEATURES)
    frame.insert(0, "id", np.arange(3000))
    frame.iloc[:1200].to_parquet(tmp_path / "a.parquet")
    frame.iloc[1200:].to_csv(tmp_path / "b.csv", index=False)
    s3.upload_file(str(tmp_path / "a.parquet"), "scores", "in/part-a.parquet")
    s3.upload_file(str(tmp_path / "b.csv"), "scores", "in/part-b.csv")
    s3.put_object(Bucket="scores", Key="in/notes.txt", Body=b"not matched by the glob")

    result = predict(MODEL, "s3://scores/in/part-*", "s3://scores/out/scores.parquet",
                     keep=["id"], chunk_rows=500)
    assert (result.files, result.rows_written) == (2, 3000)
    s3.download_file("scores", "out/scores.parquet", str(tmp_path / "got.parquet"))
    got = pd.read_parquet(tmp_path / "got.parquet")
    want = mlflow.pyfunc.load_model(MODEL, suppress_warnings=True).predict(frame[FEATURES])
    np.testing.assert_array_equal(got["prediction"].to_numpy(), want)
    np.testing.assert_array_equal(got["id"].to_numpy(), frame["id"].to_numpy())
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="scores")["Contents"]}
    assert keys == {"in/part-a.parquet", "in/part-b.csv", "in/notes.txt", "out/scores.parquet"}

    from mldeploy.errors import UsageError

    with pytest.raises(UsageError, match="exists"):
        predict(MODEL, "s3://scores/in/part-a.parquet", "s3://scores/out/scores.parquet",
                keep=["id"])
    with pytest.raises(UsageError, match="no input files"):
        predict(MODEL, "s3://scores/in/none-*", "s3://scores/out/x.parquet")
