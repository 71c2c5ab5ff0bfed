"""The scoring protocol as plain functions: every input format, CSV, params, signature
enforcement and every error case, against real MLflow models."""

from __future__ import annotations

import json
import warnings

import numpy as np
import orjson
import pandas as pd
import pytest

from mldeploy.container import protocol as P
from mldeploy.container.runtime import warm_up

JSON = "application/json"


@pytest.fixture(scope="module")
def frame(example_model):
    doc = json.loads((example_model / "serving_input_example.json").read_text())
    split = doc["dataframe_split"]
    return pd.DataFrame(split["data"], columns=split["columns"])


def _expected(clf, frame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return clf.pyfunc.predict(frame).tolist()


def _call(model, doc, content_type=JSON):
    body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    reply = P.handle_invocation(body, content_type, model)
    assert reply.status == 200
    return orjson.loads(reply.body)["predictions"]


def _error(model, body, content_type=JSON):
    if not isinstance(body, bytes):
        body = orjson.dumps(body)
    with pytest.raises(P.ProtocolError) as info:
        P.handle_invocation(body, content_type, model)
    return info.value


# ---------------------------------------------------------------- every input format


def test_dataframe_split_matches_in_process_predictions(clf, frame):
    doc = {"dataframe_split": frame.to_dict(orient="split")}
    assert _call(clf, doc) == _expected(clf, frame)


def test_dataframe_split_without_index_and_reordered_columns(clf, frame):
    reordered = frame[list(reversed(frame.columns))]
    split = {"columns": list(reordered.columns), "data": reordered.values.tolist()}
    doc = {"dataframe_split": split}
    assert _call(clf, doc) == _expected(clf, frame)


def test_dataframe_records(clf, frame):
    doc = {"dataframe_records": frame.to_dict(orient="records")}
    assert _call(clf, doc) == _expected(clf, frame)


def test_instances_as_records_and_inputs_as_columns(clf, frame):
    assert _call(clf, {"instances": frame.to_dict(orient="records")}) == _expected(clf, frame)
    assert _call(clf, {"inputs": frame.to_dict(orient="list")}) == _expected(clf, frame)


def test_integers_in_double_columns_are_accepted(clf, frame):
    ints = frame.round().astype(int)
    doc = {"dataframe_split": {"columns": list(ints.columns), "data": ints.values.tolist()}}
    assert _call(clf, doc) == _expected(clf, ints.astype(float))


def test_csv(clf, frame):
    body = frame.to_csv(index=False).encode()
    assert _call(clf, body, "text/csv") == _expected(clf, frame)
    assert _call(clf, body, "text/csv; charset=UTF-8") == _expected(clf, frame)


def test_ten_thousand_rows_fast_path_equals_general_path(clf):
    rng = np.random.default_rng(1)
    data = rng.normal(size=(10_000, 20))
    cols = list(clf.column_names)
    fast = _call(clf, {"dataframe_split": {"columns": cols, "data": data.tolist()}})
    records = _call(clf, {"dataframe_records": pd.DataFrame(data, columns=cols).to_dict("records")})
    assert fast == records == _expected(clf, pd.DataFrame(data, columns=cols))


def test_mixed_types_and_params(mixed):
    rows = [{"name": "a", "count": 2, "flag": True}, {"name": "b", "count": 5, "flag": False}]
    got = _call(mixed, {"dataframe_records": rows, "params": {"scale": 3.5}})
    assert got == [
        {"label": "a-4", "flag": False, "scale": 3.5},
        {"label": "b-10", "flag": True, "scale": 3.5},
    ]
    # the params default from the signature applies when no params are sent
    assert _call(mixed, {"dataframe_records": rows})[0]["scale"] == 1.0


def test_optional_column_may_be_missing_or_present(mixed):
    rows = [{"name": "a", "count": 1, "flag": True, "score": 0.5}]
    assert _call(mixed, {"dataframe_records": rows})[0]["label"] == "a-2"


def test_warm_up_runs_the_serving_example(clf):
    assert warm_up(clf) is True


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "body, code, fragment",
    [
        (b"", "BAD_REQUEST", "empty body"),
        (b"{not json", "BAD_REQUEST", "not valid JSON"),
        (b"\xff\xfe{}", "BAD_REQUEST", "not valid JSON"),
        (b"[1, 2]", "BAD_REQUEST", 'bare JSON list: wrap it as {"instances": [...]}'),
        (b"{}", "BAD_REQUEST", "got none"),
        (b'{"dataframe_split": {"data": []}, "inputs": [1]}', "BAD_REQUEST",
         "got dataframe_split, inputs"),
        (b'{"dataframe": {}}', "BAD_REQUEST", "unknown top-level key(s) 'dataframe'"),
        (b'{"dataframe_split": [1]}', "BAD_REQUEST", "'columns' and 'data'"),
        (b'{"dataframe_split": {"data": []}}', "BAD_REQUEST", "no rows"),
        (b'{"dataframe_records": {"a": 1}}', "BAD_REQUEST", "list of objects"),
        (b'{"dataframe_split": {"columns": ["f0"], "data": [[1]]}, "params": 3}',
         "BAD_REQUEST", "'params' must be"),
    ],
)
def test_malformed_bodies_are_400(clf, body, code, fragment):
    err = _error(clf, body)
    assert (err.error_code, err.status) == (code, 400)
    assert fragment in err.message


