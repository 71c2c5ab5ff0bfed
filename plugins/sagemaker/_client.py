"""boto3: the clients a SageMaker deployment needs, and the calls made with them.

:class:`Clients` is built from a boto3 session (region from the target spec, the config or the
standard AWS variables; an optional assumed role) or handed in by tests. Endpoints set through
``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` are honoured by boto3 itself. Every call
runs inside :func:`~mldeploy.plugins.sagemaker.errors.aws_errors`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mldeploy.errors import DeploymentNotFoundError, MldeployError, TargetError
from mldeploy.plugins.sagemaker._resources import TAG_ENDPOINT, Current
from mldeploy.plugins.sagemaker.errors import aws_errors, is_not_found, scrub

SERVICES = ("sagemaker", "sagemaker-runtime", "s3", "logs", "application-autoscaling", "sts",
            "ecr")
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"


@dataclass
class Clients:
    """boto3 clients by service name, created on first use from ``session``; ``build_image`` /
    ``push_image`` build and push the model's image (None: Docker, see ``_image``)."""

    session: Any
    _made: dict[str, Any] = field(default_factory=dict)
    build_image: Callable[..., None] | None = None
    push_image: Callable[..., None] | None = None

    @classmethod
    def create(cls, region: str | None, assume_role_arn: str | None = None) -> Clients:
        import boto3

        with aws_errors("open an AWS session"):
            session = boto3.Session(region_name=region) if region else boto3.Session()
            if session.region_name is None:
                from mldeploy.errors import ConfigError

                raise ConfigError("no AWS region given",
                                  hint="use --target sagemaker:/REGION, -C region_name=REGION "
                                       "or AWS_DEFAULT_REGION")
            from mldeploy.plugins.sagemaker.config import check_region

            check_region(session.region_name)  # before any call: one line, not a DNS error
            if assume_role_arn:
                creds = session.client("sts").assume_role(
                    RoleArn=assume_role_arn, RoleSessionName="mldeploy")["Credentials"]
                session = boto3.Session(
                    aws_access_key_id=creds["AccessKeyId"],
                    aws_secret_access_key=creds["SecretAccessKey"],
                    aws_session_token=creds["SessionToken"], region_name=session.region_name)
        return cls(session)

    def __getitem__(self, service: str) -> Any:
        if service not in self._made:
            self._made[service] = self.session.client(service)
        return self._made[service]

    @property
    def region(self) -> str:
        return self.session.region_name

    def account_id(self) -> str:
        if "account" not in self._made:
            with aws_errors("find the AWS account"):
                self._made["account"] = self["sts"].get_caller_identity()["Account"]
        return self._made["account"]


def describe_endpoint(c: Clients, name: str) -> dict[str, Any] | None:
    try:
        with aws_errors(f"describe endpoint {name}", name=name):
            return c["sagemaker"].describe_endpoint(EndpointName=name)
    except DeploymentNotFoundError:
        return None


def read_current(c: Clients, name: str, ep: dict[str, Any] | None = None) -> Current:
    """Everything the endpoint ``name`` is made of; DeploymentNotFoundError if absent."""
    ep = ep or describe_endpoint(c, name)
    if ep is None:
        raise DeploymentNotFoundError(f"no SageMaker endpoint named {name!r} in {c.region}",
                                      hint="mldeploy list --target sagemaker shows them")
    sm = c["sagemaker"]
    cfg_name = ep["EndpointConfigName"]
    with aws_errors(f"read endpoint {name}"):
        try:
            config = sm.describe_endpoint_config(EndpointConfigName=cfg_name)
        except Exception as exc:
            if not is_not_found(exc):
                raise
            config = {"EndpointConfigName": cfg_name, "ProductionVariants": []}
        models = {}
        for v in config.get("ProductionVariants", []):
            try:
                models[v["ModelName"]] = sm.describe_model(ModelName=v["ModelName"])
            except Exception as exc:
                if not is_not_found(exc):
                    raise
        tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=ep["EndpointArn"])
                .get("Tags", [])}
    cur = Current(name, ep["EndpointArn"], ep["EndpointStatus"], ep.get("FailureReason"),
                  cfg_name, config, ep.get("ProductionVariants", []), models, tags)
    cur.scalable = scalable_targets(c, name)
    return cur


