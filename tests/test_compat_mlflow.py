"""One test per private MLflow symbol behind :mod:`mldeploy._compat_mlflow`: each fails when an
MLflow release removes or changes what the server relies on (then move the bound in
pyproject.toml only after fixing the shim)."""

from __future__ import annotations

import re
from pathlib import Path

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
    with pytest.raises(MlflowException):
        compat.enforce_params_schema({"k": "seven"}, schema)


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
    offenders = []
    for top in ("src", "container", "plugins"):
        for path in (ROOT / top).rglob("*.py"):
            # the core's compat module and the serving protocol's (to be merged into one)
            if path.name in ("_compat_mlflow.py", "_mlflow_compat.py"):
                continue
            if pattern.search(path.read_text()):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