def test_unknown_and_missing_columns_name_them(clf, frame):
    doc = {"dataframe_split": {"columns": ["f0", "nope"], "data": [[1.0, 2.0]]}}
    err = _error(clf, doc)
    assert err.status == 400 and "unknown column(s) 'nope'" in err.message
    doc = {"dataframe_split": {"columns": ["f0", "f1"], "data": [[1.0, 2.0]]}}
    err = _error(clf, doc)
    assert "missing column(s) 'f2'" in err.message and "'f19'" in err.message


def test_wrong_types_name_the_column_and_row(clf, frame):
    data = frame.values.tolist()
    data[1][3] = "abc"
    err = _error(clf, {"dataframe_split": {"columns": list(frame.columns), "data": data}})
    assert err.error_code == "BAD_REQUEST"  # as MLflow's "Failed to convert column"
    assert "column 'f3' must be double (row 1: got a string)" == err.message
    for literal in (True, False):
        data[1][3] = literal
        err = _error(clf, {"dataframe_split": {"columns": list(frame.columns), "data": data}})
        assert "column 'f3' must be double (row 1: got a boolean)" == err.message


def test_strict_types_in_mixed_model(mixed):
    err = _error(mixed, {"dataframe_records": [{"name": 1, "count": 1, "flag": True}]})
    assert err.message.startswith("column 'name' must be string")
    err = _error(mixed, {"dataframe_records": [{"name": "a", "count": 1.5, "flag": True}]})
    assert err.message.startswith("column 'count' must be long")
    err = _error(mixed, {"dataframe_records": [{"name": "a", "count": None, "flag": True}]})
    assert "column 'count' must be long (row 0: null)" == err.message
    err = _error(mixed, {"dataframe_records": [{"name": "a", "count": 1, "flag": "yes"}]})
    assert err.message.startswith("column 'flag' must be boolean")


def test_params_are_checked_against_the_params_schema(mixed):
    rows = [{"name": "a", "count": 1, "flag": True}]
    err = _error(mixed, {"dataframe_records": rows, "params": {"scale": "big"}})
    assert err.status == 400


def test_model_exception_is_500_without_traceback(mixed):
    err = _error(mixed, {"dataframe_records": [{"name": "boom", "count": 1, "flag": True}]})
    assert (err.error_code, err.status) == ("MODEL_ERROR", 500)
    assert err.message == "the model raised ValueError: boom is not a valid name"
    assert "Traceback" not in err.message


@pytest.mark.parametrize(
    "content_type, fragment",
    [
        (None, "missing Content-Type"),
        ("text/plain", "'text/plain' is not supported"),
        ("application/json; charset=latin-1", "charset 'latin-1'"),
        ("application/json; format=pandas-split", "unknown Content-Type parameter 'format'"),
    ],
)
def test_content_type_errors_are_415(clf, content_type, fragment):
    err = _error(clf, {"inputs": [[1.0] * 20]}, content_type)
    assert err.status == 415 and fragment in err.message


def test_bad_csv_is_400(clf):
    err = _error(clf, b"f0,f1\nx,y\n", "text/csv")
    assert err.status == 400
    err = _error(clf, b"\xff\xfe", "text/csv")
    assert err.status == 400 and "UTF-8" in err.message


def test_error_messages_never_echo_a_large_body(clf):
    huge = b'{"dataframe_split": {"columns": ["f0"], "data": [[' + b"1," * 200_000 + b"]]}}"
    err = _error(clf, huge)
    assert len(err.message) <= P.MAX_MESSAGE_CHARS


def test_error_body_shape():
    body = orjson.loads(P.error_body("BAD_REQUEST", "x" * 5000, "rid-1"))
    assert set(body) == {"error_code", "message", "request_id"}
    assert len(body["message"]) == P.MAX_MESSAGE_CHARS


# ---------------------------------------------------------------- serialisation


def _mlflow_json(predictions):
    import io

    from mlflow.pyfunc.scoring_server import predictions_to_json

    out = io.StringIO()
    predictions_to_json(predictions, out)
    return out.getvalue()


@pytest.mark.parametrize(
    "predictions",
    [
        pd.DataFrame({"a": [1, 2], "b": ["x", None]}),
        pd.DataFrame({"a": [1.5, np.nan], "b": [np.inf, -np.inf]}),
        pd.Series([1.5, np.nan]),
        pd.Series([1, 2], name="y"),
        np.array([[1, 2]], dtype=np.int32),
        np.array([0.5, np.nan]),
        np.array(["a", "b"], dtype=object),
        {"k": np.float32(0.5)},
        [1, None, "x"],
        pd.DataFrame({"t": pd.to_datetime(["2024-01-02T03:04:05"])}),
        [b"\x00\x01binary"],
    ],
    ids=lambda p: type(p).__name__,
)
def test_serialize_is_what_mlflow_writes(predictions):
    """Same JSON value as MLflow's server writes (NaN/Infinity literals, Series as records,
    datetimes as ISO strings, bytes as base64)."""
    ours = P.serialize_predictions(predictions)
    assert json.dumps(json.loads(ours)) == json.dumps(json.loads(_mlflow_json(predictions)))


def test_serialize_fast_path_is_orjson():
    assert P.serialize_predictions(np.array([1.0, 2.0])) == b'{"predictions":[1.0,2.0]}'