def model_tags(c: Clients, arn: str) -> dict[str, str]:
    with aws_errors("read model tags"):
        return {t["Key"]: t["Value"] for t in c["sagemaker"].list_tags(ResourceArn=arn)
                .get("Tags", [])}


def scalable_targets(c: Clients, name: str) -> dict[str, dict[str, Any]]:
    out = {}
    with aws_errors(f"read autoscaling of {name}"):
        pages = c["application-autoscaling"].get_paginator("describe_scalable_targets")
        for page in pages.paginate(ServiceNamespace="sagemaker"):
            for t in page.get("ScalableTargets", []):
                parts = t["ResourceId"].split("/")
                if len(parts) == 4 and parts[1] == name:
                    out[parts[3]] = t
    return out


def list_endpoint_names(c: Clients) -> list[str]:
    """The endpoints mldeploy manages: tagged ``mldeploy:endpoint=<their name>`` on create."""
    names = []
    sm = c["sagemaker"]
    with aws_errors("list endpoints"):
        for page in sm.get_paginator("list_endpoints").paginate():
            for e in page.get("Endpoints", []):
                try:
                    tags = sm.list_tags(ResourceArn=e["EndpointArn"]).get("Tags", [])
                except Exception as exc:  # deleted while listing
                    if not is_not_found(exc):
                        raise
                    continue
                if {"Key": TAG_ENDPOINT, "Value": e["EndpointName"]} in tags:
                    names.append(e["EndpointName"])
    return sorted(names)


def managed_resources(c: Clients, name: str) -> dict[str, list[dict[str, Any]]]:
    """Models and endpoint configs tagged as mldeploy's for endpoint ``name``."""
    sm = c["sagemaker"]
    prefix = name[:50]
    out: dict[str, list[dict[str, Any]]] = {"models": [], "configs": []}
    with aws_errors(f"list the resources of {name}"):
        for key, op, arn_key in (("models", "list_models", "ModelArn"),
                                 ("configs", "list_endpoint_configs", "EndpointConfigArn")):
            for page in sm.get_paginator(op).paginate(NameContains=prefix):
                for item in page.get(key.capitalize() if key == "models" else "EndpointConfigs",
                                     []):
                    tags = {t["Key"]: t["Value"]
                            for t in sm.list_tags(ResourceArn=item[arn_key]).get("Tags", [])}
                    if tags.get(TAG_ENDPOINT) == name:
                        out[key].append(item)
    return out


def create_or_adopt(c: Clients, kind: str, request: dict[str, Any]) -> tuple[str, bool]:
    """Create the SageMaker ``model`` or ``endpoint-config`` of ``request``; one of the same
    name left by an earlier run is adopted instead. (ARN, adopted)."""
    sm = c["sagemaker"]
    create, describe, key, arn_key = {
        "model": (sm.create_model, sm.describe_model, "ModelName", "ModelArn"),
        "endpoint-config": (sm.create_endpoint_config, sm.describe_endpoint_config,
                            "EndpointConfigName", "EndpointConfigArn"),
    }[kind]
    name = request[key]
    with aws_errors(f"create {kind} {name}"):
        try:
            return create(**request)[arn_key], False
        except Exception as exc:  # left by an earlier run of the same command?
            if "already exist" not in str(exc):
                raise
            return describe(**{key: name})[arn_key], True


def ensure_bucket(c: Clients, bucket: str) -> bool:
    """True if the bucket was created now."""
    s3 = c["s3"]
    with aws_errors(f"check bucket {bucket}"):
        try:
            s3.head_bucket(Bucket=bucket)
            return False
        except Exception as exc:
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if code in ("403", "AccessDenied"):
                raise TargetError(f"access to S3 bucket {bucket!r} is denied",
                                  hint="use -C bucket=NAME with a bucket you can write to, or "
                                       "grant s3:PutObject on it") from None
            if code not in ("404", "NoSuchBucket", "NotFound"):
                raise
    with aws_errors(f"create bucket {bucket}"):
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if c.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": c.region}
        s3.create_bucket(**kwargs)
    return True


