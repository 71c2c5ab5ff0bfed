"""Load an MLflow model for serving and warm it up.

``load_model`` resolves the URI, loads the pyfunc model once and precomputes what the protocol needs
per request (column names, numpy dtypes), so the request path does no schema work it can avoid.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_log = logging.getLogger("mldeploy.container")

# MLflow ColSpec type name -> numpy dtype used to build model input columns.
_NUMPY_TYPES = {
    "double": np.dtype("float64"),
    "float": np.dtype("float32"),
    "long": np.dtype("int64"),
    "integer": np.dtype("int32"),
    "boolean": np.dtype("bool"),
    "string": np.dtype("object"),
    "binary": np.dtype("object"),
    "datetime": np.dtype("datetime64[ns]"),
}

# Flavors whose loaded models survive fork(): loading them starts no threads, opens no sessions
# or devices (TensorFlow, PyTorch/OpenMP, ONNX Runtime, Spark/H2O JVMs do). A custom
# python_function model may do anything in load_context, so it is not on the list.
FORK_SAFE_FLAVORS = frozenset({
    "sklearn", "xgboost", "lightgbm", "catboost", "statsmodels", "prophet", "pmdarima",
})


@dataclass(frozen=True)
class Column:
    """One input column of a column-based signature."""

    name: str
    type: str  # MLflow type name: double, long, string, ...
    dtype: np.dtype
    required: bool


@dataclass
class ServedModel:
    """A loaded model and the facts about it the server needs."""

    pyfunc: Any  # mlflow.pyfunc.PyFuncModel
    path: Path
    columns: tuple[Column, ...] | None  # None: no column-based signature (tensor or none)
    info: dict[str, Any] = field(default_factory=dict)
    # The flavor's own predict, called directly once our enforcement produced the exact input
    # the signature describes (MLflow's PyFuncModel.predict would enforce the schema again,
    # ~3 ms a request). None where that is not equivalent: MLflow's predict is used then.
    direct_predict: Callable[..., Any] | None = None
    direct_takes_params: bool = False
    load_seconds: float | None = None  # how long load_model took

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns or ())

    @property
    def numeric_columns(self) -> bool:
        """True when every input column is a plain numeric type (the fast path)."""
        return bool(self.columns) and all(
            c.type in ("double", "float", "long", "integer") for c in self.columns or ()
        )

    def serving_example(self) -> bytes | None:
        """The request body MLflow saved with the model (``serving_input_example.json``)."""
        candidate = self.path / "serving_input_example.json"
        return candidate.read_bytes() if candidate.is_file() else None


_PACKAGES = {"sklearn": "scikit-learn", "cv2": "opencv-python-headless", "PIL": "pillow",
             "yaml": "pyyaml", "skl2onnx": "skl2onnx"}


def load_failure_hint(exc: BaseException) -> str | None:
    """What to do when a model failed to load because a module is missing (a generic image, or
    requirements the model did not declare); None for other failures."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ModuleNotFoundError) and cur.name:
            top = cur.name.split(".")[0]
            package = _PACKAGES.get(top, top)
            return (f"the model needs the Python module {top!r}, which this environment lacks: "
                    f"in a generic image (build-docker without -m) add it with --requirement "
                    f"{package} (or -C build.requirements={package}), or build the model's own "
                    "image with build-docker -m MODEL_URI, which installs its requirements")
        cur = cur.__cause__ or cur.__context__
    return None


def fork_safe(model_dir: str | os.PathLike[str]) -> bool:
    """True when the model in ``model_dir`` (a local directory) can be loaded once and shared by
    forked workers: its flavors (from ``MLmodel``) are all in :data:`FORK_SAFE_FLAVORS`, besides
    ``python_function``. False when it cannot tell."""
    import yaml

    try:
        meta = yaml.safe_load((Path(model_dir) / "MLmodel").read_text(encoding="utf-8"))
        flavors = set(meta.get("flavors") or {}) - {"python_function"}
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return False
    return bool(flavors) and flavors <= FORK_SAFE_FLAVORS


