"""Compose target configuration: every key, its type, default and limits in one place.

Keys are the ``-C key=value`` names (``-C publish=0.0.0.0:5001 -C cpus=2 -C memory=2g``);
``-C with=tracking,postgres,artifacts,metrics`` adds the optional services (``with`` is the
key on the command line and in files; the field is ``with_``); ``env`` and ``images`` take JSON
or dotted keys (``-C env.MLDEPLOY_THREADS=8``, ``-C images.postgres=postgres:16.4-bookworm``).
Checked before anything runs (``validate``); unknown keys are an error.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from mldeploy.errors import ConfigError
from mldeploy.images import BuildOptions
from mldeploy.plugins.local.config import MIN_MEMORY_BYTES, memory_bytes

_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_KEY = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]*$")


class Optional_(str, enum.Enum):
    """The optional services of ``-C with=...``."""

    TRACKING = "tracking"
    POSTGRES = "postgres"
    ARTIFACTS = "artifacts"
    METRICS = "metrics"


class Pull(str, enum.Enum):
    """``docker compose up --pull``: ``missing`` (Compose's default) or ``never`` (offline)."""

    MISSING = "missing"
    NEVER = "never"


class NetworkMode(str, enum.Enum):
    """``bridge``: the project's own network, the front published on ``publish`` (default);
    ``host``: every service on the host's network (each server on its own 127.0.0.1 port)."""

    BRIDGE = "bridge"
    HOST = "host"


# The images the generated files name for the optional services: pinned, never ``latest``.
# Tests (and offline users) point them at local images with ``-C images.NAME=...`` or an
# override file.
DEFAULT_IMAGES: dict[str, str] = {
    "proxy": "python:3.11-slim-bookworm",
    "postgres": "postgres:16.4-bookworm",
    "tracking": "ghcr.io/mlflow/mlflow:v2.16.2",
    "artifacts": "minio/minio:RELEASE.2024-10-02T17-50-41Z",
    "metrics": "prom/prometheus:v2.54.1",
}


def default_projects_dir() -> Path:
    """``$MLDEPLOY_COMPOSE_DIR``, else ``$XDG_STATE_HOME/mldeploy/compose``, else
    ``~/.local/state/mldeploy/compose``."""
    explicit = os.environ.get("MLDEPLOY_COMPOSE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "mldeploy" / "compose"


def parse_publish(text: str) -> tuple[str, int]:
    """``"127.0.0.1:5001"`` / ``"5001"`` -> (address, port)."""
    host, sep, port = str(text).strip().rpartition(":")
    if not sep:
        host, port = "127.0.0.1", str(text).strip()
    try:
        ipaddress.ip_address(host.strip("[]"))
        number = int(port)
        if not 1 <= number <= 65535:
            raise ValueError
    except ValueError:
        raise ConfigError(f"config publish={text!r} is not ADDRESS:PORT",
                          hint="e.g. -C publish=127.0.0.1:5001 (the default) or "
                               "-C publish=0.0.0.0:5001 to open it to the network") from None
    return host, number


@dataclass(frozen=True)
class ComposeConfig:
    projects_dir: str | None = field(default=None, metadata={
        "help": "where the projects live, one folder per deployment (or the spec "
                "compose:/DIR; default $MLDEPLOY_COMPOSE_DIR or ~/.local/state/mldeploy/compose)"})
    publish: str = field(default="127.0.0.1:5001", metadata={
        "help": "address:port the deployment answers on (loopback by default; "
                "0.0.0.0:5001 opens it)"})
    network_mode: NetworkMode = field(default=NetworkMode.BRIDGE, metadata={
        "help": "bridge (the project's network) or host (every service on the host's network, "
                "each server on its own 127.0.0.1 port)"})
    with_: list[Optional_] = field(default_factory=list, metadata={
        "help": "optional services, -C with=tracking,postgres,artifacts,metrics"})
    image: str | None = field(default=None, metadata={
        "help": "serve this local image instead of building one from the model"})
    build: BuildOptions = field(default_factory=BuildOptions, metadata={
        "help": "image builder options (-C build.base_image=..., build.engine=..., the same keys "
                "on every target)"})
    rebuild: bool = field(default=False, metadata={
        "help": "build the model's image even if one for the same content exists"})
    images: dict[str, str] = field(default_factory=dict, metadata={
        "help": "images of the other services: proxy, postgres, tracking, artifacts, metrics "
                "(defaults: pinned official images)"})
    cpus: float = field(default=1.0, metadata={
        "min": 0.01, "max": 1024.0, "help": "CPU limit of a model service"})
    memory: str = field(default="2g", metadata={
        "help": "memory limit of a model service, e.g. 2g"})
    workers: int | None = field(default=None, metadata={
        "min": 1, "max": 64, "help": "server worker processes (default: cpus rounded up)"})
    env: dict[str, str] = field(default_factory=dict, metadata={
        "help": "extra environment variables of the model services (settings: in .env)"})
    secrets: dict[str, str] = field(default_factory=dict, metadata={
        "help": "secrets for the model services: files with mode 0600 mounted at "
                "/run/secrets/NAME, never in compose.yaml or .env"})
    override_files: list[str] = field(default_factory=list, metadata={
        "help": "Compose files applied over the generated one (docker compose -f), e.g. to run "
                "local images"})
    pull: Pull = field(default=Pull.MISSING, metadata={
        "help": "docker compose up --pull: missing (default) or never"})
    compose_command: str | None = field(default=None, metadata={
        "help": "the Compose command, e.g. 'docker compose' or /usr/bin/docker-compose "
                "(default: docker compose, else docker-compose; $MLDEPLOY_COMPOSE)"})
    timeout_seconds: float = field(default=300.0, metadata={
        "min": 1.0, "help": "seconds a new model service has to become healthy"})
    stop_grace_period: int = field(default=30, metadata={
        "min": 1, "max": 600, "help": "seconds between SIGTERM and SIGKILL; the server drains "
                                      "in-flight requests within it"})
    volumes: bool = field(default=False, metadata={
        "help": "delete: remove the data volumes (PostgreSQL, artifacts, metrics) too"})
    log_lines: int = field(default=30, metadata={
        "min": 0, "max": 1000, "help": "log lines shown when a service fails to start"})

    def validate(self) -> None:
        parse_publish(self.publish)
        if memory_bytes(self.memory) < MIN_MEMORY_BYTES:
            raise ConfigError(f"config memory={self.memory} is below Docker's minimum of 6m")
        for key in self.env:
            if not _ENV_KEY.match(key):
                raise ConfigError(f"config env.{key} is not a valid environment variable name")
        for key in self.secrets:
            if not _SECRET_KEY.match(key):
                raise ConfigError(f"config secrets.{key} is not a valid secret name",
                                  hint="lower-case letters, digits and _, starting with a letter")
        for key, ref in self.images.items():
            if key not in DEFAULT_IMAGES:
                raise ConfigError(f"unknown config key 'images.{key}'",
                                  hint=f"valid keys under images: {', '.join(DEFAULT_IMAGES)}")
            if not _IMAGE.match(ref) or ref.endswith(":latest"):
                raise ConfigError(f"config images.{key}={ref!r} is not a pinned image reference",
                                  hint="name a tag (never latest) or a digest")
        wanted = set(self.with_)
        if Optional_.TRACKING in wanted and Optional_.POSTGRES not in wanted:
            raise ConfigError("config with=tracking needs postgres too",
                              hint="use -C with=tracking,postgres (the tracking server keeps "
                                   "runs in PostgreSQL; add artifacts for an S3 artifact store)")
        if self.image is not None and not self.image.strip():
            raise ConfigError("config image is empty", hint="give a local image reference")
        for path in self.override_files:
            if not Path(path).expanduser().is_file():
                raise ConfigError(f"config override_files: no file {path!r}",
                                  hint="give the path of a Compose file")
        self.build.validate()

    def resolved_projects_dir(self, location: str | None = None) -> Path:
        if location:
            return Path(location).expanduser()
        return Path(self.projects_dir).expanduser() if self.projects_dir else \
            default_projects_dir()

    def resolved_workers(self) -> int:
        return self.workers if self.workers is not None else max(1, int(-(-self.cpus // 1)))

    def image_of(self, service: str) -> str:
        return self.images.get(service) or DEFAULT_IMAGES[service]

    def wants(self, service: Optional_) -> bool:
        return service in self.with_


__all__ = ["DEFAULT_IMAGES", "ComposeConfig", "NetworkMode", "Optional_", "Pull",
           "default_projects_dir", "memory_bytes", "parse_publish"]
