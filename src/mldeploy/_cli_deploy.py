"""The deployment commands: ``deploy``, ``delete``, ``get``, ``list``, ``invoke``, ``traffic``.

A thin layer over :mod:`mldeploy.api`: parse options, call the API, print. Results go to stdout
(JSON, or YAML with ``-o yaml``; ``deploy`` prints text by default), progress to stderr. Errors
are raised as :class:`~mldeploy.errors.MldeployError` and turned into one line and an exit code
by the main group's error bridge in :mod:`mldeploy.cli`.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from mldeploy._cli_output import emit, output_option
from mldeploy.errors import UsageError


def _target_options(f: Any) -> Any:
    f = click.option(
        "--config-file", type=click.Path(dir_okay=False), default=None,
        help="JSON, YAML or TOML file of config keys (-C options win over it).",
    )(f)
    f = click.option(
        "-C", "--config", "config_items", multiple=True, metavar="KEY=VALUE",
        help="A target config key, e.g. -C instance_type=ml.m5.large (repeatable; dotted keys "
        "for sections: -C serverless_config.memory_size_in_mb=2048).",
    )(f)
    f = click.option(
        "-t", "--target", required=True, metavar="TARGET[:/LOCATION]",
        help="Deployment target, e.g. sagemaker or sagemaker:/us-east-1.",
    )(f)
    return f


def _name_option(f: Any) -> Any:
    return click.option("-n", "--name", required=True, help="Deployment name.")(f)


def _config(items: tuple[str, ...]) -> dict[str, Any] | None:
    from mldeploy.config import parse_assignments

    return parse_assignments(items) if items else None


def _progress(event: Any) -> None:
    click.echo(str(event), err=True)


@click.command("deploy")
@_target_options
@_name_option
@click.option("-m", "--model-uri", required=True, help="runs:/, models:/, s3:// or a local path.")
@click.option(
    "--mode", type=click.Choice(["create", "replace", "add"]), default="create", show_default=True,
    help="create a new deployment, replace its model, or add a model beside it.",
)
@click.option("--dry-run", is_flag=True, help="Print what would be created/changed/removed.")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait until the deployment is ready.")
@click.option("--timeout", type=float, default=None, help="Seconds to wait (default: target's).")
@output_option("text", text=True)
def deploy_command(
    target: str, config_items: tuple[str, ...], config_file: str | None, name: str,
    model_uri: str, mode: str, dry_run: bool, wait: bool, timeout: float | None, output: str,
) -> None:
    """Deploy MODEL_URI to TARGET under NAME.

    With --dry-run, -o yaml prints the manifests a declarative target would apply."""
    from mldeploy import api
    from mldeploy.target import Plan

    result = api.deploy(
        target, name=name, model_uri=model_uri, mode=mode, config=_config(config_items),
        config_file=config_file, dry_run=dry_run, wait=wait, timeout=timeout,
        progress=_progress,
    )
    if output == "yaml" and isinstance(result, Plan):
        if not result.manifests:
            raise UsageError(f"the {result.target} target has no manifests to print",
                             hint="use -o text or -o json")
        click.echo(result.to_yaml(), nl=False)
    elif isinstance(result, Plan):
        emit(result.to_dict(), output, text=lambda: str(result))
    else:
        emit(result.to_dict(), "json" if output == "text" else output)


@click.command("delete")
@_target_options
@_name_option
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--timeout", type=float, default=None)
@output_option()
def delete_command(
    target: str, config_items: tuple[str, ...], config_file: str | None, name: str, wait: bool,
    timeout: float | None, output: str,
) -> None:
    """Delete deployment NAME and everything mldeploy created for it (idempotent)."""
    from mldeploy import api

    result = api.delete(target, name=name, config=_config(config_items), config_file=config_file,
                        wait=wait, timeout=timeout, progress=_progress)
    emit(result.to_dict(), output)


@click.command("get")
@_target_options
@_name_option
@output_option()
def get_command(target: str, config_items: tuple[str, ...], config_file: str | None,
                name: str, output: str) -> None:
    """Print deployment NAME."""
    from mldeploy import api

    emit(api.get(target, name=name, config=_config(config_items),
                 config_file=config_file).to_dict(), output)


@click.command("list")
@_target_options
@output_option()
def list_command(target: str, config_items: tuple[str, ...], config_file: str | None,
                 output: str) -> None:
    """Print every deployment on TARGET as a list."""
    from mldeploy import api

    deps = api.list_deployments(target, config=_config(config_items), config_file=config_file)
    emit([d.to_dict() for d in deps], output)


@click.command("invoke")
@_target_options
@_name_option
@click.option("-i", "--input-path", type=click.Path(dir_okay=False, allow_dash=True),
              default=None, help="File with the request body ('-' for stdin).")
@click.option("-d", "--data", default=None, help="The request body inline.")
@click.option("--content-type", default="application/json", show_default=True)
@click.option("--variant", default=None, help="Send to this variant only.")
@click.option("--output-path", type=click.Path(dir_okay=False), default=None,
              help="Write the raw response here instead of printing the predictions.")
@output_option()
def invoke_command(
    target: str, config_items: tuple[str, ...], config_file: str | None, name: str,
    input_path: str | None, data: str | None, content_type: str, variant: str | None,
    output_path: str | None, output: str,
) -> None:
    """Send a request to deployment NAME and print its predictions."""
    from mldeploy import api

    if (input_path is None) == (data is None):
        raise UsageError("give exactly one of --input-path and --data",
                         hint="e.g. --data '{\"inputs\": [[1, 2]]}' or --input-path req.json")
    if data is not None:
        body = data.encode("utf-8")
    elif input_path == "-":
        body = sys.stdin.buffer.read()
    else:
        try:
            with open(input_path, "rb") as fh:  # type: ignore[arg-type]
                body = fh.read()
        except OSError as exc:
            raise UsageError(f"cannot read {input_path}: {exc.strerror}") from None
    pred = api.invoke(target, name=name, data=body, content_type=content_type, variant=variant,
                      config=_config(config_items), config_file=config_file)
    if output_path:
        with open(output_path, "wb") as fh:
            fh.write(pred.raw)
    else:
        emit(pred.to_dict()["predictions"], output)


@click.command("traffic")
@_target_options
@_name_option
@click.option("-w", "--weights", required=True, metavar="VARIANT=WEIGHT,...",
              help="New weights, e.g. blue=9,green=1.")
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--timeout", type=float, default=None)
@output_option()
def traffic_command(
    target: str, config_items: tuple[str, ...], config_file: str | None, name: str, weights: str,
    wait: bool, timeout: float | None, output: str,
) -> None:
    """Shift traffic between the variants of deployment NAME."""
    from mldeploy import api

    dep = api.traffic(target, name=name, weights=weights, config=_config(config_items),
                      config_file=config_file, wait=wait, timeout=timeout, progress=_progress)
    emit(dep.to_dict(), output)


COMMANDS = [deploy_command, delete_command, get_command, list_command, invoke_command,
            traffic_command]

__all__ = ["COMMANDS", "delete_command", "deploy_command", "get_command", "invoke_command",
           "list_command", "traffic_command"]
