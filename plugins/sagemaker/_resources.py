"""What a deployment is made of: deterministic (content-hashed) names, the model artifact, and the
CreateModel / CreateEndpointConfig requests built from the config and, on replace, from what the
endpoint has now (so data capture, async config, tags, role, image and variant name carry over).
Pure functions: no AWS calls here."""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mldeploy.errors import ConfigError, UsageError
from mldeploy.plugins.sagemaker.config import (
    DEFAULT_INSTANCE_TYPE,
    DEFAULT_VARIANT,
    SageMakerConfig,
    Strategy,
)
from mldeploy.target import Deployment, NameRule, Resource, Status, Variant

NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
TAG_ENDPOINT = "mldeploy:endpoint"
TAG_MODEL_URI = "mldeploy:model-uri"
_TAG_BAD = re.compile(r"[^\w\s.:/=+\-@]", re.UNICODE)

STATUS = {
    "Creating": Status.CREATING, "Updating": Status.UPDATING, "SystemUpdating": Status.UPDATING,
    "RollingBack": Status.UPDATING, "UpdateRollbackFailed": Status.FAILED,
    "InService": Status.READY, "Failed": Status.FAILED, "Deleting": Status.DELETING,
    "OutOfService": Status.OUT_OF_SERVICE,
}


NAME_RULE = NameRule(
    pattern=NAME_RE.pattern.removeprefix("^").removesuffix("$"), max_length=63,
    hint="use 1-63 letters, digits and hyphens, starting and ending with a letter or digit",
    what="SageMaker endpoint name")


def derived_name(endpoint: str, kind: str, digest: str) -> str:
    """``{endpoint}-{kind}-{hash10}``, cut to SageMaker's 63 characters."""
    suffix = f"-{kind}-{digest[:10]}"
    return endpoint[: 63 - len(suffix)].rstrip("-") + suffix


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def tag_value(text: str) -> str:
    """``text`` as a tag value: ``user:password@`` removed from URLs, characters tags refuse
    replaced, at most 256 characters."""
    from mldeploy.redact import redact_uri as scrub_uri

    return _TAG_BAD.sub("_", scrub_uri(text))[:256]


@dataclass(frozen=True)
class Artifact:
    """``model.tar.gz`` of a model directory, byte-for-byte reproducible (sorted names, zero
    mtimes and owners), written to a file as it is packed so large models never sit in memory."""

    path: Path
    sha256: str
    size: int

    @classmethod
    def pack(cls, model_dir: Path, dst_dir: Path) -> Artifact:
        import gzip

        path = Path(dst_dir) / "model.tar.gz"
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w") as tar:
            for f in sorted(p for p in model_dir.rglob("*") if p.is_file()):
                info = tarfile.TarInfo(str(f.relative_to(model_dir)))
                info.size, info.mtime, info.mode = f.stat().st_size, 0, 0o644
                with open(f, "rb") as fh:
                    tar.addfile(info, fh)
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return cls(path, h.hexdigest(), path.stat().st_size)

    def key(self, endpoint: str) -> str:
        return f"mldeploy/{endpoint}/{self.sha256[:16]}/model.tar.gz"


@dataclass
class Current:
    """What an existing endpoint is made of (read by the client)."""

    name: str
    arn: str
    status: str
    failure_reason: str | None
    config_name: str
    config: dict[str, Any]
    variants: list[dict[str, Any]]
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # model name -> describe
    tags: dict[str, str] = field(default_factory=dict)
    scalable: dict[str, dict[str, Any]] = field(default_factory=dict)  # variant -> target

    @property
    def serverless(self) -> bool:
        return any("ServerlessConfig" in v for v in self.config.get("ProductionVariants", []))

    def model_names(self) -> set[str]:
        return {v["ModelName"] for v in self.config.get("ProductionVariants", [])}

    @property
    def managed(self) -> bool:
        """Created (or adopted) by mldeploy: tagged ``mldeploy:endpoint=<its name>``."""
        return self.tags.get(TAG_ENDPOINT) == self.name


@dataclass
class Desired:
    """The resources one create/replace/add run wants to exist."""

    variant: str
    model_name: str
    model_request: dict[str, Any]
    config_name: str
    config_request: dict[str, Any]
    bucket: str
    key: str
    artifact: Artifact
    model_uri: str

    @property
    def uploads(self) -> bool:
        return "ModelDataUrl" in self.model_request["PrimaryContainer"]


