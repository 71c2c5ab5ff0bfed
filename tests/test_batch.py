"""Batch scoring (``mldeploy predict``, local engine): predictions, bad rows, atomic output."""

from __future__ import annotations

import json
import os

import mlflow.pyfunc
import numpy as np
import orjson
import pandas as pd
import pyarrow.parquet as pq
import pytest

import mldeploy
from mldeploy.batch import BadRowError, predict
from mldeploy.errors import UsageError

MODEL = mldeploy.example_model_path()
FEATURES = [f"f{i}" for i in range(20)]


def _frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 20)), columns=FEATURES)
    frame.insert(0, "id", np.arange(1000, 1000 + rows, dtype=np.int64))
    return frame


def _write(frame: pd.DataFrame, path: str) -> str:
    if path.endswith(".parquet"):
        frame.to_parquet(path, row_group_size=700)
    elif path.endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        with open(path, "wb") as f:
            for record in frame.to_dict(orient="records"):
                f.write(orjson.dumps(record) + b"\n")
    return path


def _read(path: str) -> pd.DataFrame:
    if path.endswith(".parquet"):
        return pd.read_parquet(path)
    if path.endswith(".csv"):
        return pd.read_csv(path)
    return pd.read_json(path, lines=True)


@pytest.fixture(scope="module")
def expected() -> tuple[pd.DataFrame, np.ndarray]:
    frame = _frame(2500)
    model = mlflow.pyfunc.load_model(MODEL, suppress_warnings=True)
    return frame, np.asarray(model.predict(frame[FEATURES]))


@pytest.mark.parametrize("out_fmt", ["parquet", "csv", "jsonl"])
@pytest.mark.parametrize("in_fmt", ["parquet", "csv", "jsonl"])
def test_predictions_equal_the_in_process_model(tmp_path, expected, in_fmt, out_fmt):
    frame, want = expected
    src = _write(frame, str(tmp_path / f"in.{in_fmt}"))
    out = str(tmp_path / f"out.{out_fmt}")
    result = predict(MODEL, src, out, keep=["id"], chunk_rows=600)
    got = _read(out)
    assert list(got.columns) == ["id", "prediction"]
    np.testing.assert_array_equal(got["prediction"].to_numpy(), want)
    np.testing.assert_array_equal(got["id"].to_numpy(), frame["id"].to_numpy())
    assert (result.rows_read, result.rows_written, result.rows_skipped) == (2500, 2500, 0)
    assert result.skipped_output is None
    # integer class labels stay integers (the signature's int64), never 1.0
    assert got["prediction"].dtype == np.int64
    if out_fmt == "parquet":
        assert str(pq.read_schema(out).field("prediction").type) == "int64"
    if out_fmt == "csv":
        assert open(out).read().splitlines()[1].split(",")[1] in ("0", "1")
    assert sorted(os.listdir(tmp_path)) == sorted([f"in.{in_fmt}", f"out.{out_fmt}"])


def test_directory_and_glob_inputs_in_file_order(tmp_path, expected):
    frame, want = expected
    data = tmp_path / "data"
    data.mkdir()
    _write(frame.iloc[:1000], str(data / "a.parquet"))
    _write(frame.iloc[1000:], str(data / "b.csv"))
    (data / "_SUCCESS").write_text("")
    for given in (str(data), str(data / "*.*")):
        out = str(tmp_path / "out.parquet")
        result = predict(MODEL, given, out, keep=["id"], overwrite=True)
        assert result.files == 2
        got = _read(out)
        np.testing.assert_array_equal(got["prediction"].to_numpy(), want)
        np.testing.assert_array_equal(got["id"].to_numpy(), frame["id"].to_numpy())


def _bad_csv(tmp_path, frame: pd.DataFrame) -> str:
    path = _write(frame, str(tmp_path / "in.csv"))
    lines = open(path).read().splitlines()
    cells = lines[1500].split(",")  # data row 1500 (the header is line 0)
    cells[4] = "abc"  # f3
    lines[1500] = ",".join(cells)
    lines[2100] = ",".join(lines[2100].split(",")[:-2])  # two fields short
    open(path, "w").write("\n".join(lines) + "\n")
    return path


