"""Container entry point: ``python -m mldeploy.container serve`` (SageMaker runs ``IMAGE serve``).

Settings come from the environment (``SAGEMAKER_BIND_TO_PORT``, ``SAGEMAKER_MODEL_SERVER_WORKERS``,
``SAGEMAKER_MODEL_SERVER_TIMEOUT``, ``MLDEPLOY_*``) and optional flags; the model is read from
``/opt/ml/model`` unless ``MLDEPLOY_MODEL_URI`` or ``--model`` names another; a remote model is
downloaded once, before the workers start, and removed when the server exits.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys

from .settings import ServerSettings, SettingsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mldeploy.container")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the model (SageMaker's container command)")
    serve.add_argument("-m", "--model", dest="model_uri")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--threads", type=int)
    serve.add_argument("--timeout", type=float)
    serve.add_argument("--engine")
    args = parser.parse_args(argv)
    explicit = {k: v for k, v in vars(args).items() if k != "command"}
    from mldeploy.errors import MldeployError
    from mldeploy.model_uri import materialize

    with contextlib.ExitStack() as stack:
        try:
            settings = ServerSettings.resolve(**explicit)
            # A downloaded model is removed when the server exits (SIGTERM, failed load, ...).
            local = stack.enter_context(materialize(settings.model_uri))
        except (SettingsError, MldeployError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        from .engines import run

        return run(dataclasses.replace(settings, model_uri=str(local)))


if __name__ == "__main__":
    sys.exit(main())
