"""Signature enforcement for column-based MLflow signatures: names, then types, strictly.

Unknown, missing or duplicate columns are ``INVALID_PARAMETER_VALUE`` errors naming them; values of
the wrong type are ``BAD_REQUEST`` (MLflow's codes for the same mistakes) naming the column, the
first bad row and what it holds, never the value itself.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from .errors import ProtocolError, quoted
from .loader import Column, ServedModel


def check_column_names(columns: list[Any], model: ServedModel) -> None:
    """Unknown, missing (required) or duplicate column names are a 400 naming them; linear in the
    number of names (a body of 40,000 repeated names is refused in milliseconds)."""
    if model.columns is None:
        return
    expected = model.column_names
    known = set(expected)
    unknown = list(dict.fromkeys(c for c in columns if not _is_known(c, known)))
    if unknown:
        raise ProtocolError(
            "INVALID_PARAMETER_VALUE",
            f"unknown column(s) {quoted(unknown)}; the model takes {quoted(expected)}",
        )
    given = set(columns)
    missing = [c.name for c in model.columns or () if c.required and c.name not in given]
    if missing:
        raise ProtocolError(
            "INVALID_PARAMETER_VALUE",
            f"missing column(s) {quoted(missing)}; the model takes {quoted(expected)}",
        )
    if len(given) != len(columns):
        dup = sorted(str(c) for c, n in Counter(columns).items() if n > 1)
        raise ProtocolError("INVALID_PARAMETER_VALUE", f"duplicate column(s) {quoted(dup)}")


def _is_known(name: Any, known: set[str]) -> bool:
    try:
        return name in known
    except TypeError:  # an unhashable name
        return False


def null_cell(data: Any, model: ServedModel) -> tuple[str, int] | None:
    """The first (column, row) holding a null in a DataFrame's required columns (optional ones
    may be null), else None. Used on the error path only."""
    if not isinstance(data, pd.DataFrame):
        return None
    try:
        nulls = data.isna()
    except (TypeError, ValueError):
        return None
    optional = {c.name for c in model.columns or () if not c.required}
    for name in nulls.columns:
        if name in optional:
            continue
        flags = nulls[name].to_numpy()
        if flags.any():
            return str(name), int(np.argmax(flags))
    return None


def infinite_cell(data: Any) -> tuple[str, int] | None:
    """The first (column, row) of a DataFrame holding +/-infinity (JSON ``1e999``,
    ``-Infinity``, CSV ``inf``), else None. Used on the error path only."""
    if not isinstance(data, pd.DataFrame):
        return None
    for name in data.columns:
        values = data[name].to_numpy()
        if values.dtype.kind != "f":
            continue
        flags = np.isinf(values)
        if flags.any():
            return str(name), int(np.argmax(flags))
    return None


def enforce_frame(frame: pd.DataFrame, model: ServedModel) -> pd.DataFrame:
    """Check the frame's column names against the signature, then cast (see enforce_columns)."""
    check_column_names(list(frame.columns), model)
    return enforce_columns(frame, model)


def enforce_columns(frame: pd.DataFrame, model: ServedModel) -> pd.DataFrame:
    """Cast each column to its signature type, in signature order; 400 on any value that does
    not fit (naming the column, the row and the expected type)."""
    if model.columns is None:
        return frame
    if frame.empty:
        raise ProtocolError("BAD_REQUEST", "the input has no rows")
    out = {}
    for col in model.columns:
        if col.name not in frame.columns:
            continue
        out[col.name] = _cast(frame[col.name], col)
    return pd.DataFrame(out, index=frame.index)


def _cast(series: pd.Series, col: Column) -> Any:
    values = series.to_numpy()
    if col.type in ("double", "float", "long", "integer"):
        return _cast_number(series, values, col)
    if col.type == "boolean":
        if values.dtype == bool:
            return values
        bad = ~series.map(lambda v: isinstance(v, (bool, np.bool_))).to_numpy(dtype=bool)
        if bad.any():
            raise _type_error(col, series, bad)
        return values.astype(bool)
    if col.type == "string":
        bad = ~series.map(lambda v: isinstance(v, str) or v is None).to_numpy(dtype=bool)
        if bad.any():
            raise _type_error(col, series, bad)
        return values.astype(object)
    if col.type == "datetime":
        try:
            return pd.to_datetime(series).to_numpy()
        except (ValueError, TypeError):
            raise _type_error(col, series, None) from None
    return values


def _cast_number(series: pd.Series, values: np.ndarray, col: Column) -> np.ndarray:
    """Numbers only: strings and booleans are type errors; nulls only in float columns."""
    if values.dtype.kind not in "fiu":
        bad = np.fromiter(
            (not _is_number_or_null(v) for v in values), dtype=bool, count=len(values)
        )
        if bad.any():
            raise _type_error(col, series, bad)
        values = values.astype(np.float64)
    if col.dtype.kind == "f":
        return values.astype(col.dtype, copy=False)
    floats = values.astype(np.float64, copy=False)
    bad = np.isnan(floats) | (floats != np.trunc(floats))
    if bad.any():
        what = "null" if np.isnan(floats[bad][0]) else "got a fractional number"
        raise _type_error(col, series, bad, what)
    info = np.iinfo(col.dtype)
    if values.dtype.kind == "f" and ((floats < info.min) | (floats > info.max)).any():
        raise ProtocolError(
            "BAD_REQUEST", f"column '{col.name}' has values out of {col.type} range"
        )
    return values.astype(col.dtype)


def _is_number_or_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, (bool, np.bool_)):
        return False
    return isinstance(value, (int, float, np.integer, np.floating))


def _type_error(
    col: Column, series: pd.Series, bad: np.ndarray | None, what: str | None = None
) -> ProtocolError:
    """Names the column, the first bad row and the type found there; never the value (a body may
    carry secrets, and error messages reach logs and dashboards)."""
    where = ""
    if bad is not None and bad.any():
        row = int(np.argmax(bad))
        where = f" (row {row}: {what or _kind(series.iloc[row])})"
    return ProtocolError(
        "BAD_REQUEST",  # as MLflow's "Failed to convert column ..."
        f"column '{col.name}' must be {col.type}{where}",
    )


def _kind(value: Any) -> str:
    """What a bad cell holds, said without its value: ``null`` or ``got a string`` etc."""
    if value is None or (isinstance(value, float) and value != value):
        return "null"
    kinds = (
        ((bool, np.bool_), "a boolean"), (str, "a string"), ((int, np.integer), "an integer"),
        ((float, np.floating), "a number"), ((list, tuple, np.ndarray), "a list"),
        (dict, "an object"),
    )
    for types, name in kinds:
        if isinstance(value, types):
            return f"got {name}"
    return f"got {type(value).__name__}"