def test_failure_mid_file_leaves_no_output_and_names_file_and_row(tmp_path, expected):
    frame, _ = expected
    src = _bad_csv(tmp_path, frame)
    out = tmp_path / "out.parquet"
    with pytest.raises(BadRowError) as err:
        predict(MODEL, src, str(out), keep=["id"], chunk_rows=500)  # rows 1..1499 scored first
    assert err.value.message == f"{src} row 1500: column 'f3' must be double (got a string)"
    assert "--on-error skip" in err.value.hint
    assert sorted(os.listdir(tmp_path)) == ["in.csv"]  # no output, no temporary file


def test_failed_replace_keeps_the_old_output(tmp_path, expected):
    frame, _ = expected
    src = _bad_csv(tmp_path, frame)
    out = tmp_path / "out.csv"
    out.write_text("old\n")
    with pytest.raises(UsageError, match="exists"):
        predict(MODEL, str(tmp_path / "in.csv"), str(out), keep=["id"])
    with pytest.raises(BadRowError):
        predict(MODEL, src, str(out), keep=["id"], overwrite=True)
    assert out.read_text() == "old\n"


def test_skip_writes_bad_rows_to_the_side_file(tmp_path, expected):
    frame, want = expected
    src = _bad_csv(tmp_path, frame)
    out = str(tmp_path / "out.parquet")
    result = predict(MODEL, src, out, keep=["id"], chunk_rows=400, on_error="skip")
    assert (result.rows_read, result.rows_written, result.rows_skipped) == (2500, 2498, 2)
    assert result.skipped_output == out + ".skipped.jsonl"
    side = [json.loads(line) for line in open(result.skipped_output)]
    assert [(s["file"], s["row"], s["error_code"]) for s in side] == [
        (src, 1500, "BAD_REQUEST"), (src, 2100, "BAD_REQUEST")]
    assert side[0]["message"] == "column 'f3' must be double (got a string)"
    assert side[0]["values"]["f3"] == "abc" and side[0]["kept"] == {"id": 1000 + 1499}
    assert "fields" in side[1]["message"]
    got = _read(out)
    keep = np.ones(2500, dtype=bool)
    keep[[1499, 2099]] = False
    np.testing.assert_array_equal(got["id"].to_numpy(), frame["id"].to_numpy()[keep])
    np.testing.assert_array_equal(got["prediction"].to_numpy(), want[keep])


def test_jsonl_bad_lines_name_their_line(tmp_path, expected):
    frame, _ = expected
    path = _write(frame.iloc[:50], str(tmp_path / "in.jsonl"))
    lines = open(path).read().splitlines()
    lines[9] = "{not json"
    record = json.loads(lines[19])
    record["f7"] = True  # a boolean in a double column: a type error, as for /invocations
    lines[19] = json.dumps(record)
    record = json.loads(lines[29])
    record["extra"] = 1
    lines[29] = json.dumps(record)
    open(path, "w").write("\n".join(lines) + "\n")
    with pytest.raises(BadRowError, match=r"in\.jsonl row 10: the line is not valid JSON"):
        predict(MODEL, path, str(tmp_path / "out.csv"), keep=["id"])
    result = predict(MODEL, path, str(tmp_path / "out.csv"), keep=["id"], on_error="skip",
                     chunk_rows=7)
    side = [json.loads(line) for line in open(result.skipped_output)]
    assert [s["row"] for s in side] == [10, 20, 30]
    assert side[1]["message"] == "column 'f7' must be double (got a boolean)"
    assert "unknown column(s) 'extra'" in side[2]["message"]
    assert result.rows_written == 47


def test_unknown_and_missing_columns_are_named_before_scoring(tmp_path, expected):
    frame, _ = expected
    src = _write(frame.drop(columns="f5"), str(tmp_path / "in.parquet"))
    with pytest.raises(UsageError, match=r"in\.parquet: unknown column\(s\) 'id'") as err:
        predict(MODEL, src, str(tmp_path / "o.parquet"))
    assert "--keep" in err.value.hint
    with pytest.raises(UsageError, match=r"missing column\(s\) 'f5'"):
        predict(MODEL, src, str(tmp_path / "o.parquet"), keep=["id"])
    with pytest.raises(UsageError, match="no column"):
        predict(MODEL, src, str(tmp_path / "o.parquet"), keep=["id", "nope"])
    with pytest.raises(UsageError, match="output format"):
        predict(MODEL, src, str(tmp_path / "o.txt"), keep=["id"])
    assert sorted(os.listdir(tmp_path)) == ["in.parquet"]


