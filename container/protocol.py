"""The scoring protocol as plain functions: parse a request, predict, serialise, map errors.

Nothing here knows a web framework; engines call :func:`handle_invocation` (or the pieces) and turn
a :class:`Reply` into their own response. Inputs follow MLflow's scoring protocol: JSON with exactly
one of ``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs`` plus optional
``params``; MLflow's unwrapped LLM bodies (``messages``, ``prompt``, ``input``); ``text/csv`` (with
or without a header row), ``application/jsonlines``, Parquet; and Azure ML's ``input_data``.
Outputs are ``{"predictions": ...}`` (LLM bodies: the model's answer unwrapped, as MLflow), or CSV /
JSON Lines when ``Accept`` asks for them.

Two paths, one answer: for column signatures of plain types (numbers, strings, booleans) our own
enforcement builds exactly the input MLflow's would, faster (:mod:`.signature`); everything else
(no signature, tensor signatures, ``Array`` / ``Object`` / ``Map`` / ``AnyType`` / ``binary`` /
``datetime`` columns, LLM bodies) is parsed and enforced by MLflow's own functions
(:mod:`mldeploy._compat_mlflow`).

Errors are :class:`~mldeploy.container.errors.ProtocolError` carrying an ``error_code``;
:data:`~mldeploy.container.errors.STATUS` maps every code to its HTTP status in one table.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd

from mldeploy import _compat_mlflow as mlc

from . import _mlflow_messages
from ._csv import MAX_CSV_COLUMNS, parse_csv
from ._formats import (
    CSV_TYPE,
    JSON_TYPE,
    JSONLINES_TYPE,
    answer_type,
    request_kind,
    to_csv,
    to_jsonlines,
)
from .errors import MAX_MESSAGE_CHARS, STATUS, ProtocolError, error_body, first_line
from .loader import ServedModel
from .signature import check_column_names, enforce_columns, enforce_frame, infinite_cell, null_cell

_log = logging.getLogger("mldeploy.container")

INPUT_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
PARAMS_KEY = "params"
AZURE_KEY = "input_data"
# records naming more distinct keys than this are refused before a frame is built (a model
# without a signature; with one, unknown names are refused): the CSV header's limit
MAX_RECORD_COLUMNS = MAX_CSV_COLUMNS
# records whose frame would have more cells than this many times the values sent are refused
# (10,000 one-key records with distinct keys would make a 10,000 x 10,000 frame)
SPARSE_FACTOR = 8
_FREE_CELLS = 1_000_000  # small bodies never count as sparse
# column types our enforcement casts exactly as MLflow's does; others go to MLflow
_OUR_TYPES = frozenset({"double", "float", "long", "integer", "string", "boolean"})


@dataclass(frozen=True)
class Reply:
    """What an engine sends back: status, body bytes, their media type."""

    status: int
    body: bytes
    content_type: str = JSON_TYPE


@dataclass(frozen=True)
class ModelInput:
    """The model's input. ``enforced``: our signature enforcement built it (the flavor's predict
    may be called directly); otherwise MLflow's ``PyFuncModel.predict`` enforces the schema.
    ``unwrapped``: an LLM body, answered without the ``predictions`` wrapper (as MLflow)."""

    data: Any
    params: dict[str, Any] | None
    enforced: bool = True
    unwrapped: bool = False


def error_reply(err: ProtocolError, request_id: str | None = None) -> Reply:
    return Reply(err.status, error_body(err.error_code, err.message, request_id))


def check_content_type(content_type: str | None) -> str:
    """``json``, ``csv``, ``jsonlines`` or ``parquet``; 415 for anything else."""
    return request_kind(content_type)


def ours(model: ServedModel) -> bool:
    """True when our enforcement applies: a column signature of plain types only."""
    return model.columns is not None and all(c.type in _OUR_TYPES for c in model.columns)


# --------------------------------------------------------------------------------------------
# parsing


def parse_request(body: bytes, content_type: str | None, model: ServedModel) -> ModelInput:
    """Turn a request body into the model's input, enforcing the model's signature."""
    kind = request_kind(content_type)
    if not body:
        raise ProtocolError(
            "BAD_REQUEST", "empty body: send a JSON object such as {\"dataframe_split\": ...}"
        )
    if kind == "csv":
        return _frame_input(_parse_csv(body, model), model)
    if kind == "parquet":
        return _frame_input(_parse_parquet(body), model)
    if kind == "jsonlines":
        return _parse_jsonlines(body, model)
    return _parse_json(body, model)


def _loads(body: bytes, what: str = "body") -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # Python's json.dumps writes NaN / Infinity / -Infinity (MLflow's server reads them)
        if b"NaN" in body or b"Infinity" in body:
            try:
                return json.loads(body)
            except ValueError:
                pass
        raise ProtocolError("BAD_REQUEST", f"{what} is not valid JSON: {exc}") from None


def _parse_json(body: bytes, model: ServedModel) -> ModelInput:
    doc = _loads(body)
    if isinstance(doc, list):
        raise ProtocolError(
            "BAD_REQUEST",
            "body is a bare JSON list: wrap it as {\"instances\": [...]} (rows or tensors) or "
            "send {\"dataframe_split\": {\"columns\": [...], \"data\": [...]}}",
        )
    if not isinstance(doc, dict):
        raise ProtocolError(
            "BAD_REQUEST",
            f"body must be a JSON object with exactly one of {', '.join(INPUT_KEYS)}; "
            f"got a JSON {type(doc).__name__}",
        )
    if mlc.is_llm_payload(doc):
        # chat / completions / embeddings, as MLflow routes them: keys of the params schema are
        # params, the rest is the model's input, the answer is unwrapped
        data, params = mlc.split_llm_payload(doc, model.pyfunc.metadata.get_params_schema())
        return ModelInput(data, params, enforced=False, unwrapped=True)
    if AZURE_KEY in doc:
        doc = _from_azure(doc, model)
    return _parse_doc(doc, model, body)


def _parse_doc(doc: dict[str, Any], model: ServedModel, body: bytes) -> ModelInput:
    present = [k for k in INPUT_KEYS if k in doc]
    unknown = sorted(k for k in doc if k not in INPUT_KEYS and k != PARAMS_KEY)
    if unknown:
        raise ProtocolError(
            "BAD_REQUEST",
            f"unknown top-level key(s) {', '.join(map(repr, unknown[:10]))}: the body takes "
            f"exactly one of {', '.join(INPUT_KEYS)} and optionally 'params'",
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
    if not ours(model):
        return ModelInput(_mlflow_parse(key, value, model), params, enforced=False)
    if key == "dataframe_split":
        data = _frame_from_split(value, model, body)
    elif key == "dataframe_records":
        data = _frame_from_records(value, model)
    elif _is_table(value):
        data = _tensor_input(key, value, model)
    else:  # rows as arrays, a scalar: MLflow's parser and enforcement, as `mlflow models serve`
        return ModelInput(_mlflow_parse(key, value, model), params, enforced=False)
    return ModelInput(data, params)


def _mlflow_parse(key: str, value: Any, model: ServedModel) -> Any:
    """MLflow's own parsing (and casting to the schema) of one input key."""
    meta = model.pyfunc.metadata
    if mlc.is_signature_from_type_hint(meta):
        if key != "inputs":
            raise ProtocolError(
                "INVALID_PARAMETER_VALUE",
                f"this model's signature comes from type hints: send {{\"inputs\": ...}}, "
                f"not {key!r}",
            )
        return value
    if key == "dataframe_split":
        _check_split_shape(value)
    elif _is_records(value):
        _record_columns(value, key, sparse=True)
    try:
        return mlc.parse_dataframe_or_tensor({key: value}, meta.get_input_schema())
    except mlc.mlflow_exception() as exc:
        raise _from_mlflow(exc, model, f"'{key}' is invalid: ") from None


