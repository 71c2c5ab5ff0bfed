"""``text/csv`` bodies: header or no header, checked in linear time before pandas sees them.

* The header row is read on its own first: more names than the signature has columns (or than
  :data:`MAX_CSV_COLUMNS` without a signature) and duplicate names are refused at once (pandas'
  renaming of duplicate headers is quadratic in their count).
* Without a header (the SageMaker SDK's ``CSVSerializer`` and Batch Transform send none) the
  signature's column names are used, in signature order, when the first row has exactly as many
  fields as the signature has columns and none of them is a column name.
* Every row must have as many fields as the header: pandas would otherwise take extra leading fields
  as the index and the model would score shifted columns.
* ``true`` / ``FALSE`` are not numbers: pandas' float parser would read them as 1.0 / 0.0.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from .errors import ProtocolError, quoted
from .loader import ServedModel

MAX_CSV_COLUMNS = 10_000
_BOOL_SPELLINGS = (b"rue", b"RUE", b"alse", b"ALSE")  # True/TRUE/true, False/FALSE/false


def parse_csv(body: bytes, model: ServedModel, dtypes: dict[str, Any] | None) -> pd.DataFrame:
    """The body as a DataFrame with the signature's column names (raises :class:`ProtocolError`)."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(
            "BAD_REQUEST", f"CSV body is not valid UTF-8 (byte {exc.start})"
        ) from None
    first, rest_at = _first_line(body)
    fields = _fields(first)
    names = model.column_names
    limit = len(names) if names else MAX_CSV_COLUMNS
    if len(fields) > limit:
        what = "the model takes" if names else "the limit is"
        raise ProtocolError(
            "BAD_REQUEST",
            f"the CSV's first row has {len(fields)} fields; {what} {limit} columns",
        )
    header = True
    if names and fields and not set(fields) & set(names):
        if len(fields) != len(names):
            raise ProtocolError(
                "BAD_REQUEST",
                f"the CSV has no header row and its first row has {len(fields)} fields; "
                f"the model takes {len(names)} columns ({quoted(names)}): send that many "
                "values per row in signature order, or a header row of names",
            )
        header = False
    if header:
        dup = [name for name, count in Counter(fields).items() if count > 1]
        if dup:
            raise ProtocolError("INVALID_PARAMETER_VALUE", f"duplicate column(s) {quoted(dup)}")
        data_at = rest_at
    else:
        data_at = 0
    width = len(fields)
    _check_row_widths(body, data_at, width)
    if dtypes is not None and any(s in body for s in _BOOL_SPELLINGS):
        dtypes = None  # a boolean literal somewhere: let the type check name its column and row
    source = io.BytesIO(body)
    kwargs: dict[str, Any] = {"index_col": False}
    if not header:
        kwargs.update(header=None, names=list(names))
    try:
        return pd.read_csv(source, dtype=dtypes, **kwargs)
    except (ValueError, TypeError):
        if dtypes is None:
            raise ProtocolError(
                "BAD_REQUEST", "body is not CSV with a header row of column names"
            ) from None
    # a value that is not a number under a numeric dtype: read untyped so that the signature
    # check names the column and the row (pandas' own message quotes the value)
    try:
        return pd.read_csv(io.BytesIO(body), **kwargs)
    except (ValueError, TypeError, pd.errors.ParserError) as exc:
        raise ProtocolError(
            "BAD_REQUEST", f"body is not CSV ({type(exc).__name__})"
        ) from None


def _first_line(body: bytes) -> tuple[bytes, int]:
    end = body.find(b"\n")
    if end < 0:
        return body, len(body)
    return body[:end], end + 1


def _fields(line: bytes) -> list[str]:
    text = line.decode("utf-8").rstrip("\r")
    if not text.strip():
        raise ProtocolError("BAD_REQUEST", "the CSV's first row is empty")
    try:
        return next(csv.reader([text]))
    except (csv.Error, StopIteration):
        raise ProtocolError("BAD_REQUEST", "the CSV's first row cannot be read") from None


def _check_row_widths(body: bytes, start: int, width: int) -> None:
    """Every non-empty row from ``start`` has ``width`` fields: one vectorised pass over the bytes
    when the body has no quotes, the csv module otherwise."""
    data = body[start:]
    if not data.strip():
        return
    if b'"' in data:
        for number, row in enumerate(csv.reader(io.StringIO(data.decode("utf-8")))):
            if row and len(row) != width:
                raise _width_error(number, len(row), width)
        return
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)
    if not len(ends) or ends[-1] != len(buf) - 1:
        ends = np.append(ends, len(buf))
    starts = np.concatenate(([0], ends[:-1] + 1))
    commas = np.concatenate(([0], np.cumsum(buf == 44)))
    per_row = commas[ends] - commas[starts]
    lengths = ends - starts
    # blank lines (or a lone "\r") are skipped by pandas, as here
    blank = (lengths == 0) | ((lengths == 1) & (buf[np.minimum(starts, len(buf) - 1)] == 13))
    bad = (per_row != width - 1) & ~blank
    if bad.any():
        row = int(np.argmax(bad))
        raise _width_error(row, int(per_row[row]) + 1, width)


def _width_error(row: int, got: int, width: int) -> ProtocolError:
    return ProtocolError(
        "BAD_REQUEST",
        f"CSV data row {row} has {got} fields; the header has {width}: every row must have "
        "one field per column",
    )
