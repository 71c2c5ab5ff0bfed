"""The image service every target builds its model's image with.

* :class:`BuildOptions` is the one ``build`` options block, the same ``-C build.*`` keys on every
  target (``-C build.engine=mlserver -C build.base_image=mldeploy-base:bookworm-v2``). A field left
  ``None`` was not given: a target fills it from what the endpoint was created with
  (:meth:`BuildOptions.over`) and then from the defaults (:meth:`BuildOptions.effective`;
  the base image's default is ``$MLDEPLOY_BASE_IMAGE``, else ``python:<model's python>-slim``).
* :func:`content_digest` is the one digest of "the model's image": the files that go into it
  (paths, modes, bytes: :mod:`mldeploy.container.image.model_files`), the serving and image-builder
  sources of this mldeploy, the effective build options (engine and base included) and
  mldeploy's version. Targets tag their images with it, so an unchanged model is built once and
  any change (model, options, an mldeploy upgrade) builds anew.
* :data:`Builder` is the one builder seam: ``builder(request, log) -> str`` builds
  ``request.reference`` (an :class:`ImageRequest`) and returns the image's id (a target that
  pushes may return the pushed, pinned reference instead). Tests replace it; the default is
  :func:`docker_build` (the image builder on the local Docker engine).

The model directory always comes from :func:`mldeploy.model_uri.materialize`, so a download is
fetched once per run and removed when the run ends.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mldeploy.container.engines import ENGINE_NAMES
from mldeploy.container.image.options import BASE_IMAGE_ENV, default_base_image
from mldeploy.errors import ConfigError

Log = Callable[[str], None]
MODEL_URI_LABEL = "io.mldeploy.model.uri"


# The engine registry's names (Engine.FLASK, Engine.MLSERVER, ...): the one list of engines.
Engine = enum.Enum("Engine", {n.upper(): n for n in ENGINE_NAMES}, type=str)  # type: ignore[misc]


class EnvManager(str, enum.Enum):
    VIRTUALENV = "virtualenv"
    LOCAL = "local"


class Platform(str, enum.Enum):
    AMD64 = "linux/amd64"
    ARM64 = "linux/arm64"


_DEFAULTS: dict[str, Any] = {"engine": "flask", "base_image": None, "env_manager": "virtualenv",
                             "platform": "linux/amd64", "python_version": None,
                             "requirements": [], "include_dotfiles": False}


@dataclass(frozen=True)
class BuildOptions:
    """How a target builds the model's image (``-C build.KEY=VALUE``). ``None``: not given."""

    engine: Engine | None = field(default=None, metadata={
        "help": "serving engine in the image (default flask)"})
    base_image: str | None = field(default=None, metadata={
        "help": f"base image with python3 and venv (default ${BASE_IMAGE_ENV}, else "
                "python:<model's python>-slim; scripts/build-base-image.sh makes one offline)"})
    env_manager: EnvManager | None = field(default=None, metadata={
        "help": "virtualenv: the model's requirements (default); local: this environment's"})
    platform: Platform | None = field(default=None, metadata={
        "help": "linux/amd64 (default) or linux/arm64 (Graviton)"})
    python_version: str | None = field(default=None, metadata={
        "help": "Python of the image, e.g. 3.11 (default: the base image's, else the model's)"})
    requirements: list[str] | None = field(default=None, metadata={
        "help": "extra pip requirements installed with the model's, e.g. scikit-learn==1.5.2"})
    include_dotfiles: bool | None = field(default=None, metadata={
        "help": "copy the model's dotfiles (.env, .git, ...) into the image too (default false)"})

    def validate(self) -> None:
        from mldeploy.container.image.options import ImageOptions

        e = self.effective()
        ImageOptions(engine=e["engine"], base_image=e["base_image"],
                     env_manager=e["env_manager"], platform=e["platform"],
                     python_version=e["python_version"],
                     extra_requirements=tuple(e["requirements"]))
        if e["base_image"] is not None:
            from mldeploy.container.image.options import check_image_name

            check_image_name(e["base_image"])

    def given(self) -> dict[str, Any]:
        """The options that were set (not None), as plain values."""
        return {k: v.value if isinstance(v, enum.Enum) else v
                for k, v in dataclasses.asdict(self).items() if v is not None}

    def over(self, remembered: Mapping[str, Any] | None) -> BuildOptions:
        """These options, each one not given taken from ``remembered`` (an endpoint's)."""
        known = {f.name for f in dataclasses.fields(self)}
        old = {k: v for k, v in (remembered or {}).items() if k in known and v is not None}
        kinds = {"engine": Engine, "env_manager": EnvManager, "platform": Platform}
        merged = {**old, **self.given()}
        for key, kind in kinds.items():
            if merged.get(key) is not None:
                merged[key] = kind(merged[key])
        return dataclasses.replace(self, **merged)

    def effective(self) -> dict[str, Any]:
        """Every option with the defaults filled in (what the image is built with)."""
        out = {**_DEFAULTS, "base_image": default_base_image(), **self.given()}
        out["requirements"] = list(out["requirements"])
        return out

    def describe(self) -> str:
        e = self.effective()
        text = (f"{e['engine']}, {e['platform']}, base "
                f"{e['base_image'] or 'python:<model python>-slim'}")
        if e["requirements"]:
            text += f", + {', '.join(e['requirements'])}"
        return text

    def builder_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`mldeploy.container.image.build_docker`."""
        e = self.effective()
        kwargs: dict[str, Any] = {
            "engine": e["engine"], "env_manager": e["env_manager"], "platform": e["platform"],
            "extra_requirements": tuple(e["requirements"]),
            "include_dotfiles": e["include_dotfiles"]}
        for key in ("base_image", "python_version"):
            if e[key] is not None:
                kwargs[key] = e[key]
        return kwargs


def merge_aliases(options: BuildOptions | None, where: str, **aliases: Any) -> BuildOptions:
    """``options`` with a target's older top-level keys (``-C base_image=``) folded in; the
    same key given both ways with different values is a ``ConfigError``."""
    options = options or BuildOptions()
    extra = {}
    for key, value in aliases.items():
        if value is None:
            continue
        ours = options.given().get(key)
        if ours is not None and ours != value:
            raise ConfigError(f"{where}: {key}={value!r} and build.{key}={ours!r} disagree",
                              hint=f"give only build.{key} (the {key} key is its older name)")
        extra[key] = value
    return options.over(extra) if extra else options


@dataclass(frozen=True)
class ImageRequest:
    """One image to build: the model in ``model_dir`` (named ``model_uri`` by the user; None
    for a generic image) as ``reference``, with ``options``."""

    reference: str
    model_dir: Path | None
    model_uri: str | None
    options: BuildOptions
    digest: str  # content_digest(): what the image is
    labels: Mapping[str, str] = field(default_factory=dict)
    model_digest: str = ""  # model_digest(): the model's files alone


Builder = Callable[[ImageRequest, Log], str]


@functools.lru_cache(maxsize=1)
def _runtime_digest() -> str:
    """sha256 of this mldeploy's container sources (the server and the image builder)."""
    import mldeploy.container

    root = Path(mldeploy.container.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def model_digest(model_dir: Path, options: BuildOptions | None = None) -> str:
    """The hex sha256 of the model's files as they go into the image (paths, modes, bytes)."""
    from mldeploy.container.image import model_files

    dotfiles = (options or BuildOptions()).effective()["include_dotfiles"]
    return model_files.digest(model_files.select(Path(model_dir), include_dotfiles=dotfiles))


def content_digest(model_dir: Path | None, options: BuildOptions, *,
                   model: str | None = None) -> str:
    """The hex sha256 of everything that decides what the image is (see the module doc);
    ``model`` is the :func:`model_digest` when the caller has it already."""
    import mldeploy

    if model is None:
        model = "" if model_dir is None else model_digest(model_dir, options)
    blob = json.dumps({"model": model, "runtime": _runtime_digest(),
                       "options": options.effective(), "mldeploy": mldeploy.__version__},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def request(model_dir: Path | None, model_uri: str | None, options: BuildOptions,
            reference: Callable[[str], str], labels: Mapping[str, str] | None = None,
            ) -> ImageRequest:
    """The :class:`ImageRequest` for a model; ``reference(digest)`` names the image."""
    model = "" if model_dir is None else model_digest(model_dir, options)
    digest = content_digest(model_dir, options, model=model)
    return ImageRequest(reference(digest), model_dir, model_uri, options, digest,
                        dict(labels or {}), model)


def docker_build(req: ImageRequest, log: Log) -> str:
    """The default :data:`Builder`: mldeploy's image builder on the local Docker engine. The
    label ``io.mldeploy.model.uri`` names the user's model URI (credentials removed), not the
    temporary download the image was built from. Returns the image id."""
    from mldeploy.container.image import build_docker
    from mldeploy.container.image.wheelhouse import scrub

    labels = dict(req.labels)
    if req.model_uri is not None:
        labels[MODEL_URI_LABEL] = scrub(req.model_uri)
    result = build_docker(None if req.model_dir is None else str(req.model_dir),
                          name=req.reference, log=log, labels=labels,
                          **req.options.builder_kwargs())
    return result.image_id


__all__ = ["BASE_IMAGE_ENV", "Builder", "BuildOptions", "Engine", "EnvManager", "ImageRequest",
           "Platform", "content_digest",
           "default_base_image", "docker_build", "merge_aliases", "model_digest", "request"]
