"""The ``mldeploy`` command: a thin layer over the Python API with one error bridge.

Every :class:`~mldeploy.errors.MldeployError` becomes one readable line on stderr (plus one naming
what a failed deployment left behind, when it could not remove everything) and the error's exit
code (2 for bad input, 1 otherwise); no traceback reaches the user unless ``--debug``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence

import click

from . import __version__
from .errors import MldeployError, UsageError

CONTAINER_MODEL_DIR = "/opt/ml/model"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mldeploy")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Put an MLflow model behind a production endpoint on any target, and take it down safely."""
    ctx.obj = {"debug": debug}


@cli.command()
@click.option("-m", "--model-uri", "model_uri", default=None, metavar="URI",
              help="Model to serve: path, runs:/, models:/, s3://. Default: /opt/ml/model if it "
                   "exists, else the example model shipped with mldeploy.")
@click.option("--host", default=None, help="Address to bind. [default: 127.0.0.1]")
@click.option("--port", type=int, default=None,
              help="Port. [default: $SAGEMAKER_BIND_TO_PORT or 8080]")
@click.option("--engine", type=click.Choice(["flask", "mlserver"]), default=None,
              help="Serving engine. [default: flask]")
@click.option("-w", "--workers", type=int, default=None,
              help="Worker processes. [default: $SAGEMAKER_MODEL_SERVER_WORKERS or one per core]")
@click.option("--threads", type=int, default=None, help="Threads per worker. [default: 4]")
@click.option("--timeout", type=float, default=None,
              help="Seconds a prediction may take. "
                   "[default: $SAGEMAKER_MODEL_SERVER_TIMEOUT or 60]")
@click.option("--max-request-bytes", type=int, default=None,
              help="Largest request body. [default: 6 MiB, SageMaker real-time's limit]")
@click.option("--env-manager", type=click.Choice(["local", "virtualenv", "uv"]), default=None,
              help="local: check the model's requirements against this environment; "
                   "virtualenv/uv: build the model's own (cached) and serve from it. "
                   "[default: local]")
def serve(model_uri: str | None, **options: object) -> None:
    """Serve a model over HTTP: /ping, /health, /version, POST /invocations."""
    from mldeploy.container.engines import run
    from mldeploy.container.settings import ServerSettings, SettingsError

    from .model_uri import materialize

    if model_uri is None and not os.environ.get("MLDEPLOY_MODEL_URI"):
        model_uri = _default_model()
    try:
        settings = ServerSettings.resolve(model_uri=model_uri, **options)
    except SettingsError as exc:
        raise UsageError(str(exc)) from None
    # Resolve (and download) once, here, so every worker loads the same local copy and a bad URI
    # fails before the server starts. The engine returns on SIGTERM and on a failed load, so a
    # download is removed whenever the server exits (by this process, not by forked workers).
    with materialize(settings.model_uri) as local:
        code = run(dataclasses.replace(settings, model_uri=str(local)))
    if code:
        raise click.exceptions.Exit(code)


def _default_model() -> str:
    if os.path.isfile(os.path.join(CONTAINER_MODEL_DIR, "MLmodel")):
        return CONTAINER_MODEL_DIR
    from . import example_model_path

    path = example_model_path()
    click.echo(
        f"no model given (-m): serving the example model shipped with mldeploy ({path})",
        err=True,
    )
    return path


def _register_optional_commands() -> None:
    """Commands that live in their own modules (image builder, deploy verbs)."""
    import importlib

    for module, names in (
        ("mldeploy._cli_image", ("build_docker", "generate_dockerfile", "push")),
        ("mldeploy._cli_deploy", ("deploy", "delete", "get", "list", "invoke", "traffic")),
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        for name in names:
            command = getattr(mod, name, None) or getattr(mod, f"{name}_command", None)
            if isinstance(command, click.Command):
                cli.add_command(command)


def error_lines(exc: MldeployError) -> list[str]:
    """What the CLI prints for ``exc``: one line (message — hint), and for a failed deployment
    that could not undo everything, one more naming what is left (unless the line names it)."""
    line = f"error: {exc.message}"
    if exc.hint:
        line += f" — {exc.hint}"
    lines = [line]
    leftover = [str(item) for item in getattr(exc, "leftover", None) or ()]
    if leftover and not all(item in line for item in leftover):
        lines.append(f"not undone, see to it by hand: {', '.join(leftover)}")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``mldeploy`` script: the one error bridge."""
    _register_optional_commands()
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        code = cli.main(args=args, prog_name="mldeploy", standalone_mode=False)
        if isinstance(code, int):  # click returns Exit codes instead of raising them here
            sys.exit(code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except MldeployError as exc:
        for line in error_lines(exc):
            click.echo(line, err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # an internal error: one line, traceback only with --debug
        if debug:
            raise
        click.echo(
            f"error: internal error ({type(exc).__name__}: {exc}); rerun with --debug for the "
            "traceback and report it",
            err=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
