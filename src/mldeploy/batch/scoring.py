"""Score one chunk with the serving runtime's own protocol code: the signature is enforced by
``mldeploy.container.signature`` and the model called by ``mldeploy.container.protocol.predict``,
so a chunk gets exactly the answers ``/invocations`` would give for the same rows.

A chunk that fails is split in halves until the failing rows are single rows: each bad row gets
the protocol's own message for it, named by file and row; the good rows are scored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mldeploy.container import protocol
from mldeploy.container.errors import ProtocolError
from mldeploy.container.loader import ServedModel
from mldeploy.container.signature import check_column_names, enforce_frame

from .outputs import OutputSpec
from .sources import BadRow

# The protocol names the row inside the frame it was given; for a one-row frame that is always
# row 0, and the batch message names the file row instead.
_ROW_ZERO = re.compile(r" ?\(row 0(?:: (?P<value>.*?))?\)")


@dataclass
class Scored:
    """The answer for one chunk: prediction columns for the rows in ``ok`` (a boolean mask over
    the chunk), and the rows that could not be scored."""

    predictions: pd.DataFrame | None
    ok: np.ndarray
    bad: list[BadRow] = field(default_factory=list)
    failed: bool = False  # a bad row with --on-error fail: ``bad`` holds it


class Scorer:
    """Scores DataFrames for one loaded model."""

    def __init__(self, model: ServedModel) -> None:
        self.model = model
        self.output = OutputSpec.from_metadata(model.pyfunc.metadata)

    def check_columns(self, columns: list[str]) -> None:
        """The protocol's column-name check (unknown, missing, duplicate) on a file's columns."""
        check_column_names(columns, self.model)

    def score(self, frame: pd.DataFrame, rows: np.ndarray, file: str, *,
              skip: bool) -> Scored:
        """Predictions for ``frame`` (file rows ``rows``). Without ``skip`` the first bad row
        raises :class:`RowError`; with it bad rows are collected and the others scored."""
        n = len(frame)
        if n == 0:
            return Scored(None, np.zeros(0, dtype=bool))
        ok = np.ones(n, dtype=bool)
        parts: list[pd.DataFrame] = []
        bad: list[BadRow] = []
        self._score(frame.reset_index(drop=True), 0, rows, file, skip, ok, parts, bad)
        predictions = pd.concat(parts, ignore_index=True) if len(parts) > 1 else (
            parts[0].reset_index(drop=True) if parts else None)
        return Scored(predictions, ok, bad)

    def _score(self, frame: pd.DataFrame, start: int, rows: np.ndarray, file: str, skip: bool,
               ok: np.ndarray, parts: list[pd.DataFrame], bad: list[BadRow]) -> None:
        # Iterative halving: a stack of (start, stop) ranges, scored in file order.
        stack = [(start, start + len(frame))]
        while stack:
            lo, hi = stack.pop()
            block = frame.iloc[lo:hi]
            try:
                parts.append(self._predict(block))
                continue
            except ProtocolError as exc:
                error = exc
            if hi - lo > 1:
                mid = (lo + hi) // 2
                stack.append((mid, hi))
                stack.append((lo, mid))
                continue
            row = BadRow(file, int(rows[lo]), error.error_code, _one_row(error.message),
                         _values(block))
            if not skip:
                raise RowError(row)
            ok[lo] = False
            bad.append(row)

    def _predict(self, block: pd.DataFrame) -> pd.DataFrame:
        data = enforce_frame(block, self.model)
        predictions = protocol.predict(self.model, protocol.ModelInput(data, None))
        return self.output.frame(predictions, len(block))


class RowError(Exception):
    """A bad row with ``--on-error fail``."""

    def __init__(self, row: BadRow) -> None:
        super().__init__(row.describe())
        self.row = row


def _one_row(message: str) -> str:
    def replace(match: re.Match[str]) -> str:
        return f" ({match.group('value')})" if match.group("value") else ""

    return _ROW_ZERO.sub(replace, message, count=1)


def _values(block: pd.DataFrame) -> dict[str, Any] | None:
    try:
        record = block.iloc[0].to_dict()
    except (IndexError, ValueError):
        return None
    return {str(k): _plain(v) for k, v in record.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and value != value:
        return None
    return value
