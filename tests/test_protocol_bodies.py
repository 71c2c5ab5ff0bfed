"""Request bodies beyond the basic protocol: CPU-bomb bodies refused in linear time, CSV rows that
must match the header, no value echoed in messages (issue #17); headerless CSV, JSON Lines,
Azure ML's ``input_data``, ``Accept``, NaN literals, integer column names, malformed splits
(issue #11)."""

from __future__ import annotations

import json
import time

import orjson
import pandas as pd
import pytest

from mldeploy.container import protocol as P
from mldeploy.container.loader import load_model

JSON = "application/json"
F = [f"f{i}" for i in range(20)]


@pytest.fixture(scope="module")
def nosig(slow_model):
    return load_model(str(slow_model))  # no signature


@pytest.fixture(scope="module")
def rows(example_model):
    doc = json.loads((example_model / "serving_input_example.json").read_text())
    return doc["dataframe_split"]["data"]


def _ok(model, body, content_type=JSON, accept=None):
    body = body if isinstance(body, bytes) else orjson.dumps(body)
    reply = P.handle_invocation(body, content_type, model, accept)
    assert reply.status == 200
    return reply


def _preds(model, body, content_type=JSON):
    return orjson.loads(_ok(model, body, content_type).body)["predictions"]


def _err(model, body, content_type=JSON, accept=None):
    body = body if isinstance(body, bytes) else orjson.dumps(body)
    with pytest.raises(P.ProtocolError) as info:
        P.handle_invocation(body, content_type, model, accept)
    return info.value


def _csv(rows, header=True):
    lines = [",".join(F)] if header else []
    return ("\n".join(lines + [",".join(map(str, r)) for r in rows]) + "\n").encode()


# ---------------------------------------------------------------- #17: linear time, early refusal


def test_forty_thousand_repeated_names_are_refused_fast(clf):
    names = F * 2000  # 40,000 names
    body = orjson.dumps({"dataframe_split": {"columns": names, "data": [[0.0] * len(names)]}})
    started = time.perf_counter()
    err = _err(clf, body)
    assert time.perf_counter() - started < 2.0  # was 15 s (a quadratic duplicate count)
    assert err.error_code == "INVALID_PARAMETER_VALUE" and "duplicate column(s) 'f0'" in err.message


def test_wide_csv_header_is_refused_before_pandas(clf, nosig):
    header = ",".join(["f0"] * 50_000).encode() + b"\n" + b"1\n"
    started = time.perf_counter()
    err = _err(clf, header, "text/csv")
    assert time.perf_counter() - started < 2.0  # was 20 s in pandas' duplicate renaming
    assert "50000 fields; the model takes 20 columns" in err.message
    dup = ",".join(["f0"] * 9_000).encode() + b"\n" + b"1\n"
    err = _err(nosig, dup, "text/csv")  # no signature: duplicates refused, linear
    assert err.error_code == "INVALID_PARAMETER_VALUE" and "duplicate column(s) 'f0'" in err.message
    wide = ",".join(f"c{i}" for i in range(20_000)).encode() + b"\n"
    assert "the limit is 10000 columns" in _err(nosig, wide, "text/csv").message


@pytest.mark.parametrize("key", ["dataframe_records", "instances"])
def test_records_naming_too_many_columns_are_refused_before_pandas(clf, nosig, mixed, key):
    """5,000 one-key records with distinct keys made a 5,000 x 5,000 frame: 180 s and 3.9 GB
    without a signature, before this check (the body is 70 kB)."""
    sparse = {key: [{f"k{i}": 1} for i in range(5_000)]}
    for model in (nosig, mixed, clf):  # MLflow's path, a mixed signature, the fast path
        started = time.perf_counter()
        err = _err(model, sparse)
        assert time.perf_counter() - started < 2.0
        assert err.error_code in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE"), err.message
    assert "5000 records naming 5000 distinct columns but only 5000 values" in \
        _err(nosig, sparse).message
    wide = {key: [{f"k{i}": 0 for i in range(P.MAX_RECORD_COLUMNS + 1)}]}
    assert "names 10001 distinct columns: send at most 10000" in _err(nosig, wide).message
    # the fast path names unknown keys before any frame is built
    assert "unknown column(s) 'k0'" in _err(clf, sparse).message
    # records that share their keys, or (dataframe_records) leave out a few, are a table
    gap = key == "dataframe_records"
    dense = {key: [{"a": i, "b": i} if i % 3 or not gap else {"a": i} for i in range(20_000)]}
    assert len(_ok(nosig, dense).body) > 0


@pytest.mark.parametrize("quoted", [False, True])
def test_csv_rows_must_match_the_header(clf, rows, quoted):
    longer = _csv([[0.5] + rows[0]])
    shorter = _csv([rows[0], rows[1][:5]])
    if quoted:
        longer = longer.replace(b"f0,", b'"f0",', 1)
        shorter = shorter.replace(b"f0,", b'"f0",', 1)
    err = _err(clf, longer, "text/csv")
    assert err.status == 400 and "CSV data row 0 has 21 fields; the header has 20" in err.message
    assert "CSV data row 1 has 5 fields" in _err(clf, shorter, "text/csv").message


@pytest.mark.parametrize("literal", ["true", "FALSE", "True"])
def test_csv_booleans_in_double_columns_are_refused(clf, rows, literal):
    data = [list(rows[0])]
    data[0][3] = literal
    err = _err(clf, _csv(data), "text/csv")
    assert err.message == "column 'f3' must be double (row 0: got a boolean)"


