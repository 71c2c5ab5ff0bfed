"""The dry run of a create / replace / add: the resources it would create, change and remove,
computed from the same requests a real run sends, with read-only AWS calls only.

Every setting that is billed is on the plan, as the requests set it (defaults included, so
nothing is silently ``ml.m5.large`` x 1): each variant's instance type and count (or serverless
memory and concurrency), asynchronous inference, data capture, and the autoscaling range - with
``old -> new`` where a replace changes one."""

from __future__ import annotations

from typing import Any

from mldeploy.plugins.sagemaker import _client as aws
from mldeploy.plugins.sagemaker._guard import owned
from mldeploy.plugins.sagemaker._image import ImageBuild, ecr_state
from mldeploy.plugins.sagemaker._resources import TAG_ENDPOINT, Current, Desired
from mldeploy.target import Action, Change, DeployMode, Resource


def build_plan(c: aws.Clients, mode: DeployMode, name: str, current: Current | None,
               d: Desired, image: ImageBuild | None, autoscaling: Any) -> tuple[Change, ...]:
    ch: list[Change] = []
    if image is not None:
        repository, tagged = ecr_state(c, image)
        if not repository:
            ch.append(Change(Action.CREATE, Resource("ecr-repository", image.repository_uri)))
        ch.append(Change(Action.KEEP if tagged else Action.CREATE,
                         Resource("image", image.reference),
                         "in ECR already" if tagged else image.describe()))
    uri = f"s3://{d.bucket}/{d.key}"
    if d.uploads:
        bucket = aws.bucket_exists(c, d.bucket)
        if not bucket:
            ch.append(Change(Action.CREATE, Resource("s3-bucket", f"s3://{d.bucket}")))
        exists = bucket and aws.object_exists(c, d.bucket, d.key)
        ch.append(Change(Action.KEEP if exists else Action.CREATE, Resource("s3-object", uri),
                         f"{d.artifact.size} bytes"))
    in_use = current.model_names() if current else set()
    image = d.model_request["PrimaryContainer"]["Image"]
    ch.append(Change(Action.KEEP if d.model_name in in_use else Action.CREATE,
                     Resource("model", d.model_name), f"image {image}"))
    ch.append(Change(Action.CREATE, Resource("endpoint-config", d.config_name),
                     billed(d.config_request, current.config if current else None)))
    if current is None:
        ch.append(Change(Action.CREATE, Resource("endpoint", name)))
    else:
        adopt = "" if current.managed else f"; adopt: tag {TAG_ENDPOINT}={name}"
        ch.append(Change(Action.UPDATE, Resource("endpoint", current.arn),
                         f"{current.config_name} -> {d.config_name}{adopt}"))
        ch.append(_old(c, name, "endpoint-config", current.config_name,
                       current.config.get("EndpointConfigArn")))
        if mode is DeployMode.REPLACE:
            replaced = {v["ModelName"] for v in current.config["ProductionVariants"]
                        if v["VariantName"] == d.variant} - {d.model_name}
            for m in sorted(replaced):
                model = current.models.get(m, {})
                ch.append(_old(c, name, "model", m, model.get("ModelArn")))
                url = model.get("PrimaryContainer", {}).get("ModelDataUrl")
                if url and url != uri and ch[-1].action is Action.DELETE:
                    ch.append(Change(Action.DELETE, Resource("s3-object", url)))
    target = f"endpoint/{name}/variant/{d.variant}"
    kept = (current.scalable.get(d.variant) if current else None) or None
    if autoscaling is not None:
        ch.append(Change(Action.UPDATE if kept else Action.CREATE,
                         Resource("scalable-target", target), scaling(autoscaling, kept)))
    elif kept:
        ch.append(Change(Action.KEEP, Resource("scalable-target", target),
                         f"{kept.get('MinCapacity')}-{kept.get('MaxCapacity')} instances"))
    return tuple(ch)


def variant_cost(v: dict[str, Any]) -> str:
    """One variant's billed settings: ``2 x ml.m5.large`` or ``serverless 2048 MB, max
    concurrency 5``."""
    sc = v.get("ServerlessConfig")
    if sc:
        text = f"serverless {sc['MemorySizeInMB']} MB, max concurrency {sc['MaxConcurrency']}"
        if sc.get("ProvisionedConcurrency"):
            text += f", provisioned concurrency {sc['ProvisionedConcurrency']}"
        return text
    return f"{v.get('InitialInstanceCount', 1)} x {v.get('InstanceType')}"


def billed(request: dict[str, Any], old: dict[str, Any] | None) -> str:
    """What an endpoint config bills, per variant (``old -> new`` where a replace changes it),
    plus async inference and data capture."""
    before = {v["VariantName"]: variant_cost(v) for v in (old or {}).get("ProductionVariants",
                                                                          [])}
    parts = []
    for v in request["ProductionVariants"]:
        now, was = variant_cost(v), before.get(v["VariantName"])
        weight = f", weight {v['InitialVariantWeight']:g}" if "InitialVariantWeight" in v else ""
        parts.append(f"variant {v['VariantName']}: "
                     + (f"{was} -> {now}" if was and was != now else now) + weight)
    ac = request.get("AsyncInferenceConfig")
    if ac:
        limit = (ac.get("ClientConfig") or {}).get("MaxConcurrentInvocationsPerInstance")
        parts.append(f"async: results to {ac['OutputConfig']['S3OutputPath']}"
                     + (f", {limit} concurrent per instance" if limit else ""))
    dc = request.get("DataCaptureConfig")
    if dc and dc.get("EnableCapture", True):
        parts.append(f"data capture: {dc.get('InitialSamplingPercentage', 100)}% to "
                     f"{dc['DestinationS3Uri']}")
    return "; ".join(parts)


def scaling(cfg: Any, old: dict[str, Any] | None) -> str:
    """The autoscaling range and target (``old -> new`` range when it changes)."""
    now = f"{cfg.min_capacity}-{cfg.max_capacity} instances"
    was = f"{old.get('MinCapacity')}-{old.get('MaxCapacity')} instances" if old else None
    return ((f"{was} -> {now}" if was and was != now else now)
            + f", target {cfg.target_invocations_per_instance:g} invocations per instance")


def _old(c: aws.Clients, name: str, kind: str, rname: str, arn: str | None) -> Change:
    """What happens to a config or model the endpoint stops using: deleted if mldeploy's (or
    already gone), else left in place."""
    if arn is None or owned(c, name, arn):
        return Change(Action.DELETE, Resource(kind, rname))
    return Change(Action.KEEP, Resource(kind, rname), "not created by mldeploy: left in place")


__all__ = ["billed", "build_plan", "scaling", "variant_cost"]
