"""The local engine: read chunks, score them (in this process or in ``workers`` processes that
each load the model once), write them in input order to an atomic output."""

from __future__ import annotations

import collections
import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa

from mldeploy.container.errors import ProtocolError
from mldeploy.container.loader import fork_safe, load_model

from ..errors import UsageError
from .errors import row_error
from .options import BatchOptions, Format, OnError
from .outputs import OutputSpec
from .progress import Progress
from .result import BatchResult
from .scoring import RowError, Scored, Scorer
from .sinks import AtomicFile, SkippedRows, TableWriter
from .sources import Chunk, InputFile, ReadSpec, discover, file_columns, parquet_rows, read_chunks


def run_local(options: BatchOptions, model_dir: str) -> BatchResult:
    fmt = options.resolved_output_format
    files = discover(options.input, options.input_format)
    scorer = Scorer(load_model(model_dir))
    spec = _read_spec(scorer, options)
    _check_keep(options.keep, scorer.output)
    for file in files:
        _check_file(file, scorer, options.keep)
    skip = options.on_error is OnError.SKIP
    sink = AtomicFile(options.output, overwrite=options.overwrite)
    skipped = SkippedRows(options.skipped_path, overwrite=options.overwrite) if skip else None
    total_rows = _total_rows(files)
    started = time.monotonic()
    writer = TableWriter(sink.temp, fmt)
    progress: Progress | None = None
    rows_read = 0
    done = keep_side_file = False
    try:
        with _Pipeline(scorer, model_dir, options.workers, skip) as pipeline:
            # the bar (a thread) after the workers started: they are forked from here
            progress = Progress(enabled=options.progress, total_rows=total_rows,
                                total_bytes=sum(f.size or 0 for f in files) or None)
            progress.started = started
            for chunk, scored in pipeline.run(_chunks(files, spec)):
                if scored.failed or (chunk.bad and not skip):
                    raise row_error(min([*chunk.bad, *scored.bad], key=lambda b: b.row))
                rows_read += len(chunk.rows) + len(chunk.bad)
                if scored.predictions is not None:
                    writer.write(_table(chunk, scored, options.keep))
                if skipped is not None:
                    skipped.write(_skipped_records(chunk, scored))
                progress.advance(len(chunk.rows) + len(chunk.bad), chunk.bytes_read)
        writer.close()
        if rows_read == 0:
            raise UsageError(f"the input {options.input!r} has no rows")
        if writer.rows == 0:
            keep_side_file = True
            raise UsageError(
                f"no row of {rows_read:,} could be scored",
                hint=f"see {options.skipped_path} for why",
            )
        sink.commit()
        done = True
    finally:
        if progress is not None:
            progress.close()
        writer.close()
        if not done:
            sink.discard()
        side = skipped.finish(done or keep_side_file) if skipped else None
    return BatchResult(
        output=options.output, format=fmt, files=len(files), rows_read=rows_read,
        rows_written=writer.rows, rows_skipped=skipped.count if skipped else 0,
        skipped_output=side, seconds=time.monotonic() - started, engine=options.engine,
        workers=options.workers,
    )


def _read_spec(scorer: Scorer, options: BatchOptions) -> ReadSpec:
    columns = scorer.model.columns
    types = None if columns is None else {c.name: c.type for c in columns}
    return ReadSpec(types, tuple(options.keep), options.chunk_rows, scorer.check_columns)


def _check_keep(keep: tuple[str, ...], output: OutputSpec) -> None:
    clash = [c for c in keep if c in (output.names or ())]
    if clash:
        raise UsageError(
            f"--keep column(s) {', '.join(map(repr, clash))} have the name of a prediction "
            "column", hint="rename them in the input",
        )


def _check_file(file: InputFile, scorer: Scorer, keep: tuple[str, ...]) -> None:
    """Column names, before a row is read: the protocol's check plus the --keep columns."""
    columns = file_columns(file)
    if columns is None:
        return
    missing = [c for c in keep if c not in columns]
    if missing:
        raise UsageError(
            f"{file.name} has no column(s) {', '.join(map(repr, missing))} to --keep"
        )
    try:
        scorer.check_columns([c for c in columns if c not in keep])
    except ProtocolError as exc:
        hint = "pass --keep COL to carry extra columns to the output" if "unknown" in \
            exc.message else None
        raise UsageError(f"{file.name}: {exc.message}", hint=hint) from None


def _total_rows(files: list[InputFile]) -> int | None:
    if all(f.format is Format.PARQUET for f in files) and len(files) <= 1000:
        return sum(parquet_rows(f) for f in files)
    return None


