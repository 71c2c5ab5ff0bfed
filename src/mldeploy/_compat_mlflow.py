"""Every MLflow symbol mldeploy uses that MLflow does not document as public, in one place, each
with a test (``tests/test_compat_mlflow.py``) that fails when an MLflow release moves or changes
it; the ``mlflow-skinny`` requirement in ``pyproject.toml`` has an upper bound at the first
release not tested. Callers (the core, the serving container's loader and protocol) import from
here, never ``mlflow.*._name`` directly. Imports are lazy: nothing of MLflow is imported when this
module is.

=======================================  ======================================================
here                                     MLflow's symbol
=======================================  ======================================================
:func:`mlflow_exception`                 ``mlflow.exceptions.MlflowException`` (public)
:func:`enforce_params_schema`            ``mlflow.models.utils._enforce_params_schema``
:func:`predict_fn`                       ``PyFuncModel._predict_fn``
:func:`predict_stream_fn`                ``PyFuncModel._predict_stream_fn``
:func:`is_type_hint_from_example`        ``Model._is_type_hint_from_example()``
:func:`is_signature_from_type_hint`      ``Model._is_signature_from_type_hint()``
:func:`parse_dataframe_or_tensor`        ``mlflow.pyfunc.scoring_server.infer_and_parse_data``
:func:`is_llm_payload`                   ``mlflow.pyfunc.utils.serving_data_parser``
                                         ``.is_unified_llm_input``
:func:`split_llm_payload`                ``mlflow.pyfunc.scoring_server``
                                         ``._split_data_and_params_for_llm_input``
:func:`jsonable`                         ``mlflow.utils.proto_json_utils._get_jsonable_obj``
:func:`dumps_like_mlflow`                ``mlflow.utils.proto_json_utils.NumpyEncoder``
=======================================  ======================================================

Where the server's own fast path does not apply (no signature, tensor signatures, ``Array`` /
``Object`` / ``Map`` / ``AnyType`` / ``binary`` / ``datetime`` columns, LLM payloads) it parses and
enforces exactly as ``mlflow models serve`` does, by calling the parsing functions below. The
model-side ones fall back to "not known" (None / False) where an older MLflow lacks them, so the
server then takes MLflow's public ``PyFuncModel.predict`` path.
"""

from __future__ import annotations

import json
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


def mlflow_exception() -> type[Exception]:
    """``mlflow.exceptions.MlflowException`` (public, here so callers import from one place)."""
    from mlflow.exceptions import MlflowException

    return MlflowException


def parse_dataframe_or_tensor(doc: dict[str, Any], schema: Any) -> Any:
    """``mlflow.pyfunc.scoring_server.infer_and_parse_data``: a body with one of MLflow's four
    input keys -> a DataFrame, an ndarray or a dict of ndarrays, cast to the schema (base64 for
    binary columns, tensor shapes and dtypes) as ``mlflow models serve`` does."""
    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    return infer_and_parse_data(doc, schema)


def is_llm_payload(doc: dict[str, Any]) -> bool:
    """``mlflow.pyfunc.utils.serving_data_parser.is_unified_llm_input``: a chat (``messages``),
    completions (``prompt``) or embeddings (``input``) body, unwrapped."""
    from mlflow.pyfunc.utils.serving_data_parser import is_unified_llm_input

    return bool(is_unified_llm_input(doc))


def split_llm_payload(
    doc: dict[str, Any], params_schema: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``mlflow.pyfunc.scoring_server._split_data_and_params_for_llm_input``: keys named in the
    params schema are params (``temperature``, ``max_tokens``...), the rest is the model input."""
    from mlflow.pyfunc.scoring_server import _split_data_and_params_for_llm_input

    return _split_data_and_params_for_llm_input(doc, params_schema)


def jsonable(predictions: Any) -> Any:
    """``mlflow.utils.proto_json_utils._get_jsonable_obj`` with ``pandas_orient="records"``."""
    from mlflow.utils.proto_json_utils import _get_jsonable_obj

    return _get_jsonable_obj(predictions, pandas_orient="records")


def dumps_like_mlflow(payload: Any) -> bytes:
    """JSON exactly as MLflow's server writes it: ``json.dumps`` with MLflow's ``NumpyEncoder``
    (NaN and Infinity as literals, bytes as base64 lines, datetimes as ISO strings)."""
    from mlflow.utils.proto_json_utils import NumpyEncoder

    return json.dumps(payload, cls=NumpyEncoder).encode("utf-8")


__all__ = [
    "dumps_like_mlflow", "enforce_params_schema", "is_llm_payload", "is_signature_from_type_hint",
    "is_type_hint_from_example", "jsonable", "mlflow_exception", "parse_dataframe_or_tensor",
    "predict_fn", "predict_stream_fn", "split_llm_payload",
]