@pytest.mark.parametrize("bad", ["value", "fields"])
def test_csv_bad_row_after_chunks_already_scored_the_fast_way(tmp_path, expected, monkeypatch,
                                                               bad):
    """Small read blocks: the fast (numbers, threads) read gives chunks before it meets the bad
    row; the careful re-read skips those chunks and names the row."""
    import mldeploy.batch.sources as sources

    monkeypatch.setattr(sources, "CSV_BLOCK_BYTES", 16 << 10)
    frame, want = expected
    src = _bad_csv(tmp_path, frame)
    lines = open(src).read().splitlines()
    fixed = _write(frame.iloc[[1499]], str(tmp_path / "row.csv"))
    if bad == "fields":  # only the short row 2100 stays bad
        lines[1500] = open(fixed).read().splitlines()[1]
    open(src, "w").write("\n".join(lines) + "\n")
    out = str(tmp_path / "out.parquet")
    result = predict(MODEL, src, out, keep=["id"], chunk_rows=300, on_error="skip")
    skipped = [1499, 2099] if bad == "value" else [2099]
    assert result.rows_skipped == len(skipped)
    side = [json.loads(line) for line in open(result.skipped_output)]
    assert [s["row"] for s in side] == [r + 1 for r in skipped]
    keep = np.ones(2500, dtype=bool)
    keep[skipped] = False
    got = _read(out)
    np.testing.assert_array_equal(got["id"].to_numpy(), frame["id"].to_numpy()[keep])
    np.testing.assert_array_equal(got["prediction"].to_numpy(), want[keep])


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_two_workers_give_the_same_output(tmp_path, expected, monkeypatch, start):
    import mldeploy.batch.local as local

    if start == "spawn":  # a model whose flavor is not known to be fork-safe
        monkeypatch.setattr(local, "fork_safe", lambda _: False)
    frame, want = expected
    src = _write(frame, str(tmp_path / "in.parquet"))
    out = str(tmp_path / "out.parquet")
    result = predict(MODEL, src, out, keep=["id"], chunk_rows=300, workers=2)
    assert result.workers == 2
    got = _read(out)
    np.testing.assert_array_equal(got["prediction"].to_numpy(), want)
    np.testing.assert_array_equal(got["id"].to_numpy(), frame["id"].to_numpy())


def test_cli_summary_and_one_line_errors(tmp_path, expected, capsys):
    from mldeploy.cli import main

    frame, _ = expected
    src = _write(frame.iloc[:100], str(tmp_path / "in.csv"))
    out = str(tmp_path / "out.jsonl")
    main(["predict", "-m", MODEL, "-i", src, "-o", out, "--keep", "id"])  # returns: exit 0
    assert capsys.readouterr().out.startswith("scored 100 of 100 rows from 1 file")
    with pytest.raises(SystemExit) as code:
        main(["predict", "-m", MODEL, "-i", src, "-o", out, "--keep", "id"])
    assert code.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists" in err[0] and "--overwrite" in err[0]


def test_progress_bar_on_a_terminal_and_none_otherwise(tmp_path, expected, capsys):
    """``progress=True`` (a terminal): a bar with rows, rows/s and ETA on stderr (rich, extra
    ``mldeploy[batch]``); the default on a non-terminal: nothing but the summary line."""
    pytest.importorskip("rich")
    frame, _ = expected
    src = _write(frame, str(tmp_path / "in.parquet"))
    predict(MODEL, src, str(tmp_path / "a.csv"), keep=["id"], chunk_rows=500, progress=True)
    bar = capsys.readouterr().err
    assert "2500/2500" in bar and "rows/s" in bar and "ETA" in bar
    predict(MODEL, src, str(tmp_path / "b.csv"), keep=["id"], chunk_rows=500)
    assert capsys.readouterr().err == ""  # pytest's stderr is not a terminal
