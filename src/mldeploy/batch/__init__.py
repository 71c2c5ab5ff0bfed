"""Batch scoring: score files with a model, streamed in chunks, into one atomically written
output file (``mldeploy predict`` and :func:`predict`).

    mldeploy.predict("models:/churn@prod", "s3://bucket/in/*.parquet", "scores.parquet",
                     keep=["customer_id"], on_error="skip")
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import BadRowError, RowModelError
from .options import DEFAULT_CHUNK_ROWS, BatchOptions, Engine, Format, OnError
from .result import BatchResult

__all__ = [
    "BadRowError", "BatchOptions", "BatchResult", "Engine", "Format", "OnError", "RowModelError",
    "predict", "run",
]


def predict(
    model_uri: str,
    input: str,  # noqa: A002 - the CLI's name
    output: str,
    *,
    format: str | Format | None = None,  # noqa: A002
    input_format: str | Format | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    keep: Sequence[str] = (),
    engine: str | Engine = Engine.LOCAL,
    workers: int = 1,
    on_error: str | OnError = OnError.FAIL,
    overwrite: bool = False,
    skipped_output: str | None = None,
    master: str | None = None,
    progress: bool | None = None,
) -> BatchResult:
    """Score every row of ``input`` (a file, directory or glob of CSV, Parquet or JSON Lines;
    local or a URI such as ``s3://``) with the model at ``model_uri`` and write ``output``.

    The model's signature is enforced per chunk exactly as ``/invocations`` enforces it. A bad
    row raises :class:`BadRowError` naming its file and row (``on_error="fail"``, the default)
    or goes to ``skipped_output`` (default ``OUTPUT.skipped.jsonl``) with ``on_error="skip"``.
    The output appears only when the whole run succeeded. ``progress`` None: a bar when stderr
    is a terminal.
    """
    from ..errors import UsageError

    if isinstance(keep, str):
        keep = [keep]
    try:
        options = BatchOptions(
            model_uri=str(model_uri), input=str(input), output=str(output),
            output_format=None if format is None else Format.parse(format, "output"),
            input_format=None if input_format is None else Format.parse(input_format, "input"),
            chunk_rows=chunk_rows, keep=tuple(keep), engine=Engine(engine), workers=workers,
            on_error=OnError(on_error), overwrite=overwrite, skipped_output=skipped_output,
            master=master, progress=progress,
        )
    except ValueError as exc:  # an enum value
        raise UsageError(str(exc)) from None
    return run(options)


def run(options: BatchOptions) -> BatchResult:
    """Run ``options``: the model is resolved (downloaded once) first."""
    from ..model_uri import materialize

    options.resolved_output_format  # noqa: B018 - a bad output name fails before the download
    with materialize(options.model_uri) as local:
        if options.engine is Engine.SPARK:
            from ..spark import run_batch

            return run_batch(options, str(local))
        from .local import run_local

        return run_local(options, str(local))
