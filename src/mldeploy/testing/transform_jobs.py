"""SageMaker Batch Transform jobs that really run, for :class:`SageMakerEmulator`.

moto 5 stores ``CreateTransformJob`` and reports it ``Completed`` at once without reading a
record, and has no ``StopTransformJob``. While an emulator is active, a transform job here does
what SageMaker's does with its input, on the emulator's model answers (``send``):

- ``InProgress`` while it runs, then ``Completed``, ``Failed`` (with SageMaker's FailureReason
  and the container's answer in CloudWatch Logs under ``/aws/sagemaker/TransformJobs``) or
  ``Stopped`` (``StopTransformJob``: ``Stopping`` until the mini-batch in flight is done);
- every object under the ``S3Prefix`` input (from the emulated S3) is split by ``SplitType``
  (``None``: the whole object is one record; ``Line``: one record a line, blank lines dropped),
  records are packed into mini-batches of at most ``MaxPayloadInMB`` (``MultiRecord``) or sent
  one by one (``SingleRecord``) with the input ``ContentType`` and the output ``Accept``;
- the answers of each object are joined (``AssembleWith=Line``: one per line) and written to
  ``S3OutputPath/KEY.out``, KEY being the object's key below the input prefix, as SageMaker
  names them.

What it does not do: instances (the records go to the emulator's containers, one at a time),
``ManifestFile`` inputs, ``RecordIO``/``TFRecord`` splitting, compression, ``DataProcessing``
joins and filters, KMS.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

# (model name, body, content type, accept) -> answer body; raise ContainerError on non-2xx
Send = Callable[[str, bytes, str, str | None], bytes]

LOG_GROUP = "/aws/sagemaker/TransformJobs"


class _Stopped(Exception):
    pass


def install(emulator: Any, patch: Callable[[Any, str, Any], None]) -> None:
    """Patch moto's transform-job calls while ``emulator`` is active (``patch`` records the old
    attribute so :meth:`SageMakerEmulator.stop` restores it)."""
    from moto.sagemaker import models as m
    from moto.sagemaker.responses import SageMakerResponse

    b = m.SageMakerModelBackend
    orig_create = b.create_transform_job
    stopping: set[str] = set()

    def create_transform_job(self: Any, transform_job_name: str, model_name: str, *a: Any,
                             **k: Any) -> Any:
        if transform_job_name in self.transform_jobs:
            raise m.ValidationError(message=f"Job name must be unique within an AWS account "
                                    f"and region, and a job with this name already exists "
                                    f"({transform_job_name})")
        if model_name not in self._models:
            raise m.ValidationError(message=f"Could not find model \"{model_name}\".")
        job = orig_create(self, transform_job_name, model_name, *a, **k)
        job.transform_job_status = "InProgress"
        job.transform_end_time = None
        threading.Thread(target=_run, daemon=True,
                         args=(emulator, self, job, stopping)).start()
        return job

    def stop_transform_job(resp: Any) -> Any:
        from moto.core.responses import ActionResult

        name = resp._get_param("TransformJobName")
        job = resp.sagemaker_backend.transform_jobs.get(name)
        if job is None:
            raise m.ValidationError(message=f"Could not find job to update: {name}")
        if job.transform_job_status == "InProgress":
            job.transform_job_status = "Stopping"
            stopping.add(name)
        return ActionResult({})

    patch(b, "create_transform_job", create_transform_job)
    patch(SageMakerResponse, "stop_transform_job", stop_transform_job)


def _run(emulator: Any, backend: Any, job: Any, stopping: set[str]) -> None:
    from moto.core.utils import utcnow

    name = job.transform_job_name
    try:
        _transform(emulator.transform_send, backend, job, lambda: name in stopping)
        status, reason = "Completed", ""
    except _Stopped:
        status, reason = "Stopped", ""
    except _JobError as exc:
        status, reason = "Failed", exc.reason
        _log(backend, name, exc.logs)
    except Exception as exc:  # the emulator itself: report, never kill the server
        status, reason = "Failed", f"InternalServerError: {type(exc).__name__}: {exc}"[:1000]
    finally:
        stopping.discard(name)
        emulator.transform_done(job.model_name)
    job.transform_job_status, job.failure_reason = status, reason
    job.transform_end_time = job.last_modified_time = utcnow()


class _JobError(Exception):
    def __init__(self, reason: str, logs: list[str]) -> None:
        super().__init__(reason)
        self.reason, self.logs = reason, logs


def _transform(send: Send, backend: Any, job: Any, stopped: Callable[[], bool]) -> None:
    from moto.s3.models import s3_backends

    from mldeploy.testing._moto_parts import ContainerError

    s3 = s3_backends[backend.account_id]["global"]
    tin, tout = job.transform_input, job.transform_output
    source = (tin.get("DataSource") or {}).get("S3DataSource") or {}
    if source.get("S3DataType", "S3Prefix") != "S3Prefix":
        raise _JobError("ClientError: the emulator reads S3Prefix inputs only", [])
    bucket, _, prefix = source["S3Uri"][len("s3://"):].partition("/")
    out_bucket, _, out_prefix = tout["S3OutputPath"][len("s3://"):].partition("/")
    ctype = tin.get("ContentType") or "application/json"
    accept = tout.get("Accept")
    split = tin.get("SplitType") or "None"
    if split not in ("None", "Line"):
        raise _JobError(f"ClientError: the emulator cannot split {split} records", [])
    joiner = b"\n" if (tout.get("AssembleWith") or "None") == "Line" else b""
    limit = int(job.max_payload_in_mb or 6) * 1024 * 1024
    single = (job.batch_strategy or "MultiRecord") == "SingleRecord"
    try:
        keys = sorted(k for k in s3.get_bucket(bucket).keys.keys() if k.startswith(prefix))
    except Exception:
        raise _JobError(f"ClientError: No S3 objects found under S3 URL "
                        f"\"{source['S3Uri']}\" given in input data source.", []) from None
    keys = [k for k in keys if not k.endswith("/")]
    if not keys:
        raise _JobError(f"ClientError: No S3 objects found under S3 URL "
                        f"\"{source['S3Uri']}\" given in input data source.", [])
    for key in keys:
        body = s3.get_object(bucket, key).value
        answers: list[bytes] = []
        for batch in _mini_batches(_records(body, split), limit, single, key):
            if stopped():
                raise _Stopped
            try:
                answer = send(job.model_name, batch, ctype, accept)
            except ContainerError as exc:
                raise _JobError(
                    "ClientError: See job logs for more information",
                    [f"{key}: Bad HTTP status received from algorithm: {exc.status}",
                     f"{key}: {exc.body[:2000]}"]) from None
            answers.append(answer.rstrip(b"\n") if joiner else answer)
        rel = key[len(prefix):].lstrip("/") if prefix and not prefix.endswith("/") else \
            key[len(prefix):]
        rel = rel or key.rsplit("/", 1)[-1]
        out_key = "/".join(p for p in (out_prefix.rstrip("/"), rel + ".out") if p)
        data = joiner.join(answers) + (joiner if joiner and answers else b"")
        s3.put_object(out_bucket, out_key, data)


def _records(body: bytes, split: str) -> Iterator[bytes]:
    if split == "None":
        yield body
        return
    for line in body.splitlines():
        if line.strip():
            yield line


def _mini_batches(records: Iterator[bytes], limit: int, single: bool,
                  key: str) -> Iterator[bytes]:
    batch: list[bytes] = []
    size = 0
    for record in records:
        if len(record) > limit:
            raise _JobError("ClientError: Too much data for max payload size",
                            [f"{key}: a record of {len(record)} bytes is over MaxPayloadInMB"])
        if batch and (single or size + len(record) + 1 > limit):
            yield b"\n".join(batch) + b"\n"
            batch, size = [], 0
        batch.append(record)
        size += len(record) + 1
    if batch:
        yield b"\n".join(batch) + b"\n"


def _log(backend: Any, job_name: str, lines: list[str]) -> None:
    import time

    from moto.logs.models import logs_backends

    logs = logs_backends[backend.account_id][backend.region_name]
    stream = f"{job_name}/emulator"
    try:
        if LOG_GROUP not in logs.groups:
            logs.create_log_group(LOG_GROUP, {})
        logs.create_log_stream(LOG_GROUP, stream)
        now = int(time.time() * 1000)
        logs.put_log_events(LOG_GROUP, stream,
                            [{"timestamp": now, "message": line} for line in lines or ["-"]])
    except Exception:  # the logs are a courtesy
        pass
