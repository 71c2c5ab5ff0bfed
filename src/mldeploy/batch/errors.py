"""Errors of a batch run, in mldeploy's tree (one line and an exit code from the CLI)."""

from __future__ import annotations

from ..errors import MldeployError, UsageError
from .sources import BadRow

_HINT = ("fix the row, or pass --on-error skip to score the other rows and write the bad ones "
         "to a side file")


class BadRowError(UsageError):
    """A row that does not fit the model's signature (or does not parse), with
    ``--on-error fail``. ``row`` names the file and row."""

    def __init__(self, row: BadRow) -> None:
        super().__init__(row.describe(), hint=_HINT)
        self.row = row


class RowModelError(MldeployError):
    """The model raised on a row, with ``--on-error fail``."""

    def __init__(self, row: BadRow) -> None:
        super().__init__(row.describe(), hint=_HINT)
        self.row = row


def row_error(row: BadRow) -> MldeployError:
    return RowModelError(row) if row.error_code == "MODEL_ERROR" else BadRowError(row)
