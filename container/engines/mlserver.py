"""The ``mlserver`` engine (extra ``mldeploy[mlserver]``): MLServer hosting one custom runtime
that answers the same contract as the flask engine — ``/ping``, ``/health``, ``/version`` and
``/invocations`` through :mod:`mldeploy.container.protocol` — plus MLServer's own V2 routes
(``/v2/models/model/infer``) and gRPC.

MLServer's HTTP, gRPC and metrics servers bind ``settings.host`` on ``port``, ``port + 1`` and
``port + 2``. Inference runs in the server process (MLServer's parallel workers off): MLServer
has one process, the flask engine ``settings.workers``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from ..settings import ServerSettings

_log = logging.getLogger("mldeploy.container")
MODEL_NAME = "model"


def run(settings: ServerSettings) -> int:
    """Serve with MLServer until SIGTERM/SIGINT; return the exit code."""
    try:
        from mlserver import MLServer
        from mlserver.settings import ModelParameters, ModelSettings, Settings
    except ImportError:
        _log.error("engine 'mlserver' needs MLServer: pip install 'mldeploy[mlserver]'")
        return 2
    from ._mlserver_runtime import MldeployRuntime

    server_settings = Settings(
        host=settings.host,
        http_port=settings.port,
        grpc_port=settings.port + 1,
        metrics_port=settings.port + 2,
        parallel_workers=0,
        debug=False,
        load_models_at_startup=True,
        model_repository_root="/nonexistent-mldeploy",  # the one model comes from settings
        gzip_enabled=False,
    )
    model_settings = ModelSettings(
        name=MODEL_NAME,
        implementation=MldeployRuntime,
        parameters=ModelParameters(uri=settings.model_uri, extra=dataclasses.asdict(settings)),
    )
    async def serve() -> None:
        # MLServer binds its SIGTERM/SIGINT handlers to the loop current at construction.
        await MLServer(server_settings).start([model_settings])

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        return 0
    return 0


def settings_from_extra(extra: dict[str, Any] | None) -> ServerSettings:
    """Rebuild the server settings the engine passed through MLServer's model parameters."""
    fields = {f.name for f in dataclasses.fields(ServerSettings)}
    return ServerSettings(**{k: v for k, v in (extra or {}).items() if k in fields})
