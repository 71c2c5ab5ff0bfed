"""The image a deployment runs and the model version it is labelled with.

``-C image=...`` runs that image (the model baked in, or loaded from the URI with
``-C model_source=uri``). Otherwise the image builder builds the model's image and pushes it to
``-C registry=...`` as ``REGISTRY/NAME:<content digest>`` (pinned by the registry's digest when
it reports one), so the same model is built and pushed once and a changed model always rolls out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from mldeploy.errors import ConfigError
from mldeploy.plugins.kubernetes.config import KubernetesConfig
from mldeploy.plugins.kubernetes.manifests import Model, model_version

Log = Callable[[str], None]
_REMOTE = ("models:/", "runs:/", "s3://", "gs://", "wasbs://", "abfss://", "http://", "https://",
           "dbfs:/", "hdfs://", "mlflow-artifacts:/")


def model_digest(path: Path) -> str:
    """The sha256 of a model directory's files and names (what goes into the image)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def _local_digest(model_uri: str) -> str | None:
    path = Path(model_uri.removeprefix("file://")).expanduser()
    return model_digest(path) if not model_uri.startswith(_REMOTE) and path.is_dir() else None


def reference(cfg: KubernetesConfig, name: str, digest: str) -> str:
    if not cfg.registry:
        raise ConfigError("no image to run: give -C image=IMAGE, or -C registry=REPOSITORY to "
                          "build and push the model's image there",
                          hint="e.g. -C registry=ghcr.io/acme/models (for kind: build the image, "
                               "kind load docker-image it, and pass -C image=...)")
    return f"{cfg.registry.rstrip('/')}/{name}:{digest[:12]}"


def resolve(cfg: KubernetesConfig, name: str, model_uri: str, *, build: ImageBuilderLike | None,
            log: Log) -> Model:
    """The :class:`Model` to deploy. ``build`` None: plan only (the image reference the build
    would produce, nothing built or pushed)."""
    if cfg.image:
        return Model(model_uri, model_version(model_uri, _local_digest(model_uri)), cfg.image)
    if cfg.model_source.value == "uri":
        raise ConfigError("model_source=uri needs -C image=IMAGE (a generic serving image)")
    from mldeploy.model_uri import resolve_model_uri

    digest = model_digest(resolve_model_uri(model_uri))
    ref = reference(cfg, name, digest)
    image = build(model_uri, ref, log) if build is not None else ref
    return Model(model_uri, model_version(model_uri, digest), image)


ImageBuilderLike = Callable[[str, str, Log], str]


def docker_builder(model_uri: str, ref: str, log: Log) -> str:
    """Build the model's image with the image builder (Docker) and push it to ``ref``."""
    from mldeploy.container.image import build_docker, push_image

    build_docker(model_uri, name=ref, log=log)
    pushed = push_image(ref, ref, use_ecr=".dkr.ecr." in ref, log=log)
    if pushed.digest:
        return f"{pushed.repository_uri}@{pushed.digest}"
    return pushed.reference


__all__ = ["docker_builder", "model_digest", "reference", "resolve"]