def _tags(d: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(d.items())]


def build_desired(cfg: SageMakerConfig, name: str, model_uri: str, artifact: Artifact,
                  bucket: str, current: Current | None, add: bool = False,
                  built_image: str | None = None) -> Desired:
    """The model and endpoint-config requests for this run (``current`` is None on create).
    ``built_image``: the image mldeploy builds, with the model in it (no ModelDataUrl)."""
    base = base_model(current, cfg.variant_name, add)
    role = cfg.execution_role_arn or base.get("ExecutionRoleArn")
    container = base.get("PrimaryContainer", {})
    image = built_image or cfg.image_uri or container.get("Image")
    if not role:
        raise ConfigError("execution_role_arn is required to create a SageMaker model",
                          hint="-C execution_role_arn=arn:aws:iam::ACCOUNT:role/NAME")
    if not image:  # pragma: no cover - the caller builds an image when there is none
        raise ConfigError("no serving image", hint="-C image_uri=IMAGE")
    env = dict(cfg.env) if cfg.env else dict(container.get("Environment") or {})
    key = artifact.key(name)
    model_request: dict[str, Any] = {
        "ExecutionRoleArn": role,
        "PrimaryContainer": {"Image": image, "Environment": env},
    }
    if not cfg.model_in_image and not built_image:
        model_request["PrimaryContainer"]["ModelDataUrl"] = f"s3://{bucket}/{key}"
    vpc = ({"Subnets": cfg.vpc_config.subnets,
            "SecurityGroupIds": cfg.vpc_config.security_group_ids}
           if cfg.vpc_config else base.get("VpcConfig") or None)
    if vpc and vpc.get("Subnets"):
        model_request["VpcConfig"] = vpc
    model_name = derived_name(name, "m", digest([model_request, artifact.sha256]))
    tags = {**(current.tags if current else {}), **cfg.tags, TAG_ENDPOINT: name}
    model_request = {"ModelName": model_name, **model_request,
                     "Tags": _tags({**tags, TAG_MODEL_URI: tag_value(model_uri)})}

    variant = _variant(cfg, name, model_name, current, add)
    if current is not None and add:
        variants = [*current.config["ProductionVariants"], variant]
    elif current is not None and current.config["ProductionVariants"]:
        variants = [variant if v["VariantName"] == variant["VariantName"] else v
                    for v in current.config["ProductionVariants"]]
    else:
        variants = [variant]
    config_request: dict[str, Any] = {"ProductionVariants": variants}
    inherit = current.config if current else {}
    capture = _data_capture(cfg) or inherit.get("DataCaptureConfig") or None
    if capture and capture.get("DestinationS3Uri"):
        config_request["DataCaptureConfig"] = capture
    async_cfg = _async(cfg) or inherit.get("AsyncInferenceConfig") or None
    if async_cfg:
        config_request["AsyncInferenceConfig"] = async_cfg
    if inherit.get("KmsKeyId"):
        config_request["KmsKeyId"] = inherit["KmsKeyId"]
    config_name = derived_name(name, "c", digest(config_request))
    config_request = {"EndpointConfigName": config_name, **config_request, "Tags": _tags(tags)}
    return Desired(variant["VariantName"], model_name, model_request, config_name,
                   config_request, bucket, key, artifact, model_uri)


def base_model(current: Current | None, variant: str | None, add: bool) -> dict[str, Any]:
    """The describe of the model a run inherits role, image, env and VPC from."""
    variant = None if add else variant
    if current is None:
        return {}
    for v in current.config.get("ProductionVariants", []):
        if variant is None or v["VariantName"] == variant:
            return current.models.get(v["ModelName"], {})
    return next(iter(current.models.values()), {})