def quiet_mlflow_environment() -> None:
    """Environment for MLflow inside a server, unless the operator set it: no usage telemetry
    (a serving process must not call home, nor start MLflow's telemetry threads before a fork)
    and no echo of whole inputs in schema errors (our messages say what is wrong)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_DISABLE_SCHEMA_DETAILS", "true")


def load_model(model_uri: str) -> ServedModel:
    """Resolve ``model_uri`` to a local directory and load it as a pyfunc model.

    Raises ``mldeploy.errors.ModelUriError`` when the URI does not resolve; whatever the model's own
    loader raises propagates (the caller logs it and stops the server).
    """
    started = time.perf_counter()
    quiet_mlflow_environment()
    import mlflow.pyfunc

    from mldeploy.model_uri import resolve_model_uri

    path = resolve_model_uri(model_uri)
    # suppress_warnings skips MLflow's requirement-mismatch scan (~0.65 s of every cold start);
    # images are built from the model's own pinned requirements.
    pyfunc = mlflow.pyfunc.load_model(str(path), suppress_warnings=True)
    meta = pyfunc.metadata
    columns = _columns(meta)
    direct, takes_params = _direct_predict(pyfunc) if columns else (None, False)
    return ServedModel(
        pyfunc=pyfunc,
        path=path,
        columns=columns,
        info=_info(meta, model_uri),
        direct_predict=direct,
        direct_takes_params=takes_params,
        load_seconds=time.perf_counter() - started,
    )


def _direct_predict(pyfunc: Any) -> tuple[Callable[..., Any] | None, bool]:
    """The flavor's predict function, when calling it on an enforced DataFrame is exactly what
    ``PyFuncModel.predict`` would do (no type-hint signature, no example-format conversion)."""
    meta = pyfunc.metadata
    from mldeploy import _compat_mlflow as compat

    if compat.is_type_hint_from_example(meta):
        return None, False
    fn = compat.predict_fn(pyfunc)
    if fn is None or compat.predict_stream_fn(pyfunc) is not None:
        return None, False
    try:
        params = inspect.signature(fn).parameters.get("params")
    except (TypeError, ValueError):
        return None, False
    return fn, bool(params and params.kind != inspect.Parameter.VAR_KEYWORD)


def _columns(meta: Any) -> tuple[Column, ...] | None:
    from mldeploy._compat_mlflow import is_signature_from_type_hint

    if is_signature_from_type_hint(meta):
        return None
    schema = meta.get_input_schema()
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return None
    columns = []
    for spec in schema.inputs:
        type_name = getattr(getattr(spec, "type", None), "name", None)
        if type_name not in _NUMPY_TYPES:
            return None  # arrays, objects, maps: leave enforcement to MLflow
        columns.append(
            Column(spec.name, type_name, _NUMPY_TYPES[type_name], getattr(spec, "required", True))
        )
    return tuple(columns)


def _info(meta: Any, model_uri: str) -> dict[str, Any]:
    flavors = sorted(k for k in (meta.flavors or {}) if k != "python_function")
    def text(name: str) -> str | None:  # YAML makes `model_uuid: 1234` an int (any size)
        value = getattr(meta, name, None)
        return None if value is None else str(value)

    return {
        "model_uri": model_uri,
        "model_uuid": text("model_uuid"),
        "run_id": text("run_id"),
        "flavors": flavors,
        # the versions the flavors were saved with ("sklearn=1.9.1"), from the MLmodel file
        "flavor_versions": ",".join(
            f"{name}={value}"
            for name in flavors
            for key, value in sorted(((meta.flavors or {}).get(name) or {}).items())
            if key.endswith("_version") and value
        ),
        "mlflow_version": text("mlflow_version"),
        "signature": meta.signature is not None,
    }
