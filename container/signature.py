"""Signature enforcement for column-based MLflow signatures: names, then types, strictly.

Unknown, missing or duplicate columns and values of the wrong type are ``INVALID_PARAMETER_VALUE``
errors naming the column (and the first bad row).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .errors import ProtocolError, quoted
from .loader import Column, ServedModel


def check_column_names(columns: list[Any], model: ServedModel) -> None:
    """Unknown, missing (required) or duplicate column names are a 400 naming them."""
    if model.columns is None:
        return
    expected = model.column_names
    given = [str(c) for c in columns]
    unknown = [c for c in given if c not in expected]
    if unknown:
        raise ProtocolError(
            "INVALID_PARAMETER_VALUE",
            f"unknown column(s) {quoted(unknown)}; the model takes {quoted(expected)}",
        )
    missing = [c.name for c in model.columns or () if c.required and c.name not in given]
    if missing:
        raise ProtocolError(
            "INVALID_PARAMETER_VALUE",
            f"missing column(s) {quoted(missing)}; the model takes {quoted(expected)}",
        )
    if len(set(given)) != len(given):
        dup = sorted({c for c in given if given.count(c) > 1})
        raise ProtocolError("INVALID_PARAMETER_VALUE", f"duplicate column(s) {quoted(dup)}")


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
        raise _type_error(col, series, bad, "null" if np.isnan(floats[bad][0]) else None)
    info = np.iinfo(col.dtype)
    if values.dtype.kind == "f" and ((floats < info.min) | (floats > info.max)).any():
        raise ProtocolError(
            "INVALID_PARAMETER_VALUE", f"column '{col.name}' has values out of {col.type} range"
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
    where = ""
    if bad is not None and bad.any():
        row = int(np.argmax(bad))
        shown = what or repr(series.iloc[row])[:40]
        where = f" (row {row}: {shown})"
    return ProtocolError(
        "INVALID_PARAMETER_VALUE",
        f"column '{col.name}' must be {col.type}{where}",
    )


