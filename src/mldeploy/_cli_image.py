"""The image commands: ``build-docker``, ``generate-dockerfile``, ``push``.

A thin layer over :mod:`mldeploy.container.image`: progress goes to stderr, the result to stdout as
JSON. Errors are :class:`~mldeploy.errors.MldeployError` and are turned into one line and an exit
code by the main group's error bridge in :mod:`mldeploy.cli`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import click

from mldeploy._cli_output import emit, output_option
from mldeploy.container.engines import DEFAULT_ENGINE, ENGINE_NAMES
from mldeploy.errors import UsageError


def _progress(message: str) -> None:
    click.echo(message, err=True)


def _labels(items: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--label {item!r} is not KEY=VALUE", hint="e.g. --label team=ml")
        out.append((key, value))
    return tuple(out)


def _image_options(f: Any) -> Any:
    """Options shared by build-docker and generate-dockerfile (applied bottom-up)."""
    for decorator in reversed([
        click.option("-m", "--model-uri", default=None, metavar="URI",
                     help="Model to bake in: path, runs:/, models:/, s3://. Without it: a generic "
                     "image that serves the model mounted at /opt/ml/model."),
        click.option("--engine", type=click.Choice(ENGINE_NAMES), default=DEFAULT_ENGINE,
                     show_default=True, help="Serving engine in the image."),
        click.option("--base-image", default=None, metavar="IMAGE",
                     help="Base image with python3 and its venv module; offline, "
                     "scripts/build-base-image.sh makes one. "
                     "[default: $MLDEPLOY_BASE_IMAGE, else python:<model's python>-slim]"),
        click.option("--env-manager", type=click.Choice(["virtualenv", "local"]),
                     default="virtualenv", show_default=True,
                     help="virtualenv: the model's pinned requirements; local: the versions "
                     "installed here."),
        click.option("--platform", type=click.Choice(["linux/amd64", "linux/arm64"]),
                     default="linux/amd64", show_default=True,
                     help="Platform of the wheels and the image."),
        click.option("--python-version", default=None, metavar="X.Y",
                     help="Python of the image. [default: the base image's, else the model's]"),
        click.option("--requirement", "extra_requirements", multiple=True, metavar="REQ",
                     help="Extra pip requirement to install (repeatable); a generic image "
                     "needs the model's library, e.g. --requirement scikit-learn."),
        click.option("--include-dotfiles", is_flag=True,
                     help="Copy the model's dotfiles (.env, .git, ...) into the image too."),
        click.option("--label", "labels", multiple=True, metavar="KEY=VALUE",
                     help="Extra image label (repeatable)."),
        click.option("--mldeploy-wheel", default=None, type=click.Path(dir_okay=False),
                     help="mldeploy wheel to install. [default: built from this installation]"),
        click.option("--cache-dir", default=None, type=click.Path(file_okay=False),
                     help="Wheelhouse cache. [default: ~/.cache/mldeploy]"),
        output_option(),
    ]):
        f = decorator(f)
    return f


def _common(kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs["labels"] = _labels(kwargs.pop("labels", ()))
    kwargs["extra_requirements"] = tuple(kwargs.get("extra_requirements") or ())
    return kwargs


def _print(result: Any, output: str) -> None:
    emit(asdict(result), output)


@click.command("build-docker")
@_image_options
@click.option("-n", "--name", default="mldeploy-model", show_default=True,
              help="Image name[:tag]; with --push, the full repository URI.")
@click.option("--network", "network_mode", default="none", show_default=True,
              help="Network of the build's RUN steps (none: the build needs no network).")
@click.option("--no-cache", is_flag=True, help="Rebuild every layer and re-resolve the wheels.")
@click.option("--pull", "pull", is_flag=True,
              help="Pull the base image when it is not on the engine (needs a registry).")
@click.option("--push", "push", is_flag=True, help="Push the image to its name (an ECR URI).")
@click.option("--region", default=None, help="AWS region for --push. [default: from the URI]")
@click.option("--keep-context", default=None, type=click.Path(file_okay=False),
              help="Keep the build context in this directory.")
def build_docker(model_uri: str | None, name: str, push: bool, region: str | None,
                 keep_context: str | None, pull: bool, output: str, **kwargs: Any) -> None:
    """Build a serving image with the model's dependencies baked in (offline build)."""
    from mldeploy.container.image import build_docker as build

    result = build(model_uri, name, keep_context=keep_context, log=_progress, pull=pull,
                   push_to=name if push else None, push_region=region, **_common(kwargs))
    _print(result, output)


@click.command("generate-dockerfile")
@_image_options
@click.option("-d", "--output-directory", default="mldeploy-dockerfile", show_default=True,
              type=click.Path(file_okay=False),
              help="Directory for the Dockerfile and its context (new, empty or generated).")
def generate_dockerfile(model_uri: str | None, output_directory: str, output: str,
                        **kwargs: Any) -> None:
    """Write a Dockerfile and its build context; build it with `docker build --network none DIR`."""
    from mldeploy.container.image import generate_dockerfile as generate

    context = generate(model_uri, output_directory, log=_progress, **_common(kwargs))
    for note in context.notes:
        _progress(f"note: {note}")
    _progress(f"wrote {context.dockerfile}; build it with: docker build --network none "
              f"-t IMAGE {context.directory}")
    _print(context, output)


@click.command("push")
@click.argument("image")
@click.option("--to", "to", required=True, metavar="REPOSITORY_URI",
              help="Destination, e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/model[:tag].")
@click.option("--region", default=None, help="AWS region. [default: from the URI]")
@click.option("--no-create-repository", is_flag=True,
              help="Fail instead of creating a missing ECR repository.")
@click.option("--no-ecr", is_flag=True,
              help="Plain registry: no ECR authentication or repository creation.")
@output_option()
def push(image: str, to: str, region: str | None, no_create_repository: bool,
         no_ecr: bool, output: str) -> None:
    """Push a local image to ECR, authenticating with ECR's API (no aws CLI needed)."""
    from mldeploy.container.image import push_image

    result = push_image(image, to, region=region, create_repository=not no_create_repository,
                        use_ecr=not no_ecr, log=_progress)
    _print(result, output)


COMMANDS = [build_docker, generate_dockerfile, push]

__all__ = ["build_docker", "generate_dockerfile", "push"]
