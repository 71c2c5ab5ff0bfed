"""Progress of a run: a bar on a terminal (rows, rows/s, ETA) with ``rich`` or ``tqdm`` when one
is installed (extra ``mldeploy[batch]``), nothing otherwise; the CLI prints one summary line at
the end either way."""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """Counts rows. ``total_rows`` when known (Parquet metadata); else the ETA comes from the
    bytes read of ``total_bytes``."""

    def __init__(self, *, enabled: bool | None, total_rows: int | None,
                 total_bytes: int | None, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.total_rows, self.total_bytes = total_rows, total_bytes
        self.rows = 0
        self.started = time.monotonic()
        if enabled is None:
            enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar = _make_bar(self.stream, total_rows) if enabled else None

    def advance(self, rows: int, bytes_done: int | None = None) -> None:
        self.rows += rows
        if self._bar is None:
            return
        total = self.total_rows
        if total is None and self.total_bytes and bytes_done:
            total = max(self.rows, int(self.rows * self.total_bytes / max(bytes_done, 1)))
        self._bar.update(self.rows, total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


def _make_bar(stream: Any, total: int | None) -> Any:
    try:
        return _RichBar(stream, total)
    except ImportError:
        pass
    try:
        return _TqdmBar(stream, total)
    except ImportError:
        return None


class _RichBar:
    def __init__(self, stream: Any, total: int | None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self._progress = RichProgress(
            TextColumn("scoring"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} rows/s"), TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(),
            console=Console(file=stream), transient=False,
        )
        self._task = self._progress.add_task("rows", total=total, rate="-")
        self._progress.start()
        self._started = time.monotonic()

    def update(self, rows: int, total: int | None) -> None:
        rate = rows / max(time.monotonic() - self._started, 1e-6)
        self._progress.update(self._task, completed=rows, total=total, rate=f"{rate:,.0f}")

    def close(self) -> None:
        self._progress.stop()


class _TqdmBar:
    def __init__(self, stream: Any, total: int | None) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, unit=" rows", unit_scale=True, file=stream,
                         desc="scoring", dynamic_ncols=True)

    def update(self, rows: int, total: int | None) -> None:
        if total is not None and total != self._bar.total:
            self._bar.total = total
        self._bar.update(rows - self._bar.n)

    def close(self) -> None:
        self._bar.close()