def _variant(cfg: SageMakerConfig, name: str, model_name: str, current: Current | None,
             add: bool) -> dict[str, Any]:
    old: dict[str, Any] = {}
    if current is not None and not add:
        names = [v["VariantName"] for v in current.config["ProductionVariants"]]
        if cfg.variant_name is None and len(names) > 1:
            raise UsageError(f"endpoint {name!r} has variants {', '.join(names)}",
                             hint="say which one to replace with -C variant_name=NAME")
        vname = cfg.variant_name or (names[0] if names else DEFAULT_VARIANT)
        if names and vname not in names:
            raise UsageError(f"endpoint {name!r} has no variant {vname!r}",
                             hint=f"its variants: {', '.join(names)}; use --mode add to add one")
        old = next((v for v in current.config["ProductionVariants"]
                    if v["VariantName"] == vname), {})
        if cfg.serverless_config is not None and "ServerlessConfig" not in old:
            raise UsageError("a real-time endpoint cannot become serverless",
                             hint=f"mldeploy delete, then deploy --mode create, for {name!r}")
    elif current is not None:
        names = {v["VariantName"] for v in current.config["ProductionVariants"]}
        vname = cfg.variant_name or f"variant-{digest([model_name])[:6]}"
        if vname in names:
            raise UsageError(f"endpoint {name!r} already has a variant {vname!r}",
                             hint="pick another -C variant_name, or use --mode replace")
        if current.serverless:
            raise UsageError("a serverless endpoint holds one variant only")
    else:
        vname = cfg.variant_name or DEFAULT_VARIANT
    variant: dict[str, Any] = {"VariantName": vname, "ModelName": model_name}
    serverless = cfg.serverless_config
    if serverless is None and "ServerlessConfig" in old and cfg.instance_type is None:
        variant["ServerlessConfig"] = old["ServerlessConfig"]
    elif serverless is not None:
        sc = {"MemorySizeInMB": serverless.memory_size_in_mb,
              "MaxConcurrency": serverless.max_concurrency}
        if serverless.provisioned_concurrency:
            sc["ProvisionedConcurrency"] = serverless.provisioned_concurrency
        variant["ServerlessConfig"] = sc
    else:
        variant["InstanceType"] = cfg.instance_type or old.get("InstanceType",
                                                               DEFAULT_INSTANCE_TYPE)
        variant["InitialInstanceCount"] = cfg.instance_count or old.get("InitialInstanceCount", 1)
        variant["InitialVariantWeight"] = (cfg.initial_weight if add
                                           else old.get("InitialVariantWeight", 1.0))
        if cfg.container_startup_health_check_timeout or old.get(
                "ContainerStartupHealthCheckTimeoutInSeconds"):
            variant["ContainerStartupHealthCheckTimeoutInSeconds"] = (
                cfg.container_startup_health_check_timeout
                or old["ContainerStartupHealthCheckTimeoutInSeconds"])
        if cfg.model_data_download_timeout or old.get("ModelDataDownloadTimeoutInSeconds"):
            variant["ModelDataDownloadTimeoutInSeconds"] = (
                cfg.model_data_download_timeout or old["ModelDataDownloadTimeoutInSeconds"])
    return variant


def _data_capture(cfg: SageMakerConfig) -> dict[str, Any] | None:
    dc = cfg.data_capture_config
    if dc is None:
        return None
    out: dict[str, Any] = {
        "EnableCapture": dc.enable, "InitialSamplingPercentage": dc.sampling_percentage,
        "DestinationS3Uri": dc.destination_s3_uri,
        "CaptureOptions": [{"CaptureMode": m.value} for m in dc.capture_modes]}
    if dc.kms_key_id:
        out["KmsKeyId"] = dc.kms_key_id
    return out


def _async(cfg: SageMakerConfig) -> dict[str, Any] | None:
    ac = cfg.async_inference_config
    if ac is None:
        return None
    output: dict[str, Any] = {"S3OutputPath": ac.output_path}
    if ac.failure_path:
        output["S3FailurePath"] = ac.failure_path
    if ac.success_topic or ac.error_topic:
        output["NotificationConfig"] = {k: v for k, v in (("SuccessTopic", ac.success_topic),
                                                          ("ErrorTopic", ac.error_topic)) if v}
    out: dict[str, Any] = {"OutputConfig": output}
    if ac.max_concurrent_invocations_per_instance:
        out["ClientConfig"] = {"MaxConcurrentInvocationsPerInstance":
                               ac.max_concurrent_invocations_per_instance}
    return out


