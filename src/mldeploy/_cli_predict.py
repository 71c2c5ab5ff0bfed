"""The ``predict`` command: batch scoring of files (a thin layer over :mod:`mldeploy.batch`).

The summary line goes to stdout, the progress bar (on a terminal) to stderr. Errors are
:class:`~mldeploy.errors.MldeployError` and become one line and an exit code in the main group's
error bridge (2 for bad input, a bad row included; 1 when the model raised on a row).
"""

from __future__ import annotations

import click

_FORMATS = click.Choice(["csv", "parquet", "jsonl"])


@click.command("predict")
@click.option("-m", "--model-uri", required=True, metavar="URI",
              help="Model: a path, runs:/, models:/ or s3://.")
@click.option("-i", "--input", "input_uri", required=True, metavar="INPUT",
              help="A file, a directory or a glob of CSV, Parquet or JSON Lines files; local or "
                   "a URI (s3://...).")
@click.option("-o", "--output", required=True, metavar="OUTPUT",
              help="The output file (local or a URI); written only when the run succeeds.")
@click.option("--format", "output_format", type=_FORMATS, default=None,
              help="Output format. [default: from OUTPUT's extension]")
@click.option("--input-format", type=_FORMATS, default=None,
              help="Input format. [default: from each file's extension]")
@click.option("--chunk-rows", type=int, default=100_000, show_default=True,
              help="Rows scored at a time (bounds the memory).")
@click.option("--keep", multiple=True, metavar="COL",
              help="An input column to copy to the output beside the predictions, e.g. an id "
                   "(repeatable).")
@click.option("--engine", type=click.Choice(["local", "spark"]), default="local",
              show_default=True)
@click.option("--master", default=None, metavar="URL",
              help="Spark master for --engine spark. [default: local[*]]")
@click.option("-w", "--workers", type=int, default=1, show_default=True,
              help="Scoring processes for the local engine (each loads the model once).")
@click.option("--on-error", type=click.Choice(["fail", "skip"]), default="fail",
              show_default=True,
              help="A bad row stops the run (no output is left), or is skipped and written to "
                   "the side file.")
@click.option("--skipped-output", default=None, metavar="FILE",
              help="Side file of skipped rows (JSON Lines). [default: OUTPUT.skipped.jsonl]")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr. [default: when stderr is a terminal]")
def predict(model_uri: str, input_uri: str, output: str, output_format: str | None,
            input_format: str | None, chunk_rows: int, keep: tuple[str, ...], engine: str,
            master: str | None, workers: int, on_error: str, skipped_output: str | None,
            overwrite: bool, progress: bool | None) -> None:
    """Score files with a model: streamed in chunks, the signature enforced, one output."""
    from mldeploy.batch import predict as run_predict

    result = run_predict(
        model_uri, input_uri, output, format=output_format, input_format=input_format,
        chunk_rows=chunk_rows, keep=keep, engine=engine, workers=workers, on_error=on_error,
        overwrite=overwrite, skipped_output=skipped_output, master=master, progress=progress,
    )
    click.echo(result.summary())


COMMANDS = [predict]