def _from_mlflow(
    exc: Any, model: ServedModel, prefix: str = "", params: dict[str, Any] | None = None
) -> ProtocolError:
    """MLflow's enforcement error as ours: MLflow's code, a message naming the column, property
    or param and the kind of value sent, never the value (:mod:`._mlflow_messages`)."""
    code = getattr(exc, "error_code", "")
    code = code if code in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE") else "BAD_REQUEST"
    message = None
    if params and str(getattr(exc, "message", "")).startswith("Invalid parameters found"):
        message = _mlflow_messages.bad_params(params, model.pyfunc.metadata.get_params_schema())
    if message is None:
        message = _mlflow_messages.describe(exc, _column_types(model))
    return ProtocolError(code, prefix + first_line(message))


def _column_types(model: ServedModel) -> dict[str, str] | None:
    schema = model.pyfunc.metadata.get_input_schema()
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return None
    return {spec.name: repr(spec.type) for spec in schema.inputs}


def _check_split_shape(value: Any) -> None:
    """The split-orient checks MLflow (pandas) makes, before a large body is built into a frame,
    in linear time: names are scalars, ``index`` as long as ``data``."""
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
    rows, columns, index = value["data"], value.get("columns"), value.get("index")
    if not isinstance(rows, list):
        raise ProtocolError("BAD_REQUEST", "'dataframe_split.data' must be a list of rows")
    if columns is not None and (
        not isinstance(columns, list)
        or not all(isinstance(c, (str, int, float)) and c is not True and c is not False
                   for c in columns)
    ):
        raise ProtocolError(
            "BAD_REQUEST", "'dataframe_split.columns' must be a list of names (strings or numbers)"
        )
    if index is not None:
        if not isinstance(index, list):
            raise ProtocolError("BAD_REQUEST", "'dataframe_split.index' must be a list")
        if len(index) != len(rows):
            raise ProtocolError(
                "BAD_REQUEST",
                f"'dataframe_split' has {len(index)} index labels for {len(rows)} rows of "
                "'data': send one label per row, or no 'index'",
            )


