"""The ``mldeploy`` command: a thin click layer over the Python API.

Every command is registered when this module is imported (their bodies import what they need
when they run). :class:`MldeployGroup` is the one error bridge: every
:class:`~mldeploy.errors.MldeployError` becomes one redacted line on stderr (plus one naming what a
failed deployment left behind, when it could not remove everything) and the exit code of its
class (:data:`mldeploy.errors.EXIT_CODES`, the README's table); an internal error is one line and
exit code 1. No traceback reaches the user unless ``--debug``, which is accepted anywhere on the
command line. ``click.testing.CliRunner`` exercises the bridge as the ``mldeploy`` script does.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import click

from . import __version__
from ._cli_output import output_option
from .container.engines import ENGINE_NAMES
from .errors import MldeployError
from .redact import redact

CONTAINER_MODEL_DIR = "/opt/ml/model"
DEBUG_FLAG = "--debug"
_DEBUG_KEY = "mldeploy.debug"
INTERRUPTED = 130


class MldeployGroup(click.Group):
    """The ``mldeploy`` group and its one error bridge."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # --debug anywhere (before a "--" that ends the options): taken out here, so that
        # `mldeploy deploy ... --debug` and `mldeploy --debug deploy ...` mean the same.
        end = args.index("--") if "--" in args else len(args)
        if DEBUG_FLAG in args[:end]:
            ctx.meta[_DEBUG_KEY] = True
            args = [a for i, a in enumerate(args) if a != DEBUG_FLAG or i >= end]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException):
            raise
        except MldeployError as exc:
            if debugging(ctx):
                click.echo(traceback.format_exc().rstrip(), err=True)
            for line in error_lines(exc):
                click.echo(line, err=True)
            raise click.exceptions.Exit(exc.exit_code) from None
        except (KeyboardInterrupt, click.Abort):
            click.echo("aborted", err=True)
            raise click.exceptions.Exit(INTERRUPTED) from None
        except Exception as exc:  # an internal error: one line, the traceback only with --debug
            if debugging(ctx):
                raise
            click.echo(
                f"error: internal error ({type(exc).__name__}: {redact(exc, 300)}); rerun with "
                "--debug for the traceback and report it",
                err=True,
            )
            raise click.exceptions.Exit(1) from None


def debugging(ctx: click.Context) -> bool:
    return bool(ctx.meta.get(_DEBUG_KEY) or (ctx.find_root().params or {}).get("debug"))


def error_lines(exc: MldeployError) -> list[str]:
    """What the CLI prints for ``exc``: one line (message — hint), and for a failed deployment
    that could not undo everything, one more naming what is left (unless the line names it).
    Credentials are redacted (a model URI with ``user:password@`` in a message)."""
    line = f"error: {exc.message}"
    if exc.hint:
        line += f" — {exc.hint}"
    lines = [redact(line)]
    leftover = [str(item) for item in getattr(exc, "leftover", None) or ()]
    if leftover and not all(item in line for item in leftover):
        lines.append(redact(f"not undone, see to it by hand: {', '.join(leftover)}"))
    return lines


@click.group(cls=MldeployGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mldeploy")
@click.option("--debug", is_flag=True,
              help="Show tracebacks of errors (accepted anywhere on the command line).")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Put an MLflow model behind a production endpoint on any target, and take it down safely."""
    ctx.obj = {"debug": debug or bool(ctx.meta.get(_DEBUG_KEY))}


@cli.command()
@click.option("-m", "--model-uri", "model_uri", default=None, metavar="URI",
              help="Model to serve: path, runs:/, models:/, s3://. Default: /opt/ml/model if it "
                   "exists, else the example model shipped with mldeploy.")
@click.option("--host", default=None, help="Address to bind. [default: 127.0.0.1]")
@click.option("--port", type=int, default=None,
              help="Port. [default: $SAGEMAKER_BIND_TO_PORT or 8080]")
@click.option("--engine", type=click.Choice(ENGINE_NAMES), default=None,
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
    from mldeploy.container.engines import serve as serve_model

    if model_uri is None and not os.environ.get("MLDEPLOY_MODEL_URI"):
        model_uri = _default_model()
    code = serve_model(model_uri=model_uri, **options)
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


def _register() -> None:
    from . import (
        _cli_batch,
        _cli_cleanup,
        _cli_deploy,
        _cli_emulate,
        _cli_image,
        _cli_info,
        _cli_predict,
    )

    for command in (*_cli_image.COMMANDS, *_cli_deploy.COMMANDS, *_cli_info.COMMANDS,
                    *_cli_emulate.COMMANDS, *_cli_predict.COMMANDS, *_cli_batch.COMMANDS,
                    *_cli_cleanup.COMMANDS):
        cli.add_command(command)


_register()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``mldeploy`` script: returns on success, else exits with the code the
    group's bridge (or click, for a usage error) chose."""
    try:
        code = cli.main(args=None if argv is None else list(argv), prog_name="mldeploy",
                        standalone_mode=False)
    except click.ClickException as exc:  # click's own usage errors: its message, code 2
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(INTERRUPTED)
    if isinstance(code, int) and code:  # click returns an Exit's code here
        sys.exit(code)


__all__ = ["DEBUG_FLAG", "MldeployGroup", "cli", "error_lines", "main", "output_option"]


if __name__ == "__main__":
    main()
