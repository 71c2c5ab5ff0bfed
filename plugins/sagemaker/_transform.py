"""SageMaker Batch Transform: score S3 data with the model's own serving image as a job.

The steps, each recorded in the core's transaction (``Target.transform``): the image (built and
pushed when there is none, as for an endpoint), ``model.tar.gz`` in S3, the SageMaker model, the
transform job. The run waits with progress until the job ends; a failed job reports SageMaker's
reason and its last log lines (the records the container refused), a timeout or an interrupt
stops the job; in every case the model and the artifact this run created are removed again
(the output, and a bucket that is not empty, are kept).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mldeploy import images
from mldeploy.config import build_config
from mldeploy.errors import ConfigError
from mldeploy.plugins.sagemaker import _client as aws
from mldeploy.plugins.sagemaker import _image
from mldeploy.plugins.sagemaker._resources import (
    Artifact,
    Desired,
    build_desired,
    derived_name,
    digest,
)
from mldeploy.plugins.sagemaker.errors import aws_errors
from mldeploy.target import Resource, Status, Transform
from mldeploy.transaction import StepFailed, StepTimedOut, Transaction

CONTENT_TYPES = ("text/csv", "application/jsonlines", "application/json")
_S3 = re.compile(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$")
_DONE = ("Completed", "Failed", "Stopped")


@dataclass(frozen=True)
class TransformJobConfig:
    """One Batch Transform job (``mldeploy batch`` options, or ``job=`` of ``transform``)."""

    input: str = field(metadata={"help": "s3://bucket/prefix of the records (every object)"})
    output: str = field(metadata={"help": "s3://bucket/prefix for KEY.out of each input"})
    content_type: str = field(default="text/csv", metadata={
        "help": "text/csv (headerless), application/jsonlines or application/json"})
    accept: str | None = field(default=None, metadata={
        "help": "the answers' type (default: the content type)"})
    split_type: str = field(default="Line", metadata={"help": "Line or None"})
    batch_strategy: str = field(default="MultiRecord", metadata={
        "help": "MultiRecord (mini-batches up to max_payload_mb) or SingleRecord"})
    max_payload_mb: int = field(default=6, metadata={"min": 1, "max": 100})
    max_concurrent_transforms: int | None = field(default=None, metadata={"min": 1})
    instance_type: str = "ml.m5.large"
    instance_count: int = field(default=1, metadata={"min": 1, "max": 100})

    def validate(self) -> None:
        for key in ("input", "output"):
            value = getattr(self, key)
            if not _S3.match(value):
                raise ConfigError(f"{key} {value!r} is not an s3:// URI",
                                  hint=f"give --{key} s3://BUCKET/PREFIX")
        if self.content_type not in CONTENT_TYPES:
            raise ConfigError(f"content_type {self.content_type!r} is not supported",
                              hint="use " + ", ".join(CONTENT_TYPES))
        if self.accept is not None and self.accept not in CONTENT_TYPES:
            raise ConfigError(f"accept {self.accept!r} is not supported",
                              hint="use " + ", ".join(CONTENT_TYPES))
        if self.split_type not in ("Line", "None"):
            raise ConfigError(f"split_type {self.split_type!r} is not Line or None")
        if self.batch_strategy not in ("MultiRecord", "SingleRecord"):
            raise ConfigError(f"batch_strategy {self.batch_strategy!r} is not MultiRecord or "
                              "SingleRecord")

    def request(self, job_name: str, model_name: str, tags: list[dict[str, str]]
                ) -> dict[str, Any]:
        accept = self.accept or self.content_type
        request: dict[str, Any] = {
            "TransformJobName": job_name,
            "ModelName": model_name,
            "BatchStrategy": self.batch_strategy,
            "MaxPayloadInMB": self.max_payload_mb,
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                "S3Uri": self.input}},
                "ContentType": self.content_type,
                "SplitType": self.split_type,
            },
            "TransformOutput": {"S3OutputPath": self.output, "Accept": accept,
                                "AssembleWith": "Line" if self.split_type == "Line" else "None"},
            "TransformResources": {"InstanceType": self.instance_type,
                                   "InstanceCount": self.instance_count},
            "Tags": tags,
        }
        if self.max_concurrent_transforms is not None:
            request["MaxConcurrentTransforms"] = self.max_concurrent_transforms
        return request


def job_config(job: Any) -> TransformJobConfig:
    return build_config(TransformJobConfig, job)


def run(target: Any, tx: Transaction, model_uri: str, job: Any) -> Transform:
    """The backend steps of ``SageMakerTarget.transform`` (``target``: the SageMaker target)."""
    from mldeploy.model_uri import materialize

    spec = job_config(job)
    cfg = target.config
    c = target._c()
    name = tx.name
    run_id = uuid.uuid4().hex[:12]
    with tempfile.TemporaryDirectory(prefix="mldeploy-transform-") as work:
        with materialize(model_uri) as model_dir:  # fetched once, removed after the build
            artifact = Artifact.pack(model_dir, Path(work))
            image = None
            if _image.needs_build(cfg, {}):
                image = _image.plan_build(cfg, name, model_uri, model_dir, c.account_id(),
                                          c.region)
                pusher = c.push_image or functools.partial(_image.ecr_push, ecr=c["ecr"])
                _image.ensure_image(c, image, c.build_image or images.docker_build, pusher,
                                    target.progress)
        d = _for_this_job(build_desired(cfg, name, model_uri, artifact, target._bucket(), None,
                                        built_image=image.reference if image else None),
                          name, run_id)
        tx.on_failure(functools.partial(_on_failure, target, tx))
        if d.uploads:
            target._upload(tx, c, d, set())
    sm = c["sagemaker"]
    arn, adopted = aws.create_or_adopt(c, "model", d.model_request)
    target.progress(f"{'reusing' if adopted else 'created'} model {d.model_name}")
    target._record(tx, c, Resource("model", arn))

    job_name = f"{name[:50]}-{run_id}"
    request = spec.request(job_name, d.model_name, d.model_request["Tags"])
    with aws_errors(f"create transform job {job_name}"):
        job_arn = sm.create_transform_job(**request)["TransformJobArn"]
    job_res = Resource("transform-job", job_arn)
    tx.record(job_res, functools.partial(stop, c, job_name))
    tx.job_name = job_name  # type: ignore[attr-defined] - read by _on_failure
    target.progress(f"transform job {job_name}: {spec.input} -> {spec.output}")
    if not tx.wait:
        tx.forget(job_res)
        return Transform(name, target.name, Status.CREATING, spec.input, spec.output,
                         details={"job_name": job_name, "job_arn": job_arn},
                         leftover=tuple(tx.resources))
    desc = wait(c, job_name, timeout=tx.remaining() if tx.deadline is not None else None,
                poll=cfg.poll_interval_seconds,
                report=lambda s: target.progress(f"{job_name}: {s}"))
    if desc["TransformJobStatus"] != "Completed":
        raise StepFailed(desc.get("FailureReason") or f"the job is {desc['TransformJobStatus']}")
    outputs = tuple(_outputs(c, spec.output))
    tx.forget(job_res)  # the job is done: nothing of it to undo
    removed, leftover = tx.rollback()  # the model and artifact were for this job only
    for r in removed:
        target.progress(f"removed {r}")
    return Transform(name, target.name, Status.READY, spec.input, spec.output, outputs=outputs,
                     removed=tuple(removed), leftover=tuple(leftover),
                     details={"job_name": job_name, "job_arn": job_arn,
                              "seconds": round(time.monotonic() - target._started, 1)})


def _for_this_job(d: Desired, name: str, run_id: str) -> Desired:
    """The model and artifact of one job, named after the job: two jobs of the same model
    (the same transform run twice at once) each remove only their own when they end."""
    model_name = derived_name(name, "m", digest([d.model_name, run_id]))
    request = {**d.model_request, "ModelName": model_name,
               "PrimaryContainer": dict(d.model_request["PrimaryContainer"])}
    key = d.key
    if d.uploads:
        key = d.key.replace("/model.tar.gz", f"/{run_id}/model.tar.gz")
        request["PrimaryContainer"]["ModelDataUrl"] = f"s3://{d.bucket}/{key}"
    return dataclasses.replace(d, model_name=model_name, model_request=request, key=key)


def wait(c: aws.Clients, job_name: str, *, timeout: float | None, poll: float,
         report: Any) -> dict[str, Any]:
    """Poll the job until it ends; reports each status. StepTimedOut after ``timeout`` (None:
    no limit)."""
    deadline = time.monotonic() + timeout if timeout is not None else None
    last = None
    sm = c["sagemaker"]
    while True:
        with aws_errors(f"describe transform job {job_name}"):
            desc = sm.describe_transform_job(TransformJobName=job_name)
        status = desc["TransformJobStatus"]
        if status != last:
            report(status + (f" ({desc['FailureReason']})" if desc.get("FailureReason")
                             else ""))
            last = status
        if status in _DONE:
            return desc
        if deadline is not None and time.monotonic() >= deadline:
            raise StepTimedOut(f"while the transform job was {status}")
        time.sleep(poll if deadline is None else min(poll, max(deadline - time.monotonic(), 0)))


def stop(c: aws.Clients, job_name: str) -> None:
    """Undo of a transform job: stop it when it still runs (a finished job cannot be removed;
    SageMaker keeps its record)."""
    sm = c["sagemaker"]
    with aws_errors(f"stop transform job {job_name}"):
        status = sm.describe_transform_job(TransformJobName=job_name)["TransformJobStatus"]
        if status in ("InProgress",):
            sm.stop_transform_job(TransformJobName=job_name)


def _on_failure(target: Any, tx: Transaction, exc: BaseException) -> None:
    job_name = getattr(tx, "job_name", None)
    tx.hint = "nothing is left running; the output prefix may hold the objects of finished files"
    if job_name is None:
        return
    if isinstance(exc, StepFailed):
        lines = aws.log_tail(target._c(), job_name, target.config.log_lines, job=True)
        for line in lines:
            target.progress(f"log: {line}")
        if lines:
            tx.detail = " | failed records: " + " / ".join(lines[-5:])
    elif isinstance(exc, (TimeoutError, KeyboardInterrupt)):
        tx.hint = f"the job {job_name} was stopped; raise --timeout to let it finish"


def _outputs(c: aws.Clients, output: str) -> list[str]:
    bucket, _, prefix = output[len("s3://"):].partition("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return [f"s3://{bucket}/{k}" for k in aws.list_keys(c, bucket, prefix) if k.endswith(".out")]

