"""The scoring protocol as plain functions: parse a request, predict, serialise, map errors.

Nothing here knows a web framework; engines call :func:`handle_invocation` (or the pieces) and turn
a :class:`Reply` into their own response. Inputs follow MLflow's scoring protocol: JSON with exactly
one of ``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs`` plus optional
``params``, or ``text/csv``. Outputs are ``{"predictions": ...}``.

Errors are :class:`~mldeploy.container.errors.ProtocolError` carrying an ``error_code``;
:data:`~mldeploy.container.errors.STATUS` maps every code to its HTTP status in one table.
Signature enforcement is in :mod:`mldeploy.container.signature`.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd

from .errors import MAX_MESSAGE_CHARS, STATUS, ProtocolError, error_body, first_line
from .loader import ServedModel
from .signature import check_column_names, enforce_columns, enforce_frame

_log = logging.getLogger("mldeploy.container")

INPUT_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
PARAMS_KEY = "params"
JSON_TYPE = "application/json"
CSV_TYPE = "text/csv"

@dataclass(frozen=True)
class Reply:
    """What an engine sends back: status, JSON body bytes."""

    status: int
    body: bytes
    content_type: str = JSON_TYPE


@dataclass(frozen=True)
class ModelInput:
    data: Any
    params: dict[str, Any] | None


def error_reply(err: ProtocolError, request_id: str | None = None) -> Reply:
    return Reply(err.status, error_body(err.error_code, err.message, request_id))


# --------------------------------------------------------------------------------------------
# content type


def check_content_type(content_type: str | None) -> str:
    """Return ``"json"`` or ``"csv"``; raise 415 for anything else (including a charset other
    than UTF-8 and unknown parameters)."""
    if not content_type:
        raise ProtocolError(
            "UNSUPPORTED_MEDIA_TYPE",
            "missing Content-Type header: send 'Content-Type: application/json' "
            "(or 'text/csv')",
        )
    mime, *params = (part.strip() for part in content_type.split(";"))
    mime = mime.lower()
    for param in params:
        key, _, value = param.partition("=")
        key, value = key.strip().lower(), value.strip().strip('"').lower()
        if key == "charset":
            if value not in ("utf-8", "utf8"):
                raise ProtocolError(
                    "UNSUPPORTED_MEDIA_TYPE",
                    f"charset {value!r} is not supported: encode the body as UTF-8",
                )
        elif key:
            raise ProtocolError(
                "UNSUPPORTED_MEDIA_TYPE",
                f"unknown Content-Type parameter {key!r}: only 'charset=utf-8' is accepted",
            )
    if mime == JSON_TYPE:
        return "json"
    if mime == CSV_TYPE:
        return "csv"
    raise ProtocolError(
        "UNSUPPORTED_MEDIA_TYPE",
        f"Content-Type {mime!r} is not supported: use 'application/json' or 'text/csv'",
    )


# --------------------------------------------------------------------------------------------
# parsing


def parse_request(body: bytes, content_type: str | None, model: ServedModel) -> ModelInput:
    """Turn a request body into the model's input, enforcing the model's column signature."""
    kind = check_content_type(content_type)
    if not body:
        raise ProtocolError(
            "BAD_REQUEST", "empty body: send a JSON object such as {\"dataframe_split\": ...}"
        )
    if kind == "csv":
        return ModelInput(_parse_csv(body, model), None)
    return _parse_json(body, model)


def _parse_json(body: bytes, model: ServedModel) -> ModelInput:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError("BAD_REQUEST", f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ProtocolError(
            "BAD_REQUEST",
            f"body must be a JSON object with exactly one of {', '.join(INPUT_KEYS)}; "
            f"got a JSON {type(doc).__name__}",
        )
    present = [k for k in INPUT_KEYS if k in doc]
    unknown = sorted(k for k in doc if k not in INPUT_KEYS and k != PARAMS_KEY)
    if unknown:
        raise ProtocolError(
            "BAD_REQUEST",
            f"unknown top-level key(s) {', '.join(map(repr, unknown))}: the body takes exactly "
            f"one of {', '.join(INPUT_KEYS)} and optionally 'params'",
        )
    if len(present) != 1:
        found = f"got {', '.join(present)}" if present else "got none"
        raise ProtocolError(
            "BAD_REQUEST",
            f"the body must have exactly one of {', '.join(INPUT_KEYS)}; {found}",
        )
    params = doc.get(PARAMS_KEY)
    if params is not None and not isinstance(params, dict):
        raise ProtocolError("BAD_REQUEST", "'params' must be a JSON object of name: value")
    key = present[0]
    value = doc[key]
    if key == "dataframe_split":
        data = _frame_from_split(value, model, body)
    elif key == "dataframe_records":
        data = _frame_from_records(value, model)
    else:
        data = _tensor_input(key, value, model)
    return ModelInput(data, params)


def _frame_from_split(value: Any, model: ServedModel, body: bytes) -> pd.DataFrame:
    if not isinstance(value, dict) or "data" not in value:
        raise ProtocolError(
            "BAD_REQUEST",
            "'dataframe_split' must be an object with 'columns' and 'data' "
            "(pandas' DataFrame.to_dict(orient='split'))",
        )
    extra = set(value) - {"columns", "data", "index"}
    if extra:
        raise ProtocolError(
            "BAD_REQUEST",
            f"'dataframe_split' has unknown key(s) {', '.join(sorted(map(repr, extra)))}; "
            "it takes 'columns', 'data' and optionally 'index'",
        )
    rows = value["data"]
    columns = value.get("columns")
    if not isinstance(rows, list):
        raise ProtocolError("BAD_REQUEST", "'dataframe_split.data' must be a list of rows")
    if columns is None:
        columns = list(model.column_names) or None
    elif not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise ProtocolError("BAD_REQUEST", "'dataframe_split.columns' must be a list of names")
    if columns is not None:
        check_column_names(columns, model)
    if model.numeric_columns and columns is not None:
        frame = _numeric_frame(rows, columns, model, body)
        if frame is not None:
            return frame
    try:
        frame = pd.DataFrame(rows, columns=columns)
    except (ValueError, TypeError) as exc:
        raise ProtocolError(
            "BAD_REQUEST", f"'dataframe_split' does not form a table: {first_line(exc)}"
        ) from None
    return enforce_columns(frame, model)


def _numeric_frame(
    rows: list, columns: list[str], model: ServedModel, body: bytes
) -> pd.DataFrame | None:
    """Fast path for all-numeric signatures: one 2D array, one cast. None when it does not apply
    (ragged rows, nulls, strings, mixed target types): the general path then says precisely what
    is wrong."""
    if not rows:
        raise ProtocolError("BAD_REQUEST", "'dataframe_split.data' has no rows")
    try:
        array = np.asarray(rows)
    except (ValueError, TypeError):
        return None
    if array.dtype.kind not in "fi" or array.ndim != 2 or array.shape[1] != len(columns):
        return None
    specs = {c.name: c for c in model.columns or ()}
    dtypes = {specs[name].dtype for name in columns}
    if len(dtypes) != 1:
        return None
    (dtype,) = dtypes
    if array.dtype.kind == "f":
        if np.isnan(array).any():
            return None
        if dtype.kind == "i" and not np.array_equal(array, np.trunc(array)):
            return None
    order = [name for name in model.column_names if name in columns]
    if order != columns:  # signature order, as MLflow's enforcement gives the model
        array = array[:, [columns.index(name) for name in order]]
    # numpy turns JSON booleans into 1.0/0.0 silently; only when such values occur is the body
    # scanned for the literals (the general path then names the bad cell).
    if ((array == 0) | (array == 1)).any() and (b"true" in body or b"false" in body):
        return None
    # object-dtype names: scikit-learn's feature-name check is cheaper on them than on
    # pandas' string dtype
    return pd.DataFrame(array.astype(dtype, copy=False), columns=pd.Index(order, dtype=object))


def _frame_from_records(value: Any, model: ServedModel) -> pd.DataFrame:
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise ProtocolError(
            "BAD_REQUEST",
            "'dataframe_records' must be a list of objects, one per row "
            "(pandas' DataFrame.to_dict(orient='records'))",
        )
    if not value:
        raise ProtocolError("BAD_REQUEST", "'dataframe_records' has no rows")
    frame = pd.DataFrame.from_records(value)
    return enforce_frame(frame, model)


def _tensor_input(key: str, value: Any, model: ServedModel) -> Any:
    """``instances`` / ``inputs`` (TF-serving style). With a column signature, a list of objects
    or an object of columns becomes a DataFrame; everything else goes to MLflow's own parser."""
    if model.columns is not None:
        if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
            return _frame_from_records(value, model)
        if isinstance(value, dict):
            try:
                frame = pd.DataFrame({k: _as_column(v) for k, v in value.items()})
            except (ValueError, TypeError) as exc:
                raise ProtocolError(
                    "BAD_REQUEST", f"'{key}' columns do not form a table: {first_line(exc)}"
                ) from None
            return enforce_frame(frame, model)
    from mlflow.exceptions import MlflowException
    from mlflow.utils.proto_json_utils import parse_tf_serving_input

    schema = model.pyfunc.metadata.get_input_schema()
    try:
        return parse_tf_serving_input({key: value}, schema=schema)
    except MlflowException as exc:
        raise ProtocolError("BAD_REQUEST", f"'{key}' is invalid: {first_line(exc)}") from None


