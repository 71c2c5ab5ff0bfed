"""The serving image when ``image_uri`` is not given: the model's image, built with mldeploy's
image builder and pushed to ECR as ``REPOSITORY:<digest>``.

The tag is a digest of the model's content, the build options and mldeploy's version, so an
unchanged model is built and pushed once: when ECR already holds the tag, nothing is built. The
repository is ``-C ecr_repository`` (a name in the deployment's account and region, or an ECR
URI in its region) or ``mldeploy/<endpoint name>``; the pusher creates it when missing. Building
and pushing are callables on :class:`~mldeploy.plugins.sagemaker._client.Clients` (tests hand in
fakes; the builder is the one seam of :mod:`mldeploy.images`); by default Docker. A built
image holds the model at ``/opt/ml/model``, so SageMaker gets no ``ModelDataUrl`` and nothing
is uploaded to S3.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mldeploy import images
from mldeploy.errors import BuildError, ConfigError, MldeployError, UsageError
from mldeploy.images import BuildOptions, ImageRequest
from mldeploy.plugins.sagemaker.config import ECR_HOST, SageMakerConfig
from mldeploy.plugins.sagemaker.errors import aws_errors, scrub

Log = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class ImageBuild(ImageRequest):
    """One image to build (an :class:`~mldeploy.images.ImageRequest`, so the one builder seam
    takes it) and push to ``registry/repository:tag`` in ``region``."""

    registry: str  # ACCOUNT.dkr.ecr.REGION.amazonaws.com
    repository: str
    tag: str
    region: str

    @property
    def repository_uri(self) -> str:
        return f"{self.registry}/{self.repository}"

    def describe(self) -> str:
        return f"build ({self.options.describe()}) and push"


ImageBuilder = images.Builder
ImagePusher = Callable[[ImageBuild, Log], None]


def needs_build(cfg: SageMakerConfig, base_model: dict[str, Any]) -> bool:
    """Build unless ``image_uri`` is given or the deployment's current image is a generic one
    that loads its model from S3 (then replace/add keep using it, as before)."""
    if cfg.image_uri:
        return False
    if cfg.ecr_repository or cfg.build or cfg.model_in_image:
        return True
    container = base_model.get("PrimaryContainer", {})
    return not (container.get("Image") and container.get("ModelDataUrl"))


def plan_build(cfg: SageMakerConfig, name: str, model_uri: str, model_dir: Path,
               account: str, region: str) -> ImageBuild:
    """The image this run needs (nothing is built here). The tag is the image service's
    content digest (model files, serving code, build options, mldeploy's version), not
    ``model_uri``: the same model from another URI reuses the image."""
    options = cfg.build or BuildOptions()
    registry, repository = _repository(cfg.ecr_repository, name, account, region)
    digest = images.content_digest(model_dir, options)
    tag = digest[:20]
    return ImageBuild(reference=f"{registry}/{repository}:{tag}", model_dir=model_dir,
                      model_uri=model_uri, options=options, digest=digest, registry=registry,
                      repository=repository, tag=tag, region=region)


def _repository(value: str | None, name: str, account: str, region: str) -> tuple[str, str]:
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    own = f"{account}.dkr.ecr.{region}.{suffix}"
    if value is None:
        return own, "mldeploy/" + re.sub(r"-+", "-", name.lower())
    host, sep, repo = value.partition("/")
    match = ECR_HOST.match(host) if sep else None
    if match is None:
        return own, value
    if match["region"] != region:
        raise ConfigError(f"ecr_repository {value!r} is in {match['region']}, the endpoint in "
                          f"{region}: SageMaker pulls images from its own region only",
                          hint=f"use a repository in {region}, or just its name")
    return host, repo


def ecr_state(c: Any, image: ImageBuild) -> tuple[bool, bool]:
    """(repository exists, tag exists) in ECR, read with the deployment's credentials."""
    with aws_errors(f"look up {image.reference} in ECR"):
        try:
            c["ecr"].describe_images(registryId=image.registry.split(".", 1)[0],
                                     repositoryName=image.repository,
                                     imageIds=[{"imageTag": image.tag}])
            return True, True
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code == "RepositoryNotFoundException":
                return False, False
            if code == "ImageNotFoundException":
                return True, False
            raise


def ensure_image(c: Any, image: ImageBuild, build: ImageBuilder, push: ImagePusher,
                 log: Log) -> bool:
    """Build and push ``image`` unless ECR has its tag; True when it was built now. Raises
    BuildError (UsageError for bad input such as an unknown model) and creates nothing else."""
    if ecr_state(c, image)[1]:
        log(f"image {image.reference} is in ECR already: not rebuilding it")
        return False
    for step, call in (("build", build), ("push", push)):
        log(f"{step}ing image {image.reference}")
        try:
            call(image, log)
        except UsageError:
            raise
        except MldeployError as exc:
            raise BuildError(f"{step} of image {image.reference} failed: {exc.message}",
                             hint=_hint(step, exc.hint)) from None
        except Exception as exc:
            raise BuildError(f"{step} of image {image.reference} failed: "
                             f"{type(exc).__name__}: {scrub(str(exc), 300)}",
                             hint=_hint(step, None)) from None
    return True


def _hint(step: str, hint: str | None) -> str:
    usual = ("check that a Docker engine answers (docker info) and the model's requirements "
             "install" if step == "build" else
             "check the ECR permissions (ecr:CreateRepository, ecr:PutImage, layer uploads) "
             "and the network")
    return (f"{hint or usual}; nothing was created in SageMaker (or deploy a ready image with "
            "-C image_uri=IMAGE)")


def ecr_push(image: ImageBuild, log: Log, ecr: Any = None) -> None:
    """The default pusher: ECR credentials through ``ecr`` (the target's client, so an assumed
    role pushes too), else boto3's default session; creates the repository when missing."""
    from mldeploy.container.image import push_image

    push_image(image.reference, image.reference, region=image.region, use_ecr=True,
               ecr_client=ecr, log=log)


__all__ = ["ImageBuild", "ImageBuilder", "ImagePusher", "ecr_push", "ecr_state",
           "ensure_image", "needs_build", "plan_build"]
