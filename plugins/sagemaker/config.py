"""SageMaker target configuration: every key, its type, default and limits in one place.

Checked before any AWS call (``validate``): serverless restrictions, autoscaling bounds, canary /
linear sizes. Keys are the ``-C key=value`` names; sections use dotted keys
(``-C serverless_config.memory_size_in_mb=2048``) or JSON (``-C 'tags={"team": "ml"}'``).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from mldeploy.errors import ConfigError
from mldeploy.images import BuildOptions, Engine, EnvManager, Platform

DEFAULT_INSTANCE_TYPE = "ml.m5.large"
DEFAULT_VARIANT = "primary"
_S3 = re.compile(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$")
_ROLE = re.compile(r"^arn:aws[a-z\-]*:iam::\d{12}:role/.+$")
ECR_REPOSITORY = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
ECR_HOST = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)"
                      r"\.amazonaws\.com(?:\.cn)?$")


_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")


def known_regions() -> set[str]:
    """The regions with SageMaker in every AWS partition, from botocore's endpoint data (no
    call is made); empty when botocore is not installed."""
    try:
        import botocore.session
    except ImportError:  # pragma: no cover - the sagemaker extra brings it
        return set()
    session = botocore.session.get_session()
    return {r for p in session.get_available_partitions()
            for r in session.get_available_regions("sagemaker", partition_name=p)}


def check_region(region: str, where: str = "region") -> None:
    """Refuse a region SageMaker does not have, before any AWS call (one readable line, not an
    endpoint's DNS failure or an emulator's HTML 500)."""
    known = known_regions()
    if _REGION.match(region) and (not known or region in known):
        return
    import difflib

    near = difflib.get_close_matches(region, sorted(known), n=1, cutoff=0.6)
    raise ConfigError(
        f"{where} {region!r} is not an AWS region with SageMaker"
        + (f"; did you mean {near[0]!r}?" if near else ""),
        hint="e.g. --target sagemaker:/us-east-1 (a region newer than this botocore: "
             "pip install -U boto3)")


def known_instance_types() -> tuple[str, ...]:
    """SageMaker's hosting instance types (``ProductionVariantInstanceType`` in botocore's
    service model, read offline); empty when botocore is not installed."""
    try:
        import botocore.session
    except ImportError:  # pragma: no cover - the sagemaker extra brings it
        return ()
    model = botocore.session.get_session().get_service_model("sagemaker")
    return tuple(model.shape_for("ProductionVariantInstanceType").enum)


def check_instance_type(value: str) -> None:
    """Refuse an instance type SageMaker endpoints cannot run on (``m5.large``: ``ml.m5.large``),
    before any AWS call."""
    known = known_instance_types()
    if value in known or (not known and re.match(r"^ml\.[a-z0-9-]+\.[a-z0-9]+$", value)):
        return
    import difflib

    guess = f"ml.{value}" if f"ml.{value}" in known else next(
        iter(difflib.get_close_matches(value, known, n=1, cutoff=0.7)), None)
    raise ConfigError(f"instance_type {value!r} is not a SageMaker hosting instance type"
                      + (f"; did you mean {guess!r}?" if guess else ""),
                      hint="hosting types start with ml., e.g. ml.m5.large, ml.c5.xlarge, "
                           "ml.g5.xlarge")


def _s3(value: str | None, key: str) -> None:
    if value is not None and not _S3.match(value):
        raise ConfigError(f"config {key}={value!r} is not an s3:// URI",
                          hint="e.g. s3://my-bucket/prefix")


@dataclass(frozen=True)
class ServerlessConfig:
    memory_size_in_mb: int = field(default=2048, metadata={
        "min": 1024, "max": 6144, "step": 1024, "help": "1024-6144 in steps of 1024"})
    max_concurrency: int = field(default=5, metadata={"min": 1, "max": 200})
    provisioned_concurrency: int | None = field(default=None, metadata={"min": 1, "max": 200})

    def validate(self) -> None:
        if self.provisioned_concurrency and self.provisioned_concurrency > self.max_concurrency:
            raise ConfigError("serverless_config.provisioned_concurrency exceeds max_concurrency")


@dataclass(frozen=True)
class AsyncInferenceConfig:
    output_path: str = field(default="", metadata={"help": "s3:// URI for results"})
    failure_path: str | None = None
    max_concurrent_invocations_per_instance: int | None = field(
        default=None, metadata={"min": 1, "max": 1000})
    success_topic: str | None = None
    error_topic: str | None = None

    def validate(self) -> None:
        if not self.output_path:
            raise ConfigError("async_inference_config.output_path is required",
                              hint="-C async_inference_config.output_path=s3://bucket/async-out")
        _s3(self.output_path, "async_inference_config.output_path")
        _s3(self.failure_path, "async_inference_config.failure_path")


class CaptureMode(str, enum.Enum):
    INPUT = "Input"
    OUTPUT = "Output"


@dataclass(frozen=True)
class DataCaptureConfig:
    destination_s3_uri: str = ""
    sampling_percentage: int = field(default=100, metadata={"min": 0, "max": 100})
    capture_modes: list[CaptureMode] = field(
        default_factory=lambda: [CaptureMode.INPUT, CaptureMode.OUTPUT])
    enable: bool = True
    kms_key_id: str | None = None

    def validate(self) -> None:
        if not self.destination_s3_uri:
            raise ConfigError("data_capture_config.destination_s3_uri is required",
                              hint="-C data_capture_config.destination_s3_uri=s3://bucket/capture")
        _s3(self.destination_s3_uri, "data_capture_config.destination_s3_uri")
        if not self.capture_modes:
            raise ConfigError("data_capture_config.capture_modes is empty",
                              hint="use Input, Output or both")


@dataclass(frozen=True)
class VpcConfig:
    subnets: list[str] = field(default_factory=list)
    security_group_ids: list[str] = field(default_factory=list)

    def validate(self) -> None:
        if not self.subnets or not self.security_group_ids:
            raise ConfigError("vpc_config needs both subnets and security_group_ids")


@dataclass(frozen=True)
class AutoscalingConfig:
    min_capacity: int = field(default=1, metadata={"min": 1})
    max_capacity: int = field(default=2, metadata={"min": 1})
    target_invocations_per_instance: float = field(default=100.0, metadata={"min": 1.0})
    scale_in_cooldown: int = field(default=300, metadata={"min": 0})
    scale_out_cooldown: int = field(default=60, metadata={"min": 0})

    def validate(self) -> None:
        if self.min_capacity > self.max_capacity:
            raise ConfigError(f"autoscaling.min_capacity ({self.min_capacity}) exceeds "
                              f"max_capacity ({self.max_capacity})")


class Strategy(str, enum.Enum):
    ALL_AT_ONCE = "all_at_once"
    CANARY = "canary"
    LINEAR = "linear"


@dataclass(frozen=True)
class DeploymentConfig:
    """Blue/green update policy for replace, with CloudWatch alarms for auto-rollback."""

    strategy: Strategy = Strategy.ALL_AT_ONCE
    step_percent: int = field(default=10, metadata={
        "min": 1, "max": 99, "help": "canary size or linear step, in % of capacity"})
    wait_interval_seconds: int = field(default=300, metadata={"min": 0, "max": 3600})
    termination_wait_seconds: int = field(default=0, metadata={"min": 0, "max": 3600})
    maximum_execution_timeout_seconds: int | None = field(
        default=None, metadata={"min": 600, "max": 14400})
    rollback_alarms: list[str] = field(default_factory=list)


# The image builder's options: the one ``build`` block of every target (``-C build.engine=``).
BuildConfig = BuildOptions


def check_ecr_repository(value: str) -> None:
    """A repository name (``team/model``) or an ECR URI without a tag."""
    host, sep, repo = value.partition("/")
    if sep and ("." in host or ":" in host):
        if not ECR_HOST.match(host):
            raise ConfigError(f"ecr_repository {value!r} is not in Amazon ECR",
                              hint="SageMaker pulls from ECR only: give a repository name or "
                                   "ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY")
    else:
        repo = value
    if ":" in repo or "@" in repo:
        raise ConfigError(f"ecr_repository {value!r} has a tag or digest",
                          hint="give the repository only: the tag is the model's content digest")
    if not ECR_REPOSITORY.match(repo) or not 2 <= len(repo) <= 256:
        raise ConfigError(f"ecr_repository {value!r} is not a valid ECR repository name",
                          hint="lowercase letters, digits and . _ - / (e.g. mldeploy/churn)")


@dataclass(frozen=True)
class SageMakerConfig:
    region_name: str | None = field(default=None, metadata={
        "help": "AWS region (or the spec sagemaker:/REGION, or AWS_DEFAULT_REGION)"})
    execution_role_arn: str | None = field(default=None, metadata={
        "help": "IAM role SageMaker runs the model with (required to create a model)"})
    assume_role_arn: str | None = field(default=None, metadata={
        "help": "role to assume for every AWS call (cross-account deployments)"})
    bucket: str | None = field(default=None, metadata={
        "help": "S3 bucket for model.tar.gz (default mldeploy-ACCOUNT-REGION, created if missing)"})
    image_uri: str | None = field(default=None, metadata={
        "help": "serving image in ECR, used as is (default: build the model's image and push it)"})
    ecr_repository: str | None = field(default=None, metadata={
        "help": "ECR repository (name or URI) for the built image (default mldeploy/<name>)"})
    build: BuildOptions | None = field(default=None, metadata={
        "help": "image builder options, e.g. -C build.engine=mlserver (the same build.* keys "
                "on every target)"})
    model_in_image: bool = field(default=False, metadata={
        "help": "the image already holds the model (built with it): no model.tar.gz in S3"})
    instance_type: str | None = field(default=None, metadata={
        "help": f"default {DEFAULT_INSTANCE_TYPE} on create; replace keeps the current one"})
    instance_count: int | None = field(default=None, metadata={
        "min": 1, "max": 100, "help": "default 1 on create; replace keeps the current count"})
    variant_name: str | None = field(default=None, metadata={
        "help": "variant to create (default: keep the current one, or 'primary')"})
    initial_weight: float = field(default=1.0, metadata={"min": 0.0, "help": "weight for add"})
    weights: dict[str, float] = field(default_factory=dict, metadata={
        "help": "traffic weights by variant, applied after the deploy"})
    serverless_config: ServerlessConfig | None = None
    async_inference_config: AsyncInferenceConfig | None = None
    data_capture_config: DataCaptureConfig | None = None
    vpc_config: VpcConfig | None = None
    env: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    autoscaling: AutoscalingConfig | None = None
    deployment_config: DeploymentConfig | None = None
    timeout_seconds: float = field(default=1200.0, metadata={"min": 1.0})
    poll_interval_seconds: float = field(default=5.0, metadata={"min": 0.0, "max": 300.0})
    container_startup_health_check_timeout: int | None = field(
        default=None, metadata={"min": 60, "max": 3600})
    model_data_download_timeout: int | None = field(
        default=None, metadata={"min": 60, "max": 3600})
    recreate_failed: bool = field(default=False, metadata={
        "help": "replace on a Failed endpoint deletes and recreates it"})
    adopt: bool = field(default=False, metadata={
        "help": "replace/add/traffic/delete an endpoint mldeploy did not create: it is tagged "
                "and managed from then on (delete keeps what other endpoints use)"})
    log_lines: int = field(default=20, metadata={"min": 0, "max": 1000})

    def validate(self) -> None:
        if self.region_name is not None:
            check_region(self.region_name, "region_name")
        if self.instance_type is not None:
            check_instance_type(self.instance_type)
        if self.execution_role_arn is not None and not _ROLE.match(self.execution_role_arn):
            raise ConfigError(f"execution_role_arn {self.execution_role_arn!r} is not an IAM "
                              "role ARN", hint="arn:aws:iam::123456789012:role/NAME")
        if self.assume_role_arn is not None and not _ROLE.match(self.assume_role_arn):
            raise ConfigError(f"assume_role_arn {self.assume_role_arn!r} is not an IAM role ARN")
        if self.bucket is not None and not _S3.match(f"s3://{self.bucket}"):
            raise ConfigError(f"bucket {self.bucket!r} is not a valid S3 bucket name",
                              hint="give the bare bucket name, without s3://")
        if self.image_uri is not None and (self.ecr_repository or self.build):
            raise ConfigError("image_uri is deployed as is: ecr_repository and build apply only "
                              "when mldeploy builds the image",
                              hint="drop image_uri to build the model's image, or drop "
                                   "ecr_repository and build.*")
        if self.ecr_repository is not None:
            check_ecr_repository(self.ecr_repository)
        if self.variant_name is not None and not re.match(
                r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$", self.variant_name):
            raise ConfigError(f"variant_name {self.variant_name!r} is not a valid SageMaker name",
                              hint="letters, digits and hyphens, at most 63")
        if self.serverless_config is not None:
            clash = [k for k in ("vpc_config", "data_capture_config", "autoscaling",
                                 "instance_type", "instance_count")
                     if getattr(self, k) is not None]
            if clash:
                raise ConfigError(f"a serverless endpoint cannot have {', '.join(clash)}",
                                  hint="drop those keys or drop serverless_config")
            if self.async_inference_config is not None:
                raise ConfigError("an endpoint cannot be both serverless and asynchronous")
        if (self.autoscaling is not None and self.instance_count is not None
                and self.instance_count > self.autoscaling.max_capacity):
            raise ConfigError(f"instance_count ({self.instance_count}) exceeds "
                              f"autoscaling.max_capacity ({self.autoscaling.max_capacity})")
        if len(self.tags) > 48:
            raise ConfigError(f"{len(self.tags)} tags given; SageMaker allows 50 per resource "
                              "and mldeploy uses 2", hint="give at most 48 tags")
        bad = [k for k in self.tags if k.lower().startswith("aws:") or k.startswith("mldeploy:")]
        if bad:
            raise ConfigError(f"tag {bad[0]!r} uses a reserved prefix (aws:, mldeploy:)")
        for variant, weight in self.weights.items():
            if weight < 0:
                raise ConfigError(f"weights.{variant} is negative")


__all__ = ["AsyncInferenceConfig", "AutoscalingConfig", "BuildConfig", "CaptureMode",
           "DataCaptureConfig", "DeploymentConfig", "Engine", "EnvManager", "Platform",
           "SageMakerConfig", "ServerlessConfig", "Strategy", "VpcConfig", "check_ecr_repository",
           "check_instance_type", "check_region", "known_instance_types", "known_regions"]
