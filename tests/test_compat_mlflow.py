"""One test per MLflow symbol behind :mod:`mldeploy._compat_mlflow` (the core's and the serving
protocol's, most of them private): each fails when an MLflow release removes or changes what the
server relies on, naming it (then move the bound in pyproject.toml only after fixing the shim)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mldeploy import _compat_mlflow as compat
from mldeploy import example_model_path

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pyfunc():
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(example_model_path())


def _frame(pyfunc) -> pd.DataFrame:
    names = pyfunc.metadata.get_input_schema().input_names()
    return pd.DataFrame([[0.1 * i for i in range(len(names))]], columns=names)


def test_enforce_params_schema():
    from mlflow.exceptions import MlflowException
    from mlflow.types.schema import ParamSchema, ParamSpec

    schema = ParamSchema([ParamSpec("alpha", "double", 0.5), ParamSpec("k", "long", 3)])
    assert compat.enforce_params_schema(None, schema) == {"alpha": 0.5, "k": 3}
    assert compat.enforce_params_schema({"k": 7}, schema) == {"alpha": 0.5, "k": 7}
    with pytest.raises(MlflowException) as info:
        compat.enforce_params_schema({"k": "seven"}, schema)
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"


def test_predict_fn_is_the_flavors_own_predict(pyfunc):
    assert "_predict_fn" in vars(pyfunc)  # the private attribute itself, not the fallback
    fn = compat.predict_fn(pyfunc)
    frame = _frame(pyfunc)
    assert callable(fn) and list(fn(frame)) == list(pyfunc.predict(frame))


def test_predict_stream_fn(pyfunc):
    assert "_predict_stream_fn" in vars(pyfunc)
    assert compat.predict_stream_fn(pyfunc) is None  # scikit-learn does not stream
    assert compat.predict_fn(object()) is None and compat.predict_stream_fn(object()) is None


def test_is_type_hint_from_example(pyfunc):
    from mlflow.models import Model

    assert callable(getattr(Model, "_is_type_hint_from_example", None))
    assert compat.is_type_hint_from_example(pyfunc.metadata) is False
    assert compat.is_type_hint_from_example(object()) is False


def test_is_signature_from_type_hint(pyfunc):
    from mlflow.models import Model

    assert callable(getattr(Model, "_is_signature_from_type_hint", None))
    assert compat.is_signature_from_type_hint(pyfunc.metadata) is False
    assert compat.is_signature_from_type_hint(object()) is False


def test_mlflow_exception():
    from mlflow.exceptions import MlflowException

    assert compat.mlflow_exception() is MlflowException


def test_infer_and_parse_data_casts_to_the_schema():
    from mlflow.types import ColSpec, Schema

    schema = Schema([ColSpec("binary", "b"), ColSpec("long", "n")])
    frame = compat.parse_dataframe_or_tensor(
        {"dataframe_split": {"columns": ["b", "n"], "data": [["AAE=", 1]]}}, schema
    )
    assert isinstance(frame, pd.DataFrame) and frame["b"][0] == b"\x00\x01"
    with pytest.raises(compat.mlflow_exception()) as info:
        bad = {"index": [1, 2], "data": [[1], [2], [3]]}
        compat.parse_dataframe_or_tensor({"dataframe_split": bad}, None)
    assert info.value.error_code == "BAD_REQUEST"


def test_is_unified_llm_input():
    for key in ("messages", "prompt", "input"):
        assert compat.is_llm_payload({key: "x"})
    assert not compat.is_llm_payload({"inputs": [1]})


def test_split_data_and_params_for_llm_input():
    from mlflow.types import ParamSchema, ParamSpec

    schema = ParamSchema([ParamSpec("temperature", "double", 1.0)])
    data, params = compat.split_llm_payload({"messages": [], "temperature": 0.2, "x": 1}, schema)
    assert data == {"messages": [], "x": 1} and params == {"temperature": 0.2}
    assert compat.split_llm_payload({"prompt": "p", "max_tokens": 3}, None) == (
        {"prompt": "p", "max_tokens": 3}, {},
    )


def test_get_jsonable_obj_shapes():
    assert compat.jsonable(pd.Series([1, 2], name="y")) == [{"y": 1}, {"y": 2}]
    assert compat.jsonable(pd.DataFrame({"a": [1]})) == [{"a": 1}]
    assert compat.jsonable(np.array([1, 2])) == [1, 2]


def test_numpy_encoder_writes_nan_bytes_and_datetimes():
    out = json.loads(compat.dumps_like_mlflow(
        [np.float32(0.5), math.nan, b"\x00", pd.Timestamp("2024-01-02")]
    ))
    assert out[0] == 0.5 and math.isnan(out[1])
    assert out[2] == "AA==\n" and out[3] == "2024-01-02T00:00:00"


def test_the_installed_mlflow_is_inside_the_tested_bound():
    from importlib.metadata import version

    from packaging.version import Version

    text = (ROOT / "pyproject.toml").read_text()
    bound = re.search(r'"mlflow-skinny>=[0-9.]+,<([0-9.]+)"', text)
    assert bound, "mlflow-skinny needs an upper bound while private symbols are used"
    assert Version(version("mlflow-skinny")) < Version(bound[1])


def test_no_private_mlflow_import_outside_the_compat_module():
    pattern = re.compile(r"(from mlflow[\w.]* import [^\n]*\b_[a-z]\w*|mlflow\.[\w.]*\._[a-z]"
                         r"|\"_(predict_fn|predict_stream_fn|is_type_hint_from_example"
                         r"|is_signature_from_type_hint)\")")
    assert not (ROOT / "container" / "_mlflow_compat.py").exists()  # one compat module
    offenders = []
    for top in ("src", "container", "plugins"):
        for path in (ROOT / top).rglob("*.py"):
            if path.relative_to(ROOT) == Path("src/mldeploy/_compat_mlflow.py"):
                continue
            if pattern.search(path.read_text()):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
