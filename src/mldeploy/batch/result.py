"""What a batch run did."""

from __future__ import annotations

from dataclasses import dataclass

from .options import Engine, Format


@dataclass(frozen=True)
class BatchResult:
    output: str
    format: Format
    files: int
    rows_read: int
    rows_written: int
    rows_skipped: int
    skipped_output: str | None  # the side file of skipped rows, when some were skipped
    seconds: float
    engine: Engine
    workers: int = 1

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """The one line the CLI prints at the end."""
        line = (
            f"scored {self.rows_written:,} of {self.rows_read:,} rows from {self.files} "
            f"file{'s' if self.files != 1 else ''} in {self.seconds:.1f} s "
            f"({self.rows_per_second:,.0f} rows/s) -> {self.output}"
        )
        if self.rows_skipped:
            line += f"; {self.rows_skipped:,} skipped -> {self.skipped_output}"
        return line