def object_exists(c: Clients, bucket: str, key: str) -> bool:
    with aws_errors(f"check s3://{bucket}/{key}"):
        try:
            c["s3"].head_object(Bucket=bucket, Key=key)
            return True
        except Exception as exc:
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code"))
            if code in ("404", "NoSuchKey", "NotFound"):
                return False
            raise


def bucket_exists(c: Clients, bucket: str) -> bool:
    try:
        c["s3"].head_bucket(Bucket=bucket)
        return True
    except Exception:
        return False


def list_keys(c: Clients, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    with aws_errors(f"list s3://{bucket}/{prefix}"):
        try:
            for page in c["s3"].get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                          Prefix=prefix):
                keys += [o["Key"] for o in page.get("Contents", [])]
        except Exception as exc:
            if not is_not_found(exc) and "NoSuchBucket" not in str(exc):
                raise
    return keys


def wait_endpoint(c: Clients, name: str, *, timeout: float, poll: float,
                  report: Callable[[str, str], None],
                  done: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    """Poll until ``done(describe)`` or the endpoint is gone; None when it is gone. Reports each
    status transition. Raises TimeoutError (caught by the caller) when ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        ep = describe_endpoint(c, name)
        status = ep["EndpointStatus"] if ep else "Deleted"
        if status != last:
            report(status, (ep or {}).get("FailureReason") or "")
            last = status
        if ep is None or done(ep):
            return ep
        if time.monotonic() >= deadline:
            raise TimeoutError(status)
        time.sleep(min(poll, max(deadline - time.monotonic(), 0.0)))


def log_tail(c: Clients, name: str, lines: int, *, job: bool = False) -> list[str]:
    """The last ``lines`` lines the endpoint's containers wrote to CloudWatch Logs (frames of
    Python tracebacks left out); ``job``: those of transform job ``name``. Empty when there are
    none or they cannot be read."""
    if lines <= 0:
        return []
    group = "/aws/sagemaker/TransformJobs" if job else f"/aws/sagemaker/Endpoints/{name}"
    logs = c["logs"]
    try:
        if job:  # the job's streams are named JOB/INSTANCE-...
            streams = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=name,
                                                limit=5).get("logStreams", [])
        else:
            streams = logs.describe_log_streams(logGroupName=group, orderBy="LastEventTime",
                                                descending=True, limit=3).get("logStreams", [])
        events: list[dict[str, Any]] = []
        for s in streams:
            events += logs.get_log_events(logGroupName=group, logStreamName=s["logStreamName"],
                                          limit=lines, startFromHead=False).get("events", [])
    except Exception:  # logs are a courtesy: never let them hide the real error
        return []
    events.sort(key=lambda e: e.get("timestamp", 0))
    kept = [scrub(e.get("message", "").rstrip(), 300) for e in events]
    kept = [m for m in kept if m and not m.lstrip().startswith(("File \"", "Traceback"))]
    return kept[-lines:]


def in_flight(c: Clients, name: str) -> bool:
    """Is the endpoint still creating or updating (or can we not tell)?"""
    try:
        ep = describe_endpoint(c, name)
    except MldeployError:
        return True
    return ep is not None and ep["EndpointStatus"] in (
        "Creating", "Updating", "SystemUpdating", "RollingBack")


def invoke_async(c: Clients, name: str, body: bytes, content_type: str, bucket: str, *,
                 timeout: float, poll: float) -> tuple[bytes, str]:
    """InvokeEndpointAsync: the request goes to S3, the answer is awaited at the output
    location (or the failure location). The request object is removed afterwards."""
    import uuid

    from mldeploy.errors import InvocationError

    s3 = c["s3"]
    key = f"mldeploy/{name}/async-input/{uuid.uuid4().hex}"
    with aws_errors(f"send the request for {name} to s3://{bucket}"):
        ensure_bucket(c, bucket)
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    try:
        with aws_errors(f"invoke {name} asynchronously", name=name):
            resp = c["sagemaker-runtime"].invoke_endpoint_async(
                EndpointName=name, InputLocation=f"s3://{bucket}/{key}", ContentType=content_type)
        out, failed = resp["OutputLocation"], resp.get("FailureLocation")
        deadline = time.monotonic() + timeout
        while True:
            for uri, is_failure in ((out, False), (failed, True)):
                if not uri:
                    continue
                b, _, k = uri[len("s3://"):].partition("/")
                if object_exists(c, b, k):
                    with aws_errors(f"read {uri}"):
                        obj = s3.get_object(Bucket=b, Key=k)
                        data = obj["Body"].read()
                    if is_failure:
                        raise InvocationError(f"the model on {name!r} failed: "
                                              f"{scrub(data.decode('utf-8', 'replace'), 300)}",
                                              status=500, hint=f"details at {uri}")
                    return data, obj.get("ContentType") or "application/json"
            if time.monotonic() >= deadline:
                raise InvocationError(f"no answer from {name!r} at {out} within {timeout:.0f}s",
                                      hint="async requests can take long: raise timeout_seconds")
            time.sleep(poll)
    finally:
        try:
            remove(c, "s3-object", f"s3://{bucket}/{key}")
        except MldeployError:
            pass


# -- removing things (idempotent: what is already gone counts as removed) ----------------------


def _arn_name(arn: str) -> str:
    return arn.split("/", 1)[1] if "/" in arn else arn


def remove(c: Clients, kind: str, rid: str) -> None:
    """Remove one resource by kind and id (ARN, s3:// URI or autoscaling resource id)."""
    sm = c["sagemaker"]
    with aws_errors(f"remove {kind} {rid}"):
        try:
            if kind == "endpoint":
                sm.delete_endpoint(EndpointName=_arn_name(rid))
            elif kind == "endpoint-config":
                sm.delete_endpoint_config(EndpointConfigName=_arn_name(rid))
            elif kind == "model":
                sm.delete_model(ModelName=_arn_name(rid))
            elif kind == "s3-object":
                bucket, _, key = rid[len("s3://"):].partition("/")
                c["s3"].delete_object(Bucket=bucket, Key=key)
            elif kind == "s3-bucket":
                bucket = rid[len("s3://"):]
                if not list_keys(c, bucket, ""):
                    c["s3"].delete_bucket(Bucket=bucket)
            elif kind == "scalable-target":
                c["application-autoscaling"].deregister_scalable_target(
                    ServiceNamespace="sagemaker", ResourceId=rid,
                    ScalableDimension=SCALABLE_DIMENSION)
            else:  # pragma: no cover - a bug in the caller
                raise ValueError(kind)
        except Exception as exc:
            if not is_not_found(exc) and "ObjectNotFound" not in str(exc):
                raise


def register_autoscaling(c: Clients, name: str, variant: str, a: Any) -> str:
    rid = f"endpoint/{name}/variant/{variant}"
    aas = c["application-autoscaling"]
    with aws_errors(f"set up autoscaling for {name}/{variant}"):
        aas.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=rid,
                                     ScalableDimension=SCALABLE_DIMENSION,
                                     MinCapacity=a.min_capacity, MaxCapacity=a.max_capacity)
        aas.put_scaling_policy(
            PolicyName=f"mldeploy-{name}-{variant}"[:256], ServiceNamespace="sagemaker",
            ResourceId=rid, ScalableDimension=SCALABLE_DIMENSION,
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": a.target_invocations_per_instance,
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
                "ScaleInCooldown": a.scale_in_cooldown, "ScaleOutCooldown": a.scale_out_cooldown})
    return rid


__all__ = ["SCALABLE_DIMENSION", "Clients", "bucket_exists", "describe_endpoint",
           "ensure_bucket", "in_flight", "invoke_async", "list_endpoint_names", "list_keys",
           "log_tail", "managed_resources", "model_tags", "object_exists", "read_current",
           "register_autoscaling", "remove", "scalable_targets", "wait_endpoint"]