def update_request(cfg: SageMakerConfig, name: str, config_name: str,
                   retain: bool) -> dict[str, Any]:
    req: dict[str, Any] = {"EndpointName": name, "EndpointConfigName": config_name}
    if retain:
        req["RetainAllVariantProperties"] = True
    dc = cfg.deployment_config
    if dc is not None:
        if dc.strategy is Strategy.ALL_AT_ONCE:
            policy: dict[str, Any] = {"TrafficRoutingConfiguration": {
                "Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": dc.wait_interval_seconds}}
        else:
            size = {"Type": "CAPACITY_PERCENT", "Value": dc.step_percent}
            key = "CanarySize" if dc.strategy is Strategy.CANARY else "LinearStepSize"
            policy = {"TrafficRoutingConfiguration": {
                "Type": dc.strategy.value.upper(), "WaitIntervalInSeconds":
                dc.wait_interval_seconds, key: size}}
        policy["TerminationWaitInSeconds"] = dc.termination_wait_seconds
        if dc.maximum_execution_timeout_seconds:
            policy["MaximumExecutionTimeoutInSeconds"] = dc.maximum_execution_timeout_seconds
        req["DeploymentConfig"] = {"BlueGreenUpdatePolicy": policy}
        if dc.rollback_alarms:
            req["DeploymentConfig"]["AutoRollbackConfiguration"] = {
                "Alarms": [{"AlarmName": a} for a in dc.rollback_alarms]}
    return req


def check_autoscaled_instance_type(name: str, current: Current, d: Desired) -> None:
    new = {v["VariantName"]: v.get("InstanceType") for v in d.config_request["ProductionVariants"]}
    for v in current.config.get("ProductionVariants", []):
        vname = v["VariantName"]
        if vname in current.scalable and new.get(vname) != v.get("InstanceType"):
            raise UsageError(
                f"variant {vname} of {name!r} is autoscaled: SageMaker refuses to change its "
                f"instance type ({v.get('InstanceType')} -> {new.get(vname)})",
                hint="keep the instance type, or deregister its scalable target "
                     f"endpoint/{name}/variant/{vname} first")


def to_deployment(cur: Current, target: str, region: str,
                  model_uris: dict[str, str | None]) -> Deployment:
    """The typed result for what an endpoint is made of now."""
    resources = [Resource("endpoint", cur.arn)]
    if cur.config.get("EndpointConfigArn"):
        resources.append(Resource("endpoint-config", cur.config["EndpointConfigArn"]))
    weights = {v["VariantName"]: v.get("CurrentWeight", v.get("DesiredWeight"))
               for v in cur.variants}
    counts = {v["VariantName"]: v.get("CurrentInstanceCount") for v in cur.variants}
    variants = []
    for pv in cur.config.get("ProductionVariants", []):
        model = cur.models.get(pv["ModelName"], {})
        uri = None
        if model:
            resources.append(Resource("model", model["ModelArn"]))
            url = model.get("PrimaryContainer", {}).get("ModelDataUrl")
            if url:
                resources.append(Resource("s3-object", url))
            uri = model_uris.get(pv["ModelName"])
        vname = pv["VariantName"]
        weight = weights.get(vname)
        if weight is None:
            weight = pv.get("InitialVariantWeight", 1.0)
        variants.append(Variant(vname, float(weight), uri, counts.get(vname)))
    resources += [Resource("scalable-target", t["ResourceId"]) for t in cur.scalable.values()]
    primary = max(variants, key=lambda v: v.weight, default=None)
    url = (f"https://runtime.sagemaker.{region}.amazonaws.com/endpoints/{cur.name}"
           "/invocations")
    return Deployment(cur.name, target, STATUS.get(cur.status, Status.UNKNOWN), url=url,
                      model_uri=primary.model_uri if primary else None,
                      resources=tuple(resources), variants=tuple(variants),
                      failure_reason=cur.failure_reason,
                      details={"arn": cur.arn, "endpoint_config": cur.config_name,
                               "region": region, "aws_status": cur.status,
                               "managed": cur.managed})


__all__ = ["NAME_RULE", "STATUS", "Artifact", "Current", "Desired", "base_model", "build_desired",
           "check_autoscaled_instance_type", "derived_name", "to_deployment",
           "update_request"]
