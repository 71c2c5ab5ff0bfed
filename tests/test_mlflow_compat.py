"""One test per MLflow symbol container/_mlflow_compat.py relies on (most are private): an MLflow
upgrade that moves or changes one fails here, naming it."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from mldeploy.container import _mlflow_compat as mlc


def test_mlflow_exception():
    from mlflow.exceptions import MlflowException

    assert mlc.mlflow_exception() is MlflowException


def test_enforce_params_schema_casts_and_fills_defaults():
    from mlflow.types import ParamSchema, ParamSpec

    schema = ParamSchema([ParamSpec("scale", "double", 1.0), ParamSpec("n", "long", 3)])
    assert mlc.enforce_params_schema({"scale": 2}, schema) == {"scale": 2.0, "n": 3}
    with pytest.raises(mlc.mlflow_exception()) as info:
        mlc.enforce_params_schema({"scale": "big"}, schema)
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"


def test_infer_and_parse_data_casts_to_the_schema():
    from mlflow.types import ColSpec, Schema

    schema = Schema([ColSpec("binary", "b"), ColSpec("long", "n")])
    frame = mlc.parse_dataframe_or_tensor(
        {"dataframe_split": {"columns": ["b", "n"], "data": [["AAE=", 1]]}}, schema
    )
    assert isinstance(frame, pd.DataFrame) and frame["b"][0] == b"\x00\x01"
    with pytest.raises(mlc.mlflow_exception()) as info:
        bad = {"index": [1, 2], "data": [[1], [2], [3]]}
        mlc.parse_dataframe_or_tensor({"dataframe_split": bad}, None)
    assert info.value.error_code == "BAD_REQUEST"


def test_parse_tf_serving_input():
    parsed = mlc.parse_tf_serving({"inputs": {"a": [[1, 2]]}}, None)
    assert isinstance(parsed["a"], np.ndarray) and parsed["a"].shape == (1, 2)


def test_is_unified_llm_input():
    for key in ("messages", "prompt", "input"):
        assert mlc.is_llm_payload({key: "x"})
    assert not mlc.is_llm_payload({"inputs": [1]})


def test_split_data_and_params_for_llm_input():
    from mlflow.types import ParamSchema, ParamSpec

    schema = ParamSchema([ParamSpec("temperature", "double", 1.0)])
    data, params = mlc.split_llm_payload({"messages": [], "temperature": 0.2, "x": 1}, schema)
    assert data == {"messages": [], "x": 1} and params == {"temperature": 0.2}
    assert mlc.split_llm_payload({"prompt": "p", "max_tokens": 3}, None) == (
        {"prompt": "p", "max_tokens": 3}, {},
    )


def test_get_jsonable_obj_shapes():
    assert mlc.jsonable(pd.Series([1, 2], name="y")) == [{"y": 1}, {"y": 2}]
    assert mlc.jsonable(pd.DataFrame({"a": [1]})) == [{"a": 1}]
    assert mlc.jsonable(np.array([1, 2])) == [1, 2]


def test_numpy_encoder_writes_nan_bytes_and_datetimes():
    out = json.loads(mlc.dumps_like_mlflow(
        [np.float32(0.5), math.nan, b"\x00", pd.Timestamp("2024-01-02")]
    ))
    assert out[0] == 0.5 and math.isnan(out[1])
    assert out[2] == "AA==\n" and out[3] == "2024-01-02T00:00:00"


def test_is_signature_from_type_hint(mixed_model):
    import mlflow.pyfunc

    meta = mlflow.pyfunc.load_model(str(mixed_model)).metadata
    assert hasattr(meta, "_is_signature_from_type_hint")
    assert mlc.signature_from_type_hint(meta) is False
    assert mlc.signature_from_type_hint(object()) is False
