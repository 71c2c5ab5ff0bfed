"""Every MLflow symbol the scoring protocol uses that MLflow does not document as public, in one
place (``tests/test_mlflow_compat.py`` has a test per symbol, so an MLflow upgrade that moves or
changes one fails there, not on a request).

Where our own fast path does not apply (no signature, tensor signatures, ``Array`` / ``Object`` /
``Map`` / ``AnyType`` / ``binary`` / ``datetime`` columns, LLM payloads) the server parses and
enforces exactly as ``mlflow models serve`` does, by calling the functions below. Imports are lazy:
nothing of MLflow is imported when this module is.
"""

from __future__ import annotations

import json
from typing import Any


def mlflow_exception() -> type[Exception]:
    """``mlflow.exceptions.MlflowException`` (public, here so callers import from one place)."""
    from mlflow.exceptions import MlflowException

    return MlflowException


def enforce_params_schema(params: dict[str, Any] | None, schema: Any) -> dict[str, Any] | None:
    """``mlflow.models.utils._enforce_params_schema``: cast ``params`` to the params schema,
    filling defaults; raises ``MlflowException`` (INVALID_PARAMETER_VALUE) on a bad value."""
    from mlflow.models.utils import _enforce_params_schema

    return _enforce_params_schema(params, schema)


def parse_dataframe_or_tensor(doc: dict[str, Any], schema: Any) -> Any:
    """``mlflow.pyfunc.scoring_server.infer_and_parse_data``: a body with one of MLflow's four
    input keys -> a DataFrame, an ndarray or a dict of ndarrays, cast to the schema (base64 for
    binary columns, tensor shapes and dtypes) as ``mlflow models serve`` does."""
    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    return infer_and_parse_data(doc, schema)


def parse_tf_serving(doc: dict[str, Any], schema: Any) -> Any:
    """``mlflow.utils.proto_json_utils.parse_tf_serving_input`` (``instances`` / ``inputs``)."""
    from mlflow.utils.proto_json_utils import parse_tf_serving_input

    return parse_tf_serving_input(doc, schema=schema)


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


def signature_from_type_hint(metadata: Any) -> bool:
    """``Model._is_signature_from_type_hint()``: the signature was inferred from the predict
    function's type hints (MLflow then passes ``inputs`` to the model unparsed)."""
    probe = getattr(metadata, "_is_signature_from_type_hint", None)
    return bool(probe()) if probe is not None else False