def _frame_from_split(value: Any, model: ServedModel, body: bytes) -> pd.DataFrame:
    _check_split_shape(value)
    rows = value["data"]
    columns = value.get("columns")
    if columns is None:
        columns = list(model.column_names) or None
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
    rows: list, columns: list[Any], model: ServedModel, body: bytes
) -> pd.DataFrame | None:
    """Fast path for all-numeric signatures: one 2D array, one cast. None when it does not apply
    (ragged rows, nulls, strings, booleans, mixed target types): the general path then says
    precisely what is wrong."""
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
    # numpy turns JSON booleans into 1.0/0.0 (or 1/0) silently: only when such values occur are
    # the body searched for the literals (the general path then names the bad cell)
    if ((array == 0) | (array == 1)).any() and (b"true" in body or b"false" in body):
        return None
    order = [name for name in model.column_names if name in columns]
    if order != columns:  # signature order, as MLflow's enforcement gives the model
        position = {name: i for i, name in enumerate(columns)}
        array = array[:, [position[name] for name in order]]
    # object-dtype names: scikit-learn's feature-name check is cheaper on them than on
    # pandas' string dtype
    return pd.DataFrame(array.astype(dtype, copy=False), columns=pd.Index(order, dtype=object))


def _frame_from_records(
    value: Any, model: ServedModel, key: str = "dataframe_records"
) -> pd.DataFrame:
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise ProtocolError(
            "BAD_REQUEST",
            "'dataframe_records' must be a list of objects, one per row "
            "(pandas' DataFrame.to_dict(orient='records'))",
        )
    if not value:
        raise ProtocolError("BAD_REQUEST", "'dataframe_records' has no rows")
    # names checked before pandas builds the frame (unknown ones never become columns, so the
    # frame is at most rows x signature columns)
    names: Any = _record_columns(value, key, sparse=model.columns is None)
    if model.columns is not None and not names <= set(model.column_names):
        names = dict.fromkeys(k for record in value for k in record)  # in order, for the message
    check_column_names(list(names), model)
    frame = pd.DataFrame.from_records(value)
    return enforce_columns(frame, model)


def _is_records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(r, dict) for r in value)


def _record_columns(records: list[dict[str, Any]], key: str, sparse: bool) -> set[Any]:
    """The column names a list of records makes, in linear time (one C-level pass); a 400 when
    they are more than :data:`MAX_RECORD_COLUMNS` or (``sparse``) when the frame would be mostly
    holes (more cells than :data:`SPARSE_FACTOR` times the values sent)."""
    names: set[Any] = set().union(*records)
    if len(names) > MAX_RECORD_COLUMNS:
        raise ProtocolError(
            "BAD_REQUEST",
            f"'{key}' names {len(names)} distinct columns: send at most {MAX_RECORD_COLUMNS}, "
            "the same keys in every record",
        )
    cells = len(records) * len(names)
    if sparse and cells > _FREE_CELLS:
        values = sum(map(len, records))
        if cells > SPARSE_FACTOR * values:
            raise ProtocolError(
                "BAD_REQUEST",
                f"'{key}' has {len(records)} records naming {len(names)} distinct columns but "
                f"only {values} values: the table would be mostly empty; send records that "
                "share their keys",
            )
    return names


def _is_table(value: Any) -> bool:
    """A list of objects (records) or an object (of columns)."""
    return isinstance(value, dict) or _is_records(value)


def _tensor_input(key: str, value: Any, model: ServedModel) -> pd.DataFrame:
    """``instances`` / ``inputs`` (TF-serving style) for a column signature, as a table: a list
    of objects or an object of columns becomes a DataFrame, enforced here."""
    if isinstance(value, list):
        return _frame_from_records(value, model, key)
    check_column_names(list(value), model)  # before pandas builds a frame of the names
    try:
        frame = pd.DataFrame({k: _as_column(v) for k, v in value.items()})
    except (ValueError, TypeError) as exc:
        raise ProtocolError(
            "BAD_REQUEST", f"'{key}' columns do not form a table: {first_line(exc)}"
        ) from None
    return enforce_columns(frame, model)  # its columns are the names checked above


