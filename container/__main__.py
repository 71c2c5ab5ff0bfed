"""Container entry point: ``python -m mldeploy.container serve`` (SageMaker runs ``IMAGE serve``).

Settings come from the environment (``SAGEMAKER_BIND_TO_PORT``, ``SAGEMAKER_MODEL_SERVER_WORKERS``,
``SAGEMAKER_MODEL_SERVER_TIMEOUT``, ``MLDEPLOY_*``) and optional flags; the model is read from
``/opt/ml/model`` unless ``MLDEPLOY_MODEL_URI`` or ``--model`` names another. The server is the
same as ``mldeploy serve``'s: both call :func:`mldeploy.container.engines.serve`, and both exit
with the codes of the README's exit-code table.
"""

from __future__ import annotations

import argparse
import sys

from .engines import ENGINE_NAMES


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
    serve.add_argument("--max-request-bytes", type=int)
    serve.add_argument("--engine", choices=ENGINE_NAMES)
    args = parser.parse_args(argv)
    explicit = {k: v for k, v in vars(args).items() if k != "command"}
    from mldeploy.errors import MldeployError
    from mldeploy.redact import redact

    from .engines import serve as serve_model

    try:
        return serve_model(**explicit)
    except MldeployError as exc:
        print(f"error: {redact(exc)}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
