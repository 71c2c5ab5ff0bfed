"""The image a deployment runs and the model version it is labelled with.

``-C image=...`` runs that image (the model baked in, or loaded from the URI with
``-C model_source=uri``). Otherwise the image builder builds the model's image and pushes it to
``-C registry=...`` as ``REGISTRY/NAME:<content digest>`` (pinned by the registry's digest when
it reports one), so the same model is built and pushed once and a changed model always rolls out.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mldeploy import images
from mldeploy.errors import ConfigError, MldeployError
from mldeploy.images import BuildOptions, ImageRequest
from mldeploy.plugins.kubernetes.config import KubernetesConfig
from mldeploy.plugins.kubernetes.manifests import Model, model_version

if TYPE_CHECKING:
    from mldeploy.container.image.requirements import ModelFacts

Log = Callable[[str], None]
_REMOTE = ("models:/", "runs:/", "s3://", "gs://", "wasbs://", "abfss://", "http://", "https://",
           "dbfs:/", "hdfs://", "mlflow-artifacts:/")


def identity(model_dir: Path) -> ModelFacts | None:
    """What the model's ``MLmodel`` says it is (its run id and ``model_uuid``, read by the image
    builder's own reader); None for a directory that holds no readable MLmodel."""
    from mldeploy.container.image.requirements import read_model

    try:
        return read_model(Path(model_dir))
    except MldeployError:
        return None


def _local_dir(model_uri: str) -> Path | None:
    path = Path(model_uri.removeprefix("file://")).expanduser()
    if model_uri.startswith(_REMOTE) or not path.is_dir():
        return None
    return path


def is_local(model_uri: str) -> bool:
    """A model URI that names a path on this machine (not resolvable inside a cluster)."""
    return not model_uri.startswith(_REMOTE) and "://" not in model_uri.removeprefix("file://")


def reference(cfg: KubernetesConfig, name: str, digest: str) -> str:
    if not cfg.registry:
        raise ConfigError("no image to run: give -C image=IMAGE, or -C registry=REPOSITORY to "
                          "build and push the model's image there",
                          hint="e.g. -C registry=ghcr.io/acme/models (for kind: build the image, "
                               "kind load docker-image it, and pass -C image=...)")
    return f"{cfg.registry.rstrip('/')}/{name}:{digest[:12]}"


def resolve(cfg: KubernetesConfig, name: str, model_uri: str, *, build: images.Builder | None,
            log: Log) -> Model:
    """The :class:`Model` to deploy. ``build`` (the image service's builder seam; here it also
    pushes and returns the reference to run) None: plan only (the image reference the build
    would produce, nothing built or pushed). The model is downloaded once and removed."""
    if cfg.model_source.value == "uri" and is_local(model_uri):
        raise ConfigError(f"model_source=uri: the pods load {model_uri!r} themselves, and a path "
                          "on this machine does not exist in the cluster",
                          hint="give a URI the cluster can reach (models:/, runs:/, s3://), or "
                               "drop -C model_source=uri to put the model in the image")
    if cfg.image:
        local = _local_dir(model_uri)
        if local is None:
            return Model(model_uri, model_version(model_uri), cfg.image)
        return Model(model_uri, model_version(model_uri, identity(local)), cfg.image,
                     images.model_digest(local))
    if cfg.model_source.value == "uri":
        raise ConfigError("model_source=uri needs -C image=IMAGE (a generic serving image)")
    from mldeploy.model_uri import materialize

    options = cfg.build or BuildOptions()
    reference(cfg, name, "")  # no registry: say so before any download
    with materialize(model_uri) as model_dir:
        req = images.request(model_dir, model_uri, options,
                             lambda digest: reference(cfg, name, digest))
        image = build(req, log) if build is not None else req.reference
        version = model_version(model_uri, identity(model_dir))
    return Model(model_uri, version, image, req.model_digest or None)


def docker_builder(req: ImageRequest, log: Log) -> str:
    """Build the model's image with the image builder (Docker) and push it; returns the pushed
    reference, pinned by the registry's digest when it reports one."""
    from mldeploy.container.image import push_image

    images.docker_build(req, log)
    ref = req.reference
    pushed = push_image(ref, ref, use_ecr=".dkr.ecr." in ref, log=log)
    if pushed.digest:
        return f"{pushed.repository_uri}@{pushed.digest}"
    return pushed.reference


__all__ = ["docker_builder", "identity", "is_local", "reference", "resolve"]
