"""Every setting of the serving container, read once at start (never at import).

Precedence: explicit argument (CLI flag) > environment variable > default. The environment names
are SageMaker's where SageMaker defines one, ``MLDEPLOY_*`` otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from .engines import DEFAULT_ENGINE
from .engines import ENGINE_NAMES as ENGINES

DEFAULT_MODEL_DIR = "/opt/ml/model"
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
        values.setdefault("workers", os.cpu_count() or 1)
        if isinstance(values.get("preload"), str):
            mode = str(values["preload"]).strip().lower()
            values["preload"] = _PRELOAD_ALIASES.get(mode, mode)
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
