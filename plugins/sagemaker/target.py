"""The SageMaker target: orchestration only (requests are built in ``_resources``, AWS calls made
in ``_client``, SDK errors translated in ``errors``).

Every create/replace/add is a transaction: each resource this run creates is written into a
ledger; if the run fails, is rolled back by SageMaker or times out, the ledger is undone in
reverse and the previous deployment keeps serving. Names are content-hashed, so re-running the
same command after a failure picks up where it stopped (a leftover of an earlier run that is not
serving is adopted into this run's ledger).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from mldeploy import images
from mldeploy.errors import (
    DeploymentFailedError,
    DeploymentNotFoundError,
    DeploymentTimeoutError,
    InvocationError,
    MldeployError,
    TargetError,
    UsageError,
)
from mldeploy.plugins.sagemaker import _client as aws
from mldeploy.plugins.sagemaker import _guard, _image
from mldeploy.plugins.sagemaker._cleanup import remove_each, unused
from mldeploy.plugins.sagemaker._plan import build_plan
from mldeploy.plugins.sagemaker._resources import (
    STATUS,
    TAG_MODEL_URI,
    Artifact,
    Current,
    Desired,
    base_model,
    build_desired,
    check_autoscaled_instance_type,
    check_name,
    to_deployment,
    update_request,
)
from mldeploy.plugins.sagemaker.config import SageMakerConfig
from mldeploy.plugins.sagemaker.errors import aws_errors, invocation_error
from mldeploy.target import (
    Deletion,
    Deployment,
    DeployMode,
    Plan,
    Prediction,
    Resource,
    Status,
    Target,
    encode_payload,
)

BUSY = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")


class SageMakerTarget(Target):
    name = "sagemaker"
    config_class = SageMakerConfig
    config: SageMakerConfig

    def _c(self) -> aws.Clients:
        if self.clients is None:
            self.clients = aws.Clients.create(self.location or self.config.region_name,
                                              self.config.assume_role_arn)
        elif not isinstance(self.clients, aws.Clients):  # a boto3 Session handed in
            self.clients = aws.Clients(self.clients)
        return self.clients

    def _workdir(self) -> Path:
        """A private temporary directory for this target's artifacts, removed with it."""
        if getattr(self, "_tmp", None) is None:
            import tempfile

            self._tmp = tempfile.TemporaryDirectory(prefix="mldeploy-sagemaker-")
        return Path(self._tmp.name)

    def _bucket(self) -> str:
        c = self._c()
        return self.config.bucket or f"mldeploy-{c.account_id()}-{c.region}"

    # -- create / replace / add -------------------------------------------------------------

    def create(self, name: str, model_uri: str, *, wait: bool = True,
               timeout: float | None = None) -> Deployment:
        return self._run(DeployMode.CREATE, name, model_uri, wait, timeout)

    def replace(self, name: str, model_uri: str, *, wait: bool = True,
                timeout: float | None = None) -> Deployment:
        return self._run(DeployMode.REPLACE, name, model_uri, wait, timeout)

    def add(self, name: str, model_uri: str, *, wait: bool = True,
            timeout: float | None = None) -> Deployment:
        return self._run(DeployMode.ADD, name, model_uri, wait, timeout)

    def _prepare(self, mode: DeployMode, name: str, model_uri: str, model_dir: Path,
                 ) -> tuple[Current | None, Desired, _image.ImageBuild | None]:
        """Read the endpoint and work out this run's resources (the image to build included);
        read-only. ``model_dir`` is the model, lent by ``materialize()`` for the run."""
        check_name(name)
        c = self._c()
        ep = aws.describe_endpoint(c, name)
        if mode is DeployMode.CREATE and ep is not None:
            raise _guard.exists_error(c, name, ep)
        current = None if mode is DeployMode.CREATE else aws.read_current(c, name, ep)
        if current is not None:
            _guard.check_managed(current, self.config.adopt, mode.value)
        if current is not None and current.status in BUSY:
            raise TargetError(f"endpoint {name!r} is {current.status}",
                              hint="wait until it is InService (mldeploy get) and re-run")
        artifact = Artifact.pack(model_dir, self._workdir())
        bucket = self._bucket()
        base = None if current is None or current.status == "Failed" else current
        add = mode is DeployMode.ADD
        image = None
        if _image.needs_build(self.config, base_model(base, self.config.variant_name, add)):
            image = _image.plan_build(self.config, name, model_uri, model_dir,
                                      c.account_id(), c.region)
        desired = build_desired(self.config, name, model_uri, artifact, bucket, base, add=add,
                                built_image=image.reference if image else None)
        return current, desired, image

    def _run(self, mode: DeployMode, name: str, model_uri: str, wait: bool,
             timeout: float | None) -> Deployment:
        self.restart_clock()
        from mldeploy.model_uri import materialize

        with materialize(model_uri) as model_dir:  # fetched once, removed after the build
            current, d, image = self._prepare(mode, name, model_uri, model_dir)
            c = self._c()
            failed = current is not None and current.status == "Failed"
            if failed and not self.config.recreate_failed:
                raise DeploymentFailedError(
                    f"endpoint {name!r} is Failed "
                    f"({current.failure_reason or 'no reason given'})",
                    hint="re-run with -C recreate_failed=true to delete and recreate it")
            if image is not None:  # before anything is created: a failed build leaves nothing
                pusher = c.push_image or functools.partial(_image.ecr_push, ecr=c["ecr"])
                _image.ensure_image(c, image, c.build_image or images.docker_build, pusher,
                                    self.progress)
        if failed:
            self.progress(f"{name} is Failed: deleting it to recreate it")
            self.delete(name, wait=True, timeout=timeout)
            current, mode = None, DeployMode.CREATE
        if current is not None and current.config_name == d.config_name:
            self.progress(f"{name} already serves this model and config")
            return self._after_success(name, d, current)  # finishes an earlier run's cleanup
        if current is not None:
            check_autoscaled_instance_type(name, current, d)
        in_use = current.model_names() if current else set()
        in_use |= {m.get("PrimaryContainer", {}).get("ModelDataUrl", "")
                   for m in (current.models.values() if current else [])}
        ledger = aws.Ledger()
        timeout = timeout or self.config.timeout_seconds
        try:
            self._materialise(c, d, in_use, ledger)
            sm = c["sagemaker"]
            if current is None:
                with aws_errors(f"create endpoint {name}"):
                    arn = sm.create_endpoint(EndpointName=name, EndpointConfigName=d.config_name,
                                             Tags=d.config_request["Tags"])["EndpointArn"]
                ledger.add("endpoint", arn)
            else:
                retain = bool(current.scalable) or mode is DeployMode.ADD
                with aws_errors(f"update endpoint {name}"):
                    sm.update_endpoint(**update_request(self.config, name, d.config_name, retain))
            self.progress(f"{mode.value} {name}: endpoint config {d.config_name}")
            if not wait:
                _guard.claim(c, current, self.progress)
                return self.get(name)
            ep = self._wait(name, timeout)
            if ep is None or ep["EndpointStatus"] != "InService" or (
                    ep["EndpointConfigName"] != d.config_name):
                reason = (ep or {}).get("FailureReason") or "the endpoint did not become InService"
                raise _Failed(reason)
        except BaseException as exc:
            raise self._fail(mode, name, exc, ledger, current, d) from None
        return self._after_success(name, d, current)

    def _materialise(self, c: aws.Clients, d: Desired, in_use: set[str],
                     ledger: aws.Ledger) -> None:
        """Bucket, artifact, model and endpoint config: created if absent, adopted if left over
        by an earlier run (exists but serves nothing), kept out of the ledger if serving."""
        sm = c["sagemaker"]
        if d.uploads:
            self._upload(c, d, in_use, ledger)
        for kind, name, create, describe, arn_key in (
                ("model", d.model_name, sm.create_model, sm.describe_model, "ModelArn"),
                ("endpoint-config", d.config_name, sm.create_endpoint_config,
                 sm.describe_endpoint_config, "EndpointConfigArn")):
            request = d.model_request if kind == "model" else d.config_request
            key = "ModelName" if kind == "model" else "EndpointConfigName"
            with aws_errors(f"create {kind} {name}"):
                try:
                    arn, adopted = create(**request)[arn_key], False
                except Exception as exc:  # left by an earlier run of the same command?
                    if "already exist" not in str(exc):
                        raise
                    arn, adopted = describe(**{key: name})[arn_key], True
            if kind == "endpoint-config" or name not in in_use:
                ledger.add(kind, arn)
            self.progress(f"{'reusing' if adopted else 'created'} {kind} {name}")

    def _upload(self, c: aws.Clients, d: Desired, in_use: set[str], ledger: aws.Ledger) -> None:
        if aws.ensure_bucket(c, d.bucket):
            ledger.add("s3-bucket", f"s3://{d.bucket}")
        uri = f"s3://{d.bucket}/{d.key}"
        if not aws.object_exists(c, d.bucket, d.key):
            self.progress(f"uploading {uri} ({d.artifact.size} bytes)")
            with aws_errors(f"upload {uri}"):  # multipart for large models
                c["s3"].upload_file(str(d.artifact.path), d.bucket, d.key)
        if uri not in in_use:
            ledger.add("s3-object", uri)

    def _wait(self, name: str, timeout: float) -> dict[str, Any] | None:
        def report(status: str, reason: str) -> None:
            self.progress(f"{name}: {status}" + (f" ({reason})" if reason else ""),
                          STATUS.get(status, Status.UNKNOWN))

        return aws.wait_endpoint(self._c(), name, timeout=timeout,
                                 poll=self.config.poll_interval_seconds, report=report,
                                 done=lambda ep: ep["EndpointStatus"] not in BUSY)

    def _fail(self, mode: DeployMode, name: str, exc: BaseException, ledger: aws.Ledger,
              current: Current | None, d: Desired) -> BaseException:
        c = self._c()
        timed_out = isinstance(exc, TimeoutError)
        keep: set[str] = set()
        if current is not None and aws.in_flight(c, name):
            # the update still runs and uses these: removing them would break the endpoint
            keep = {r.id for r in ledger.items if r.kind in ("model", "endpoint-config",
                                                             "s3-object")}
        cleaned, leftover = ledger.undo(c, keep)
        logs = aws.log_tail(c, name, self.config.log_lines) if isinstance(exc, _Failed) else []
        for line in logs:
            self.progress(f"log: {line}")
        still = "the previous deployment is still serving" if current else "nothing is serving"
        if timed_out:
            msg = f"{mode.value} of {name} timed out while the endpoint was {exc}"
            hint = (f"{still}; the update is still running on SageMaker: re-run the same command "
                    "later to finish or clean up" if keep else f"{still}; raise --timeout")
            return DeploymentTimeoutError(msg, hint=_hint(hint, leftover), cleaned=cleaned,
                                          leftover=leftover)
        if isinstance(exc, MldeployError) and not ledger.items:
            return exc  # nothing was created: the error as it is
        if isinstance(exc, (_Failed, MldeployError, KeyboardInterrupt)):
            what = ("was interrupted" if isinstance(exc, KeyboardInterrupt) else
                    f"failed: {getattr(exc, 'message', exc)}")
            msg = f"{mode.value} of {name} {what}"
            if logs:
                msg += " | last log lines: " + " / ".join(logs[-5:])
            return DeploymentFailedError(msg, hint=_hint(still, leftover), cleaned=cleaned,
                                         leftover=leftover)
        return exc  # a bug of ours: let it surface (after cleaning up)

    def _after_success(self, name: str, d: Desired, current: Current | None) -> Deployment:
        c = self._c()
        _guard.claim(c, current, self.progress)  # an adopted endpoint is mldeploy's from now on
        if self.config.autoscaling is not None:
            aws.register_autoscaling(c, name, d.variant, self.config.autoscaling)
            self.progress(f"autoscaling {name}/{d.variant}: {self.config.autoscaling.min_capacity}"
                          f"-{self.config.autoscaling.max_capacity} instances")
        if self.config.weights:
            self.traffic(name, self.config.weights)
        live = aws.read_current(c, name)
        if current is not None:  # a create adopted any same-named leftovers in its ledger
            self._collect_garbage(name, live)
        return self._deployment(c, live)

    def _collect_garbage(self, name: str, live: Current | None = None,
                         ) -> tuple[list[Resource], list[Resource]]:
        """Remove mldeploy's models, configs and artifacts for ``name`` that serve nothing."""
        c = self._c()
        if live is None:
            ep = aws.describe_endpoint(c, name)
            live = aws.read_current(c, name, ep) if ep else None
        removed, leftover = remove_each(c, unused(c, name, self._bucket(), live), self.progress)
        for r in removed:
            self.progress(f"removed {r}")
        return removed, leftover

    # -- delete / get / list --------------------------------------------------------------------

    def delete(self, name: str, *, wait: bool = True, timeout: float | None = None) -> Deletion:
        check_name(name)
        c = self._c()
        ep = aws.describe_endpoint(c, name)
        removed: list[Resource] = []
        leftover: list[Resource] = []
        if ep is not None:
            cur = aws.read_current(c, name, ep)
            _guard.check_managed(cur, self.config.adopt, "delete")
            parts = _guard.to_delete(c, cur, self._deployment(c, cur).resources, self.progress)
            removed, leftover = remove_each(c, parts, self.progress)
            self.progress(f"deleting endpoint {name}", Status.DELETING)
            if wait:
                try:
                    aws.wait_endpoint(c, name, timeout=timeout or self.config.timeout_seconds,
                                      poll=self.config.poll_interval_seconds,
                                      report=lambda s, _: self.progress(f"{name}: {s}"),
                                      done=lambda _: False)
                except TimeoutError:
                    raise DeploymentTimeoutError(
                        f"endpoint {name} is still Deleting", hint="re-run delete later") from None
        more, left = self._collect_garbage(name)
        return Deletion(name, self.name, existed=ep is not None, removed=tuple(removed + more),
                        leftover=tuple(leftover + left))

    def get(self, name: str) -> Deployment:
        """Any endpoint, read only; ``details["managed"]``: is it mldeploy's."""
        check_name(name)
        c = self._c()
        cur = aws.read_current(c, name)
        return self._deployment(c, cur)

    def _deployment(self, c: aws.Clients, cur: Current) -> Deployment:
        uris = {m: aws.model_tags(c, d["ModelArn"]).get(TAG_MODEL_URI)
                for m, d in cur.models.items()}
        return to_deployment(cur, self.name, c.region, uris)

    def list(self) -> list[Deployment]:
        c = self._c()
        out = []
        for n in aws.list_endpoint_names(c):
            try:
                out.append(self._deployment(c, aws.read_current(c, n)))
            except DeploymentNotFoundError:  # deleted while listing
                continue
        return out

    # -- invoke / traffic / plan --------------------------------------------------------------

    def invoke(self, name: str, data: Any, *, content_type: str | None = None,
               variant: str | None = None) -> Prediction:
        check_name(name)
        body, ctype = encode_payload(data, content_type)
        kwargs: dict[str, Any] = {"EndpointName": name, "ContentType": ctype, "Body": body,
                                  "Accept": "application/json"}
        if variant:
            kwargs["TargetVariant"] = variant
        try:
            resp = self._c()["sagemaker-runtime"].invoke_endpoint(**kwargs)
        except MldeployError:
            raise
        except Exception as exc:
            err = invocation_error(exc, name)
            cur = aws.read_current(self._c(), name) if err.__class__ is InvocationError else None
            if cur is None or not cur.config.get("AsyncInferenceConfig"):
                raise err from None
            self.progress(f"{name} is asynchronous: sending the request through S3")
            out, otype = aws.invoke_async(self._c(), name, body, ctype, self._bucket(),
                                          timeout=self.config.timeout_seconds,
                                          poll=self.config.poll_interval_seconds)
            return Prediction.from_response(out, otype, variant=variant)
        return Prediction.from_response(resp["Body"].read(), resp.get("ContentType"),
                                        variant=resp.get("InvokedProductionVariant") or variant)

    def traffic(self, name: str, weights: Any, *, wait: bool = True,
                timeout: float | None = None) -> Deployment:
        c = self._c()
        cur = aws.read_current(c, name)
        _guard.check_managed(cur, self.config.adopt, "traffic")
        names = [v["VariantName"] for v in cur.config.get("ProductionVariants", [])]
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise UsageError(f"endpoint {name!r} has no variant {unknown[0]!r}",
                             hint=f"its variants: {', '.join(names)}")
        with aws_errors(f"set traffic weights of {name}", name=name):
            c["sagemaker"].update_endpoint_weights_and_capacities(
                EndpointName=name, DesiredWeightsAndCapacities=[
                    {"VariantName": v, "DesiredWeight": float(w)} for v, w in weights.items()])
        _guard.claim(c, cur, self.progress)
        self.progress(f"{name}: weights " + ", ".join(f"{v}={w}" for v, w in weights.items()))
        if wait:
            try:
                self._wait(name, timeout or self.config.timeout_seconds)
            except TimeoutError:
                raise DeploymentTimeoutError(f"{name} is still updating its weights",
                                             hint="mldeploy get shows when it is done") from None
        return self.get(name)

    def plan(self, mode: DeployMode, name: str, model_uri: str) -> Plan:
        from mldeploy.model_uri import materialize

        with materialize(model_uri) as model_dir:
            current, d, image = self._prepare(mode, name, model_uri, model_dir)
        changes = build_plan(self._c(), mode, name, current, d, image, self.config.autoscaling)
        return Plan(self.name, name, mode, changes)


class _Failed(Exception):
    """SageMaker reported the create/update as failed or rolled back."""


def _hint(text: str, leftover: list[str]) -> str:
    return text + (f"; could not remove: {', '.join(leftover)}" if leftover else "")


__all__ = ["SageMakerTarget"]
