"""``mldeploy emulate sagemaker``: an offline SageMaker on 127.0.0.1 whose endpoints run their
real containers on the local Docker engine (:mod:`mldeploy.testing.sagemaker_containers`)."""

from __future__ import annotations

import click

from .errors import UsageError


@click.group()
def emulate() -> None:
    """Run an offline emulator of a cloud target, for trying mldeploy and testing pipelines."""


@emulate.command("sagemaker")
@click.option("--port", type=int, default=5000, show_default=True,
              help="Port on 127.0.0.1 for every AWS service (AWS_ENDPOINT_URL).")
@click.option("--creating-seconds", type=float, default=2.0, show_default=True,
              help="Least time an endpoint stays Creating.")
@click.option("--updating-seconds", type=float, default=2.0, show_default=True,
              help="Least time an endpoint stays Updating.")
@click.option("--deleting-seconds", type=float, default=0.0, show_default=True,
              help="Time an endpoint stays Deleting.")
@click.option("--startup-seconds", type=float, default=240.0, show_default=True,
              help="Time a container has to pass /ping (SageMaker's default startup window).")
def sagemaker(port: int, creating_seconds: float, updating_seconds: float,
              deleting_seconds: float, startup_seconds: float) -> None:
    """SageMaker (moto's control plane with UpdateEndpoint and real state transitions), S3, ECR,
    IAM, STS and CloudWatch Logs on 127.0.0.1:PORT. Each endpoint runs its model's image on the
    local Docker engine with the model from its S3 tarball, one container per instance; boto3's
    invoke_endpoint reaches them. Prints the variables to export; Ctrl-C stops everything."""
    try:
        import docker
        import moto.server  # noqa: F401
        from docker.errors import DockerException
    except ImportError as exc:
        raise UsageError(f"the SageMaker emulator needs {exc.name}, which is not installed",
                         hint="pip install 'mldeploy[sagemaker]' 'moto[server]'") from None
    try:
        client = docker.from_env()
        client.ping()
    except DockerException:
        raise UsageError("no Docker engine answers: the emulator runs endpoints as containers",
                         hint="start dockerd (see scripts/install-docker.sh), or set "
                              "DOCKER_HOST") from None
    from .testing.sagemaker_containers import serve_forever

    serve_forever(port, docker_client=client, creating_seconds=creating_seconds,
                  updating_seconds=updating_seconds, deleting_seconds=deleting_seconds,
                  startup_seconds=startup_seconds,
                  echo=lambda line: click.echo(line, err=not line.startswith("export ")))


COMMANDS = [emulate]