def _chunks(files: list[InputFile], spec: ReadSpec) -> Iterator[Chunk]:
    for file in files:
        yield from read_chunks(file, spec)


def _skipped_records(chunk: Chunk, scored: Scored) -> list[dict[str, Any]]:
    """Side-file records in row order; a row the model could not score carries its kept
    columns (the ids) beside the values the model was given."""
    records = []
    for bad in sorted(chunk.bad + scored.bad, key=lambda b: b.row):
        record = bad.record()
        at = int(np.searchsorted(chunk.rows, bad.row))
        if chunk.kept is not None and at < len(chunk.rows) and chunk.rows[at] == bad.row:
            record["kept"] = chunk.kept.slice(at, 1).to_pylist()[0]
        records.append(record)
    return records


def _table(chunk: Chunk, scored: Scored, keep: tuple[str, ...]) -> pa.Table:
    assert scored.predictions is not None
    predictions = pa.Table.from_pandas(scored.predictions, preserve_index=False)
    if chunk.kept is None or not keep:
        return predictions
    kept = chunk.kept if scored.ok.all() else chunk.kept.filter(pa.array(scored.ok))
    clash = [c for c in keep if c in predictions.column_names]
    if clash:
        raise UsageError(
            f"--keep column(s) {', '.join(map(repr, clash))} have the name of a prediction "
            "column", hint="rename them in the input",
        )
    columns = [*kept.columns, *predictions.columns]
    return pa.Table.from_arrays(columns, names=[*kept.column_names, *predictions.column_names])


# --------------------------------------------------------------------------------------------
# scoring in this process or in worker processes


class _Pipeline:
    """Scores chunks in order. With ``workers`` > 1, a pool of processes; at most two chunks a
    worker are in flight (memory stays bounded).

    A model whose flavors are fork-safe (``container.loader.fork_safe``: scikit-learn, XGBoost,
    ...; the rule the serving runtime uses for its pre-forked workers) is loaded once here and
    the workers are forked from this process with it, before any row is read: a worker starts
    in milliseconds. Any other model gets spawned workers that each import its libraries and
    load it once (seconds per worker; worth it only for a model that is slow per row)."""

    def __init__(self, scorer: Scorer, model_dir: str, workers: int, skip: bool) -> None:
        self.scorer, self.model_dir, self.workers, self.skip = scorer, model_dir, workers, skip
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> _Pipeline:
        if self.workers > 1:
            global _WORKER_SCORER
            if fork_safe(self.model_dir) and "fork" in multiprocessing.get_all_start_methods():
                _WORKER_SCORER = self.scorer  # inherited by the forked workers
                self._pool = ProcessPoolExecutor(
                    max_workers=self.workers, mp_context=multiprocessing.get_context("fork"))
            else:
                self._pool = ProcessPoolExecutor(
                    max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_worker, initargs=(self.model_dir,),
                )
            # start every worker now, before this process reads a row (and starts Arrow's
            # reader threads): a fork copies no thread, and spawned workers load meanwhile
            for f in [self._pool.submit(_ready) for _ in range(self.workers)]:
                f.result()
        return self

    def __exit__(self, *exc: Any) -> None:
        global _WORKER_SCORER
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            _WORKER_SCORER = None

    def run(self, chunks: Iterator[Chunk]) -> Iterator[tuple[Chunk, Scored]]:
        if self._pool is None:
            for chunk in chunks:
                yield chunk, _score(self.scorer, chunk.frame, chunk.rows, chunk.file.name,
                                    self.skip)
            return
        queue: collections.deque[tuple[Chunk, Future[Scored]]] = collections.deque()
        for chunk in chunks:
            queue.append((chunk, self._pool.submit(
                _score_in_worker, chunk.frame, chunk.rows, chunk.file.name, self.skip)))
            if len(queue) >= 2 * self.workers:
                head, future = queue.popleft()
                yield head, future.result()
        while queue:
            head, future = queue.popleft()
            yield head, future.result()


def _ready() -> bool:
    return _WORKER_SCORER is not None


def _score(scorer: Scorer, frame: Any, rows: np.ndarray, file: str, skip: bool) -> Scored:
    try:
        return scorer.score(frame, rows, file, skip=skip)
    except RowError as exc:
        return Scored(None, np.zeros(len(frame), dtype=bool), [exc.row], failed=True)


_WORKER_SCORER: Scorer | None = None


def _init_worker(model_dir: str) -> None:
    global _WORKER_SCORER
    _WORKER_SCORER = Scorer(load_model(model_dir))


def _score_in_worker(frame: Any, rows: np.ndarray, file: str, skip: bool) -> Scored:
    assert _WORKER_SCORER is not None
    return _score(_WORKER_SCORER, frame, rows, file, skip)
