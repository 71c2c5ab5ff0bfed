"""The ``mlserver`` engine (extra ``mldeploy[mlserver]``): MLServer hosting one custom runtime
that answers the same contract as the flask engine — ``/ping``, ``/health``, ``/version`` and
``/invocations`` through :mod:`mldeploy.container.protocol` — plus MLServer's own V2 routes
(``/v2/models/model/infer``) and gRPC.

MLServer's HTTP, gRPC and metrics servers bind ``settings.host`` on ``port``, ``port + 1`` and
``metrics_port`` (default ``port + 2``). MLServer's metrics server and our ``/metrics`` on
``port`` render the same registry: MLServer's own metrics and mldeploy's
(:mod:`mldeploy.container.metrics`). By default inference runs in the server process;
``mlserver_parallel_workers`` starts MLServer's parallel inference workers (spawned processes,
each loading the model; the metrics are then collected over them in a per-server directory
under ``/tmp``), and ``mlserver_max_batch_size`` / ``mlserver_max_batch_time`` turn on MLServer's
adaptive batching of V2 requests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import tempfile
from typing import Any

from .. import environment
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

    if (code := environment.prepare(settings)) is not None:  # the model's requirements
        return code
    # MLServer's multiprocess metrics files (parallel workers only): a fresh directory in /tmp,
    # not its default ./.metrics (read-only root filesystems; stale files of an older server).
    metrics_dir = tempfile.mkdtemp(prefix="mldeploy-mlserver-metrics-", dir="/tmp")
    server_settings = Settings(**server_options(settings, metrics_dir))
    model_settings = ModelSettings(
        name=MODEL_NAME,
        implementation=MldeployRuntime,
        parameters=ModelParameters(uri=settings.model_uri, extra=dataclasses.asdict(settings)),
        **batching_options(settings),
    )

    async def serve() -> None:
        # MLServer binds its SIGTERM/SIGINT handlers to the loop current at construction.
        await MLServer(server_settings).start([model_settings])

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        return 0
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def server_options(settings: ServerSettings, metrics_dir: str) -> dict[str, Any]:
    """MLServer's server-wide settings for ``settings``."""
    return {
        "host": settings.host,
        "http_port": settings.port,
        "grpc_port": settings.port + 1,
        "metrics_port": settings.metrics_port or settings.port + 2,
        # None turns MLServer's metrics server off (and our /metrics with it)
        "metrics_endpoint": "/metrics" if settings.metrics == "on" else None,
        "metrics_dir": metrics_dir,
        "parallel_workers": settings.mlserver_parallel_workers,
        "debug": False,
        "load_models_at_startup": True,
        "model_repository_root": "/nonexistent-mldeploy",  # the one model comes from settings
        "gzip_enabled": False,
    }


def batching_options(settings: ServerSettings) -> dict[str, Any]:
    """MLServer's adaptive batching for the model (off unless max_batch_size > 1)."""
    if settings.mlserver_max_batch_size <= 1:
        return {}
    return {"max_batch_size": settings.mlserver_max_batch_size,
            "max_batch_time": settings.mlserver_max_batch_time}


def settings_from_extra(extra: dict[str, Any] | None) -> ServerSettings:
    """Rebuild the server settings the engine passed through MLServer's model parameters."""
    fields = {f.name for f in dataclasses.fields(ServerSettings)}
    return ServerSettings(**{k: v for k, v in (extra or {}).items() if k in fields})
