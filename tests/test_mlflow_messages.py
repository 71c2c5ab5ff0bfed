"""MLflow's enforcement errors, raised by MLflow's own functions, told again without the value
(mldeploy.container._mlflow_messages): one test per message MLflow words, so a release that
rewords one fails here. The end-to-end check (both servers, every such case) is
integration/test_parity_mlflow.py."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from mldeploy import _compat_mlflow as mlc
from mldeploy.container import _mlflow_messages as messages

SECRET = "ZZSECRETZZ"


def _schema(*specs):
    from mlflow.types import Schema

    return Schema(list(specs))


def _types_schema():
    from mlflow.types import ColSpec
    from mlflow.types.schema import Array, Map, Object, Property

    return _schema(
        ColSpec("datetime", "when"), ColSpec("binary", "blob"), ColSpec(Array("string"), "tags"),
        ColSpec(Object([Property("a", "long")]), "obj"), ColSpec(Map("double"), "scores"),
    )


_ROW = {"when": "2024-05-06T07:08:09", "blob": base64.b64encode(b"x").decode(), "tags": ["a"],
        "obj": {"a": 1}, "scores": {"k": 0.5}}


def _told(doc, schema, mlflow_quotes: bool = True) -> str:
    """What MLflow raises for ``doc``, as the server tells it (``mlflow_quotes``: MLflow's own
    text quotes the value, checked, so the test cannot pass because MLflow stopped quoting)."""
    with pytest.raises(mlc.mlflow_exception()) as info:
        mlc.parse_dataframe_or_tensor(doc, schema)
    assert (SECRET in str(info.value.message)) is mlflow_quotes
    types = None
    if schema is not None and not schema.is_tensor_spec():
        types = {spec.name: repr(spec.type) for spec in schema.inputs}
    told = messages.describe(info.value, types)
    assert SECRET not in told and "\n" not in told
    return told


@pytest.mark.parametrize("change, expected, mlflow_quotes", [
    ({"when": SECRET}, "column 'when' must be datetime (got a string that is not a date-time)",
     True),
    ({"blob": SECRET + "!"}, "column 'blob' must be binary (got a string that is not base64)",
     False),
    ({"scores": {"k": SECRET}},
     "column 'scores' must be Map(str -> DataType.double) (a value that is not double)", True),
    ({"obj": SECRET}, "column 'obj' must be {a: long (required)} "
                      "(got a str where dictionary belongs)", True),
    ({"obj": {"a": SECRET}}, "column 'obj' must be {a: long (required)} "
                             "(property 'a' must be long (got a str))", False),
    ({"tags": [1, 2]}, "column 'tags' must be Array(string) (got int64 values where str belongs)",
     False),
])
def test_column_conversion_errors_name_the_column_and_the_kind(change, expected, mlflow_quotes):
    doc = {"dataframe_records": [{**_ROW, **change}]}
    assert _told(doc, _types_schema(), mlflow_quotes) == expected


@pytest.mark.parametrize("obj, expected", [
    ({}, "a required property is missing"),
    ({"a": 1, SECRET: 1}, "it has properties the schema does not define"),  # keys not echoed
])
def test_object_property_errors(obj, expected):
    told = _told({"dataframe_records": [{**_ROW, "obj": obj}]}, _types_schema(),
                 mlflow_quotes=SECRET in obj)
    assert told == f"column 'obj' must be {{a: long (required)}} ({expected})"


def test_tensor_errors_say_what_the_tensor_takes():
    from mlflow.types import TensorSpec

    tensors = _schema(TensorSpec(np.dtype("float32"), (-1, 2), "a"),
                      TensorSpec(np.dtype("int64"), (-1,), "b"))
    assert _told({"inputs": {"a": [[SECRET, 1]], "b": [5]}}, tensors) == \
        "got a string where a number belongs"
    assert _told({"inputs": {"a": [[1, 2]], "b": [SECRET]}}, tensors) == \
        "got a string where an integer belongs"


def test_the_wrappers_cause_is_told(mixed):
    """MLflow's predict says only 'Failed to enforce model input schema'; the cause says what."""
    import pandas as pd

    frame = pd.DataFrame({"name": ["a"], "count": [SECRET], "flag": [True]})
    with pytest.raises(mlc.mlflow_exception()) as info:
        mixed.pyfunc.predict(frame)
    assert str(info.value.message).startswith("Failed to enforce model input schema")
    assert messages.describe(info.value) == "column 'count' must be int64 (got str values)"


def test_params_are_told_from_the_request_by_mlflows_own_check():
    from mlflow.types.schema import ParamSchema, ParamSpec

    schema = ParamSchema([ParamSpec("scale", "double", 1.0),
                          ParamSpec("ids", "long", [1], shape=(-1,)),
                          ParamSpec("label", "string", "x"),
                          ParamSpec("since", "datetime", np.datetime64("2024-01-01"))])
    params = {"scale": SECRET, "ids": [SECRET], "label": [SECRET], "since": SECRET}
    with pytest.raises(mlc.mlflow_exception()) as info:
        mlc.enforce_params_schema(params, schema)
    assert SECRET in info.value.message  # what MLflow says
    told = messages.bad_params(params, schema)
    assert told == ("invalid params: 'scale' must be double (got a string); 'ids' must be long "
                    "list (got a list holding a string); 'label' must be string (got a list "
                    "holding a string); 'since' must be datetime (got a string)")
    assert messages.bad_params({"scale": 2.0}, schema) is None


def test_unknown_messages_lose_every_quoted_fragment():
    from mlflow.exceptions import MlflowException

    told = messages.describe(MlflowException(f"Something new about `{SECRET}` and '{SECRET}'"))
    assert told == "Something new about … and …"
