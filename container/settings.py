"""Every setting of the serving container, read once at start (never at import).

Precedence: explicit argument (CLI flag) > environment variable > default. The environment names
are SageMaker's where SageMaker defines one, ``MLDEPLOY_*`` otherwise.

The model: ``--model`` > ``MLDEPLOY_MODEL_URI`` > the model Azure ML mounted (``AZUREML_MODEL_DIR``
set: the one ``MLmodel`` at that directory or in a folder directly under it) > ``/opt/ml/model``
(SageMaker's path, where images also bake the model in).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from .engines import DEFAULT_ENGINE
from .engines import ENGINE_NAMES as ENGINES

DEFAULT_MODEL_DIR = "/opt/ml/model"
# Azure ML mounts a deployment's model under /var/azureml-app/azureml-models/<name>/<version> and
# points this variable there; a model registered from a folder sits one level down.
AZUREML_MODEL_DIR = "AZUREML_MODEL_DIR"
DEFAULT_PORT = 8080
DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_MAX_REQUEST_BYTES = 6 * 1024 * 1024  # SageMaker real-time payload limit
DEFAULT_THREADS = 4
DEFAULT_GRACEFUL_SECONDS = 25.0  # SageMaker sends SIGKILL 30 s after SIGTERM
PRELOAD_MODES = ("auto", "on", "off")
_PRELOAD_ALIASES = {"true": "on", "1": "on", "yes": "on", "false": "off", "0": "off", "no": "off"}
# --- transport (the flask engine's HTTP front, issue #17) ---
DEFAULT_HEADER_TIMEOUT_SECONDS = 10.0
DEFAULT_BODY_TIMEOUT_SECONDS = 30.0
DEFAULT_KEEPALIVE_SECONDS = 75.0  # longer than load balancers' idle timeouts (60 s)
DEFAULT_MAX_CONNECTIONS = 1000  # per worker process
# --- end transport ---
METRICS_MODES = ("on", "off")
ENV_MANAGERS = ("local", "virtualenv", "uv")

# name of the setting -> environment variable
ENV_NAMES = {
    "model_uri": "MLDEPLOY_MODEL_URI",
    "host": "MLDEPLOY_HOST",
    "port": "SAGEMAKER_BIND_TO_PORT",
    "workers": "SAGEMAKER_MODEL_SERVER_WORKERS",
    "threads": "MLDEPLOY_THREADS",
    "timeout": "SAGEMAKER_MODEL_SERVER_TIMEOUT",
    "max_request_bytes": "MLDEPLOY_MAX_REQUEST_BYTES",
    "graceful_timeout": "MLDEPLOY_GRACEFUL_TIMEOUT",
    "engine": "MLDEPLOY_ENGINE",
    "log_level": "MLDEPLOY_LOG_LEVEL",
    "preload": "MLDEPLOY_PRELOAD",
    # --- transport (#17) ---
    "header_timeout": "MLDEPLOY_HEADER_TIMEOUT",
    "body_timeout": "MLDEPLOY_BODY_TIMEOUT",
    "keepalive_timeout": "MLDEPLOY_KEEPALIVE_TIMEOUT",
    "max_connections": "MLDEPLOY_MAX_CONNECTIONS",
    # --- end transport ---
    "metrics": "MLDEPLOY_METRICS",
    "metrics_port": "MLDEPLOY_METRICS_PORT",
    "env_manager": "MLDEPLOY_ENV_MANAGER",
    "mlserver_parallel_workers": "MLDEPLOY_MLSERVER_PARALLEL_WORKERS",
    "mlserver_max_batch_size": "MLDEPLOY_MLSERVER_MAX_BATCH_SIZE",
    "mlserver_max_batch_time": "MLDEPLOY_MLSERVER_MAX_BATCH_TIME",
}


class SettingsError(ValueError):
    """A setting has an invalid value; the message names the setting and its source."""


@dataclass(frozen=True)
class ServerSettings:
    """Resolved settings of one server run."""

    model_uri: str = DEFAULT_MODEL_DIR
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 1
    threads: int = DEFAULT_THREADS
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    graceful_timeout: float = DEFAULT_GRACEFUL_SECONDS
    engine: str = DEFAULT_ENGINE
    log_level: str = "info"
    # Load the model once before forking the workers (flask engine): "auto" does it for model
    # flavors known to survive fork() (see loader.fork_safe), "on"/"off" force it.
    preload: str = "auto"
    # --- transport (#17): the flask engine's HTTP front (engines/_transport.py) ---
    # A request's head must arrive within header_timeout (from the connection's start, or from
    # its first byte on a kept-alive connection), its body within body_timeout after the head:
    # else 408. Idle kept-alive connections close after keepalive_timeout. At most
    # max_connections open connections per worker (idle ones are closed first to make room).
    header_timeout: float = DEFAULT_HEADER_TIMEOUT_SECONDS
    body_timeout: float = DEFAULT_BODY_TIMEOUT_SECONDS
    keepalive_timeout: float = DEFAULT_KEEPALIVE_SECONDS
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    # --- end transport ---
    # Prometheus /metrics: "on" or "off"; metrics_port 0 serves it on ``port`` (flask engine:
    # any other port gets a separate listener; mlserver engine: MLServer's metrics port, whose
    # default is port + 2).
    metrics: str = "on"
    metrics_port: int = 0
    # Where the model's Python requirements come from: "local" checks them against this
    # environment; "virtualenv" / "uv" build the model's own environment once (cached) and
    # serve from it.
    env_manager: str = "local"
    # mlserver engine: MLServer's parallel inference workers (0: in the server process) and its
    # adaptive batching of V2 requests (max_batch_size > 1 turns it on; max_batch_time seconds).
    mlserver_parallel_workers: int = 0
    mlserver_max_batch_size: int = 0
    mlserver_max_batch_time: float = 0.0

    @classmethod
    def resolve(
        cls, env: Mapping[str, str] | None = None, **explicit: object
    ) -> ServerSettings:
        """Build settings from explicit values (None = not given), then ``env``, then defaults.

        ``workers`` defaults to one per CPU core, as SageMaker's containers do.
        """
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        known = {f.name: f for f in fields(cls)}
        unknown = set(explicit) - set(known)
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        for name, field in known.items():
            given = explicit.get(name)
            if given is not None:
                values[name] = _convert(name, given, field.type, "argument")
                continue
            env_name = ENV_NAMES.get(name)
            raw = env.get(env_name, "").strip() if env_name else ""
            if raw:
                values[name] = _convert(name, raw, field.type, f"environment variable {env_name}")
        if "model_uri" not in values and env.get(AZUREML_MODEL_DIR, "").strip():
            values["model_uri"] = azureml_model(env[AZUREML_MODEL_DIR].strip())
        values.setdefault("workers", os.cpu_count() or 1)
        if isinstance(values.get("preload"), str):
            mode = str(values["preload"]).strip().lower()
            values["preload"] = _PRELOAD_ALIASES.get(mode, mode)
        for name in ("metrics", "env_manager"):
            if isinstance(values.get(name), str):
                mode = str(values[name]).strip().lower()
                values[name] = _PRELOAD_ALIASES.get(mode, mode) if name == "metrics" else mode
        settings = cls(**values)  # type: ignore[arg-type]
        settings._check()
        return settings

    def _check(self) -> None:
        if not 0 < self.port < 65536:
            raise SettingsError(f"port must be 1-65535, got {self.port}")
        if self.workers < 1:
            raise SettingsError(f"workers must be at least 1, got {self.workers}")
        if self.threads < 1:
            raise SettingsError(f"threads must be at least 1, got {self.threads}")
        if self.timeout <= 0:
            raise SettingsError(f"timeout must be positive seconds, got {self.timeout}")
        if self.max_request_bytes < 1:
            raise SettingsError(f"max_request_bytes must be positive, got {self.max_request_bytes}")
        # --- transport (#17) ---
        for name in ("header_timeout", "body_timeout", "keepalive_timeout"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be positive seconds, got {getattr(self, name)}")
        if self.max_connections < 2:
            raise SettingsError(f"max_connections must be at least 2, got {self.max_connections}")
        # --- end transport ---
        if self.engine not in ENGINES:
            raise SettingsError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.preload not in PRELOAD_MODES:
            raise SettingsError(
                f"preload must be one of {', '.join(PRELOAD_MODES)}, got {self.preload!r}"
            )
        if self.metrics not in METRICS_MODES:
            raise SettingsError(
                f"metrics must be one of {', '.join(METRICS_MODES)}, got {self.metrics!r}"
            )
        if not 0 <= self.metrics_port < 65536:
            raise SettingsError(f"metrics_port must be 0-65535, got {self.metrics_port}")
        if self.env_manager not in ENV_MANAGERS:
            raise SettingsError(
                f"env_manager must be one of {', '.join(ENV_MANAGERS)}, got {self.env_manager!r}"
            )
        if self.mlserver_parallel_workers < 0:
            raise SettingsError("mlserver_parallel_workers must be 0 or more, got "
                                f"{self.mlserver_parallel_workers}")
        if self.mlserver_max_batch_size < 0 or self.mlserver_max_batch_time < 0:
            raise SettingsError("mlserver_max_batch_size and mlserver_max_batch_time must be 0 "
                                "or more")
        if self.mlserver_max_batch_size > 1 and self.mlserver_max_batch_time <= 0:
            raise SettingsError("adaptive batching (mlserver_max_batch_size > 1) needs "
                                "mlserver_max_batch_time, the seconds to wait for a batch")

    @property
    def metrics_listener(self) -> int | None:
        """The port of a separate metrics listener, or None (off, or on the serving port)."""
        if self.metrics == "off" or self.metrics_port in (0, self.port):
            return None
        return self.metrics_port


def azureml_model(root: str) -> str:
    """The MLflow model directory in Azure ML's model mount ``root`` (``AZUREML_MODEL_DIR``):
    ``root`` itself when it holds an ``MLmodel``, else the one folder directly under it that
    does. None or several is a :class:`SettingsError` naming the path."""
    base = Path(root)
    if (base / "MLmodel").is_file():
        return str(base)
    if not base.is_dir():
        raise SettingsError(f"{AZUREML_MODEL_DIR}={root} is not a directory: Azure ML mounts "
                            "the deployment's model there; check the deployment names a model")
    try:
        found = sorted(p.parent for p in base.glob("*/MLmodel") if p.is_file())
    except OSError as exc:
        raise SettingsError(f"cannot read {AZUREML_MODEL_DIR}={root}: {exc.strerror}") from None
    if len(found) == 1:
        return str(found[0])
    if not found:
        raise SettingsError(f"no MLflow model (MLmodel file) in {AZUREML_MODEL_DIR}={root} nor "
                            "in a folder directly under it: register the model as an "
                            "mlflow_model asset from the MLflow model's folder")
    raise SettingsError(f"{len(found)} MLflow models under {AZUREML_MODEL_DIR}={root} ("
                        + ", ".join(p.name for p in found) + "): set MLDEPLOY_MODEL_URI to "
                        "the one to serve")


def _convert(name: str, value: object, type_name: object, source: str) -> object:
    kind = {"int": int, "float": float, "str": str}[str(type_name)]
    if isinstance(value, kind) and not isinstance(value, bool):
        return value
    try:
        return kind(value)  # type: ignore[call-arg]
    except (TypeError, ValueError):
        raise SettingsError(
            f"{name} from {source} must be {kind.__name__}, got {value!r}"
        ) from None
