"""The ``batch`` command: a batch job over stored data on a target (SageMaker Batch Transform),
a thin layer over :func:`mldeploy.api.transform`. The result goes to stdout (JSON or YAML),
progress to stderr; errors become one line and an exit code in the main group's bridge."""

from __future__ import annotations

import click

from mldeploy._cli_deploy import _config, _name_option, _progress, _target_options
from mldeploy._cli_output import emit, output_option


@click.command("batch")
@_target_options
@_name_option
@click.option("-m", "--model-uri", required=True, help="runs:/, models:/, s3:// or a local path.")
@click.option("-i", "--input", "input_uri", required=True, metavar="S3URI",
              help="s3://BUCKET/PREFIX: every object under it is scored.")
@click.option("--output-path", required=True, metavar="S3URI",
              help="s3://BUCKET/PREFIX for the answers (KEY.out for each input object).")
@click.option("--content-type", type=click.Choice(["text/csv", "application/jsonlines",
                                                   "application/json"]),
              default="text/csv", show_default=True,
              help="The records' type (CSV without a header row).")
@click.option("--accept", type=click.Choice(["text/csv", "application/jsonlines",
                                             "application/json"]), default=None,
              help="The answers' type. [default: the content type]")
@click.option("--split-type", type=click.Choice(["Line", "None"]), default="Line",
              show_default=True, help="Line: one record a line; None: one object a request.")
@click.option("--batch-strategy", type=click.Choice(["MultiRecord", "SingleRecord"]),
              default="MultiRecord", show_default=True)
@click.option("--max-payload-mb", type=int, default=6, show_default=True,
              help="Largest mini-batch sent to the container.")
@click.option("--instance-type", default="ml.m5.large", show_default=True)
@click.option("--instance-count", type=int, default=1, show_default=True)
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait until the job ends (and remove the model it used).")
@click.option("--timeout", type=float, default=None,
              help="Seconds to wait (default: the target's timeout_seconds).")
@output_option()
def batch_command(target: str, config_items: tuple[str, ...], config_file: str | None,
                  name: str, model_uri: str, input_uri: str, output_path: str,
                  content_type: str, accept: str | None, split_type: str, batch_strategy: str,
                  max_payload_mb: int, instance_type: str, instance_count: int, wait: bool,
                  timeout: float | None, output: str) -> None:
    """Score the S3 objects under --input with MODEL_URI as a batch job on TARGET (SageMaker
    Batch Transform), with the model's serving image."""
    from mldeploy import api

    job = {"input": input_uri, "output": output_path, "content_type": content_type,
           "accept": accept, "split_type": split_type, "batch_strategy": batch_strategy,
           "max_payload_mb": max_payload_mb, "instance_type": instance_type,
           "instance_count": instance_count}
    result = api.transform(target, name=name, model_uri=model_uri,
                           job={k: v for k, v in job.items() if v is not None},
                           config=_config(config_items), config_file=config_file, wait=wait,
                           timeout=timeout, progress=_progress)
    emit(result.to_dict(), output)


COMMANDS = [batch_command]