def _as_column(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


def _parse_csv(body: bytes, model: ServedModel) -> pd.DataFrame:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(
            "BAD_REQUEST", f"CSV body is not valid UTF-8 (byte {exc.start})"
        ) from None
    dtypes = None
    if model.numeric_columns:
        dtypes = {c.name: c.dtype for c in model.columns or ()}
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=dtypes)
    except (ValueError, TypeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ProtocolError(
            "BAD_REQUEST",
            f"body is not CSV with a header row of column names: {first_line(exc)}",
        ) from None
    return enforce_frame(frame, model)


# --------------------------------------------------------------------------------------------
# predict and serialise


def predict(model: ServedModel, model_input: ModelInput) -> Any:
    """Run the model. Signature problems MLflow finds become 400; anything else the model raises
    becomes ``MODEL_ERROR`` (500) with a short message — the traceback goes to the log."""
    from mlflow.exceptions import MlflowException

    data, params = model_input.data, model_input.params
    try:
        if model.direct_predict is not None and isinstance(data, pd.DataFrame):
            # ``data`` went through enforce_columns: call the flavor directly (params are still
            # checked against the params schema by MLflow's own function).
            from mldeploy._compat_mlflow import enforce_params_schema

            params = enforce_params_schema(params, model.pyfunc.metadata.get_params_schema())
            if model.direct_takes_params:
                return model.direct_predict(data, params=params)
            return model.direct_predict(data)
        if params is not None:
            return model.pyfunc.predict(data, params=params)
        return model.pyfunc.predict(data)
    except MlflowException as exc:
        if exc.error_code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST"):
            raise ProtocolError("INVALID_PARAMETER_VALUE", first_line(exc.message)) from None
        raise _model_error(exc) from exc
    except Exception as exc:  # the model's own code: never crash the worker
        raise _model_error(exc) from exc


__all__ = [
    "MAX_MESSAGE_CHARS", "STATUS", "ModelInput", "ProtocolError", "Reply", "check_content_type",
    "enforce_columns", "enforce_frame", "error_body", "error_reply", "handle_invocation",
    "parse_request", "predict", "serialize_predictions",
]


def _model_error(exc: BaseException) -> ProtocolError:
    return ProtocolError(
        "MODEL_ERROR", f"the model raised {type(exc).__name__}: {first_line(exc)}"
    )


def serialize_predictions(predictions: Any) -> bytes:
    """``{"predictions": ...}`` as MLflow shapes it (DataFrame -> records, arrays -> lists);
    NaN and infinities become null."""
    if isinstance(predictions, pd.DataFrame):
        payload: Any = predictions.to_dict(orient="records")
    elif isinstance(predictions, pd.Series):
        payload = predictions.to_numpy()
    else:
        payload = predictions
    try:
        return orjson.dumps(
            {"predictions": payload},
            option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS,
            default=_default,
        )
    except TypeError as exc:
        raise ProtocolError(
            "MODEL_ERROR", f"the model's output cannot be written as JSON: {first_line(exc)}"
        ) from None


def _default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        return pd.Timestamp(value).isoformat()
    if isinstance(value, (pd.Series, pd.Index)):
        return value.tolist()
    if isinstance(value, pd.DataFrame):
        return value.to_dict(orient="records")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        import base64

        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def handle_invocation(body: bytes, content_type: str | None, model: ServedModel) -> Reply:
    """The whole request: parse, predict, serialise. Raises :class:`ProtocolError`."""
    model_input = parse_request(body, content_type, model)
    return Reply(200, serialize_predictions(predict(model, model_input)))
