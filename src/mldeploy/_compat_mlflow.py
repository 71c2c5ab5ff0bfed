"""Every private MLflow symbol mldeploy uses, in one place, each with a test
(``tests/test_compat_mlflow.py``) that fails when an MLflow release moves or changes it; the
``mlflow-skinny`` requirement in ``pyproject.toml`` has an upper bound at the first release not
tested. Callers import from here, never ``mlflow.*._name`` directly.

=======================================  ======================================================
here                                     MLflow's private symbol
=======================================  ======================================================
:func:`enforce_params_schema`            ``mlflow.models.utils._enforce_params_schema``
:func:`predict_fn`                       ``PyFuncModel._predict_fn``
:func:`predict_stream_fn`                ``PyFuncModel._predict_stream_fn``
:func:`is_type_hint_from_example`        ``Model._is_type_hint_from_example()``
:func:`is_signature_from_type_hint`      ``Model._is_signature_from_type_hint()``
=======================================  ======================================================

The model-side ones fall back to "not known" (None / False) where an older MLflow lacks them, so
the server then takes MLflow's public ``PyFuncModel.predict`` path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def enforce_params_schema(params: dict[str, Any] | None, schema: Any) -> dict[str, Any] | None:
    """``params`` checked and converted against the model's params schema, as
    ``PyFuncModel.predict`` does (``MlflowException`` INVALID_PARAMETER_VALUE if they do not
    fit)."""
    from mlflow.models.utils import _enforce_params_schema

    return _enforce_params_schema(params, schema)  # type: ignore[no-any-return]


def predict_fn(pyfunc: Any) -> Callable[..., Any] | None:
    """The flavor's own predict function behind a loaded ``PyFuncModel`` (None if unknown)."""
    return getattr(pyfunc, "_predict_fn", None)


def predict_stream_fn(pyfunc: Any) -> Callable[..., Any] | None:
    """The flavor's streaming predict function, when it has one."""
    return getattr(pyfunc, "_predict_stream_fn", None)


def is_type_hint_from_example(meta: Any) -> bool:
    """The model's signature was inferred from type hints and an input example (MLflow then
    converts the input to the example's format before predicting)."""
    return bool(getattr(meta, "_is_type_hint_from_example", lambda: False)())


def is_signature_from_type_hint(meta: Any) -> bool:
    """The model's signature comes from its ``predict`` type hints."""
    return bool(getattr(meta, "_is_signature_from_type_hint", lambda: False)())


__all__ = ["enforce_params_schema", "is_signature_from_type_hint", "is_type_hint_from_example",
           "predict_fn", "predict_stream_fn"]