def _as_column(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


def _from_azure(doc: dict[str, Any], model: ServedModel) -> dict[str, Any]:
    """Azure ML's no-code body: ``{"input_data": {"columns", "index", "data"}}`` (split orient),
    ``{"input_data": {"name": tensor, ...}}`` or ``{"input_data": [...]}`` (tensors or rows)."""
    unknown = sorted(k for k in doc if k not in (AZURE_KEY, PARAMS_KEY))
    if unknown:
        raise ProtocolError(
            "BAD_REQUEST",
            f"unknown top-level key(s) {', '.join(map(repr, unknown[:10]))} beside "
            f"'{AZURE_KEY}': it takes only 'params' besides",
        )
    value = doc[AZURE_KEY]
    out = {k: v for k, v in doc.items() if k == PARAMS_KEY}
    if isinstance(value, dict) and "data" in value and set(value) <= {"columns", "index", "data"}:
        out["dataframe_split"] = value
    elif _is_records(value):
        out["dataframe_records"] = value
    elif isinstance(value, list) and model.columns is not None:
        out["dataframe_split"] = {"data": value}
    else:
        out["inputs"] = value
    return out


def _parse_jsonlines(body: bytes, model: ServedModel) -> ModelInput:
    """One record (object) or row (array) per line, as SageMaker Batch Transform's
    ``SplitType=Line`` sends them."""
    values = []
    for number, line in enumerate(body.split(b"\n")):
        if line.strip():
            values.append(_loads(line, f"JSON Lines line {number}"))
    if not values:
        raise ProtocolError("BAD_REQUEST", "the JSON Lines body has no lines")
    if all(isinstance(v, dict) for v in values):
        doc: dict[str, Any] = {"dataframe_records": values}
    elif all(isinstance(v, list) for v in values):
        if model.columns is not None or _column_schema(model):
            doc = {"dataframe_split": {"data": values}}
        else:
            doc = {"instances": values}
    else:
        raise ProtocolError(
            "BAD_REQUEST",
            "JSON Lines lines must all be objects (records) or all be arrays (rows)",
        )
    if "dataframe_split" in doc and not ours(model):
        names = _schema_names(model)
        if names:
            doc["dataframe_split"]["columns"] = names
    return _parse_doc(doc, model, body)


def _column_schema(model: ServedModel) -> bool:
    schema = model.pyfunc.metadata.get_input_schema()
    return schema is not None and not schema.is_tensor_spec() and schema.has_input_names()


def _schema_names(model: ServedModel) -> list[str] | None:
    if not _column_schema(model):
        return None
    return list(model.pyfunc.metadata.get_input_schema().input_names())


def _parse_csv(body: bytes, model: ServedModel) -> pd.DataFrame:
    dtypes = None
    if model.numeric_columns:
        dtypes = {c.name: c.dtype for c in model.columns or ()}
    return parse_csv(body, model, dtypes)


def _parse_parquet(body: bytes) -> pd.DataFrame:
    try:
        return pd.read_parquet(io.BytesIO(body))
    except ImportError:
        raise ProtocolError(
            "UNSUPPORTED_MEDIA_TYPE", "Parquet bodies need pyarrow in the serving environment"
        ) from None
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a bad file
        raise ProtocolError(
            "BAD_REQUEST", f"body is not a Parquet file ({type(exc).__name__})"
        ) from None


def _frame_input(frame: pd.DataFrame, model: ServedModel) -> ModelInput:
    if ours(model):
        return ModelInput(enforce_frame(frame, model), None)
    if frame.empty:
        raise ProtocolError("BAD_REQUEST", "the input has no rows")
    return ModelInput(frame, None, enforced=False)


# --------------------------------------------------------------------------------------------
# predict and serialise


def predict(model: ServedModel, model_input: ModelInput) -> Any:
    """Run the model. Signature problems MLflow finds become 400; anything else the model raises
    becomes ``MODEL_ERROR`` (500) with a short message — the traceback goes to the log — unless
    the input had a null the model refused (400 naming the cell: the client's mistake)."""
    MlflowException = mlc.mlflow_exception()

    data, params = model_input.data, model_input.params
    try:
        if (
            model_input.enforced
            and model.direct_predict is not None
            and isinstance(data, pd.DataFrame)
        ):
            # ``data`` went through enforce_columns: call the flavor directly (params are still
            # checked against the params schema by MLflow's own function).
            params = mlc.enforce_params_schema(params, model.pyfunc.metadata.get_params_schema())
            if model.direct_takes_params:
                return model.direct_predict(data, params=params)
            return model.direct_predict(data)
        if params is not None:
            return model.pyfunc.predict(data, params=params)
        return model.pyfunc.predict(data)
    except MlflowException as exc:
        if exc.error_code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST"):
            raise _from_mlflow(exc, model, params=model_input.params) from None
        raise _model_error(exc, data, model) from exc
    except Exception as exc:  # the model's own code: never crash the worker
        raise _model_error(exc, data, model) from exc


def _model_error(exc: BaseException, data: Any, model: ServedModel) -> ProtocolError:
    cell = null_cell(data, model)
    if cell is not None:
        column, row = cell
        return ProtocolError(
            "BAD_REQUEST",
            f"column {column!r} has a null at row {row} and the model does not take nulls "
            f"({type(exc).__name__}): send a value",
        )
    if (cell := infinite_cell(data)) is not None:  # as a null: the caller's value, not a 500
        return ProtocolError(
            "BAD_REQUEST",
            f"column {cell[0]!r} has an infinite number at row {cell[1]} and the model does not "
            f"take it ({type(exc).__name__}): send a finite number",
        )
    return ProtocolError(
        "MODEL_ERROR", f"the model raised {type(exc).__name__}: {first_line(exc)}"
    )


def serialize_predictions(predictions: Any, unwrapped: bool = False) -> bytes:
    """``{"predictions": ...}`` as MLflow shapes it (DataFrame and Series -> records, arrays ->
    lists), NaN and infinities as MLflow writes them (``NaN``, ``Infinity``); ``unwrapped``: the
    answer alone (MLflow's LLM bodies)."""
    if isinstance(predictions, (pd.DataFrame, pd.Series)):
        payload: Any = mlc.jsonable(predictions)
    else:
        payload = predictions
    doc = payload if unwrapped else {"predictions": payload}
    try:
        out = orjson.dumps(
            doc, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
            | orjson.OPT_PASSTHROUGH_DATETIME,
            default=_default,
        )
    except TypeError:
        out = b"null"  # not orjson's types: MLflow's encoder below
    if b"null" not in out:
        return out
    # a null may be a NaN orjson wrote as null, or a value orjson could not write: exactly what
    # MLflow's own encoder writes
    try:
        whole = mlc.jsonable(predictions)
        return mlc.dumps_like_mlflow(whole if unwrapped else {"predictions": whole})
    except (TypeError, ValueError) as exc:
        raise ProtocolError(
            "MODEL_ERROR", f"the model's output cannot be written as JSON: {first_line(exc)}"
        ) from None


def _default(value: Any) -> Any:
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufO":
        return value.tolist()
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def serialize_as(predictions: Any, media_type: str, unwrapped: bool = False) -> bytes:
    """The answer in ``media_type`` (one of :data:`._formats.ANSWER_TYPES`)."""
    if media_type == JSON_TYPE:
        return serialize_predictions(predictions, unwrapped)
    rows = orjson.loads(_jsonable_bytes(predictions))
    if media_type == CSV_TYPE:
        return to_csv(rows)
    return to_jsonlines(rows)


def _jsonable_bytes(predictions: Any) -> bytes:
    """The predictions as plain JSON (NaN as null), for the CSV / JSON Lines writers."""
    body = serialize_predictions(predictions, unwrapped=True)
    try:
        orjson.loads(body)
        return body
    except orjson.JSONDecodeError:  # NaN literals: the line formats write them as empty / null
        return orjson.dumps(json.loads(body))


def handle_invocation(
    body: bytes, content_type: str | None, model: ServedModel, accept: str | None = None
) -> Reply:
    """The whole request: parse, predict, serialise in the format ``Accept`` asks for (JSON by
    default). Raises :class:`ProtocolError`."""
    media_type = answer_type(accept)
    model_input = parse_request(body, content_type, model)
    predictions = predict(model, model_input)
    return Reply(200, serialize_as(predictions, media_type, model_input.unwrapped), media_type)


__all__ = [
    "CSV_TYPE", "JSONLINES_TYPE", "JSON_TYPE", "MAX_MESSAGE_CHARS", "STATUS", "ModelInput",
    "ProtocolError", "Reply", "check_content_type", "enforce_columns", "enforce_frame",
    "error_body", "error_reply", "handle_invocation", "parse_request", "predict",
    "serialize_as", "serialize_predictions",
]