def test_messages_never_echo_values(clf, rows, mixed):
    data = [list(rows[0])]
    data[0][3] = "ZZSECRETZZ"
    for body, ctype in [
        (orjson.dumps({"dataframe_split": {"columns": F, "data": data}}), JSON),
        (orjson.dumps({"dataframe_records": [dict(zip(F, data[0], strict=True))]}), JSON),
        (_csv(data), "text/csv"),
        (_csv(data, header=False), "text/csv"),
    ]:
        err = _err(clf, body, ctype)
        assert "ZZSECRETZZ" not in err.message
        assert err.message == "column 'f3' must be double (row 0: got a string)"
    err = _err(mixed, {"dataframe_records": [{"name": ["ZZSECRETZZ"], "count": 1, "flag": True}]})
    assert err.message == "column 'name' must be string (row 0: got a list)"


# ---------------------------------------------------------------- #11: what clients send


def test_headerless_csv_uses_the_signature_order(clf, rows):
    expected = _preds(clf, {"dataframe_split": {"columns": F, "data": rows}})
    assert _preds(clf, _csv(rows, header=False), "text/csv") == expected
    err = _err(clf, _csv([r[:19] for r in rows], header=False), "text/csv")
    assert "no header row and its first row has 19 fields; the model takes 20" in err.message


def test_jsonlines_records_and_rows(clf, rows):
    expected = _preds(clf, {"dataframe_split": {"columns": F, "data": rows}})
    records = b"\n".join(orjson.dumps(dict(zip(F, r, strict=True))) for r in rows)
    assert _preds(clf, records, "application/jsonlines") == expected
    arrays = b"\n".join(orjson.dumps(r) for r in rows) + b"\n\n"
    assert _preds(clf, arrays, "application/jsonlines") == expected
    err = _err(clf, b'{"f0": 1}\n[1]\n', "application/jsonlines")
    assert "all be objects (records) or all be arrays" in err.message
    err = _err(clf, b"[1]\n{x\n", "application/jsonlines")
    assert "JSON Lines line 1 is not valid JSON" in err.message


def test_azure_input_data(clf, rows):
    expected = _preds(clf, {"dataframe_split": {"columns": F, "data": rows}})
    split = {"input_data": {"columns": F, "index": list(range(len(rows))), "data": rows}}
    assert _preds(clf, split) == expected
    assert _preds(clf, {"input_data": rows}) == expected  # tensor form: rows in signature order
    err = _err(clf, {"input_data": rows, "extra": 1})
    assert "unknown top-level key(s) 'extra' beside 'input_data'" in err.message


def test_accept_chooses_the_answer_format(clf, rows):
    body = {"dataframe_split": {"columns": F, "data": rows}}
    expected = _preds(clf, body)
    reply = _ok(clf, body, accept="text/csv")
    assert reply.content_type == "text/csv"
    assert reply.body.decode().splitlines() == [str(p) for p in expected]
    reply = _ok(clf, body, accept="application/jsonlines")
    assert [json.loads(x) for x in reply.body.splitlines()] == expected
    for accept in (None, "*/*", "application/json", "text/csv;q=0.5, application/json"):
        assert _ok(clf, body, accept=accept).content_type == "application/json"
    assert _ok(clf, body, accept="text/html, text/csv").content_type == "text/csv"
    err = _err(clf, body, accept="application/xml")
    assert (err.status, err.error_code) == (406, "NOT_ACCEPTABLE")


def test_csv_and_jsonlines_writers_one_line_per_row(mixed):
    from mldeploy.container._formats import to_csv, to_jsonlines

    records = [{"label": "a,b", "n": 1, "x": None}, {"label": "c", "n": 2, "x": [1, 2]}]
    assert to_csv(records) == b'"a,b",1,\nc,2,"[1,2]"\n'
    assert to_jsonlines(records).splitlines()[1] == b'{"label":"c","n":2,"x":[1,2]}'
    assert to_csv({"a": [1, 2], "b": [3, 4]}) == b"1,3\n2,4\n"  # named outputs: one row each
    assert to_csv(7) == b"7\n"


def test_bare_list_hints_at_instances(clf):
    err = _err(clf, b"[[1, 2]]")
    assert err.status == 400 and 'wrap it as {"instances": [...]}' in err.message


def test_nan_and_infinity_literals_are_read(nosig):
    body = b'{"dataframe_split": {"columns": ["a", "sleep"], "data": [[NaN, 0], [Infinity, 0]]}}'
    assert _preds(nosig, body) == [2]


def test_nan_in_double_refused_by_the_model_is_400_naming_the_cell(clf, rows):
    data = [list(r) for r in rows]
    data[1][7] = None
    err = _err(clf, {"dataframe_split": {"columns": F, "data": data}})
    assert (err.status, err.error_code) == (400, "BAD_REQUEST")
    assert err.message.startswith("column 'f7' has a null at row 1 and the model does not take")
    nan_body = json.dumps({"dataframe_split": {"columns": F, "data": data}}).replace(
        "null", "NaN").encode()
    assert _err(clf, nan_body).message == err.message


def test_malformed_split_index_is_400(clf, rows):
    err = _err(clf, {"dataframe_split": {"index": [1, 2], "columns": F, "data": rows[:1] * 3}})
    assert err.status == 400 and "2 index labels for 3 rows" in err.message


def test_integer_column_names_without_a_signature(nosig):
    body = {"dataframe_split": {"columns": [0, 1], "data": [[1, 2], [3, 4]]}}
    assert _preds(nosig, body) == [2]


def test_parquet(clf, rows):
    frame = pd.DataFrame(rows, columns=F)
    body = frame.to_parquet()
    expected = _preds(clf, {"dataframe_split": {"columns": F, "data": rows}})
    assert _preds(clf, body, "application/vnd.apache.parquet") == expected
    err = _err(clf, b"not parquet", "application/vnd.apache.parquet")
    assert err.status == 400 and "not a Parquet file" in err.message
