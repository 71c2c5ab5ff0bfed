"""Local target configuration: every key, its type, default and limits in one place.

Keys are the ``-C key=value`` names (``-C memory=2g -C cpus=1 -C port=8080``); ``env`` takes JSON
(``-C 'env={"MLDEPLOY_THREADS": "8"}'``) or dotted keys (``-C env.MLDEPLOY_THREADS=8``). Checked
before anything runs (``validate``).
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from mldeploy.container.engines import ENGINE_NAMES
from mldeploy.errors import ConfigError
from mldeploy.images import BuildOptions, merge_aliases

DEFAULT_VARIANT = "primary"
ENGINES = ENGINE_NAMES
# SageMaker's endpoint/variant name rule, which also keeps container and file names safe.
NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)\s*([bkmg]?)b?$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
MIN_MEMORY_BYTES = 6 * 1024**2  # the Docker engine's own lower limit


def memory_bytes(text: str) -> int:
    """``"2g"`` / ``"512m"`` / ``"1.5g"`` / ``"1073741824"`` -> bytes (ConfigError otherwise)."""
    m = _MEMORY.match(str(text).strip())
    if not m:
        raise ConfigError(f"config memory={text!r} is not a size",
                          hint="use a number with an optional unit b, k, m or g, e.g. 2g or 512m")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def default_state_dir() -> Path:
    """``$MLDEPLOY_LOCAL_STATE_DIR``, else ``$XDG_STATE_HOME/mldeploy/local``, else
    ``~/.local/state/mldeploy/local``."""
    explicit = os.environ.get("MLDEPLOY_LOCAL_STATE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "mldeploy" / "local"


@dataclass(frozen=True)
class LocalConfig:
    host: str = field(default="127.0.0.1", metadata={
        "help": "address the gateway listens on (loopback by default)"})
    port: int = field(default=0, metadata={
        "min": 0, "max": 65535, "help": "gateway port on create (0: a free one)"})
    memory: str | None = field(default=None, metadata={
        "help": "memory limit per container, e.g. 2g (docker run --memory)"})
    cpus: float | None = field(default=None, metadata={
        "min": 0.01, "max": 1024.0, "help": "CPU limit per container, e.g. 1 or 0.5"})
    workers: int | None = field(default=None, metadata={
        "min": 1, "max": 64, "help": "server worker processes (default: cpus rounded up, "
                                     "else the server's default)"})
    variant_name: str | None = field(default=None, metadata={
        "help": f"variant to create ({DEFAULT_VARIANT}), replace (default: all) or add"})
    weight: float = field(default=1.0, metadata={
        "min": 0.0, "help": "traffic weight of the variant that add creates"})
    image: str | None = field(default=None, metadata={
        "help": "serve this local image instead of building one from the model"})
    build: BuildOptions = field(default_factory=BuildOptions, metadata={
        "help": "image builder options (-C build.base_image=..., build.engine=..., the same keys "
                "on every target); an endpoint keeps the ones it was created with"})
    base_image: str | None = field(default=None, metadata={
        "help": "older name of build.base_image"})
    engine: str | None = field(default=None, metadata={
        "choices": ENGINES, "help": "older name of build.engine"})
    rebuild: bool = field(default=False, metadata={
        "help": "build the model's image even if one for the same content exists"})
    env: dict[str, str] = field(default_factory=dict, metadata={
        "help": "extra environment variables for the containers"})
    startup_timeout: float = field(default=300.0, metadata={
        "min": 1.0, "help": "seconds a new container has to answer /ping with 200"})
    drain_timeout: float = field(default=30.0, metadata={
        "min": 0.0, "help": "seconds to wait for in-flight requests before stopping a container"})
    stop_timeout: int = field(default=10, metadata={
        "min": 0, "max": 300, "help": "seconds between SIGTERM and SIGKILL when stopping"})
    upstream_timeout: float = field(default=70.0, metadata={
        "min": 0.1, "help": "seconds the gateway waits for a container's answer"})
    state_dir: str | None = field(default=None, metadata={
        "help": "where endpoint state lives (default: $MLDEPLOY_LOCAL_STATE_DIR or "
                "~/.local/state/mldeploy/local)"})
    log_lines: int = field(default=30, metadata={
        "min": 0, "max": 1000, "help": "container log lines shown when a start fails"})

    def validate(self) -> None:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            raise ConfigError(f"config host={self.host!r} is not an IP address",
                              hint="use 127.0.0.1 (the default) or another local address") from None
        if self.memory is not None and memory_bytes(self.memory) < MIN_MEMORY_BYTES:
            raise ConfigError(f"config memory={self.memory} is below Docker's minimum of 6m")
        if self.variant_name is not None and not NAME_RE.match(self.variant_name):
            raise ConfigError(f"config variant_name={self.variant_name!r} is not a valid name",
                              hint="letters, digits and hyphens, at most 63")
        for key in self.env:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ConfigError(f"config env.{key} is not a valid environment variable name")
        self.build_options()  # the two spellings of a key must agree
        if self.image is not None and not self.image.strip():
            raise ConfigError("config image is empty", hint="give a local image reference")

    def build_options(self) -> BuildOptions:
        """``build`` with the older top-level ``engine`` / ``base_image`` keys folded in."""
        return merge_aliases(self.build, "local config", engine=self.engine,
                             base_image=self.base_image)

    def resolved_state_dir(self) -> Path:
        return Path(self.state_dir).expanduser() if self.state_dir else default_state_dir()

    def resolved_workers(self) -> int | None:
        if self.workers is not None:
            return self.workers
        if self.cpus is not None:
            return max(1, int(-(-self.cpus // 1)))
        return None


def check_name(name: str, what: str = "deployment name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(f"{what} {name!r} is not valid",
                          hint="letters, digits and hyphens, starting with a letter or digit, "
                               "at most 63 characters")
    return name


__all__ = ["DEFAULT_VARIANT", "LocalConfig", "check_name", "default_state_dir", "memory_bytes"]
