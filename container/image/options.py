"""Typed options and results of the image builder.

:class:`ImageOptions` is everything that decides what goes into an image; :class:`DockerContext`,
:class:`BuildResult` and :class:`PushResult` are what the builder hands back.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from mldeploy.container.engines import ENGINE_NAMES
from mldeploy.errors import ConfigError

ENGINES = ENGINE_NAMES
ENV_MANAGERS = ("virtualenv", "local")
PLATFORMS = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
DEFAULT_IMAGE_NAME = "mldeploy-model"
#: Set once for a machine without a registry (``scripts/build-base-image.sh`` prints a name).
BASE_IMAGE_ENV = "MLDEPLOY_BASE_IMAGE"
# The highest glibc whose manylinux wheels may go into an image (Debian bookworm: 2.36, the
# python:3.x-slim images and the offline base image).
DEFAULT_GLIBC = (2, 36)

_PYTHON_VERSION = re.compile(r"^3\.\d{1,2}$")
# docker reference: [host[:port]/]path[:tag] (lowercase path, no digest here)
_IMAGE_REF = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::\d+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?$"
)


def default_cache_dir() -> Path:
    """``$MLDEPLOY_CACHE_DIR``, else ``$XDG_CACHE_HOME/mldeploy``, else ``~/.cache/mldeploy``."""
    explicit = os.environ.get("MLDEPLOY_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "mldeploy"


def default_base_image() -> str | None:
    """``$MLDEPLOY_BASE_IMAGE`` when set, else None (``python:<python>-slim``)."""
    return os.environ.get(BASE_IMAGE_ENV, "").strip() or None


@dataclass(frozen=True)
class ImageOptions:
    """What goes into an image.

    ``model_uri`` None builds a generic image that serves whatever is mounted at ``/opt/ml/model``.
    ``base_image`` None means ``$MLDEPLOY_BASE_IMAGE``, else ``python:<python_version>-slim``.
    ``python_version`` (``"3.11"``)
    None means the base image's (probed when building) or else the model's. ``env_manager``
    ``virtualenv`` installs the model's pinned requirements; ``local`` pins them to the versions
    installed in the calling Python environment instead. ``extra_requirements`` are added to the
    model's. ``mldeploy_wheel`` None builds mldeploy's wheel from its source tree.
    ``include_dotfiles`` copies the model's dotfiles too (see :mod:`.model_files`).
    """

    model_uri: str | None = None
    name: str = DEFAULT_IMAGE_NAME
    engine: str = "flask"
    base_image: str | None = None
    env_manager: str = "virtualenv"
    platform: str = "linux/amd64"
    python_version: str | None = None
    extra_requirements: tuple[str, ...] = ()
    mldeploy_wheel: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    network_mode: str = "none"
    no_cache: bool = False
    cache_dir: str | None = None
    include_dotfiles: bool = False

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigError(
                f"unknown engine {self.engine!r}", hint=f"use one of: {', '.join(ENGINES)}"
            )
        if self.env_manager == "conda":
            raise ConfigError(
                "env manager 'conda' is not supported for images",
                hint="use --env-manager virtualenv (the model's pip requirements) or local",
            )
        if self.env_manager not in ENV_MANAGERS:
            raise ConfigError(
                f"unknown env manager {self.env_manager!r}",
                hint=f"use one of: {', '.join(ENV_MANAGERS)}",
            )
        if self.platform not in PLATFORMS:
            raise ConfigError(
                f"unsupported platform {self.platform!r}",
                hint=f"use one of: {', '.join(PLATFORMS)}",
            )
        if self.python_version is not None and not _PYTHON_VERSION.match(self.python_version):
            raise ConfigError(
                f"python version must look like 3.11, got {self.python_version!r}",
                hint="pass major.minor only",
            )
        check_image_name(self.name)
        for key, value in self.labels:
            if not key or any(c in key + value for c in "\n\r\0"):
                raise ConfigError(f"invalid label {key!r}", hint="labels are one-line KEY=VALUE")

    @property
    def arch(self) -> str:
        """The machine name of ``platform`` (``x86_64`` or ``aarch64``)."""
        return PLATFORMS[self.platform]

    def cache_path(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()


def check_image_name(name: str) -> str:
    """Return ``name`` if it is a valid docker image reference, else raise ``ConfigError``."""
    if not name or len(name) > 255 or not _IMAGE_REF.match(name):
        raise ConfigError(
            f"invalid image name {name!r}",
            hint="use lowercase letters, digits, '.', '_', '-', '/' and an optional ':tag', "
            "e.g. my-model:1",
        )
    return name


@dataclass(frozen=True)
class DockerContext:
    """A build context on disk: ``directory`` holds ``Dockerfile`` and everything it copies."""

    directory: Path
    dockerfile: Path
    base_image: str
    python_version: str
    engine: str
    requirements: tuple[str, ...]  # the pinned set installed in the image (name==version)
    notes: tuple[str, ...]  # how the model's requirements were resolved
    labels: dict[str, str] = field(default_factory=dict)
    has_model: bool = True


@dataclass(frozen=True)
class PushResult:
    """An image pushed to a registry."""

    reference: str  # registry/repository:tag that was pushed
    digest: str | None  # sha256:... manifest digest the registry reported
    repository_uri: str  # registry/repository
    created_repository: bool = False


@dataclass(frozen=True)
class BuildResult:
    """A built image. ``size_bytes`` is the engine's image size; ``seconds`` the build's wall time
    (context assembly included); ``digest`` is the registry digest when the image was pushed."""

    image_id: str
    tags: tuple[str, ...]
    size_bytes: int
    seconds: float
    python_version: str
    base_image: str
    engine: str
    requirements: tuple[str, ...]
    notes: tuple[str, ...]
    labels: dict[str, str] = field(default_factory=dict)
    cached_steps: int = 0
    total_steps: int = 0
    push: PushResult | None = None

    @property
    def digest(self) -> str | None:
        return self.push.digest if self.push else None
